import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectedAnswers, OPERATION_CONTRACT, playContract } from '../test/store-contract.js';
import { type BucketSpec, ClosedError, InvalidOptionError, MemoryStore, memoryStore } from './index.js';

let now = 0;
const clock = () => now;
const spec: BucketSpec = { capacity: 5, refillPerMs: 1 / 1000 }; // 5 burst, 1 per second

describe('MemoryStore', () => {
  it('creates buckets full, takes, denies with when to retry, and refills', () => {
    now = 0;
    const store = memoryStore({ clock });
    expect(store.consume('a', 2, spec)).toEqual({
      allowed: true,
      limit: 5,
      remaining: 3,
      retryAfterMs: 0,
      resetAfterMs: 2000,
      waitMs: 0,
    });
    expect(store.consume('a', 3, spec)).toMatchObject({ allowed: true, remaining: 0, resetAfterMs: 5000 });
    expect(store.consume('a', 2, spec)).toEqual({
      allowed: false,
      limit: 5,
      remaining: 0,
      retryAfterMs: 2000,
      resetAfterMs: 5000,
      waitMs: 0,
    });
    expect(store.consume('b', 1, spec)).toMatchObject({ allowed: true, remaining: 4 });
    now = 1500;
    expect(store.consume('a', 2, spec)).toMatchObject({ allowed: false, remaining: 1, retryAfterMs: 500 });
    now = 2000;
    expect(store.consume('a', 2, spec)).toMatchObject({ allowed: true, remaining: 0 });
  });

  it('reserves from the future within maxWaitMs, and later callers wait behind the debt', () => {
    now = 0;
    const store = memoryStore({ clock });
    store.consume('a', 5, spec);
    expect(store.consume('a', 2, spec, { maxWaitMs: 1999 })).toMatchObject({
      allowed: false,
      retryAfterMs: 2000,
    });
    expect(store.consume('a', 2, spec, { maxWaitMs: 2000 })).toMatchObject({ allowed: true, waitMs: 2000 });
    expect(store.consume('a', 1, spec, { maxWaitMs: 10_000 })).toMatchObject({ allowed: true, waitMs: 3000 });
    expect(store.consume('a', 1, spec)).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 4000 });
    expect(() => store.consume('a', 1, spec, { maxWaitMs: -1 })).toThrow(InvalidOptionError);
    expect(() => store.consume('a', 1, spec, { wait: 1 } as never)).toThrow('`wait`');
  });

  it('refund gives tokens back, never above capacity', () => {
    now = 0;
    const store = memoryStore({ clock });
    store.consume('a', 5, spec);
    store.refund('a', 2, spec);
    expect(store.consume('a', 2, spec)).toMatchObject({ allowed: true, remaining: 0 });
    store.refund('a', 100, spec);
    expect(store.consume('a', 0, spec)).toMatchObject({ remaining: 5 });
    store.refund('unknown', 1, spec);
    expect(store.size).toBe(1);
    expect(() => store.refund('a', -1, spec)).toThrow(InvalidOptionError);
    expect(() => store.consume('a', 6, spec)).toThrow('`cost`');
    expect(() => store.consume('a', Number.NaN, spec)).toThrow('`cost`');
  });

  it('forgets buckets that refilled to full as new keys come', () => {
    now = 0;
    const store = memoryStore({ clock });
    for (let i = 0; i < 100; i++) store.consume(`k${i}`, 1, spec);
    expect(store.size).toBe(100);
    now = 1000; // every bucket is full again
    for (let i = 0; i < 100; i++) store.consume(`n${i}`, 1, spec);
    // each insertion sweeps two entries: the old, full ones are gone
    expect(store.size).toBeLessThanOrEqual(110);
  });

  it('when full, evicts a full bucket for a new key', () => {
    now = 0;
    const store = memoryStore({ clock, maxKeys: 3 });
    store.consume('a', 1, spec);
    store.consume('b', 5, spec);
    store.consume('c', 5, spec);
    now = 1000; // only a is full again
    expect(store.consume('d', 5, spec)).toMatchObject({ allowed: true, remaining: 0 });
    expect(store.size).toBe(3);
    expect(store.overflowCount).toBe(0);
    expect(store.consume('b', 1, spec)).toMatchObject({ allowed: true, remaining: 0 }); // b kept its state
  });

  it('when full of busy buckets, charges new keys to one shared overflow bucket', () => {
    now = 0;
    const store = memoryStore({ clock, maxKeys: 10 });
    for (let i = 0; i < 10; i++) store.consume(`user${i}`, 5, spec);
    // An attacker rotating keys: without the overflow bucket each would get a fresh burst of 5.
    let granted = 0;
    for (let i = 0; i < 1000; i++) if (store.consume(`attacker${i}`, 1, spec).allowed) granted++;
    expect(granted).toBe(5);
    expect(store.size).toBe(10);
    expect(store.overflowCount).toBe(1000);
    now = 1000;
    // The known keys keep their own buckets...
    expect(store.consume('user0', 1, spec)).toMatchObject({ allowed: true, remaining: 0 });
    // ...and once buckets are full again, new keys get their own slot.
    now = 10_000;
    expect(store.consume('late', 1, spec)).toMatchObject({ allowed: true, remaining: 4 });
    expect(store.overflowCount).toBe(1000);
  });

  it('spends once per operationId and replays the decision', () => {
    now = 0;
    const store = memoryStore({ clock, operationTtlMs: 1000, maxOperations: 2 });
    const first = store.consume('a', 2, spec, { operationId: 'op1' });
    expect(store.consume('a', 2, spec, { operationId: 'op1' })).toEqual({ ...first, replayed: true });
    expect(first.replayed).toBeUndefined();
    expect(store.consume('a', 0, spec)).toMatchObject({ remaining: 3 });
    // the same id under another key is another operation
    expect(store.consume('b', 2, spec, { operationId: 'op1' })).toMatchObject({ remaining: 3 });
    // expired: spends again
    now = 1000;
    expect(store.consume('a', 1, spec, { operationId: 'op1' })).toMatchObject({
      allowed: true,
      remaining: 3,
    });
    expect(() => store.consume('a', 1, spec, { operationId: 5 as never })).toThrow('`operationId`');
  });

  it('a clock that steps back adds no tokens and removes none', () => {
    now = 1_000_000;
    const store = memoryStore({ clock });
    expect(store.consume('c', 1, spec)).toMatchObject({ remaining: 4 });
    now -= 5_000;
    // before the fix: remaining 0 and a 6 s reset, as if 5 tokens had been taken
    expect(store.consume('c', 0, spec)).toMatchObject({ allowed: true, remaining: 4, resetAfterMs: 1000 });
    now += 5_000; // back where it was: nothing refilled meanwhile
    expect(store.consume('c', 0, spec)).toMatchObject({ remaining: 4, resetAfterMs: 1000 });
    now += 1_000;
    expect(store.consume('c', 0, spec)).toMatchObject({ remaining: 5 });
  });

  it('a refund that names the operation forgets it: the retry spends again, nothing is minted', () => {
    now = 0;
    const store = memoryStore({ clock });
    store.consume('r', 5, spec); // empty
    const first = store.consume('r', 1, spec, { operationId: 'op', maxWaitMs: 10_000 });
    expect(first).toMatchObject({ allowed: true, waitMs: 1000 });
    store.refund('r', 1, spec, { operationId: 'op' }); // abandoned
    // decided afresh: it reserves again (before the fix: a replay that spent nothing)
    const retry = store.consume('r', 1, spec, { operationId: 'op', maxWaitMs: 10_000 });
    expect(retry).toMatchObject({ allowed: true, waitMs: 1000 });
    expect(retry.replayed).toBeUndefined();
    expect(store.consume('r', 1, spec)).toMatchObject({ allowed: false, retryAfterMs: 2000 });
  });

  it('does not remember a denied operationId: its retry is decided afresh once tokens are back', () => {
    now = 0;
    const store = memoryStore({ clock });
    expect(store.consume('d', 5, spec)).toMatchObject({ allowed: true, remaining: 0 });
    const denied = store.consume('d', 1, spec, { operationId: 'op' });
    expect(denied.allowed).toBe(false);
    now += denied.retryAfterMs;
    expect(store.consume('d', 1, spec, { operationId: 'op' })).toMatchObject({ allowed: true });
    // and once granted, the same id spends nothing more
    expect(store.consume('d', 1, spec, { operationId: 'op' })).toMatchObject({ allowed: true, remaining: 0 });
  });

  it('replays a reservation with the wait that is left', () => {
    now = 0;
    const store = memoryStore({ clock });
    store.consume('a', 5, spec);
    expect(store.consume('a', 1, spec, { maxWaitMs: 5000, operationId: 'x' })).toMatchObject({
      waitMs: 1000,
    });
    now = 400;
    expect(store.consume('a', 1, spec, { maxWaitMs: 5000, operationId: 'x' })).toMatchObject({
      allowed: true,
      waitMs: 600,
    });
  });

  it('a grant replayed and then evicted by maxOperations is not given back by its refund', () => {
    now = 0;
    const store = memoryStore({ clock, maxOperations: 2 });
    store.consume('e', 2, spec, { operationId: 'pay' }); // take A
    expect(store.consume('e', 2, spec, { operationId: 'pay' }).replayed).toBe(true); // take B, free
    store.consume('e', 0, spec, { operationId: 'x' });
    store.consume('e', 0, spec, { operationId: 'y' }); // forgets 'pay'
    store.refund('e', 2, spec, { operationId: 'pay' }); // A abandoned: B may be using the tokens
    expect(store.consume('e', 0, spec)).toMatchObject({ remaining: 3 });
  });

  it('remembers a reservation until operationTtlMs after its tokens are ready, so its refund still counts', () => {
    now = 0;
    const store = memoryStore({ clock, operationTtlMs: 1000 });
    store.consume('w', 5, spec); // empty
    expect(store.consume('w', 1, spec, { operationId: 'gone', maxWaitMs: 5000 }).waitMs).toBe(1000);
    expect(store.consume('w', 1, spec, { operationId: 'again', maxWaitMs: 5000 }).waitMs).toBe(2000);
    now = 1500; // past the TTL counted from the decisions, within it counted from when the tokens are ready
    // Were they forgotten at 1000, the retry would reserve again and the refund (which goes back only
    // through a record) would give nothing back: 1500 ms to wait below, not 500.
    expect(store.consume('w', 1, spec, { operationId: 'again', maxWaitMs: 5000 })).toMatchObject({
      replayed: true,
      waitMs: 500,
    });
    store.refund('w', 1, spec, { operationId: 'gone' }); // abandoned during its wait
    expect(store.consume('w', 1, spec)).toMatchObject({ allowed: false, retryAfterMs: 500 });
  });

  it('with maxOperations 0 replays nothing, and a refund naming an operation gives its tokens back', () => {
    now = 0;
    const store = memoryStore({ clock, maxOperations: 0 });
    store.consume('z', 2, spec, { operationId: 'op' });
    expect(store.consume('z', 2, spec, { operationId: 'op' })).toMatchObject({ remaining: 1 });
    store.refund('z', 2, spec, { operationId: 'op' });
    expect(store.consume('z', 0, spec)).toMatchObject({ remaining: 3 });
  });

  it('bounds the remembered operations', () => {
    now = 0;
    const store = memoryStore({ clock, maxOperations: 2 });
    store.consume('a', 1, spec, { operationId: '1' });
    store.consume('a', 1, spec, { operationId: '2' });
    store.consume('a', 1, spec, { operationId: '3' }); // forgets '1'
    store.consume('a', 1, spec, { operationId: '1' }); // spends again
    expect(store.consume('a', 0, spec)).toMatchObject({ remaining: 1 });
  });

  it('close() forgets everything and refuses later calls', () => {
    const store = new MemoryStore({ clock });
    store.consume('a', 1, spec);
    store.close();
    expect(store.size).toBe(0);
    expect(() => store.consume('a', 1, spec)).toThrow(ClosedError);
    expect(() => store.refund('a', 1, spec)).toThrow(ClosedError);
  });

  it('defaults as documented: maxKeys 100_000, operations remembered 60 s, at most 10_000 of them', () => {
    now = 0;
    const store = memoryStore({ clock });
    expect(store.maxKeys).toBe(100_000);
    const first = store.consume('a', 1, spec, { operationId: 'op' });
    now = 59_999;
    expect(store.consume('a', 1, spec, { operationId: 'op' })).toEqual({ ...first, replayed: true });
    now = 60_000;
    expect(store.consume('a', 1, spec, { operationId: 'op' }).replayed).toBeUndefined();
    // 10_000 operations are remembered; the 10_001st forgets the oldest (op-0), not the next (op-1).
    for (let i = 0; i < 10_001; i++) store.consume('b', 0, spec, { operationId: `op-${i}` });
    expect(store.consume('b', 0, spec, { operationId: 'op-1' }).replayed).toBe(true);
    expect(store.consume('b', 0, spec, { operationId: 'op-0' }).replayed).toBeUndefined();
  });

  it('validates its options', () => {
    expect(() => memoryStore({ maxKeys: 0 })).toThrow('`maxKeys`');
    expect(() => memoryStore({ operationTtlMs: -1 })).toThrow('`operationTtlMs`');
    expect(() => memoryStore({ maxOperations: 1.5 })).toThrow('`maxOperations`');
    expect(() => memoryStore({ max: 1 } as never)).toThrow('`max`');
  });

  it('matches an exact reference bucket per key while buckets are forgotten and re-created', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.array(
          fc.record({
            key: fc.constantFrom('a', 'b', 'c'),
            n: fc.integer({ min: 0, max: 20 }),
            dt: fc.nat(3000),
          }),
          { maxLength: 80 },
        ),
        (capacity, tokens, perMs, calls) => {
          now = 5_000_000;
          // maxKeys = keys in play: the sweeper forgets full buckets, and a forgotten bucket must come back
          // exactly as full as the model says it is.
          const store = memoryStore({ clock, maxKeys: 3 });
          const bucketSpec = { capacity, refillPerMs: tokens / perMs };
          // exact integer model in token-ms units, one bucket per key, plus the overflow bucket
          const units = new Map<string, { units: number; last: number }>();
          for (const call of calls) {
            now += call.dt;
            const n = Math.min(call.n, capacity);
            const decision = store.consume(call.key, n, bucketSpec);
            expect(decision.remaining).toBeGreaterThanOrEqual(0);
            expect(decision.remaining).toBeLessThanOrEqual(capacity);
            const state = units.get(call.key) ?? { units: capacity * perMs, last: now };
            state.units = Math.min(capacity * perMs, state.units + (now - state.last) * tokens);
            state.last = now;
            expect(decision.allowed).toBe(state.units >= n * perMs);
            if (decision.allowed) state.units -= n * perMs;
            expect(decision.remaining).toBe(Math.floor(state.units / perMs));
            units.set(call.key, state);
          }
        },
      ),
    );
  });

  describe('the operationId contract every store keeps (test/store-contract.ts)', () => {
    it.each(OPERATION_CONTRACT)('$name', async ({ steps }) => {
      now = 0;
      const store = memoryStore({ clock });
      expect(await playContract(store, 'k', steps)).toEqual(expectedAnswers(steps));
    });
  });

  it('matches the reference exactly for one key', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.array(fc.record({ n: fc.integer({ min: 0, max: 20 }), dt: fc.nat(3000) }), { maxLength: 80 }),
        (capacity, tokens, perMs, calls) => {
          now = 123_456;
          const store = memoryStore({ clock });
          const bucketSpec = { capacity, refillPerMs: tokens / perMs };
          let units = capacity * perMs;
          let last = now;
          for (const call of calls) {
            now += call.dt;
            const n = Math.min(call.n, capacity);
            units = Math.min(capacity * perMs, units + (now - last) * tokens);
            last = now;
            const expected = units >= n * perMs;
            if (expected) units -= n * perMs;
            const decision = store.consume('k', n, bucketSpec);
            expect(decision.allowed).toBe(expected);
            expect(decision.remaining).toBe(Math.floor(units / perMs));
          }
        },
      ),
    );
  });
});
