import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { ErrorRequestHandler, Express, Request, RequestHandler, Response } from 'express';
import express from 'express';
import type { OrderStatus, ShopDb } from './db.js';
import { UnknownDealError } from './db.js';
import { Meter } from './meter.js';
import type { MeterName, Payments, PayOutcome } from './payments.js';

/** What the shop is built from. Everything with a lifetime (db, payments) is owned by the caller. */
export interface ShopAppOptions {
  readonly db: ShopDb;
  readonly payments: Payments;
  /** Per-second counters the dashboard reads; share it with the payments so both count in one place. */
  readonly meter?: Meter<MeterName>;
  /** Handlers run before the checkout (rate limit, idempotency, load shedding), in order. @default [] */
  readonly checkoutMiddleware?: readonly RequestHandler[];
  /**
   * Hold the order in the database while a checkout talks to the bank, answering 409 to a second
   * concurrent checkout of the same order. @default false
   */
  readonly lockOrders?: boolean;
  /** Whether the shop's page sends an `Idempotency-Key` with each click of "Pay". @default false */
  readonly pageSendsIdempotencyKey?: boolean;
  /** The bank's base URL; when set, the dashboard also shows what the bank itself counts. */
  readonly bankUrl?: string;
  /** A name for this process on the dashboard (several shop instances may share one bank). */
  readonly instance?: string;
}

const publicDir = fileURLToPath(new URL('./public/', import.meta.url));

const STUDENT_ID = /^[\w.-]{1,64}$/;

function problem(res: Response, status: number, title: string, detail: string, extra: object = {}): void {
  res
    .status(status)
    .type('application/problem+json')
    .json({ type: 'about:blank', title, status, detail, ...extra });
}

/** Who is asking: a stand-in for the session cookie a real shop would read. */
function studentOf(req: Request, res: Response): string | undefined {
  const student = req.get('x-student-id');
  if (student && STUDENT_ID.test(student)) return student;
  problem(
    res,
    401,
    'Unauthorized',
    'Send the `X-Student-Id` header (1-64 letters, digits, `.`, `_` or `-`).',
  );
  return undefined;
}

/**
 * The group-buy shop as an Express app: catalogue, group deals, orders, an idempotent-or-not checkout
 * (depending on the payments and middleware it is given), the storefront page and the festival dashboard.
 *
 * @example
 * const db = new ShopDb('shop.db');
 * const app = createShopApp({ db, payments: new NaivePayments({ db, meter, bankUrl, bankRate }) });
 * app.listen(3000);
 */
