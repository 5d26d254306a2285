import { setMaxListeners } from 'node:events';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  ClosedError,
  InvalidOptionError,
  QueueFullError,
  RateLimitedError,
  TokenBucket,
  tokenBucket,
} from './index.js';
import { queueSlots } from './token-bucket.js';

// The injected clock reads the fake timers' time, so timers and clock never disagree.
const clock = () => Date.now();
/** Moves the clock without firing timers. */
function step(ms: number): void {
  vi.setSystemTime(Date.now() + ms);
}
async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
}

/** 1 to 25 `take(n)` calls, `dt` ms apart: what the waiter properties queue. */
const queuedCalls = fc.array(fc.record({ n: fc.integer({ min: 1, max: 10 }), dt: fc.nat(300) }), {
  minLength: 1,
  maxLength: 25,
});

/**
 * Queues `take(n)` for each call, `dt` ms apart, then drains the queue with every
 * timer firing late by the next of `lateness` (the clock moves on before each one fires).
 * @returns each grant: its call's index, when it came, its cost, and when it was due when it was queued.
 */
async function queueAndDrainLate(
  bucket: TokenBucket,
  calls: ReadonlyArray<{ readonly n: number; readonly dt: number }>,
  lateness: readonly number[],
): Promise<Array<{ index: number; at: number; n: number; readyAt: number }>> {
  const resolved: Array<{ index: number; at: number; n: number; readyAt: number }> = [];
  const pending: Promise<unknown>[] = [];
  for (const [index, call] of calls.entries()) {
    await advance(call.dt);
    const n = Math.min(call.n, bucket.capacity);
    const readyAt = Date.now() + bucket.waitMsFor(n);
    pending.push(bucket.take(n).then(() => resolved.push({ index, at: Date.now(), n, readyAt })));
  }
  for (let i = 0; bucket.queued > 0; i++) {
    step(lateness[i % lateness.length] as number);
    await vi.advanceTimersToNextTimerAsync();
  }
  await Promise.all(pending);
  return resolved;
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_000 });
});
afterEach(() => {
  expect(vi.getTimerCount()).toBe(0);
  vi.useRealTimers();
});

describe('TokenBucket options', () => {
  it.each([
    [{ capacity: 0, refillRate: 1 }, 'Expected `capacity` to be a finite number >= 1, got `0` (number)'],
    [{ capacity: Number.NaN, refillRate: 1 }, '`capacity`'],
    [{ capacity: 5, refillRate: 0 }, '`refillRate`'],
    [{ capacity: 5, refillRate: Number.POSITIVE_INFINITY }, '`refillRate`'],
    [{ capacity: 5, refillRate: { tokens: 1, perMs: -1 } }, '`refillRate.perMs`'],
    [{ capacity: 5, refillRate: 1, initialTokens: 6 }, '`initialTokens`'],
    [{ capacity: 5, refillRate: 1, maxQueue: -1 }, '`maxQueue`'],
    [{ capacity: 5, refillRate: 1, clock: 'now' }, '`clock`'],
    [{ capacity: 5, refillRate: 1, burst: 5 }, '`burst`'],
  ])('rejects %j', (options, message) => {
    expect(() => tokenBucket(options as never)).toThrow(InvalidOptionError);
    expect(() => tokenBucket(options as never)).toThrow(message);
  });

  it('defaults as documented: starts full, maxQueue 1024, maxCatchUpMs 20', () => {
    const bucket = tokenBucket({ capacity: 4, refillRate: 1, clock });
    expect(bucket.tokens).toBe(4);
    expect(bucket.maxQueue).toBe(1024);
    expect(bucket.maxCatchUpMs).toBe(20);
  });

  it('exposes its spec for headers', () => {
    const bucket = new TokenBucket({ capacity: 10, refillRate: { tokens: 10, perMs: 60_000 }, clock });
    expect(bucket.spec).toEqual({ capacity: 10, refillPerMs: 10 / 60_000 });
    expect(bucket.tokens).toBe(10);
  });
});

