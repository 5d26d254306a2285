import { EventEmitter } from 'node:events';
import { keyedLimiter, StoreUnavailableError } from '@floodgate/token-bucket';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { adminClient, deleteKeys, describeRedis, testPrefix } from '../test/redis-available.js';
import {
  freePort,
  type PrivateRedis,
  redisServerAvailable,
  startPrivateRedis,
} from '../test/redis-server.js';
import { type FailMode, type RedisStore, type RedisStoreOptions, redisStore } from './index.js';
import type { DegradedEvent, RecoveredEvent } from './redis-store.js';

const spec = Object.freeze({ capacity: 10, refillPerMs: 0.00001 });
const describeFaults = redisServerAvailable ? describeRedis : describe.skip;

const stores: RedisStore[] = [];
const servers: PrivateRedis[] = [];
const clients: Redis[] = [];
const switches: Switched[] = [];

function store(options: RedisStoreOptions): RedisStore {
  const created = redisStore({ timeoutMs: 100, probeIntervalMs: 30, ...options });
  stores.push(created);
  return created;
}

function events(s: RedisStore): { degraded: DegradedEvent[]; recovered: RecoveredEvent[] } {
  const seen = { degraded: [] as DegradedEvent[], recovered: [] as RecoveredEvent[] };
  s.on('degraded', (event) => seen.degraded.push(event));
  s.on('recovered', (event) => seen.recovered.push(event));
  return seen;
}

async function allowedCount(s: RedisStore, key: string, calls: number): Promise<number> {
  let allowed = 0;
  for (let index = 0; index < calls; index += 1) {
    if ((await s.consume(key, 1, spec)).allowed) allowed += 1;
  }
  return allowed;
}

/** The shared Redis behind a switch, for one store under a prefix of its own. */
interface Switched {
  /** Pass as the store's `client`. */
  readonly client: never;
  readonly prefix: string;
  readonly real: Redis;
  /** Switches Redis off (every script call fails at once) or back on. */
  down(value: boolean): void;
  /** What a reconnect tells the store: a probe may go at once. */
  ready(): void;
}

/**
 * The shared Redis behind a switch: while down, every script call fails at once, as with a refused
 * connection, and the keys written before stay (a restarted private server would lose them). Nothing
 * disruptive reaches the shared server: the switch is in this process, and the keys are under a prefix
 * of the test's own, deleted after it.
 */
function switchedRedis(): Switched {
  const real = adminClient();
  clients.push(real);
  let down = false;
  const outage = () => Promise.reject(new Error('connect ECONNREFUSED (the test switched Redis off)'));
  const client = Object.assign(new EventEmitter(), {
    status: 'ready',
    evalsha: (...args: Parameters<Redis['evalsha']>) => (down ? outage() : real.evalsha(...args)),
    eval: (...args: Parameters<Redis['eval']>) => (down ? outage() : real.eval(...args)),
    zrem: (...args: Parameters<Redis['zrem']>) => real.zrem(...args),
  });
  const switched: Switched = {
    client: client as never,
    prefix: testPrefix('fail-modes'),
    real,
    down: (value) => {
      down = value;
    },
    ready: () => client.emit('ready'),
  };
  switches.push(switched);
  return switched;
}

/** A store on a switched Redis that probes only when told the client is ready. */
function switchedStore(
  redis: Switched,
  failMode: FailMode,
  options: Partial<RedisStoreOptions> = {},
): RedisStore {
  return store({
    client: redis.client,
    prefix: redis.prefix,
    failMode,
    timeoutMs: 2_000,
    probeIntervalMs: 3_600_000, // no probe but the one a reconnect ('ready') allows
    ...options,
  });
}

/** A `'local-fallback'` store on a switched Redis that probes only when told the client is ready. */
function fallbackStore(redis: Switched, options: Partial<RedisStoreOptions> = {}): RedisStore {
  return switchedStore(redis, 'local-fallback', options);
}

/** Switches Redis back on and waits until a decision on another key has brought the store back. */
async function recover(redis: Switched, s: RedisStore): Promise<void> {
  redis.down(false);
  redis.ready();
  expect((await s.consume('probe', 1, spec)).allowed).toBe(true);
  expect(s.degraded).toBe(false);
}

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  await Promise.all(switches.splice(0).map((redis) => deleteKeys(redis.real, redis.prefix)));
  await Promise.all(clients.splice(0).map((c) => c.quit().catch(() => c.disconnect())));
  await Promise.all(servers.splice(0).map((server) => server.stop()));
});

