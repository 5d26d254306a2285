import type { BucketSpec, LimiterStore, StoreDecision } from '@floodgate/token-bucket';
import { keyedLimiter, memoryStore } from '@floodgate/token-bucket';
import { describe, expect, it, vi } from 'vitest';
import { InvalidCostError, InvalidKeyError, InvalidOptionError } from './errors.js';
import { RateLimit, type RateLimitOptions, type RateLimitResult } from './rate-limit.js';

// Counts the limiters a RateLimit builds, so a test can tell that a bad option threw before any was.
const built = vi.hoisted(() => ({ limiters: 0 }));
vi.mock('./limiter.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('./limiter.js')>();
  return {
    ...actual,
    createKeyedLimiter: (...args: Parameters<typeof actual.createKeyedLimiter>) => {
      built.limiters += 1;
      return actual.createKeyedLimiter(...args);
    },
  };
});

interface Req {
  ip?: string;
  headers: Record<string, string | undefined>;
  user?: string;
  path?: string;
}

function clocked(options: RateLimitOptions<Req>) {
  let now = 0;
  const limit = new RateLimit<Req>({ clock: () => now, ...options });
  return { limit, advance: (ms: number) => (now += ms) };
}

const req = (ip = '203.0.113.9', extra: Partial<Req> = {}): Req => ({ ip, headers: {}, ...extra });

function sync(result: RateLimitResult | Promise<RateLimitResult>): RateLimitResult {
  if (result instanceof Promise) throw new Error('expected a synchronous result');
  return result;
}

const header = (result: RateLimitResult, name: string) => result.headers.find(([n]) => n === name)?.[1];