describe('TokenBucket.tryTake', () => {
  it('grants the burst, then denies with when to retry, then refills lazily', () => {
    const bucket = tokenBucket({ capacity: 3, refillRate: 2, clock }); // one token per 500 ms
    expect(bucket.tryTake()).toEqual({
      allowed: true,
      limit: 3,
      remaining: 2,
      retryAfterMs: 0,
      resetAfterMs: 500,
    });
    expect(bucket.tryTake(2)).toMatchObject({ allowed: true, remaining: 0, resetAfterMs: 1500 });
    expect(bucket.tryTake()).toEqual({
      allowed: false,
      limit: 3,
      remaining: 0,
      retryAfterMs: 500,
      resetAfterMs: 1500,
    });
    step(499);
    expect(bucket.tryTake().allowed).toBe(false);
    step(1);
    expect(bucket.tryTake()).toMatchObject({ allowed: true, remaining: 0 });
    step(10_000);
    expect(bucket.tokens).toBe(3);
  });

  it('starts from initialTokens', () => {
    const bucket = tokenBucket({ capacity: 5, refillRate: 1, initialTokens: 0, clock });
    expect(bucket.tryTake()).toMatchObject({ allowed: false, retryAfterMs: 1000, resetAfterMs: 5000 });
  });

  it('never adds tokens when the clock steps back', () => {
    const bucket = tokenBucket({ capacity: 5, refillRate: 1, clock });
    bucket.tryTake(5);
    step(-10_000);
    expect(bucket.tryTake().allowed).toBe(false);
    step(10_000);
    expect(bucket.tryTake().allowed).toBe(false);
    step(1000);
    expect(bucket.tryTake().allowed).toBe(true);
  });

  it.each([-1, Number.NaN, 6, Number.POSITIVE_INFINITY, '1'])('rejects n = %j at the call', (n) => {
    const bucket = tokenBucket({ capacity: 5, refillRate: 1, clock });
    expect(() => bucket.tryTake(n as number)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION' }),
    );
    expect(() => bucket.tryTake(n as number)).toThrow('`n`');
  });

  it('allows n = 0 and fractional costs', () => {
    const bucket = tokenBucket({ capacity: 2, refillRate: 1, clock });
    expect(bucket.tryTake(0)).toMatchObject({ allowed: true, remaining: 2 });
    expect(bucket.tryTake(0.5)).toMatchObject({ allowed: true, remaining: 1 });
  });

  it('refund gives tokens back but never above capacity', () => {
    const bucket = tokenBucket({ capacity: 3, refillRate: 1, clock });
    bucket.tryTake(3);
    bucket.refund(2);
    expect(bucket.tokens).toBe(2);
    bucket.refund(100);
    expect(bucket.tokens).toBe(3);
    expect(() => bucket.refund(-1)).toThrow(InvalidOptionError);
  });
});

