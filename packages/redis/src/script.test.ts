import type { BucketSpec } from '@floodgate/token-bucket';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { adminClient, deleteKeys, describeRedis, testPrefix } from '../test/redis-available.js';
import { ModelBucket, type ModelOperation } from '../test/reference-model.js';
import { BUCKET_SCRIPT, type BucketOperation, decodeDecision, encodeBatch, scriptSha } from './script.js';

const prefix = testPrefix('script');

describeRedis('the bucket script against the reference model', () => {
  let client: Redis;
  beforeAll(() => {
    client = adminClient();
  });
  afterAll(async () => {
    await deleteKeys(client, prefix);
    await client.quit();
  });

  /** Runs one batch at an injected server time; returns the decisions, the key's TTL, and whether it exists. */
  async function run(
    bucketKey: string,
    spec: BucketSpec,
    now: number,
    operations: readonly ModelOperation[],
  ) {
    const encoded: BucketOperation[] = operations.map((operation) => {
      const op =
        operation.operationId === undefined ? {} : { opKey: `${bucketKey}:op:${operation.operationId}` };
      return operation.kind === 'refund'
        ? { kind: 'refund', cost: operation.cost, ...op }
        : { kind: 'consume', cost: operation.cost, maxWaitMs: operation.maxWaitMs, ...op };
    });
    const { keys, args } = encodeBatch(bucketKey, spec, 600_000, encoded, now);
    // PTTL and PERSIST in the same transaction: the TTL the script set is read exactly, and the real clock
    // cannot expire the key between two steps of a sequence that runs on injected time.
    const results = await client
      .multi()
      .eval(BUCKET_SCRIPT, keys.length, ...keys, ...args)
      .pttl(bucketKey)
      .persist(bucketKey)
      .exec();
    if (results === null) throw new Error('transaction aborted');
    for (const [error] of results) if (error) throw error;
    const reply = results[0]?.[1] as unknown[];
    const consumes = operations.filter((operation) => operation.kind === 'consume').length;
    const decisions = Array.from({ length: consumes }, (_, index) =>
      decodeDecision(reply, index, spec.capacity),
    );
    return { decisions, ttl: results[1]?.[1] as number };
  }

  function expectSameDecision(actual: unknown, expected: unknown): void {
    const a = actual as Record<string, number | boolean>;
    const e = expected as Record<string, number | boolean>;
    expect(a.allowed).toBe(e.allowed);
    expect(a.replayed).toBe(e.replayed);
    expect(a.limit).toBe(e.limit);
    expect(a.remaining).toBe(e.remaining);
    for (const field of ['retryAfterMs', 'resetAfterMs', 'waitMs']) {
      const x = a[field] as number;
      const y = e[field] as number;
      if (!Number.isFinite(y)) expect(x).toBe(y);
      else expect(Math.abs(x - y)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(y)));
    }
  }

  // The key is absent exactly when the model's bucket is full; when the step wrote, its TTL is the time to
  // refill (+1 ms); a step that only read leaves the (persisted) key alone. PTTL runs on Redis's real
  // clock right after the script, in the same transaction: usually the same ms or the next, but a server
  // thread preempted on a loaded 2-core machine can let a few ms pass. (The property below failed once
  // under heavy load, its cause not captured; this real-clock bound is the one timing-dependent check.)
  function expectTtl(ttl: number, model: ModelBucket, before: number | undefined): void {
    const expected = model.expectedTtlMs();
    if (expected === -2) expect(ttl).toBe(-2);
    else if (ttl !== -1 || model.tokens !== before) {
      expect(ttl).toBeGreaterThanOrEqual(expected - 5);
      expect(ttl).toBeLessThanOrEqual(expected);
    }
  }

  it('has a stable SHA1 for EVALSHA', () => {
    expect(scriptSha(BUCKET_SCRIPT)).toMatch(/^[0-9a-f]{40}$/);
  });

  it('answers a short scripted sequence exactly as the model', async () => {
    const spec = { capacity: 5, refillPerMs: 0.001 };
    const key = `${prefix}{fixed}`;
    const model = new ModelBucket(spec);
    const t0 = 1_700_000_000_000.5;
    const steps: [number, ModelOperation[]][] = [
      [t0, [{ kind: 'consume', cost: 3, maxWaitMs: 0 }]],
      [t0, [{ kind: 'consume', cost: 3, maxWaitMs: 0 }]],
      [t0 + 10, [{ kind: 'consume', cost: 3, maxWaitMs: 2_000 }]],
      [t0 + 10, [{ kind: 'consume', cost: 9, maxWaitMs: 1e300 }]],
      [t0 + 20, [{ kind: 'refund', cost: 10 }]],
    ];
    const seen = [];
    for (const [now, operations] of steps) {
      const before = model.tokens;
      const { decisions, ttl } = await run(key, spec, now, operations);
      const expected = operations
        .map((operation) => model.apply(now, operation))
        .filter((d) => d !== undefined);
      for (const [index, decision] of decisions.entries()) expectSameDecision(decision, expected[index]);
      seen.push(...decisions);
      expectTtl(ttl, model, before);
    }
    expect(seen.map((decision) => decision.allowed)).toEqual([true, false, true, false]);
    expect(seen[1]?.retryAfterMs).toBe(1_000);
    expect(seen[2]?.waitMs).toBe(991); // 990 ms plus float dust, rounded up: never early
    expect(seen[3]?.retryAfterMs).toBe(Number.POSITIVE_INFINITY);
  });

  it('marks a replayed operation record within the three numeric fields an earlier script parses', async () => {
    const spec = { capacity: 5, refillPerMs: 0.001 };
    const key = `${prefix}{mark}`;
    const opKey = `${key}:op:x`;
    const t0 = 1_700_000_000_000;
    await run(key, spec, t0, [{ kind: 'consume', cost: 1, maxWaitMs: 0, operationId: 'x' }]);
    const ttlBefore = await client.pttl(opKey);
    await run(key, spec, t0, [{ kind: 'consume', cost: 1, maxWaitMs: 0, operationId: 'x' }]);
    // A script from before the mark (still running on other instances during a rolling upgrade) matches
    // '^(%S+) (%S+) (%S+)$' and reads each field with tonumber, which takes '+1000' as 1000. A fourth field
    // would fail that match, and the script with it (an outage, for that instance).
    const record = (await client.get(opKey)) ?? '';
    expect(record).toMatch(/^\S+ \+\S+ \S+$/);
    expect(record.split(' ').map(Number)).toEqual([4, 1000, t0]);
    const ttlAfter = await client.pttl(opKey);
    expect(ttlAfter).toBeGreaterThan(0); // the mark kept the record's TTL (KEEPTTL)
    expect(ttlAfter).toBeLessThanOrEqual(ttlBefore);
  });

  it('matches the model on random sequences of batches (consume, reserve, refund, operation ids)', async () => {
    const operation = (capacity: number) =>
      fc.oneof(
        {
          weight: 5,
          arbitrary: fc.record(
            {
              kind: fc.constant('consume' as const),
              cost: fc.oneof(
                fc.integer({ min: 1, max: capacity + 1 }),
                fc.double({ min: 0.25, max: capacity, noNaN: true }),
              ),
              maxWaitMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 5_000 })),
              operationId: fc.constantFrom('a', 'b', 'c'),
            },
            { requiredKeys: ['kind', 'cost', 'maxWaitMs'] },
          ),
        },
        {
          weight: 1,
          arbitrary: fc.record(
            {
              kind: fc.constant('refund' as const),
              cost: fc.integer({ min: 1, max: capacity }),
              operationId: fc.constantFrom('a', 'b', 'c'),
            },
            { requiredKeys: ['kind', 'cost'] },
          ),
        },
      );
    let run_ = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }).chain((capacity) =>
          fc.record({
            capacity: fc.constant(capacity),
            refillPerMs: fc.double({ min: 0.0005, max: 2, noNaN: true }),
            start: fc.double({ min: 1e12, max: 2e12, noNaN: true }),
            steps: fc.array(
              fc.record({
                advanceMs: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 3_000, noNaN: true })),
                operations: fc.array(operation(capacity), { minLength: 1, maxLength: 4 }),
              }),
              { minLength: 1, maxLength: 12 },
            ),
          }),
        ),
        async ({ capacity, refillPerMs, start, steps }) => {
          run_ += 1;
          const spec = { capacity, refillPerMs };
          const key = `${prefix}{prop-${run_}}`;
          const model = new ModelBucket(spec);
          let now = start;
          for (const step of steps) {
            now += step.advanceMs;
            const before = model.tokens;
            const { decisions, ttl } = await run(key, spec, now, step.operations);
            const expected = step.operations
              .map((op) => model.apply(now, op))
              .filter((decision) => decision !== undefined);
            expect(decisions).toHaveLength(expected.length);
            for (const [index, decision] of decisions.entries())
              expectSameDecision(decision, expected[index]);
            // The key is absent exactly when the model's bucket is full; when the step wrote, its TTL is
            // the time to refill (+1 ms); a step that only read leaves the earlier (persisted) key alone.
            expectTtl(ttl, model, before);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
