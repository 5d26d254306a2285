import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  // p-limit (and its yocto-queue) ship ESM only; bundling them keeps `require('@floodgate/token-bucket')`
  // working on Node 20.18, where require(esm) is not available without a flag.
  noExternal: ['p-limit', 'yocto-queue'],
});