describe('RateLimit', () => {
  it('allows the burst, then refuses with 429 problem+json, Retry-After and headers, synchronously', () => {
    const { limit } = clocked({ limit: 2, windowMs: 60_000 });
    const first = sync(limit.check(req()));
    expect(first.action).toBe('allow');
    expect(header(first, 'ratelimit-policy')).toBe('"2-in-60s";q=2;w=60');
    expect(header(first, 'ratelimit')).toBe('"2-in-60s";r=1;t=30');
    expect(sync(limit.check(req())).action).toBe('allow');
    const third = sync(limit.check(req()));
    expect(third.action).toBe('deny');
    expect(third.answer?.status).toBe(429);
    expect(third.answer?.headers['content-type']).toBe('application/problem+json');
    expect(header(third, 'retry-after')).toBe('30');
    expect(JSON.parse(third.answer?.body as string)).toMatchObject({
      code: 'ERR_RATE_LIMITED',
      policy: '2-in-60s',
      retryAfter: 30,
    });
  });

  it('names a default policy after its limit and window, without float noise', () => {
    const hour = new RateLimit<Req>({ limit: 1, windowMs: 3_600_000 });
    expect(header(sync(hour.check(req())), 'ratelimit-policy')).toBe('"1-in-3600s";q=1;w=3600');
    const odd = new RateLimit<Req>({ limit: 3, windowMs: 10_000 });
    expect(header(sync(odd.check(req())), 'ratelimit-policy')).toBe('"3-in-10s";q=3;w=10');
  });

  it('refills with time, per client key', () => {
    const { limit, advance } = clocked({ limit: 1, windowMs: 1000 });
    expect(sync(limit.check(req())).action).toBe('allow');
    expect(sync(limit.check(req())).action).toBe('deny');
    expect(sync(limit.check(req('198.51.100.1'))).action).toBe('allow');
    advance(1000);
    expect(sync(limit.check(req())).action).toBe('allow');
  });

  it('groups IPv6 clients by /56 (configurable) in the default key', () => {
    const { limit } = clocked({ limit: 1 });
    expect(sync(limit.check(req('2001:db8:1:100::1'))).action).toBe('allow');
    expect(sync(limit.check(req('2001:db8:1:1ff::2'))).action).toBe('deny');
    const { limit: per64 } = clocked({ limit: 1, ipv6Subnet: 64 });
    expect(sync(per64.check(req('2001:db8:1:100::1'))).action).toBe('allow');
    expect(sync(per64.check(req('2001:db8:1:101::1'))).action).toBe('allow');
  });

  it('checks several policies at once; a refusal gives back what the others took', () => {
    const { limit } = clocked({
      policies: [
        { name: 'per-user', limit: 1, key: (r) => (r.user === undefined ? undefined : `user:${r.user}`) },
        { name: 'global', limit: 3, key: () => 'global' },
      ],
    });
    const a = sync(limit.check(req('1.1.1.1', { user: 'a' })));
    expect(header(a, 'ratelimit')).toBe('"per-user";r=0;t=60, "global";r=2;t=20');
    const denied = sync(limit.check(req('1.1.1.1', { user: 'a' })));
    expect(denied.action).toBe('deny');
    expect(header(denied, 'ratelimit')).toBe('"per-user";r=0;t=60');
    // The global bucket was not charged for the refused request: two more users fit.
    expect(sync(limit.check(req('1.1.1.2', { user: 'b' }))).action).toBe('allow');
    expect(sync(limit.check(req('1.1.1.3', { user: 'c' }))).action).toBe('allow');
    const global = sync(limit.check(req('1.1.1.4', { user: 'd' })));
    expect(global.action).toBe('deny');
    expect(JSON.parse(global.answer?.body as string).policy).toBe('global');
  });

  it('charges the cost of the request', () => {
    const { limit } = clocked({ limit: 10, cost: (r) => (r.path === '/search' ? 5 : 1) });
    expect(header(sync(limit.check(req('1.1.1.1', { path: '/search' }))), 'ratelimit')).toContain('r=5;');
    expect(header(sync(limit.check(req('1.1.1.1', { path: '/' }))), 'ratelimit')).toContain('r=4;');
  });

  it('skip and allowList bypass counting and headers', async () => {
    const { limit } = clocked({
      limit: 1,
      skip: (r) => r.path === '/health',
      allowList: ['10.0.0.1', '2001:db8:9::/56'],
    });
    for (let i = 0; i < 3; i += 1) {
      expect(sync(limit.check(req('1.1.1.1', { path: '/health' })))).toMatchObject({
        action: 'skip',
        headers: [],
      });
      expect(sync(limit.check(req('10.0.0.1'))).action).toBe('skip');
      expect(sync(limit.check(req('2001:db8:9:0:1::1'))).action).toBe('skip');
    }
    const { limit: fn } = clocked({
      limit: 1,
      allowList: (_r, key) => key.startsWith('192.168.'),
      skip: async () => false,
    });
    expect((await fn.check(req('192.168.1.1'))).action).toBe('skip');
    expect((await fn.check(req('1.1.1.1'))).action).toBe('allow');
    expect((await fn.check(req('1.1.1.1'))).action).toBe('deny');
  });

  it('dry-run counts and reports but never refuses, and tells onLimit', () => {
    const onLimit = vi.fn();
    const { limit } = clocked({ limit: 1, dryRun: true, onLimit });
    sync(limit.check(req()));
    const over = sync(limit.check(req()));
    expect(over).toMatchObject({ action: 'allow', limited: true });
    expect(header(over, 'retry-after')).toBeUndefined();
    expect(header(over, 'ratelimit')).toContain('r=0');
    expect(onLimit).toHaveBeenCalledTimes(1);
  });

  it('dry run asks every policy for every request: what each would refuse does not depend on their order', () => {
    const strict = { name: 'strict', limit: 2, windowMs: 60_000 };
    const loose = { name: 'loose', limit: 3, windowMs: 60_000 };
    for (const policies of [
      [strict, loose],
      [loose, strict],
    ]) {
      const refusals = new Map<string | undefined, number>();
      const onLimit = vi.fn((_req: Req, result: RateLimitResult) => {
        for (const { policy, decision } of result.outcomes) {
          const name = policies[policy]?.name;
          if (!decision.allowed) refusals.set(name, (refusals.get(name) ?? 0) + 1);
        }
      });
      const { limit } = clocked({ dryRun: true, onLimit, policies });
      const results = Array.from({ length: 5 }, () => sync(limit.check(req())));
      expect(results.map((r) => r.action)).toEqual(['allow', 'allow', 'allow', 'allow', 'allow']);
      expect(results.map((r) => r.outcomes.length)).toEqual([2, 2, 2, 2, 2]);
      // strict lets 2 of the 5 through, loose 3, whichever comes first.
      expect(Object.fromEntries(refusals)).toEqual({ strict: 3, loose: 2 });
      expect(onLimit).toHaveBeenCalledTimes(3);
    }
  });

  it('dry run with several policies sends the fields an enforced limit would, less Retry-After', () => {
    for (const standardHeaders of ['draft-8', 'draft-7'] as const) {
      // Both refuse the second request; `slow` would tell the client to wait longer, but `fast` refuses first.
      const options: RateLimitOptions<Req> = {
        standardHeaders,
        policies: [
          { name: 'fast', limit: 1, windowMs: 10_000 },
          { name: 'slow', limit: 1, windowMs: 60_000 },
        ],
      };
      const { limit: dry } = clocked({ ...options, dryRun: true });
      const { limit: enforced } = clocked(options);
      expect(sync(dry.check(req())).headers).toEqual(sync(enforced.check(req())).headers);
      const wouldRefuse = sync(dry.check(req()));
      const refused = sync(enforced.check(req()));
      expect(refused.action).toBe('deny');
      expect(wouldRefuse.outcomes.map((o) => o.decision.allowed)).toEqual([false, false]);
      expect(wouldRefuse.headers).toEqual(refused.headers.filter(([name]) => name !== 'retry-after'));
    }
  });

  it('works with an asynchronous store (a promise per request)', async () => {
    const memory = memoryStore();
    const store: LimiterStore = {
      consume: async (key: string, cost: number, spec: BucketSpec) => memory.consume(key, cost, spec),
      refund: async (key: string, cost: number, spec: BucketSpec) => memory.refund(key, cost, spec),
      close: () => memory.close(),
    };
    const limit = new RateLimit<Req>({ limit: 1, store });
    const first = limit.check(req());
    expect(first).toBeInstanceOf(Promise);
    expect((await first).action).toBe('allow');
    expect((await limit.check(req())).action).toBe('deny');
    await limit.close();
    memory.close();
  });

  it('a failing store answers 503 (or passes with passOnStoreError), never throws', async () => {
    const failing: LimiterStore = {
      consume: (): Promise<StoreDecision> => Promise.reject(new Error('down')),
      refund: () => {},
      close: () => {},
    };
    const onError = vi.fn();
    const closed = new RateLimit<Req>({ limit: 1, store: failing, onError });
    const result = await closed.check(req());
    expect(result.action).toBe('deny');
    expect(result.answer?.status).toBe(503);
    expect(result.answer?.headers['retry-after']).toBe('1');
    expect(onError).toHaveBeenCalledTimes(1);
    const open = new RateLimit<Req>({ limit: 1, store: failing, passOnStoreError: true });
    expect((await open.check(req())).action).toBe('skip');
    const throwing: LimiterStore = {
      consume: () => {
        throw new Error('sync failure');
      },
      refund: () => {},
      close: () => {},
    };
    expect((await new RateLimit<Req>({ limit: 1, store: throwing }).check(req())).answer?.status).toBe(503);
  });

  it('refund gives back what an allowed result took from every policy; a refusal or skip holds nothing', () => {
    const { limit } = clocked({
      policies: [
        { name: 'per-user', limit: 4, key: (r) => `user:${r.user}` },
        { name: 'global', limit: 10, key: () => 'global' },
      ],
    });
    const expensive = limit.derive({ cost: 3 });
    const taken = sync(expensive.check(req('1.1.1.1', { user: 'a' })));
    expect(header(taken, 'ratelimit')).toBe('"per-user";r=1;t=45, "global";r=7;t=18');
    // The root gives back what its same-bucket variant took: both policies, at the variant's cost.
    limit.refund(taken);
    expect(header(sync(limit.check(req('1.1.1.1', { user: 'a' }))), 'ratelimit')).toBe(
      '"per-user";r=3;t=15, "global";r=9;t=6',
    );
    const denied = sync(limit.derive({ cost: 4 }).check(req('1.1.1.1', { user: 'a' })));
    expect(denied.action).toBe('deny');
    limit.refund(denied);
    const { limit: skipping } = clocked({ limit: 2, skip: () => true });
    skipping.refund(sync(skipping.check(req())));
    expect(header(sync(limit.check(req('1.1.1.1', { user: 'a' }))), 'ratelimit')).toBe(
      '"per-user";r=2;t=30, "global";r=8;t=12',
    );
  });

  it('derive: a cost override shares the buckets, a policy override gets its own', () => {
    const { limit } = clocked({ limit: 10 });
    const expensive = limit.derive({ cost: 4 });
    expect(header(sync(expensive.check(req())), 'ratelimit')).toContain('r=6;');
    expect(header(sync(limit.check(req())), 'ratelimit')).toContain('r=5;');
    const own = limit.derive({ limit: 3 });
    expect(header(sync(own.check(req())), 'ratelimit')).toBe('"3-in-60s";r=2;t=20');
    const legacy = limit.derive({ standardHeaders: false, legacyHeaders: true });
    expect(header(sync(legacy.check(req())), 'x-ratelimit-remaining')).toBe('4');
    // With partitionKey: true a variant names the bucket it shares with the same pk.
    const { limit: keyed } = clocked({ limit: 10, partitionKey: true });
    const pk = (result: RateLimitResult) => /;pk=(:[^:]+:)$/.exec(header(result, 'ratelimit') ?? '')?.[1];
    const base = sync(keyed.check(req()));
    expect(pk(base)).toBeDefined();
    expect(pk(sync(keyed.derive({ cost: 2 }).check(req())))).toBe(pk(base));
  });

  it('validates options at construction', () => {
    expect(() => new RateLimit<Req>({})).toThrow(/Expected `limit`/);
    expect(() => new RateLimit<Req>({ limit: 0 })).toThrow(InvalidOptionError);
    expect(() => new RateLimit<Req>({ limit: 1, windowMs: -1 })).toThrow(/windowMs/);
    expect(() => new RateLimit<Req>({ limit: 1, max: 5 } as never)).toThrow(/Unknown option `max`/);
    expect(() => new RateLimit<Req>({ limit: 1, policies: [{ limit: 2 }] })).toThrow(/`limit`.*absent/);
    expect(
      () =>
        new RateLimit<Req>({
          policies: [
            { limit: 1, name: 'a' },
            { limit: 2, name: 'a' },
          ],
        }),
    ).toThrow(/name/);
    expect(() => new RateLimit<Req>({ policies: [{ limit: 1, windowms: 2 } as never] })).toThrow(
      /Unknown option/,
    );
    expect(() => new RateLimit<Req>({ limit: 1, cost: 0 })).toThrow(/`cost`/);
    expect(() => new RateLimit<Req>({ limit: 3, cost: 4 })).toThrow(/`cost`.* 3,/);
    expect(() => new RateLimit<Req>({ limit: 1, statusCode: 200 })).toThrow(/statusCode/);
    expect(() => new RateLimit<Req>({ limit: 1, allowList: 'x' as never })).toThrow(/allowList/);
    // A mistaken store is named by its keys, never its values (a URL may carry a password).
    let message = '';
    try {
      new RateLimit<Req>({ limit: 1, store: { url: 'redis://:s3cret@cache:6379' } as never });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('`{ url }` (object)');
    expect(message).not.toContain('s3cret');
  });

  it('validates every option before it builds a limiter: a bad one throws with nothing built', () => {
    const before = built.limiters;
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ limit: 5, statusCode: 200 }, 'statusCode', '`200` (number)'],
      [{ limit: 5, statusCode: '429' }, 'statusCode', '`"429"` (string)'],
      [{ limit: 5, standardHeaders: true }, 'standardHeaders', '`true` (boolean)'],
      [{ limit: 5, partitionKey: '' }, 'partitionKey', '`""` (string)'],
      [{ limit: 5, name: 'caf\u00e9' }, 'name', '`"caf\u00e9"` (string)'],
      [{ limit: 5, cost: 6 }, 'cost', '`6` (number)'],
      [{ limit: 5, skip: true }, 'skip', '`true` (boolean)'],
      [{ limit: 5, allowList: [1] }, 'allowList', '`[1]` (array)'],
      [{ limit: 5, ipv6Subnet: 129 }, 'ipv6Subnet', '`129` (number)'],
      [{ limit: 5, dryRun: 'yes' }, 'dryRun', '`"yes"` (string)'],
      [{ limit: 5, passOnStoreError: 1 }, 'passOnStoreError', '`1` (number)'],
      [{ limit: 5, requestWasSuccessful: 'x' }, 'requestWasSuccessful', '`"x"` (string)'],
      [{ limit: 5, onLimit: 'x' }, 'onLimit', '`"x"` (string)'],
      [{ limit: 5, onError: 'x' }, 'onError', '`"x"` (string)'],
      [{ limit: 5, store: {} }, 'store', '`{}` (object)'],
      [
        {
          policies: [
            { name: 'a', limit: 5 },
            { name: 'b', limit: 5, key: 'x' },
          ],
        },
        'policies[1].key',
        '`"x"` (string)',
      ],
      [
        {
          policies: [
            { name: 'a', limit: 5 },
            { name: 'a', limit: 9 },
          ],
        },
        'policies[1].name',
        '`"a"` (string)',
      ],
      [
        {
          policies: [
            { name: 'a', limit: 5 },
            { name: 'b', limit: 0 },
          ],
        },
        'policies[1].limit',
        '`0` (number)',
      ],
    ];
    for (const [options, option, value] of cases) {
      let error: unknown;
      try {
        new RateLimit<Req>(options as never);
      } catch (thrown) {
        error = thrown;
      }
      expect(built.limiters - before, `limiters built before \`${option}\` threw`).toBe(0);
      expect(error, option).toBeInstanceOf(InvalidOptionError);
      expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option });
      expect((error as Error).message).toMatch(
        new RegExp(`^Expected \`${option.replace(/[[\].]/g, '\\$&')}\``),
      );
      expect((error as Error).message).toContain(`got ${value}`);
    }
    // The count does see a limiter being built.
    new RateLimit<Req>({ limit: 5, statusCode: 503 });
    expect(built.limiters).toBe(before + 1);
  });

  it("a policy with its own store keeps it: maxKeys and clock are the memory stores' (InvalidOptionError of ours)", async () => {
    const memory = memoryStore();
    const store: LimiterStore = {
      consume: (key, cost, spec) => memory.consume(key, cost, spec),
      refund: (key, cost, spec) => memory.refund(key, cost, spec),
      close: () => {},
    };
    let now = 0;
    const limit = new RateLimit<Req>({
      maxKeys: 1,
      clock: () => now,
      policies: [
        { name: 'local', limit: 1 },
        { name: 'shared', limit: 1, store, key: () => 'everyone' },
      ],
    });
    expect((await limit.check(req())).action).toBe('allow');
    now += 60_000;
    // The memory policy runs on the injected clock (full again); the store's bucket on its own (still empty).
    const second = await limit.check(req());
    expect(second.outcomes.map((o) => o.decision.allowed)).toEqual([true, false]);
    await limit.close();
    memory.close();
    // A store that is none is named as the rate limit names its options, with this package's error class.
    let error: unknown;
    try {
      new RateLimit<Req>({ policies: [{ name: 'a', limit: 1, store: { consume: 1 } as never }] });
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error).toMatchObject({ option: 'policies[0].store' });
  });

  it('detail: the text of every refusal, its code, policy and retryAfter kept; a route override may change it', () => {
    const { limit } = clocked({
      name: 'login',
      limit: 1,
      detail: 'Too many sign-in attempts; try again later',
    });
    sync(limit.check(req()));
    const denied = sync(limit.check(req()));
    expect(denied.action).toBe('deny');
    expect(JSON.parse(denied.answer?.body as string)).toEqual({
      type: 'about:blank',
      title: 'Too Many Requests',
      status: 429,
      detail: 'Too many sign-in attempts; try again later',
      code: 'ERR_RATE_LIMITED',
      policy: 'login',
      retryAfter: 60,
    });
    // A detail-only override spends from the same bucket (already empty) and answers with its own text.
    const route = limit.derive({ detail: 'Slow down "here"' });
    expect(JSON.parse(sync(route.check(req())).answer?.body as string).detail).toBe('Slow down "here"');
    expect(() => new RateLimit<Req>({ limit: 1, detail: '' })).toThrow(
      'Expected `detail` to be a non-empty string, got `""` (string)',
    );
    expect(() => new RateLimit<Req>({ limit: 1, detail: { error: 'x' } as never })).toThrow(
      InvalidOptionError,
    );
  });

  it('detail: the default text when it is not set', () => {
    const { limit } = clocked({ limit: 1 });
    sync(limit.check(req()));
    expect(JSON.parse(sync(limit.check(req())).answer?.body as string).detail).toBe(
      'Too many requests; retry after the time given in Retry-After',
    );
  });

  it("an option named as express-rate-limit or @fastify/rate-limit name it fails with floodgate's name for it", () => {
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ limit: 1, max: 5 }, 'max', /it is `limit` here/],
      [{ limit: 1, timeWindow: 1000 }, 'timeWindow', /it is `windowMs` here, in milliseconds/],
      [{ limit: 1, keyGenerator: () => 'k' }, 'keyGenerator', /it is `key` here/],
      [{ limit: 1, message: 'slow down' }, 'message', /`detail` here/],
      [{ limit: 1, skipOnError: true }, 'skipOnError', /it is `passOnStoreError` here/],
      [{ limit: 1, requestPropertyName: 'rateLimit' }, 'requestPropertyName', /request\.floodgateRateLimit/],
      [{ policies: [{ limit: 1, max: 2 }] }, 'max', /it is `limit` here/],
      // The @fastify/rate-limit options its README maps to floodgate's, and those it has no counterpart for.
      [{ limit: 1, groupId: 'g' }, 'groupId', /pass one `limiter`/],
      [{ limit: 1, addHeaders: {} }, 'addHeaders', /`standardHeaders` and `legacyHeaders`/],
      [
        { limit: 1, addHeadersOnExceeding: {} },
        'addHeadersOnExceeding',
        /`standardHeaders` and `legacyHeaders`/,
      ],
      [{ limit: 1, ban: 3 }, 'ban', /token bucket refuses until tokens refill/],
      [
        { limit: 1, continueExceeding: true },
        'continueExceeding',
        /token bucket refuses until tokens refill/,
      ],
      [
        { limit: 1, exponentialBackoff: true },
        'exponentialBackoff',
        /token bucket refuses until tokens refill/,
      ],
    ];
    for (const [options, option, hint] of cases) {
      let error: unknown;
      try {
        new RateLimit<Req>(options as never);
      } catch (thrown) {
        error = thrown;
      }
      expect(error).toBeInstanceOf(InvalidOptionError);
      expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option });
      expect((error as Error).message).toMatch(new RegExp(`^Unknown option \`${option}\` for `));
      expect((error as Error).message).toMatch(hint);
      expect((error as Error).message).toMatch(/; expected one of `name`/);
    }
    // A typo of no other library's name gets no hint; nor does a name inherited from Object.prototype.
    expect(() => new RateLimit<Req>({ limit: 1, limt: 2 } as never)).toThrow(
      /^Unknown option `limt` for rateLimit\(\); expected one of/,
    );
    expect(() => new RateLimit<Req>({ limit: 1, toString: 2 } as never)).toThrow(
      /^Unknown option `toString` for rateLimit\(\); expected one of/,
    );
  });

  it('a key function answering a number keys its decimal string, as @fastify/rate-limit allows', () => {
    const { limit } = clocked({ limit: 1, key: (r) => (r.user === undefined ? undefined : Number(r.user)) });
    expect(sync(limit.check(req('203.0.113.1', { user: '7' }))).action).toBe('allow');
    // Same user from another address: the same bucket, and the string '7' is that bucket too.
    expect(sync(limit.check(req('203.0.113.2', { user: '7' }))).action).toBe('deny');
    const { limit: byString } = clocked({ limit: 1, key: () => '7' });
    expect(sync(byString.check(req())).outcomes[0]?.key).toBe('7');
    expect(sync(limit.check(req('203.0.113.3', { user: '8' }))).outcomes[0]?.key).toBe('8');
  });

  it('a bucket key longer than 256 characters reaches the store as a hash of it: memory per key stays bounded', async () => {
    const memory = memoryStore();
    const keys: string[] = [];
    const recording: LimiterStore = {
      consume: (key: string, cost: number, spec: BucketSpec) => {
        keys.push(key);
        return memory.consume(key, cost, spec);
      },
      refund: (key: string, cost: number, spec: BucketSpec) => memory.refund(key, cost, spec),
      close: () => memory.close(),
    };
    const long = (tail: string) => `${'u'.repeat(15_000)}${tail}`;
    // A custom key of a long id, and the default key of an address no socket has (a 15 KB
    // X-Forwarded-For entry taken as req.ip with trust proxy on).
    const byHeader = new RateLimit<Req>({ limit: 1, store: recording, key: (r) => r.user });
    const byAddress = new RateLimit<Req>({ limit: 1, store: recording });
    expect((await byHeader.check(req('203.0.113.9', { user: long('a') }))).action).toBe('allow');
    expect((await byHeader.check(req('203.0.113.9', { user: long('a') }))).action).toBe('deny');
    expect((await byHeader.check(req('203.0.113.9', { user: long('b') }))).action).toBe('allow');
    expect((await byAddress.check(req(long('c')))).action).toBe('allow');
    expect((await byAddress.check(req(long('c')))).action).toBe('deny');
    expect((await byAddress.check(req(long('d')))).action).toBe('allow');
    expect(keys).toHaveLength(6);
    for (const key of keys) expect(key.length).toBeLessThanOrEqual(256);
    expect(new Set(keys).size).toBe(4);
    // A key of 256 characters or fewer is the store's key as it is.
    expect((await byHeader.check(req('203.0.113.9', { user: 'k'.repeat(256) }))).action).toBe('allow');
    expect(keys.at(-1)).toBe('k'.repeat(256));
    memory.close();
  });

  it('a key function answering what names no bucket rejects with InvalidKeyError, never a 503, and gives back what was taken', async () => {
    const onError = vi.fn();
    for (const bad of [null, true, { id: 7 }, Number.NaN, Number.POSITIVE_INFINITY, ['7']]) {
      const { limit } = clocked({
        policies: [
          { name: 'global', limit: 1, key: () => 'global' },
          { name: 'per-user', limit: 5, key: (r) => (r.user === 'bad' ? (bad as never) : 'good') },
        ],
        onError,
      });
      const error = await Promise.resolve(limit.check(req('203.0.113.9', { user: 'bad' }))).then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(InvalidKeyError);
      expect(error).toMatchObject({ code: 'ERR_INVALID_KEY', key: bad });
      expect((error as Error).message).toMatch(
        /^Expected `key` to return a string, a finite number or undefined, got /,
      );
      // The one global token the refused request took was given back.
      expect(sync(limit.check(req())).action).toBe('allow');
      expect(onError).not.toHaveBeenCalled();
    }
    // An asynchronous key function answering the same rejects alike.
    const { limit } = clocked({ limit: 1, key: async () => ({}) as never });
    await expect(limit.check(req())).rejects.toBeInstanceOf(InvalidKeyError);
  });

  it('rejects (for the framework error handler) when a cost function misbehaves', async () => {
    const limit = new RateLimit<Req>({ limit: 1, cost: () => Number.NaN });
    await expect(limit.check(req())).rejects.toThrow(/cost/);
    const tooDear = new RateLimit<Req>({ limit: 2, cost: () => 3 });
    await expect(tooDear.check(req())).rejects.toThrow(/cost/);
    await expect(tooDear.check(req())).rejects.toMatchObject({
      code: 'ERR_INVALID_COST',
      cost: 3,
      maxCost: 2,
    });
    await expect(tooDear.check(req())).rejects.toBeInstanceOf(InvalidCostError);
  });

  it('rejects with InvalidCostError for a cost a client wrote (a field of its body), quoting only a bounded part', async () => {
    // `cost: (req) => req.body.quantity` is a common slip: the client then chooses the value. Its message
    // goes to the framework's error handler and the logs, so it must not grow with the request, and
    // `{"toString":1}` (which String() cannot convert) must not turn the rejection into a synchronous throw.
    const body = JSON.parse(`{"long":"${'9'.repeat(15_000)}","object":{"toString":1}}`) as {
      long: string;
      object: object;
    };
    for (const quantity of [body.long, body.object]) {
      const limit = new RateLimit<Req>({ limit: 2, cost: () => quantity as never });
      const error = await new Promise((resolve) => resolve(limit.check(req()))).then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(InvalidCostError);
      expect(error).toMatchObject({ code: 'ERR_INVALID_COST', cost: quantity, maxCost: 2 });
      expect((error as Error).message.length).toBeLessThan(200);
    }
    const limit = new RateLimit<Req>({ limit: 2, cost: () => body.long as never });
    await expect(limit.check(req())).rejects.toThrow(
      `Expected \`cost\` to return a number > 0 and <= 2, got \`"${'9'.repeat(64)}…"\` (string)`,
    );
  });

  it('key, cost and allowList functions that throw make check reject, and give back what was taken', async () => {
    const shared = keyedLimiter({ capacity: 3, refillRate: { tokens: 3, perMs: 3_600_000 } });
    const limit = new RateLimit<Req>({
      policies: [
        { name: 'global', limiter: shared, key: () => 'g' },
        {
          name: 'user',
          limit: 10,
          key: (r) => {
            if (r.user === undefined) throw new Error('no user');
            return r.user;
          },
        },
      ],
    });
    for (let i = 0; i < 3; i += 1) {
      let result: unknown;
      expect(() => {
        result = limit.check(req());
      }).not.toThrow();
      await expect(result).rejects.toThrow('no user');
    }
    // Three failed requests took nothing from the global bucket: the fourth sees two left after its own.
    const ok = await limit.check(req(undefined, { user: 'u' }));
    expect(ok.outcomes.map((o) => [o.key, o.decision.allowed, o.decision.remaining])).toEqual([
      ['g', true, 2],
      ['u', true, 9],
    ]);
    const boom = () => {
      throw new Error('boom');
    };
    for (const options of [
      { limit: 5, cost: boom },
      { limit: 5, allowList: boom },
    ] as RateLimitOptions<Req>[]) {
      const thrower = new RateLimit<Req>(options);
      let result: unknown;
      expect(() => {
        result = thrower.check(req());
      }).not.toThrow();
      await expect(result).rejects.toThrow('boom');
    }
  });

  it('dry run: a key function that throws rejects too and gives back what earlier policies took; so does skip', async () => {
    const shared = keyedLimiter({ capacity: 3, refillRate: { tokens: 3, perMs: 3_600_000 } });
    const limit = new RateLimit<Req>({
      dryRun: true,
      policies: [
        { name: 'global', limiter: shared, key: () => 'g' },
        {
          name: 'user',
          limit: 10,
          key: () => {
            throw new Error('no user');
          },
        },
      ],
    });
    await expect(limit.check(req())).rejects.toThrow('no user');
    expect(shared.tryTake('g', 1)).toMatchObject({ allowed: true, remaining: 2 });
    const skipping = new RateLimit<Req>({
      limit: 5,
      dryRun: true,
      skip: () => {
        throw new Error('skip broke');
      },
    });
    let result: unknown;
    expect(() => {
      result = skipping.check(req());
    }).not.toThrow();
    await expect(result).rejects.toThrow('skip broke');
  });

  it('dry run: a store failure lets the request through (reported) and gives back what the others took', async () => {
    const shared = keyedLimiter({ capacity: 3, refillRate: { tokens: 3, perMs: 3_600_000 } });
    const failing: LimiterStore = {
      consume: (): Promise<StoreDecision> => Promise.reject(new Error('down')),
      refund: () => {},
      close: () => {},
    };
    const onError = vi.fn();
    const limit = new RateLimit<Req>({
      dryRun: true,
      onError,
      policies: [
        { name: 'global', limiter: shared, key: () => 'g' },
        { name: 'remote', limit: 5, store: failing },
      ],
    });
    const result = await limit.check(req());
    expect(result.action).toBe('skip');
    expect(result.answer).toBeUndefined();
    expect(onError).toHaveBeenCalledOnce();
    // Given back: the next take leaves 2 of 3 (1 without the refund).
    expect(shared.tryTake('g', 1)).toMatchObject({ allowed: true, remaining: 2 });
    const single = new RateLimit<Req>({ limit: 1, dryRun: true, store: failing });
    expect((await single.check(req())).action).toBe('skip');
  });

  it('an onLimit that throws goes to onError; the refusal is answered all the same', () => {
    const onError = vi.fn();
    const metricsDown = new Error('metrics down');
    const { limit } = clocked({
      limit: 1,
      onLimit: () => {
        throw metricsDown;
      },
      onError,
    });
    sync(limit.check(req()));
    const refused = sync(limit.check(req()));
    expect(refused.action === 'deny' && refused.answer.status).toBe(429);
    expect(onError).toHaveBeenCalledWith(metricsDown);
  });

  it('close() closes the limiters it made, never a store or a limiter passed in', async () => {
    const memory = memoryStore();
    const store: LimiterStore = {
      consume: (key, cost, spec) => memory.consume(key, cost, spec),
      refund: (key, cost, spec) => memory.refund(key, cost, spec),
      close: vi.fn(),
    };
    const limiter = keyedLimiter({ capacity: 5, refillRate: { tokens: 5, perMs: 1000 } });
    const limit = new RateLimit<Req>({
      policies: [
        { name: 'own', limit: 5 },
        { name: 'stored', limit: 5, store },
        { name: 'given', limiter },
      ],
    });
    expect((await limit.check(req())).action).toBe('allow');
    await limit.close();
    expect(store.close).not.toHaveBeenCalled();
    // The limiter passed in still answers; one the rate limit made does not.
    expect(limiter.tryTake('k').allowed).toBe(true);
    expect(await limit.check(req())).toMatchObject({ action: 'deny', answer: { status: 503 } });
    memory.close();
    await limiter.close();
  });

  it('an onError that throws changes nothing: still a 503, never a throw nor an unhandled rejection', async () => {
    const unhandled = vi.fn();
    process.on('unhandledRejection', unhandled);
    try {
      const throwing: LimiterStore = {
        consume: () => {
          throw new Error('store down');
        },
        refund: () => Promise.reject(new Error('refund failed')),
        close: () => {},
      };
      const onError = () => {
        throw new Error('logger broke');
      };
      const single = new RateLimit<Req>({ limit: 1, store: throwing, onError });
      expect((await single.check(req())).answer?.status).toBe(503);
      const refunding: LimiterStore = {
        consume: (key, cost, spec) => memoryStore().consume(key, cost, spec),
        refund: () => Promise.reject(new Error('refund failed')),
        close: () => {},
      };
      const two = new RateLimit<Req>({
        onError,
        policies: [
          { name: 'a', limit: 5, store: refunding },
          { name: 'b', limit: 5, store: throwing },
        ],
      });
      expect((await two.check(req())).answer?.status).toBe(503);
      // Let Node look for unhandled rejections (it does after the microtask queue drains).
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });

  it('validates limit and windowMs as Structured Field integers, and maxKeys/clock next to a limiter', () => {
    const limiter = keyedLimiter({ capacity: 5, refillRate: { tokens: 5, perMs: 1000 } });
    expect(() => new RateLimit<Req>({ limit: 2.5 })).toThrow(/`limit` to be an integer .* got `2.5`/);
    expect(() => new RateLimit<Req>({ limit: 1e21 })).toThrow(/`limit`.*999999999999999.*got `1e\+21`/);
    expect(() => new RateLimit<Req>({ limit: 10, windowMs: 1e300 })).toThrow(/`windowMs`.*got `1e\+300`/);
    expect(() => new RateLimit<Req>({ limiter, maxKeys: -1 } as never)).toThrow(/`maxKeys`.*got `-1`/);
    expect(() => new RateLimit<Req>({ limiter, clock: 'x' } as never)).toThrow(/`clock`.*got `"x"`/);
    expect(() => new RateLimit<Req>({ policies: [{ limiter }], maxKeys: 'lots' } as never)).toThrow(
      /`maxKeys`/,
    );
    expect(() => new RateLimit<Req>({ limiter, windowMs: 1000 } as never)).toThrow(
      expect.objectContaining({ option: 'windowMs', message: expect.stringMatching(/got `1000`/) }),
    );
  });

  describe('settle: skipFailedRequests and skipSuccessfulRequests', () => {
    /** A response as settleOnClose reads it: closes when the test says. */
    class FakeResponse {
      closed = false;
      writableEnded = false;
      statusCode = 200;
      #listeners: Array<() => void> = [];
      once(_event: 'close', listener: () => void) {
        this.#listeners.push(listener);
      }
      end(statusCode: number) {
        this.statusCode = statusCode;
        this.writableEnded = true;
        this.close();
      }
      close() {
        this.closed = true;
        for (const listener of this.#listeners.splice(0)) listener();
      }
    }
    const remaining = (limit: RateLimit<Req>) => sync(limit.check(req())).outcomes[0]?.decision.remaining;

    it('gives back what a failed request took, also one whose connection closed before its answer ended', () => {
      const { limit } = clocked({ limit: 5, windowMs: 60_000, skipFailedRequests: true, cost: 2 });
      expect(limit.settlesResponses).toBe(true);
      const served = new FakeResponse();
      limit.settleOnClose(req(), sync(limit.check(req())), served);
      served.end(200);
      const failed = new FakeResponse();
      limit.settleOnClose(req(), sync(limit.check(req())), failed);
      failed.end(500);
      const dropped = new FakeResponse();
      limit.settleOnClose(req(), sync(limit.check(req())), dropped);
      dropped.close(); // the client went away before the answer ended: a failure
      expect(remaining(limit)).toBe(1); // 5 - 2 (served) - 2 (this check)
    });

    it('settles at once when the response had already closed (an async store answered late)', () => {
      const { limit } = clocked({ limit: 2, windowMs: 60_000, skipSuccessfulRequests: true });
      const response = new FakeResponse();
      response.end(204);
      limit.settleOnClose(req(), sync(limit.check(req())), response);
      expect(remaining(limit)).toBe(1);
    });

    it('a requestWasSuccessful that throws is reported and leaves the request counted', () => {
      const onError = vi.fn();
      const boom = new Error('boom');
      const { limit } = clocked({
        limit: 2,
        windowMs: 60_000,
        skipFailedRequests: true,
        requestWasSuccessful: () => {
          throw boom;
        },
        onError,
      });
      const response = new FakeResponse();
      limit.settleOnClose(req(), sync(limit.check(req())), response);
      expect(() => response.end(500)).not.toThrow();
      expect(onError).toHaveBeenCalledWith(boom);
      expect(remaining(limit)).toBe(0);
    });

    it('gives back to every policy, never settles refusals or skips, and is off without the options', () => {
      const { limit } = clocked({
        skipFailedRequests: true,
        skip: (r) => r.path === '/health',
        policies: [
          { name: 'a', limit: 3, windowMs: 60_000 },
          { name: 'b', limit: 1, windowMs: 60_000, key: () => 'all' },
        ],
      });
      const failed = new FakeResponse();
      limit.settleOnClose(req(), sync(limit.check(req())), failed);
      failed.end(503);
      const served = sync(limit.check(req()));
      expect(served.outcomes.map((o) => o.decision.remaining)).toEqual([2, 0]);
      const refused = sync(limit.check(req()));
      expect(refused.action).toBe('deny');
      const response = new FakeResponse();
      limit.settleOnClose(req(), refused, response);
      limit.settleOnClose(req(), sync(limit.check(req('203.0.113.9', { path: '/health' }))), response);
      response.end(500);
      // Neither the refusal nor the skip gave anything back: b is still empty.
      expect(sync(limit.check(req())).action).toBe('deny');

      const { limit: plain } = clocked({ limit: 2, windowMs: 60_000 });
      expect(plain.settlesResponses).toBe(false);
      const ignored = new FakeResponse();
      plain.settleOnClose(req(), sync(plain.check(req())), ignored);
      ignored.end(500);
      expect(remaining(plain)).toBe(0);
    });

    it('validates the options', () => {
      expect(() => new RateLimit<Req>({ limit: 1, skipFailedRequests: 'yes' as never })).toThrow(
        /`skipFailedRequests`/,
      );
      expect(() => new RateLimit<Req>({ limit: 1, skipSuccessfulRequests: 1 as never })).toThrow(
        /`skipSuccessfulRequests`/,
      );
      expect(() => new RateLimit<Req>({ limit: 1, requestWasSuccessful: true as never })).toThrow(
        /`requestWasSuccessful`/,
      );
    });
  });
});
