import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from './errors.js';
import { type DecisionLike, RateLimitHeaders } from './headers.js';

const allowed = (remaining: number, resetAfterMs = 17_000): DecisionLike => ({
  allowed: true,
  limit: 100,
  remaining,
  retryAfterMs: 0,
  resetAfterMs,
});
const denied: DecisionLike = {
  allowed: false,
  limit: 100,
  remaining: 0,
  retryAfterMs: 1_200,
  resetAfterMs: 60_000,
};
const perUser = { name: 'per-user', limit: 100, windowMs: 60_000 };
const gateway = { name: 'gateway', limit: 300, windowMs: 1_000 };
const NOW = 1_700_000_000_000;

describe('RateLimitHeaders', () => {
  it('draft-8 (default): named policies as Structured Fields', () => {
    const h = new RateLimitHeaders([perUser]);
    expect(h.format([{ policy: 0, key: 'ip:1', decision: allowed(42) }], NOW)).toEqual([
      ['ratelimit-policy', '"per-user";q=100;w=60'],
      ['ratelimit', '"per-user";r=42;t=17'],
    ]);
  });

  it('draft-8: several policies at once, Retry-After from the one that denied', () => {
    const h = new RateLimitHeaders([perUser, { ...gateway, limit: 100 }]);
    const out = h.format(
      [
        { policy: 0, key: 'user:1', decision: allowed(5, 1_500) },
        { policy: 1, key: 'global', decision: denied },
      ],
      NOW,
    );
    expect(out).toEqual([
      ['ratelimit-policy', '"per-user";q=100;w=60, "gateway";q=100;w=1'],
      ['ratelimit', '"per-user";r=5;t=2, "gateway";r=0;t=60'],
      ['retry-after', '2'],
    ]);
  });

  it('draft-8: pk is a keyed hash of the key, stable per secret, never the key itself', () => {
    const h = new RateLimitHeaders([perUser], { partitionKey: 'fleet-secret' });
    const out = h.format([{ policy: 0, key: '203.0.113.9', decision: allowed(1) }], NOW);
    const state = out.find(([n]) => n === 'ratelimit')?.[1] ?? '';
    expect(state).toMatch(/^"per-user";r=1;t=17;pk=:[A-Za-z0-9+/]{11}=:$/);
    expect(state).not.toContain('203.0.113.9');
    expect(
      new RateLimitHeaders([perUser], { partitionKey: 'fleet-secret' }).partitionKey('203.0.113.9'),
    ).toBe(h.partitionKey('203.0.113.9'));
    expect(new RateLimitHeaders([perUser], { partitionKey: 'other' }).partitionKey('203.0.113.9')).not.toBe(
      h.partitionKey('203.0.113.9'),
    );
    expect(new RateLimitHeaders([perUser]).partitionKey('x')).toBeUndefined();
  });

  it('draft-8: partitionKey true is one random secret per process, so every formatter hashes a key alike', () => {
    const a = new RateLimitHeaders([perUser], { partitionKey: true });
    const b = new RateLimitHeaders([perUser], { partitionKey: true });
    expect(a.partitionKey('203.0.113.9')).toMatch(/^:[A-Za-z0-9+/]{11}=:$/);
    // A route's variant of a rate limit (its own formatter, the same buckets) tells a client the same pk.
    expect(b.partitionKey('203.0.113.9')).toBe(a.partitionKey('203.0.113.9'));
    expect(a.partitionKey('203.0.113.10')).not.toBe(a.partitionKey('203.0.113.9'));
    // Not a fixed, guessable secret: not the one of a string any fleet may have chosen, such as ''.
    const fleet = new RateLimitHeaders([perUser], { partitionKey: 'fleet-secret' });
    expect(fleet.partitionKey('203.0.113.9')).not.toBe(a.partitionKey('203.0.113.9'));
  });

  it('draft-7: one combined field for the tightest policy', () => {
    const h = new RateLimitHeaders([perUser, gateway], { standardHeaders: 'draft-7' });
    expect(
      h.format(
        [
          { policy: 0, key: 'a', decision: allowed(42) },
          { policy: 1, key: 'b', decision: { ...allowed(3, 400), limit: 300 } },
        ],
        NOW,
      ),
    ).toEqual([
      ['ratelimit-policy', '300;w=1'],
      ['ratelimit', 'limit=300, remaining=3, reset=1'],
    ]);
  });

  it('draft-6: separate fields, Retry-After when denied', () => {
    const h = new RateLimitHeaders([perUser], { standardHeaders: 'draft-6' });
    expect(h.format([{ policy: 0, key: 'a', decision: denied }], NOW)).toEqual([
      ['ratelimit-policy', '100;w=60'],
      ['ratelimit-limit', '100'],
      ['ratelimit-remaining', '0'],
      ['ratelimit-reset', '60'],
      ['retry-after', '2'],
    ]);
  });

  it('legacy X-RateLimit-* with the reset as a Unix time in seconds, alone or with a draft', () => {
    const h = new RateLimitHeaders([perUser], { standardHeaders: false, legacyHeaders: true });
    expect(h.format([{ policy: 0, key: 'a', decision: allowed(42, 17_000) }], NOW)).toEqual([
      ['x-ratelimit-limit', '100'],
      ['x-ratelimit-remaining', '42'],
      ['x-ratelimit-reset', String(Math.ceil((NOW + 17_000) / 1000))],
    ]);
    const both = new RateLimitHeaders([perUser], { legacyHeaders: true });
    expect(both.format([{ policy: 0, key: 'a', decision: allowed(1) }], NOW).map(([n]) => n)).toEqual([
      'ratelimit-policy',
      'ratelimit',
      'x-ratelimit-limit',
      'x-ratelimit-remaining',
      'x-ratelimit-reset',
    ]);
  });

  it('escapes policy names as SF strings and rejects unprintable ones', () => {
    const h = new RateLimitHeaders([{ name: 'a"b\\c', limit: 1, windowMs: 500 }]);
    expect(h.format([{ policy: 0, key: 'k', decision: allowed(0, 0) }], NOW)[0]).toEqual([
      'ratelimit-policy',
      '"a\\"b\\\\c";q=1;w=1',
    ]);
    expect(() => new RateLimitHeaders([{ name: 'bad\nname', limit: 1, windowMs: 1 }])).toThrow(
      InvalidOptionError,
    );
  });

  it('validates its options', () => {
    expect(() => new RateLimitHeaders([perUser], { standardHeaders: 'draft-9' as never })).toThrow(
      /Expected `standardHeaders`.*"draft-9"/,
    );
    expect(() => new RateLimitHeaders([perUser], { legacyHeaders: 'yes' as never })).toThrow(/legacyHeaders/);
    expect(() => new RateLimitHeaders([perUser], { partitionKey: '' })).toThrow(/partitionKey/);
    expect(() => new RateLimitHeaders([perUser], { nope: 1 } as never)).toThrow(/Unknown option `nope`/);
  });

  it('sends nothing for no outcomes', () => {
    expect(new RateLimitHeaders([perUser]).format([], NOW)).toEqual([]);
  });
});
