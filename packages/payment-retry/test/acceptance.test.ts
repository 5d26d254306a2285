import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import { tokenBucket } from '@floodgate/token-bucket';
import { afterEach, describe, expect, it } from 'vitest';
import { createPaymentClient, type PaymentClient } from '../src/client.js';
import { ietfGateway } from '../src/ietf-gateway.js';
import { MemoryLedger } from '../src/memory-ledger.js';
import {
  CLIENT_TIMEOUTS,
  FESTIVAL_BANK,
  FESTIVAL_FAULTS,
  festivalOrder,
  mapLimit,
  NaiveClient,
} from './scenario.js';

const ORDERS = 300;

let bank: BankSim | undefined;
let client: PaymentClient | undefined;
let naive: NaiveClient | undefined;

afterEach(async () => {
  await client?.close();
  await naive?.close();
  await bank?.close();
  client = bank = naive = undefined;
});

describe('against bank-sim with ~30% of attempts faulty', () => {
  it('charges no order twice, and every order ends paid or declined after reconciliation', async () => {
    bank = await startBankSim({ ...FESTIVAL_BANK, faults: FESTIVAL_FAULTS });
    const ledger = new MemoryLedger();
    client = createPaymentClient({
      gateway: ietfGateway({ origin: bank.url }),
      ledger,
      pool: { connections: 64 },
      // A budget this scenario cannot empty: on a quick machine all 300 first attempts land inside the
      // 300 ms outage, and the default budget (500 tokens) would rightly stop retrying there, leaving most
      // payments pending before any of them met the faults this test is about. The budget has its own tests.
      retry: {
        baseDelayMs: 5,
        maxDelayMs: 50,
        maxRetryAfterMs: 50,
        budget: tokenBucket({ capacity: 1_000_000, refillRate: 1 }),
      },
      timeouts: CLIENT_TIMEOUTS,
      reconcile: false,
    });
    const orders = Array.from({ length: ORDERS }, (_, i) => festivalOrder(i));
    const outcomes = await mapLimit(
      orders,
      64,
      (order) => client?.pay(order) as ReturnType<PaymentClient['pay']>,
    );

    // The faults really happened.
    const during = bank.stats();
    expect(during.droppedAfterCharge + during.slowAnswers).toBeGreaterThan(ORDERS * 0.04);
    expect(during.transientErrors + during.resets + during.outageRejections).toBeGreaterThan(ORDERS * 0.04);
    // Nothing is ever reported failed: an open outcome is pending.
    expect(outcomes.every((o) => ['paid', 'declined', 'pending'].includes(o.status))).toBe(true);
    expect(outcomes.filter((o) => o.status === 'declined').every((o) => o.orderId.match(/9$/))).toBe(true);

    // The bank heals; reconciliation finishes the pending ones with their original keys.
    bank.setFaults({
      errorRate: 0,
      dropAfterChargeRate: 0,
      slowAfterChargeRate: 0,
      resetRate: 0,
      refuseConnectionRate: 0,
      outages: [],
    });
    for (let pass = 0; pass < 20 && client.pendingCount > 0; pass++) await client.reconcileNow();
    expect(client.pendingCount).toBe(0);
    expect(await ledger.unresolved()).toEqual([]);

    const stats = bank.stats();
    expect(stats.ordersChargedMoreThanOnce).toBe(0);
    expect(stats.extraCharges).toBe(0);
    const records = await Promise.all(orders.map((o) => client?.lookup(o.orderId)));
    const paid = records.filter((r) => r?.state === 'paid').length;
    const declined = records.filter((r) => r?.state === 'declined').length;
    expect(paid + declined).toBe(ORDERS);
    expect(declined).toBe(ORDERS / 10);
    expect(stats.ordersCharged).toBe(paid);
  });

  it('a naive client (fresh key per retry) double-charges in the same scenario', async () => {
    bank = await startBankSim({ ...FESTIVAL_BANK, faults: FESTIVAL_FAULTS });
    naive = new NaiveClient(bank.url);
    const orders = Array.from({ length: ORDERS }, (_, i) => festivalOrder(i));
    await mapLimit(orders, 64, (order) => naive?.pay(order) as Promise<unknown>);
    expect(bank.stats().ordersChargedMoreThanOnce).toBeGreaterThan(0);
  });
});
