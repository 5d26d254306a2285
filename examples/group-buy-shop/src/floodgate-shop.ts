import { idempotency, loadShedding, rateLimit } from '@floodgate/express';
import { CHECKOUT_IDEMPOTENCY, checkoutPriority, checkoutRateLimit } from './checkout-guards.js';
import {
  type FloodgatePaymentParts,
  floodgatePaymentParts,
  sharedBankBucket,
} from './floodgate-payment-parts.js';
import type { Payments } from './payments.js';
import type { ShopWiring, WiringOptions } from './shops.js';

/**
 * The floodgate shop: per-student rate limit, idempotent checkout (the page sends one key per order),
 * load shedding in front of a gate set to the bank's flow limit, a breaker, and a payment client whose
 * ledger lives in the shop's database. With `redisUrl`, every shop process takes the bank's tokens from
 * one Redis bucket, so the limit holds for the fleet.
 */
export async function floodgateShop(context: WiringOptions): Promise<ShopWiring> {
  const store = context.redisUrl ? await sharedBankBucket(context.redisUrl) : undefined;
  return floodgateWiring(floodgatePaymentParts({ ...context, store }));
}

/** What {@link floodgateWiring} needs of the parts: the payments (a test's own may stand in), the shedder. */
export type FloodgateCheckoutParts = Pick<FloodgatePaymentParts, 'shedder' | 'close'> & {
  readonly payments: Payments;
};

export interface FloodgateWiringOptions {
  /**
   * Monotonic clock in ms for the per-student rate limit (tests inject one).
   * @default performance.now
   */
  readonly clock?: () => number;
}

/**
 * The floodgate shop's checkout around its way to the bank (see {@link floodgateShop}); closing the
 * wiring closes the parts. Tests build it from parts they keep, to reach the gate or the breaker.
 */
export function floodgateWiring(
  parts: FloodgateCheckoutParts,
  options: FloodgateWiringOptions = {},
): ShopWiring {
  const { payments, shedder, close } = parts;
  const perStudent = rateLimit(checkoutRateLimit(options.clock));
  const idempotent = idempotency(CHECKOUT_IDEMPOTENCY);
  const priorityOf = checkoutPriority(payments);
  const shed = loadShedding({ shedder, priority: (req) => priorityOf(req.body) });

  return {
    payments,
    // Idempotency before shedding: a re-click of an order already paid (or being paid) is answered from
    // its key, not refused as "busy, nothing was charged". fastify-app.ts takes the same guards
    // (checkout-guards.ts) in the same order.
    checkoutMiddleware: [perStudent, idempotent, shed],
    lockOrders: false,
    // The page makes one key per order and sends it with every click of "Pay".
    pageSendsIdempotencyKey: true,
    async close() {
      await perStudent.close();
      await idempotent.close();
      await close();
    },
  };
}
