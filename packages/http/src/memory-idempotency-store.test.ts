import { afterEach, describe, expect, it, vi } from 'vitest';
import { InvalidOptionError, StoreUnavailableError } from './errors.js';
import type { StoredResponse } from './idempotency-store.js';
import { MemoryIdempotencyStore, memoryIdempotencyStore } from './memory-idempotency-store.js';

const response: StoredResponse = {
  status: 201,
  headers: { 'content-type': 'application/json' },
  body: '{}',
  encoding: 'utf8',
};

function setup(maxKeys?: number) {
  let now = 0;
  const store = memoryIdempotencyStore({ clock: () => now, ...(maxKeys === undefined ? {} : { maxKeys }) });
  return { store, advance: (ms: number) => (now += ms) };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('MemoryIdempotencyStore', () => {
  it('leases a free key once; a second begin sees it in flight with the lease time left', () => {
    const { store, advance } = setup();
    const first = store.begin('k', 'fp', 1000);
    expect(first.acquired).toBe(true);
    advance(400);
    expect(store.begin('k', 'fp', 1000)).toEqual({
      acquired: false,
      record: { state: 'in-flight', fingerprint: 'fp', leaseRemainingMs: 600 },
    });
  });

  it('stores a completed response for the TTL, then forgets it', () => {
    const { store, advance } = setup();
    const begun = store.begin('k', 'fp', 1000);
    if (!begun.acquired) throw new Error('expected a lease');
    store.complete('k', begun.lease, response, 5000);
    expect(store.begin('k', 'fp', 1000)).toEqual({
      acquired: false,
      record: { state: 'completed', fingerprint: 'fp', response },
    });
    advance(5000);
    expect(store.begin('k', 'fp', 1000).acquired).toBe(true);
  });

  it('frees a key whose lease expired (a crashed request), and ignores the late owner', () => {
    const { store, advance } = setup();
    const crashed = store.begin('k', 'fp', 1000);
    advance(1000);
    const takeover = store.begin('k', 'fp', 1000);
    expect(takeover.acquired).toBe(true);
    if (!crashed.acquired || !takeover.acquired) throw new Error('expected leases');
    store.complete('k', crashed.lease, { ...response, status: 200 }, 5000);
    store.release('k', crashed.lease);
    expect(store.begin('k', 'fp', 1000).acquired).toBe(false);
    store.complete('k', takeover.lease, response, 5000);
    const after = store.begin('k', 'fp', 1000);
    expect(
      after.acquired === false && after.record.state === 'completed' && after.record.response.status,
    ).toBe(201);
  });

  it('a lease that expired owns nothing: its late complete is ignored even when nobody took the key over', () => {
    // As in Redis, where the key expires with the lease: the outcome must not depend on whether some
    // begin came between the expiry and the late complete.
    const { store, advance } = setup();
    const slow = store.begin('k', 'fp', 1000);
    if (!slow.acquired) throw new Error('expected a lease');
    advance(1000);
    store.complete('k', slow.lease, response, 5000);
    expect(store.begin('k', 'fp', 1000).acquired).toBe(true);
  });

  it('when full, drops expired entries before a live stored response, wherever they sit', () => {
    const { store, advance } = setup(2);
    const stored = store.begin('stored', 'fp', 1000);
    if (!stored.acquired) throw new Error('expected a lease');
    store.complete('stored', stored.lease, response, 60_000);
    // A request that crashed, begun after the response was stored: behind it in insertion order.
    expect(store.begin('crashed', 'fp', 1000).acquired).toBe(true);
    advance(1000);
    expect(store.begin('fresh', 'fp', 1000).acquired).toBe(true);
    expect(store.begin('stored', 'fp', 1000)).toEqual({
      acquired: false,
      record: { state: 'completed', fingerprint: 'fp', response },
    });
    expect(store.size).toBe(2);
  });

  it('release frees the key without storing', () => {
    const { store } = setup();
    const begun = store.begin('k', 'fp', 1000);
    if (!begun.acquired) throw new Error('expected a lease');
    store.release('k', begun.lease);
    expect(store.begin('k', 'other', 1000).acquired).toBe(true);
  });

  it('stays bounded: evicts the oldest completed keys, never a live lease', () => {
    const { store } = setup(3);
    const leased = store.begin('leased', 'fp', 10_000);
    expect(leased.acquired).toBe(true);
    for (const key of ['a', 'b', 'c', 'd']) {
      const begun = store.begin(key, 'fp', 10_000);
      if (begun.acquired) store.complete(key, begun.lease, response, 60_000);
    }
    expect(store.size).toBe(3);
    expect(store.begin('leased', 'fp', 10_000).acquired).toBe(false);
    expect(store.begin('d', 'fp', 10_000).acquired).toBe(false);
  });

  it('waitForChange resolves on completion, on abort, and when the lease expires', async () => {
    vi.useFakeTimers();
    const { store } = setup();
    const begun = store.begin('k', 'fp', 1000);
    if (!begun.acquired) throw new Error('expected a lease');
    let woke = 0;
    void store.waitForChange('k', new AbortController().signal).then(() => (woke += 1));
    store.complete('k', begun.lease, response, 5000);
    await vi.advanceTimersByTimeAsync(0);
    expect(woke).toBe(1);

    const second = store.begin('k2', 'fp', 1000);
    expect(second.acquired).toBe(true);
    const controller = new AbortController();
    void store.waitForChange('k2', controller.signal).then(() => (woke += 1));
    controller.abort();
    await vi.advanceTimersByTimeAsync(0);
    expect(woke).toBe(2);

    void store.waitForChange('k2', new AbortController().signal).then(() => (woke += 1));
    await vi.advanceTimersByTimeAsync(999);
    expect(woke).toBe(2);
    await vi.advanceTimersByTimeAsync(2);
    expect(woke).toBe(3);
    store.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('close wakes every waiter and empties the store', async () => {
    const { store } = setup();
    store.begin('k', 'fp', 60_000);
    const waiting = store.waitForChange('k', new AbortController().signal);
    store.close();
    await expect(waiting).resolves.toBeUndefined();
    expect(store.size).toBe(0);
  });

  it('begin fails after close (StoreUnavailableError), so no request proceeds on a closed store', () => {
    const store = new MemoryIdempotencyStore();
    store.close();
    expect(() => store.begin('k', 'f', 1000)).toThrow(StoreUnavailableError);
  });

  it('validates options', () => {
    expect(() => new MemoryIdempotencyStore({ maxKeys: 0 })).toThrow(InvalidOptionError);
    expect(() => new MemoryIdempotencyStore({ clock: 5 as never })).toThrow(/`clock`/);
    expect(() => new MemoryIdempotencyStore({ max: 1 } as never)).toThrow(/Unknown option `max`/);
  });
});