describe('Redis unreachable (nothing listens on the port)', () => {
  it("'fail-closed' (the default) rejects with StoreUnavailableError at once, degraded, without hanging", async () => {
    const s = store({ url: `redis://127.0.0.1:${await freePort()}` });
    const seen = events(s);
    const error = await s.consume('k', 1, spec).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    expect((error as Error).cause).toBeInstanceOf(Error);
    await expect(s.consume('k', 1, spec)).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    await expect(s.refund('k', 1, spec)).resolves.toBeUndefined();
    await vi.waitFor(() => expect(seen.degraded).toHaveLength(1));
    expect(seen.degraded[0]?.failMode).toBe('fail-closed');
    expect(s.degraded).toBe(true);
    expect(s.stats()).toMatchObject({ degraded: true, redisDecisions: 0, fallbackDecisions: 3 });
  });

  it("'fail-open' allows every decision", async () => {
    const s = store({ url: `redis://127.0.0.1:${await freePort()}`, failMode: 'fail-open' });
    expect(await allowedCount(s, 'k', 25)).toBe(25);
    expect(s.stats()).toMatchObject({ degraded: true, fallbackDecisions: 25 });
  });

  it("'local-fallback' keeps a local bucket (the whole limit when it never saw other instances)", async () => {
    const s = store({ url: `redis://127.0.0.1:${await freePort()}`, failMode: 'local-fallback' });
    expect(await allowedCount(s, 'k', 25)).toBe(10);
    const reserved = await s.consume('k', 1, spec, { maxWaitMs: 200_000 });
    expect(reserved.allowed).toBe(true);
    expect(reserved.waitMs).toBeGreaterThan(90_000);
    await s.refund('k', 1, spec);
    expect((await s.consume('k', 1, spec, { maxWaitMs: 200_000 })).waitMs).toBeCloseTo(reserved.waitMs, -3);
  });
});

