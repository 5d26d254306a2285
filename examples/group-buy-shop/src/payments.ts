import type { ShopDb } from './db.js';
import type { Meter } from './meter.js';

/** What a student asks the shop to pay. `source` is the card token their browser got from the bank. */
export interface PaymentIntent {
  readonly orderId: string;
  /** Identifies the shop request (one click of "Pay") this payment is made for. */
  readonly checkoutId: string;
  readonly studentId: string;
  readonly amount: number;
  readonly currency: string;
  readonly source: string;
}

/**
 * How a checkout ended, as the shop will tell the student.
 * - `paid`, `declined`: the bank's definitive answer.
 * - `pending`: the bank may have charged and we do not know yet; reconciliation goes on. `retryAfterMs`,
 *   when given, is how soon the page may ask about the order again (the 202's `Retry-After`).
 * - `failed`: the shop gave up and tells the student to try again (what today's shops say even when the
 *   bank did charge: the root of "I paid seven times").
 * - `busy`: turned away before anything was sent; nothing can have been charged. (None of the three
 *   shops' payments answers it today: the floodgate payment client ends a local refusal of its gate or
 *   breaker as `pending` and retries it, and the floodgate shop sheds load in front of the checkout with a
 *   503 of its own.)
 * - `in-progress`: another checkout of the same order holds it.
 */
export type PayOutcome =
  | { readonly status: 'paid'; readonly paymentId: string }
  | { readonly status: 'declined'; readonly reason: string }
  | { readonly status: 'pending'; readonly retryAfterMs?: number }
  | { readonly status: 'failed'; readonly message: string }
  | { readonly status: 'busy'; readonly retryAfterMs: number }
  | { readonly status: 'in-progress'; readonly retryAfterMs: number };

/** What the dashboard shows about the way to the bank. */
export interface PaymentsStatus {
  readonly breaker: 'closed' | 'open' | 'half-open' | 'none';
  /** Payments waiting for their turn at the bank. */
  readonly queued: number;
  /** Requests at the bank right now. */
  readonly active: number;
  /** The flow limit the shop believes the bank has, per second; 0 when it does not limit itself. */
  readonly bankRate: number;
}

/** The one checkout interface the three shops (naive, careful, floodgate) implement. */
export interface Payments {
  readonly name: 'naive' | 'careful' | 'floodgate';
  /**
   * Pays for the order. An outcome is recorded on the order; a rejection means the payments recorded
   * nothing and the checkout puts the order back where it was.
   *
   * @throws an error with `code: 'ERR_PAYMENT_MISMATCH'` when another payment of the order, with another
   * amount or source, is in flight or paid (nothing was sent); `code: 'ERR_INVALID_OPTION'` when the
   * intent was refused as invalid (nothing was sent); anything else is a bug.
   */
  pay(intent: PaymentIntent, signal?: AbortSignal): Promise<PayOutcome>;
  status(): PaymentsStatus;
  /**
   * After a restart, before the shop takes checkouts: brings the orders a crash left `paying` or `pending`
   * in line with what the payments recorded (reads only; nothing is sent). Resolves with how many it
   * looked at.
   */
  syncOrders?(): Promise<number>;
  /**
   * After a restart, while the shop already takes checkouts: settles what a crash left unknown (a
   * checkout of an order being recovered must never start another payment, see `recovering`). Resolves
   * with how many payments it looked at.
   */
  recover?(): Promise<number>;
  /**
   * Whether the order's payment is being recovered after a restart: the killed process left it in flight
   * and the bank has not settled it yet. A checkout of such an order does not wait for the bank: it is
   * answered `pending` at once (another card: rejected at once with `ERR_PAYMENT_MISMATCH`), so the load
   * shedding in front of checkout lets it through (`checkoutPriority` in `checkout-guards.ts`).
   */
  recovering?(orderId: string): boolean;
  close(): Promise<void>;
}

/**
 * The naive and careful shops' {@link Payments.syncOrders}: an order the last process left `paying` had a
 * checkout at the bank whose answer nobody will see. These shops keep nothing to settle it with, and tell
 * the student "failed, try again" about any payment whose outcome they do not know: the order says so
 * too, and is payable again (left `paying`, the careful shop's order lock refused its every checkout).
 * @returns how many orders it looked at.
 */
export function failOrdersLeftPaying(db: ShopDb): number {
  const orders = db.orders('paying');
  for (const order of orders) db.setOrderStatus(order.id, 'failed');
  return orders.length;
}

export type MeterName = 'checkouts' | 'bank' | 'paid' | 'declined' | 'pending' | 'failed' | 'shed';

/** What every payments implementation is built with. */
export interface PaymentsContext {
  readonly db: ShopDb;
  readonly meter: Meter<MeterName>;
  /** The bank gateway's base URL, e.g. `http://127.0.0.1:43121`. */
  readonly bankUrl: string;
  /** The bank's flow limit, payments per second: read from the shop's one config place. */
  readonly bankRate: number;
  /** Called when a payment that was `pending` is settled in the background (reconciler, recovery). */
  readonly onSettled?: (orderId: string, outcome: PayOutcome) => void;
}

/** The bank's answer to one POST /payments, or how the request failed. */
export interface BankAnswer {
  readonly statusCode: number;
  readonly body: { status?: string; id?: string; reason?: string } | undefined;
  readonly retryAfterMs: number | undefined;
}

/** Sends one payment to the bank with the given idempotency key, as a plain fetch. */
export async function postPayment(
  bankUrl: string,
  idempotencyKey: string,
  intent: PaymentIntent,
  signal?: AbortSignal,
): Promise<BankAnswer> {
  const response = await fetch(`${bankUrl}/payments`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': `"${idempotencyKey}"` },
    body: JSON.stringify({
      orderId: intent.orderId,
      amount: intent.amount,
      currency: intent.currency,
      source: intent.source,
    }),
    ...(signal ? { signal } : {}),
  });
  const text = await response.text();
  let body: BankAnswer['body'];
  try {
    body = text ? (JSON.parse(text) as BankAnswer['body']) : undefined;
  } catch {
    body = undefined;
  }
  const retryAfter = Number(response.headers.get('retry-after'));
  return {
    statusCode: response.status,
    body,
    retryAfterMs: Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter * 1000 : undefined,
  };
}
