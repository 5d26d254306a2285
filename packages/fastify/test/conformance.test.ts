import { type ClientHttp2Session, connect, constants, type OutgoingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AppSpec,
  type CaseResponse,
  type Client,
  cases,
  Holds,
  requestBody,
  requestHeaders,
  setupCases,
  unixSocketClient,
  unixSocketPath,
  watchAddressWarnings,
} from '../../http/test/conformance.js';
import {
  floodgateIdempotency,
  floodgateLoadShedding,
  floodgateRateLimit,
  InvalidOptionError,
} from '../src/index.js';

/**
 * Builds the conformance app the idiomatic Fastify way: plugins, per-route `config.floodgate`; with
 * `http2`, a cleartext HTTP/2 server (h2c).
 */
export async function buildApp(spec: AppSpec, holds: Holds, http2 = false): Promise<FastifyInstance> {
  const trustProxy = spec.trustProxy ?? false;
  // The plugins are the same for both: only the server's type differs.
  const app = (http2
    ? Fastify({ http2: true, trustProxy })
    : Fastify({ trustProxy })) as unknown as FastifyInstance;
  // The payload is the handler's to read, as for a streamed upload.
  app.addContentTypeParser('application/octet-stream', (_request, _payload, done) => {
    done(null);
  });
  app.addHook('onRequest', (_request, reply, done) => {
    reply.raw.once('close', () => {
      if (!reply.raw.writableEnded) holds.arrive('gone');
    });
    done();
  });
  const sheddingFirst = spec.order !== 'idempotency-first';
  if (spec.rateLimit !== undefined) {
    await app.register(floodgateRateLimit, {
      ...spec.rateLimit,
      ...(spec.rateLimitStore === undefined ? {} : { store: spec.rateLimitStore(holds) }),
      ...(spec.rateLimitKey === undefined ? {} : { key: spec.rateLimitKey(holds) }),
    });
  }
  if (spec.shedding !== undefined && sheddingFirst) await app.register(floodgateLoadShedding, spec.shedding);
  if (spec.idempotency !== undefined) {
    await app.register(floodgateIdempotency, {
      ...spec.idempotency,
      ...(spec.idempotencyStore === undefined ? {} : { store: spec.idempotencyStore(holds) }),
      ...(spec.idempotencyScope === undefined ? {} : { scope: spec.idempotencyScope(holds) }),
    });
  }
  // The shop's order: shedding in preHandler, after the idempotency plugin's (registered first).
  if (spec.shedding !== undefined && !sheddingFirst) {
    await app.register(floodgateLoadShedding, { ...spec.shedding, hook: 'preHandler' });
  }
  const config = (path: string) => {
    const route = spec.routes?.[path];
    return {
      floodgate: {
        ...(route?.rateLimit === undefined ? {} : { rateLimit: route.rateLimit }),
        ...(route?.priority === undefined ? {} : { loadShedding: { priority: route.priority } }),
        ...(path === '/checkout' ? { idempotency: true } : {}),
      },
    };
  };
  const ok = async () => ({ ok: true });
  app.get('/', { config: config('/') }, ok);
  app.get('/search', { config: config('/search') }, ok);
  app.get('/health', { config: config('/health') }, ok);
  app.get<{ Querystring: { hold?: string } }>('/browse', { config: config('/browse') }, async (request) => {
    if (request.query.hold !== undefined) await holds.wait(request.query.hold);
    return { ok: true };
  });
  app.post<{ Body: { hold?: string; status?: number; error?: boolean; amount?: number } }>(
    '/checkout',
    { config: config('/checkout') },
    async (request, reply) => {
      holds.checkouts += 1;
      const order = holds.checkouts;
      const body = request.body;
      if (body.hold !== undefined) await holds.wait(body.hold);
      if (body.error === true) throw new Error('handler failed');
      return reply
        .code(body.status ?? 201)
        .header('location', `/orders/${order}`)
        .send({ order, amount: body.amount });
    },
  );
  await app.ready();
  return app;
}

function injectClient(app: FastifyInstance): Client {
  return {
    async request(init) {
      // Cases that drop a connection run over sockets only (`needsSocket`).
      if (init.signal !== undefined) throw new Error('inject cannot drop a connection');
      const body = requestBody(init);
      const response = await app.inject({
        method: (init.method ?? 'GET') as 'GET',
        url: init.path,
        headers: {
          ...(init.json === undefined ? {} : { 'content-type': 'application/json' }),
          ...init.headers,
        },
        ...(body === undefined ? {} : { payload: body }),
      });
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(response.headers)) {
        if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
      }
      return { status: response.statusCode, headers, body: response.body } satisfies CaseResponse;
    },
  };
}

