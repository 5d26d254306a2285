import type { ErrorRequestHandler, Express, RequestHandler, Response } from 'express';
import express from 'express';
import { contentTypeOf, type ShopAnswer, serialize } from './answer.js';
import { jsonBodyParser } from './json-body.js';
import { type ShopPage, ShopPages } from './pages.js';
import { ShopApi, type ShopApiOptions } from './shop-api.js';

export { settleOrder } from './checkout.js';

/** What the Express shop is built from: the API's options, and what runs in front of checkout. */
export interface ShopAppOptions extends Omit<ShopApiOptions, 'framework'> {
  /** Handlers run before the checkout (rate limit, idempotency, load shedding), in order. @default [] */
  readonly checkoutMiddleware?: readonly RequestHandler[];
}

function send(res: Response, answer: ShopAnswer): void {
  res.status(answer.status).set(answer.headers).type(contentTypeOf(answer)).send(serialize(answer));
}

function sendPage(res: Response, page: ShopPage): void {
  res.status(200).set(page.headers).send(page.body);
}

/**
 * The group-buy shop as an Express app: catalogue, group deals, orders, an idempotent-or-not checkout
 * (depending on the payments and middleware it is given), the storefront page and the festival dashboard.
 * Every answer comes from `ShopApi`, which the Fastify shop (`fastify-app.ts`) serves the same way.
 *
 * @example
 * const db = new ShopDb('shop.db');
 * const app = createShopApp({ db, payments: new NaivePayments({ db, meter, bankUrl, bankRate }) });
 * app.listen(3000);
 */
export function createShopApp(options: ShopAppOptions): Express {
  const api = new ShopApi({ ...options, framework: 'express' });
  const pages = new ShopPages();
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // Fastify's routing: `/api/deals/` and `/API/deals` are not `/api/deals` (Express would serve them).
  app.set('case sensitive routing', true);
  app.set('strict routing', true);

  // Only the routes that take a body read one; the body is read before the checkout's middleware, as in
  // the Fastify shop (whose hooks run after its content-type parser).
  const body = jsonBodyParser();

  app.get('/api/config', (_req, res) => send(res, api.config()));
  app.get('/api/products', (_req, res) => send(res, api.products()));
  app.get('/api/deals', (_req, res) => send(res, api.deals()));
  app.post('/api/deals/:id/join', body, (req, res) =>
    send(res, api.join(req.headers, String(req.params.id))),
  );
  app.get('/api/orders/:id', (req, res) => send(res, api.order(req.headers, String(req.params.id))));

  // First on the route, before any middleware can hold the request (see ShopApi.checkoutArrived).
  const countCheckout: RequestHandler = function countCheckout(_req, res, next) {
    res.locals.arrivedAt = api.checkoutArrived();
    next();
  };
  const checkout: RequestHandler = async function checkout(req, res) {
    send(res, await api.checkout(req.headers, req.body, res.locals.arrivedAt as number));
  };
  app.post('/api/checkout', body, countCheckout, ...(options.checkoutMiddleware ?? []), checkout);

  app.get('/api/stats', async (_req, res) => send(res, await api.stats()));

  // Pages last: the API's hot path never looks them up.
  for (const path of pages.paths) {
    const page = pages.page(path) as ShopPage;
    app.get(path, (_req, res) => sendPage(res, page));
  }

  app.use((req, res) => send(res, api.notFound(req.method, req.path)));
  const onError: ErrorRequestHandler = (error, _req, res, _next) => {
    const answer = api.error(error);
    if (res.headersSent) res.destroy();
    else send(res, answer);
  };
  app.use(onError);
  return app;
}
