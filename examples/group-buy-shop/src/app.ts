import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import { fileURLToPath } from 'node:url';
import type { ErrorRequestHandler, Express, Request, RequestHandler, Response } from 'express';
import express from 'express';
import { COALESCE_TIMEOUT_MS, checkoutOrder } from './checkout.js';
import type { ShopDb } from './db.js';
import { UnknownDealError } from './db.js';
import { Meter } from './meter.js';
import type { MeterName, Payments } from './payments.js';
import { RecentDeclines } from './recent-declines.js';

export { settleOrder } from './checkout.js';

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

/**
 * Where the shop serves its live festival dashboard (`public/dashboard.html`). Exported so whoever
 * starts a shop (the festival, the demo) prints the page's real address.
 */
export const DASHBOARD_PATH = '/dashboard';

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

  // Remembered a little longer than the idempotency layer may hold a repeated click.
  const declines = new RecentDeclines({ holdMs: COALESCE_TIMEOUT_MS + 5000 });
  const checkoutContext = { db, payments, meter, lockOrders, declines };
  const checkout: RequestHandler = async function checkout(req, res) {
    const student = studentOf(req, res);
    if (!student) return;
    const answer = await checkoutOrder(checkoutContext, student, req.body, res.locals.arrivedAt as number);
    res.status(answer.status).set(answer.headers);
    if (answer.problem) res.type('application/problem+json');
    res.json(answer.body);
  };

  // First on the route, before any middleware can hold the request: when it arrived decides whether it
  // is a repeat of a click that was declined meanwhile (see RecentDeclines).
  const countCheckout: RequestHandler = function countCheckout(_req, res, next) {
    meter.mark('checkouts');
    res.locals.arrivedAt = declines.now();
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
  });

  // Pages last: the API's hot path never touches the file system.
  app.get(DASHBOARD_PATH, (_req, res) => res.sendFile('dashboard.html', { root: publicDir }));
  app.use(express.static(publicDir, { index: 'index.html' }));

  const onError: ErrorRequestHandler = (error, _req, res, _next) => {
    // The client's mistakes the body parser found (400 malformed, 413 too large, 415 an unsupported
    // charset or encoding) are answered as what they are; only the rest is the shop's fault.
    const status = (error as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return problem(res, status, STATUS_CODES[status] ?? 'Bad Request', (error as Error).message);
    }
    console.error(error);
    if (!res.headersSent) problem(res, 500, 'Internal Server Error', 'Something went wrong in the shop.');
  };
  app.use(onError);
  return app;
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

/**
 * The bank's per-second series as the dashboard draws the shop's own (`Meter.history`): the last `seconds`
 * complete seconds, oldest first, padded with zeros in front. The bank's series ends with the second
 * still filling, and a bank started less than a minute ago (every festival run's) has fewer entries: drawn
 * as they come, its line would be stretched over the whole chart, out of step with the shop's.
 */
function completeSeconds(series: ReadonlyArray<{ admitted?: number }>, seconds = 60): number[] {
  const complete = series.slice(0, -1).slice(-seconds);
  const out = new Array<number>(seconds - complete.length).fill(0);
  for (const second of complete) out.push(second.admitted ?? 0);
  return out;
}

async function bankStats(bankUrl: string): Promise<BankStatsView | null> {
  try {
    const response = await fetch(`${bankUrl}/_stats`, { signal: AbortSignal.timeout(500) });
    return response.ok ? ((await response.json()) as BankStatsView) : null;
  } catch {
    return null;
  }
}
