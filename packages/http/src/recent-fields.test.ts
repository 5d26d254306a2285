import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DecisionLike, StandardHeaders } from './headers.js';
import { RateLimit, type RateLimitResult } from './rate-limit.js';
import { RecentFields } from './recent-fields.js';

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

const decision = (remaining: number, resetAfterMs: number, limit = 100): DecisionLike => ({
  allowed: true,
  limit,
  remaining,
  retryAfterMs: 0,
  resetAfterMs,
});

describe('RecentFields', () => {
  const kept = (): Array<[string, string]> => [['ratelimit', 'kept']];
  const NOW = 1_700_000_000_000;

  it('finds a reading it kept, whatever the milliseconds behind the same whole seconds', () => {
    const recent = new RecentFields();
    const fields = recent.keep(0, decision(7, 1_500), NOW, kept());
    expect(recent.find(0, decision(7, 1_900), NOW)).toBe(fields);
    expect(Object.isFrozen(fields)).toBe(true);
  });

  // Each pair lands in the same slot of the table and differs in one number the fields are made of: a
  // slot alone must never be taken for a match.
  it.each([
    ['the policy', 1, decision(1, 500), 0, 0],
    ['the limit', 0, decision(1, 500, 99), 0, 0],
    ['the remaining requests (64 apart)', 0, decision(65, 500), 0, 0],
    ['the reset seconds (8 apart)', 0, decision(1, 8_500), 0, 0],
    ['the legacy reset second', 0, decision(1, 500), NOW, NOW + 1_000],
  ] as const)('misses when %s differs', (_what, policy, other, keptAt, foundAt) => {
    const recent = new RecentFields();
    recent.keep(0, decision(1, 500), keptAt, kept());
    expect(recent.find(0, decision(1, 500), keptAt)).toBeDefined();
    expect(recent.find(policy, other, foundAt)).toBeUndefined();
  });
});

describe('RecentFields (through RateLimit)', () => {
  it('hands out the same frozen fields while an allowed answer reads the same, new ones when it changes', () => {
    let now = 0;
    const limit = new RateLimit<Req>({ limit: 1000, windowMs: 1000, clock: () => now });
    const first = sync(limit.check(req()));
    now += 1; // one token back: 999 left, full again 1 ms after this take (reads 0 s)
    const second = sync(limit.check(req()));
    expect(second.action).toBe('allow');
    expect(second.headers).toBe(first.headers);
    expect(second.headers).toEqual([
      ['ratelimit-policy', '"1000-in-1s";q=1000;w=1'],
      ['ratelimit', '"1000-in-1s";r=999;t=0'],
    ]);
    expect(Object.isFrozen(second.headers)).toBe(true);
    expect(Object.isFrozen(second.headers[1])).toBe(true);
    // Each request still gets its own result and outcomes.
    expect(second).not.toBe(first);
    expect(second.outcomes).not.toBe(first.outcomes);
    const third = sync(limit.check(req())); // no time passed: 998 left
    expect(third.headers).not.toBe(first.headers);
    expect(third.headers[1]).toEqual(['ratelimit', '"1000-in-1s";r=998;t=1']);
  });

  it('keeps the fields of several readings at once (clients at different points of their quota)', () => {
    const limit = new RateLimit<Req>({ limit: 10, windowMs: 60_000, clock: () => 0 });
    const a1 = sync(limit.check(req('203.0.113.1'))); // 9 left
    const a2 = sync(limit.check(req('203.0.113.1'))); // 8 left
    const b1 = sync(limit.check(req('203.0.113.2'))); // 9 left
    const b2 = sync(limit.check(req('203.0.113.2'))); // 8 left
    expect(b1.headers).toBe(a1.headers);
    expect(b2.headers).toBe(a2.headers);
    expect(a2.headers).not.toBe(a1.headers);
  });

  it('is not used with partition keys or for several policies: those fields are made per request', () => {
    const keyed = new RateLimit<Req>({ limit: 10, windowMs: 60_000, partitionKey: 'secret', clock: () => 0 });
    const one = sync(keyed.check(req('203.0.113.1')));
    const two = sync(keyed.check(req('203.0.113.2')));
    expect(one.headers).not.toEqual(two.headers);
    const both = new RateLimit<Req>({
      policies: [
        { name: 'per-ip', limit: 10 },
        { name: 'global', limit: 1000, key: () => 'all' },
      ],
      clock: () => 0,
    });
    const first = sync(both.check(req('203.0.113.1')));
    const again = sync(both.check(req('203.0.113.2')));
    expect(first.headers[1]?.[1]).toContain('"global";r=999');
    expect(again.headers[1]?.[1]).toContain('"global";r=998');
    expect(Object.isFrozen(first.headers)).toBe(false);
  });

  it('reuses fields only when freshly formatted ones would read the same (any header mode, any timing)', () => {
    const modes: StandardHeaders[] = ['draft-8', 'draft-7', 'draft-6', false];
    fc.assert(
      fc.property(
        fc.constantFrom(...modes),
        fc.boolean(),
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 120_000 }),
        fc.array(
          fc.record({ ms: fc.integer({ min: 0, max: 3_000 }), ip: fc.constantFrom('a', 'b', 'c', 'd') }),
          { minLength: 1, maxLength: 60 },
        ),
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
            if (result.action !== 'allow') continue;
            // What this request's own decision formats to, made afresh.
            const fresh = limit.headers.format(result.outcomes, legacyHeaders ? Date.now() : 0);
            expect(result.headers).toEqual(fresh);
          }
          vi.useRealTimers();
        },
      ),
      { numRuns: 300 },
    );
  });
});
