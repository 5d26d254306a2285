import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import {
  createPaymentClient,
  ietfGateway,
  type Limiter,
  type PaymentClient,
  sqliteLedger,
} from '@floodgate/payment-retry';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkoutOrder, settleOrder } from './checkout.js';
import { ShopDb } from './db.js';
import { type FloodgatePaymentParts, floodgatePaymentParts } from './floodgate-shop.js';
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
function startProcess(): FloodgatePaymentParts {
  const parts = floodgatePaymentParts({
    db,
    meter,
    bankUrl: bank.url,
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

describe('FloodgatePayments after a restart', () => {
  it('shares the payment being recovered with a checkout of the same order: one charge', async () => {
    const order = db.joinDeal('d-kettle', 'ann', 'ord_killed');
    db.setOrderStatus(order.id, 'paying');
    await payAndDie(order.id, order.amount);
    expect(bank.stats().charges).toBe(1);

    const { payments } = startProcess();
    expect(await payments.syncOrders()).toBe(1);
    // Paid at the bank, unknown to the shop: pending until recovery asks the bank.
    expect(db.order(order.id)?.status).toBe('pending');

    // The shop listens while recovery runs: the student clicks "Pay" again at once.
    const context = { db, payments, meter, lockOrders: false };
    const [found, answer] = await Promise.all([
      payments.recover(),
      checkoutOrder(context, 'ann', { orderId: order.id }),
    ]);

    expect(found).toBe(1);
    expect(answer.status).toBe(201);
    expect(db.order(order.id)?.status).toBe('paid');
    const stats = bank.stats();
    expect(stats.charges).toBe(1);
    expect(stats.ordersCharged).toBe(1);
    expect(stats.extraCharges).toBe(0);
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
