import { gate, keyedLimiter, RateLimitedError } from '@floodgate/token-bucket';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { adminClient, deleteKeys, describeRedis, REDIS_URL, testPrefix } from '../test/redis-available.js';
import { type RedisStore, redisStore } from './index.js';

const prefix = testPrefix('integration');

describeRedis('with keyedLimiter and gate of @floodgate/token-bucket', () => {
  let admin: Redis;
  let store: RedisStore;
  beforeAll(() => {
    admin = adminClient();
  });
  afterEach(async () => {
    await store.close();
  });
  afterAll(async () => {
    await deleteKeys(admin, prefix);
    await admin.quit();
  });

  it('a keyedLimiter on the store answers promises, sheds waits too long, and gives back aborted reservations', async () => {
    store = redisStore({ url: REDIS_URL, prefix, timeoutMs: 2_000 });
    const limiter = keyedLimiter({ capacity: 2, refillRate: 1, store }); // 1 token/s
    const other = keyedLimiter({ capacity: 2, refillRate: 1, store });
    const first = await limiter.tryTake('student-1');
    expect(first).toMatchObject({ allowed: true, limit: 2, remaining: 1 });
    expect((await other.tryTake('student-1')).allowed).toBe(true);
    expect((await limiter.tryTake('student-1')).allowed).toBe(false);
    await expect(limiter.take('student-1', 1, { maxWaitMs: 200 })).rejects.toBeInstanceOf(RateLimitedError);

    const controller = new AbortController();
    const abandoned = limiter.take('student-1', 1, { maxWaitMs: 5_000, signal: controller.signal });
    controller.abort(new Error('shopper left'));
    await expect(abandoned).rejects.toThrow('shopper left');
    // The reservation went back: the next one waits about 1 s (one token), not 2 s.
    const next = await store.consume('student-1', 1, limiter.spec, { maxWaitMs: 5_000 });
    expect(next.waitMs).toBeGreaterThan(500);
    expect(next.waitMs).toBeLessThanOrEqual(1_001);
    await limiter.close();
    await other.close();
    expect(store.stats().degraded).toBe(false);
  });

  it('a take with an operationId, aborted and retried again and again, mints nothing', async () => {
    store = redisStore({ url: REDIS_URL, prefix, timeoutMs: 2_000 });
    const limiter = keyedLimiter({ capacity: 5, refillRate: { tokens: 5, perMs: 3_600_000 }, store });
    for (let i = 0; i < 5; i++) expect((await limiter.tryTake('merchant')).allowed).toBe(true);
    for (let i = 0; i < 4; i++) {
      const controller = new AbortController();
      const taken = limiter.take('merchant', 1, {
        operationId: 'op-1',
        signal: controller.signal,
        maxWaitMs: 3_600_000,
      });
      controller.abort(new Error('client went away'));
      await expect(taken).rejects.toThrow('client went away');
    }
    // A 5/hour bucket refills nothing noticeable meanwhile; before the fix every retry minted a token.
    const after = await Promise.all(Array.from({ length: 3 }, () => limiter.tryTake('merchant')));
    expect(after.map((decision) => decision.allowed)).toEqual([false, false, false]);
    await limiter.close();
  });

  it('two gates on one store key share one rate', async () => {
    store = redisStore({ url: REDIS_URL, prefix, timeoutMs: 2_000 });
    const options = {
      rate: 0.001,
      burst: 3,
      concurrency: 10,
      maxQueue: 10,
      maxWaitMs: 0,
      store,
      key: 'bank',
    };
    const a = gate(options);
    const b = gate(options);
    const results: PromiseSettledResult<number>[] = [];
    for (let index = 0; index < 6; index += 1) {
      const [result] = await Promise.allSettled([(index % 2 === 0 ? a : b).run(async () => index)]);
      results.push(result as PromiseSettledResult<number>);
    }
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(3);
    const rejected = results.filter((result) => result.status === 'rejected');
    expect(rejected.every((result) => (result.reason as { code?: string }).code === 'ERR_RATE_LIMITED')).toBe(
      true,
    );
    await a.close();
    await b.close();
  });
});