describe('TokenBucket.take', () => {
  it('resolves at once when the tokens are there', async () => {
    const bucket = tokenBucket({ capacity: 2, refillRate: 1, clock });
    await expect(bucket.take()).resolves.toMatchObject({ allowed: true, remaining: 1 });
  });

  it('waits for the tokens with one timer for the head waiter', async () => {
    const bucket = tokenBucket({ capacity: 1, refillRate: 1, initialTokens: 0, clock });
    const settled: number[] = [];
    const first = bucket.take().then(() => settled.push(1));
    const second = bucket.take().then(() => settled.push(2));
    expect(bucket.queued).toBe(2);
    expect(vi.getTimerCount()).toBe(1);
    await advance(999);
    expect(settled).toEqual([]);
    await advance(1);
    expect(settled).toEqual([1]);
    await advance(1000);
    expect(settled).toEqual([1, 2]);
    await Promise.all([first, second]);
  });

  it('serves a large request before later small ones (FIFO, no starvation)', async () => {
    const bucket = tokenBucket({ capacity: 5, refillRate: 1, initialTokens: 0, clock });
    const order: string[] = [];
    const big = bucket.take(5).then(() => order.push('big'));
    const small = bucket.take(1).then(() => order.push('small'));
    await advance(1000);
    // tryTake does not jump the queue either: 1 token has refilled, but 6 are reserved ahead of it, so
    // none of it is there for this caller
    expect(bucket.tryTake(1)).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 6000 });
    await advance(4000);
    expect(order).toEqual(['big']);
    await advance(1000);
    expect(order).toEqual(['big', 'small']);
    await Promise.all([big, small]);
  });

  it('rejects at once when the wait would exceed maxWaitMs', async () => {
    const bucket = tokenBucket({ capacity: 2, refillRate: 1, initialTokens: 0, clock });
    const error = await bucket.take(2, { maxWaitMs: 1999 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitedError);
    expect(error).toMatchObject({ code: 'ERR_RATE_LIMITED', retryAfterMs: 2000 });
    expect(bucket.queued).toBe(0);
    const ok = bucket.take(2, { maxWaitMs: 2000 });
    await advance(2000);
    await expect(ok).resolves.toMatchObject({ allowed: true });
  });

  it('counts the waiters ahead in the wait', async () => {
    const bucket = tokenBucket({ capacity: 3, refillRate: 1, initialTokens: 0, clock });
    const first = bucket.take(3);
    await expect(bucket.take(1, { maxWaitMs: 3999 })).rejects.toMatchObject({ retryAfterMs: 4000 });
    const second = bucket.take(1, { maxWaitMs: 4000 });
    expect(bucket.waitMsFor(1)).toBe(5000);
    await advance(4000);
    await expect(Promise.all([first, second])).resolves.toHaveLength(2);
  });

  it('bounds the queue', async () => {
    const bucket = tokenBucket({ capacity: 1, refillRate: 1, initialTokens: 0, maxQueue: 1, clock });
    const waiting = bucket.take();
    const error = await bucket.take().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueueFullError);
    expect(error).toMatchObject({ code: 'ERR_QUEUE_FULL', maxQueue: 1, retryAfterMs: 1000 });
    await advance(1000);
    await waiting;
  });

  it('with maxQueue 0, QueueFullError says when the tokens are there (nobody may wait)', async () => {
    const bucket = tokenBucket({ capacity: 2, refillRate: 1, initialTokens: 0.5, maxQueue: 0, clock });
    const error = await bucket.take().catch((e: unknown) => e);
    // before the fix: retryAfterMs 0 (the time until the empty queue's debt is paid), so a retry came at once
    expect(error).toMatchObject({ code: 'ERR_QUEUE_FULL', maxQueue: 0, retryAfterMs: 500 });
    step(499);
    await expect(bucket.take()).rejects.toMatchObject({ code: 'ERR_QUEUE_FULL', retryAfterMs: 1 });
    step(1);
    await expect(bucket.take()).resolves.toMatchObject({ allowed: true });
  });

  it('an aborted waiter gives its place back and rejects with the reason', async () => {
    const bucket = tokenBucket({ capacity: 2, refillRate: 1, initialTokens: 0, clock });
    const controller = new AbortController();
    const order: string[] = [];
    const aborted = bucket.take(2, { signal: controller.signal }).catch((e: unknown) => e);
    const next = bucket.take(1).then(() => order.push('next'));
    await advance(500);
    controller.abort(new Error('client went away'));
    expect(await aborted).toMatchObject({ message: 'client went away' });
    expect(bucket.queued).toBe(1);
    await advance(500);
    expect(order).toEqual(['next']);
    await next;
  });

  it('rejects at once with an already aborted signal', async () => {
    const bucket = tokenBucket({ capacity: 1, refillRate: 1, clock });
    const reason = new Error('late');
    await expect(bucket.take(1, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(bucket.tokens).toBe(1);
  });

  it('a refund serves waiters at once', async () => {
    const bucket = tokenBucket({ capacity: 2, refillRate: 1, initialTokens: 0, clock });
    const waiting = bucket.take(2);
    bucket.refund(2);
    await expect(waiting).resolves.toMatchObject({ allowed: true, remaining: 0 });
  });

  it('re-arms when the timer fires before the clock says the tokens are there', async () => {
    let lag = 0;
    const lagging = () => Date.now() - lag;
    const bucket = tokenBucket({ capacity: 1, refillRate: 1, initialTokens: 0, clock: lagging });
    let done = false;
    const waiting = bucket.take().then(() => {
      done = true;
    });
    lag = 10; // from now on the clock lags the timers by 10 ms
    await advance(1000);
    expect(done).toBe(false);
    expect(vi.getTimerCount()).toBe(1);
    await advance(20);
    await waiting;
    expect(done).toBe(true);
  });

  it('keeps the rate exact when every timer fires late (reservations, not a capped refill)', async () => {
    for (const perSecond of [300, 30]) {
      vi.setSystemTime(0);
      const bucket = tokenBucket({
        capacity: 1,
        refillRate: perSecond,
        initialTokens: 0,
        maxQueue: Number.POSITIVE_INFINITY,
        clock,
      });
      let granted = 0;
      const pending = Array.from({ length: perSecond * 3 }, () => bucket.take().then(() => granted++));
      for (let late = 0; Date.now() < 2000; late = (late + 1) % 4) {
        step(1 + late); // the clock moves on while the timer has not fired yet: it fires 1-4 ms late
        await vi.advanceTimersToNextTimerAsync();
        // Every waiter whose tokens have refilled by now is granted, however late the timers were.
        expect(granted).toBe(Math.floor((perSecond * Date.now()) / 1000 + 1e-9));
      }
      expect(granted).toBeGreaterThanOrEqual(perSecond * 2);
      bucket.close();
      await Promise.allSettled(pending);
    }
  });

  it('grants each waiter at the time computed when it reserved, not behind a late timer', async () => {
    vi.setSystemTime(0);
    // maxCatchUpMs: Infinity keeps every grant on schedule however late the timer (the default forfeits).
    const bucket = tokenBucket({
      capacity: 2,
      refillRate: 1,
      initialTokens: 0,
      clock,
      maxCatchUpMs: Number.POSITIVE_INFINITY,
    });
    const readyAt = [1000, 2000, 4000];
    const grantedAt: number[] = [];
    const pending = [1, 1, 2].map((n, index) => {
      expect(Date.now() + bucket.waitMsFor(n)).toBe(readyAt[index]);
      return bucket.take(n).then(() => grantedAt.push(Date.now()));
    });
    expect(bucket.waitMsFor(0)).toBe(4000); // the debt: 4 tokens reserved, none there
    step(1500); // the first timer (due at 1000) fires at 2500
    await advance(1000);
    expect(grantedAt).toEqual([2500, 2500]);
    await advance(1500);
    expect(grantedAt).toEqual([2500, 2500, 4000]); // on time: the lateness was not passed on
    await Promise.all(pending);
    expect(bucket.tokens).toBe(0);
  });

  it('after a long stall lets through only maxCatchUpMs worth of the waiters it held back, then the rate', async () => {
    for (const [maxCatchUpMs, atOnce] of [
      [20, 2], // the head (due at 16.7 ms) and the one due by 16.7 + 20 ms
      [Number.POSITIVE_INFINITY, 13], // everything due by 200 ms leaves together
    ] as const) {
      vi.setSystemTime(0);
      const bucket = tokenBucket({ capacity: 1, refillRate: 60, initialTokens: 0, clock, maxCatchUpMs });
      let granted = 0;
      const pending = Array.from({ length: 100 }, () => bucket.take().then(() => granted++));
      step(200); // the event loop stalls: the first timer (due at 16.7 ms) fires at 200 ms
      await vi.advanceTimersToNextTimerAsync();
      expect(granted).toBe(atOnce);
      // From then on one per 1/60 s, on time: the forfeited refill is not paid back later either.
      await advance(500);
      expect(granted).toBe(atOnce + 30);
      bucket.close();
      await Promise.allSettled(pending);
    }
  });

  it('an aborted reservation gives its tokens back; the next waiter is not delayed past its readyAt', async () => {
    vi.setSystemTime(0);
    const bucket = tokenBucket({ capacity: 2, refillRate: 1, initialTokens: 0, clock });
    const controller = new AbortController();
    const aborted = bucket.take(2, { signal: controller.signal }).catch((e: unknown) => e);
    const nextReadyAt = Date.now() + bucket.waitMsFor(1);
    expect(nextReadyAt).toBe(3000);
    let nextAt: number | undefined;
    const next = bucket.take(1).then(() => {
      nextAt = Date.now();
    });
    expect(bucket.waitMsFor(0)).toBe(3000);
    await advance(500);
    const reason = new Error('gone');
    controller.abort(reason);
    expect(await aborted).toBe(reason);
    // Its 2 tokens are back: the debt left is the next waiter's 1 token, 0.5 of it paid already.
    expect(bucket.waitMsFor(0)).toBe(500);
    expect(bucket.tryTake(1)).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 1500 });
    step(100); // late timer
    await advance(500);
    expect(nextAt).toBe(1100); // due at 1000 once the tokens came back, 100 ms late
    expect(nextAt).toBeLessThanOrEqual(nextReadyAt);
    await next;
    step(2000);
    expect(bucket.tokens).toBe(2); // nothing lost, nothing gained
  });

  it('an aborted head loses no refill: the bucket keeps what accrued before the abort', async () => {
    vi.setSystemTime(0);
    const bucket = tokenBucket({ capacity: 5, refillRate: 1, initialTokens: 0, clock });
    const controller = new AbortController();
    const aborted = bucket.take(5, { signal: controller.signal }).catch((e: unknown) => e);
    let nextAt: number | undefined;
    const next = bucket.take(1).then(() => {
      nextAt = Date.now();
    });
    await advance(3000); // the head is due at 5000: no timer is late, nothing stalled
    controller.abort(new Error('gone'));
    await aborted;
    await next;
    // 3 tokens accrued, the waiter behind takes 1 at once. Before the fix the refill was capped at the
    // waiter behind's due time (1000 ms + maxCatchUpMs) before the 5 reserved came back: 0.02 were left.
    expect(nextAt).toBe(3000);
    expect(bucket.tokens).toBe(2);
    expect(bucket.waitMsFor(1)).toBe(0); // was 980
    expect(bucket.waitMsFor(5)).toBe(3000);
    await advance(3000);
    expect(bucket.tokens).toBe(5); // full again, never above capacity
  });

  it('an aborted reservation never refills the bucket above capacity', async () => {
    // With the default the stall's refill past the head's due time + 20 ms is forfeited (0.02 token over
    // what the abort gives back); with Infinity all of it is kept. Either way the abort tops up to capacity.
    for (const maxCatchUpMs of [20, Number.POSITIVE_INFINITY]) {
      const bucket = tokenBucket({ capacity: 2, refillRate: 1, initialTokens: 1, clock, maxCatchUpMs });
      const controller = new AbortController();
      const aborted = bucket.take(2, { signal: controller.signal }).catch((e: unknown) => e);
      step(60_000); // the timer is very late; the bucket refilled meanwhile
      controller.abort(new Error('gone'));
      await aborted;
      expect(bucket.tokens).toBe(2);
      expect(bucket.tryTake(2)).toMatchObject({ allowed: true, remaining: 0 });
      expect(bucket.tryTake(1).allowed).toBe(false);
      expect(bucket.waitMsFor(1)).toBe(1000); // not a fraction of a token left over either
    }
  });

  it('close() gives the reserved tokens back to tryTake', async () => {
    const bucket = tokenBucket({ capacity: 3, refillRate: 1, initialTokens: 2, clock });
    const waiting = bucket.take(3).catch((e: unknown) => e);
    expect(bucket.tokens).toBe(0);
    bucket.close();
    expect(await waiting).toBeInstanceOf(ClosedError);
    expect(bucket.tokens).toBe(2);
  });

  it('rejects invalid calls without hanging', async () => {
    const bucket = tokenBucket({ capacity: 2, refillRate: 1, clock });
    await expect(bucket.take(3)).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(bucket.take(-1)).rejects.toThrow('`n`');
    await expect(bucket.take(1, { maxWaitMs: -5 })).rejects.toThrow('`maxWaitMs`');
    await expect(bucket.take(1, { timeout: 5 } as never)).rejects.toThrow('`timeout`');
    await expect(bucket.take(1, { signal: {} as AbortSignal })).rejects.toThrow('`signal`');
  });

  it('close() rejects waiters, clears the timer and rejects later takes', async () => {
    const bucket = tokenBucket({ capacity: 1, refillRate: 1, initialTokens: 0, clock });
    const signal = new AbortController().signal;
    const waiting = bucket.take(1, { signal }).catch((e: unknown) => e);
    bucket.close();
    bucket.close();
    expect(await waiting).toBeInstanceOf(ClosedError);
    expect(vi.getTimerCount()).toBe(0);
    await expect(bucket.take()).rejects.toMatchObject({ code: 'ERR_CLOSED' });
  });
});

