import { EventEmitter, once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { ClosedError, InvalidOptionError, type StoreDecision } from '@floodgate/token-bucket';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { expectedAnswers, OPERATION_CONTRACT, playContract } from '../../token-bucket/test/store-contract.js';
import { adminClient, deleteKeys, describeRedis, REDIS_URL, testPrefix } from '../test/redis-available.js';
import { RedisStore, redisStore } from './redis-store.js';

const prefix = testPrefix('store');
// A slow refill (1 token per 10 s), so the real time a test takes refills nothing it asserts on.
const slow = Object.freeze({ capacity: 5, refillPerMs: 0.0001 });

describeRedis('RedisStore against Redis', () => {
  let admin: Redis;
  const stores: RedisStore[] = [];
  const clients: Redis[] = [];
  let counter = 0;

  /** A store on its own client from the URL, closed after the test. */
  function store(options: Partial<Parameters<typeof redisStore>[0]> = {}): RedisStore {
    // A generous timeout: these tests are about decisions, and CI machines stall now and then.
    const created = redisStore({ url: REDIS_URL, prefix, timeoutMs: 2_000, ...options });
    stores.push(created);
    return created;
  }
  function key(): string {
    counter += 1;
    return `k${counter}`;
  }

  beforeAll(() => {
    admin = adminClient();
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((created) => created.close()));
    await Promise.all(clients.splice(0).map((client) => client.quit()));
  });
  afterAll(async () => {
    await deleteKeys(admin, prefix);
    await admin.quit();
  });

  it('spends a shared bucket: two stores (two connections) see the same tokens', async () => {
    const a = store();
    const b = store();
    const k = key();
    const first = await a.consume(k, 3, slow);
    expect(first).toMatchObject({ allowed: true, limit: 5, remaining: 2, retryAfterMs: 0, waitMs: 0 });
    const second = await b.consume(k, 3, slow);
    expect(second.allowed).toBe(false);
    expect(second.remaining).toBe(2);
    // 1 token missing at 0.0001/ms: about 10 s (a little less, as time passed).
    expect(second.retryAfterMs).toBeGreaterThan(9_000);
    expect(second.retryAfterMs).toBeLessThanOrEqual(10_000);
    expect(second.resetAfterMs).toBeGreaterThan(29_000);
    expect((await b.consume(k, 2, slow)).allowed).toBe(true);
    expect(a.stats()).toMatchObject({ degraded: false, redisDecisions: 1, fallbackDecisions: 0 });
  });

  it('keys are hash-tagged (one Cluster slot per limiter key) and expire when the bucket is full again', async () => {
    const s = store();
    await s.consume('user:42', 2, slow, { operationId: 'op-1' });
    const keys = await admin.keys(`${prefix}*`);
    const mine = keys.filter((name) => name.includes('{user:42}'));
    expect(mine.sort()).toEqual([`${prefix}{user:42}`, `${prefix}{user:42}:op:op-1`]);
    const ttl = await admin.pttl(`${prefix}{user:42}`);
    // 2 tokens at 0.0001/ms: 20 s to refill (+1 ms), minus the little time that passed.
    expect(ttl).toBeGreaterThan(19_000);
    expect(ttl).toBeLessThanOrEqual(20_001);
    expect(await admin.pttl(`${prefix}{user:42}:op:op-1`)).toBeGreaterThan(500_000);
    // A refund that fills the bucket deletes the key: missing means full.
    await s.refund('user:42', 2, slow);
    expect(await admin.exists(`${prefix}{user:42}`)).toBe(0);
  });

  it('reserves future tokens with maxWaitMs; other instances see the debt; refund gives them back', async () => {
    const a = store();
    const b = store();
    const k = key();
    const spec = { capacity: 2, refillPerMs: 0.001 }; // 1 token / s
    expect((await a.consume(k, 2, spec)).allowed).toBe(true);
    const reserved = await a.consume(k, 1, spec, { maxWaitMs: 5_000 });
    expect(reserved.allowed).toBe(true);
    expect(reserved.waitMs).toBeGreaterThan(900);
    expect(reserved.waitMs).toBeLessThanOrEqual(1_000);
    const tooLong = await b.consume(k, 1, spec, { maxWaitMs: 1_500 });
    expect(tooLong.allowed).toBe(false);
    expect(tooLong.retryAfterMs).toBeGreaterThan(1_900);
    const queued = await b.consume(k, 1, spec, { maxWaitMs: 3_000 });
    expect(queued.waitMs).toBeGreaterThan(1_900);
    await a.refund(k, 1, spec);
    await b.refund(k, 1, spec);
    const after = await b.consume(k, 1, spec, { maxWaitMs: 3_000 });
    expect(after.waitMs).toBeGreaterThan(900);
    expect(after.waitMs).toBeLessThanOrEqual(1_000);
  });

  it('spends once per operationId, across instances, and answers the first decision again', async () => {
    const a = store();
    const b = store();
    const k = key();
    const first = await a.consume(k, 2, slow, { operationId: 'pay-1' });
    const retried = await b.consume(k, 2, slow, { operationId: 'pay-1' });
    expect(retried).toEqual({ ...first, replayed: true });
    expect(first.replayed).toBeUndefined();
    expect((await a.consume(k, 1, slow)).remaining).toBe(2);
    // A denied consume spends nothing and is not remembered: the same id may succeed later.
    const denied = await a.consume(k, 5, slow, { operationId: 'pay-2' });
    expect(denied.allowed).toBe(false);
    await a.refund(k, 3, slow);
    expect((await a.consume(k, 5, slow, { operationId: 'pay-2' })).allowed).toBe(true);
  });

  it('a refund naming the operation forgets it in the same call: the retry spends again', async () => {
    const s = store();
    const k = key();
    await s.consume(k, 5, slow); // empty
    const first = await s.consume(k, 1, slow, { operationId: 'op', maxWaitMs: 3_600_000 });
    expect(first).toMatchObject({ allowed: true });
    await s.refund(k, 1, slow, { operationId: 'op' });
    // before the fix: replayed as granted, having spent nothing
    const retry = await s.consume(k, 1, slow, { operationId: 'op', maxWaitMs: 3_600_000 });
    expect(retry.replayed).toBeUndefined();
    expect(retry.waitMs).toBeGreaterThan(0);
    // two tokens in debt now (the retry's and this one's): about 20 s at one token per 10 s, not 10 s
    expect((await s.consume(k, 1, slow)).retryAfterMs).toBeGreaterThan(15_000);
    await expect(s.refund(k, 1, slow, { operationId: '' })).rejects.toMatchObject({ option: 'operationId' });
  });

  it('a key that spells another key’s operation record fails no script: the store stays up for everyone', async () => {
    // `${k}}:op:x` as a limiter key is stored at `<prefix>{${k}}:op:x}`, which is also where key `k`
    // keeps its record of operationId 'x}': keys and ids that come from users can be made to meet.
    const s = store({ failMode: 'fail-open' });
    const k = key();
    const crafted = `${k}}:op:x`;
    expect(await s.consume(crafted, 1, slow)).toMatchObject({ allowed: true, remaining: 4 });
    // Its bucket state read as an operation record: before the fix the script failed (a nil field), the
    // store was marked degraded, and every key of every user was let through by 'fail-open' until a probe.
    expect(await s.consume(k, 2, slow, { operationId: 'x}' })).toMatchObject({ allowed: true, remaining: 3 });
    expect(s.stats()).toMatchObject({ degraded: false, failures: 0, fallbackDecisions: 0 });
    // The other way round: an operation record read as a bucket state.
    const j = key();
    expect(await s.consume(j, 2, slow, { operationId: 'y}' })).toMatchObject({ allowed: true, remaining: 3 });
    expect(await s.consume(`${j}}:op:y`, 1, slow)).toMatchObject({ allowed: true, remaining: 4 });
    expect(s.stats()).toMatchObject({
      degraded: false,
      failures: 0,
      fallbackDecisions: 0,
      redisDecisions: 4,
    });
    // Only the colliding pair is affected: `j`'s own bucket is intact (3 left, 2 more taken).
    expect(await s.consume(j, 2, slow)).toMatchObject({ allowed: true, remaining: 1 });
  });

  describe('the operationId contract every store keeps (token-bucket/test/store-contract.ts)', () => {
    // While Redis answers, the fail mode changes nothing: 'local-fallback' and 'fail-open' route refunds
    // without operationId through what they granted without Redis, which is nothing then.
    describe.each(['fail-closed', 'fail-open', 'local-fallback'] as const)('%s', (failMode) => {
      it.each(OPERATION_CONTRACT)('$name', async ({ steps }) => {
        const s = store({ failMode });
        expect(await playContract(s, key(), steps)).toEqual(expectedAnswers(steps));
      });
    });
  });

  it('keeps an operation record until operationTtlMs after its tokens are ready', async () => {
    const s = store({ operationTtlMs: 1_000 });
    const k = key();
    await s.consume(k, 5, slow); // empty
    const reserved = await s.consume(k, 1, slow, { operationId: 'op', maxWaitMs: 3_600_000 });
    expect(reserved.waitMs).toBeGreaterThan(9_000); // one token per 10 s
    // Before the fix the record expired after operationTtlMs even while its take still waited: its refund
    // (which gives back only through a record) would then give nothing back.
    const ttl = await admin.pttl(`${prefix}{${k}}:op:op`);
    // 1_000 + waitMs when set, less the (real) milliseconds since: a second of slack, never more
    expect(ttl).toBeGreaterThan(reserved.waitMs);
    expect(ttl).toBeLessThanOrEqual(1_000 + reserved.waitMs);
  });

  it('coalesces concurrent decisions for one key into few script calls, granting exactly the capacity', async () => {
    const s = store();
    const k = key();
    const spec = { capacity: 20, refillPerMs: 0.00001 };
    const decisions = await Promise.all(Array.from({ length: 60 }, () => s.consume(k, 1, spec)));
    expect(decisions.filter((decision) => decision.allowed)).toHaveLength(20);
    const remaining = decisions.filter((d) => d.allowed).map((d) => d.remaining);
    expect(remaining).toEqual(Array.from({ length: 20 }, (_, index) => 19 - index));
    expect(s.stats().scriptCalls).toBeLessThan(10);
    expect(s.stats().redisDecisions).toBe(60);
  });

  it('without coalescing sends one call per decision, with the same result', async () => {
    const s = store({ coalesce: false });
    const k = key();
    const spec = { capacity: 20, refillPerMs: 0.00001 };
    const decisions = await Promise.all(Array.from({ length: 60 }, () => s.consume(k, 1, spec)));
    expect(decisions.filter((decision) => decision.allowed)).toHaveLength(20);
    expect(s.stats().scriptCalls).toBe(60);
  });

  it('keeps batches within maxBatch and mixes refunds in order', async () => {
    const s = store({ maxBatch: 4 });
    const k = key();
    const spec = { capacity: 3, refillPerMs: 0.00001 };
    const calls: Promise<StoreDecision | undefined>[] = [];
    for (let index = 0; index < 12; index += 1) {
      calls.push(s.consume(k, 1, spec));
      if (index % 3 === 2) calls.push(s.refund(k, 1, spec).then(() => undefined));
    }
    const decisions = (await Promise.all(calls)).filter((d) => d !== undefined);
    // 3 up front, then one more after each of the 4 refunds that follow a consume: 3 + 3 (the last refund
    // comes after the last consume).
    expect(decisions.filter((d) => d.allowed)).toHaveLength(6);
    expect(s.stats().scriptCalls).toBeGreaterThanOrEqual(4);
  });

  it('works on a client with auto-pipelining (many keys in one tick) and leaves a passed client open', async () => {
    const client = new Redis(REDIS_URL, { enableAutoPipelining: true, enableOfflineQueue: false });
    clients.push(client);
    const s = new RedisStore({ client, prefix, timeoutMs: 2_000 });
    const keys = Array.from({ length: 40 }, () => key());
    const decisions = await Promise.all(keys.flatMap((k) => [s.consume(k, 3, slow), s.consume(k, 3, slow)]));
    expect(decisions.filter((decision) => decision.allowed)).toHaveLength(40);
    await s.close();
    expect(client.status).toBe('ready');
    expect(await client.ping()).toBe('PONG');
  });

  it('decides on a client of yours that answers numbers as strings (stringNumbers)', async () => {
    const client = new Redis(REDIS_URL, { stringNumbers: true, enableOfflineQueue: false });
    clients.push(client);
    const s = new RedisStore({
      client,
      prefix,
      timeoutMs: 2_000,
      failMode: 'local-fallback',
      heartbeatIntervalMs: 10,
    });
    const k = key();
    // before the fix: `allowed` was compared with 1 and read the string '1' as a denial, every time
    expect(await s.consume(k, 2, slow)).toEqual({
      allowed: true,
      limit: 5,
      remaining: 3,
      retryAfterMs: 0,
      resetAfterMs: 20_000,
      waitMs: 0,
    });
    const reserved = await s.consume(k, 4, slow, { maxWaitMs: 60_000 });
    expect(reserved).toMatchObject({ allowed: true, remaining: 0 });
    expect(typeof reserved.waitMs).toBe('number');
    expect(reserved.waitMs).toBeGreaterThan(9_000);
    const denied = await s.consume(k, 1, slow);
    expect(denied).toMatchObject({ allowed: false, remaining: 0 });
    expect(typeof denied.retryAfterMs).toBe('number');
    expect(denied.retryAfterMs).toBeGreaterThan(19_000);
    // A second instance on the same prefix: the heartbeat's count ('2') is read too, so the local share
    // of the next outage is half the limit.
    const other = store({ failMode: 'local-fallback', heartbeatIntervalMs: 10 });
    await vi.waitFor(() => expect(s.stats().liveInstances).toBe(2));
    await other.close();
    await s.close();
  });

  it('connects a lazyConnect client on first use and waits for it (within timeoutMs)', async () => {
    const client = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false });
    clients.push(client);
    expect(client.status).toBe('wait');
    const s = new RedisStore({ client, prefix, timeoutMs: 2_000 });
    expect((await s.consume(key(), 1, slow)).allowed).toBe(true);
    expect(client.status).toBe('ready');
    await s.close();
  });

  it("decides on the Redis server's clock: the client's clock jumping an hour refills nothing", async () => {
    const s = store();
    const k = key();
    expect((await s.consume(k, 5, slow)).allowed).toBe(true);
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + 3_600_000);
      expect((await s.consume(k, 1, slow)).allowed).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it('validates each call, naming the argument', async () => {
    const s = store();
    const cases: [() => Promise<unknown>, string][] = [
      [() => s.consume('', 1, slow), 'key'],
      [() => s.consume('}x', 1, slow), 'key'],
      [() => s.consume(42 as unknown as string, 1, slow), 'key'],
      [() => s.consume('k', -1, slow), 'cost'],
      [() => s.consume('k', Number.NaN, slow), 'cost'],
      // Above capacity: the memory store refuses it the same way (a bucket never holds that much).
      [() => s.consume('k', slow.capacity + 1, slow), 'cost'],
      [() => s.consume('k', 1, { capacity: 0.5, refillPerMs: 1 }), 'spec.capacity'],
      [() => s.consume('k', 1, { capacity: 1, refillPerMs: 0 }), 'spec.refillPerMs'],
      [() => s.consume('k', 1, null as never), 'spec'],
      [() => s.consume('k', 1, slow, { maxWaitMs: -1 }), 'maxWaitMs'],
      [() => s.consume('k', 1, slow, { operationId: '' }), 'operationId'],
      [() => s.consume('k', 1, slow, { maxWait: 5 } as never), 'maxWait'],
      [() => s.refund('', 1, slow), 'key'],
      [() => s.refund('k', -1, slow), 'cost'],
    ];
    for (const [call, option] of cases) {
      const error = await call().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(InvalidOptionError);
      expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option });
    }
  });

  it('rejects consumes after close with ClosedError, ignores refunds, and closes its own client', async () => {
    const s = store();
    await s.consume(key(), 1, slow);
    await s.close();
    await expect(s.consume('k', 1, slow)).rejects.toBeInstanceOf(ClosedError);
    await expect(s.consume('k', 1, slow)).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    await expect(s.refund('k', 1, slow)).resolves.toBeUndefined();
    expect(['end', 'close']).toContain(s.client.status);
    await s.close();
  });
});

