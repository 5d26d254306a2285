import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { floodgateIdempotency, floodgateLoadShedding, floodgateRateLimit, loadShedder } from './index.js';
import { pluginOptions } from './registration-options.js';

describe("Fastify's registration options", () => {
  it('are left to Fastify: every plugin registers with prefix, logLevel and logSerializers', async () => {
    const app = Fastify();
    const fastifyOwn = { prefix: '/api', logLevel: 'warn', logSerializers: {} } as const;
    await app.register(floodgateRateLimit, { limit: 5, windowMs: 1000, ...fastifyOwn });
    await app.register(floodgateIdempotency, { ...fastifyOwn });
    await app.register(floodgateLoadShedding, { maxConcurrent: 10, ...fastifyOwn });
    await app.register(floodgateLoadShedding, { shedder: loadShedder({ maxConcurrent: 10 }), ...fastifyOwn });
    app.get('/', async () => 'ok');
    const res = await app.inject('/');
    expect(res.statusCode).toBe(200);
    expect(res.headers['ratelimit-policy']).toBeDefined();
    await app.close();
  });

  it('are the only options taken out, and the caller’s object is not changed', () => {
    const given = { limit: 5, logLevel: 'warn', typo: 1 };
    expect(pluginOptions(given)).toEqual({ limit: 5, typo: 1 });
    expect(given).toEqual({ limit: 5, logLevel: 'warn', typo: 1 });
    const plain = { limit: 5 };
    expect(pluginOptions(plain)).toBe(plain);
  });
});
