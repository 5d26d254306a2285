/**
 * The table of API cases both shops must answer alike, so the Express shop (`src/app.ts`) and the Fastify
 * shop (`src/fastify-app.ts`) cannot drift: every route either serves, its answers and its errors. Each
 * case is a request (after some `given` steps through the same client) and the answer expected: status,
 * content type, every other response field, and the body's shape. `src/api-conformance.test.ts` runs the
 * whole table against both apps, as the floodgate shop: the Express one over a real socket, the Fastify
 * one through `inject()`, each with its own database, a scripted bank (the card decides the outcome), a
 * load shedder whose breaker a case opens, and one manual clock.
 *
 * A difference between the two is written down in the case (`differs`, with why) or it fails the table.
 */
import { gzipSync } from 'node:zlib';
import { expect } from 'vitest';
import type { ShopDb } from '../src/db.js';
import type { Meter } from '../src/meter.js';
import type { MeterName, PaymentIntent, Payments, PaymentsStatus, PayOutcome } from '../src/payments.js';

export type AppName = 'express' | 'fastify';

export interface CaseRequest {
  readonly method?: string;
  /** Path and query, sent as is (no encoding). */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Sent as is, with its `Content-Length`. */
  readonly body?: string | Buffer;
}

export interface CaseResponse {
  readonly status: number;
  /** Lower-case names, each once. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface Client {
  request(request: CaseRequest): Promise<CaseResponse>;
}

/** The card (`source`) decides what the scripted bank answers. */
export const CARDS = {
  ok: 'tok_ok',
  declined: 'tok_decline',
  pending: 'tok_pending',
  failed: 'tok_fail',
  /** Another payment of the order with other details is in flight or done. */
  mismatch: 'tok_mismatch',
  /** The payment client refuses the intent. */
  invalid: 'tok_invalid',
  /** A bug in the payments: the shop's fault. */
  bug: 'tok_bug',
} as const;

const coded = (code: string) => Object.assign(new Error(`scripted ${code}`), { code });

/** The shop's payments, scripted by card, counting what they were asked to pay. */
export class CardPayments implements Payments {
  readonly name = 'floodgate' as const;
  readonly calls: PaymentIntent[] = [];
  /** Orders whose payment is being recovered after a restart: pending at once, whatever the card. */
  readonly recoveringOrders = new Set<string>();

  async pay(intent: PaymentIntent): Promise<PayOutcome> {
    this.calls.push(intent);
    if (this.recoveringOrders.has(intent.orderId)) return { status: 'pending', retryAfterMs: 1000 };
    switch (intent.source) {
      case CARDS.ok:
        return { status: 'paid', paymentId: `pay_${this.calls.length}` };
      case CARDS.declined:
        return { status: 'declined', reason: 'insufficient_funds' };
      case CARDS.pending:
        return { status: 'pending' };
      case CARDS.failed:
        return { status: 'failed', message: 'The bank did not answer.' };
      case CARDS.mismatch:
        throw coded('ERR_PAYMENT_MISMATCH');
      case CARDS.invalid:
        throw coded('ERR_INVALID_OPTION');
      default:
        throw new Error(`scripted bug for ${intent.source}`);
    }
  }

  status(): PaymentsStatus {
    return { breaker: 'closed', queued: 0, active: 0, bankRate: BANK_RATE };
  }

  recovering(orderId: string): boolean {
    return this.recoveringOrders.has(orderId);
  }

