// The middleware on @floodgate/redis stores, as a fleet runs it: two app instances, one Redis. Without
// Redis the shared-state tests skip loudly (or fail under FLOODGATE_REQUIRE_REDIS=1): see redis-available.
import type { IdempotencyStore } from '@floodgate/http';
import { type FailMode, redisIdempotencyStore, redisStore } from '@floodgate/redis';
import type { LimiterStore } from '@floodgate/token-bucket';
import express, { type Express, type Request, type Response } from 'express';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  adminClient,
  deleteKeys,
  describeRedis,
  REDIS_URL,
  testPrefix,
} from '../../redis/test/redis-available.js';
import { freePort } from '../../redis/test/redis-server.js';
import { idempotency, rateLimit } from '../src/index.js';

const prefix = testPrefix('express-adapter');
const stores: Array<LimiterStore | IdempotencyStore> = [];

function opened<S extends LimiterStore | IdempotencyStore>(store: S): S {
  stores.push(store);
  return store;
}

afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});

function limitedApp(store: LimiterStore): Express {
  const app = express();
  app.get('/', rateLimit({ name: 'fleet', limit: 2, windowMs: 60_000, store }), (_req, res) => {
    res.json({ ok: true });
  });
  return app;
}

function checkoutApp(store: IdempotencyStore, count: () => number): Express {
  const app = express();
  app.post('/checkout', express.json(), idempotency({ store }), (req: Request, res: Response) => {
    res.status(201).json({ order: count(), amount: (req.body as { amount?: number }).amount });
  });
  return app;
}

describeRedis('@floodgate/express on one Redis shared by two app instances', () => {
  let admin: ReturnType<typeof adminClient>;
  beforeAll(() => {
    admin = adminClient();
  });
  afterAll(async () => {
    await deleteKeys(admin, prefix);
    await admin.quit();
  });

  it('rate limit: two instances with their own redisStore on one prefix share one bucket', async () => {
    const a = limitedApp(opened(redisStore({ url: REDIS_URL, prefix })));
    const b = limitedApp(opened(redisStore({ url: REDIS_URL, prefix })));
    expect((await request(a).get('/')).headers.ratelimit).toBe('"fleet";r=1;t=30');
    const second = await request(b).get('/');
    expect(second.status).toBe(200);
    // t: whole seconds until full, 60 unless a loaded machine took over a second between the two
    expect(second.headers.ratelimit).toMatch(/^"fleet";r=0;t=(59|60)$/);
    const denied = await request(a).get('/');
    expect(denied.status).toBe(429);
    expect(denied.headers['retry-after']).toMatch(/^(29|30)$/);
    expect(JSON.parse(denied.text)).toMatchObject({ code: 'ERR_RATE_LIMITED' });
  });

  it('idempotency: instance B replays what A stored; another payload is 422', async () => {
    let runs = 0;
    const count = () => {
      runs += 1;
      return runs;
    };
    const a = checkoutApp(opened(redisIdempotencyStore({ url: REDIS_URL, prefix })), count);
    const b = checkoutApp(opened(redisIdempotencyStore({ url: REDIS_URL, prefix })), count);
    const first = await request(a)
      .post('/checkout')
      .set('idempotency-key', '"order-1"')
      .send({ amount: 100, currency: 'EUR' });
    expect(first.status).toBe(201);
    const replay = await request(b)
      .post('/checkout')
      .set('idempotency-key', 'order-1')
      .send({ currency: 'EUR', amount: 100 });
    expect(replay.status).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.text).toBe(first.text);
    const other = await request(b).post('/checkout').set('idempotency-key', 'order-1').send({ amount: 999 });
    expect(other.status).toBe(422);
    expect(JSON.parse(other.text)).toMatchObject({ code: 'ERR_IDEMPOTENCY_KEY_REUSED' });
    expect(runs).toBe(1);
  });
});

describe('@floodgate/express on an unreachable Redis (nothing listens on the port)', () => {
  for (const [failMode, status] of [
    ['fail-closed', 503],
    ['fail-open', 200],
  ] as const satisfies ReadonlyArray<readonly [FailMode, number]>) {
    it(`rate limit: the store's failMode '${failMode}' decides, ${status}`, async () => {
      const url = `redis://127.0.0.1:${await freePort()}`;
      const app = limitedApp(opened(redisStore({ url, failMode, timeoutMs: 100 })));
      const response = await request(app).get('/');
      expect(response.status).toBe(status);
      if (status === 503) {
        expect(JSON.parse(response.text)).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
        expect(response.headers['retry-after']).toMatch(/^\d+$/);
      }
    });
  }
});