describeFaults('Redis stopped, paused and flushed (a private redis-server)', () => {
  it("'local-fallback' shares the limit by the live instances while Redis is down, and recovers when it returns", async () => {
    const server = await startPrivateRedis();
    servers.push(server);
    const options = { url: server.url, failMode: 'local-fallback', heartbeatIntervalMs: 20 } as const;
    const a = store(options);
    const b = store(options);
    const seen = events(a);
    await vi.waitFor(() => expect(a.stats().liveInstances).toBe(2));
    expect(await allowedCount(a, 'shared', 3)).toBe(3);
    expect(a.stats().redisDecisions).toBe(3);

    await server.stop();
    // Half of the limit (10 / 2 live instances) per instance, fresh local buckets.
    expect(await allowedCount(a, 'shared', 12)).toBe(5);
    await vi.waitFor(() => expect(seen.degraded).toHaveLength(1));
    expect(a.degraded).toBe(true);

    await server.start(); // same port, empty data: the script cache is empty too (NOSCRIPT -> EVAL)
    await vi.waitFor(
      async () => {
        await a.consume('after', 1, spec);
        expect(a.degraded).toBe(false);
      },
      { timeout: 5_000, interval: 30 },
    );
    await vi.waitFor(() => expect(seen.recovered).toHaveLength(1));
    expect(seen.recovered[0]?.fallbackDecisions).toBeGreaterThanOrEqual(12);
    const redisBefore = a.stats().redisDecisions;
    // Shared again: the new server starts full, and both instances spend the same bucket.
    expect(await allowedCount(a, 'again', 6)).toBe(6);
    expect(await allowedCount(b, 'again', 6)).toBe(4);
    expect(a.stats().redisDecisions).toBe(redisBefore + 6);
  });

  it("'fail-closed' denies while Redis is down and decides in Redis again once it is back", async () => {
    const server = await startPrivateRedis();
    servers.push(server);
    const s = store({ url: server.url });
    expect((await s.consume('k', 1, spec)).allowed).toBe(true);
    await server.stop();
    await expect(s.consume('k', 1, spec)).rejects.toBeInstanceOf(StoreUnavailableError);
    await server.start();
    await vi.waitFor(
      async () => {
        expect((await s.consume('k', 1, spec)).allowed).toBe(true);
      },
      { timeout: 5_000, interval: 30 },
    );
    expect(s.degraded).toBe(false);
  });

  it('CLIENT PAUSE WRITE: calls time out into the fail mode, then the store recovers by itself', async () => {
    const server = await startPrivateRedis();
    servers.push(server);
    const admin = new Redis(server.url);
    clients.push(admin);
    const closed = store({ url: server.url });
    const open = store({ url: server.url, failMode: 'fail-open' });
    const seen = events(closed);
    expect((await closed.consume('k', 1, spec)).allowed).toBe(true);
    expect((await open.consume('k', 1, spec)).allowed).toBe(true);

    await admin.call('CLIENT', 'PAUSE', '400', 'WRITE');
    const error = await closed.consume('k', 1, spec).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    expect(((error as Error).cause as Error).message).toMatch(/timeoutMs/);
    const during = await open.consume('k', 1, spec);
    expect(during.allowed).toBe(true);
    expect(open.degraded).toBe(true);

    await vi.waitFor(
      async () => {
        expect((await closed.consume('k', 1, spec)).allowed).toBe(true);
        expect((await open.consume('k', 1, spec)).allowed).toBe(true);
        expect(closed.degraded || open.degraded).toBe(false);
      },
      { timeout: 5_000, interval: 30 },
    );
    await vi.waitFor(() => expect(seen.recovered).toHaveLength(1));
    // The calls that timed out were executed by Redis after the pause: spent, never granted (conservative).
    const remaining = (await closed.consume('k', 1, spec)).remaining;
    expect(remaining).toBeLessThanOrEqual(10 - 2 - 2 - 1);
  });

  it('reloads the script after SCRIPT FLUSH (NOSCRIPT) without degrading', async () => {
    const server = await startPrivateRedis();
    servers.push(server);
    const admin = new Redis(server.url);
    clients.push(admin);
    const s = store({ url: server.url });
    expect((await s.consume('k', 4, spec)).remaining).toBe(6);
    await admin.script('FLUSH');
    expect((await s.consume('k', 4, spec)).remaining).toBe(2);
    expect(s.stats()).toMatchObject({ degraded: false, failures: 0, redisDecisions: 2 });
  });

  it('counts live instances from heartbeats and forgets an instance on close', async () => {
    const server = await startPrivateRedis();
    servers.push(server);
    const options = { url: server.url, failMode: 'local-fallback', heartbeatIntervalMs: 20 } as const;
    const a = store(options);
    const b = store(options);
    const c = store(options);
    await vi.waitFor(() => expect(a.stats().liveInstances).toBe(3));
    await c.close();
    await b.close();
    await vi.waitFor(() => expect(a.stats().liveInstances).toBe(1));
  });
});

describeRedis('a refund naming an operation while Redis cannot answer', () => {
  it("'local-fallback' drops it: the local bucket gains nothing, and after recovery the retry is replayed", async () => {
    const redis = switchedRedis();
    const s = fallbackStore(redis);
    expect(await s.consume('k', 2, spec, { operationId: 'pay' })).toMatchObject({
      allowed: true,
      remaining: 8,
    });

    redis.down(true);
    expect(await s.consume('k', 10, spec)).toMatchObject({ allowed: true, remaining: 0 }); // local, full
    expect(s.degraded).toBe(true);
    await s.refund('k', 2, spec, { operationId: 'pay' }); // the take that was granted, abandoned
    // before the fix: the local bucket was credited with the 2 tokens Redis spent, and admitted them
    expect((await s.consume('k', 1, spec)).allowed).toBe(false);
    await s.refund('k', 1, spec); // a refund without operationId of a local grant goes to the local bucket
    expect((await s.consume('k', 1, spec)).allowed).toBe(true);

    redis.down(false);
    redis.ready();
    // The record stayed in Redis: the retry is replayed (the operation spent once, used once), and the
    // shared bucket still holds the 8 tokens it had.
    expect(await s.consume('k', 2, spec, { operationId: 'pay' })).toMatchObject({
      allowed: true,
      remaining: 8,
      replayed: true,
    });
    expect(s.degraded).toBe(false);
    expect(await s.consume('k', 8, spec)).toMatchObject({ allowed: true, remaining: 0 });
    expect((await s.consume('k', 1, spec)).allowed).toBe(false);
  });
});

