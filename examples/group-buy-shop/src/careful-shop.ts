import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import { CarefulPayments } from './careful-payments.js';
import type { ShopWiring, WiringOptions } from './shops.js';

/** The careful shop: bottleneck, opossum, p-retry, stripe-node-style keys, express-rate-limit, order lock. */
export function carefulShop(context: WiringOptions): ShopWiring {
  const payments = new CarefulPayments(context);
  const perStudent = rateLimit({
    windowMs: 60_000,
    limit: 30,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    keyGenerator: (req) => req.get('x-student-id') ?? ipKeyGenerator(req.ip ?? ''),
  });
  return {
    payments,
    checkoutMiddleware: [perStudent],
    lockOrders: true,
    // None of these libraries asks the page for a key, and the shop's lock already refuses a second
    // concurrent checkout, so its page does not send one.
    pageSendsIdempotencyKey: false,
    close: () => payments.close(),
  };
}
