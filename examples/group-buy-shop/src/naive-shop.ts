import { NaivePayments } from './naive-payments.js';
import type { ShopWiring, WiringOptions } from './shops.js';

/** The naive shop: no limiter, no breaker, no idempotency; a failed request is sent again with a new key. */
export function naiveShop(context: WiringOptions): ShopWiring {
  const payments = new NaivePayments(context);
  return {
    payments,
    checkoutMiddleware: [],
    lockOrders: false,
    // A plain <form> POST: the browser sends nothing that ties two clicks together.
    pageSendsIdempotencyKey: false,
    close: () => payments.close(),
  };
}