/** A seeded shuffle (mulberry32), so a failure replays. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed >>> 0;
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

describe('TokenBucket abandoned backlog', () => {
  it('aborting 20,000 waiters in random order: the rest granted in FIFO order, counts right, array within 2x live', async () => {
    vi.setSystemTime(0);
    const total = 20_000;
    const kept = [3, 4_999, 5_000, 12_345, total - 1];
    // One token per second, none there: every waiter owes one token, so the debt is `queued` seconds.
    const bucket = tokenBucket({
      capacity: 1,
      refillRate: 1,
      initialTokens: 0,
      maxQueue: Number.POSITIVE_INFINITY,
      clock,
    });
    const controllers = Array.from({ length: total }, () => new AbortController());
    const reason = new Error('deadline');
    const granted: number[] = [];
    let rejected = 0;
    const pending = controllers.map((controller, index) =>
      bucket.take(1, { signal: controller.signal }).then(
        () => granted.push(index),
        (error: unknown) => {
          expect(error).toBe(reason);
          rejected++;
        },
      ),
    );
    expect(bucket.queued).toBe(total);
    const keptSet = new Set(kept);
    const aborts = shuffled(
      controllers.map((_, index) => index).filter((index) => !keptSet.has(index)),
      0xf100d,
    );
    // The head (0) goes somewhere in the middle of the order: the queue must skip it and re-arm.
    for (const [done, index] of aborts.entries()) {
      (controllers[index] as AbortController).abort(reason);
      const live = total - done - 1;
      expect(bucket.queued).toBe(live);
      expect(queueSlots(bucket)).toBeLessThanOrEqual(2 * live);
      if (done % 997 === 0) expect(bucket.waitMsFor(0)).toBe(live * 1000);
    }
    expect(bucket.queued).toBe(kept.length);
    expect(queueSlots(bucket)).toBeLessThanOrEqual(2 * kept.length);
    expect(bucket.waitMsFor(0)).toBe(kept.length * 1000);
    expect(vi.getTimerCount()).toBe(1);

    await advance(kept.length * 1000 - 1);
    expect(granted).toEqual(kept.slice(0, -1));
    await advance(1);
    await Promise.all(pending);
    expect(granted).toEqual(kept);
    expect(rejected).toBe(total - kept.length);
    expect(bucket.queued).toBe(0);
    expect(queueSlots(bucket)).toBe(0);
  });

  it('a backlog aborted entirely leaves an empty queue: tryTake passes at once and nothing is owed', async () => {
    vi.setSystemTime(0);
    const bucket = tokenBucket({ capacity: 2, refillRate: 1, initialTokens: 1, maxQueue: 100, clock });
    const controller = new AbortController(); // a deadline shared by every waiter
    setMaxListeners(100, controller.signal);
    const pending = Array.from({ length: 100 }, () =>
      bucket.take(2, { signal: controller.signal }).catch((e: unknown) => e),
    );
    expect(bucket.queued).toBe(100);
    await expect(bucket.take(1)).rejects.toBeInstanceOf(QueueFullError);
    controller.abort(new Error('deadline'));
    expect(await Promise.all(pending)).toEqual(Array(100).fill(new Error('deadline')));
    expect(bucket.queued).toBe(0);
    expect(queueSlots(bucket)).toBe(0);
    expect(bucket.waitMsFor(0)).toBe(0);
    expect(bucket.tryTake(1)).toMatchObject({ allowed: true, remaining: 0 });
    expect(vi.getTimerCount()).toBe(0);
  });
});

type QueueOp =
  | { readonly kind: 'take'; readonly n: number; readonly withSignal: boolean }
  | { readonly kind: 'abort'; readonly pick: number; readonly afterMs: number }
  | { readonly kind: 'advance'; readonly ms: number };

const queueOpArb: fc.Arbitrary<QueueOp> = fc.oneof(
  fc.record({
    kind: fc.constant('take' as const),
    n: fc.integer({ min: 1, max: 3 }),
    withSignal: fc.boolean(),
  }),
  // The clock moves on (due timers firing) before the abort, with no reading of the bucket in between:
  // refill is lazy, so a reading would refill up to that moment and hide an abort that mishandles it.
  fc.record({ kind: fc.constant('abort' as const), pick: fc.nat(), afterMs: fc.nat(1500) }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.nat(1500) }),
);

/**
 * The reference for the queue property: the token-bucket definition in exact integer arithmetic, in
 * milli-tokens (a rate of `perSecond` tokens/s adds `perSecond` of them per ms). `units` are the tokens
 * really in the bucket, reservations not deducted: the queue is served in arrival order, the head as soon
 * as `units` covers it, and `min(capacity, ...)` applies when nobody waits (while someone does, `units`
 * stays below the head's cost, so the cap cannot bind). An abort just leaves the queue: its tokens were
 * never taken out, and the refill up to that moment is kept.
 */
