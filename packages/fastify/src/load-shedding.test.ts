import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { floodgateLoadShedding, loadShedder } from './index.js';

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

describe('floodgateLoadShedding (fastify)', () => {
  it('rejects a bad option at registration and an unknown route priority at route definition', async () => {
    app = Fastify();
    app.register(floodgateLoadShedding, { maxConcurrent: 0 });
    await expect(app.ready()).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    const other = Fastify();
    await other.register(floodgateLoadShedding, { maxConcurrent: 10 });
    expect(() =>
      other.get('/', { config: { floodgate: { loadShedding: { priority: 'vip' } } } }, async () => 'ok'),
    ).toThrow(/configured priority class/);
    await other.close();
    const third = Fastify();
    third.register(floodgateLoadShedding, { maxConcurrent: 10, denials: 'hijack' as never });
    await expect(third.ready()).rejects.toThrow(/`denials`.*`hijack`/);
    await third.close();
  });

  it('matches Express: a shared shedder takes no shedder options, typos, global and priority are checked', async () => {
    const shedder = loadShedder({ maxConcurrent: 10 });
    for (const [options, message] of [
      [{ shedder, maxConcurrent: 1 }, /`maxConcurrent` to be absent when `shedder` is given.*got `1`/],
      [{ shedder, priorty: 'low' }, /Unknown option `priorty`/],
      [{ global: 'no' }, /`global` to be a boolean, got `"no"`/],
      [{ priority: 5 }, /`priority`.*got `5` \(number\)/],
      [{ hook: 'onSend' }, /`hook`.*got `"onSend"`/],
    ] as const) {
      const instance = Fastify();
      instance.register(floodgateLoadShedding, options as never);
      await expect(instance.ready()).rejects.toThrow(message);
      await instance.close();
    }
    app = Fastify();
    await app.register(floodgateLoadShedding, { maxConcurrent: 10 });
    expect(() =>
      app?.get('/x', { config: { floodgate: { loadShedding: 'low' as never } } }, async () => 'x'),
    ).toThrow(
      /`config.floodgate.loadShedding` to be `false` or `\{ priority \}` on route GET \/x, got `"low"`/,
    );
    expect(() =>
      app?.get(
        '/y',
        { config: { floodgate: { loadShedding: { priorty: 'low' } as never } } },
        async () => 'y',
      ),
    ).toThrow(/Unknown option `priorty`/);
  });

  for (const denials of ['raw', 'reply'] as const) {
    it(`denials: '${denials}' sends the 503 ${denials === 'raw' ? 'without' : 'through'} onSend hooks, keeping earlier fields`, async () => {
      app = Fastify();
      const seen: string[] = [];
      app.addHook('onRequest', (_request, reply, done) => {
        reply.header('access-control-allow-origin', '*');
        done();
      });
      app.addHook('onSend', (_request, reply, payload, done) => {
        seen.push(`onSend ${reply.statusCode}`);
        done(null, payload);
      });
      await app.register(floodgateLoadShedding, { maxConcurrent: 1, denials });
      let release!: () => void;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      app.get('/', async () => {
        await gate;
        return 'ok';
      });
      const held = app.inject('/');
      await new Promise((resolve) => setImmediate(resolve));
      const shed = await app.inject('/');
      expect(shed.statusCode).toBe(503);
      expect(shed.headers['access-control-allow-origin']).toBe('*');
      expect(shed.headers['retry-after']).toMatch(/^\d+$/);
      expect(shed.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(shed.json()).toMatchObject({ status: 503 });
      release();
      expect((await held).statusCode).toBe(200);
      expect(seen).toEqual(denials === 'raw' ? ['onSend 200'] : ['onSend 503', 'onSend 200']);
    });
  }

  it("hook: 'preHandler' sheds after the preHandler hooks before it (a replay answers first)", async () => {
    app = Fastify();
    // Stands for floodgateIdempotency: a preHandler that answers a replayed request itself.
    app.addHook('preHandler', async (request, reply) => {
      if (request.headers['x-replay'] === '1') return reply.send('replayed');
    });
    const breaker = { state: 'open', retryAfterMs: 5000 } as const;
    await app.register(floodgateLoadShedding, { hook: 'preHandler', breaker });
    app.post('/checkout', async () => 'handled');
    const replayed = await app.inject({
      method: 'POST',
      url: '/checkout',
      headers: { 'x-replay': '1' },
      payload: {},
    });
    expect(replayed.statusCode).toBe(200);
    expect(replayed.body).toBe('replayed');
    const shed = await app.inject({ method: 'POST', url: '/checkout', payload: {} });
    expect(shed.statusCode).toBe(503);
    expect(shed.headers['retry-after']).toBe('5');
  });

  it('a shared shedder counts in-flight requests and frees them when answered; routes may opt out', async () => {
    const shedder = loadShedder({ maxConcurrent: 2 });
    app = Fastify();
    await app.register(floodgateLoadShedding, { shedder, global: false });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    app.get('/held', { config: { floodgate: { loadShedding: { priority: 'critical' } } } }, async () => {
      await gate;
      return 'ok';
    });
    app.get('/cheap', { config: { floodgate: { loadShedding: { priority: 'low' } } } }, async () => 'ok');
    app.get('/unguarded', async () => 'ok');
    const held = app.inject('/held');
    await new Promise((resolve) => setImmediate(resolve));
    expect(shedder.inFlight).toBe(1);
    expect((await app.inject('/cheap')).statusCode).toBe(503);
    expect((await app.inject('/unguarded')).statusCode).toBe(200);
    release();
    expect((await held).statusCode).toBe(200);
    expect(shedder.inFlight).toBe(0);
    expect((await app.inject('/cheap')).statusCode).toBe(200);
  });

  it('frees the slot when the client goes away before the answer (on the response close), not when the handler ends', async () => {
    const shedder = loadShedder({ maxConcurrent: 1, priorities: { only: 1 }, defaultPriority: 'only' });
    app = Fastify();
    await app.register(floodgateLoadShedding, { shedder });
    let entered!: () => void;
    const arrived = new Promise<void>((resolve) => {
      entered = resolve;
    });
    let finish!: () => void;
    const held = new Promise<void>((resolve) => {
      finish = resolve;
    });
    app.get('/slow', async () => {
      entered();
      await held; // still working when the client gives up
      return 'late';
    });
    try {
      const address = await app.listen({ port: 0, host: '127.0.0.1' });
      const controller = new AbortController();
      const pending = fetch(`${address}/slow`, { signal: controller.signal }).catch(() => undefined);
      await arrived;
      expect(shedder.inFlight).toBe(1);
      expect((await fetch(`${address}/slow`)).status).toBe(503);
      controller.abort();
      await pending;
      for (let i = 0; i < 50 && shedder.inFlight > 0; i += 1)
        await new Promise((resolve) => setImmediate(resolve));
      expect(shedder.inFlight).toBe(0);
    } finally {
      finish();
      // fetch keeps its connections alive; closing them lets the server close at once.
      app.server.closeAllConnections();
    }
  });
});
