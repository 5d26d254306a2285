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

  it('admits a cost above its share (up to the shared limit) from a full bucket, with a finite wait', () => {
    let now = 0;
    const local = new LocalBuckets(10, () => now);
    const share = { capacity: 5 / 3, refillPerMs: 0.001 / 3 }; // 3 instances share 5 tokens, 1 per s
    // before the fix: refused with retryAfterMs Infinity for the whole outage, limit 1.67
    expect(local.consume('k', 2, share, 0, 5)).toMatchObject({ allowed: true, limit: 5, remaining: 0 });
    const refused = local.consume('k', 2, share, 0, 5);
    expect(refused).toMatchObject({ allowed: false, limit: 5 });
    expect(refused.retryAfterMs).toBe(6000); // until the bucket is full again: 2 tokens at 1/3 per s
    now += 6000;
    expect(local.consume('k', 2, share, 0, 5).allowed).toBe(true);
    // a reservation waits for a full bucket too
    expect(local.consume('k', 2, share, 10_000, 5)).toMatchObject({ allowed: true, waitMs: 6000 });
    // above the shared limit it can never be granted, as with Redis
    expect(local.consume('other', 6, share, 0, 5).retryAfterMs).toBe(Number.POSITIVE_INFINITY);
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
