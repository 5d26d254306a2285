import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { StandardHeaders } from './headers.js';
import { retryAfterSeconds } from './problem.js';
import { RateLimit, type RateLimitResult } from './rate-limit.js';

interface Req {
  ip?: string;
  headers: Record<string, string | undefined>;
}

const req = (ip = '203.0.113.9'): Req => ({ ip, headers: {} });

function sync(result: RateLimitResult | Promise<RateLimitResult>): RateLimitResult {
  if (result instanceof Promise) throw new Error('expected a synchronous result');
  return result;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('LastRefusal (through RateLimit)', () => {
  it('hands out the same frozen refusal while it reads the same, and a new one when a number changes', () => {
    let now = 0;
    const limit = new RateLimit<Req>({ limit: 1, windowMs: 60_000, clock: () => now });
    sync(limit.check(req()));
    const first = sync(limit.check(req()));
    now += 200; // 59.8 s still reads 60 s
    const second = sync(limit.check(req()));
    expect(second.action).toBe('deny');
    expect(second.answer).toBe(first.answer);
    expect(second.headers).toBe(first.headers);
    expect(Object.isFrozen(second.answer)).toBe(true);
    expect(Object.isFrozen(second.answer?.headers)).toBe(true);
    expect(Object.isFrozen(second.headers)).toBe(true);
    expect(Object.isFrozen(second.headers[0])).toBe(true);
    // Each request still gets its own result and its own outcome.
    expect(second).not.toBe(first);
    expect(second.outcomes[0]?.decision).not.toBe(first.outcomes[0]?.decision);
    now += 1000; // 58.8 s reads 59 s
    const third = sync(limit.check(req()));
    expect(third.answer).not.toBe(first.answer);
    expect(third.answer?.headers['retry-after']).toBe('59');
    expect(JSON.parse(third.answer?.body as string)).toMatchObject({ retryAfter: 59 });
  });

  it('is not used with partition keys: every bucket key has its own pk', () => {
    const limit = new RateLimit<Req>({ limit: 1, windowMs: 60_000, partitionKey: 'secret', clock: () => 0 });
    sync(limit.check(req('203.0.113.1')));
    sync(limit.check(req('203.0.113.2')));
    const one = sync(limit.check(req('203.0.113.1')));
    const two = sync(limit.check(req('203.0.113.2')));
    expect(one.action).toBe('deny');
    expect(two.action).toBe('deny');
    expect(one.headers).not.toEqual(two.headers);
  });

  it('reuses a refusal only when a freshly made one would read the same (any header mode, any timing)', () => {
    const modes: StandardHeaders[] = ['draft-8', 'draft-7', 'draft-6', false];
    fc.assert(
      fc.property(
        fc.constantFrom(...modes),
        fc.boolean(),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 120_000 }),
        fc.array(fc.record({ ms: fc.integer({ min: 0, max: 3_000 }), ip: fc.constantFrom('a', 'b') }), {
          minLength: 1,
          maxLength: 40,
        }),
        (standardHeaders, legacyHeaders, capacity, cost, windowMs, steps) => {
          vi.useFakeTimers({ now: 1_700_000_000_123 });
          let now = 0;
          const limit = new RateLimit<Req>({
            limit: capacity,
            windowMs,
            standardHeaders,
            legacyHeaders,
            cost: Math.min(cost, capacity),
            clock: () => now,
          });
          for (const step of steps) {
            now += step.ms;
            vi.advanceTimersByTime(step.ms);
            const result = sync(limit.check(req(step.ip)));
            if (result.action !== 'deny') continue;
            // What this request's own decision formats to, made afresh.
            const fresh = limit.headers.format(result.outcomes, legacyHeaders ? Date.now() : 0);
            expect(result.headers).toEqual(fresh);
            const seconds = retryAfterSeconds(result.outcomes[0]?.decision.retryAfterMs ?? 0);
            expect(result.answer?.headers['retry-after']).toBe(String(seconds));
            expect(JSON.parse(result.answer?.body as string).retryAfter).toBe(seconds);
          }
          vi.useRealTimers();
        },
      ),
      { numRuns: 300 },
    );
  });
});
