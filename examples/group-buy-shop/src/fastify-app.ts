import { randomUUID } from 'node:crypto';
import { floodgateIdempotency, floodgateLoadShedding, floodgateRateLimit } from '@floodgate/fastify';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { COALESCE_TIMEOUT_MS, checkoutOrder, isStoredCheckoutAnswer } from './checkout.js';
import { type ShopDb, UnknownDealError } from './db.js';
import type { FloodgatePaymentParts } from './floodgate-shop.js';
import type { Meter } from './meter.js';
import type { MeterName } from './payments.js';
import { RecentDeclines } from './recent-declines.js';

export interface FastifyShopOptions {
  readonly db: ShopDb;
  readonly meter: Meter<MeterName>;
  /** The floodgate shop's way to the bank (see `floodgatePaymentParts`). */
  readonly parts: FloodgatePaymentParts;
}

const studentOf = (request: FastifyRequest) => {
  const student = request.headers['x-student-id'];
  return typeof student === 'string' && /^[\w.-]{1,64}$/.test(student) ? student : undefined;
};

/**
 * The shop's API on Fastify 5 with the @floodgate/fastify plugins: the same deals, orders and checkout as
 * the Express app (the checkout logic is shared), with the per-student rate limit and idempotency
 * configured per route, and load shedding after them as in the Express shop. The storefront pages are the
 * Express app's.
 *
 * @example
 * const parts = floodgatePaymentParts({ db, meter, bankUrl, bankRate: 300 });
 * const app = await createFastifyShop({ db, meter, parts });
 * await app.listen({ port: 3000 });
 */
export async function createFastifyShop(options: FastifyShopOptions): Promise<FastifyInstance> {
  const { db, meter, parts } = options;
  const app = Fastify();

  app.get('/api/deals', async () => db.deals());
  app.get<{ Params: { id: string } }>('/api/orders/:id', async (request, reply) => {
    const order = db.order(request.params.id);
    return order ?? reply.code(404).send({ status: 'not_found' });
  });
  app.post<{ Params: { id: string } }>('/api/deals/:id/join', async (request, reply) => {
    const student = studentOf(request);
    if (!student) return reply.code(401).send({ detail: 'Send the `X-Student-Id` header.' });
    try {
      const order = db.joinDeal(request.params.id, student, `ord_${randomUUID()}`);
      return reply.code(201).send({ order, deal: db.deal(order.dealId) });
    } catch (error) {
      if (error instanceof UnknownDealError) return reply.code(404).send({ detail: error.message });
      throw error;
    }
  });

  // Protection is per route: registered after the routes above, with `global: false`, the plugins only
  // touch routes that ask for them in `config.floodgate`.
  await app.register(floodgateRateLimit, {
    global: false,
    name: 'checkout',
    limit: 10,
    windowMs: 10_000,
    key: studentOf,
  });
  await app.register(floodgateIdempotency, {
    scope: studentOf,
    inFlight: 'coalesce',
    coalesceTimeoutMs: COALESCE_TIMEOUT_MS,
    shouldStore: isStoredCheckoutAnswer,
  });
  // Shedding comes after idempotency, as in the Express shop ([perStudent, idempotent, shed]): in
  // `preHandler`, after the idempotency plugin's, so a re-click of an order already paid or being paid is
  // answered from its key instead of "busy, nothing was charged". Its 503 goes through `reply.send()`
  // (`denials: 'reply'`): the idempotency plugin sees it and frees the key. The shedder comes with the
  // parts, as in the Express shop: it counts what it sheds for the dashboard.
  await app.register(floodgateLoadShedding, {
    global: false,
    hook: 'preHandler',
    denials: 'reply',
    shedder: parts.shedder,
  });

  const declines = new RecentDeclines({ holdMs: COALESCE_TIMEOUT_MS + 5000 });
  const arrivals = new WeakMap<FastifyRequest, number>();
  const context = { db, meter, payments: parts.payments, lockOrders: false, declines };
  app.post(
    '/api/checkout',
    {
      config: {
        floodgate: { rateLimit: {}, idempotency: true, loadShedding: { priority: 'critical' } },
      },
      // The route's own hook runs before the plugins' (they append theirs to the route): every checkout
      // counts, as in the Express shop, and its arrival is noted before idempotency can hold it (a repeat
      // of a click that was declined meanwhile gets that decline: see RecentDeclines).
      onRequest: (request, _reply, done) => {
        meter.mark('checkouts');
        arrivals.set(request, declines.now());
        done();
      },
    },
    async (request, reply) => {
      const student = studentOf(request);
      if (!student) return reply.code(401).send({ detail: 'Send the `X-Student-Id` header.' });
      const answer = await checkoutOrder(context, student, request.body, arrivals.get(request));
      reply.code(answer.status).headers(answer.headers);
      if (answer.problem) reply.type('application/problem+json');
      return reply.send(answer.body);
    },
  );
  return app;
}
