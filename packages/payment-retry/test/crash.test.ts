import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import { afterEach, describe, expect, it } from 'vitest';
import { createPaymentClient, type PaymentClient } from '../src/client.js';
import { ietfGateway } from '../src/ietf-gateway.js';
import { SqliteLedger } from '../src/sqlite-ledger.js';
import { CLIENT_TIMEOUTS, festivalOrder, mapLimit } from './scenario.js';

const ORDERS = 200;
const KILL_AFTER = 40;
const workspace = fileURLToPath(new URL('../../../', import.meta.url));
const childFile = fileURLToPath(new URL('./crash-child.ts', import.meta.url));

let bank: BankSim | undefined;
let client: PaymentClient | undefined;
let ledger: SqliteLedger | undefined;
let child: ChildProcess | undefined;
let dir: string | undefined;

afterEach(async () => {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await once(child, 'exit');
  }
  await client?.close();
  ledger?.close();
  await bank?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  child = client = ledger = bank = dir = undefined;
});

describe('crash test', () => {
  it('a process killed mid-batch loses nothing: recover() settles every order, each charged exactly once', async () => {
    bank = await startBankSim({
      rate: Number.POSITIVE_INFINITY,
      latencyMs: 5,
      latencyJitterMs: 40,
      tellers: 256,
      seed: 11,
      faults: { dropAfterChargeRate: 0.1, slowAfterChargeRate: 0.1, slowAnswerMs: 3000, errorRate: 0.05 },
    });
    dir = mkdtempSync(join(tmpdir(), 'payment-retry-crash-'));
    const path = join(dir, 'payments.db');

    // cwd = the workspace, so tsx maps @floodgate/* to the sources through the root tsconfig's paths.
    child = spawn(process.execPath, ['--import', 'tsx', childFile, bank.url, path, String(ORDERS)], {
      cwd: workspace,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = once(child, 'exit');
    let settledBeforeCrash = 0;
    for await (const line of createInterface({ input: child.stdout as NodeJS.ReadableStream })) {
      if (line === 'done') break;
      settledBeforeCrash++;
      if (settledBeforeCrash === KILL_AFTER) {
        child.kill('SIGKILL');
        break;
      }
    }
    const [, signal] = await exited;
    expect(signal).toBe('SIGKILL');
    expect(settledBeforeCrash).toBe(KILL_AFTER);

    // What the dead process left: payments recorded and in flight (their keys were written first).
    ledger = new SqliteLedger({ path });
    const leftBehind = ledger.unresolved();
    expect(leftBehind.length).toBeGreaterThan(0);

    // A new process: the bank is healthy again, recover() drives them with their original keys.
    bank.setFaults({ dropAfterChargeRate: 0, slowAfterChargeRate: 0, errorRate: 0 });
    client = createPaymentClient({
      gateway: ietfGateway({ origin: bank.url }),
      ledger,
      retry: { baseDelayMs: 5, maxDelayMs: 50, maxRetryAfterMs: 50 },
      timeouts: CLIENT_TIMEOUTS,
      reconcile: false,
    });
    const summary = await client.recover();
    expect(summary.found).toBe(leftBehind.length);
    expect(summary.paid + summary.declined + summary.pending).toBe(leftBehind.length);
    // On a loaded machine a few may still be pending at their deadline: the reconciler finishes them.
    for (let pass = 0; pass < 20 && client.pendingCount > 0; pass++) await client.reconcileNow();
    expect(ledger.unresolved()).toEqual([]);

    // The shop then pays the whole batch again (the shoppers click again): derived keys make every
    // order already charged a replay or a ledger answer, never a second charge.
    const orders = Array.from({ length: ORDERS }, (_, i) => festivalOrder(i));
    await mapLimit(orders, 32, (order) => (client as PaymentClient).pay(order));
    for (let pass = 0; pass < 20 && client.pendingCount > 0; pass++) await client.reconcileNow();
    expect(ledger.unresolved()).toEqual([]);
    const records = orders.map((order) => ledger?.latest(JSON.stringify(['default', order.orderId])));
    const paid = records.filter((record) => record?.state === 'paid').length;
    expect(paid).toBe(ORDERS * 0.9);
    expect(records.filter((record) => record?.state === 'declined')).toHaveLength(ORDERS * 0.1);

    const stats = bank.stats();
    expect(stats.ordersChargedMoreThanOnce).toBe(0);
    expect(stats.extraCharges).toBe(0);
    expect(stats.ordersCharged).toBe(paid);
  });
});
