import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import {
  createPaymentClient,
  ietfGateway,
  type Limiter,
  type PaymentClient,
  sqliteLedger,
} from '@floodgate/payment-retry';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { holdingBank } from '../test/holding-bank.js';
import { checkoutOrder, settleOrder } from './checkout.js';
import { ShopDb } from './db.js';
import { type FloodgatePaymentParts, floodgatePaymentParts } from './floodgate-payment-parts.js';
import { Meter } from './meter.js';
import type { MeterName } from './payments.js';

// A restart after SIGKILL: the new process brings its orders in line with the ledger before it listens,
// then recovers the payments in flight while it already takes checkouts.

let bank: BankSim;
let db: ShopDb;
let meter: Meter<MeterName>;
const closeAfter: Array<{ close(): Promise<void> }> = [];

beforeEach(async () => {
  bank = await startBankSim({ rate: 50 });
  db = new ShopDb(':memory:');
  meter = new Meter<MeterName>();
});

afterEach(async () => {
  for (const closable of closeAfter.splice(0).reverse()) await closable.close();
  db.close();
  await bank.close();
});

/** A shop process's way to the bank, on the shared database (each call: a new process). */
function startProcess(bankUrl = bank.url): FloodgatePaymentParts {
  const parts = floodgatePaymentParts({
    db,
    meter,
    bankUrl,
    bankRate: 50,
    onSettled: (orderId, outcome) => settleOrder(db, meter, orderId, outcome),
  });
  closeAfter.push(parts);
  return parts;
}

/**
 * The payment client of the process that gets killed, on the shop's ledger, without the shop around it:
 * whatever it settles never reaches the orders (the SIGKILL came first).
 */
function killedProcessClient(limiter?: Limiter): PaymentClient {
  const client = createPaymentClient({
    gateway: ietfGateway({ origin: bank.url }),
    ledger: sqliteLedger({ database: db.connection }),
    // The shop's merchant name: the restarted process finds the payments under it.
    merchant: 'group-buy-shop',
    ...(limiter ? { limiter } : {}),
    reconcile: false,
  });
  closeAfter.push(client);
  return client;
}

/**
 * The killed process pays: the bank charges, but the answer never comes back (its gate runs the request
 * and then holds on to the result), as if the SIGKILL came while the answer was on its way. Resolves once
 * the bank has charged.
 */
async function payAndDie(orderId: string, amount: number): Promise<void> {
  let charged!: () => void;
  const bankHasCharged = new Promise<void>((resolve) => (charged = resolve));
  const dying: Limiter = {
    run: (fn, options) =>
      new Promise((_resolve, reject) => {
        void fn(new AbortController().signal).finally(charged);
        options?.signal?.addEventListener('abort', () => reject(options.signal?.reason), { once: true });
      }),
  };
  killedProcessClient(dying)
    .pay({ orderId, amount, currency: 'EUR', payer: 'tok_ok' })
    .catch(() => {});
  await bankHasCharged;
}

const STILL_WAITING = Symbol('still waiting');

/**
 * What `promise` settled with before anything else could happen (its own microtasks only: no timer, no
 * socket), or {@link STILL_WAITING}. No clock is involved: a checkout that waits for the bank cannot
 * settle before the next turn of the event loop.
 */
function settledAtOnce<T>(promise: Promise<T>): Promise<T | typeof STILL_WAITING> {
  return Promise.race([
    promise,
    new Promise<typeof STILL_WAITING>((resolve) => setImmediate(resolve, STILL_WAITING)),
  ]);
}

