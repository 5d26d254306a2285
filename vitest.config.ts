import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests import @floodgate/* from source, so `pnpm test` needs no build first.
const packagesDir = fileURLToPath(new URL('./packages/', import.meta.url));
const alias = readdirSync(packagesDir).map((name) => ({
  find: new RegExp(`^@floodgate/${name}$`),
  replacement: `${packagesDir}${name}/src/index.ts`,
}));

export default defineConfig({
  resolve: { alias },
  test: {
    include: [
      'packages/*/{src,test}/**/*.test.ts',
      'examples/*/{src,test}/**/*.test.ts',
      'bench/**/*.test.ts',
    ],
    typecheck: {
      enabled: true,
      include: ['packages/*/{src,test}/**/*.test-d.ts'],
      tsconfig: './tsconfig.json',
    },
    reporters: ['default', './scripts/summary-reporter.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    restoreMocks: true,
  },
});
