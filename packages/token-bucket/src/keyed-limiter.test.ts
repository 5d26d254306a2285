import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type BucketSpec,
  ClosedError,
  type ConsumeOptions,
  InvalidOptionError,
  KeyedLimiter,
  keyedLimiter,
  type LimiterStore,
  MemoryStore,
  RateLimitedError,
  type StoreDecision,
  StoreUnavailableError,
} from './index.js';

const clock = () => Date.now();

/** An async store, like the Redis one: every answer is a promise. */
class AsyncStore implements LimiterStore {
  readonly inner = new MemoryStore({ clock });
  failure: unknown;
  calls: Array<{ key: string; cost: number; options: ConsumeOptions | undefined }> = [];
  closed = false;
  async consume(
    key: string,
    cost: number,
    spec: BucketSpec,
    options?: ConsumeOptions,
  ): Promise<StoreDecision> {
    this.calls.push({ key, cost, options });
    if (this.failure !== undefined) throw this.failure;
    return this.inner.consume(key, cost, spec, options);
  }
  async refund(key: string, cost: number, spec: BucketSpec): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    this.inner.refund(key, cost, spec);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000 });
});
afterEach(() => {
  expect(vi.getTimerCount()).toBe(0);
  vi.useRealTimers();
});

describe('KeyedLimiter with the memory store', () => {
  it('keeps one bucket per key and decides synchronously', () => {
    const limiter = keyedLimiter({ capacity: 2, refillRate: 1, clock });
    expect(limiter.spec).toEqual({ capacity: 2, refillPerMs: 0.001 });
    expect(limiter.store).toBeInstanceOf(MemoryStore);
    expect(limiter.tryTake('alice')).toMatchObject({ allowed: true, limit: 2, remaining: 1 });
    expect(limiter.tryTake('alice', 2)).toMatchObject({ allowed: false, remaining: 1, retryAfterMs: 1000 });
    expect(limiter.tryTake('bob', 2)).toMatchObject({ allowed: true, remaining: 0 });
    limiter.refund('bob', 1);
    expect(limiter.tryTake('bob')).toMatchObject({ allowed: true, remaining: 0 });
  });

  it('passes maxKeys to its store', () => {
    const limiter = new KeyedLimiter({ capacity: 1, refillRate: 1, maxKeys: 1, clock });
    expect((limiter.store as MemoryStore).maxKeys).toBe(1);
  });

  it('take waits for reserved tokens, in arrival order', async () => {
    const limiter = keyedLimiter({ capacity: 1, refillRate: 1, clock });
    const order: string[] = [];
    await limiter.take('k');
    const first = limiter.take('k').then((d) => order.push(`first:${d.waitMs}`));
    const second = limiter.take('k').then((d) => order.push(`second:${d.waitMs}`));
    await vi.advanceTimersByTimeAsync(999);
    expect(order).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(order).toEqual(['first:1000']);
    await vi.advanceTimersByTimeAsync(1000);
    expect(order).toEqual(['first:1000', 'second:2000']);
    await Promise.all([first, second]);
  });

  it('take rejects at once when the wait would exceed maxWaitMs', async () => {
    const limiter = keyedLimiter({ capacity: 2, refillRate: 1, clock });
    await limiter.take('k', 2);
    const error = await limiter.take('k', 1, { maxWaitMs: 999 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitedError);
    expect(error).toMatchObject({ code: 'ERR_RATE_LIMITED', retryAfterMs: 1000 });
  });

  it('an aborted take gives its reservation back', async () => {
    const limiter = keyedLimiter({ capacity: 1, refillRate: 1, clock });
    limiter.tryTake('k');
    const controller = new AbortController();
    const aborted = limiter.take('k', 1, { signal: controller.signal }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(500);
    controller.abort(new Error('gone'));
    expect(await aborted).toMatchObject({ message: 'gone' });
    await vi.advanceTimersByTimeAsync(500);
    // without the refund the bucket would still be in debt until 2000
    expect(limiter.tryTake('k')).toMatchObject({ allowed: true });
  });

  it('take with an operationId spends once', async () => {
    const limiter = keyedLimiter({ capacity: 3, refillRate: 1, clock });
    await limiter.take('k', 2, { operationId: 'pay_1' });
    await limiter.take('k', 2, { operationId: 'pay_1' });
    expect(limiter.tryTake('k', 0)).toMatchObject({ remaining: 1 });
  });

  it('an aborted take with an operationId, retried and aborted again, mints nothing', async () => {
    const limiter = keyedLimiter({ capacity: 5, refillRate: 1, clock });
    limiter.tryTake('k', 5);
    for (let i = 0; i < 4; i++) {
      const controller = new AbortController();
      const taken = limiter.take('k', 1, { operationId: 'op-1', signal: controller.signal });
      controller.abort(new Error('client went away'));
      await expect(taken).rejects.toThrow('client went away');
    }
    // no time has passed: every abort gave back exactly what its own take reserved
    expect(limiter.tryTake('k')).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 1000 });
  });

  it('an aborted replay of an operation gives back nothing; the first grant still stands', async () => {
    const limiter = keyedLimiter({ capacity: 1, refillRate: 1, clock });
    limiter.tryTake('k');
    const first = limiter.take('k', 1, { operationId: 'pay' });
    const controller = new AbortController();
    const duplicate = limiter.take('k', 1, { operationId: 'pay', signal: controller.signal });
    controller.abort(new Error('duplicate gone'));
    await expect(duplicate).rejects.toThrow('duplicate gone');
    // the first take's reservation is intact: nothing was refunded for the replay
    expect(limiter.tryTake('k')).toMatchObject({ allowed: false, retryAfterMs: 2000 });
    await vi.advanceTimersByTimeAsync(1000);
    await expect(first).resolves.toMatchObject({ allowed: true, waitMs: 1000 });
  });

  it('two takes of one operationId in flight, the first aborted: the replay keeps its tokens spent', async () => {
    const limiter = keyedLimiter({ capacity: 1, refillRate: 1, clock });
    limiter.tryTake('k');
    const controller = new AbortController();
    const first = limiter.take('k', 1, { operationId: 'pay', signal: controller.signal });
    const duplicate = limiter.take('k', 1, { operationId: 'pay' }); // replayed: spends nothing
    controller.abort(new Error('client went away'));
    await expect(first).rejects.toThrow('client went away');
    // before the fix the abort gave the reservation back (retryAfterMs 1000): the duplicate would then go
    // through on tokens nobody spent
    expect(limiter.tryTake('k')).toMatchObject({ allowed: false, retryAfterMs: 2000 });
    await vi.advanceTimersByTimeAsync(1000);
    await expect(duplicate).resolves.toMatchObject({ allowed: true, waitMs: 1000, replayed: true });
  });

  it('close() rejects sleeping takes and closes its own store', async () => {
    const limiter = keyedLimiter({ capacity: 1, refillRate: 1, clock });
    limiter.tryTake('k');
    const sleeping = limiter.take('k').catch((e: unknown) => e);
    await limiter.close();
    await limiter.close();
    expect(await sleeping).toBeInstanceOf(ClosedError);
    await expect(limiter.take('k')).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    expect(() => limiter.tryTake('k')).toThrow(ClosedError);
  });

  it('validates options and arguments', async () => {
    expect(() => keyedLimiter({ capacity: 0, refillRate: 1 })).toThrow('`capacity`');
    expect(() => keyedLimiter({ capacity: 1, refillRate: -1 })).toThrow('`refillRate`');
    expect(() => keyedLimiter({ capacity: 1, refillRate: 1, maxkeys: 5 } as never)).toThrow('`maxkeys`');
    expect(() => keyedLimiter({ capacity: 1, refillRate: 1, store: {} as never })).toThrow('`store`');
    expect(() => keyedLimiter({ capacity: 1, refillRate: 1, store: new AsyncStore(), maxKeys: 5 })).toThrow(
      '`maxKeys`',
    );
    const limiter = keyedLimiter({ capacity: 2, refillRate: 1, clock });
    expect(() => limiter.tryTake('k', 3)).toThrow(InvalidOptionError);
    expect(() => limiter.tryTake('k', -1)).toThrow('`cost`');
    expect(() => limiter.tryTake(5 as never)).toThrow('`key`');
    expect(() => limiter.refund('k', Number.NaN)).toThrow('`cost`');
    await expect(limiter.take('k', 3)).rejects.toThrow('`cost`');
    await expect(limiter.take('k', 1, { maxWaitMs: -1 })).rejects.toThrow('`maxWaitMs`');
    await expect(limiter.take('k', 1, { operationId: 1 as never })).rejects.toThrow('`operationId`');
    await expect(limiter.take('k', 1, { wait: 1 } as never)).rejects.toThrow('`wait`');
  });
});

