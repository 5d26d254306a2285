import type { RequestHandler } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import { CarefulPayments } from './careful-payments.js';
import type { ShopKind } from './config.js';
import { floodgateShop } from './floodgate-shop.js';
import { NaivePayments } from './naive-payments.js';
import type { Payments, PaymentsContext } from './payments.js';

/** Everything that makes one of the three shops different; the app around it is the same. */
export interface ShopWiring {
  readonly payments: Payments;
  readonly checkoutMiddleware: readonly RequestHandler[];
  readonly lockOrders: boolean;
  readonly pageSendsIdempotencyKey: boolean;
  /** Releases what the wiring holds beyond the payments (Redis connections, limiters). */
  close(): Promise<void>;
}

export interface WiringOptions extends PaymentsContext {
  readonly redisUrl?: string | undefined;
}

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

export type ShopFactory = (context: WiringOptions) => ShopWiring | Promise<ShopWiring>;

/** Builds the named shop. */
export async function buildShop(kind: ShopKind, context: WiringOptions): Promise<ShopWiring> {
  switch (kind) {
    case 'naive':
      return naiveShop(context);
    case 'careful':
      return carefulShop(context);
    case 'floodgate':
      return floodgateShop(context);
  }
}
