import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { flowLimit } from './flow-limit.js';

describe('FlowLimit', () => {
  it('admits a burst, then one request per 1/rate seconds', () => {
    const limit = flowLimit({ rate: 10, burst: 3 });
    expect([limit.tryTake(0), limit.tryTake(0), limit.tryTake(0), limit.tryTake(0)]).toEqual([
      true,
      true,
      true,
      false,
    ]);
    expect(limit.retryAfterMs()).toBeCloseTo(100);
    expect(limit.resetAfterMs()).toBeCloseTo(300);
    expect(limit.tryTake(99)).toBe(false);
    expect(limit.tryTake(100)).toBe(true);
    expect(limit.remaining).toBe(0);
  });

  it('refills at a fraction of the rate when given a factor', () => {
    const limit = flowLimit({ rate: 10, burst: 1 });
    expect(limit.tryTake(0, 0.5)).toBe(true);
    expect(limit.tryTake(100, 0.5)).toBe(false);
    expect(limit.retryAfterMs()).toBeCloseTo(100);
    expect(limit.tryTake(200, 0.5)).toBe(true);
  });

  it('refills at the fraction only until the recovery ends, also across a quiet spell that outlasts it', () => {
    const limit = flowLimit({ rate: 10, burst: 1000 });
    limit.tryTake(-100_000);
    limit.recover(0, 0.1, 1000); // a comeback: at most 100 tokens, a tenth of the rate for 1 s
    expect(limit.remaining).toBe(100);
    expect(limit.tryTake(61_000)).toBe(true);
    // 0-1 s at 1 token/s, then 60 s at 10 tokens/s (before the fix: all 61 s at 1 token/s, 160 left)
    expect(limit.remaining).toBe(700);
  });

  it('counts the end of a recovery in retryAfterMs and resetAfterMs', () => {
    const limit = flowLimit({ rate: 10, burst: 2 });
    limit.tryTake(0);
    limit.tryTake(0);
    limit.recover(0, 0.01, 1000); // 1 s at a hundredth of the rate
    expect(limit.tryTake(0, 0.01, 1000)).toBe(false);
    // 0.1 token during the reduced second, the other 0.9 at the whole rate: 90 ms after it (before the
    // fix: 10 s, as if the whole wait ran at the reduced rate)
    expect(limit.retryAfterMs()).toBeCloseTo(1090);
    expect(limit.resetAfterMs()).toBeCloseTo(1190);
    expect(limit.tryTake(1089)).toBe(false);
    expect(limit.tryTake(1091)).toBe(true);
  });

  it('retryAfterMs is the true wait: a token is there then and not before (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 200 }), { maxLength: 40 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.oneof(fc.constant(Number.POSITIVE_INFINITY), fc.integer({ min: 0, max: 5000 })),
        (rate, burst, gaps, factor, recoveryMs) => {
          const limit = flowLimit({ rate, burst });
          let now = 0;
          for (const gap of gaps) {
            now += gap;
            limit.tryTake(now);
          }
          limit.recover(now, factor, now + recoveryMs);
          const until = now + recoveryMs;
          // The plan's factor at a time: reduced until the recovery ends, whole after it.
          const take = (t: number) =>
            t < until ? limit.tryTake(t, factor, until) : limit.tryTake(t, 1, Number.POSITIVE_INFINITY);
          while (take(now)) {}
          const wait = limit.retryAfterMs();
          expect(wait).toBeGreaterThan(0);
          // A probe a little before the wait takes nothing (and so changes nothing) ...
          expect(take(now + wait * (1 - 1e-6) - 1e-6)).toBe(false);
          // ... and at the wait there is a token.
          expect(take(now + wait + 1e-6)).toBe(true);
        },
      ),
    );
  });

  it('never limits with an infinite rate', () => {
    const limit = flowLimit({ rate: Number.POSITIVE_INFINITY, burst: 1 });
    for (let i = 0; i < 100; i++) expect(limit.tryTake(0)).toBe(true);
    expect(limit.retryAfterMs()).toBe(0);
  });

  it('never admits more than burst + rate * t in any span t (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 300 }),
        (rate, burst, gaps) => {
          const limit = flowLimit({ rate, burst });
          let now = 0;
          let admitted = 0;
          for (const gap of gaps) {
            now += gap;
            if (limit.tryTake(now)) admitted++;
          }
          return admitted <= burst + (rate * now) / 1000 + 1e-9;
        },
      ),
    );
  });
});
