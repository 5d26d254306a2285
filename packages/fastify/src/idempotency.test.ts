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

  it('does not store a reply whose head went out through reply.raw before send(): the wire had another answer', async () => {
    const server = Fastify();
    app = server;
    await server.register(floodgateIdempotency, { global: true });
    let runs = 0;
    server.post('/mixed', async (_request, reply) => {
      runs += 1;
      // Node sends a 200 head with this first chunk; Fastify then cannot send the 201 below and
      // destroys the connection. Storing the 201 would replay an answer nobody ever received.
      reply.raw.write('partial');
      return reply.code(201).send('whole');
    });
    const post = () =>
      server.inject({ method: 'POST', url: '/mixed', headers: { 'idempotency-key': 'm' }, payload: {} });
    // Each answer is cut off (the connection is destroyed); what matters is what the retry gets.
    await post().catch(() => undefined);
    const again = await post().catch(() => undefined);
    expect(again?.headers['idempotent-replayed']).toBeUndefined();
    // The retry ran the handler again rather than replaying the 201 that never went out.
    expect(runs).toBe(2);
  });

  it('frees the key of a web ReadableStream or a Response reply without reporting an error', async () => {
    app = Fastify();
    const errors: unknown[] = [];
    await app.register(floodgateIdempotency, { global: true, onError: (error) => errors.push(error) });
    let runs = 0;
    app.post('/web', async (_request, reply) => {
      runs += 1;
      const body = new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('ab'));
          controller.close();
        },
      });
      return reply.type('text/plain').send(body);
    });
    app.post('/response', async (_request, reply) => {
      runs += 1;
      return reply.send(new Response('xy', { status: 201, headers: { 'content-type': 'text/plain' } }));
    });
    for (const [url, body] of [
      ['/web', 'ab'],
      ['/response', 'xy'],
    ] as const) {
      for (let i = 0; i < 2; i += 1) {
        const response = await app.inject({
          method: 'POST',
          url,
          headers: { 'idempotency-key': url },
          payload: {},
        });
        expect(response.body).toBe(body);
        expect(response.headers['idempotent-replayed']).toBeUndefined();
      }
    }
    expect(runs).toBe(4);
    // Nothing failed: a stream is simply not stored, as a Node stream is not.
    expect(errors).toEqual([]);
  });

  it('a scope that answers no user id (request.user for request.user.id) is a 500; nothing runs', async () => {
    app = Fastify();
    await app.register(floodgateIdempotency, {
      global: true,
      scope: ((request: { headers: Record<string, unknown> }) => ({
        id: request.headers['x-user'],
      })) as never,
    });
    let runs = 0;
    app.post('/pay', async (_request, reply) => reply.code(201).send({ charged: ++runs }));
    // Before: both users were `user:[object Object]`, and bob was replayed alice's charge.
    for (const user of ['alice', 'bob']) {
      const res = await app.inject({
        method: 'POST',
        url: '/pay',
        headers: { 'x-user': user, 'idempotency-key': 'k' },
        payload: {},
      });
      expect(res.statusCode).toBe(500);
      expect(res.json().code).toBe('ERR_INVALID_SCOPE');
    }
    expect(runs).toBe(0);
  });

  it('bodies of every parser: another payload is 422, the same one (any key order) replayed, never a 500', async () => {
    app = Fastify({ bodyLimit: 2 * 1_048_576 });
    // Fastify parses JSON and text/plain itself; bytes need a parser (here as a Buffer).
    app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_request, body, done) => {
      done(null, body);
    });
    await app.register(floodgateIdempotency, { global: true, scope: () => 'u' });
    let runs = 0;
    app.post('/pay', async (_request, reply) => reply.code(201).send({ run: ++runs }));
    const big = 'x'.repeat(1_048_576);
    const table: Array<readonly [type: string, first: string, same: string, other: string]> = [
      ['text/plain', 'AAA', 'AAA', 'AAB'],
      ['application/octet-stream', 'AAA', 'AAA', 'AAB'],
      ['application/octet-stream', `${big}0`, `${big}0`, `${big}1`],
      ['application/json', '{"a":1,"b":[1,2]}', '{"b":[1,2],"a":1}', '{"a":1,"b":[2,1]}'],
      ['application/json', '[1,{"x":1,"y":2}]', '[1,{"y":2,"x":1}]', '[1,{"x":1,"y":3}]'],
      ['application/json', '7', '7', '8'],
      ['application/json', 'null', 'null', '0'],
      [
        'application/json',
        `[${'0,'.repeat(400_000)}0]`,
        `[${'0,'.repeat(400_000)}0]`,
        `[${'0,'.repeat(400_000)}1]`,
      ],
    ];
    for (const [index, [type, first, same, other]] of table.entries()) {
      const send = (payload: string) =>
        (app as FastifyInstance).inject({
          method: 'POST',
          url: '/pay',
          headers: { 'idempotency-key': `k${index}`, 'content-type': type },
          payload,
        });
      const original = await send(first);
      expect(original.statusCode, `${type} ${first.slice(0, 20)}`).toBe(201);
      const replay = await send(same);
      expect(replay.headers['idempotent-replayed'], `${type} ${same.slice(0, 20)}`).toBe('true');
      expect(replay.body).toBe(original.body);
      expect((await send(other)).statusCode, `${type} ${other.slice(0, 20)}`).toBe(422);
    }
    // No body at all (no content type): one payload, replayed.
    const bare = () =>
      (app as FastifyInstance).inject({
        method: 'POST',
        url: '/pay',
        headers: { 'idempotency-key': 'bare' },
      });
    expect((await bare()).statusCode).toBe(201);
    expect((await bare()).headers['idempotent-replayed']).toBe('true');
    expect(runs).toBe(table.length + 1);
  });

  it('a keyed body a content-type parser left unread (for the handler to stream) is 415, never replayed for another payload', async () => {
    app = Fastify();
    app.addContentTypeParser('*', (_request, _payload, done) => {
      done(null);
    });
    await app.register(floodgateIdempotency, { global: true, scope: () => 'u' });
    let runs = 0;
    app.post('/upload', async (_request, reply) => reply.code(201).send({ run: ++runs }));
    for (const payload of ['one', 'two']) {
      const answer = await app.inject({
        method: 'POST',
        url: '/upload',
        headers: { 'idempotency-key': 'up', 'content-type': 'image/png' },
        payload,
      });
      expect(answer.statusCode).toBe(415);
      expect(answer.headers['content-type']).toBe('application/problem+json');
      expect(answer.json().code).toBe('ERR_IDEMPOTENCY_BODY_UNREAD');
    }
    expect(runs).toBe(0);
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
