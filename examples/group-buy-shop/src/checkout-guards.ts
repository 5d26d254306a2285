import type { IdempotencyOptions } from '@floodgate/http';
import { COALESCE_TIMEOUT_MS, isStoredCheckoutAnswer } from './checkout.js';
import type { Payments } from './payments.js';
import { studentOf } from './student.js';

/**
 * What stands in front of the floodgate shop's checkout, whatever serves its HTTP: the Express wiring
 * (`floodgate-shop.ts`, @floodgate/express) and the Fastify shop (`fastify-app.ts`, @floodgate/fastify)
 * take these same settings, in the same order: per-student rate limit, idempotency, then load shedding at
 * the class {@link checkoutPriority} gives each checkout.
 */

/**
 * The per-student rate limit: 10 checkouts per 10 s (a burst of 10, one more each second).
 * @param clock monotonic ms for the limiter's memory store (tests inject one). @default performance.now
 */
export function checkoutRateLimit(clock?: () => number) {
  return { name: 'checkout', limit: 10, windowMs: 10_000, key: studentOf, ...(clock ? { clock } : {}) };
}

/**
 * Idempotency per student: a repeated click waits for the first one's answer (`coalesce`), and only a paid
 * answer is stored and replayed (`isStoredCheckoutAnswer`).
 */
export const CHECKOUT_IDEMPOTENCY = {
  scope: studentOf,
  inFlight: 'coalesce',
  coalesceTimeoutMs: COALESCE_TIMEOUT_MS,
  shouldStore: isStoredCheckoutAnswer,
} as const satisfies IdempotencyOptions & { scope: typeof studentOf };

/** The load shedder's class for checkout: the last to be shed. */
export const CHECKOUT_PRIORITY = 'critical';

/**
 * The class of a checkout that does not wait for the bank: its order's payment is being recovered after a
 * restart (`Payments.recovering`), so the checkout answers at once from what the shop knows (202 pending,
 * or 409 for another card) and sends nothing. `CheckoutShedder` admits it without reading the gate:
 * shedding it would tell the student "busy, try again in N s" about a payment already under way, and
 * after a restart the gate's queue is full for seconds, so N was 4-5 s in the festival.
 */
export const RECOVERING_PRIORITY = 'recovering';

/**
 * The load shedding class of each checkout, from its (parsed) body: {@link RECOVERING_PRIORITY} for an
 * order whose payment is being recovered, {@link CHECKOUT_PRIORITY} for any other.
 *
 * @example
 * const priorityOf = checkoutPriority(payments);
 * app.post('/api/checkout', body, loadShedding({ shedder, priority: (req) => priorityOf(req.body) }), checkout);
 */
export function checkoutPriority(payments: Pick<Payments, 'recovering'>): (body: unknown) => string {
  const recovering = payments.recovering?.bind(payments);
  if (recovering === undefined) return () => CHECKOUT_PRIORITY;
  return function checkoutPriorityOf(body) {
    const orderId = (body as { orderId?: unknown } | null | undefined)?.orderId;
    return typeof orderId === 'string' && recovering(orderId) ? RECOVERING_PRIORITY : CHECKOUT_PRIORITY;
  };
}