describeRedis("'local-fallback': a refund without operationId goes back to the side that granted it", () => {
  it('a local grant given back after Redis recovered is dropped: Redis never spent those tokens', async () => {
    const redis = switchedRedis();
    const s = fallbackStore(redis);
    expect((await s.consume('k', 8, spec)).remaining).toBe(2); // Redis

    redis.down(true);
    expect((await s.consume('k', 4, spec)).allowed).toBe(true); // local (a fresh, full local bucket)
    await recover(redis, s);

    await s.refund('k', 4, spec);
    // before the fix: the refund went to Redis, which never spent the 4 tokens: 2 + 4 = 6 in the shared
    // bucket, and the fleet admitted 4 more than its limit
    expect(await s.consume('k', 3, spec)).toMatchObject({ allowed: false, remaining: 2 });
    expect(await s.consume('k', 2, spec)).toMatchObject({ allowed: true, remaining: 0 });
  });

  it('only what was granted locally is held back; the rest of the refunds goes to Redis', async () => {
    const redis = switchedRedis();
    const s = fallbackStore(redis);
    expect((await s.consume('k', 3, spec)).allowed).toBe(true); // Redis: grant A
    expect((await s.consume('k', 3, spec)).remaining).toBe(4); // Redis: grant B

    redis.down(true);
    expect((await s.consume('k', 2, spec)).allowed).toBe(true); // local: grant L
    await recover(redis, s);

    // A refund cannot say which grant it is for: the local grants' 2 tokens are taken off first, so
    // Redis gets back at most what it spent (3 of A's, whichever order A and L come back in).
    await s.refund('k', 3, spec); // A
    await s.refund('k', 2, spec); // L
    // before the fix: 4 + 3 + 2 = 9 in the shared bucket
    expect(await s.consume('k', 8, spec)).toMatchObject({ allowed: false, remaining: 7 });
    expect(s.stats()).toMatchObject({ degraded: false, failures: 1 });
  });

  it('a reservation granted locally and aborted after recovery (keyedLimiter.take) gives Redis nothing', async () => {
    const redis = switchedRedis();
    const s = fallbackStore(redis);
    // The spec of the other tests: 10 tokens, 1 per 100 s.
    const limiter = keyedLimiter({ capacity: 10, refillRate: { tokens: 1, perMs: 100_000 }, store: s });
    expect((await limiter.take('k', 5)).remaining).toBe(5); // Redis

    redis.down(true);
    expect((await limiter.take('k', 10)).allowed).toBe(true); // local: the whole local bucket
    const abort = new AbortController();
    const waiting = limiter.take('k', 3, { signal: abort.signal }); // local: reserved, about 300 s away
    await vi.waitFor(() => expect(s.stats().fallbackDecisions).toBe(2));
    await recover(redis, s);

    abort.abort(new Error('the caller left'));
    await expect(waiting).rejects.toThrow('the caller left');
    // before the fix: the aborted reservation's 3 tokens went to Redis: 5 + 3 = 8
    expect(await s.consume('k', 6, spec)).toMatchObject({ allowed: false, remaining: 5 });
    await limiter.close();
  });

  it('a Redis grant given back while Redis is away is dropped, not credited to the local bucket', async () => {
    const redis = switchedRedis();
    const s = fallbackStore(redis);
    expect((await s.consume('k', 3, spec)).remaining).toBe(7); // Redis

    redis.down(true);
    // The local bucket empties on a grant it is not asked to give back by a plain refund (named ones are
    // dropped while Redis is away), so it holds no local grant a refund could be for.
    expect(await s.consume('k', 10, spec, { operationId: 'batch' })).toMatchObject({ allowed: true });
    await s.refund('k', 3, spec); // the Redis grant
    // before the fix: the 3 tokens Redis spent were credited to the local bucket, which admitted them
    expect((await s.consume('k', 1, spec)).allowed).toBe(false);

    await recover(redis, s);
    // Redis keeps them spent: a lost refund errs on the strict side
    expect(await s.consume('k', 8, spec)).toMatchObject({ allowed: false, remaining: 7 });
  });

  it('a grant of an earlier outage is not credited to the local bucket of the next one', async () => {
    const redis = switchedRedis();
    const s = fallbackStore(redis);
    redis.down(true);
    expect((await s.consume('k', 3, spec)).allowed).toBe(true); // local, outage 1
    await recover(redis, s);

    redis.down(true);
    expect(await s.consume('k', 10, spec, { operationId: 'batch' })).toMatchObject({ allowed: true });
    expect(s.degraded).toBe(true);
    await s.refund('k', 3, spec); // outage 1's grant: the bucket that granted it is gone
    // before the fix: credited to outage 2's bucket, which never spent it
    expect((await s.consume('k', 1, spec)).allowed).toBe(false);
    await recover(redis, s);
    expect((await s.consume('k', 10, spec)).allowed).toBe(true); // nothing of it reached Redis either
  });

  it('remembers a local grant until operationTtlMs after its tokens are ready, then refunds go to Redis', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    try {
      const redis = switchedRedis();
      const s = fallbackStore(redis, { operationTtlMs: 60_000 });
      expect((await s.consume('k', 8, spec)).remaining).toBe(2); // Redis

      redis.down(true);
      expect((await s.consume('k', 10, spec)).allowed).toBe(true); // local
      // local, reserved: 1 token at 1 per 100 s
      expect(await s.consume('k', 1, spec, { maxWaitMs: 200_000 })).toMatchObject({ waitMs: 100_000 });
      await recover(redis, s);

      // Both grants are remembered until operationTtlMs after the reservation's token is ready.
      vi.advanceTimersByTime(100_000 + 59_999);
      await s.refund('k', 1, spec);
      expect((await s.consume('k', 3, spec)).allowed).toBe(false); // held back: still 2
      vi.advanceTimersByTime(1);
      await s.refund('k', 1, spec); // the record expired: this one goes to Redis
      expect(await s.consume('k', 3, spec)).toMatchObject({ allowed: true, remaining: 0 });
    } finally {
      vi.useRealTimers();
    }
  });
});

