/**
 * The fuzz app (packages/http/test/fuzz.ts) the Fastify way, as the shop registers its plugins, answering
 * through inject() or over a real socket (fuzz.ts's `socketClient`, the one the Express app answers on).
 */
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import {
  bodyBytes,
  type FuzzClient,
  type FuzzControls,
  type FuzzOptions,
  type FuzzRequest,
  type FuzzResponse,
  outcomeOf,
  socketClient,
} from '../../http/test/fuzz.js';
import { floodgateIdempotency, floodgateLoadShedding, floodgateRateLimit } from '../src/index.js';

export interface RunningApp {
  readonly client: FuzzClient;
  close(): Promise<void>;
}

/** How the fuzz reaches the app: light-my-request's inject(), or Node's parser on a real socket. */
export type FastifyTransport = 'inject' | 'socket';

/**
 * The shop's registration (fastify-app.ts): the rate limit in onRequest, idempotency in preHandler and
 * load shedding in preHandler after it, its 503 through `reply.send()` so the idempotency plugin frees
 * the key.
 */
export async function startFastifyApp(
  options: FuzzOptions,
  controls: FuzzControls,
  transport: FastifyTransport = 'inject',
): Promise<RunningApp> {
  const app: FastifyInstance = Fastify({ trustProxy: options.trustProxy, bodyLimit: options.bodyLimit });
  await app.register(floodgateRateLimit, { global: false, ...options.rateLimit });
  await app.register(floodgateIdempotency, options.idempotency);
  await app.register(floodgateLoadShedding, {
    global: false,
    hook: 'preHandler',
    denials: 'reply',
    ...options.shedding,
  });
  app.route({
    method: ['POST', 'PATCH'],
    url: '/checkout',
    config: {
      floodgate: { rateLimit: {}, idempotency: true, loadShedding: { priority: options.priority } },
    },
    handler: async (request, reply) => {
      const order = await controls.checkout();
      return reply.code(outcomeOf(request.headers)).header('location', `/orders/${order}`).send({ order });
    },
  });
  if (transport === 'inject') {
    await app.ready();
    return { client: injectClient(app), close: () => app.close() };
  }
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return {
    client: socketClient(port),
    async close() {
      // A request still held in the handler when a scenario fails must not keep app.close() waiting.
      app.server.closeAllConnections();
      await app.close();
    },
  };
}

/**
 * inject() with the fields as Node would hand them over: a repeated field as an array, which
 * light-my-request joins with `, ` (keeping the first `authorization`), as Node's parser does.
 */
export function injectClient(app: FastifyInstance): FuzzClient {
  return {
    async request(request: FuzzRequest): Promise<FuzzResponse> {
      const headers: Record<string, string | string[]> = {};
      for (const [name, value] of request.headers) {
        const before = headers[name];
        headers[name] =
          before === undefined ? value : [...(Array.isArray(before) ? before : [before]), value];
      }
      if (request.body !== undefined) headers['content-type'] = 'application/json';
      const response = await app.inject({
        method: request.method as 'POST',
        url: request.path,
        headers,
        ...(request.body === undefined ? {} : { payload: bodyBytes(request.body) }),
      });
      const fields: Record<string, string> = {};
      for (const [name, value] of Object.entries(response.headers)) {
        if (value !== undefined) fields[name] = Array.isArray(value) ? value.join(', ') : String(value);
      }
      return { status: response.statusCode, headers: fields, body: response.body };
    },
  };
}
