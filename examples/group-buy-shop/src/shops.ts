import type { RequestHandler } from 'express';
import type { ShopAppOptions } from './app.js';
import type { ShopKind } from './config.js';
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

/** What of a shop's wiring the Express app takes: everything but `close`. */
export function appPartsOf(
  wiring: ShopWiring,
): Pick<ShopAppOptions, 'payments' | 'checkoutMiddleware' | 'lockOrders' | 'pageSendsIdempotencyKey'> {
  const { payments, checkoutMiddleware, lockOrders, pageSendsIdempotencyKey } = wiring;
  return { payments, checkoutMiddleware, lockOrders, pageSendsIdempotencyKey };
}

export interface WiringOptions extends PaymentsContext {
  readonly redisUrl?: string | undefined;
}

export type ShopFactory = (context: WiringOptions) => ShopWiring | Promise<ShopWiring>;

/**
 * Builds the named shop (`naive-shop.ts`, `careful-shop.ts`, `floodgate-shop.ts`). Each is imported only
 * when asked for, so a shop process loads its own libraries and not the other two shops': run from
 * TypeScript through tsx, every module loaded is time a shop restarted after a crash is not serving.
 */
export async function buildShop(kind: ShopKind, context: WiringOptions): Promise<ShopWiring> {
  switch (kind) {
    case 'naive':
      return (await import('./naive-shop.js')).naiveShop(context);
    case 'careful':
      return (await import('./careful-shop.js')).carefulShop(context);
    case 'floodgate':
      return (await import('./floodgate-shop.js')).floodgateShop(context);
  }
}