async function socketClient(app: FastifyInstance): Promise<Client> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return {
    async request(init) {
      const body = requestBody(init);
      const response = await fetch(`http://127.0.0.1:${port}${init.path}`, {
        method: init.method ?? 'GET',
        headers: requestHeaders(init),
        ...(body === undefined ? {} : { body }),
        ...(init.signal === undefined ? {} : { signal: init.signal }),
      });
      const headers: Record<string, string> = {};
      response.headers.forEach((value, name) => {
        headers[name] = value;
      });
      return { status: response.status, headers, body: await response.text() } satisfies CaseResponse;
    },
  };
}

/**
 * A client over one HTTP/2 session (node:http2). Aborting a request resets its stream (RST_STREAM
 * CANCEL), which is how an HTTP/2 client leaves: the connection stays up for the others.
 */
async function http2Client(app: FastifyInstance): Promise<{ client: Client; session: ClientHttp2Session }> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  const session = connect(`http://127.0.0.1:${port}`);
  const client: Client = {
    request(init) {
      return new Promise((resolve, reject) => {
        const fields: OutgoingHttpHeaders = { ':method': init.method ?? 'GET', ':path': init.path };
        requestHeaders(init).forEach((value, name) => {
          // Headers joins a repeated field; sent as an array it goes out once per value, as the case says.
          const given = init.headers?.[name];
          fields[name] = Array.isArray(given) ? [...given] : value;
        });
        const stream = session.request(fields);
        let status = 0;
        const headers: Record<string, string> = {};
        let body = '';
        stream.on('response', (response) => {
          status = Number(response[':status']);
          for (const [name, value] of Object.entries(response)) {
            if (!name.startsWith(':') && value !== undefined) {
              headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
            }
          }
        });
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => {
          body += chunk;
        });
        stream.on('end', () => resolve({ status, headers, body }));
        stream.on('error', reject);
        // A stream the server resets ends without 'end' (or with an error the listener above took).
        stream.on('close', () => reject(new Error(`stream closed (code ${stream.rstCode})`)));
        init.signal?.addEventListener(
          'abort',
          () => {
            reject(new Error('aborted'));
            stream.close(constants.NGHTTP2_CANCEL);
          },
          { once: true },
        );
        stream.end(requestBody(init));
      });
    },
  };
  return { client, session };
}

/** A client of the app listening on a fresh Unix socket, where it sees no client address. */
async function unixClient(app: FastifyInstance): Promise<Client> {
  const path = unixSocketPath();
  await app.listen({ path });
  return unixSocketClient(path);
}

for (const transport of ['inject', 'socket', 'http2', 'unix'] as const) {
  describe(`@floodgate/fastify conformance (${transport})`, () => {
    let cleanup: (() => Promise<void>) | undefined;
    afterEach(async () => {
      await cleanup?.();
      cleanup = undefined;
    });

    for (const testCase of cases) {
      // inject cannot drop a connection once the body was read: those cases run over the socket.
      if (transport === 'inject' && testCase.needsSocket === true) continue;
      // A Unix socket hides every client's address: only the cases written for that run there.
      if ((testCase.unixSocket === true) !== (transport === 'unix')) continue;
      it(testCase.name, async () => {
        const holds = new Holds();
        const unwatch = watchAddressWarnings(holds);
        const app = await buildApp(testCase.app, holds, transport === 'http2');
        let session: ClientHttp2Session | undefined;
        cleanup = async () => {
          unwatch();
          holds.releaseAll();
          session?.destroy();
          if (transport === 'socket' || transport === 'unix') app.server.closeAllConnections();
          await app.close();
        };
        let client: Client;
        if (transport === 'inject') client = injectClient(app);
        else if (transport === 'socket') client = await socketClient(app);
        else if (transport === 'unix') client = await unixClient(app);
        else ({ client, session } = await http2Client(app));
        await testCase.run(client, holds);
        expect(holds.addressWarnings).toHaveLength(testCase.addressWarnings ?? 0);
      });
    }
  });
}

describe('@floodgate/fastify conformance: set-ups refused', () => {
  for (const testCase of setupCases) {
    it(testCase.name, async () => {
      const error: unknown = await buildApp(testCase.app, new Holds()).then(
        async (app) => {
          await app.close();
          return undefined;
        },
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(InvalidOptionError);
      expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option: testCase.error.option });
      expect((error as Error).message).toMatch(testCase.error.message);
    });
  }
});