describe('redisStore options (no Redis needed)', () => {
  const bad: [unknown, string][] = [
    [undefined, 'options'],
    [{}, 'client'],
    [{ url: 'redis://x', client: {} }, 'client'],
    [{ client: {} }, 'client'],
    [{ url: 42 }, 'url'],
    [{ url: 'not a url' }, 'url'],
    [{ url: 'http://127.0.0.1:6379' }, 'url'],
    [{ url: 'redis://127.0.0.1:6379/abc' }, 'url'],
    [{ url: 'redis://127.0.0.1', prefix: 'a{b' }, 'prefix'],
    [{ url: 'redis://127.0.0.1', prefix: 7 }, 'prefix'],
    [{ url: 'redis://127.0.0.1', failMode: 'open' }, 'failMode'],
    [{ url: 'redis://127.0.0.1', timeoutMs: 0 }, 'timeoutMs'],
    [{ url: 'redis://127.0.0.1', timeoutMs: 1.5 }, 'timeoutMs'],
    [{ url: 'redis://127.0.0.1', operationTtlMs: -1 }, 'operationTtlMs'],
    [{ url: 'redis://127.0.0.1', probeIntervalMs: Number.NaN }, 'probeIntervalMs'],
    [{ url: 'redis://127.0.0.1', coalesce: 'yes' }, 'coalesce'],
    [{ url: 'redis://127.0.0.1', maxBatch: 0 }, 'maxBatch'],
    [{ url: 'redis://127.0.0.1', heartbeatIntervalMs: 1 }, 'heartbeatIntervalMs'],
    [{ url: 'redis://127.0.0.1', maxLocalKeys: 0 }, 'maxLocalKeys'],
    [{ url: 'redis://127.0.0.1', redisOptions: 'tls' }, 'redisOptions'],
    [{ url: 'redis://127.0.0.1', limit: 5 }, 'limit'],
  ];
  it.each(bad)('rejects %o naming `%s`', (options, option) => {
    let caught: unknown;
    try {
      redisStore(options as never);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(InvalidOptionError);
    expect(caught).toMatchObject({ code: 'ERR_INVALID_OPTION', option });
    expect((caught as Error).message).toMatch(/^Expected `/);
  });

  it('says what it expected and what came', () => {
    expect(() => redisStore({ url: 'redis://127.0.0.1', timeoutMs: 0 })).toThrow(
      'Expected `timeoutMs` to be an integer from 1 to 60000, got `0` (number)',
    );
  });
});

describe('a timeout after an event-loop stall (no Redis needed)', () => {
  /** A ready client whose script calls answer when the test says. */
  function fakeClient() {
    const replies: Array<(reply: unknown) => void> = [];
    const client = Object.assign(new EventEmitter(), {
      status: 'ready',
      evalsha: () => new Promise((resolve) => replies.push(resolve)),
      eval: () => new Promise((resolve) => replies.push(resolve)),
    });
    return { client, replies };
  }

  afterEach(() => {
    vi.useRealTimers();
  });

  it('gives a reply that came in during the stall a grace instead of calling it an outage', async () => {
    vi.useFakeTimers({ now: 0, toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const realNow = performance.now.bind(performance);
    let stalled = 0;
    vi.spyOn(performance, 'now').mockImplementation(() => realNow() + stalled);
    const { client, replies } = fakeClient();
    const s = redisStore({ client: client as never, timeoutMs: 250 });
    const decision = s.consume('k', 1, slow);
    // 400 ms of synchronous work: no timer ran meanwhile, Redis answered at once. After it, Node runs the
    // overdue timer (timers phase) before it reads the socket (poll phase).
    stalled = 400;
    vi.advanceTimersByTime(250);
    replies[0]?.([1, 4, 0, 10_000, 0]);
    await expect(decision).resolves.toMatchObject({ allowed: true, remaining: 4 });
    expect(s.degraded).toBe(false);
    await s.close();
  });

  it("'local-fallback' admits a cost above the instance's share and reports the shared limit", async () => {
    const client = Object.assign(new EventEmitter(), {
      status: 'ready',
      // Three live instances; every decision fails (a Redis that refuses writes).
      evalsha: async (_sha: string, _keys: number, key: string) => {
        if (key.endsWith('instances')) return 3;
        throw new Error('READONLY You cannot write against a read only replica.');
      },
      eval: async () => 0,
      zrem: async () => 0,
    });
    const s = redisStore({ client: client as never, failMode: 'local-fallback', timeoutMs: 250 });
    await vi.waitFor(() => expect(s.stats().liveInstances).toBe(3));
    const spec = { capacity: 5, refillPerMs: 0.001 }; // the share: 5/3 tokens, 1/3 token per s
    const first = await s.consume('k', 2, spec);
    expect(s.degraded).toBe(true);
    expect(first).toMatchObject({ allowed: true, limit: 5 });
    const second = await s.consume('k', 2, spec);
    expect(second).toMatchObject({ allowed: false, limit: 5 });
    expect(second.retryAfterMs).toBeGreaterThan(5_000);
    expect(second.retryAfterMs).toBeLessThanOrEqual(6_000);
    await s.close();
  });

  it('still fails a call that gets no reply within the grace', async () => {
    vi.useFakeTimers({ now: 0, toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const realNow = performance.now.bind(performance);
    let stalled = 0;
    vi.spyOn(performance, 'now').mockImplementation(() => realNow() + stalled);
    const { client } = fakeClient();
    const s = redisStore({ client: client as never, timeoutMs: 250 });
    const decision = s.consume('k', 1, slow).catch((e: unknown) => e);
    stalled = 400;
    vi.advanceTimersByTime(250);
    vi.advanceTimersByTime(50);
    expect(await decision).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    expect(s.degraded).toBe(true);
    await s.close();
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('a reply of the wrong shape (no Redis needed)', () => {
  it('is a failure of the call, not a decision made of missing fields', async () => {
    vi.useFakeTimers({ now: 0, toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const replies: unknown[] = [
      [1, 4],
      [1, 4, 0, 10_000, 0],
    ];
    const client = Object.assign(new EventEmitter(), {
      status: 'ready',
      evalsha: async () => replies.shift(),
      eval: async () => replies.shift(),
    });
    const s = redisStore({ client: client as never, timeoutMs: 250, probeIntervalMs: 1_000 });
    try {
      // before the fix: resolved { allowed: true, remaining: 4, retryAfterMs: undefined, waitMs: undefined }
      const truncated = await s.consume('k', 1, slow).catch((e: unknown) => e);
      expect(truncated).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
      expect((truncated as Error).cause).toMatchObject({ message: 'Unexpected reply from the Redis script' });
      expect(s.stats()).toMatchObject({ degraded: true, failures: 1, redisDecisions: 0 });
      vi.advanceTimersByTime(1_000); // the next probe is due
      await expect(s.consume('k', 1, slow)).resolves.toEqual({
        allowed: true,
        limit: 5,
        remaining: 4,
        retryAfterMs: 0,
        resetAfterMs: 10_000,
        waitMs: 0,
      });
      expect(s.degraded).toBe(false);
      await s.close();
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('close() called twice (no Redis needed)', () => {
  it('the second call resolves only when the first has finished', async () => {
    vi.useFakeTimers({ now: 0, toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    try {
      const client = Object.assign(new EventEmitter(), {
        status: 'ready',
        evalsha: () => new Promise(() => {}), // Redis never answers
        eval: () => new Promise(() => {}),
      });
      const s = redisStore({ client: client as never, timeoutMs: 250 });
      const inFlight = s.consume('k', 1, slow).catch((e: unknown) => e);
      const order: string[] = [];
      const first = s.close().then(() => order.push('first'));
      const second = s.close().then(() => order.push('second'));
      await vi.advanceTimersByTimeAsync(0);
      // before the fix: the second close() resolved at once, while the call it waits for was in flight
      expect(order).toEqual([]);
      await vi.advanceTimersByTimeAsync(250);
      expect(await inFlight).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
      await Promise.all([first, second]);
      expect(order).toEqual(['first', 'second']);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('close() of a store whose client is stuck connecting (no Redis needed)', () => {
  it('resolves only once the socket is gone, without waiting for a server that never answers', async () => {
    // Accepts the connection and never reads or answers (a black hole): ioredis's ready check gets no
    // reply, the client stays in `connect`, and a FIN alone is never acknowledged by a close.
    const sockets: Socket[] = [];
    const hole = createServer((socket) => {
      sockets.push(socket);
      socket.on('error', () => {});
    }).listen(0, '127.0.0.1');
    await once(hole, 'listening');
    const { port } = hole.address() as { port: number };
    const connected = once(hole, 'connection');
    const s = redisStore({ url: `redis://127.0.0.1:${port}`, timeoutMs: 1_000 });
    await connected;
    await vi.waitFor(() => expect(s.client.status).toBe('connect'));
    const stream = (s.client as unknown as { stream: Socket }).stream;
    // before the fix: close() gave up after timeoutMs and left the socket open, status `connect`
    await s.close();
    expect(s.client.status).toBe('end');
    expect(stream.destroyed).toBe(true);
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => hole.close(() => resolve()));
  });

  it('resolves at once for a client between reconnection attempts (no socket to wait for)', async () => {
    // A port nobody listens on: the client keeps failing and waits to reconnect.
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as { port: number };
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const s = redisStore({ url: `redis://127.0.0.1:${port}`, timeoutMs: 60_000 });
    await vi.waitFor(() => expect(s.client.status).toBe('reconnecting'));
    // before the fix close() waited for an 'end' that never comes: timeoutMs (here past the test's limit)
    await s.close();
    expect(s.client.status).not.toBe('ready');
  });
});