export function createShopApp(options: ShopAppOptions): Express {
  const { db, payments, bankUrl } = options;
  const meter = options.meter ?? new Meter<MeterName>();
  const lockOrders = options.lockOrders ?? false;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.use('/api', express.json({ limit: '16kb' }));

  app.get('/api/config', (_req, res) => {
    res.json({
      shop: payments.name,
      instance: options.instance ?? 'shop',
      sendsIdempotencyKey: options.pageSendsIdempotencyKey ?? false,
      bankRate: payments.status().bankRate,
    });
  });

  app.get('/api/products', (_req, res) => {
    res.json(db.products());
  });

  app.get('/api/deals', (_req, res) => {
    res.json(db.deals());
  });

  app.post('/api/deals/:id/join', (req, res) => {
    const student = studentOf(req, res);
    if (!student) return;
    try {
      const order = db.joinDeal(String(req.params.id), student, `ord_${randomUUID()}`);
      res
        .status(201)
        .location(`/api/orders/${order.id}`)
        .json({ order, deal: db.deal(order.dealId) });
    } catch (error) {
      if (error instanceof UnknownDealError) return problem(res, 404, 'Not Found', error.message);
      throw error;
    }
  });

  app.get('/api/orders/:id', (req, res) => {
    const order = db.order(String(req.params.id));
    if (!order) return problem(res, 404, 'Not Found', `There is no order \`${req.params.id}\``);
    res.json(order);
  });

  const checkout: RequestHandler = async function checkout(req, res) {
    const student = studentOf(req, res);
    if (!student) return;
    const body = (req.body ?? {}) as { orderId?: unknown; source?: unknown };
    if (typeof body.orderId !== 'string' || (body.source !== undefined && typeof body.source !== 'string')) {
      return problem(res, 400, 'Bad Request', 'Send JSON `{ "orderId": string, "source"?: string }`.');
    }
    const order = db.order(body.orderId);
    if (!order || order.studentId !== student) {
      return problem(res, 404, 'Not Found', `You have no order \`${body.orderId}\``);
    }
    if (order.status === 'paid') {
      res.status(200).json({ status: 'paid', orderId: order.id, paymentId: order.paymentId });
      return;
    }
    const before: OrderStatus = order.status;
    if (lockOrders) {
      if (!db.claimForPayment(order.id)) {
        const now = db.order(order.id);
        if (now?.status === 'paid') {
          res.status(200).json({ status: 'paid', orderId: order.id, paymentId: now.paymentId });
          return;
        }
        return respond(res, order.id, { status: 'in-progress', retryAfterMs: 2000 });
      }
    } else if (before !== 'pending') {
      db.setOrderStatus(order.id, 'paying');
    }
    const outcome = await payments.pay({
      orderId: order.id,
      checkoutId: randomUUID(),
      studentId: student,
      amount: order.amount,
      currency: order.currency,
      source: typeof body.source === 'string' ? body.source : 'tok_ok',
    });
    applyOutcome(db, meter, order.id, outcome, before);
    respond(res, order.id, outcome);
  };

  const countCheckout: RequestHandler = function countCheckout(_req, _res, next) {
    meter.mark('checkouts');
    next();
  };
  app.post('/api/checkout', countCheckout, ...(options.checkoutMiddleware ?? []), checkout);

  app.get('/api/stats', async (_req, res) => {
    const bank = bankUrl ? await bankStats(bankUrl) : null;
    res.json({
      shop: payments.name,
      instance: options.instance ?? 'shop',
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
        bankAdmitted: bank?.series?.slice(-60).map((s) => s.admitted ?? 0) ?? null,
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
  });

  // Pages last: the API's hot path never touches the file system.
  app.get('/dashboard', (_req, res) => res.sendFile('dashboard.html', { root: publicDir }));
  app.use(express.static(publicDir, { index: 'index.html' }));

  const onError: ErrorRequestHandler = (error, _req, res, _next) => {
    const status = (error as { status?: number }).status;
    if (status === 400 || status === 413) {
      return problem(res, status, 'Bad Request', (error as Error).message);
    }
    console.error(error);
    if (!res.headersSent) problem(res, 500, 'Internal Server Error', 'Something went wrong in the shop.');
  };
  app.use(onError);
  return app;
}

function applyOutcome(
  db: ShopDb,
  meter: Meter<MeterName>,
  orderId: string,
  outcome: PayOutcome,
  before: OrderStatus,
) {
  switch (outcome.status) {
    case 'paid':
      db.setOrderStatus(orderId, 'paid', { paymentId: outcome.paymentId });
      meter.mark('paid');
      break;
    case 'declined':
      db.setOrderStatus(orderId, 'declined', { declineReason: outcome.reason });
      meter.mark('declined');
      break;
    case 'pending':
      db.setOrderStatus(orderId, 'pending');
      meter.mark('pending');
      break;
    case 'failed':
      db.setOrderStatus(orderId, 'failed');
      meter.mark('failed');
      break;
    case 'busy':
      // Nothing reached the bank: the order is where it was.
      db.setOrderStatus(orderId, before === 'paying' ? 'created' : before);
      meter.mark('shed');
      break;
    case 'in-progress':
      break;
  }
}

/** Records a settlement that happened in the background (reconciler, recovery after a crash). */
export function settleOrder(db: ShopDb, meter: Meter<MeterName>, orderId: string, outcome: PayOutcome): void {
  applyOutcome(db, meter, orderId, outcome, 'pending');
}

function respond(res: Response, orderId: string, outcome: PayOutcome): void {
  switch (outcome.status) {
    case 'paid':
      res.status(201).json({ status: 'paid', orderId, paymentId: outcome.paymentId });
      return;
    case 'declined':
      res.status(402).json({ status: 'declined', orderId, reason: outcome.reason });
      return;
    case 'pending':
      // Never "failed" while the bank may have charged: the page polls the order instead of paying again.
      res
        .status(202)
        .location(`/api/orders/${orderId}`)
        .json({ status: 'pending', orderId, detail: 'Payment pending: we will confirm it shortly.' });
      return;
    case 'failed':
      problem(res, 502, 'Bad Gateway', outcome.message, { status: 'failed', orderId });
      return;
    case 'busy':
      res.set('retry-after', String(Math.max(1, Math.ceil(outcome.retryAfterMs / 1000))));
      problem(res, 503, 'Service Unavailable', 'The shop is busy; nothing was charged. Try again shortly.', {
        status: 'busy',
        orderId,
      });
      return;
    case 'in-progress':
      res.set('retry-after', String(Math.max(1, Math.ceil(outcome.retryAfterMs / 1000))));
      problem(res, 409, 'Conflict', 'A payment for this order is already in progress.', {
        status: 'in-progress',
        orderId,
      });
      return;
  }
}

interface BankStatsView {
  admitted?: number;
  throttled?: number;
  charges?: number;
  ordersCharged?: number;
  ordersChargedMoreThanOnce?: number;
  extraCharges?: number;
  peakAdmittedPerSecond?: number;
  series?: Array<{ admitted?: number }>;
}

async function bankStats(bankUrl: string): Promise<BankStatsView | null> {
  try {
    const response = await fetch(`${bankUrl}/_stats`, { signal: AbortSignal.timeout(500) });
    return response.ok ? ((await response.json()) as BankStatsView) : null;
  } catch {
    return null;
  }
}
