import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type BucketSpec,
  type ConsumeOptions,
  gate,
  keyedLimiter,
  type LimiterStore,
  MemoryStore,
  type StoreDecision,
  tokenBucket,
} from './index.js';
import { longTimeout, MAX_TIMEOUT_MS } from './long-timeout.js';

const DAY = 86_400_000;
const clock = () => Date.now();

beforeEach(() => {
  // vitest's fake timers replace a delay above 2^31-1 ms by 1 ms, as Node does.
  vi.useFakeTimers({ now: 0 });
});
afterEach(() => {
  expect(vi.getTimerCount()).toBe(0);
  vi.useRealTimers();
});

describe('longTimeout', () => {
  it('fires once after a delay longer than 2^31-1 ms, one timer at a time', () => {
    const fired: number[] = [];
    longTimeout(() => fired.push(Date.now()), 30 * DAY, false);
    vi.advanceTimersToNextTimer();
    expect(Date.now()).toBe(MAX_TIMEOUT_MS);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(30 * DAY - MAX_TIMEOUT_MS - 1);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual([30 * DAY]);
  });

  it('can be cleared between steps, and waits 1 ms for delays below 1', () => {
    const fired: string[] = [];
    const long = longTimeout(() => fired.push('long'), 60 * DAY, false);
    vi.advanceTimersByTime(MAX_TIMEOUT_MS + 5);
    long.clear();
    longTimeout(() => fired.push('short'), 0, false);
    vi.advanceTimersByTime(1);
    vi.runAllTimers();
    expect(fired).toEqual(['short']);
  });
});

describe('waits longer than 2^31-1 ms', () => {
  it('TokenBucket.take arms its timer for 2^31-1 ms and grants on time', async () => {
    const bucket = tokenBucket({ capacity: 1, refillRate: { tokens: 1, perMs: 30 * DAY }, clock });
    bucket.tryTake();
    let grantedAt: number | undefined;
    const taken = bucket.take(1).then(() => {
      grantedAt = Date.now();
    });
    vi.advanceTimersToNextTimer(); // before the fix: re-armed every 1 ms
    expect(Date.now()).toBe(MAX_TIMEOUT_MS);
    await vi.advanceTimersByTimeAsync(30 * DAY - MAX_TIMEOUT_MS - 10);
    expect(grantedAt).toBeUndefined();
    await vi.advanceTimersByTimeAsync(10);
    await taken;
    // TOKEN_EPSILON (1e-9 token) is 2.6 ms at one token a month.
    expect(grantedAt).toBeGreaterThan(30 * DAY - 10);
  });

  it('keyedLimiter.take sleeps through a reservation a month away', async () => {
    const limiter = keyedLimiter({ capacity: 1, refillRate: { tokens: 1, perMs: 30 * DAY }, clock });
    limiter.tryTake('merchant');
    let grantedAt: number | undefined;
    const taken = limiter.take('merchant').then((decision) => {
      grantedAt = Date.now();
      return decision;
    });
    await vi.advanceTimersByTimeAsync(1000);
    expect(grantedAt).toBeUndefined(); // before the fix: granted after 1 ms
    await vi.advanceTimersByTimeAsync(30 * DAY - 1000);
    expect(await taken).toMatchObject({ allowed: true, waitMs: 30 * DAY });
    expect(grantedAt).toBe(30 * DAY);
    await limiter.close();
  });

  it('gate.run with a store sleeps through a reservation a month away', async () => {
    const inner = new MemoryStore({ clock });
    const store: LimiterStore = {
      consume: async (key: string, cost: number, spec: BucketSpec, options?: ConsumeOptions) =>
        inner.consume(key, cost, spec, options) as StoreDecision,
      refund: async (key: string, cost: number, spec: BucketSpec) => inner.refund(key, cost, spec),
      close: () => {},
    };
    const g = gate({
      rate: { tokens: 1, perMs: 30 * DAY },
      concurrency: 1,
      maxQueue: 1,
      maxWaitMs: Number.POSITIVE_INFINITY,
      store,
      clock,
    });
    await g.run(async () => 'first');
    let startedAt: number | undefined;
    const second = g.run(async () => {
      startedAt = Date.now();
    });
    await vi.advanceTimersByTimeAsync(1000);
    expect(startedAt).toBeUndefined(); // before the fix: started after 1 ms
    await vi.advanceTimersByTimeAsync(30 * DAY - 1000);
    await second;
    expect(startedAt).toBe(30 * DAY);
    await g.close();
  });
});
