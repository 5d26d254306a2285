import { EventEmitter } from 'node:events';
import { StoreUnavailableError } from '@floodgate/token-bucket';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { adminClient, deleteKeys, describeRedis, testPrefix } from '../test/redis-available.js';
import {
  freePort,
  type PrivateRedis,
  redisServerAvailable,
  startPrivateRedis,
} from '../test/redis-server.js';
import { type RedisStore, type RedisStoreOptions, redisStore } from './index.js';
import type { DegradedEvent, RecoveredEvent } from './redis-store.js';

const spec = Object.freeze({ capacity: 10, refillPerMs: 0.00001 });
const describeFaults = redisServerAvailable ? describeRedis : describe.skip;

const stores: RedisStore[] = [];
const servers: PrivateRedis[] = [];
const clients: Redis[] = [];

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

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
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
    const real = adminClient();
    clients.push(real);
    const prefix = testPrefix('fail-modes');
    // The shared Redis, behind a switch: while `down`, every script call fails at once, as with a refused
    // connection, and the records written before stay (a restarted private server would lose them).
    let down = false;
    const outage = () => Promise.reject(new Error('connect ECONNREFUSED (the test switched Redis off)'));
    const client = Object.assign(new EventEmitter(), {
      status: 'ready',
      evalsha: (...args: Parameters<Redis['evalsha']>) => (down ? outage() : real.evalsha(...args)),
      eval: (...args: Parameters<Redis['eval']>) => (down ? outage() : real.eval(...args)),
      zrem: (...args: Parameters<Redis['zrem']>) => real.zrem(...args),
    });
    const s = store({
      client: client as never,
      prefix,
      failMode: 'local-fallback',
      timeoutMs: 2_000,
      probeIntervalMs: 3_600_000, // no probe but the one a reconnect ('ready') allows
    });
    try {
      expect(await s.consume('k', 2, spec, { operationId: 'pay' })).toMatchObject({
        allowed: true,
        remaining: 8,
      });

      down = true;
      expect(await s.consume('k', 10, spec)).toMatchObject({ allowed: true, remaining: 0 }); // local, full
      expect(s.degraded).toBe(true);
      await s.refund('k', 2, spec, { operationId: 'pay' }); // the take that was granted, abandoned
      // before the fix: the local bucket was credited with the 2 tokens Redis spent, and admitted them
      expect((await s.consume('k', 1, spec)).allowed).toBe(false);
      await s.refund('k', 1, spec); // a refund without operationId still goes to the local bucket
      expect((await s.consume('k', 1, spec)).allowed).toBe(true);

      down = false;
      client.emit('ready');
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
    } finally {
      await s.close();
      await deleteKeys(real, prefix);
    }
  });
});
