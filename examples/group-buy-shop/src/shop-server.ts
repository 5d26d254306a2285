import { createServer, type Server } from 'node:http';
import { checkFrameworkServes, type Framework, type ShopKind } from './config.js';
import type { Payments } from './payments.js';
import type { WiringOptions } from './shops.js';

/** What one shop process serves: which shop, on which framework, paying where. */
export interface ShopServerOptions extends WiringOptions {
  readonly shop: ShopKind;
  /** `fastify` serves the floodgate shop only (see `FRAMEWORKS`). */
  readonly framework: Framework;
  /**
   * A name for this process on the dashboard and in `GET /api/config`.
   * @default 'shop'
   */
  readonly instance?: string | undefined;
}

/** A shop on the framework asked for, behind a Node server that does not listen yet. */
export interface ShopServer {
  readonly framework: Framework;
  /** The shop's payments: `syncOrders()` before listening, `recover()` after. */
  readonly payments: Payments;
  /**
   * Node's server for either framework: the caller listens on it and sets its backlog and keep-alive, so
   * both frameworks meet a surge with the same socket settings.
   */
  readonly server: Server;
  /** Closes the app and what the shop holds (gate, breaker, Redis); not the server, not the database. */
  close(): Promise<void>;
}

/**
 * Builds the named shop on the named framework: the Express app (`app.ts`) around the shop's wiring
 * (`shops.ts`), or the Fastify app (`fastify-app.ts`) around the floodgate payment parts. Each framework
 * is imported only when asked for, as each shop is (see `buildShop`): a shop restarted after a crash
 * loads only what it serves with.
 *
 * @throws {TypeError} when `framework` cannot serve `shop` (Fastify and a shop other than floodgate).
 * @example
 * const shop = await createShopServer({ shop: 'floodgate', framework: 'fastify', db, meter, bankUrl, bankRate: 300 });
 * await shop.payments.syncOrders?.();
 * shop.server.listen(3000);
 */
export async function createShopServer(options: ShopServerOptions): Promise<ShopServer> {
  checkFrameworkServes(options.framework, options.shop);
  const { db, meter, bankUrl, instance } = options;
  if (options.framework === 'fastify') {
    const [{ createFastifyShop }, { floodgatePaymentParts, sharedBankBucket }] = await Promise.all([
      import('./fastify-app.js'),
      import('./floodgate-payment-parts.js'),
    ]);
    const store = options.redisUrl ? await sharedBankBucket(options.redisUrl) : undefined;
    const parts = floodgatePaymentParts({ ...options, store });
    try {
      const app = await createFastifyShop({
        db,
        meter,
        payments: parts.payments,
        shedder: parts.shedder,
        bankUrl,
        instance,
      });
      // Routes and plugins are loaded: `app.server` answers through them (Fastify's documented way to
      // hand its server to something else, e.g. supertest).
      await app.ready();
      return {
        framework: 'fastify',
        payments: parts.payments,
        server: app.server,
        async close() {
          await app.close();
          await parts.close();
        },
      };
    } catch (error) {
      await parts.close();
      throw error;
    }
  }
  const [{ createShopApp }, { appPartsOf, buildShop }] = await Promise.all([
    import('./app.js'),
    import('./shops.js'),
  ]);
  const wiring = await buildShop(options.shop, options);
  const app = createShopApp({ db, meter, ...appPartsOf(wiring), bankUrl, instance });
  return {
    framework: 'express',
    payments: wiring.payments,
    server: createServer(app),
    close: () => wiring.close(),
  };
}
