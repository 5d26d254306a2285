import { randomUUID } from 'node:crypto';
import { json, problem, quoted, type ShopAnswer } from './answer.js';
import type { OrderStatus, ShopDb } from './db.js';
import type { Meter } from './meter.js';
import type { MeterName, Payments, PayOutcome } from './payments.js';
import type { RecentDeclines } from './recent-declines.js';

export interface CheckoutContext {
  readonly db: ShopDb;
  readonly payments: Payments;
  readonly meter: Meter<MeterName>;
  /** Hold the order while a checkout talks to the bank; a concurrent one gets 409. */
  readonly lockOrders: boolean;
  /**
   * The declines checkouts answered lately: a checkout that arrived before its order was declined with
   * the same card gets that decline instead of paying again (see {@link RecentDeclines}).
   * @default undefined (every checkout pays)
   */
  readonly declines?: RecentDeclines;
}

/**
 * How long the floodgate shops' idempotency layer holds a repeated click while the first one is being
 * answered (`coalesceTimeoutMs`); a decline is remembered a little longer (see {@link RecentDeclines}).
 */
export const COALESCE_TIMEOUT_MS = 15_000;

/**
 * Which checkout answers the idempotency layer stores and replays for a key: a paid order only (201, or
 * 200 for one paid before). Everything else frees the key, so the page's next click with it is a new
 * checkout: after a 402 the student may pay with another card (a stored 402 would answer that 422, key
 * reused with another payload, and replay the decline to the same card); a 202 "pending" may be settled
 * as declined later (a stored one would say "pending" forever). Not storing them charges nothing twice:
 * the floodgate payment client runs one payment per order with a key derived from the order, and makes a new key
 * only after the bank declined. 4xx and 5xx stay retryable too (a 400 corrected, a 409 or 503 later).
 */
export function isStoredCheckoutAnswer(status: number): boolean {
  return status === 200 || status === 201;
}

/**
 * `POST /api/checkout` for `student`: validates the body, answers a paid order at once, pays through the
 * shop's payments and records the outcome on the order. `arrivedAt` (a reading of `context.declines`'s
 * clock when the request came in, before any middleware could hold it) lets a click made before the
 * order's decline be answered with that decline.
 */
export async function checkoutOrder(
  context: CheckoutContext,
  student: string,
  rawBody: unknown,
  arrivedAt?: number,
): Promise<ShopAnswer> {
  const { db, payments, meter, lockOrders, declines } = context;
  const body = (rawBody ?? {}) as { orderId?: unknown; source?: unknown };
  if (
    typeof body.orderId !== 'string' ||
    (body.source !== undefined && (typeof body.source !== 'string' || body.source === ''))
  ) {
    return problem(400, 'Bad Request', 'Send JSON `{ "orderId": string, "source"?: non-empty string }`.');
  }
  const order = db.order(body.orderId);
  if (!order || order.studentId !== student) {
    return problem(404, 'Not Found', `You have no order ${quoted(body.orderId)}`);
  }
  if (order.status === 'paid')
    return json(200, { status: 'paid', orderId: order.id, paymentId: order.paymentId });
  const source = typeof body.source === 'string' ? body.source : 'tok_ok';
  // A double click held by the idempotency layer while the first click was declined: the same click, so
  // the same answer. Paying it would be a new payment (the payment client makes a new key after a
  // decline) and a second decline of the card at the bank.
  const declinedFor =
    arrivedAt === undefined ? undefined : declines?.declinedSince(order.id, source, arrivedAt);
  if (declinedFor !== undefined) return answerFor(order.id, { status: 'declined', reason: declinedFor });
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
  let outcome: PayOutcome;
  try {
    outcome = await payments.pay({
      orderId: order.id,
      checkoutId: randomUUID(),
      studentId: student,
      amount: order.amount,
      currency: order.currency,
      source,
    });
  } catch (error) {
    // The payments recorded no outcome, so the order must not stay `paying` (no reconciler would ever
    // move it): it goes back to where this checkout found it. Only if it is still `paying`: a concurrent
    // checkout of the same order may have settled it meanwhile.
    if (db.order(order.id)?.status === 'paying') {
      db.setOrderStatus(order.id, before, {
        paymentId: order.paymentId ?? undefined,
        declineReason: order.declineReason ?? undefined,
      });
    }
    return answerForError(order.id, error);
  }
  applyOutcome(db, meter, order.id, outcome, before);
  if (outcome.status === 'declined') declines?.record(order.id, source, outcome.reason);
  return answerFor(order.id, outcome);
}

/**
 * The answer for a payment that rejected (see {@link Payments.pay}): 409 when another payment of the order
 * with other details is in flight or done, 400 when the payment refused what the student sent; anything
 * else is the shop's fault and goes to the framework's error handler (500, logged).
 */
function answerForError(orderId: string, error: unknown): ShopAnswer {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ERR_PAYMENT_MISMATCH') {
    return problem(
      409,
      'Conflict',
      'Another payment of this order, with other payment details, is in progress or done: wait for it.',
      { status: 'in-progress', orderId, code },
      { 'retry-after': '2' },
    );
  }
  if (code === 'ERR_INVALID_OPTION') {
    return problem(400, 'Bad Request', (error as Error).message, { orderId, code });
  }
  throw error;
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
      if (moveOrder(db, orderId, 'paid', { paymentId: outcome.paymentId })) meter.mark('paid');
      break;
    case 'declined':
      if (moveOrder(db, orderId, 'declined', { declineReason: outcome.reason })) meter.mark('declined');
      break;
    case 'pending':
      if (moveOrder(db, orderId, 'pending')) meter.mark('pending');
      break;
    case 'failed':
      if (moveOrder(db, orderId, 'failed')) meter.mark('failed');
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

/**
 * Records where the order's payment ended; true when that changed the order's status. The meter counts
 * these changes, not the reports of them: one payment can reach here twice (the floodgate payment client
 * reports every settlement through `onSettled`, and the checkout that waited for it records it too).
 */
function moveOrder(
  db: ShopDb,
  orderId: string,
  status: OrderStatus,
  details?: { paymentId?: string; declineReason?: string },
): boolean {
  const was = db.order(orderId)?.status;
  // A paid order stays paid (setOrderStatus refuses to move it).
  if (was === undefined || was === 'paid') return false;
  db.setOrderStatus(orderId, status, details);
  return was !== status;
}

/** Records a settlement that happened in the background (reconciler, recovery after a crash). */
export function settleOrder(db: ShopDb, meter: Meter<MeterName>, orderId: string, outcome: PayOutcome): void {
  applyOutcome(db, meter, orderId, outcome, 'pending');
}

/** The answer for a payment outcome: never "failed" while the bank may have charged. */
function answerFor(orderId: string, outcome: PayOutcome): ShopAnswer {
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
        outcome.retryAfterMs === undefined
          ? { location: `/api/orders/${orderId}` }
          : { location: `/api/orders/${orderId}`, ...retryAfter(outcome.retryAfterMs) },
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
