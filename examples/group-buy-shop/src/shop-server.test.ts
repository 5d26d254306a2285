import type { AddressInfo } from 'node:net';
import { startBankSim } from '@floodgate/bank-sim';
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

function context(bankUrl = 'http://127.0.0.1:1') {
  db = new ShopDb(':memory:');
  const meter = new Meter<MeterName>();
  const shopDb = db;
  return {
    db,
    meter,
    // Nothing is paid here unless a test gives a bank: no request reaches one.
    bankUrl,
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

  for (const kind of ['naive', 'careful'] as const) {
    it(`restarts the ${kind} shop with the orders the last process left paying payable again`, async () => {
      const bank = await startBankSim({ rate: 50, latencyMs: 0 });
      try {
        const ctx = context(bank.url);
        const order = ctx.db.joinDeal('d-kettle', 'ann', 'ord_1');
        // The last process was stopped (SIGTERM, SIGKILL) while this order's checkout was at the bank.
        expect(ctx.db.claimForPayment(order.id)).toBe(true);
        shop = await createShopServer({ shop: kind, framework: 'express', ...ctx });
        // As main.ts does before it listens: nothing of the last process is known; these shops say
        // "failed, try again" about a payment whose outcome they do not know.
        expect(await shop.payments.syncOrders?.()).toBe(1);
        expect(ctx.db.order(order.id)?.status).toBe('failed');

        shop.server.listen(0, '127.0.0.1');
        await new Promise((resolve) => shop?.server.once('listening', resolve));
        const { port } = shop.server.address() as AddressInfo;
        const paid = await fetch(`http://127.0.0.1:${port}/api/checkout`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-student-id': 'ann' },
          body: JSON.stringify({ orderId: order.id }),
        });
        // The careful shop's order lock answered 409 "already in progress" to every checkout, for ever.
        expect(paid.status).toBe(201);
        expect(ctx.db.order(order.id)?.status).toBe('paid');
        expect(bank.stats().charges).toBe(1);
      } finally {
        await bank.close();
      }
    });
  }
});
