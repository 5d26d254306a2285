import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import { afterEach, describe, expect, it } from 'vitest';
import { type HoldingBank, holdingBank } from '../test/holding-bank.js';
import { createShopApp, settleOrder } from './app.js';
import { isStoredCheckoutAnswer } from './checkout.js';
import { ShopDb } from './db.js';
import { type FloodgatePaymentParts, floodgatePaymentParts } from './floodgate-payment-parts.js';
import { floodgateWiring } from './floodgate-shop.js';
import { Meter } from './meter.js';
import type { MeterName, Payments, PayOutcome } from './payments.js';
import { appPartsOf, type ShopWiring } from './shops.js';

// The floodgate shop as the festival runs it (Express, its checkout middleware, its payment client and
// ledger) against a real bank-sim; the page's way of clicking "Pay": one Idempotency-Key per checkout.

let bank: BankSim | undefined;
let proxy: HoldingBank | undefined;
let db: ShopDb | undefined;
let meter: Meter<MeterName>;
/** The dashboard's wall clock, moved by the tests. */
let wallClock = 1_700_000_000_000;
let parts: FloodgatePaymentParts;
let wiring: ShopWiring | undefined;
let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  await wiring?.close();
  wiring = undefined;
  db?.close();
  db = undefined;
  await proxy?.close();
  proxy = undefined;
  await bank?.close();
  bank = undefined;
});

/** The floodgate shop; `payments` replaces its payment client (the checkout middleware stays its own). */
async function start(bankUrl: string, payments?: Payments) {
  const shopDb = new ShopDb(':memory:');
  db = shopDb;
  meter = new Meter<MeterName>(120, () => wallClock);
  parts = floodgatePaymentParts({
    db: shopDb,
    meter,
    bankUrl,
    bankRate: 50,
    onSettled: (orderId, outcome) => settleOrder(shopDb, meter, orderId, outcome),
  });
  wiring = floodgateWiring(parts);
  const app = createShopApp({ db: shopDb, meter, ...appPartsOf(wiring), ...(payments ? { payments } : {}) });
  server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server?.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const join = async (deal = 'd-kettle') => {
    const response = await fetch(`${base}/api/deals/${deal}/join`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-student-id': 'ann' },
      body: '{}',
    });
    return ((await response.json()) as { order: { id: string } }).order.id;
  };
  const pay = async (orderId: string, key: string, source = 'tok_ok') => {
    const response = await fetch(`${base}/api/checkout`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-student-id': 'ann', 'idempotency-key': `"${key}"` },
      body: JSON.stringify({ orderId, source }),
    });
    return {
      status: response.status,
      replayed: response.headers.get('idempotent-replayed') === 'true',
      body: (await response.json()) as { status?: string },
    };
  };
  const stats = async () =>
    (await (await fetch(`${base}/api/stats`)).json()) as { perSecond: Record<string, number> };
  return { join, pay, stats, db: shopDb };
}

