import { floodgateIdempotency, floodgateLoadShedding, floodgateRateLimit } from '@floodgate/fastify';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { contentTypeOf, type ShopAnswer, serialize } from './answer.js';
import { CHECKOUT_IDEMPOTENCY, checkoutPriority, checkoutRateLimit } from './checkout-guards.js';
import type { CheckoutShedder } from './checkout-shedder.js';
import { jsonBodyParser, readJsonBody } from './json-body.js';
import { type ShopPage, ShopPages } from './pages.js';
import { ShopApi, type ShopApiOptions } from './shop-api.js';

/**
 * What the Fastify shop is built from: the API's options (it is the floodgate shop, so its page sends an
 * `Idempotency-Key` and orders are not locked), and the load shedding in front of checkout.
 */
export interface FastifyShopOptions
  extends Omit<ShopApiOptions, 'framework' | 'lockOrders' | 'pageSendsIdempotencyKey'> {
  /**
   * The load shedding in front of checkout: the floodgate parts' `shedder` (see `floodgatePaymentParts`),
   * which counts each checkout it turns away as `shed` on the dashboard and admits the checkouts that
   * answer without the bank (`RECOVERING_PRIORITY`).
   */
  readonly shedder: CheckoutShedder;
  /**
   * Monotonic clock in ms for the per-student rate limit and the recent declines (tests inject one).
   * @default performance.now
   */
  readonly clock?: () => number;
}

function send(reply: FastifyReply, answer: ShopAnswer): FastifyReply {
  return reply
    .code(answer.status)
    .headers(answer.headers)
    .type(contentTypeOf(answer))
    .send(serialize(answer));
}

function sendPage(reply: FastifyReply, page: ShopPage): FastifyReply {
  return reply.code(200).headers(page.headers).send(page.body);
}

/** The path of a request, without its query (Express's `req.path`). */
const pathOf = (request: FastifyRequest) => request.url.split('?', 1)[0] ?? request.url;

/**
 * The floodgate shop on Fastify 5 with the @floodgate/fastify plugins: the same routes and answers as the
 * Express app (`app.ts`; both serve `ShopApi`, read bodies with `json-body.ts` and serve `ShopPages`),
 * with the checkout's guards (`checkout-guards.ts`) configured per route, in the Express shop's order.
 *
 * @example
 * const parts = floodgatePaymentParts({ db, meter, bankUrl, bankRate: 300 });
 * const app = await createFastifyShop({ db, meter, payments: parts.payments, shedder: parts.shedder });
 * await app.listen({ port: 3000 });
 */
export async function createFastifyShop(options: FastifyShopOptions): Promise<FastifyInstance> {
  const { shedder, clock } = options;
  const api = new ShopApi({
    ...options,
    framework: 'fastify',
    lockOrders: false,
    pageSendsIdempotencyKey: true,
  });
  const pages = new ShopPages();
  const app = Fastify({
    // A URL Fastify cannot decode (`/api/orders/%E0`) is the client's 400, answered as every other one.
    frameworkErrors: (error, _request, reply) => send(reply, api.error(error, error.statusCode)),
  });

  // Bodies are read as the Express shop reads them (body-parser), not by Fastify's JSON parser: every
  // media type reaches this one parser, which reads JSON and leaves anything else unread.
  const parser = jsonBodyParser();
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (request, _payload, done) => {
    // A request no route serves is answered 404 with its body unread, as Express answers it (whose body
    // parser runs only on the two POST routes); Fastify would parse it for its not-found handler too.
    if (request.is404) {
      done(null, undefined);
      return;
    }
    readJsonBody(parser, request.raw).then(
      (body) => done(null, body),
      (error: Error) => done(error),
    );
  });
  app.setNotFoundHandler((request, reply) => send(reply, api.notFound(request.method, pathOf(request))));
  app.setErrorHandler((error, _request, reply) => {
    // Fastify's own errors about the request (`FST_ERR_*` with a 4xx) are the client's, like body-parser's.
    const { code, statusCode } = error as { code?: unknown; statusCode?: unknown };
    const own = typeof code === 'string' && code.startsWith('FST_') && typeof statusCode === 'number';
    return send(reply, api.error(error, own ? statusCode : undefined));
  });

  app.get('/api/config', (_request, reply) => send(reply, api.config()));
  app.get('/api/products', (_request, reply) => send(reply, api.products()));
  app.get('/api/deals', (_request, reply) => send(reply, api.deals()));
  // An empty segment (`/api/orders/`, `/api/deals//join`) is no route in Express; Fastify matches it as
  // an empty `:id`. Answered in `onRequest`, before a body is read, as a request no route serves is.
  const withId = {
    onRequest: async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => {
      if (request.params.id === '') return send(reply, api.notFound(request.method, pathOf(request)));
    },
  };
  app.post<{ Params: { id: string } }>('/api/deals/:id/join', withId, (request, reply) =>
    send(reply, api.join(request.headers, request.params.id)),
  );
  app.get<{ Params: { id: string } }>('/api/orders/:id', withId, (request, reply) =>
    send(reply, api.order(request.headers, request.params.id)),
  );
  app.get('/api/stats', async (_request, reply) => send(reply, await api.stats()));
  for (const path of pages.paths) {
    const page = pages.page(path) as ShopPage;
    app.get(path, (_request, reply) => sendPage(reply, page));
  }

  // Protection is per route: registered after the routes above, with `global: false`, the plugins only
  // touch routes that ask for them in `config.floodgate`. All three run in `preHandler`, after the body
  // was read, in the Express shop's order ([perStudent, idempotent, shed], after its body parser): a
  // malformed body is answered 400 before any of them, as there. Shedding comes after idempotency, so a
  // re-click of an order already paid or being paid is answered from its key instead of "busy, nothing
  // was charged"; its 503 goes through `reply.send()` (`denials: 'reply'`), so the idempotency plugin
  // sees it and frees the key.
  await app.register(floodgateRateLimit, { ...checkoutRateLimit(clock), global: false, hook: 'preHandler' });
  await app.register(floodgateIdempotency, CHECKOUT_IDEMPOTENCY);
  // The class comes from the body (an order being recovered is never shed), so it is the plugin's
  // function: a route's `config` names a fixed class only.
  const priorityOf = checkoutPriority(options.payments);
  await app.register(floodgateLoadShedding, {
    global: false,
    hook: 'preHandler',
    denials: 'reply',
    shedder,
    priority: (request) => priorityOf(request.body),
  });

  const arrivals = new WeakMap<FastifyRequest, number>();
  app.post(
    '/api/checkout',
    {
      config: {
        floodgate: { rateLimit: {}, idempotency: true, loadShedding: {} },
      },
      // The route's own hook, after the body was read and before the plugins' `preHandler` hooks: every
      // checkout counts, as in the Express shop, and its arrival is noted before idempotency can hold it.
      preValidation: (request, _reply, done) => {
        arrivals.set(request, api.checkoutArrived());
        done();
      },
    },
    async (request, reply) =>
      send(reply, await api.checkout(request.headers, request.body, arrivals.get(request))),
  );
  return app;
}