describe('FloodgatePayments after a restart', () => {
  it('answers a checkout of an order being recovered at once, pending, and recovery charges it once', async () => {
    const order = db.joinDeal('d-kettle', 'ann', 'ord_killed');
    db.setOrderStatus(order.id, 'paying');
    await payAndDie(order.id, order.amount);
    expect(bank.stats().charges).toBe(1);

    // The restarted process's bank answers nothing until the test lets it: recovery stays in flight.
    const held = await holdingBank(bank.url, { holdQueries: true });
    closeAfter.push(held);
    const { payments } = startProcess(held.url);
    expect(await payments.syncOrders()).toBe(1);
    // Paid at the bank, unknown to the shop: pending until recovery asks the bank.
    expect(db.order(order.id)?.status).toBe('pending');
    expect(payments.recovering(order.id)).toBe(true);
    const recovery = payments.recover();
    await held.holding(1);

    // The shop listens while recovery waits for the bank: the student clicks "Pay" again. The answer is
    // the order's state, now, not the bank's answer whenever it comes.
    const context = { db, payments, meter, lockOrders: false };
    const answer = await settledAtOnce(checkoutOrder(context, 'ann', { orderId: order.id }));
    expect(answer).toMatchObject({
      status: 202,
      body: { status: 'pending', orderId: order.id },
      headers: { location: `/api/orders/${order.id}`, 'retry-after': '1' },
    });
    // Another card for it is refused at once too (a second tab): one payment per order.
    const otherCard = await settledAtOnce(
      checkoutOrder(context, 'ann', { orderId: order.id, source: 'tok_visa_other' }),
    );
    expect(otherCard).toMatchObject({ status: 409, body: { code: 'ERR_PAYMENT_MISMATCH' } });
    // Neither click sent anything: the one request at the bank is recovery's.
    expect(held.held).toBe(1);
    expect(held.arrived).toBe(0);
    expect(db.order(order.id)?.status).toBe('pending');

    held.release();
    expect(await recovery).toBe(1);
    expect(db.order(order.id)?.status).toBe('paid');
    expect(payments.recovering(order.id)).toBe(false);
    expect(await checkoutOrder(context, 'ann', { orderId: order.id })).toMatchObject({
      status: 200,
      body: { status: 'paid' },
    });
    const stats = bank.stats();
    expect(stats.charges).toBe(1);
    expect(stats.ordersCharged).toBe(1);
    expect(stats.extraCharges).toBe(0);
  });

  it('takes the next click of an order recovery found declined to the bank, as any declined order', async () => {
    const order = db.joinDeal('d-kettle', 'ann', 'ord_declined_in_flight');
    db.setOrderStatus(order.id, 'paying');
    // The killed process's payment: the card has no funds, and the answer never reached the shop.
    let declined!: () => void;
    const bankHasAnswered = new Promise<void>((resolve) => (declined = resolve));
    killedProcessClient({
      run: (fn, options) =>
        new Promise((_resolve, reject) => {
          void fn(new AbortController().signal).finally(declined);
          options?.signal?.addEventListener('abort', () => reject(options.signal?.reason), { once: true });
        }),
    })
      .pay({
        orderId: order.id,
        amount: order.amount,
        currency: 'EUR',
        payer: 'tok_decline_insufficient_funds',
      })
      .catch(() => {});
    await bankHasAnswered;

    const { payments } = startProcess();
    await payments.syncOrders();
    expect(payments.recovering(order.id)).toBe(true);
    expect(await payments.recover()).toBe(1);

    expect(db.order(order.id)?.status).toBe('declined');
    expect(payments.recovering(order.id)).toBe(false);
    // Not "pending" for ever: the same card is a new payment, declined again; another card pays.
    const context = { db, payments, meter, lockOrders: false };
    const again = { orderId: order.id, source: 'tok_decline_insufficient_funds' };
    expect((await checkoutOrder(context, 'ann', again)).status).toBe(402);
    expect((await checkoutOrder(context, 'ann', { orderId: order.id, source: 'tok_ok' })).status).toBe(201);
    expect(bank.stats().charges).toBe(1);
  });

  it('before listening, moves each order the killed process left paying to what the ledger says', async () => {
    const killed = killedProcessClient();
    const paid = db.joinDeal('d-kettle', 'ann', 'ord_paid');
    const declined = db.joinDeal('d-kettle', 'bob', 'ord_declined');
    const neverSent = db.joinDeal('d-kettle', 'cid', 'ord_never_sent');
    const pay = (orderId: string, payer: string) =>
      killed.pay({ orderId, amount: 1200, currency: 'EUR', payer });
    expect((await pay(paid.id, 'tok_ok')).status).toBe('paid');
    expect((await pay(declined.id, 'tok_decline_insufficient_funds')).status).toBe('declined');
    // Killed after the ledger recorded each answer, before the orders did (and before the ledger saw the
    // third order at all).
    for (const order of [paid, declined, neverSent]) db.setOrderStatus(order.id, 'paying');

    const restarted = startProcess();
    expect(await restarted.payments.syncOrders()).toBe(3);

    expect(db.order(paid.id)?.status).toBe('paid');
    expect(db.order(declined.id)?.status).toBe('declined');
    // Nothing was sent for it: the student pays again.
    expect(db.order(neverSent.id)?.status).toBe('created');
    expect(bank.stats().charges).toBe(1);
  });
});

describe('FloodgatePayments at checkout', () => {
  it('answers 409 when the order is already paid with another card, and does not leave it paying', async () => {
    // Paid at the bank with one card by a process whose answer never reached the order (a second tab, a
    // crash): the ledger holds the payment, the order still says `created`.
    const order = db.joinDeal('d-kettle', 'ann', 'ord_other_card');
    expect(
      (await killedProcessClient().pay({ orderId: order.id, amount: 1200, currency: 'EUR', payer: 'tok_ok' }))
        .status,
    ).toBe('paid');
    const { payments } = startProcess();
    const context = { db, payments, meter, lockOrders: false };

    const answer = await checkoutOrder(context, 'ann', { orderId: order.id, source: 'tok_visa_other' });

    expect(answer.status).toBe(409);
    expect(answer.body).toMatchObject({ status: 'in-progress', code: 'ERR_PAYMENT_MISMATCH' });
    expect(db.order(order.id)?.status).toBe('created');
    expect(bank.stats().charges).toBe(1);
  });
});
