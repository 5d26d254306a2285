import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ModelBucket, type ModelOperation } from '../test/reference-model.js';
import { LocalBuckets } from './local-buckets.js';

describe('LocalBuckets (the local fallback)', () => {
  it('decides like the reference model (the same bucket as the Redis script)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.double({ min: 0.0005, max: 2, noNaN: true }),
        fc.array(
          fc.record({
            advanceMs: fc.double({ min: 0, max: 2_000, noNaN: true }),
            operation: fc.oneof(
              fc.record({
                kind: fc.constant('consume' as const),
                cost: fc.integer({ min: 1, max: 32 }),
                maxWaitMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 5_000 })),
              }),
              fc.record({ kind: fc.constant('refund' as const), cost: fc.integer({ min: 1, max: 10 }) }),
            ),
          }),
          { maxLength: 40 },
        ),
        (capacity, refillPerMs, steps) => {
          const spec = { capacity, refillPerMs };
          let now = 1_000;
          const local = new LocalBuckets(10, () => now);
          const model = new ModelBucket(spec);
          for (const { advanceMs, operation } of steps) {
            now += advanceMs;
            const expected = model.apply(now, operation as ModelOperation);
            if (operation.kind === 'refund') {
              local.refund('k', operation.cost, spec);
            } else {
              const actual = local.consume('k', operation.cost, spec, operation.maxWaitMs);
              expect(actual.allowed).toBe(expected?.allowed);
              expect(actual.remaining).toBe(expected?.remaining);
              expect(actual.retryAfterMs).toBeCloseTo(expected?.retryAfterMs ?? Number.NaN, 6);
              expect(actual.resetAfterMs).toBeCloseTo(expected?.resetAfterMs ?? Number.NaN, 6);
              expect(actual.waitMs).toBeCloseTo(expected?.waitMs ?? Number.NaN, 6);
            }
          }
        },
      ),
    );
  });

  it('keeps at most maxKeys buckets, dropping the least recently used', () => {
    const spec = { capacity: 2, refillPerMs: 0.001 };
    const local = new LocalBuckets(2, () => 0);
    local.consume('a', 2, spec, 0);
    local.consume('b', 2, spec, 0);
    local.consume('a', 1, spec, 0); // a is now the most recent
    local.consume('c', 1, spec, 0); // evicts b
    expect(local.size).toBe(2);
    expect(local.consume('a', 1, spec, 0).allowed).toBe(false);
    expect(local.consume('b', 2, spec, 0).allowed).toBe(true); // b came back full
    local.clear();
    expect(local.size).toBe(0);
  });
});
