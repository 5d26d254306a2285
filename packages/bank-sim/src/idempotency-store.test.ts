import { describe, expect, it } from 'vitest';
import { type IdempotencyRecord, IdempotencyStore } from './idempotency-store.js';

function defined(record: IdempotencyRecord | undefined): IdempotencyRecord {
  if (record === undefined) throw new Error('expected a record');
  return record;
}

describe('IdempotencyStore', () => {
  it('locks, completes and returns a record', () => {
    const store = new IdempotencyStore({ maxKeys: 10, ttlMs: 1000 });
    const record = defined(store.begin('k', 'fp', {}, 0));
    expect(record.state).toBe('processing');
    store.complete(record, 'succeeded', 201, '{}', { id: 'pay_1' }, 0);
    expect(store.get('k', 1)).toMatchObject({ state: 'succeeded', status: 201, payment: { id: 'pay_1' } });
  });

  it('expires completed records after ttlMs, never a record in flight', () => {
    const store = new IdempotencyStore({ maxKeys: 10, ttlMs: 1000 });
    const done = defined(store.begin('done', 'fp', {}, 0));
    store.complete(done, 'succeeded', 201, '{}', {}, 0);
    store.begin('busy', 'fp', {}, 0);
    expect(store.get('done', 999)).toBeDefined();
    expect(store.get('done', 1000)).toBeUndefined();
    expect(store.get('busy', 5000)).toBeDefined();
  });

  it('counts ttlMs from completion: a payment slower than ttlMs is remembered after its answer', () => {
    const store = new IdempotencyStore({ maxKeys: 10, ttlMs: 1000 });
    const slow = defined(store.begin('slow', 'fp', {}, 0));
    expect(store.get('slow', 5000)).toBe(slow); // processing: a lock, never expired
    store.complete(slow, 'succeeded', 201, '{}', {}, 5000);
    expect(store.get('slow', 5999)).toMatchObject({ state: 'succeeded' });
    expect(store.get('slow', 6000)).toBeUndefined();
  });

  it('evicts the oldest completed record when full, and refuses when all are in flight', () => {
    const store = new IdempotencyStore({ maxKeys: 2, ttlMs: 1000 });
    const busy = defined(store.begin('busy', 'fp', {}, 0));
    const old = defined(store.begin('old', 'fp', {}, 0));
    store.complete(old, 'succeeded', 201, '{}', {}, 0);
    expect(store.begin('new', 'fp', {}, 1)).toBeDefined();
    expect(store.get('old', 1)).toBeUndefined();
    expect(store.get('busy', 1)).toBe(busy);
    expect(store.size).toBe(2);
    expect(store.begin('more', 'fp', {}, 1)).toBeUndefined();
  });

  it('abandon() forgets the record so the key starts over', () => {
    const store = new IdempotencyStore({ maxKeys: 2, ttlMs: 1000 });
    const record = defined(store.begin('k', 'fp', {}, 0));
    store.abandon(record);
    expect(store.get('k', 0)).toBeUndefined();
  });
});