describe('the floodgate shop', () => {
  it('stores and replays only paid answers', () => {
    expect([200, 201].every(isStoredCheckoutAnswer)).toBe(true);
    expect([202, 400, 402, 404, 409, 422, 429, 500, 502, 503].some(isStoredCheckoutAnswer)).toBe(false);
  });

  it('after a decline, pays with another card under the same key: paid, charged once', async () => {
    bank = await startBankSim({ rate: 50 });
    const { join, pay, db } = await start(bank.url);
    const orderId = await join();
    const declined = await pay(orderId, 'k-1', 'tok_decline_insufficient_funds');
    expect(declined.status).toBe(402);
    // The same card again is asked again (a stored 402 would be replayed).
    const again = await pay(orderId, 'k-1', 'tok_decline_insufficient_funds');
    expect(again).toMatchObject({ status: 402, replayed: false });
    // Another card with the page's key (a stored 402 would make this 422: key reused, other payload).
    const paid = await pay(orderId, 'k-1', 'tok_ok');
    expect(paid.status).toBe(201);
    expect(db.order(orderId)?.status).toBe('paid');
    // The paid answer is the one that is kept.
    expect(await pay(orderId, 'k-1', 'tok_ok')).toMatchObject({ status: 201, replayed: true });
    expect(bank.stats()).toMatchObject({ charges: 1, ordersCharged: 1, extraCharges: 0, declines: 2 });
  });

  it('after a decline, pays with another card under a new key (the page’s next checkout): charged once', async () => {
    bank = await startBankSim({ rate: 50 });
    const { join, pay } = await start(bank.url);
    const orderId = await join();
    expect((await pay(orderId, 'k-1', 'tok_decline_insufficient_funds')).status).toBe(402);
    expect((await pay(orderId, 'k-2', 'tok_ok')).status).toBe(201);
    expect(bank.stats()).toMatchObject({ charges: 1, extraCharges: 0 });
  });

  it('answers a double click on a declined card with the first click’s decline: the bank declines once', async () => {
    bank = await startBankSim({ rate: 50 });
    proxy = await holdingBank(bank.url);
    const { join, pay, db } = await start(proxy.url);
    const orderId = await join();
    // The first click is at the bank; the second, with the page's same key, is held by the idempotency
    // layer until the first is answered.
    const first = pay(orderId, 'k-1', 'tok_decline_insufficient_funds');
    await expect.poll(() => proxy?.arrived).toBe(1);
    const second = pay(orderId, 'k-1', 'tok_decline_insufficient_funds');
    await expect.poll(() => meter.total('checkouts')).toBe(2);
    proxy.release();

    expect(await first).toMatchObject({ status: 402, body: { status: 'declined' } });
    expect(await second).toMatchObject({ status: 402, replayed: false, body: { status: 'declined' } });
    expect(bank.stats()).toMatchObject({ declines: 1, charges: 0 });
    expect(db.order(orderId)).toMatchObject({ status: 'declined', declineReason: 'insufficient_funds' });
    expect(meter.total('declined')).toBe(1);
    // The page's next checkout (a new key) with another card pays.
    expect((await pay(orderId, 'k-2', 'tok_ok')).status).toBe(201);
    expect(bank.stats()).toMatchObject({ declines: 1, charges: 1 });
  });

  it('counts a checkout it sheds as shed on the dashboard, and not a re-click answered from its key', async () => {
    bank = await startBankSim({ rate: 50 });
    const { join, pay, stats } = await start(bank.url);
    const paid = await join('d-kettle');
    expect((await pay(paid, 'k-1')).status).toBe(201);
    const other = await join('d-textbook');

    // The bank is sick: the breaker opens and the shop turns checkouts away.
    parts.breaker.trip(60_000);
    const shed = await pay(other, 'k-2');
    expect(shed).toMatchObject({ status: 503, body: { code: 'ERR_LOAD_SHED' } });
    expect((await pay(paid, 'k-1')).replayed).toBe(true);

    expect(meter.total('shed')).toBe(1);
    expect(meter.total('checkouts')).toBe(3);
    wallClock += 1000;
    expect((await stats()).perSecond).toMatchObject({ shed: 1, checkouts: 3 });
  });

  it('counts each paid and declined order once on the dashboard', async () => {
    bank = await startBankSim({ rate: 50 });
    const { join, pay } = await start(bank.url);
    expect((await pay(await join('d-kettle'), 'k-1')).status).toBe(201);
    expect((await pay(await join('d-textbook'), 'k-2', 'tok_decline_insufficient_funds')).status).toBe(402);
    expect(bank.stats()).toMatchObject({ charges: 1, declines: 1 });
    expect(meter.total('paid')).toBe(1);
    expect(meter.total('declined')).toBe(1);
  });

  it('does not replay "pending" once the payment settled: the next click is checked out again', async () => {
    // The first payment ends pending; the reconciler later learns the bank declined it.
    const outcomes: PayOutcome[] = [{ status: 'pending' }, { status: 'paid', paymentId: 'pay_2' }];
    let calls = 0;
    const payments: Payments = {
      name: 'floodgate',
      pay: async () => {
        calls++;
        return outcomes.shift() ?? { status: 'failed', message: 'no outcome scripted' };
      },
      status: () => ({ breaker: 'closed', queued: 0, active: 0, bankRate: 50 }),
      close: async () => {},
    };
    const { join, pay, db } = await start('http://127.0.0.1:9', payments);
    const orderId = await join();
    expect((await pay(orderId, 'k-1')).status).toBe(202);
    settleOrder(db, meter, orderId, { status: 'declined', reason: 'insufficient_funds' });
    const next = await pay(orderId, 'k-1');
    expect(next).toMatchObject({ status: 201, replayed: false });
    expect(calls).toBe(2);
  });
});