describeRedis("'fail-open': a refund without operationId of a grant Redis never made", () => {
  it('a grant let through while Redis was away and given back after recovery gives Redis nothing', async () => {
    const redis = switchedRedis();
    const s = switchedStore(redis, 'fail-open');
    expect((await s.consume('k', 8, spec)).remaining).toBe(2); // Redis

    redis.down(true);
    expect((await s.consume('k', 4, spec)).allowed).toBe(true); // let through: spent nowhere
    await recover(redis, s);

    await s.refund('k', 4, spec);
    // before the fix: the refund went to Redis, which never spent the 4 tokens: 2 + 4 = 6 in the shared
    // bucket, and the fleet admitted 4 more than its limit
    expect(await s.consume('k', 3, spec)).toMatchObject({ allowed: false, remaining: 2 });
    expect(await s.consume('k', 2, spec)).toMatchObject({ allowed: true, remaining: 0 });
    expect(s.stats()).toMatchObject({ degraded: false, failures: 1 });
  });

  it("a refund that would have been the recovery probe is not sent: nothing of it is Redis's", async () => {
    const redis = switchedRedis();
    const s = switchedStore(redis, 'fail-open');
    expect((await s.consume('k', 8, spec)).remaining).toBe(2); // Redis

    redis.down(true);
    expect((await s.consume('k', 4, spec)).allowed).toBe(true); // let through
    redis.down(false);
    redis.ready(); // the next call may go to Redis as the probe
    await s.refund('k', 4, spec);
    // before the fix: the refund was the probe, and Redis took it: 2 + 4 = 6
    expect(await s.consume('k', 3, spec)).toMatchObject({ allowed: false, remaining: 2 });
    expect(s.degraded).toBe(false);
  });

  it('only what was let through is held back; the rest of the refunds goes to Redis', async () => {
    const redis = switchedRedis();
    const s = switchedStore(redis, 'fail-open');
    expect((await s.consume('k', 3, spec)).allowed).toBe(true); // Redis: grant A
    expect((await s.consume('k', 3, spec)).remaining).toBe(4); // Redis: grant B

    redis.down(true);
    expect((await s.consume('k', 2, spec)).allowed).toBe(true); // let through: grant O
    await recover(redis, s);

    // Whichever order A and O come back in, Redis gets back only A's 3 tokens.
    await s.refund('k', 2, spec); // O
    await s.refund('k', 3, spec); // A
    // before the fix: 4 + 2 + 3 = 9 in the shared bucket
    expect(await s.consume('k', 8, spec)).toMatchObject({ allowed: false, remaining: 7 });
  });

  it("keyedLimiter.refund (the path of @floodgate/http's RateLimit.refund) after recovery gives Redis nothing", async () => {
    const redis = switchedRedis();
    const s = switchedStore(redis, 'fail-open');
    const limiter = keyedLimiter({ capacity: 10, refillRate: { tokens: 1, perMs: 100_000 }, store: s });
    expect((await limiter.tryTake('k', 6)).remaining).toBe(4); // Redis

    redis.down(true);
    expect((await limiter.tryTake('k', 5)).allowed).toBe(true); // let through
    await recover(redis, s);

    await limiter.refund('k', 5);
    // before the fix: 4 + 5 = 9
    expect(await s.consume('k', 5, spec)).toMatchObject({ allowed: false, remaining: 4 });
    await limiter.close();
  });

  it('a Redis grant given back while Redis is away is dropped (stricter), and the grants let through stay held back', async () => {
    const redis = switchedRedis();
    const s = switchedStore(redis, 'fail-open');
    expect((await s.consume('k', 3, spec)).remaining).toBe(7); // Redis

    redis.down(true);
    await s.refund('k', 3, spec); // the Redis grant: dropped, as every refund while Redis is away
    expect((await s.consume('k', 10, spec)).allowed).toBe(true); // let through
    await recover(redis, s);
    // the lost refund: stricter
    expect(await s.consume('k', 8, spec)).toMatchObject({ allowed: false, remaining: 7 });
    await s.refund('k', 10, spec); // the grant let through
    // before the fix: 7 + 10, capped at 10
    expect(await s.consume('k', 8, spec)).toMatchObject({ allowed: false, remaining: 7 });
  });

  it('remembers a grant let through until operationTtlMs after it, for at most maxLocalKeys keys', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    try {
      const redis = switchedRedis();
      const s = switchedStore(redis, 'fail-open', { operationTtlMs: 60_000, maxLocalKeys: 2 });
      expect((await s.consume('k', 8, spec)).remaining).toBe(2); // Redis
      expect((await s.consume('other', 8, spec)).remaining).toBe(2); // Redis

      redis.down(true);
      expect((await s.consume('k', 1, spec)).allowed).toBe(true); // let through
      expect((await s.consume('other', 2, spec)).allowed).toBe(true); // let through
      expect((await s.consume('x', 1, spec)).allowed).toBe(true); // a third key: 'k' is forgotten
      await recover(redis, s);

      await s.refund('k', 1, spec); // forgotten at the cap: goes to Redis as any other refund
      expect(await s.consume('k', 3, spec)).toMatchObject({ allowed: true, remaining: 0 });
      vi.advanceTimersByTime(59_999);
      await s.refund('other', 1, spec);
      // before the fix: sent to Redis, 2 + 1 = 3
      expect(await s.consume('other', 3, spec)).toMatchObject({ allowed: false, remaining: 2 });
      vi.advanceTimersByTime(1);
      await s.refund('other', 1, spec); // remembered no longer: goes to Redis
      expect(await s.consume('other', 3, spec)).toMatchObject({ allowed: true, remaining: 0 });
    } finally {
      vi.useRealTimers();
    }
  });
});

