// The plugins on @floodgate/redis stores, as a fleet runs it: two app instances, one Redis. Without
// Redis the shared-state tests skip loudly (or fail under FLOODGATE_REQUIRE_REDIS=1): see redis-available.
import type { IdempotencyStore } from '@floodgate/http';
import { type FailMode, redisIdempotencyStore, redisStore } from '@floodgate/redis';
import type { LimiterStore } from '@floodgate/token-bucket';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  adminClient,
  deleteKeys,
  describeRedis,
  REDIS_URL,
  testPrefix,
} from '../../redis/test/redis-available.js';
import { freePort } from '../../redis/test/redis-server.js';
import { floodgateIdempotency, floodgateRateLimit } from '../src/index.js';

const prefix = testPrefix('fastify-adapter');
const stores: Array<LimiterStore | IdempotencyStore> = [];
const apps: FastifyInstance[] = [];

function opened<S extends LimiterStore | IdempotencyStore>(store: S): S {
  stores.push(store);
  return store;
}

afterEach(async () => {
  // The plugins leave a store they were given open: its owner closes it, after the apps.
  await Promise.all(apps.splice(0).map((app) => app.close()));
  await Promise.all(stores.splice(0).map((store) => store.close()));
});

async function limitedApp(store: LimiterStore): Promise<FastifyInstance> {
  const app = Fastify();
  apps.push(app);
  await app.register(floodgateRateLimit, { name: 'fleet', limit: 2, windowMs: 60_000, store });
  app.get('/', async () => ({ ok: true }));
  return app;
}

async function checkoutApp(store: IdempotencyStore, count: () => number): Promise<FastifyInstance> {
  const app = Fastify();
  apps.push(app);
  await app.register(floodgateIdempotency, { store });
  app.post<{ Body: { amount?: number } }>(
    '/checkout',
    { config: { floodgate: { idempotency: true } } },
    async (req, reply) => reply.code(201).send({ order: count(), amount: req.body.amount }),
  );
  return app;
}

const checkout = (key: string, payload: Record<string, unknown>) =>
  ({ method: 'POST', url: '/checkout', headers: { 'idempotency-key': key }, payload }) as const;

describeRedis('@floodgate/fastify on one Redis shared by two app instances', () => {
  let admin: ReturnType<typeof adminClient>;
  beforeAll(() => {
    admin = adminClient();
  });
  afterAll(async () => {
    await deleteKeys(admin, prefix);
    await admin.quit();
  });

  it('rate limit: two instances with their own redisStore on one prefix share one bucket', async () => {
    const a = await limitedApp(opened(redisStore({ url: REDIS_URL, prefix })));
    const b = await limitedApp(opened(redisStore({ url: REDIS_URL, prefix })));
    expect((await a.inject('/')).headers.ratelimit).toBe('"fleet";r=1;t=30');
    const second = await b.inject('/');
    expect(second.statusCode).toBe(200);
    // t: whole seconds until full, 60 unless a loaded machine took over a second between the two
    expect(second.headers.ratelimit).toMatch(/^"fleet";r=0;t=(59|60)$/);
    const denied = await a.inject('/');
    expect(denied.statusCode).toBe(429);
    expect(denied.headers['retry-after']).toMatch(/^(29|30)$/);
    expect(denied.json()).toMatchObject({ code: 'ERR_RATE_LIMITED' });
  });

  it('idempotency: instance B replays what A stored; another payload is 422', async () => {
    let runs = 0;
    const count = () => {
      runs += 1;
      return runs;
    };
    const a = await checkoutApp(opened(redisIdempotencyStore({ url: REDIS_URL, prefix })), count);
    const b = await checkoutApp(opened(redisIdempotencyStore({ url: REDIS_URL, prefix })), count);
    const first = await a.inject(checkout('"order-1"', { amount: 100, currency: 'EUR' }));
    expect(first.statusCode).toBe(201);
    const replay = await b.inject(checkout('order-1', { currency: 'EUR', amount: 100 }));
    expect(replay.statusCode).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body).toBe(first.body);
    const other = await b.inject(checkout('order-1', { amount: 999 }));
    expect(other.statusCode).toBe(422);
    expect(other.json()).toMatchObject({ code: 'ERR_IDEMPOTENCY_KEY_REUSED' });
    expect(runs).toBe(1);
  });
});

describe('@floodgate/fastify on an unreachable Redis (nothing listens on the port)', () => {
  for (const [failMode, status] of [
    ['fail-closed', 503],
    ['fail-open', 200],
  ] as const satisfies ReadonlyArray<readonly [FailMode, number]>) {
    it(`rate limit: the store's failMode '${failMode}' decides, ${status}`, async () => {
      const url = `redis://127.0.0.1:${await freePort()}`;
      const app = await limitedApp(opened(redisStore({ url, failMode, timeoutMs: 100 })));
      const response = await app.inject('/');
      expect(response.statusCode).toBe(status);
      if (status === 503) {
        expect(response.json()).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
        expect(response.headers['retry-after']).toMatch(/^\d+$/);
      }
    });
  }
});
