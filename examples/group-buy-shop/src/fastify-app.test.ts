import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { settleOrder } from './checkout.js';
import { ShopDb } from './db.js';
import { createFastifyShop } from './fastify-app.js';
import { type FloodgatePaymentParts, floodgatePaymentParts } from './floodgate-shop.js';
import { Meter } from './meter.js';
import type { MeterName } from './payments.js';

let bank: BankSim;
let db: ShopDb;
let parts: FloodgatePaymentParts;
let app: FastifyInstance;

beforeEach(async () => {
  bank = await startBankSim({ rate: 50 });
  db = new ShopDb(':memory:');
  const meter = new Meter<MeterName>();
  parts = floodgatePaymentParts({
    db,
    meter,
    bankUrl: bank.url,
    bankRate: 50,
    onSettled: (orderId, outcome) => settleOrder(db, meter, orderId, outcome),
  });
  app = await createFastifyShop({ db, meter, parts });
});

afterEach(async () => {
  await app.close();
  await parts.close();
  db.close();
  await bank.close();
});

const checkout = (orderId: string, key: string | undefined, student = 'ann') =>
  app.inject({
    method: 'POST',
    url: '/api/checkout',
    headers: { 'x-student-id': student, ...(key ? { 'idempotency-key': `"${key}"` } : {}) },
    payload: { orderId },
  });

describe('the Fastify shop', () => {
  it('pays an order once, replays a repeated click and answers the order state', async () => {
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

    const order = await app.inject({ method: 'GET', url: `/api/orders/${orderId}` });
    expect(order.json()).toMatchObject({ status: 'paid' });
  });

  it('answers a re-click of a paid order from its key while it sheds new checkouts', async () => {
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
    // A shed checkout frees its key: the same click is taken once the bank is back.
    parts.breaker.reset();
    expect((await checkout(other, 'k-2', 'bob')).statusCode).toBe(201);
    expect(bank.stats()).toMatchObject({ charges: 2, extraCharges: 0 });
  });

  it('requires an idempotency key on checkout and rate-limits per student', async () => {
    const joined = await app.inject({
      method: 'POST',
      url: '/api/deals/d-kettle/join',
      headers: { 'x-student-id': 'bob' },
    });
    const orderId = joined.json().order.id as string;
    const noKey = await checkout(orderId, undefined, 'bob');
    expect(noKey.statusCode).toBe(400);
    expect(noKey.headers['content-type']).toContain('application/problem+json');
    const answers = [];
    for (let i = 0; i < 11; i++) answers.push((await checkout('ord_nope', `k-${i}`, 'bob')).statusCode);
    expect(answers.slice(0, 9).every((status) => status === 404)).toBe(true);
    expect(answers.at(-1)).toBe(429);
  });
});
