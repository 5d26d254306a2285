/**
 * `Fastify({ http2: true })` (cleartext h2c) over a real socket, for what the shared conformance table
 * (which also runs over HTTP/2) does not reach: fields an earlier hook set that HTTP/2 forbids, a client
 * address read from an IPv6 HTTP/2 session, and a stream reset while its body is still being sent.
 */
import {
  type ClientHttp2Session,
  connect,
  constants,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import { memoryStore } from '@floodgate/token-bucket';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { floodgateLoadShedding, floodgateRateLimit } from '../src/index.js';

interface Answer {
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

let app: FastifyInstance | undefined;
let session: ClientHttp2Session | undefined;

afterEach(async () => {
  session?.destroy();
  session = undefined;
  await app?.close();
  app = undefined;
});

/** An HTTP/2 Fastify listening on `host`, port 0, and a client session to it. */
async function serve(made: FastifyInstance, host = '127.0.0.1'): Promise<ClientHttp2Session> {
  app = made;
  await made.listen({ port: 0, host });
  const { port } = made.server.address() as AddressInfo;
  session = connect(`http://${host.includes(':') ? `[${host}]` : host}:${port}`);
  return session;
}

/** One request on the session; rejects when the stream closes without an answer (a reset). */
function send(client: ClientHttp2Session, fields: OutgoingHttpHeaders): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = client.request(fields);
    let headers: IncomingHttpHeaders = {};
    let body = '';
    stream.on('response', (response) => {
      headers = response;
    });
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      body += chunk;
    });
    stream.on('end', () => resolve({ headers, body }));
    stream.on('close', () => reject(new Error(`stream closed (code ${stream.rstCode})`)));
    stream.on('error', reject);
  });
}

const get = (client: ClientHttp2Session, path: string) => send(client, { ':path': path });

function h2Fastify(): FastifyInstance {
  return Fastify({ http2: true }) as unknown as FastifyInstance;
}

describe('@floodgate/fastify over HTTP/2', () => {
  it('a raw 429 after a hook set a field HTTP/2 forbids goes out with its own fields, not as a reset stream', async () => {
    const fastify = h2Fastify();
    fastify.addHook('onRequest', (request, reply, done) => {
      // Node's HTTP/2 layer throws on these when the head is written (`Connection` it drops itself).
      if (request.headers['x-field'] !== undefined) reply.header(String(request.headers['x-field']), 'x');
      done();
    });
    await fastify.register(floodgateRateLimit, { limit: 1, windowMs: 60_000 });
    fastify.get('/', async () => ({ ok: true }));
    const client = await serve(fastify);
    expect((await get(client, '/')).headers[':status']).toBe(200);
    for (const field of ['keep-alive', 'transfer-encoding', 'upgrade']) {
      const refused = await send(client, { ':path': '/', 'x-field': field });
      expect(refused.headers[':status']).toBe(429);
      expect(refused.headers['content-type']).toBe('application/problem+json');
      expect(refused.headers['retry-after']).toBe('60');
      expect(refused.headers[field]).toBeUndefined();
      expect(JSON.parse(refused.body)).toMatchObject({ status: 429, code: 'ERR_RATE_LIMITED' });
    }
  });

  it("denials: 'reply' sends the 429 and the 503 through Fastify over HTTP/2 too", async () => {
    const fastify = h2Fastify();
    await fastify.register(floodgateRateLimit, { limit: 1, windowMs: 60_000, denials: 'reply' });
    await fastify.register(floodgateLoadShedding, {
      breaker: { state: 'open', retryAfterMs: 2000 },
      global: false,
      denials: 'reply',
    });
    fastify.get('/', async () => ({ ok: true }));
    fastify.get('/shed', { config: { floodgate: { rateLimit: false, loadShedding: {} } } }, async () => 'x');
    const client = await serve(fastify);
    expect((await get(client, '/')).headers[':status']).toBe(200);
    const limited = await get(client, '/');
    expect([
      limited.headers[':status'],
      limited.headers['content-type'],
      limited.headers['retry-after'],
    ]).toEqual([429, 'application/problem+json', '60']);
    const shed = await get(client, '/shed');
    expect([shed.headers[':status'], shed.headers['retry-after']]).toEqual([503, '2']);
    expect(JSON.parse(shed.body)).toMatchObject({ code: 'ERR_LOAD_SHED', reason: 'breaker-open' });
  });

  it('keys an IPv6 client of an HTTP/2 session by its /56, as over HTTP/1.1', async () => {
    const keys: string[] = [];
    const inner = memoryStore();
    const fastify = h2Fastify();
    await fastify.register(floodgateRateLimit, {
      limit: 1,
      windowMs: 60_000,
      store: {
        consume: (key, cost, spec) => {
          keys.push(key);
          return inner.consume(key, cost, spec);
        },
        refund: (key, cost, spec) => inner.refund(key, cost, spec),
        close: () => inner.close(),
      },
    });
    fastify.get('/', async (request) => ({ ip: request.ip }));
    const client = await serve(fastify, '::1');
    const first = await get(client, '/');
    expect(JSON.parse(first.body)).toEqual({ ip: '::1' });
    expect((await get(client, '/')).headers[':status']).toBe(429);
    expect(keys).toHaveLength(2);
    for (const key of keys) expect(key).toContain('::/56');
  });

  it('a stream reset while its body is still being sent frees its load-shedding slot', async () => {
    const fastify = h2Fastify();
    const closed: Array<() => void> = [];
    fastify.addHook('onRequest', (request, reply, done) => {
      if (request.url === '/upload') {
        reply.raw.once('close', () => {
          for (const wake of closed.splice(0)) wake();
        });
      }
      done();
    });
    await fastify.register(floodgateLoadShedding, {
      maxConcurrent: 1,
      priorities: { only: 1 },
      defaultPriority: 'only',
    });
    fastify.get('/', async () => ({ ok: true }));
    fastify.post('/upload', async () => ({ ok: true }));
    const client = await serve(fastify);
    const upload = client.request({
      ':method': 'POST',
      ':path': '/upload',
      'content-type': 'application/json',
      'content-length': '1000',
    });
    upload.on('error', () => {});
    upload.write('{"part":');
    // Its slot is taken (the shedding hook runs on the headers): the next request is shed.
    const shed = await get(client, '/');
    expect(shed.headers[':status']).toBe(503);
    expect(JSON.parse(shed.body)).toMatchObject({ code: 'ERR_LOAD_SHED' });
    const gone = new Promise<void>((resolve) => closed.push(resolve));
    upload.close(constants.NGHTTP2_CANCEL);
    await gone;
    expect((await get(client, '/')).headers[':status']).toBe(200);
  });
});