describe('KeyedLimiter with an async store', () => {
  it('answers with promises and passes the spec and options to the store', async () => {
    const store = new AsyncStore();
    const limiter = keyedLimiter({ capacity: 2, refillRate: 1, store });
    const pending = limiter.tryTake('k');
    expect(pending).toBeInstanceOf(Promise);
    await expect(pending).resolves.toMatchObject({ allowed: true, remaining: 1 });
    await limiter.take('k', 1, { maxWaitMs: 5000, operationId: 'op' });
    expect(store.calls.at(-1)).toEqual({
      key: 'k',
      cost: 1,
      options: { maxWaitMs: 5000, operationId: 'op' },
    });
    await limiter.refund('k', 2);
    await expect(limiter.tryTake('k', 2)).resolves.toMatchObject({ allowed: true });
  });

  it('wraps store failures in StoreUnavailableError with the cause', async () => {
    const store = new AsyncStore();
    const limiter = keyedLimiter({ capacity: 2, refillRate: 1, store });
    const cause = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    store.failure = cause;
    const error = await limiter.tryTake('k').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE', cause });
    await expect(limiter.take('k')).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    await expect(limiter.refund('k', 1)).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    // the package's own errors pass through unchanged
    store.failure = new StoreUnavailableError('redis down');
    await expect(limiter.tryTake('k')).rejects.toMatchObject({ message: 'redis down' });
  });

  it('does not close a store it was given', async () => {
    const store = new AsyncStore();
    const limiter = keyedLimiter({ capacity: 2, refillRate: 1, store });
    await limiter.close();
    expect(store.closed).toBe(false);
    await expect(limiter.tryTake('k')).rejects.toBeInstanceOf(ClosedError);
  });
});
