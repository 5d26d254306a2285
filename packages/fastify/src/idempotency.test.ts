import { Readable } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { floodgateIdempotency } from './index.js';

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

describe('floodgateIdempotency (fastify)', () => {
  it('rejects unknown options at registration', async () => {
    app = Fastify();
    app.register(floodgateIdempotency, { ttl: 1 } as never);
    await expect(app.ready()).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
  });

  it('global: true covers every POST route; GET routes are left alone; a route may opt out', async () => {
    app = Fastify();
    await app.register(floodgateIdempotency, { global: true });
    let runs = 0;
    app.post('/a', async () => ({ run: ++runs }));
    app.post('/b', { config: { floodgate: { idempotency: false } } }, async () => ({ run: ++runs }));
    app.get('/c', async () => ({ run: ++runs }));
    const post = (url: string) =>
      app?.inject({ method: 'POST', url, headers: { 'idempotency-key': 'k' }, payload: {} });
    expect((await post('/a'))?.json()).toEqual({ run: 1 });
    const replay = await post('/a');
    expect(replay?.json()).toEqual({ run: 1 });
    expect(replay?.headers['idempotent-replayed']).toBe('true');
    expect((await post('/b'))?.json()).toEqual({ run: 2 });
    expect((await post('/b'))?.json()).toEqual({ run: 3 });
    expect((await app.inject({ url: '/c' })).json()).toEqual({ run: 4 });
    expect((await app.inject({ method: 'POST', url: '/a', payload: {} })).statusCode).toBe(400);
  });

  it('a per-route override (coalesce, optional key) shares the plugin store', async () => {
    app = Fastify();
    await app.register(floodgateIdempotency);
    let runs = 0;
    app.post(
      '/opt',
      { config: { floodgate: { idempotency: { required: false, mismatchStatus: 400 } } } },
      async () => ({ run: ++runs }),
    );
    expect((await app.inject({ method: 'POST', url: '/opt', payload: {} })).statusCode).toBe(200);
    await app.inject({ method: 'POST', url: '/opt', headers: { 'idempotency-key': 'x' }, payload: { a: 1 } });
    const mismatch = await app.inject({
      method: 'POST',
      url: '/opt',
      headers: { 'idempotency-key': 'x' },
      payload: { a: 2 },
    });
    expect(mismatch.statusCode).toBe(400);
    expect(mismatch.json().code).toBe('ERR_IDEMPOTENCY_KEY_REUSED');
  });

  it('validates global and per-route config at registration, naming the value', async () => {
    app = Fastify();
    app.register(floodgateIdempotency, { global: 'yes' as never });
    await expect(app.ready()).rejects.toThrow(/`global` to be a boolean, got `"yes"`/);
    const other = Fastify();
    await other.register(floodgateIdempotency, {});
    expect(() =>
      other.post('/x', { config: { floodgate: { idempotency: { store: 5 } as never } } }, async () => 'x'),
    ).toThrow(/`config.floodgate.idempotency.store` to be absent on route POST \/x.*got `5`/);
    expect(() =>
      other.post('/y', { config: { floodgate: { idempotency: 'yes' as never } } }, async () => 'y'),
    ).toThrow(/`config.floodgate.idempotency`.*got `"yes"`/);
    await other.close();
  });

  it('replays the stored content type unchanged (Fastify adds a charset only to a string it is given)', async () => {
    app = Fastify();
    await app.register(floodgateIdempotency, { global: true });
    app.post('/export', async (_request, reply) => reply.type('text/csv').send(Buffer.from('a,b\n1,2\n')));
    const post = () =>
      app?.inject({ method: 'POST', url: '/export', headers: { 'idempotency-key': 'csv' }, payload: {} });
    const first = await post();
    const replay = await post();
    expect(first?.headers['content-type']).toBe('text/csv');
    expect(replay?.headers['idempotent-replayed']).toBe('true');
    expect(replay?.headers['content-type']).toBe('text/csv');
    expect(replay?.body).toBe('a,b\n1,2\n');
  });

  it('replays an empty answer as it went out, with no content type', async () => {
    app = Fastify();
    await app.register(floodgateIdempotency, { global: true });
    app.post('/ack', async (_request, reply) => reply.code(201).send());
    const post = () =>
      app?.inject({ method: 'POST', url: '/ack', headers: { 'idempotency-key': 'ack' }, payload: {} });
    const first = await post();
    const replay = await post();
    expect(replay?.headers['idempotent-replayed']).toBe('true');
    expect([replay?.statusCode, replay?.headers['content-type'], replay?.body]).toEqual([
      201,
      first?.headers['content-type'],
      '',
    ]);
    expect(first?.headers['content-type']).toBeUndefined();
  });

  it('does not store a streamed reply (frees the key)', async () => {
    app = Fastify();
    await app.register(floodgateIdempotency, { global: true });
    let runs = 0;
    app.post('/stream', async (_request, reply) => {
      runs += 1;
      return reply.type('text/plain').send(Readable.from(['a', 'b']));
    });
    const post = () =>
      app?.inject({ method: 'POST', url: '/stream', headers: { 'idempotency-key': 's' }, payload: {} });
    expect((await post())?.body).toBe('ab');
    expect((await post())?.headers['idempotent-replayed']).toBeUndefined();
    expect(runs).toBe(2);
  });
});