class QueueModel {
  units: number;
  now = 0;
  readonly queue: Array<{ id: number; n: number; controller: AbortController | undefined }> = [];
  readonly grants: Array<{ id: number; at: number; n: number }> = [];
  constructor(
    private readonly capacity: number,
    private readonly perSecond: number,
    initial: number,
  ) {
    this.units = initial * 1000;
  }
  /** Moves to `to`, granting each head at the moment its tokens are there. */
  advanceTo(to: number): void {
    for (let head = this.queue[0]; head !== undefined; head = this.queue[0]) {
      const dueIn = Math.max(0, (head.n * 1000 - this.units) / this.perSecond);
      if (this.now + dueIn > to) break;
      this.now += dueIn;
      this.units += dueIn * this.perSecond - head.n * 1000;
      this.queue.shift();
      this.grants.push({ id: head.id, at: this.now, n: head.n });
    }
    this.units += (to - this.now) * this.perSecond;
    if (this.queue.length === 0) this.units = Math.min(this.capacity * 1000, this.units);
    this.now = to;
  }
  take(id: number, n: number, controller: AbortController | undefined): void {
    this.queue.push({ id, n, controller });
    this.advanceTo(this.now); // a take with nobody ahead and the tokens there is granted at once
  }
  abort(entry: QueueModel['queue'][number]): void {
    this.queue.splice(this.queue.indexOf(entry), 1);
    this.advanceTo(this.now); // the waiter behind may be covered now
  }
  /** Tokens reserved by the waiters, in milli-tokens. */
  get reservedUnits(): number {
    return this.queue.reduce((sum, entry) => sum + entry.n * 1000, 0);
  }
}

