import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type HoldingBank, holdingBank } from '../test/holding-bank.js';
import { settleOrder } from './checkout.js';
import { ShopDb } from './db.js';
import { createFastifyShop } from './fastify-app.js';
import { type FloodgatePaymentParts, floodgatePaymentParts } from './floodgate-payment-parts.js';
import { Meter } from './meter.js';
import type { MeterName } from './payments.js';

let bank: BankSim;
let proxy: HoldingBank | undefined;
let db: ShopDb;
let meter: Meter<MeterName>;
let parts: FloodgatePaymentParts;
let app: FastifyInstance;

/** The Fastify shop paying at `bankUrl`. */
async function startShop(bankUrl: string) {
  db = new ShopDb(':memory:');
  meter = new Meter<MeterName>();
  parts = floodgatePaymentParts({
    db,
    meter,
    bankUrl,
    bankRate: 50,
    onSettled: (orderId, outcome) => settleOrder(db, meter, orderId, outcome),
  });
  app = await createFastifyShop({ db, meter, payments: parts.payments, shedder: parts.shedder });
}

beforeEach(async () => {
  bank = await startBankSim({ rate: 50 });
});

afterEach(async () => {
  await app.close();
  await parts.close();
  db.close();
  await proxy?.close();
  proxy = undefined;
  await bank.close();
});

const checkout = (orderId: string, key: string | undefined, student = 'ann', source?: string) =>
  app.inject({
    method: 'POST',
    url: '/api/checkout',
    headers: { 'x-student-id': student, ...(key ? { 'idempotency-key': `"${key}"` } : {}) },
    payload: { orderId, ...(source ? { source } : {}) },
  });

describe('the Fastify shop', () => {
  it('pays an order once, replays a repeated click and answers the order state', async () => {
    await startShop(bank.url);
    const joined = await app.inject({
      method: 'POST',
      url: '/api/deals/d-kettle/join',
      headers: { 'x-student-id': 'ann' },
    });
    expect(joined.statusCode).toBe(201);
    const orderId = joined.json().order.id as string;

    const first = await checkout(orderId, 'k-1');
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ status: 'paid', orderId });
    const again = await checkout(orderId, 'k-1');
    expect(again.statusCode).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(bank.stats()).toMatchObject({ charges: 1, ordersChargedMoreThanOnce: 0 });

    const order = await app.inject({
      method: 'GET',
      url: `/api/orders/${orderId}`,
      headers: { 'x-student-id': 'ann' },
    });
    expect(order.json()).toMatchObject({ status: 'paid' });
  });

  it('answers a re-click of a paid order from its key while it sheds new checkouts', async () => {
    await startShop(bank.url);
    const join = async (student: string) =>
      (
        await app.inject({
          method: 'POST',
          url: '/api/deals/d-kettle/join',
          headers: { 'x-student-id': student },
        })
      ).json().order.id as string;
    const orderId = await join('ann');
    expect((await checkout(orderId, 'k-1')).statusCode).toBe(201);

    // The bank is sick: the breaker opens and the shop sheds checkouts.
    parts.breaker.trip(60_000);
    const reclick = await checkout(orderId, 'k-1');
    expect(reclick.statusCode).toBe(201);
    expect(reclick.headers['idempotent-replayed']).toBe('true');

    const other = await join('bob');
    const shed = await checkout(other, 'k-2', 'bob');
    expect(shed.statusCode).toBe(503);
    expect(shed.headers['retry-after']).toBeDefined();
    expect(shed.json()).toMatchObject({ code: 'ERR_LOAD_SHED' });
    // The dashboard counts the shed checkout (and every checkout, shed or not), not the replayed re-click.
    expect(meter.total('shed')).toBe(1);
    expect(meter.total('checkouts')).toBe(3);
    // A shed checkout frees its key: the same click is taken once the bank is back.
    parts.breaker.reset();
    expect((await checkout(other, 'k-2', 'bob')).statusCode).toBe(201);
    expect(bank.stats()).toMatchObject({ charges: 2, extraCharges: 0 });
  });

  it('answers a double click on a declined card with the first click’s decline: the bank declines once', async () => {
    proxy = await holdingBank(bank.url);
    await startShop(proxy.url);
    const joined = await app.inject({
      method: 'POST',
      url: '/api/deals/d-kettle/join',
      headers: { 'x-student-id': 'ann' },
    });
    const orderId = joined.json().order.id as string;
    const first = checkout(orderId, 'k-1', 'ann', 'tok_decline_insufficient_funds');
    await expect.poll(() => proxy?.arrived).toBe(1);
    const second = checkout(orderId, 'k-1', 'ann', 'tok_decline_insufficient_funds');
    await expect.poll(() => meter.total('checkouts')).toBe(2);
    proxy.release();

    expect((await first).statusCode).toBe(402);
    expect((await second).statusCode).toBe(402);
    expect((await second).json()).toMatchObject({ status: 'declined', reason: 'insufficient_funds' });
    expect(bank.stats()).toMatchObject({ declines: 1, charges: 0 });
    expect((await checkout(orderId, 'k-2', 'ann', 'tok_ok')).statusCode).toBe(201);
    expect(bank.stats()).toMatchObject({ declines: 1, charges: 1 });
  });
});
