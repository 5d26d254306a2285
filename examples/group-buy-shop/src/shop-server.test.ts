import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { settleOrder } from './checkout.js';
import type { Framework } from './config.js';
import { ShopDb } from './db.js';
import { Meter } from './meter.js';
import type { MeterName } from './payments.js';
import { createShopServer, type ShopServer } from './shop-server.js';

let db: ShopDb | undefined;
let shop: ShopServer | undefined;
afterEach(async () => {
  if (shop?.server.listening) {
    shop.server.closeAllConnections();
    await new Promise<void>((resolve) => shop?.server.close(() => resolve()));
  }
  await shop?.close();
  shop = undefined;
  db?.close();
  db = undefined;
});

function context() {
  db = new ShopDb(':memory:');
  const meter = new Meter<MeterName>();
  const shopDb = db;
  return {
    db,
    meter,
    // Nothing is paid here: no request reaches the bank.
    bankUrl: 'http://127.0.0.1:1',
    bankRate: 50,
    onSettled: (orderId: string, outcome: Parameters<typeof settleOrder>[3]) =>
      settleOrder(shopDb, meter, orderId, outcome),
  };
}

describe('createShopServer', () => {
  for (const framework of ['express', 'fastify'] as const satisfies readonly Framework[]) {
    it(`serves the floodgate shop on ${framework} from a Node server the caller listens on`, async () => {
      shop = await createShopServer({ shop: 'floodgate', framework, instance: 'shop-7', ...context() });
      expect(shop.framework).toBe(framework);
      expect(shop.server.listening).toBe(false);
      shop.server.listen(0, '127.0.0.1');
      await new Promise((resolve) => shop?.server.once('listening', resolve));
      const { port } = shop.server.address() as AddressInfo;
      const response = await fetch(`http://127.0.0.1:${port}/api/config`);
      expect(await response.json()).toEqual({
        shop: 'floodgate',
        framework,
        instance: 'shop-7',
        sendsIdempotencyKey: true,
        bankRate: 50,
      });
    });
  }

  it('serves the naive and careful shops on Express, and refuses them on Fastify', async () => {
    shop = await createShopServer({ shop: 'careful', framework: 'express', ...context() });
    expect(shop.payments.name).toBe('careful');
    await shop.close();
    shop = undefined;
    db?.close();
    await expect(createShopServer({ shop: 'naive', framework: 'fastify', ...context() })).rejects.toThrow(
      new TypeError(
        'Expected `--shop` to be `floodgate` with `--framework fastify` (the Fastify app is the floodgate shop only), got `naive`',
      ),
    );
  });
});