describe('TokenBucket queue with aborts (property)', () => {
  it('matches the definition under take/abort/advance: FIFO, no refill lost, never above capacity or the rate bound', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 3, max: 5 }),
        // Rates that divide 1000, so every due time is a whole ms and the timers fire exactly on it (with
        // 3/s a timer rounds 333.3 ms up and a grant may be up to 1 ms late; the stall properties cover it).
        fc.constantFrom(1, 2, 4, 5),
        fc.nat(5),
        fc.array(queueOpArb, { maxLength: 80, size: 'medium' }),
        async (capacity, perSecond, initial, ops) => {
          vi.setSystemTime(0);
          const initialTokens = Math.min(initial, capacity);
          const bucket = tokenBucket({
            capacity,
            refillRate: perSecond,
            initialTokens,
            maxQueue: Number.POSITIVE_INFINITY,
            clock,
          });
          const perMs = perSecond / 1000;
          const model = new QueueModel(capacity, perSecond, initialTokens);
          const granted: Array<{ id: number; at: number; n: number }> = [];
          const pending: Promise<unknown>[] = [];
          let nextId = 0;
          const check = () => {
            model.advanceTo(Date.now());
            // Each call granted at the moment the definition grants it (FIFO among those not aborted,
            // abortable or not), and no other.
            expect(granted).toEqual(model.grants);
            expect(bucket.queued).toBe(model.queue.length);
            expect(queueSlots(bucket)).toBeLessThanOrEqual(2 * model.queue.length);
            if (model.queue.length === 0) expect(bucket.waitMsFor(0)).toBe(0);
            // The level (tokens minus reservations) to the ms: whole ms are exact here, so any refill lost
            // or minted shows. Then the tokens really held, reservations added back, never exceed capacity.
            const level = model.units - model.reservedUnits;
            const wait = bucket.waitMsFor(capacity);
            expect(wait).toBe(Math.max(0, Math.ceil((capacity * 1000 - level) / perSecond)));
            expect(bucket.tokens).toBe(Math.max(0, Math.floor(level / 1000)));
            const held = capacity - wait * perMs + model.reservedUnits / 1000;
            expect(held).toBeLessThanOrEqual(capacity + 1e-9);
          };
          for (const op of ops) {
            if (op.kind === 'take') {
              const id = nextId++;
              const n = op.n;
              const controller = op.withSignal ? new AbortController() : undefined;
              const options = controller === undefined ? undefined : { signal: controller.signal };
              pending.push(
                bucket.take(n, options).then(
                  () => granted.push({ id, at: Date.now(), n }),
                  (error: unknown) => expect(error).toEqual(new Error('gone')),
                ),
              );
              model.take(id, n, controller);
              await Promise.resolve();
            } else if (op.kind === 'abort') {
              await advance(op.afterMs);
              model.advanceTo(Date.now());
              const abortable = model.queue.filter((entry) => entry.controller !== undefined);
              const target = abortable[op.pick % Math.max(1, abortable.length)];
              if (target !== undefined) {
                target.controller?.abort(new Error('gone'));
                model.abort(target);
              }
            } else {
              await advance(op.ms);
            }
            await advance(0);
            check();
          }
          // Drain: everything not aborted is granted, in order.
          await advance(model.queue.length * capacity * 1000 + 1000);
          check();
          expect(model.queue).toEqual([]);
          await Promise.all(pending);
          expect(queueSlots(bucket)).toBe(0);
          // Never more than capacity + rate × d granted in any span d.
          for (let i = 0; i < granted.length; i++) {
            const first = granted[i] as (typeof granted)[number];
            let sum = 0;
            for (let j = i; j < granted.length; j++) {
              const last = granted[j] as (typeof granted)[number];
              sum += last.n;
              expect(sum).toBeLessThanOrEqual(capacity + perMs * (last.at - first.at) + 1e-6);
            }
          }
          // Nothing lost, nothing gained: a long idle spell refills to exactly capacity.
          step(capacity * 1000);
          expect(bucket.tokens).toBe(capacity);
          bucket.close();
        },
      ),
      { numRuns: 200 },
    );
  });
});