describeRedis("'fail-closed': a refund while Redis is away", () => {
  it('is dropped, never an error: a Redis grant given back during the outage stays spent (stricter)', async () => {
    const redis = switchedRedis();
    const s = switchedStore(redis, 'fail-closed');
    expect((await s.consume('k', 3, spec)).remaining).toBe(7); // Redis

    redis.down(true);
    await expect(s.consume('k', 1, spec)).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(s.refund('k', 3, spec)).resolves.toBeUndefined();
    expect(s.stats()).toMatchObject({ degraded: true, fallbackDecisions: 2 });
    await recover(redis, s);
    // Nothing was spent anywhere but Redis, so nothing else can be credited; Redis keeps the 3 tokens.
    expect(await s.consume('k', 8, spec)).toMatchObject({ allowed: false, remaining: 7 });
  });

  it('goes to Redis, which did spend the tokens, when it is the call that finds Redis back', async () => {
    const redis = switchedRedis();
    const s = switchedStore(redis, 'fail-closed');
    expect((await s.consume('k', 3, spec)).remaining).toBe(7); // Redis

    redis.down(true);
    await expect(s.consume('k', 1, spec)).rejects.toBeInstanceOf(StoreUnavailableError);
    redis.down(false);
    redis.ready(); // the next call may go to Redis as the probe
    await s.refund('k', 3, spec);
    expect(s.degraded).toBe(false);
    expect(await s.consume('k', 10, spec)).toMatchObject({ allowed: true, remaining: 0 });
  });
});
