// Question: does every payment get charged exactly once at festival scale? The acceptance run of
// @floodgate/payment-retry: 10,000 payments against bank-sim with ~30% of attempts hit by faults
// (charged-then-dropped answers, answers slower than the client's timeout, 503s, resets, refused
// connections, a 503 outage window with Retry-After), then reconciliation once the bank heals. The
// bank's own counters must show zero orders charged twice and every order paid or declined. The naive
// client (a fresh key per retry) runs the same scenario on a fresh bank for comparison.
//
//   cd packages/bank-sim && npx tsup && cd ../token-bucket && npx tsup && cd ../payment-retry && npx tsup
//   cd ../../bench && node --expose-gc --import tsx payment-retry-festival.bench.ts
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Faults, startBankSim } from '@floodgate/bank-sim';
import { createPaymentClient, ietfGateway, sqliteLedger } from '@floodgate/payment-retry';
import { Pool } from 'undici';

const PAYMENTS = Number(process.env.PAYMENTS ?? 10_000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 64);
const faults: Partial<Faults> = {
  errorRate: 0.08,
  errorStatus: 503,
  dropAfterChargeRate: 0.08,
  slowAfterChargeRate: 0.06,
  slowAnswerMs: 3000,
  resetRate: 0.06,
  refuseConnectionRate: 0.04,
  outages: [{ startMs: 2000, durationMs: 2000 }],
  outageMode: 'status',
};
const healthy: Partial<Faults> = {
  errorRate: 0,
  dropAfterChargeRate: 0,
  slowAfterChargeRate: 0,
  resetRate: 0,
  refuseConnectionRate: 0,
  outages: [],
};
const bankOptions = {
  rate: Number.POSITIVE_INFINITY,
  latencyMs: 2,
  latencyJitterMs: 450,
  tellers: 512,
  seed: 7,
};
const order = (i: number) => ({
  orderId: `order-${i}`,
  amount: 1000 + (i % 50),
  currency: 'EUR',
  payer: i % 10 === 9 ? 'tok_decline_insufficient_funds' : 'tok_ok',
});

async function each(fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < PAYMENTS) await fn(next++);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

// --- the payment client, SQLite ledger -------------------------------------------------------------
const dir = mkdtempSync(join(tmpdir(), 'payment-retry-festival-'));
const bank = await startBankSim({ ...bankOptions, faults });
const ledger = sqliteLedger({ path: join(dir, 'festival.db') });
const client = createPaymentClient({
  gateway: ietfGateway({ origin: bank.url }),
  ledger,
  retry: { baseDelayMs: 5, maxDelayMs: 200, maxRetryAfterMs: 1000 },
  timeouts: { connectMs: 1000, headersMs: 400, bodyMs: 400, paymentMs: 5000 },
  reconcile: false,
});
const counts = { paid: 0, declined: 0, pending: 0 };
const t0 = performance.now();
await each(async (i) => {
  counts[(await client.pay(order(i))).status]++;
});
const payMs = performance.now() - t0;
const { series: _s, ...during } = bank.stats();
bank.setFaults(healthy);
let passes = 0;
const t1 = performance.now();
while (client.pendingCount > 0 && passes < 50) {
  await client.reconcileNow();
  passes++;
}
const reconcileMs = performance.now() - t1;
const unresolved = ledger.unresolved().length;
let paid = 0;
let declined = 0;
for (let i = 0; i < PAYMENTS; i++) {
  const state = ledger.latest(JSON.stringify(['default', `order-${i}`]))?.state;
  if (state === 'paid') paid++;
  else if (state === 'declined') declined++;
}
const after = bank.stats();
const faulted =
  during.transientErrors +
  during.droppedAfterCharge +
  during.slowAnswers +
  during.resets +
  during.refusedConnections +
  during.outageRejections;
const metrics = client.metrics();
await client.close();
ledger.close();
await bank.close();

console.log(
  `payment-retry festival: ${PAYMENTS} payments, concurrency ${CONCURRENCY}, Node ${process.version}`,
);
console.log(
  `  bank during the run: ${during.requests} payment requests, ${faulted} faulted (${((faulted / during.requests) * 100).toFixed(1)}%: ` +
    `${during.transientErrors} 503, ${during.droppedAfterCharge} dropped after charge, ${during.slowAnswers} slow, ` +
    `${during.resets} resets, ${during.refusedConnections} refused, ${during.outageRejections} outage 503), ` +
    `${during.conflicts} 409, ${during.replays} replays, ${during.statusChecks} status checks`,
);
console.log(
  `  pay(): ${counts.paid} paid, ${counts.declined} declined, ${counts.pending} pending in ${(payMs / 1000).toFixed(1)} s; ` +
    `attempts ${JSON.stringify(metrics.attempts)}, retries ${metrics.retries}`,
);
console.log(
  `  after ${passes} reconciliation passes (${(reconcileMs / 1000).toFixed(1)} s): ${paid} paid, ${declined} declined, ` +
    `${unresolved} unresolved; bank: ordersCharged ${after.ordersCharged}, ordersChargedMoreThanOnce ` +
    `${after.ordersChargedMoreThanOnce}, extraCharges ${after.extraCharges}`,
);
const ok =
  after.ordersChargedMoreThanOnce === 0 &&
  unresolved === 0 &&
  paid + declined === PAYMENTS &&
  after.ordersCharged === paid;

// --- the naive client: a fresh key per retry -------------------------------------------------------
const naiveBank = await startBankSim({ ...bankOptions, faults });
const pool = new Pool(naiveBank.url, { connections: 64, headersTimeout: 400, bodyTimeout: 400 });
await each(async (i) => {
  const { orderId, amount, currency, payer } = order(i);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const response = await pool.request({
        path: '/payments',
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': `"${randomUUID()}"` },
        body: JSON.stringify({ orderId, amount, currency, source: payer }),
      });
      await response.body.text();
      if (response.statusCode === 201 || response.statusCode === 402) return;
    } catch {
      // "It failed": try again, with a new key.
    }
  }
});
const naive = naiveBank.stats();
await pool.close();
await naiveBank.close();
rmSync(dir, { recursive: true, force: true });
console.log(
  `  naive client, same scenario: ordersCharged ${naive.ordersCharged}, ordersChargedMoreThanOnce ` +
    `${naive.ordersChargedMoreThanOnce}, extraCharges ${naive.extraCharges}`,
);
console.log(ok ? '  OK: every order charged at most once and settled' : '  FAILED');
process.exitCode = ok ? 0 : 1;
