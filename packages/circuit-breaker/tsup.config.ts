import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  // Keep `node:` in the output (tsup strips it by default for Node < 14.18, which floodgate does not
  // support): bundlers and other runtimes then know these imports are Node's own.
  removeNodeProtocol: false,
});
