// Express 4 is installed under the alias `express4` to run the conformance table against it too; its
// API, as far as the middleware and the tests use it, is Express 5's, so it borrows those types.
declare module 'express4' {
  import express from 'express';
  export default express;
}
