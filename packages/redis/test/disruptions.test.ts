// Both stores against a private redis-server that the tests disturb the way production does: a connection
// killed while a reply is on its way, a Redis that stops answering (DEBUG SLEEP). Only a private server may
// be put to sleep or have its clients killed; the shared Redis on 6379 serves the other test files meanwhile.
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type RedisIdempotencyStore,
  type RedisIdempotencyStoreOptions,
  type RedisStore,
  type RedisStoreOptions,
  redisIdempotencyStore,
  redisStore,
  type StoredResponse,
  StoreUnavailableError,
} from '../src/index.js';
import { describeRedis } from './redis-available.js';
import { type PrivateRedis, redisServerAvailable, startPrivateRedis } from './redis-server.js';

const describeFaults = redisServerAvailable ? describeRedis : describe.skip;
const spec = Object.freeze({ capacity: 10, refillPerMs: 1e-9 });
const response: StoredResponse = { status: 201, headers: {}, body: '{"order":7}', encoding: 'utf8' };

const servers: PrivateRedis[] = [];
const clients: Redis[] = [];
const closers: Array<() => Promise<void>> = [];

afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
  await Promise.all(clients.splice(0).map((client) => client.quit().catch(() => client.disconnect())));
  await Promise.all(servers.splice(0).map((server) => server.stop()));
});

async function privateRedis(): Promise<PrivateRedis> {
  const server = await startPrivateRedis();
  servers.push(server);
  return server;
}

function client(server: PrivateRedis): Redis {
  const created = new Redis(server.url, { maxRetriesPerRequest: 0 });
  created.on('error', () => {});
  clients.push(created);
  return created;
}

function limiter(options: RedisStoreOptions): RedisStore {
  const created = redisStore(options);
  closers.push(() => created.close());
  return created;
}

function idempotency(options: RedisIdempotencyStoreOptions): RedisIdempotencyStore {
  const created = redisIdempotencyStore(options);
  closers.push(() => created.close());
  return created;
}

/** Times Redis has run EVALSHA since it started (retries of a command included). */
async function evalshaCalls(admin: Redis): Promise<number> {
  const stats = await admin.info('commandstats');
  return Number(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1] ?? 0);
}

/**
 * Runs `call` so that Redis executes its command but the reply is lost with the connection, as when a
 * network drops a connection after the command went through. Redis sleeps (DEBUG SLEEP) while the command
 * and then a CLIENT KILL of the caller's connection arrive; once awake it reads both in the order they
 * came, runs the command, kills the connection, and the reply it had queued dies with it. The sleeps here
 * only make sure Redis is asleep before the command arrives and the command arrives before the kill.
 */
async function withReplyLost<T>(server: PrivateRedis, victim: Redis, call: () => Promise<T>): Promise<T> {
  const id = await victim.client('ID');
  const sleeper = client(server);
  const killer = client(server);
  await Promise.all([sleeper.ping(), killer.ping()]);
  const sleeping = sleeper.call('DEBUG', 'SLEEP', '0.3');
  await sleep(30);
  const result = call();
  result.catch(() => {}); // awaited by the caller; a rejection is not unhandled meanwhile
  await sleep(30);
  const killed = killer.client('KILL', 'ID', String(id));
  await sleeping;
  expect(await killed).toBe(1);
  return result;
}

describeFaults('a reply lost with a killed connection (ioredis sends the command again on reconnect)', () => {
  it("the idempotency store's begin, run twice, still owns the key it leased", async () => {
    const server = await privateRedis();
    const admin = client(server);
    const store = idempotency({ url: server.url, prefix: 'p:', timeoutMs: 2_000 });
    const warmUp = await store.begin('warm-up', 'fp', 60_000); // connected, both scripts cached
    if (warmUp.acquired) await store.release('warm-up', warmUp.lease);
    const before = await evalshaCalls(admin);
    const begun = await withReplyLost(server, store.client as Redis, () => store.begin('k', 'fp', 60_000));
    expect(await evalshaCalls(admin)).toBe(before + 2); // run, reply lost, run again after the reconnect
    // before the fix: { acquired: false, record: { state: 'in-flight' } }, its own lease: the request was
    // told to wait for itself, and the key stayed locked for the whole 60 s lease
    if (!begun.acquired) throw new Error(`expected a lease, got ${JSON.stringify(begun)}`);
    expect(await admin.hget('p:idem:{k}', 'lease')).toBe(begun.lease);
    await store.complete('k', begun.lease, response, 60_000);
    expect(await store.begin('k', 'fp', 60_000)).toMatchObject({ record: { state: 'completed', response } });
  });

  it("the limiter store's refund is not given back twice", async () => {
    const server = await privateRedis();
    const admin = client(server);
    const store = limiter({ url: server.url, prefix: 'p:', timeoutMs: 2_000 });
    expect((await store.consume('k', 6, spec)).remaining).toBe(4);
    const before = await evalshaCalls(admin);
    await withReplyLost(server, store.client as Redis, () => store.refund('k', 3, spec));
    // Redis ran the refund once; it is not sent again (the store cannot tell whether a lost reply's command
    // ran, and a refund run twice mints tokens), and its reply is a failure like a timeout: best effort.
    expect(await evalshaCalls(admin)).toBe(before + 1);
    // before the fix: ioredis sent it again after reconnecting, and one refund of 3 gave back 6 (a full
    // bucket, deleted)
    const state = await admin.get('p:{k}');
    expect(Number(state?.split(' ')[0])).toBeCloseTo(7, 3);
  });
});

describeFaults('a Redis that does not answer (DEBUG SLEEP)', () => {
  it("the idempotency store's waitForChange rejects within one timeoutMs, its subscription included", async () => {
    const server = await privateRedis();
    const owner = idempotency({ url: server.url, prefix: 'p:', timeoutMs: 2_000 });
    const store = idempotency({ url: server.url, prefix: 'p:', timeoutMs: 100 });
    await owner.begin('k', 'fp', 60_000);
    await store.waitForChange('free', new AbortController().signal); // the subscriber connection is ready
    const sleeper = client(server);
    await sleeper.ping();
    const sleeping = sleeper.call('DEBUG', 'SLEEP', '0.5');
    await sleep(30);
    // The store's timeouts on a fake clock; Redis sleeps on the real one, for much longer than this test.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    try {
      let outcome: unknown = 'pending';
      void store.waitForChange('k', new AbortController().signal).then(
        () => (outcome = 'woken'),
        (error: unknown) => (outcome = error),
      );
      await vi.advanceTimersByTimeAsync(100);
      // before the fix: still pending. The SUBSCRIBE took the 100 ms, then the check of the key got 100 ms
      // more: twice the bound the README promises for every call.
      expect(outcome).toBeInstanceOf(StoreUnavailableError);
    } finally {
      vi.useRealTimers();
    }
    await sleeping;
  });
});
