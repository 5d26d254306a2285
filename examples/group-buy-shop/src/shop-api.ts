import { randomUUID } from 'node:crypto';
import { type IncomingHttpHeaders, STATUS_CODES } from 'node:http';
import { json, problem, quoted, type ShopAnswer } from './answer.js';
import { completeSeconds, fetchBankStats } from './bank-stats.js';
import { type CheckoutContext, COALESCE_TIMEOUT_MS, checkoutOrder } from './checkout.js';
import type { Framework } from './config.js';
import { type ShopDb, UnknownDealError } from './db.js';
import { Meter } from './meter.js';
import type { MeterName, Payments } from './payments.js';
import { RecentDeclines } from './recent-declines.js';
import { studentOf } from './student.js';

/** What the shop's API is built from. Everything with a lifetime (db, payments) is owned by the caller. */
export interface ShopApiOptions {
  /** Which framework serves this API (`GET /api/config` says so): each adapter sets its own. */
  readonly framework: Framework;
  readonly db: ShopDb;
  readonly payments: Payments;
  /**
   * Per-second counters the dashboard reads; share it with the payments so both count in one place.
   * @default a new `Meter`
   */
  readonly meter?: Meter<MeterName>;
  /**
   * Hold the order in the database while a checkout talks to the bank, answering 409 to a second
   * concurrent checkout of the same order.
   * @default false
   */
  readonly lockOrders?: boolean;
  /**
   * Whether the shop's page sends an `Idempotency-Key` with each click of "Pay" (`GET /api/config`).
   * @default false
   */
  readonly pageSendsIdempotencyKey?: boolean;
  /**
   * The bank's base URL; when set, `GET /api/stats` also shows what the bank itself counts.
   * @default undefined
   */
  readonly bankUrl?: string | undefined;
  /**
   * A name for this process on the dashboard (several shop instances may share one bank).
   * @default 'shop'
   */
  readonly instance?: string | undefined;
  /**
   * Monotonic clock in ms: when a checkout arrived, against the declines answered since.
   * @default performance.now
   */
  readonly clock?: () => number;
}

/**
 * The shop's HTTP API without a framework: one method per route, each returning the answer both shops
 * send (`app.ts` for Express, `fastify-app.ts` for Fastify, each a thin adapter that routes, reads the
 * body with `json-body.ts` and writes the answer). What the two frameworks would otherwise each decide
 * (the 401 and 404 bodies, which errors are the client's, the dashboard's numbers) is decided here once.
 *
 * @example
 * const api = new ShopApi({ framework: 'express', db, payments });
 * app.get('/api/deals', (_req, res) => send(res, api.deals()));
 */
export class ShopApi {
  readonly meter: Meter<MeterName>;
  readonly #options: ShopApiOptions;
  readonly #declines: RecentDeclines;
  readonly #checkout: CheckoutContext;

