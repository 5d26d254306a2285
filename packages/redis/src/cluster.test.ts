import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { describeRedis } from '../test/redis-available.js';
import { clusterToolsAvailable, type PrivateCluster, startPrivateCluster } from '../test/redis-cluster.js';
import { type RedisIdempotencyStore, type RedisStore, redisIdempotencyStore, redisStore } from './index.js';

const describeCluster = clusterToolsAvailable ? describeRedis : describe.skip;

describeCluster('on a Redis Cluster (three masters, private)', () => {
  let cluster: PrivateCluster;
  let client: Cluster;
  let store: RedisStore;
  let idempotencyStores: RedisIdempotencyStore[] = [];
  beforeAll(async () => {
    cluster = await startPrivateCluster();
    client = new Cluster([{ host: '127.0.0.1', port: cluster.ports[0] as number }], {
      enableOfflineQueue: true,
    });
  }, 20_000);
  afterAll(async () => {
    await store?.close();
    await Promise.all(idempotencyStores.map((s) => s.close()));
    await client?.quit().catch(() => client.disconnect());
    await cluster?.stop();
  });

  it('decides on keys spread over every node, operation ids in the same slot, scripts loaded per node', async () => {
    store = redisStore({
      client,
      prefix: 'fg:',
      failMode: 'local-fallback',
      heartbeatIntervalMs: 20,
      timeoutMs: 2_000,
    });
    const spec = { capacity: 3, refillPerMs: 0.0001 };
    const keys = Array.from({ length: 12 }, (_, index) => `student-${index}`);
    const decisions = await Promise.all(
      keys.flatMap((key) => [
        store.consume(key, 2, spec, { operationId: 'pay-1' }),
        store.consume(key, 2, spec, { operationId: 'pay-1' }), // the same operation: spends nothing
        store.consume(key, 2, spec), // 1 token left: denied
      ]),
    );
    expect(decisions.map((decision) => decision.allowed)).toEqual(keys.flatMap(() => [true, true, false]));
    expect(store.stats()).toMatchObject({ degraded: false, failures: 0, redisDecisions: 36 });
    // The keys really are spread over the three masters.
    const owners = new Set<number>();
    for (const node of client.nodes('master')) {
      const found = await node.keys('fg:{student-*');
      if (found.length > 0) owners.add(node.options.port as number);
    }
    expect(owners.size).toBe(3);
  });

  it('idempotency: keys on every node, a completion published from a script wakes a waiter on another instance', async () => {
    const a = redisIdempotencyStore({ client, prefix: 'fg:', timeoutMs: 2_000 });
    const b = redisIdempotencyStore({ client, prefix: 'fg:', timeoutMs: 2_000, pollIntervalMs: 60_000 });
    idempotencyStores = [a, b];
    const response = { status: 201, headers: {}, body: 'ok', encoding: 'utf8' } as const;
    const keys = Array.from({ length: 12 }, (_, index) => `scope:order-${index}`);
    for (const key of keys) {
      const begun = await a.begin(key, 'fp', 60_000);
      if (!begun.acquired) throw new Error('expected a lease');
      expect(await b.begin(key, 'fp', 60_000)).toMatchObject({ record: { state: 'in-flight' } });
      let woke = false;
      const waiting = b.waitForChange(key, new AbortController().signal).then(() => (woke = true));
      // Subscribed and watching once the WATCH script has marked the record.
      await vi.waitFor(async () => expect(await client.hexists(`fg:idem:{${key}}`, 'w')).toBe(1), {
        interval: 5,
      });
      expect(woke).toBe(false);
      await a.complete(key, begun.lease, response, 60_000);
      await vi.waitFor(() => expect(woke).toBe(true), { timeout: 2_000, interval: 5 });
      await waiting;
      expect(await b.begin(key, 'fp', 60_000)).toMatchObject({ record: { state: 'completed', response } });
    }
    const owners = new Set<number>();
    for (const node of client.nodes('master')) {
      if ((await node.keys('fg:idem:*')).length > 0) owners.add(node.options.port as number);
    }
    expect(owners.size).toBe(3);
  });
});