  async close(): Promise<void> {}
}

export const BANK_RATE = 50;
export const INSTANCE = 'shop-1';

/** One app under test, as a case sees it. */
export interface CaseShop {
  readonly app: AppName;
  readonly client: Client;
  readonly db: ShopDb;
  readonly meter: Meter<MeterName>;
  readonly payments: CardPayments;
  /** The breaker the load shedder reads: `open` sheds every checkout. */
  readonly breaker: { state: string; retryAfterMs?: number };
  /** Moves the shop's one manual clock (rate limit, declines, the dashboard's seconds). */
  advance(ms: number): void;
}

/** What a case's app is built with beyond the defaults. */
export interface ShopSpec {
  /** `bank-sim`: a real bank (its `/_stats` feeds `/api/stats`); `unreachable`: a port nothing listens on. */
  readonly bank?: 'bank-sim' | 'unreachable';
}

/** Values the `given` steps made (an order id...), for the request and the expectation. */
export type Given = Readonly<Record<string, string>>;

export interface Expected {
  readonly status: number;
  /** The exact `Content-Type`. */
  readonly contentType: string;
  /**
   * Every other response field but the transport's (`date`, `connection`, `keep-alive`, `content-length`,
   * `transfer-encoding`): exact values or matchers. A field not listed fails the case.
   * @default {}
   */
  readonly headers?: Readonly<Record<string, unknown>>;
  /** The body: parsed JSON against this value or matcher (`toEqual`), or a matcher for text. */
  readonly body: unknown;
  /** Whether the shop logs the answer as its own fault (console.error). @default false */
  readonly logged?: boolean;
}

export interface ApiCase {
  readonly name: string;
  readonly shop?: ShopSpec;
  /** Steps before the request, through the same client (they assert their own answers). */
  readonly given?: (shop: CaseShop) => Promise<Given>;
  readonly request: (given: Given) => CaseRequest;
  readonly expect: (given: Given) => Expected;
  /**
   * Where the two apps legitimately answer differently: each app's fields of the expectation, and why.
   * Anything else they answer differently fails the case.
   */
  readonly differs?: {
    readonly why: string;
    readonly express: Partial<Expected>;
    readonly fastify: Partial<Expected>;
  };
  /** What must hold after the answer (the shop's own records). */
  readonly after?: (shop: CaseShop, given: Given, response: CaseResponse) => void | Promise<void>;
}

// ---- content types ----

const JSON_TYPE = 'application/json; charset=utf-8';
const PROBLEM = 'application/problem+json; charset=utf-8';
/** The problem+json the @floodgate adapters send (429, idempotency's 400/422, shedding's 503), the same on both. */
const RAW_PROBLEM = 'application/problem+json';
const HTML = 'text/html; charset=utf-8';
const JS = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

// ---- shapes ----

const problemOf = (status: number, title: string, extra: object = {}) => ({
  type: 'about:blank',
  title,
  status,
  detail: expect.any(String),
  ...extra,
});

const productShape = {
  id: expect.any(String),
  name: expect.any(String),
  priceCents: expect.any(Number),
  currency: 'EUR',
};

const dealShape = (extra: object = {}) => ({
  id: expect.any(String),
  productId: expect.any(String),
  title: expect.any(String),
  priceCents: expect.any(Number),
  currency: 'EUR',
  target: expect.any(Number),
  joined: expect.any(Number),
  status: 'open',
  ...extra,
});

const orderShape = (extra: object = {}) => ({
  id: expect.stringMatching(/^ord_/),
  dealId: 'd-kettle',
  studentId: 'ann',
  amount: 1200,
  currency: 'EUR',
  status: 'created',
  paymentId: null,
  declineReason: null,
  createdAt: expect.any(Number),
  updatedAt: expect.any(Number),
  ...extra,
});

const minute = (value: unknown = expect.any(Number)) => Array.from({ length: 60 }, () => value);

const statsShape = (
  extra: { orders?: object; perSecond?: object; history?: object; bank?: unknown } = {},
) => ({
  shop: 'floodgate',
  instance: INSTANCE,
  at: expect.any(Number),
  bankRate: BANK_RATE,
  payments: { breaker: 'closed', queued: 0, active: 0, bankRate: BANK_RATE },
  orders: { created: 0, paying: 0, paid: 0, declined: 0, pending: 0, failed: 0, total: 0, ...extra.orders },
  perSecond: { checkouts: 0, bank: 0, paid: 0, shed: 0, ...extra.perSecond },
  history: { checkouts: minute(0), bank: minute(0), paid: minute(0), bankAdmitted: null, ...extra.history },
  bank: extra.bank === undefined ? null : extra.bank,
});

const configOf = (framework: AppName) => ({
  shop: 'floodgate',
  framework,
  instance: INSTANCE,
  sendsIdempotencyKey: true,
  bankRate: BANK_RATE,
});

/** A page's fields: asked again on every load, and taken as its `Content-Type` says, never sniffed. */
const PAGE_FIELDS = { 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' };

/** An order's answers depend on `X-Student-Id`, not on the URL alone: no cache may keep them. */
const PRIVATE = { 'cache-control': 'no-store' };

/** A 15 000-character value: a client's request fits 16 KB of fields, and any of it may be echoed. */
const HUGE = 'a'.repeat(15_000);

/** The longest answer a problem quoting {@link HUGE} may make: the value quoted in part, not whole. */
const BOUNDED_ANSWER = 600;

/** The per-student rate limit's fields on every answer that passed it. */
const rateLimited = (remaining = expect.any(String)) => ({
  'ratelimit-policy': '"checkout";q=10;w=10',
  ratelimit: remaining,
});

// ---- requests ----

const student = (id = 'ann') => ({ 'x-student-id': id });
const jsonHeaders = { 'content-type': 'application/json' };

interface CheckoutInit {
  readonly student?: string | undefined;
  readonly key?: string | undefined;
  readonly headers?: Readonly<Record<string, string>>;
}

function checkout(body: unknown, init: CheckoutInit = {}): CaseRequest {
  return {
    method: 'POST',
    path: '/api/checkout',
    headers: {
      ...jsonHeaders,
      ...(init.student === undefined ? student() : init.student === '' ? {} : student(init.student)),
      ...(init.key === undefined ? {} : { 'idempotency-key': `"${init.key}"` }),
      ...init.headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  };
}

const pay = (orderId: string, source: string = CARDS.ok, key = `k-${orderId}-${source}`) =>
  checkout({ orderId, source }, { key });

async function join(shop: CaseShop, who = 'ann', deal = 'd-kettle'): Promise<string> {
  const response = await shop.client.request({
    method: 'POST',
    path: `/api/deals/${deal}/join`,
    headers: student(who),
  });
  expect(response.status).toBe(201);
  return (JSON.parse(response.body) as { order: { id: string } }).order.id;
}

/** An order of `ann`'s, and the same order paid (key `k-paid`) when `paid`. */
const givenOrder =
  (paid = false) =>
  async (shop: CaseShop): Promise<Given> => {
    const orderId = await join(shop);
    if (paid) expect((await shop.client.request(pay(orderId, CARDS.ok, 'k-paid'))).status).toBe(201);
    return { orderId };
  };

const gets = (path: string) => () => ({ path });

// ---- the table ----

export const cases: readonly ApiCase[] = [
  // ---- catalogue, config, dashboard feed ----
  {
    name: 'GET /api/products: the catalogue',
    request: gets('/api/products'),
    expect: () => ({ status: 200, contentType: JSON_TYPE, body: [productShape, productShape, productShape] }),
  },
  {
    name: 'GET /api/deals: the group deals',
    request: gets('/api/deals'),
    expect: () => ({ status: 200, contentType: JSON_TYPE, body: [dealShape(), dealShape(), dealShape()] }),
  },
  {
    name: 'HEAD /api/deals: the fields of GET, no body',
    request: () => ({ method: 'HEAD', path: '/api/deals' }),
    expect: () => ({ status: 200, contentType: JSON_TYPE, body: '' }),
  },
  {
    name: 'GET /api/config: what the page needs (the floodgate page sends an Idempotency-Key)',
    request: gets('/api/config'),
    expect: () => ({ status: 200, contentType: JSON_TYPE, body: configOf('express') }),
    differs: {
      why: 'it names the framework that answered, so a caller (the festival) can tell which app it started',
      express: { body: configOf('express') },
      fastify: { body: configOf('fastify') },
    },
  },
  {
    name: 'GET /api/stats: the dashboard feed, without a bank configured',
    request: gets('/api/stats'),
    expect: () => ({ status: 200, contentType: JSON_TYPE, body: statsShape() }),
  },
  {
    name: 'GET /api/stats: a bank that does not answer leaves its numbers out',
    shop: { bank: 'unreachable' },
    request: gets('/api/stats'),
    expect: () => ({ status: 200, contentType: JSON_TYPE, body: statsShape() }),
  },
  {
    name: 'GET /api/stats: the bank’s own numbers, on the dashboard’s minute',
    shop: { bank: 'bank-sim' },
    request: gets('/api/stats'),
    expect: () => ({
      status: 200,
      contentType: JSON_TYPE,
      body: statsShape({
        history: { bankAdmitted: minute(0) },
        bank: {
          admitted: 0,
          throttled: 0,
          charges: 0,
          ordersCharged: 0,
          ordersChargedMoreThanOnce: 0,
          extraCharges: 0,
          peakAdmittedPerSecond: 0,
        },
      }),
    }),
  },
  {
    name: 'GET /api/stats: counts the last second’s checkouts, shed ones included, and the orders',
    given: async (shop) => {
      const paid = await join(shop, 'ann');
      expect((await shop.client.request(pay(paid))).status).toBe(201);
      const other = await join(shop, 'bob');
      shop.breaker.state = 'open';
      expect(
        (await shop.client.request(checkout({ orderId: other }, { student: 'bob', key: 'k' }))).status,
      ).toBe(503);
      shop.advance(1000);
      return {};
    },
    request: gets('/api/stats'),
    expect: () => ({
      status: 200,
      contentType: JSON_TYPE,
      body: statsShape({
        orders: { created: 1, paid: 1, total: 2 },
        perSecond: { checkouts: 2, paid: 1, shed: 1 },
        history: { checkouts: [...minute(0).slice(1), 2], paid: [...minute(0).slice(1), 1] },
      }),
    }),
  },

  // ---- pages ----
  ...(
    [
      ['/', HTML, '<script src="/shop.js"'],
      ['/index.html', HTML, '<script src="/shop.js"'],
      ['/dashboard', HTML, '<title>Festival dashboard</title>'],
      ['/dashboard.html', HTML, '<script src="/dashboard.js"'],
      ['/shop.js', JS, 'Idempotency-Key'],
      ['/dashboard.js', JS, "fetch('/api/stats')"],
      ['/shop.css', CSS, 'font-family'],
    ] as const
  ).map(
    ([path, contentType, contains]): ApiCase => ({
      name: `GET ${path}: a page, read when the shop was built`,
      request: gets(path),
      expect: () => ({
        status: 200,
        contentType,
        headers: PAGE_FIELDS,
        body: expect.stringContaining(contains),
      }),
    }),
  ),
  {
    name: 'HEAD /: the page’s fields, no body',
    request: () => ({ method: 'HEAD', path: '/' }),
    expect: () => ({ status: 200, contentType: HTML, headers: PAGE_FIELDS, body: '' }),
  },

  // ---- joining a deal ----
  {
    name: 'POST /api/deals/:id/join: opens the student’s order, 201 + Location',
    request: () => ({ method: 'POST', path: '/api/deals/d-kettle/join', headers: student() }),
    expect: () => ({
      status: 201,
      contentType: JSON_TYPE,
      headers: { location: expect.stringMatching(/^\/api\/orders\/ord_/) },
      body: { order: orderShape(), deal: dealShape({ id: 'd-kettle', joined: 1 }) },
    }),
    after: (_shop, _given, response) => {
      const { order } = JSON.parse(response.body) as { order: { id: string } };
      expect(response.headers.location).toBe(`/api/orders/${order.id}`);
    },
  },
  {
    name: 'POST /api/deals/:id/join again: the same order',
    given: givenOrder(),
    request: () => ({
      method: 'POST',
      path: '/api/deals/d-kettle/join',
      headers: { ...student(), ...jsonHeaders },
      body: '{}',
    }),
    expect: ({ orderId }) => ({
      status: 201,
      contentType: JSON_TYPE,
      headers: { location: `/api/orders/${orderId}` },
      body: { order: orderShape({ id: orderId }), deal: dealShape({ id: 'd-kettle', joined: 1 }) },
    }),
  },
  {
    name: 'POST /api/deals/:id/join without X-Student-Id: 401 problem',
    request: () => ({ method: 'POST', path: '/api/deals/d-kettle/join' }),
    expect: () => ({ status: 401, contentType: PROBLEM, body: problemOf(401, 'Unauthorized') }),
  },
  {
    name: 'POST /api/deals/:id/join with a malformed X-Student-Id: 401 problem',
    request: () => ({ method: 'POST', path: '/api/deals/d-kettle/join', headers: student('ann smith') }),
    expect: () => ({ status: 401, contentType: PROBLEM, body: problemOf(401, 'Unauthorized') }),
  },
  {
    name: 'POST /api/deals/:id/join of an unknown deal: 404 problem',
    request: () => ({ method: 'POST', path: '/api/deals/d-nope/join', headers: student() }),
    expect: () => ({ status: 404, contentType: PROBLEM, body: problemOf(404, 'Not Found') }),
  },
  {
    name: 'POST /api/deals/:id/join with malformed JSON: 400 problem, nothing joined',
    request: () => ({
      method: 'POST',
      path: '/api/deals/d-kettle/join',
      headers: { ...student(), ...jsonHeaders },
      body: '{"x":',
    }),
    expect: () => ({ status: 400, contentType: PROBLEM, body: problemOf(400, 'Bad Request') }),
    after: (shop) => expect(shop.db.orderCounts().total).toBe(0),
  },

  // ---- orders ----
  {
    name: 'GET /api/orders/:id: the student’s order',
    given: givenOrder(),
    request: ({ orderId }) => ({ path: `/api/orders/${orderId}`, headers: student() }),
    expect: ({ orderId }) => ({
      status: 200,
      contentType: JSON_TYPE,
      headers: PRIVATE,
      body: orderShape({ id: orderId }),
    }),
  },
  {
    name: 'GET /api/orders/:id of a paid order: paid, with its payment',
    given: givenOrder(true),
    request: ({ orderId }) => ({ path: `/api/orders/${orderId}`, headers: student() }),
    expect: ({ orderId }) => ({
      status: 200,
      contentType: JSON_TYPE,
      headers: PRIVATE,
      body: orderShape({ id: orderId, status: 'paid', paymentId: 'pay_1' }),
    }),
  },
  {
    name: 'GET /api/orders/:id of an unknown order: 404 problem',
    request: () => ({ path: '/api/orders/ord_nope', headers: student() }),
    expect: () => ({
      status: 404,
      contentType: PROBLEM,
      headers: PRIVATE,
      body: problemOf(404, 'Not Found', { detail: 'You have no order `ord_nope`' }),
    }),
  },
  {
    // As its checkout is (404 "You have no order"): another student learns nothing of it, not even that
    // it exists (the same answer as an unknown order's), and not its card's decline reason.
    name: 'GET /api/orders/:id of another student’s declined order: 404 problem, as an unknown order',
    given: async (shop) => {
      const orderId = await join(shop);
      expect((await shop.client.request(pay(orderId, CARDS.declined))).status).toBe(402);
      return { orderId };
    },
    request: ({ orderId }) => ({ path: `/api/orders/${orderId}`, headers: student('bob') }),
    expect: ({ orderId }) => ({
      status: 404,
      contentType: PROBLEM,
      headers: PRIVATE,
      body: problemOf(404, 'Not Found', { detail: `You have no order \`${orderId}\`` }),
    }),
  },
  {
    name: 'GET /api/orders/:id without X-Student-Id: 401 problem',
    given: givenOrder(),
    request: ({ orderId }) => ({ path: `/api/orders/${orderId}` }),
    expect: () => ({
      status: 401,
      contentType: PROBLEM,
      headers: PRIVATE,
      body: problemOf(401, 'Unauthorized'),
    }),
  },
  {
    name: 'GET /api/orders/:id with an undecodable id: 400 problem',
    request: gets('/api/orders/%E0%A4%A'),
    expect: () => ({ status: 400, contentType: PROBLEM, body: problemOf(400, 'Bad Request') }),
  },

  // ---- no such route: one 404 for both frameworks ----
  ...(
    [
      ['GET', '/api/nope'],
      ['POST', '/api/nope'],
      ['GET', '/api/checkout'],
      ['DELETE', '/api/orders/ord_1'],
      ['GET', '/nope.html'],
      ['GET', '/api/deals/'],
      ['GET', '/API/deals'],
      // An empty path segment is no id: Fastify would match it as `:id` = ''.
      ['GET', '/api/orders/'],
      ['POST', '/api/deals//join'],
      // Pages are served from a table of exact paths read at start-up: no path reaches the file system.
      ['GET', '/..%2f..%2fpackage.json'],
      ['GET', '/%2e%2e%2f%2e%2e%2fpackage.json'],
      ['GET', '/..%5c..%5cpackage.json'],
      ['GET', '/shop.js%00.html'],
      ['GET', '/index.html/'],
      ['GET', '/SHOP.JS'],
    ] as const
  ).map(
    ([method, path]): ApiCase => ({
      name: `${method} ${path}: no such route, 404 problem`,
      request: () => ({
        method,
        path,
        ...(method === 'POST' ? { headers: { ...jsonHeaders, ...student() }, body: '{"orderId":"x"}' } : {}),
      }),
      expect: () => ({
        status: 404,
        contentType: PROBLEM,
        body: problemOf(404, 'Not Found', { detail: `There is no route \`${method} ${path}\`` }),
      }),
    }),
  ),
  // Only the two POST routes read a body: a request no route serves is 404 whatever its body (Fastify
  // parsed it for its not-found handler too, and answered 400 or 413).
  ...(
    [
      ['POST', '/api/nope', 'malformed JSON', '{"orderId":'],
      ['POST', '/api/deals//join', 'malformed JSON', '{"orderId":'],
      ['PATCH', '/api/checkout', 'malformed JSON', '{"orderId":'],
      ['DELETE', '/api/orders/ord_1', 'a body over 16 KB', JSON.stringify({ x: 'x'.repeat(20_000) })],
    ] as const
  ).map(
    ([method, path, what, body]): ApiCase => ({
      name: `${method} ${path} with ${what}: no such route, 404 problem, the body not read`,
      request: () => ({ method, path, headers: jsonHeaders, body }),
      expect: () => ({
        status: 404,
        contentType: PROBLEM,
        body: problemOf(404, 'Not Found', { detail: `There is no route \`${method} ${path}\`` }),
      }),
    }),
  ),

  // ---- checkout: the payment's outcomes ----
  {
    name: 'POST /api/checkout paid: 201',
    given: givenOrder(),
    request: ({ orderId = '' }) => pay(orderId),
    expect: ({ orderId }) => ({
      status: 201,
      contentType: JSON_TYPE,
      headers: rateLimited(),
      body: { status: 'paid', orderId, paymentId: 'pay_1' },
    }),
    after: (shop, { orderId = '' }) => {
      expect(shop.db.order(orderId)?.status).toBe('paid');
      expect(shop.payments.calls).toHaveLength(1);
    },
  },
  {
    name: 'POST /api/checkout paid, with a gzip body: body-parser inflates it on both',
    given: givenOrder(),
    request: ({ orderId = '' }) => ({
      ...pay(orderId),
      headers: { ...pay(orderId).headers, 'content-encoding': 'gzip' },
      body: gzipSync(JSON.stringify({ orderId, source: CARDS.ok })),
    }),
    expect: ({ orderId }) => ({
      status: 201,
      contentType: JSON_TYPE,
      headers: rateLimited(),
      body: { status: 'paid', orderId, paymentId: 'pay_1' },
    }),
  },
  {
    name: 'POST /api/checkout with an amount and currency in the body: paid at the order’s',
    given: givenOrder(),
    request: ({ orderId = '' }) =>
      checkout({ orderId, source: CARDS.ok, amount: 1, currency: 'JPY' }, { key: 'k-cheap' }),
    expect: ({ orderId }) => ({
      status: 201,
      contentType: JSON_TYPE,
      headers: rateLimited(),
      body: { status: 'paid', orderId, paymentId: 'pay_1' },
    }),
    after: (shop) => expect(shop.payments.calls).toMatchObject([{ amount: 1200, currency: 'EUR' }]),
  },
  {
    name: 'POST /api/checkout of a paid order with a new key: 200, not sent again',
    given: givenOrder(true),
    request: ({ orderId = '' }) => pay(orderId, CARDS.ok, 'k-new'),
    expect: ({ orderId }) => ({
      status: 200,
      contentType: JSON_TYPE,
      headers: rateLimited(),
      body: { status: 'paid', orderId, paymentId: 'pay_1' },
    }),
    after: (shop) => expect(shop.payments.calls).toHaveLength(1),
  },
  {
    name: 'POST /api/checkout repeated with its key: the paid answer replayed, Idempotent-Replayed',
    given: givenOrder(true),
    request: ({ orderId = '' }) => pay(orderId, CARDS.ok, 'k-paid'),
    expect: ({ orderId }) => ({
      status: 201,
      contentType: JSON_TYPE,
      headers: { ...rateLimited(), 'idempotent-replayed': 'true' },
      body: { status: 'paid', orderId, paymentId: 'pay_1' },
    }),
    after: (shop) => expect(shop.payments.calls).toHaveLength(1),
  },
  {
    name: 'POST /api/checkout replayed while the shop sheds: answered from its key, not 503',
    given: async (shop) => {
      const given = await givenOrder(true)(shop);
      shop.breaker.state = 'open';
      return given;
    },
    request: ({ orderId = '' }) => pay(orderId, CARDS.ok, 'k-paid'),
    expect: ({ orderId }) => ({
      status: 201,
      contentType: JSON_TYPE,
      headers: { ...rateLimited(), 'idempotent-replayed': 'true' },
      body: { status: 'paid', orderId, paymentId: 'pay_1' },
    }),
    after: (shop) => expect(shop.meter.total('shed')).toBe(0),
  },
  {
    name: 'POST /api/checkout with a used key and another body: 422 problem',
    given: async (shop) => ({
      ...(await givenOrder(true)(shop)),
      other: await join(shop, 'ann', 'd-textbook'),
    }),
    request: ({ other = '' }) => pay(other, CARDS.ok, 'k-paid'),
    expect: () => ({
      status: 422,
      contentType: RAW_PROBLEM,
      headers: rateLimited(),
      body: problemOf(422, 'Unprocessable Entity', { code: 'ERR_IDEMPOTENCY_KEY_REUSED' }),
    }),
    after: (shop) => expect(shop.payments.calls).toHaveLength(1),
  },
  {
    name: 'POST /api/checkout declined: 402',
    given: givenOrder(),
    request: ({ orderId = '' }) => pay(orderId, CARDS.declined),
    expect: ({ orderId }) => ({
      status: 402,
      contentType: JSON_TYPE,
      headers: rateLimited(),
      body: { status: 'declined', orderId, reason: 'insufficient_funds' },
    }),
    after: (shop, { orderId = '' }) => expect(shop.db.order(orderId)?.status).toBe('declined'),
  },
  {
    name: 'POST /api/checkout pending: 202 + Location of the order',
    given: givenOrder(),
    request: ({ orderId = '' }) => pay(orderId, CARDS.pending),
    expect: ({ orderId }) => ({
      status: 202,
      contentType: JSON_TYPE,
      headers: { ...rateLimited(), location: `/api/orders/${orderId}` },
      body: { status: 'pending', orderId, detail: expect.any(String) },
    }),
  },
  {
    name: 'POST /api/checkout failed (the naive and careful payments’ answer): 502 problem',
    given: givenOrder(),
    request: ({ orderId = '' }) => pay(orderId, CARDS.failed),
    expect: ({ orderId }) => ({
      status: 502,
      contentType: PROBLEM,
      headers: rateLimited(),
      body: problemOf(502, 'Bad Gateway', { status: 'failed', orderId }),
    }),
  },
  {
    name: 'POST /api/checkout while another card pays the order: 409 ERR_PAYMENT_MISMATCH + Retry-After',
    given: givenOrder(),
    request: ({ orderId = '' }) => pay(orderId, CARDS.mismatch),
    expect: ({ orderId }) => ({
      status: 409,
      contentType: PROBLEM,
      headers: { ...rateLimited(), 'retry-after': '2' },
      body: problemOf(409, 'Conflict', { status: 'in-progress', orderId, code: 'ERR_PAYMENT_MISMATCH' }),
    }),
    after: (shop, { orderId = '' }) => expect(shop.db.order(orderId)?.status).toBe('created'),
  },
  {
    name: 'POST /api/checkout the payment refuses: 400 ERR_INVALID_OPTION',
    given: givenOrder(),
    request: ({ orderId = '' }) => pay(orderId, CARDS.invalid),
    expect: ({ orderId }) => ({
      status: 400,
      contentType: PROBLEM,
      headers: rateLimited(),
      body: problemOf(400, 'Bad Request', { orderId, code: 'ERR_INVALID_OPTION' }),
    }),
  },
  {
    name: 'POST /api/checkout with a bug in the payments: 500 problem, logged, order not left paying',
    given: givenOrder(),
    request: ({ orderId = '' }) => pay(orderId, CARDS.bug),
    expect: () => ({
      status: 500,
      contentType: PROBLEM,
      headers: rateLimited(),
      body: problemOf(500, 'Internal Server Error'),
      logged: true,
    }),
    after: (shop, { orderId = '' }) => expect(shop.db.order(orderId)?.status).toBe('created'),
  },

  // ---- checkout: who and which order ----
  {
    name: 'POST /api/checkout without X-Student-Id: 401 problem',
    given: givenOrder(),
    request: ({ orderId }) => checkout({ orderId }, { student: '', key: 'k-anon' }),
    expect: () => ({
      status: 401,
      contentType: PROBLEM,
      headers: rateLimited(),
      body: problemOf(401, 'Unauthorized'),
    }),
    after: (shop) => expect(shop.payments.calls).toHaveLength(0),
  },
  {
    name: 'POST /api/checkout of another student’s order: 404 problem',
    given: givenOrder(),
    request: ({ orderId }) => checkout({ orderId }, { student: 'bob', key: 'k-bob' }),
    expect: () => ({
      status: 404,
      contentType: PROBLEM,
      headers: rateLimited(),
      body: problemOf(404, 'Not Found'),
    }),
  },
  {
    name: 'POST /api/checkout of an unknown order: 404 problem',
    request: () => checkout({ orderId: 'ord_nope' }, { key: 'k-1' }),
    expect: () => ({
      status: 404,
      contentType: PROBLEM,
      headers: rateLimited(),
      body: problemOf(404, 'Not Found'),
    }),
  },
  {
    name: 'POST /api/checkout without an Idempotency-Key: 400 problem',
    given: givenOrder(),
    request: ({ orderId }) => checkout({ orderId }),
    expect: () => ({
      status: 400,
      contentType: RAW_PROBLEM,
      headers: rateLimited(),
      body: problemOf(400, 'Bad Request', { code: 'ERR_IDEMPOTENCY_KEY_MISSING', header: 'Idempotency-Key' }),
    }),
    after: (shop) => expect(shop.payments.calls).toHaveLength(0),
  },

  // ---- checkout: the body ----
  ...(
    [
      ['an orderId that is not a string', { orderId: 1 }],
      ['an empty card source', { orderId: 'ord_x', source: '' }],
    ] as const
  ).map(
    ([what, body]): ApiCase => ({
      name: `POST /api/checkout with ${what}: 400 problem, after the guards`,
      request: () => checkout(body, { key: 'k-1' }),
      expect: () => ({
        status: 400,
        contentType: PROBLEM,
        headers: rateLimited(),
        body: problemOf(400, 'Bad Request'),
      }),
      after: (shop) => expect(shop.payments.calls).toHaveLength(0),
    }),
  ),
  {
    // The idempotency layer cannot fingerprint a body nothing read: it refuses before the handler runs.
    name: 'POST /api/checkout with a body that is not JSON (text/plain): left unread, 415 problem',
    request: () => checkout('orderId=ord_x', { key: 'k-1', headers: { 'content-type': 'text/plain' } }),
    expect: () => ({
      status: 415,
      contentType: RAW_PROBLEM,
      headers: rateLimited(),
      body: problemOf(415, 'Unsupported Media Type', { code: 'ERR_IDEMPOTENCY_BODY_UNREAD' }),
    }),
  },
  // The body is read before the checkout's guards (both shops): these are answered without RateLimit
  // fields, and not counted as checkouts.
  ...(
    [
      [400, 'Bad Request', 'malformed JSON', checkout('{"orderId":', { key: 'k-1' })],
      [
        400,
        'Bad Request',
        'JSON that is not an object or array (body-parser is strict)',
        checkout('"ord_x"', { key: 'k-1' }),
      ],
      [
        413,
        'Payload Too Large',
        'a body over 16 KB',
        checkout({ orderId: 'ord_x', source: 'x'.repeat(20_000) }, { key: 'k-1' }),
      ],
      [
        415,
        'Unsupported Media Type',
        'a charset other than UTF-*',
        checkout(
          { orderId: 'ord_x' },
          { key: 'k-1', headers: { 'content-type': 'application/json; charset=latin2' } },
        ),
      ],
      [
        415,
        'Unsupported Media Type',
        'an unknown Content-Encoding',
        checkout({ orderId: 'ord_x' }, { key: 'k-1', headers: { 'content-encoding': 'compress' } }),
      ],
    ] as const
  ).map(
    ([status, title, what, request]): ApiCase => ({
      name: `POST /api/checkout with ${what}: ${status} problem, before the guards`,
      request: () => request,
      expect: () => ({ status, contentType: PROBLEM, body: problemOf(status, title) }),
      after: (shop) => {
        expect(shop.meter.total('checkouts')).toBe(0);
        expect(shop.payments.calls).toHaveLength(0);
      },
    }),
  ),

  // ---- what a client sent, quoted in part: no answer grows with the request ----
  // Every field of a request may be up to 16 KB (Node's header limit), a body too (the shop's): a detail
  // quoting one whole would let a client have the shop build (and send) an answer as large as its request.
  ...(
    [
      [
        'a 15 000-character path',
        () => ({ path: `/${HUGE}` }),
        {
          status: 404,
          contentType: PROBLEM,
          body: problemOf(404, 'Not Found', { detail: `There is no route \`GET /${'a'.repeat(94)}…\`` }),
        },
      ],
      [
        'an undecodable 15 000-character order id',
        () => ({ path: `/api/orders/%E0${HUGE}`, headers: student() }),
        { status: 400, contentType: PROBLEM, body: problemOf(400, 'Bad Request') },
      ],
      [
        'a 15 000-character charset',
        () =>
          checkout(
            { orderId: 'ord_x' },
            { key: 'k-1', headers: { 'content-type': `application/json; charset=${HUGE}` } },
          ),
        { status: 415, contentType: PROBLEM, body: problemOf(415, 'Unsupported Media Type') },
      ],
      [
        'a 15 000-character Content-Encoding',
        () => checkout({ orderId: 'ord_x' }, { key: 'k-1', headers: { 'content-encoding': HUGE } }),
        { status: 415, contentType: PROBLEM, body: problemOf(415, 'Unsupported Media Type') },
      ],
      [
        'a 15 000-character order id in the checkout body',
        () => checkout({ orderId: HUGE }, { key: 'k-1' }),
        {
          status: 404,
          contentType: PROBLEM,
          headers: rateLimited(),
          body: problemOf(404, 'Not Found', { detail: `You have no order \`${'a'.repeat(99)}…\`` }),
        },
      ],
    ] as const
  ).map(
    ([what, request, expected]): ApiCase => ({
      name: `${what}: the answer quotes it in part`,
      request,
      expect: () => expected,
      after: (_shop, _given, response) => expect(response.body.length).toBeLessThan(BOUNDED_ANSWER),
    }),
  ),
  ...(
    [
      [
        'GET /api/orders/:id of a 15 000-character id',
        () => ({ path: `/api/orders/${HUGE}`, headers: student() }),
        {
          status: 404,
          contentType: PROBLEM,
          headers: PRIVATE,
          body: problemOf(404, 'Not Found', { detail: `You have no order \`${'a'.repeat(99)}…\`` }),
        },
      ],
      [
        'POST /api/deals/:id/join of a 15 000-character id',
        () => ({ method: 'POST', path: `/api/deals/${HUGE}/join`, headers: student() }),
        {
          status: 404,
          contentType: PROBLEM,
          body: problemOf(404, 'Not Found', { detail: `There is no deal \`${'a'.repeat(99)}…\`` }),
        },
      ],
    ] as const
  ).map(
    ([what, request, express]): ApiCase => ({
      name: `${what}: the answer quotes it in part`,
      request,
      expect: () => express,
      differs: {
        why: 'Fastify refuses a path parameter over its `maxParamLength` (100) before routing',
        express,
        fastify: { status: 414, contentType: PROBLEM, headers: {}, body: problemOf(414, 'URI Too Long') },
      },
      after: (_shop, _given, response) => expect(response.body.length).toBeLessThan(BOUNDED_ANSWER),
    }),
  ),

  // ---- checkout: the guards ----
  {
    name: 'POST /api/checkout the 11th within 10 s: 429 ERR_RATE_LIMITED + Retry-After',
    given: async (shop) => {
      for (let i = 0; i < 10; i++) {
        const answer = await shop.client.request(checkout({ orderId: 'ord_nope' }, { key: `k-${i}` }));
        expect(answer.status).toBe(404);
      }
      return {};
    },
    request: () => checkout({ orderId: 'ord_nope' }, { key: 'k-10' }),
    expect: () => ({
      status: 429,
      contentType: RAW_PROBLEM,
      headers: { ...rateLimited('"checkout";r=0;t=10'), 'retry-after': '1' },
      body: problemOf(429, 'Too Many Requests', {
        code: 'ERR_RATE_LIMITED',
        policy: 'checkout',
        retryAfter: 1,
      }),
    }),
    after: async (shop) => {
      // One more a second: the clock, not a sleep.
      shop.advance(1000);
      expect((await shop.client.request(checkout({ orderId: 'ord_nope' }, { key: 'k-11' }))).status).toBe(
        404,
      );
    },
  },
  {
    name: 'POST /api/checkout while the shop sheds: 503 ERR_LOAD_SHED + Retry-After, counted, nothing paid',
    given: async (shop) => {
      const given = await givenOrder()(shop);
      shop.breaker.state = 'open';
      return given;
    },
    request: ({ orderId = '' }) => pay(orderId),
    expect: () => ({
      status: 503,
      contentType: RAW_PROBLEM,
      headers: { ...rateLimited(), 'retry-after': '3' },
      body: problemOf(503, 'Service Unavailable', {
        code: 'ERR_LOAD_SHED',
        reason: 'breaker-open',
        retryAfter: 3,
      }),
    }),
    after: async (shop, { orderId = '' }) => {
      expect(shop.meter.total('shed')).toBe(1);
      expect(shop.payments.calls).toHaveLength(0);
      // The 503 freed its key: the same click is taken once the bank is back.
      shop.breaker.state = 'closed';
      expect((await shop.client.request(pay(orderId))).status).toBe(201);
    },
  },
  {
    name: 'POST /api/checkout of an order being recovered while the shop sheds: 202 + Retry-After, not shed',
    given: async (shop) => {
      const given = await givenOrder()(shop);
      shop.payments.recoveringOrders.add(given.orderId ?? '');
      shop.breaker.state = 'open';
      return given;
    },
    request: ({ orderId = '' }) => pay(orderId),
    expect: ({ orderId }) => ({
      status: 202,
      contentType: JSON_TYPE,
      headers: { ...rateLimited(), location: `/api/orders/${orderId}`, 'retry-after': '1' },
      body: { status: 'pending', orderId, detail: expect.any(String) },
    }),
    after: (shop, { orderId = '' }) => {
      // It sends nothing to the bank, so it holds no place there: not shed, not counted as shed.
      expect(shop.meter.total('shed')).toBe(0);
      expect(shop.db.order(orderId)?.status).toBe('pending');
    },
  },
];
