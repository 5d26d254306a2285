import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests import @floodgate/* from source, so `pnpm test` needs no build first.
const packagesDir = fileURLToPath(new URL('./packages/', import.meta.url));
const alias = readdirSync(packagesDir).map((name) => ({
  find: new RegExp(`^@floodgate/${name}$`),
  replacement: `${packagesDir}${name}/src/index.ts`,
}));

const ALL_TESTS = [
  'packages/*/{src,test}/**/*.test.ts',
  'examples/*/{src,test}/**/*.test.ts',
  'bench/**/*.test.ts',
  'scripts/**/*.test.ts',
];
// Tests that measure a whole system under load (a festival against a rate-limited bank, OS processes
// sharing one Redis bucket, thousands of faulted payments): they assert rates and peaks, so they run
// after the unit tests and one file at a time, never competing with the rest of the suite for 2 cores.
const LOAD_TESTS = [
  'examples/group-buy-shop/test/festival.test.ts',
  'packages/redis/test/multi-process.test.ts',
  'packages/payment-retry/test/acceptance.test.ts',
  'packages/payment-retry/test/crash.test.ts',
];

export default defineConfig({
  resolve: { alias },
  test: {
    reporters: ['default', './scripts/summary-reporter.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    restoreMocks: true,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ALL_TESTS,
          exclude: ['**/node_modules/**', ...LOAD_TESTS],
          typecheck: {
            enabled: true,
            include: ['packages/*/{src,test}/**/*.test-d.ts'],
            tsconfig: './tsconfig.json',
          },
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'load',
          include: LOAD_TESTS,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
