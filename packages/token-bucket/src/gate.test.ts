import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type BucketSpec,
  ClosedError,
  type ConsumeOptions,
  Gate,
  gate,
  InvalidOptionError,
  type LimiterStore,
  MemoryStore,
  QueueFullError,
  RateLimitedError,
  type StoreDecision,
  StoreUnavailableError,
} from './index.js';

const clock = () => Date.now();

/** A full garbage collection, for tests of what is retained (V8's gc, exposed at run time). */
function collectGarbage(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** Resolves when told to, so a test controls how long a call runs. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

class AsyncStore implements LimiterStore {
  readonly inner = new MemoryStore({ clock });
  failure: unknown;
  async consume(
    key: string,
    cost: number,
    spec: BucketSpec,
    options?: ConsumeOptions,
  ): Promise<StoreDecision> {
    if (this.failure !== undefined) throw this.failure;
    return this.inner.consume(key, cost, spec, options);
  }
  async refund(key: string, cost: number, spec: BucketSpec): Promise<void> {
    this.inner.refund(key, cost, spec);
  }
  close(): void {}
}

beforeEach(() => {
  vi.useFakeTimers({ now: 10_000 });
});
afterEach(() => {
  expect(vi.getTimerCount()).toBe(0);
  vi.useRealTimers();
});

describe('gate', () => {
  it('runs fn with a signal and returns its value', async () => {
    const g = gate({ rate: 10, concurrency: 2, maxQueue: 10, maxWaitMs: 1000, clock });
    let seen: AbortSignal | undefined;
    await expect(
      g.run(async (signal) => {
        seen = signal;
        return 42;
      }),
    ).resolves.toBe(42);
    expect(seen).toBeInstanceOf(AbortSignal);
    expect(seen?.aborted).toBe(false);
    expect(g.stats()).toMatchObject({ active: 0, queued: 0, started: 1, completed: 1, failed: 0, rate: 10 });
    expect(g.spec).toEqual({ capacity: 1, refillPerMs: 0.01 });
    await g.close();
  });

  it('spaces calls at the rate', async () => {
    const g = gate({ rate: 10, concurrency: 10, maxQueue: 10, maxWaitMs: 1000, clock });
    const startedAt: number[] = [];
    const runs = [1, 2, 3].map(() => g.run(async () => startedAt.push(Date.now() - 10_000)));
    await vi.advanceTimersByTimeAsync(250);
    await Promise.all(runs);
    expect(startedAt).toEqual([0, 100, 200]);
    await g.close();
  });

  it('holds the rate with burst 1 when every timer fires late', async () => {
    for (const rate of [300, 30]) {
      vi.setSystemTime(0);
      const g = gate({
        rate,
        concurrency: 50,
        maxQueue: Number.POSITIVE_INFINITY,
        maxWaitMs: Number.POSITIVE_INFINITY,
        clock,
      });
      const runs = Array.from({ length: rate * 3 }, () => g.run(async () => {}).catch(() => {}));
      await vi.advanceTimersByTimeAsync(0);
      for (let late = 0; Date.now() < 2000; late = (late + 1) % 4) {
        vi.setSystemTime(Date.now() + 1 + late); // the clock moves on: the next timer fires 1-4 ms late
        await vi.advanceTimersToNextTimerAsync();
        // The burst token at 0, then one per 1/rate s: late timers delay a grant, never lose one.
        expect(g.stats().started).toBe(1 + Math.floor((rate * Date.now()) / 1000 + 1e-9));
      }
      expect(g.stats().started).toBeGreaterThanOrEqual(1 + rate * 2);
      // The wait estimate counts every call ahead once, whether it holds a reservation (debt) or a slot.
      const ahead = rate * 3 - g.stats().started;
      expect(g.estimatedWaitMs()).toBeGreaterThanOrEqual(Math.floor((ahead * 1000) / rate));
      expect(g.estimatedWaitMs()).toBeLessThanOrEqual(Math.ceil(((ahead + 1) * 1000) / rate));
      await g.close();
      await Promise.all(runs);
    }
  });

  it('caps concurrency', async () => {
    const g = gate({ rate: 1000, burst: 10, concurrency: 1, maxQueue: 10, maxWaitMs: 1000, clock });
    const first = deferred<string>();
    const order: string[] = [];
    const a = g.run(() => first.promise.then((v) => order.push(v)));
    const b = g.run(async () => order.push('b'));
    await vi.advanceTimersByTimeAsync(10);
    expect(g.stats()).toMatchObject({ active: 1, queued: 1 });
    expect(order).toEqual([]);
    first.resolve('a');
    await Promise.all([a, b]);
    expect(order).toEqual(['a', 'b']);
    await g.close();
  });

  it('sheds with QueueFullError when the queue is full', async () => {
    const g = gate({ rate: 1000, burst: 10, concurrency: 1, maxQueue: 1, maxWaitMs: 10_000, clock });
    const hold = deferred();
    const a = g.run(() => hold.promise);
    const b = g.run(async () => 'b');
    const error = await g.run(async () => 'c').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueueFullError);
    expect(error).toMatchObject({ code: 'ERR_QUEUE_FULL', maxQueue: 1 });
    expect((error as QueueFullError).retryAfterMs).toBeGreaterThanOrEqual(1);
    expect(g.wouldShed()).toBe(true);
    expect(g.stats().shedQueueFull).toBe(1);
    hold.resolve();
    await expect(Promise.all([a, b])).resolves.toEqual([undefined, 'b']);
    expect(g.wouldShed()).toBe(false);
    await g.close();
  });

  it('sheds at once with RateLimitedError when the wait would exceed maxWaitMs', async () => {
    const g = gate({ rate: 1, concurrency: 10, maxQueue: 100, maxWaitMs: 1000, clock });
    const a = g.run(async () => 'a');
    const b = g.run(async () => 'b'); // waits 1000 ms: allowed
    expect(g.estimatedWaitMs()).toBe(2000);
    expect(g.wouldShed()).toBe(true);
    const error = await g.run(async () => 'c').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitedError);
    expect(error).toMatchObject({ code: 'ERR_RATE_LIMITED', retryAfterMs: 2000 });
    await vi.advanceTimersByTimeAsync(1000);
    await expect(Promise.all([a, b])).resolves.toEqual(['a', 'b']);
    expect(g.stats().shedRateLimited).toBe(1);
    await g.close();
  });

  it('estimates slot waits from observed durations', async () => {
    const g = gate({ rate: 1000, burst: 100, concurrency: 1, maxQueue: 100, maxWaitMs: 1500, clock });
    // The first call takes 1000 ms of (fake) time: it is held until the clock has moved on.
    const slow = deferred();
    const first = g.run(() => slow.promise);
    await vi.advanceTimersByTimeAsync(1000);
    slow.resolve();
    await first;
    // nothing was known when the first ran; now a call is known to take about 1000 ms
    const hold = deferred();
    const a = g.run(() => hold.promise);
    await vi.advanceTimersByTimeAsync(0);
    expect(g.estimatedWaitMs()).toBe(1000);
    const b = g.run(async () => 'b');
    expect(g.estimatedWaitMs()).toBe(2000);
    await expect(g.run(async () => 'c')).rejects.toBeInstanceOf(RateLimitedError);
    hold.resolve();
    await Promise.all([a, b]);
    await g.close();
  });

  it('an aborted waiter gives its place back and rejects with the reason', async () => {
    const g = gate({ rate: 1, concurrency: 10, maxQueue: 100, maxWaitMs: 10_000, clock });
    await g.run(async () => 'first'); // the token is spent
    const controller = new AbortController();
    const aborted = g.run(async () => 'never', { signal: controller.signal }).catch((e: unknown) => e);
    expect(g.queued).toBe(1);
    controller.abort(new Error('client left'));
    expect(await aborted).toMatchObject({ message: 'client left' });
    expect(g.queued).toBe(0);
    expect(g.estimatedWaitMs()).toBe(1000);
    const next = g.run(async () => Date.now());
    await vi.advanceTimersByTimeAsync(1000);
    await expect(next).resolves.toBe(11_000);
    await g.close();
  });

  it('an aborted waiter behind busy slots gives its place back too', async () => {
    const g = gate({ rate: 1000, burst: 10, concurrency: 1, maxQueue: 1, maxWaitMs: 10_000, clock });
    const hold = deferred();
    const a = g.run(() => hold.promise);
    const controller = new AbortController();
    const aborted = g.run(async () => 'never', { signal: controller.signal }).catch((e: unknown) => e);
    controller.abort(new Error('gone'));
    expect(await aborted).toMatchObject({ message: 'gone' });
    const b = g.run(async () => 'b'); // the queue has room again
    hold.resolve();
    await expect(b).resolves.toBe('b');
    await a;
    await g.close();
  });

  it('maxWaitMs bounds the wait for a slot: the call is rejected at its deadline and never runs', async () => {
    const g = gate({ rate: 1000, burst: 10, concurrency: 1, maxQueue: 10, maxWaitMs: 100, clock });
    const hold = deferred();
    const hung = g.run(() => hold.promise); // the gateway takes 3 s
    let ran = false;
    const second = g.run(async () => {
      ran = true;
    });
    let error: unknown;
    second.catch((e: unknown) => {
      error = e;
    });
    await vi.advanceTimersByTimeAsync(99);
    expect(g.queued).toBe(1);
    await vi.advanceTimersByTimeAsync(1); // before the fix: still queued, then run after 3 s
    expect(error).toBeInstanceOf(RateLimitedError);
    expect((error as RateLimitedError).retryAfterMs).toBeGreaterThanOrEqual(1);
    expect(g.stats()).toMatchObject({ queued: 0, shedRateLimited: 1 });
    await vi.advanceTimersByTimeAsync(2900);
    hold.resolve();
    await hung;
    expect(ran).toBe(false);
    await g.close();
  });

  it('never starts a call whose wait budget ran out, even before its deadline timer runs', async () => {
    let now = 0;
    const g = gate({ rate: 1000, burst: 10, concurrency: 1, maxQueue: 10, maxWaitMs: 100, clock: () => now });
    const hold = deferred();
    const hung = g.run(() => hold.promise);
    let ran = false;
    const late = g.run(async () => {
      ran = true;
    });
    const rejected = late.catch((e: unknown) => e);
    now = 500; // the event loop was blocked: no timer has run, the budget is spent
    hold.resolve();
    await hung;
    expect(await rejected).toBeInstanceOf(RateLimitedError);
    expect(ran).toBe(false);
    await g.close();
  });

  it('forgets a call aborted while waiting for a slot at once (memory stays bounded by maxQueue)', async () => {
    const gc = collectGarbage();
    const g = gate({ rate: 1e6, burst: 1000, concurrency: 1, maxQueue: 10, maxWaitMs: 60_000, clock });
    const hold = deferred();
    const hung = g.run(() => hold.promise); // holds the only slot
    const refs: WeakRef<object>[] = [];
    for (let i = 0; i < 200; i++) {
      const controller = new AbortController();
      const fn = async () => 'never';
      refs.push(new WeakRef(fn));
      g.run(fn, { signal: controller.signal }).catch(() => {});
      controller.abort();
    }
    expect(g.queued).toBe(0);
    await vi.advanceTimersByTimeAsync(0); // a WeakRef keeps its target until the current job ends
    gc();
    // before the fix p-limit kept every aborted task, and its fn, until the slot came free
    expect(refs.filter((ref) => ref.deref() !== undefined).length).toBeLessThan(10);
    hold.resolve();
    await hung;
    await g.close();
  });

  it('a call aborted after its token was granted but before it started gives the token back', async () => {
    const g = gate({ rate: 1, burst: 2, concurrency: 10, maxQueue: 10, maxWaitMs: 5000, clock });
    const loser = new AbortController();
    // Both tokens are granted in one go; the first call to start cancels the other (a hedged request).
    const winner = g.run(() => {
      loser.abort(new Error('lost the race'));
      return 'won';
    });
    let ran = false;
    const lost = g
      .run(
        async () => {
          ran = true;
        },
        { signal: loser.signal },
      )
      .catch((e: unknown) => e);
    await expect(winner).resolves.toBe('won');
    expect(await lost).toMatchObject({ message: 'lost the race' });
    expect(ran).toBe(false);
    // before the fix: the aborted call's token was spent, and the next call waited 1000 ms for a new one
    expect(g.estimatedWaitMs()).toBe(0);
    const next = g.run(async () => Date.now());
    await vi.advanceTimersByTimeAsync(0);
    await expect(next).resolves.toBe(10_000);
    await g.close();
  });

  it('forwards an abort to the running fn', async () => {
    const g = gate({ rate: 10, concurrency: 1, maxQueue: 1, maxWaitMs: 1000, clock });
    const controller = new AbortController();
    const run = g.run(
      (signal) =>
        new Promise((_, reject) =>
          signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
        ),
      { signal: controller.signal },
    );
    await vi.advanceTimersByTimeAsync(0);
    controller.abort(new Error('stop'));
    await expect(run).rejects.toThrow('stop');
    expect(g.stats()).toMatchObject({ failed: 1, completed: 1, active: 0 });
    await g.close();
  });

  it('passes fn errors through', async () => {
    const g = gate({ rate: 10, concurrency: 1, maxQueue: 1, maxWaitMs: 1000, clock });
    const boom = new Error('boom');
    await expect(
      g.run(() => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    await g.close();
  });

  it('close() rejects waiters, aborts running calls and waits for them', async () => {
    const g = gate({ rate: 1, concurrency: 1, maxQueue: 10, maxWaitMs: 10_000, clock });
    let runningSignal: AbortSignal | undefined;
    const running = g.run(
      (signal) =>
        new Promise((resolve) => {
          runningSignal = signal;
          signal.addEventListener('abort', () => resolve('stopped'), { once: true });
        }),
    );
    const waiting = g.run(async () => 'never').catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(0);
    await g.close();
    expect(runningSignal?.reason).toBeInstanceOf(ClosedError);
    await expect(running).resolves.toBe('stopped');
    expect(await waiting).toBeInstanceOf(ClosedError);
    await expect(g.run(async () => 1)).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    expect(g.wouldShed()).toBe(true);
  });

  it('validates options and calls', async () => {
    const base = { rate: 10, concurrency: 1, maxQueue: 1, maxWaitMs: 100 };
    expect(() => gate({ ...base, rate: 0 })).toThrow('`rate`');
    expect(() => gate({ ...base, concurrency: 0 })).toThrow('`concurrency`');
    expect(() => gate({ ...base, concurrency: undefined } as never)).toThrow('`concurrency`');
    expect(() => gate({ ...base, maxQueue: -1 })).toThrow('`maxQueue`');
    expect(() => gate({ ...base, maxWaitMs: Number.NaN })).toThrow('`maxWaitMs`');
    expect(() => gate({ ...base, burst: 0.5 })).toThrow('`burst`');
    expect(() => gate({ ...base, key: 'bank' })).toThrow('`key`');
    expect(() => gate({ ...base, maxCatchUpMs: -1 })).toThrow('`maxCatchUpMs`');
    expect(() => gate({ ...base, store: new MemoryStore(), maxCatchUpMs: 5 })).toThrow('`maxCatchUpMs`');
    expect(() => gate({ ...base, limit: 1 } as never)).toThrow(InvalidOptionError);
    const g = new Gate({ ...base, clock });
    await expect(g.run(async () => 1, { cost: 2 })).rejects.toThrow('`cost`');
    await expect(g.run('fn' as never)).rejects.toThrow('`fn`');
    await expect(g.run(async () => 1, { signal: AbortSignal.abort(new Error('already')) })).rejects.toThrow(
      'already',
    );
    expect(g.queued).toBe(0);
    await g.close();
  });
});

describe('gate with a store', () => {
  it("defaults as documented: burst 1, and the store key 'gate'", async () => {
    const store = new AsyncStore();
    const keys: string[] = [];
    const consume = store.consume.bind(store);
    store.consume = (key, cost, spec, options) => {
      keys.push(key);
      return consume(key, cost, spec, options);
    };
    const g = gate({ rate: 10, concurrency: 1, maxQueue: 1, maxWaitMs: 1000, store, clock });
    expect(g.spec).toEqual({ capacity: 1, refillPerMs: 10 / 1000 });
    expect(g.stats()).toMatchObject({ burst: 1, rate: 10 });
    await g.run(async () => 'sent');
    expect(keys).toEqual(['gate']);
    await g.close();
  });

  it('shares the rate through the store key', async () => {
    const store = new AsyncStore();
    const a = gate({ rate: 10, concurrency: 10, maxQueue: 10, maxWaitMs: 1000, store, key: 'bank', clock });
    const b = gate({ rate: 10, concurrency: 10, maxQueue: 10, maxWaitMs: 1000, store, key: 'bank', clock });
    const startedAt: number[] = [];
    const runs = [a, b, a, b].map((g) => g.run(async () => startedAt.push(Date.now() - 10_000)));
    await vi.advanceTimersByTimeAsync(400);
    await Promise.all(runs);
    expect(startedAt.sort((x, y) => x - y)).toEqual([0, 100, 200, 300]);
    await Promise.all([a.close(), b.close()]);
  });

  it('rejects with RateLimitedError when the fleet took the tokens meanwhile', async () => {
    const store = new AsyncStore();
    const g = gate({ rate: 1, concurrency: 10, maxQueue: 10, maxWaitMs: 500, store, clock });
    store.inner.consume('gate', 1, g.spec); // another process took the token
    const error = await g.run(async () => 1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitedError);
    expect(error).toMatchObject({ retryAfterMs: 1000 });
    await g.close();
  });

  it('an abort during a reservation gives the tokens back to the store', async () => {
    const store = new AsyncStore();
    const g = gate({ rate: 1, concurrency: 10, maxQueue: 10, maxWaitMs: 5000, store, clock });
    await g.run(async () => 1);
    const controller = new AbortController();
    const aborted = g.run(async () => 2, { signal: controller.signal }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(100);
    controller.abort(new Error('gone'));
    expect(await aborted).toMatchObject({ message: 'gone' });
    await vi.advanceTimersByTimeAsync(900);
    expect(store.inner.consume('gate', 1, g.spec)).toMatchObject({ allowed: true });
    await g.close();
  });

  it('a call aborted after the store granted its token but before it started gives the token back', async () => {
    const store = new AsyncStore();
    const g = gate({ rate: 1, burst: 2, concurrency: 10, maxQueue: 10, maxWaitMs: 5000, store, clock });
    const loser = new AbortController();
    const winner = g.run(() => {
      loser.abort(new Error('lost the race'));
      return 'won';
    });
    const lost = g.run(async () => 'never', { signal: loser.signal }).catch((e: unknown) => e);
    await expect(winner).resolves.toBe('won');
    expect(await lost).toMatchObject({ message: 'lost the race' });
    await vi.advanceTimersByTimeAsync(0);
    // before the fix: both tokens stayed spent in the store
    expect(store.inner.consume('gate', 1, g.spec)).toMatchObject({ allowed: true });
    await g.close();
  });

  it('a call the store makes wait counts against maxQueue, and is shed when the queue is full', async () => {
    const store = new AsyncStore();
    const g = gate({ rate: 1, concurrency: 10, maxQueue: 1, maxWaitMs: 5000, store, clock });
    await g.run(async () => 'first'); // the token is spent; nothing is waiting, so the estimate is 0
    expect(g.estimatedWaitMs()).toBe(0);
    const second = g.run(async () => Date.now());
    await vi.advanceTimersByTimeAsync(0);
    // before the fix: the call sleeping through its reservation was not counted, and a third was let in
    expect(g.stats()).toMatchObject({ queued: 1, active: 0 });
    await expect(g.run(async () => 'third')).rejects.toBeInstanceOf(QueueFullError);
    await vi.advanceTimersByTimeAsync(1000);
    await expect(second).resolves.toBe(11_000);
    expect(g.queued).toBe(0);
    await g.close();

    const none = gate({ rate: 1, concurrency: 10, maxQueue: 0, maxWaitMs: 5000, store, key: 'none', clock });
    await none.run(async () => 'first');
    const error = await none.run(async () => 'must not wait').catch((e: unknown) => e);
    // before the fix: it waited 1000 ms although maxQueue 0 lets no call wait
    expect(error).toBeInstanceOf(QueueFullError);
    expect(error).toMatchObject({ maxQueue: 0, retryAfterMs: 1000 });
    expect(none.stats()).toMatchObject({ queued: 0, shedQueueFull: 1, started: 1 });
    // its reservation went back: the next token is 1000 ms away, not 2000
    expect(store.inner.consume('none', 1, none.spec, { maxWaitMs: 5000 })).toMatchObject({ waitMs: 1000 });
    await none.close();
  });

  it('a call aborted while the store decides is not counted as shed when the store then denies it', async () => {
    const store = new AsyncStore();
    const answer = deferred();
    const consume = store.consume.bind(store);
    store.consume = async (key, cost, spec, options) => {
      await answer.promise;
      return consume(key, cost, spec, options);
    };
    const g = gate({ rate: 1, concurrency: 10, maxQueue: 10, maxWaitMs: 500, store, clock });
    store.inner.consume('gate', 1, g.spec); // another process took the token: the store will deny
    const controller = new AbortController();
    const aborted = g.run(async () => 'never', { signal: controller.signal }).catch((e: unknown) => e);
    controller.abort(new Error('client left'));
    expect(await aborted).toMatchObject({ message: 'client left' });
    answer.resolve();
    await vi.advanceTimersByTimeAsync(0);
    // before the fix: shedRateLimited 1, for a call that left by itself
    expect(g.stats()).toMatchObject({ shedRateLimited: 0, started: 0, queued: 0 });
    await expect(g.run(async () => 'denied')).rejects.toBeInstanceOf(RateLimitedError);
    expect(g.stats().shedRateLimited).toBe(1);
    await g.close();
  });

  it('turns store failures into StoreUnavailableError', async () => {
    const store = new AsyncStore();
    const g = gate({ rate: 1, concurrency: 10, maxQueue: 10, maxWaitMs: 500, store, clock });
    store.failure = new Error('ECONNREFUSED');
    const error = await g.run(async () => 1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as StoreUnavailableError).cause).toBe(store.failure);
    await g.close();
  });
});