/**
 * The reference model: integer arithmetic in "token-milliseconds" (tokens × perMs), so it is exact.
 * A grant of n needs n × perMs units; each ms adds `tokens` units; the bucket holds capacity × perMs.
 */
class ReferenceBucket {
  private units: number;
  private last: number;
  constructor(
    private readonly capacity: number,
    private readonly tokens: number,
    private readonly perMs: number,
    initial: number,
    start: number,
  ) {
    this.units = initial * perMs;
    this.last = start;
  }
  tryTake(n: number, at: number): boolean {
    this.units = Math.min(this.capacity * this.perMs, this.units + (at - this.last) * this.tokens);
    this.last = at;
    if (this.units < n * this.perMs) return false;
    this.units -= n * this.perMs;
    return true;
  }
  refund(n: number): void {
    this.units = Math.min(this.capacity * this.perMs, this.units + n * this.perMs);
  }
  get whole(): number {
    return Math.floor(this.units / this.perMs);
  }
}

const opArb = fc.oneof(
  fc.record({ kind: fc.constant('take' as const), n: fc.integer({ min: 0, max: 20 }), dt: fc.nat(3000) }),
  fc.record({ kind: fc.constant('refund' as const), n: fc.integer({ min: 0, max: 5 }), dt: fc.nat(3000) }),
);

