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
});
