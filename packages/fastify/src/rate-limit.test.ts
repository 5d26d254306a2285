import type { LimiterStore } from '@floodgate/token-bucket';
import { memoryStore } from '@floodgate/token-bucket';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { floodgateRateLimit } from './index.js';

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

describe('floodgateRateLimit (fastify)', () => {
  it('rejects bad options at registration, not at the first request', async () => {
    app = Fastify();
    app.register(floodgateRateLimit, { limit: 1, max: 5 } as never);
    await expect(app.ready()).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    const other = Fastify();
    other.register(floodgateRateLimit, { limit: 1, hook: 'onSend' as never });
    await expect(other.ready()).rejects.toThrow(/`hook`/);
    await other.close();
    const third = Fastify();
    third.register(floodgateRateLimit, { limit: 1, denials: 'send' as never });
    await expect(third.ready()).rejects.toThrow(/`denials`.*`send`/);
    await third.close();
  });

  for (const denials of ['raw', 'reply'] as const) {
    it(`denials: '${denials}' keeps fields earlier hooks set and runs onResponse hooks${denials === 'raw' ? ', not onSend' : ' and onSend'}`, async () => {
      app = Fastify();
      const seen: string[] = [];
      app.addHook('onRequest', (_request, reply, done) => {
        reply.header('access-control-allow-origin', '*');
        reply.header('content-type', 'text/plain');
        reply.raw.setHeader('x-set-on-raw', 'yes');
        done();
      });
      app.addHook('onSend', (_request, reply, payload, done) => {
        seen.push(`onSend ${reply.statusCode}`);
        done(null, payload);
      });
      app.addHook('onResponse', (_request, reply, done) => {
        seen.push(`onResponse ${reply.statusCode}`);
        done();
      });
      await app.register(floodgateRateLimit, { limit: 1, denials });
      app.get('/', async () => 'ok');
      expect((await app.inject('/')).statusCode).toBe(200);
      const denied = await app.inject('/');
      expect(denied.statusCode).toBe(429);
      // One field, ours (Fastify's send adds `; charset=utf-8` to a string body's type).
      expect(denied.headers['content-type']).toMatch(/^application\/problem\+json(; charset=utf-8)?$/);
      expect(denied.headers['access-control-allow-origin']).toBe('*');
      expect(denied.headers['x-set-on-raw']).toBe('yes');
      expect(denied.headers['retry-after']).toBe('60');
      expect(denied.headers['content-length']).toBe(String(Buffer.byteLength(denied.body)));
      expect(denied.json()).toMatchObject({ status: 429, code: 'ERR_RATE_LIMITED' });
      expect(seen).toEqual(
        denials === 'raw'
          ? ['onSend 200', 'onResponse 200', 'onResponse 429']
          : ['onSend 200', 'onResponse 200', 'onSend 429', 'onResponse 429'],
      );
    });
  }

  for (const denials of ['raw', 'reply'] as const) {
    for (const asyncStore of [false, true]) {
      it(`denials: '${denials}'${asyncStore ? ', async store' : ''}: a refusal with an invalid earlier field is still answered`, async () => {
        const unhandled = vi.fn();
        process.on('unhandledRejection', unhandled);
        try {
          app = Fastify();
          app.addHook('onRequest', async (_request, reply) => {
            reply.header('x-trace', 'a\u0001b'); // Node refuses to send a control character
          });
          const memory = memoryStore();
          const store: LimiterStore = {
            consume: async (key, cost, spec) => memory.consume(key, cost, spec),
            refund: async () => {},
            close: () => {},
          };
          await app.register(floodgateRateLimit, { limit: 1, denials, ...(asyncStore ? { store } : {}) });
          app.get('/', async () => 'ok');
          await app.inject('/');
          const denied = await app.inject('/');
          expect(denied.statusCode).toBe(429);
          // Raw: our refusal without the bad field. Through reply.send(), Fastify answers what it answers.
          if (denials === 'raw') expect(denied.json()).toMatchObject({ code: 'ERR_RATE_LIMITED' });
          await new Promise((resolve) => setImmediate(resolve));
          expect(unhandled).not.toHaveBeenCalled();
        } finally {
          process.off('unhandledRejection', unhandled);
        }
      });
    }
  }

  it('rejects a bad global naming the value', async () => {
    app = Fastify();
    app.register(floodgateRateLimit, { limit: 1, global: 'yes' as never });
    await expect(app.ready()).rejects.toThrow(/`global` to be a boolean, got `"yes"`/);
  });

  it('global: false limits only routes that opt in', async () => {
    app = Fastify();
    await app.register(floodgateRateLimit, { limit: 1, global: false });
    app.get('/free', async () => 'free');
    app.get('/limited', { config: { floodgate: { rateLimit: {} } } }, async () => 'limited');
    for (let i = 0; i < 3; i += 1) expect((await app.inject('/free')).statusCode).toBe(200);
    expect((await app.inject('/limited')).statusCode).toBe(200);
    expect((await app.inject('/limited')).statusCode).toBe(429);
  });

  it('the default onRequest hook refuses before the body is parsed: invalid JSON over the limit gets 429, not 400', async () => {
    const invalidJson = {
      method: 'POST',
      url: '/',
      headers: { 'content-type': 'application/json' },
      payload: '{not json',
    } as const;
    app = Fastify();
    await app.register(floodgateRateLimit, { limit: 1 });
    app.post('/', async () => 'ok');
    expect((await app.inject(invalidJson)).statusCode).toBe(400);
    const refused = await app.inject(invalidJson);
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ code: 'ERR_RATE_LIMITED' });
    // The contrast: a preHandler check comes after the parser, which answers every such request first.
    const late = Fastify();
    try {
      await late.register(floodgateRateLimit, { limit: 1, hook: 'preHandler' });
      late.post('/', async () => 'ok');
      expect((await late.inject(invalidJson)).statusCode).toBe(400);
      expect((await late.inject(invalidJson)).statusCode).toBe(400);
    } finally {
      await late.close();
    }
  });

  it('hook: preHandler sees what an auth hook decorated; the handler reads request.floodgateRateLimit', async () => {
    app = Fastify();
    app.decorateRequest('user', null);
    app.addHook('preHandler', async (request) => {
      (request as unknown as { user: string }).user = String(request.headers['x-user']);
    });
    await app.register(floodgateRateLimit, {
      limit: 2,
      hook: 'preHandler',
      key: (request) => `user:${(request as unknown as { user: string }).user}`,
    });
    app.get('/', async (request) => ({
      remaining: request.floodgateRateLimit?.outcomes[0]?.decision.remaining,
    }));
    expect((await app.inject({ url: '/', headers: { 'x-user': 'a' } })).json()).toEqual({ remaining: 1 });
    expect((await app.inject({ url: '/', headers: { 'x-user': 'b' } })).json()).toEqual({ remaining: 1 });
    expect((await app.inject({ url: '/', headers: { 'x-user': 'a' } })).json()).toEqual({ remaining: 0 });
    expect((await app.inject({ url: '/', headers: { 'x-user': 'a' } })).statusCode).toBe(429);
  });

  it('a route with its own policy counts in its own buckets; key failures go to the error handler', async () => {
    app = Fastify();
    await app.register(floodgateRateLimit, { limit: 5 });
    app.get('/', async () => 'ok');
    app.get(
      '/login',
      { config: { floodgate: { rateLimit: { name: 'login', limit: 1 } } } },
      async () => 'ok',
    );
    app.get(
      '/broken',
      {
        config: {
          floodgate: {
            rateLimit: {
              key: () => {
                throw new Error('no key');
              },
            },
          },
        },
      },
      async () => 'ok',
    );
    expect((await app.inject('/login')).headers.ratelimit).toBe('"login";r=0;t=60');
    expect((await app.inject('/login')).statusCode).toBe(429);
    expect((await app.inject('/')).headers.ratelimit).toBe('"5-in-60s";r=4;t=12');
    const broken = await app.inject('/broken');
    expect(broken.statusCode).toBe(500);
    expect(broken.json().message).toBe('no key');
  });
});