  constructor(options: ShopApiOptions) {
    this.#options = options;
    this.meter = options.meter ?? new Meter<MeterName>();
    // Remembered a little longer than the idempotency layer may hold a repeated click.
    this.#declines = new RecentDeclines({
      holdMs: COALESCE_TIMEOUT_MS + 5000,
      ...(options.clock ? { clock: options.clock } : {}),
    });
    this.#checkout = {
      db: options.db,
      payments: options.payments,
      meter: this.meter,
      lockOrders: options.lockOrders ?? false,
      declines: this.#declines,
    };
  }

  /** `GET /api/config`: what the page needs to know about this shop. */
  config(): ShopAnswer {
    const { payments, instance, pageSendsIdempotencyKey, framework } = this.#options;
    return json(200, {
      shop: payments.name,
      framework,
      instance: instance ?? 'shop',
      sendsIdempotencyKey: pageSendsIdempotencyKey ?? false,
      bankRate: payments.status().bankRate,
    });
  }

  /** `GET /api/products`. */
  products(): ShopAnswer {
    return json(200, this.#options.db.products());
  }

  /** `GET /api/deals`. */
  deals(): ShopAnswer {
    return json(200, this.#options.db.deals());
  }

  /** `POST /api/deals/:id/join`: opens (or finds) the student's order in the deal. */
  join(headers: IncomingHttpHeaders, dealId: string): ShopAnswer {
    const student = studentOf({ headers });
    if (student === undefined) return unauthorized();
    const { db } = this.#options;
    try {
      const order = db.joinDeal(dealId, student, `ord_${randomUUID()}`);
      return json(201, { order, deal: db.deal(order.dealId) }, { location: `/api/orders/${order.id}` });
    } catch (error) {
      if (error instanceof UnknownDealError)
        return problem(404, 'Not Found', `There is no deal ${quoted(dealId)}`);
      throw error;
    }
  }

  /**
   * `GET /api/orders/:id`: the student's own order. Another student's is answered as an unknown one (404,
   * as its checkout is): its id rides in `Location` fields and links, and the order names its student, its
   * payment and its card's decline reason.
   */
  order(headers: IncomingHttpHeaders, orderId: string): ShopAnswer {
    const student = studentOf({ headers });
    if (student === undefined) return unauthorized(PRIVATE);
    const order = this.#options.db.order(orderId);
    return order?.studentId === student
      ? json(200, order, { ...PRIVATE })
      : problem(404, 'Not Found', `You have no order ${quoted(orderId)}`, {}, { ...PRIVATE });
  }

  /**
   * A checkout came in: counts it for the dashboard and returns when it arrived. Call it first on the
   * route, before any middleware or hook can hold the request: when it arrived decides whether it is a
   * repeat of a click that was declined meanwhile (see {@link RecentDeclines}).
   */
  checkoutArrived(): number {
    this.meter.mark('checkouts');
    return this.#declines.now();
  }

  /** `POST /api/checkout` `{ orderId, source? }`, after the checkout's middleware let it through. */
  checkout(headers: IncomingHttpHeaders, body: unknown, arrivedAt: number | undefined): Promise<ShopAnswer> {
    const student = studentOf({ headers });
    if (student === undefined) return Promise.resolve(unauthorized());
    return checkoutOrder(this.#checkout, student, body, arrivedAt);
  }

  /** `GET /api/stats`: the dashboard's numbers, with the bank's when it answers. */
  async stats(): Promise<ShopAnswer> {
    const { payments, db, bankUrl, instance } = this.#options;
    const meter = this.meter;
    const bank = bankUrl ? await fetchBankStats(bankUrl) : null;
    return json(200, {
      shop: payments.name,
      instance: instance ?? 'shop',
      at: Date.now(),
      bankRate: payments.status().bankRate,
      payments: payments.status(),
      orders: db.orderCounts(),
      perSecond: {
        checkouts: meter.lastSecond('checkouts'),
        bank: meter.lastSecond('bank'),
        paid: meter.lastSecond('paid'),
        shed: meter.lastSecond('shed'),
      },
      history: {
        checkouts: meter.history('checkouts'),
        bank: meter.history('bank'),
        paid: meter.history('paid'),
        bankAdmitted: bank?.series ? completeSeconds(bank.series) : null,
      },
      bank: bank && {
        admitted: bank.admitted,
        throttled: bank.throttled,
        charges: bank.charges,
        ordersCharged: bank.ordersCharged,
        ordersChargedMoreThanOnce: bank.ordersChargedMoreThanOnce,
        extraCharges: bank.extraCharges,
        peakAdmittedPerSecond: bank.peakAdmittedPerSecond,
      },
    });
  }

  /** Any method and path no route serves (instead of each framework's own 404 page). */
  notFound(method: string, path: string): ShopAnswer {
    return problem(404, 'Not Found', `There is no route ${quoted(`${method} ${path}`)}`);
  }

  /**
   * The answer to an error a route or the framework raised. The client's mistakes (`clientStatus`, or a
   * 4xx `status` such as body-parser's 400 malformed, 413 too large, 415 an unsupported charset or
   * encoding) are answered as what they are; anything else is the shop's fault: 500, and logged.
   */
  error(error: unknown, clientStatus?: number): ShopAnswer {
    const status = clientStatus ?? (error as { status?: unknown } | null)?.status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return problem(status, STATUS_CODES[status] ?? 'Bad Request', (error as Error).message);
    }
    console.error(error);
    return problem(500, 'Internal Server Error', 'Something went wrong in the shop.');
  }
}

function unauthorized(headers: Record<string, string> = {}): ShopAnswer {
  return problem(
    401,
    'Unauthorized',
    'Send the `X-Student-Id` header (1-64 letters, digits, `.`, `_` or `-`).',
    {},
    { ...headers },
  );
}

/**
 * The fields of an answer that depends on who asks (`X-Student-Id`), under a URL anyone may ask: 200 and
 * 404 are cacheable without explicit freshness (RFC 9111 section 4.2.2), and a shared cache in front of
 * the shop would hand one student's order (its payment, its decline reason) to the next student asking.
 */
const PRIVATE: Readonly<Record<string, string>> = { 'cache-control': 'no-store' };
