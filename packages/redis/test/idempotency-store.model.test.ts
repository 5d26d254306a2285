/**
 * The Redis idempotency store against the reference model of the store contract that the memory store
 * is held to as well (packages/http/test/idempotency-model.ts).
 *
 * Time. The store reads no clock: a lease and a stored response are the record key's expiry (`PX`), and
 * `leaseRemainingMs` is its `PTTL`, both on the server's own clock. So the test moves the store's time
 * the way the server would see it move: `advance(ms)` takes `ms` off the TTL of every record of the run,
 * in one script per key (a script sees one frozen time, so the shift is exact), and deletes a record
 * whose TTL that ends, as the server would expire it. Every duration is a whole number of 60 s units, so
 * the real time that passes while a run executes (milliseconds) cannot end a lease or a response the
 * model still holds, nor keep one the model has ended: the only reading it moves is `leaseRemainingMs`,
 * checked to be at most the model's and short of it by no more than the run has taken. Not modelled
 * here: a lease's expiry waking `waitForChange` (a real timer at the real `PTTL`; the store's own test
 * covers it); completion and release wake it through pub/sub, and those are checked.
 */
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import {
  IdempotencyModel,
  idempotencyCommands,
  Real,
  type StoreDriver,
} from '../../http/test/idempotency-model.js';
import { type RedisIdempotencyStore, redisIdempotencyStore } from '../src/index.js';
import { adminClient, deleteKeys, describeRedis, REDIS_URL, testPrefix } from './redis-available.js';

const prefix = testPrefix('idem-model');
const UNIT_MS = 60_000;
const KEYS = ['a', 'b', 'c'];

/** Shifts one record's expiry `ARGV[1]` ms closer; a record without an expiry is a store bug. */
const SHIFT = `local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return -2 end
if ttl == -1 then return redis.error_reply('a record without an expiry: ' .. KEYS[1]) end
local left = ttl - tonumber(ARGV[1])
if left > 0 then redis.call('PEXPIRE', KEYS[1], left) else redis.call('DEL', KEYS[1]) end
return left`;

describeRedis('RedisIdempotencyStore against the reference model', () => {
  let admin: Redis;
  let stores: [RedisIdempotencyStore, RedisIdempotencyStore];
  beforeAll(() => {
    admin = adminClient();
    // Two instances on their own connections, like two shop processes. No poll wakes a waiter early
    // (one would be allowed, but then a missing pub/sub wake-up could hide behind it).
    const options = { url: REDIS_URL, prefix, timeoutMs: 2_000, pollIntervalMs: 3_600_000 };
    stores = [redisIdempotencyStore(options), redisIdempotencyStore(options)];
  });
  afterAll(async () => {
    await Promise.all(stores.map((store) => store.close()));
    await deleteKeys(admin, prefix);
    await admin.quit();
  });

  it('matches the model on random sequences: two instances, concurrent begins, takeovers, stale owners, waits', async () => {
    let run = 0;
    const seen = { takeovers: 0, staleIgnored: 0, evictions: 0, completed: 0, released: 0 };
    await fc.assert(
      fc.asyncProperty(
        idempotencyCommands({ keys: KEYS, unitMs: UNIT_MS, fineMs: false, maxCommands: 50 }),
        async (commands) => {
          run += 1;
          const key = (modelKey: string) => `run-${run}:${modelKey}`;
          const recordKey = (modelKey: string) => `${prefix}idem:{${key(modelKey)}}`;
          const startedAt = performance.now();
          const driver: StoreDriver = {
            clients: stores,
            key,
            advance: async (ms) => {
              await Promise.all(KEYS.map((k) => admin.eval(SHIFT, 1, recordKey(k), ms)));
            },
            leaseSlackMs: () => Math.ceil(performance.now() - startedAt) + 2,
            settle: async (done) => {
              // A pub/sub message or a script's reply: real round trips, so poll for them (bounded; the
              // caller's assertion reports a wake-up that did not come).
              await vi
                .waitFor(() => expect(done()).toBe(true), { timeout: 1_000, interval: 1 })
                .catch(() => {});
            },
            registered: async (storeKey, waiting) => {
              // Registered once the store marked the record as watched (after its SUBSCRIBE was
              // confirmed), or when the wait already ended.
              const record = `${prefix}idem:{${storeKey}}`;
              await vi.waitFor(
                async () => expect(waiting() || (await admin.hexists(record, 'w')) === 1).toBe(true),
                { timeout: 2_000, interval: 1 },
              );
            },
            wakesOnExpiry: false,
          };
          const real = new Real(driver);
          const model = new IdempotencyModel();
          try {
            await fc.asyncModelRun(() => ({ model, real }), commands);
          } finally {
            await real.cleanUp();
            await admin.del(...KEYS.map(recordKey));
          }
          for (const name of Object.keys(seen) as (keyof typeof seen)[]) seen[name] += model.seen[name];
        },
      ),
      { numRuns: 150 },
    );
    // The cases the model exists for did come up (150 runs meet ~300 takeovers, ~250 stale owners, ~160
    // completions, ~80 releases).
    expect(seen.takeovers).toBeGreaterThan(100);
    expect(seen.staleIgnored).toBeGreaterThan(80);
    expect(seen.completed).toBeGreaterThan(50);
    expect(seen.released).toBeGreaterThan(25);
    expect(await admin.keys(`${prefix}*`)).toEqual([]);
    // Passing takes about 2 s; the rest is for shrinking a failure whose wake-ups each wait their 1 s out.
  }, 120_000);
});
