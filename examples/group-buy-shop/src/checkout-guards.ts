import type { IdempotencyOptions } from '@floodgate/http';
import { COALESCE_TIMEOUT_MS, isStoredCheckoutAnswer } from './checkout.js';
import { studentOf } from './student.js';

/**
 * What stands in front of the floodgate shop's checkout, whatever serves its HTTP: the Express wiring
 * (`floodgate-shop.ts`, @floodgate/express) and the Fastify shop (`fastify-app.ts`, @floodgate/fastify)
 * take these same settings, in the same order: per-student rate limit, idempotency, then load shedding at
 * {@link CHECKOUT_PRIORITY}.
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
