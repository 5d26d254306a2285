import { randomUUID } from 'node:crypto';
import type { OrderStatus, ShopDb } from './db.js';
import type { Meter } from './meter.js';
import type { MeterName, Payments, PayOutcome } from './payments.js';

/** An HTTP answer, independent of the framework that sends it (the Express and Fastify shops share it). */
export interface CheckoutAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: object;
  /** Send as `application/problem+json`. */
  readonly problem: boolean;
}

export interface CheckoutContext {
  readonly db: ShopDb;
  readonly payments: Payments;
  readonly meter: Meter<MeterName>;
  /** Hold the order while a checkout talks to the bank; a concurrent one gets 409. */
  readonly lockOrders: boolean;
}

function json(status: number, body: object, headers: Record<string, string> = {}): CheckoutAnswer {
  return { status, headers, body, problem: false };
}

function problem(
  status: number,
  title: string,
  detail: string,
  extra: object = {},
  headers: Record<string, string> = {},
): CheckoutAnswer {
  return { status, headers, body: { type: 'about:blank', title, status, detail, ...extra }, problem: true };
}

/**
 * `POST /api/checkout` for `student`: validates the body, answers a paid order at once, pays through the
 * shop's payments and records the outcome on the order.
 */
export async function checkoutOrder(
  context: CheckoutContext,
  student: string,
  rawBody: unknown,
): Promise<CheckoutAnswer> {
  const { db, payments, meter, lockOrders } = context;
  const body = (rawBody ?? {}) as { orderId?: unknown; source?: unknown };
  if (typeof body.orderId !== 'string' || (body.source !== undefined && typeof body.source !== 'string')) {
    return problem(400, 'Bad Request', 'Send JSON `{ "orderId": string, "source"?: string }`.');
  }
  const order = db.order(body.orderId);
  if (!order || order.studentId !== student) {
    return problem(404, 'Not Found', `You have no order \`${body.orderId}\``);
  }
  if (order.status === 'paid')
    return json(200, { status: 'paid', orderId: order.id, paymentId: order.paymentId });
  const before: OrderStatus = order.status;
  if (lockOrders) {
    if (!db.claimForPayment(order.id)) {
      const now = db.order(order.id);
      if (now?.status === 'paid')
        return json(200, { status: 'paid', orderId: order.id, paymentId: now.paymentId });
      return answerFor(order.id, { status: 'in-progress', retryAfterMs: 2000 });
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
  return answerFor(order.id, outcome);
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

/** The answer for a payment outcome: never "failed" while the bank may have charged. */
function answerFor(orderId: string, outcome: PayOutcome): CheckoutAnswer {
  const retryAfter = (ms: number) => ({ 'retry-after': String(Math.max(1, Math.ceil(ms / 1000))) });
  switch (outcome.status) {
    case 'paid':
      return json(201, { status: 'paid', orderId, paymentId: outcome.paymentId });
    case 'declined':
      return json(402, { status: 'declined', orderId, reason: outcome.reason });
    case 'pending':
      // The page polls the order instead of paying again.
      return json(
        202,
        { status: 'pending', orderId, detail: 'Payment pending: we will confirm it shortly.' },
        { location: `/api/orders/${orderId}` },
      );
    case 'failed':
      return problem(502, 'Bad Gateway', outcome.message, { status: 'failed', orderId });
    case 'busy':
      return problem(
        503,
        'Service Unavailable',
        'The shop is busy; nothing was charged. Try again shortly.',
        { status: 'busy', orderId },
        retryAfter(outcome.retryAfterMs),
      );
    case 'in-progress':
      return problem(
        409,
        'Conflict',
        'A payment for this order is already in progress.',
        { status: 'in-progress', orderId },
        retryAfter(outcome.retryAfterMs),
      );
  }
}
