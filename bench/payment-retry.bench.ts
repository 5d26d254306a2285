// Question: what does @floodgate/payment-retry cost per payment? Payments per second through the full
// client (derived key, ledger writes before and after, classification, events, budget) with the memory
// ledger and with the SQLite ledger (WAL, synchronous=NORMAL), against a bare undici request doing the
// same HTTP work (POST with an idempotency key, read and parse the JSON answer) to the same bank, same
// run. The bank runs in its own process (bank-sim CLI, no faults, no flow limit, no latency) so its CPU
// is not billed to either side. Rounds alternate so drift on a noisy machine hits every variant alike.
//
//   cd packages/bank-sim && npx tsup && cd ../token-bucket && npx tsup && cd ../payment-retry && npx tsup
//   cd ../../bench && node --expose-gc --import tsx payment-retry.bench.ts
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { createPaymentClient, ietfGateway, memoryLedger, sqliteLedger } from '@floodgate/payment-retry';
import { Pool } from 'undici';

const PAYMENTS = Number(process.env.PAYMENTS ?? 4000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 32);
const ROUNDS = Number(process.env.ROUNDS ?? 5);

async function startBank(): Promise<{ url: string; child: ChildProcess }> {
  const require = createRequire(import.meta.url);
  const cli = join(dirname(require.resolve('@floodgate/bank-sim/package.json')), 'dist', 'cli.js');
  const child = spawn(
    process.execPath,
    [
      cli,
      '--rate',
      'Infinity',
      '--latency',
      '0',
      '--tellers',
      '4096',
      '--max-queued',
      '100000',
      '--max-keys',
      '2000000',
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const [url] = (await once(lines, 'line')) as [string];
  lines.close();
  return { url, child };
}

/** Payments per second, and CPU µs of this process (not the bank's) per payment. */
async function run(pay: (i: number) => Promise<unknown>): Promise<{ rate: number; cpuUs: number }> {
  let next = 0;
  const worker = async () => {
    while (next < PAYMENTS) await pay(next++);
  };
  globalThis.gc?.();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const elapsed = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { rate: (PAYMENTS / elapsed) * 1000, cpuUs: (cpu.user + cpu.system) / PAYMENTS };
}

const { url, child } = await startBank();
const dir = mkdtempSync(join(tmpdir(), 'payment-retry-bench-'));
let round = 0;
const order = (i: number) => ({ orderId: `r${round}-${i}`, amount: 1999, currency: 'EUR', payer: 'tok_ok' });

const bare = new Pool(url, { connections: 64, keepAliveTimeout: 10_000, pipelining: 1 });
const barePay = async (i: number) => {
  const { orderId, amount, currency, payer } = order(i);
  const response = await bare.request({
    path: '/payments',
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      'idempotency-key': `"${randomUUID()}"`,
    },
    body: JSON.stringify({ orderId, amount, currency, source: payer }),
  });
  const answer = JSON.parse(await response.body.text()) as { status: string };
  if (response.statusCode !== 201 || answer.status !== 'succeeded')
    throw new Error(`bare: ${response.statusCode}`);
};

const gateway = ietfGateway({ origin: url });
// Bounded like a long-running process would bound it (see MemoryLedgerOptions.maxPaid).
const memory = createPaymentClient({
  gateway,
  ledger: memoryLedger({ maxPaid: 10_000 }),
  pool: { connections: 64 },
});
const sqlite = createPaymentClient({
  gateway,
  ledger: sqliteLedger({ path: join(dir, 'bench.db') }),
  pool: { connections: 64 },
});
const viaClient = (client: typeof memory) => async (i: number) => {
  const outcome = await client.pay(order(i));
  if (outcome.status !== 'paid') throw new Error(`client: ${outcome.status}`);
};

const variants: [string, (i: number) => Promise<unknown>][] = [
  ['bare undici request', barePay],
  ['payment client, memory ledger', viaClient(memory)],
  ['payment client, SQLite ledger', viaClient(sqlite)],
];
// ONLY=memory (a substring of the names) runs only the matching variants plus the bare baseline.
const only = process.env.ONLY;
if (only !== undefined) {
  for (let v = variants.length - 1; v > 0; v--) {
    if (!(variants[v] as (typeof variants)[number])[0].includes(only)) variants.splice(v, 1);
  }
}
const results = new Map<string, { rate: number; cpuUs: number }[]>(variants.map(([name]) => [name, []]));

// Warm-up: connections, JIT, SQLite pages.
for (const [, pay] of variants) {
  round++;
  await run(pay);
}
for (let r = 0; r < ROUNDS; r++) {
  // Rotate the order each round so none always runs first.
  for (let v = 0; v < variants.length; v++) {
    const [name, pay] = variants[(v + r) % variants.length] as (typeof variants)[number];
    round++;
    results.get(name)?.push(await run(pay));
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
};
const bareRuns = results.get('bare undici request') ?? [];
const base = median(bareRuns.map((r) => r.rate));
const baseCpu = median(bareRuns.map((r) => r.cpuUs));
console.log(
  `payment-retry: ${PAYMENTS} payments x ${ROUNDS} rounds, concurrency ${CONCURRENCY}, Node ${process.version}`,
);
console.log(
  'variant                           payments/s (median)   vs bare   overhead   client CPU µs/payment   vs bare',
);
for (const [name, runs] of results) {
  const m = median(runs.map((r) => r.rate));
  const cpu = median(runs.map((r) => r.cpuUs));
  console.log(
    `${name.padEnd(33)} ${m.toFixed(0).padStart(19)}   ${(m / base).toFixed(3).padStart(7)}   ${((1 - m / base) * 100).toFixed(1).padStart(7)}%   ${cpu.toFixed(0).padStart(21)}   ${(cpu / baseCpu).toFixed(2).padStart(7)}`,
  );
}

await memory.close();
await sqlite.close();
await bare.close();
child.kill('SIGTERM');
await once(child, 'exit');
rmSync(dir, { recursive: true, force: true });