describe('TokenBucket properties', () => {
  it('matches an exact reference model; tokens never go negative', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.array(opArb, { maxLength: 60 }),
        (capacity, tokens, perMs, ops) => {
          vi.setSystemTime(0);
          const bucket = tokenBucket({
            capacity,
            refillRate: { tokens, perMs },
            initialTokens: capacity,
            clock,
          });
          const model = new ReferenceBucket(capacity, tokens, perMs, capacity, 0);
          for (const op of ops) {
            step(op.dt);
            if (op.kind === 'refund') {
              bucket.refund(op.n);
              model.tryTake(0, Date.now());
              model.refund(op.n);
            } else {
              const n = Math.min(op.n, capacity);
              const decision = bucket.tryTake(n);
              expect(decision.allowed).toBe(model.tryTake(n, Date.now()));
              expect(decision.remaining).toBe(model.whole);
              expect(decision.remaining).toBeGreaterThanOrEqual(0);
            }
          }
        },
      ),
    );
  });

  it('grants at most capacity + rate × d in any interval of length d', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 5000 }),
        fc.array(fc.record({ n: fc.integer({ min: 1, max: 20 }), dt: fc.nat(500) }), { maxLength: 80 }),
        (capacity, tokens, perMs, calls) => {
          vi.setSystemTime(0);
          const bucket = tokenBucket({ capacity, refillRate: { tokens, perMs }, clock });
          const grants: Array<{ at: number; n: number }> = [];
          for (const call of calls) {
            step(call.dt);
            const n = Math.min(call.n, capacity);
            if (bucket.tryTake(n).allowed) grants.push({ at: Date.now(), n });
          }
          for (let i = 0; i < grants.length; i++) {
            let sum = 0;
            for (let j = i; j < grants.length; j++) {
              sum += (grants[j] as { n: number }).n;
              const d = (grants[j] as { at: number }).at - (grants[i] as { at: number }).at;
              expect(sum).toBeLessThanOrEqual(capacity + (tokens / perMs) * d + 1e-6);
            }
          }
        },
      ),
    );
  });

  it('serves waiters in FIFO order, each as soon as its tokens are there, within the rate bound', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 10 }),
        queuedCalls,
        async (capacity, perSecond, calls) => {
          vi.setSystemTime(0);
          const bucket = tokenBucket({ capacity, refillRate: perSecond, initialTokens: 0, clock });
          const resolved: Array<{ index: number; at: number; n: number }> = [];
          const pending: Promise<unknown>[] = [];
          for (const [index, call] of calls.entries()) {
            await advance(call.dt);
            const n = Math.min(call.n, capacity);
            pending.push(bucket.take(n).then(() => resolved.push({ index, at: Date.now(), n })));
          }
          await advance(calls.length * 10 * 1000);
          await Promise.all(pending);
          expect(resolved.map((r) => r.index)).toEqual(calls.map((_, index) => index));
          // Starting empty, the k-th grant cannot come before the tokens of grants 1..k have refilled.
          let sum = 0;
          for (const r of resolved) {
            sum += r.n;
            expect(sum).toBeLessThanOrEqual((perSecond / 1000) * r.at + 1e-6);
          }
          bucket.close();
        },
      ),
      { numRuns: 50 },
    );
  });

  it('with stalls of any length: FIFO, never early, and at most capacity + rate × (d + maxCatchUpMs) in any d', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 400 }),
        fc.integer({ min: 0, max: 50 }),
        queuedCalls,
        fc.array(fc.nat(400), { minLength: 1, maxLength: 10 }),
        async (capacity, perSecond, maxCatchUpMs, calls, lateness) => {
          vi.setSystemTime(0);
          const bucket = tokenBucket({
            capacity,
            refillRate: perSecond,
            initialTokens: 0,
            clock,
            maxCatchUpMs,
          });
          const resolved = await queueAndDrainLate(bucket, calls, lateness);
          expect(resolved.map((r) => r.index)).toEqual(calls.map((_, index) => index));
          const perMs = perSecond / 1000;
          for (let i = 0; i < resolved.length; i++) {
            const first = resolved[i] as (typeof resolved)[number];
            expect(first.at).toBeGreaterThanOrEqual(first.readyAt); // never early
            let sum = 0;
            for (let j = i; j < resolved.length; j++) {
              const last = resolved[j] as (typeof resolved)[number];
              sum += last.n;
              expect(sum).toBeLessThanOrEqual(capacity + perMs * (last.at - first.at + maxCatchUpMs) + 1e-6);
            }
          }
          bucket.close();
        },
      ),
      { numRuns: 100 },
    );
  });

  it('with late timers: FIFO, never early, and each grant at most the worst lateness after its readyAt', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 400 }),
        queuedCalls,
        fc.array(fc.nat(50), { minLength: 1, maxLength: 10 }),
        async (capacity, perSecond, calls, lateness) => {
          vi.setSystemTime(0);
          const bucket = tokenBucket({
            capacity,
            refillRate: perSecond,
            initialTokens: 0,
            clock,
            maxCatchUpMs: Number.POSITIVE_INFINITY,
          });
          const resolved = await queueAndDrainLate(bucket, calls, lateness);
          expect(resolved.map((r) => r.index)).toEqual(calls.map((_, index) => index));
          const worst = Math.max(...lateness);
          let sum = 0;
          for (const r of resolved) {
            sum += r.n;
            // Never early: from empty, grants 1..k need their tokens refilled first (the rate bound).
            expect(sum).toBeLessThanOrEqual((perSecond / 1000) * r.at + 1e-6);
            // Never behind by more than one timer's lateness: no lateness is passed down the queue.
            expect(r.at).toBeGreaterThanOrEqual(r.readyAt);
            expect(r.at).toBeLessThanOrEqual(r.readyAt + worst);
          }
          bucket.close();
        },
      ),
      { numRuns: 100 },
    );
  });
});
