import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BankSimOptions, BankStats, Faults } from '@floodgate/bank-sim';
import { Pool } from 'undici';
import type { Framework, ShopKind } from '../config.js';
import { type OrderStatus, type PaymentAttempt, ShopDb } from '../db.js';
import { type Service, type ServiceMessage, startService } from './processes.js';
import { perSecond, quantile } from './stats.js';
import { dealOf, runSurge, type StudentOutcome, type StudentRecord, studentName } from './students.js';

/** One column of the festival table. */
export interface RunSpec {
  readonly shop: ShopKind;
  /** The app that serves the shop: `fastify` for the floodgate shop only. */
  readonly framework: Framework;
  /** Column heading, e.g. `floodgate + SIGKILL`. */
  readonly label: string;
  /** Kill the first shop process with SIGKILL mid-surge and start it again. */
  readonly crash: boolean;
  /** Shop processes behind the load balancer. */
  readonly instances: number;
  readonly redisUrl?: string | undefined;
}

export interface FestivalSettings {
  readonly students: number;
  /** The bank's flow limit, payments/s: given to the bank and to every shop from this one value. */
  readonly bankRate: number;
  readonly faults: boolean;
  readonly seed: number;
  /** Students arrive within this many ms. */
  readonly arrivalMs: number;
  /** After the last student, how long the shop may take to settle pending payments. */
  readonly drainTimeoutMs: number;
  /** Folder for the shops' databases and logs. */
  readonly outDir: string;
  readonly onProgress?:
    | ((progress: { label: string; done: number; total: number; phase: string }) => void)
    | undefined;
  /**
   * Called when a run's shop processes listen, before its surge begins, with the address of each one's
   * live dashboard (so someone watching can open it while the surge runs).
   */
  readonly onShopsReady?: ((shops: { label: string; dashboards: string[] }) => void) | undefined;
}

/**
 * When the shop restarted after the SIGKILL got through each step, in ms from the SIGKILL (the new
 * process's own clock readings, placed on the wall clock it shares with the festival).
 */
export interface RestartTimings {
  /** The festival saw the killed process exit (it starts the new one without waiting for that). */
  readonly exitedMs: number;
  /** The new process was running (Node started, nothing loaded yet). */
  readonly processStartedMs: number;
  /** Its modules were loaded (tsx compiling the TypeScript on the way). */
  readonly modulesLoadedMs: number;
  /** Database open, payment client and shop wired. */
  readonly shopBuiltMs: number;
  /** The orders the killed process left mid-payment follow the ledger again (before listening). */
  readonly ordersSyncedMs: number;
  /** Listening: it took checkouts again. */
  readonly listeningMs: number;
  /** `recover()` had settled (or handed to reconciliation) what the killed process left in flight. */
  readonly recoveredMs: number;
}

/** Where the extra charges of a run came from. */
export interface DoubleChargeSources {
  /** A student's second click became a second payment with a new key. */
  readonly reClicks: number;
  /** The shop retried a request with a fresh key within one click. */
  readonly retries: number;
  /** A payment sent before the crash was paid again after the restart. */
  readonly crashes: number;
}

export interface RunReport {
  readonly label: string;
  readonly shop: ShopKind;
  /** The framework that answered, as every shop process of the run said in `GET /api/config`. */
  readonly framework: Framework;
  readonly crash: boolean;
  readonly instances: number;
  readonly students: number;
  readonly bankRate: number;
  /** Orders the shop records as paid. */
  readonly ordersPaid: number;
  /** Orders the bank charged at least once. */
  readonly ordersCharged: number;
  readonly ordersChargedTwice: number;
  readonly extraCharges: number;
  /** Money and shop disagree after the drain, or the order is still unresolved. */
  readonly lostOrders: number;
  readonly lost: { readonly chargedNotPaid: number; readonly unresolved: number };
  /** Each order checked against the bank's answers for every key the shop sent for it. */
  readonly integrity: {
    /** Paid in the shop and charged exactly once. */
    readonly paidChargedOnce: number;
    readonly paidChargedMoreThanOnce: number;
    /** Paid in the shop with no charge found at the bank. */
    readonly paidNotCharged: number;
    /** Declined in the shop and not charged. */
    readonly declinedNotCharged: number;
    readonly declinedButCharged: number;
  };
  readonly declined: number;
  readonly bankPeakAdmittedPerSecond: number;
  readonly bankRequests: number;
  readonly bankAdmitted: number;
  readonly throttled: number;
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly checkoutRequests: number;
  /** Clicks still waiting for an answer when their student had left (counted in latency as a lower bound). */
  readonly unanswered: number;
  readonly timeToDrainMs: number;
  /** Useful bank outcomes per second while demand exceeded the limit, as a share of the limit. */
  readonly goodputShare: number;
  readonly doubleChargeSources: DoubleChargeSources;
  readonly studentOutcomes: Record<StudentOutcome, number>;
  readonly orderStatuses: Record<OrderStatus, number>;
  /** Per second since the surge began. */
  readonly series: {
    readonly admitted: number[];
    readonly throttled: number[];
    readonly useful: number[];
    readonly checkouts: number[];
    readonly p50: number[];
    readonly p99: number[];
  };
  /** The crash run only: when the shop was killed, ms since the surge began. */
  readonly crashedAtMs?: number | undefined;
  /** The crash run only: from the SIGKILL until the new process took checkouts again. */
  readonly restartMs?: number | undefined;
  /** The crash run only: where the restart spent its time. */
  readonly restart?: RestartTimings | undefined;
  /** The crash run only: payments the restarted shop recovered. */
  readonly recovered?: number | undefined;
  /** The bank's own numbers, as /_stats gave them (without the series). */
  readonly bankStats: Omit<BankStats, 'series'> | undefined;
}

/**
 * What a real gateway does on a busy day: a few transient 5xx, some charges whose answer never comes
 * (the connection drops after the money moved), a few answered far too late, a few resets.
 */
export const REALISTIC_FAULTS: Partial<Faults> = {
  errorRate: 0.02,
  dropAfterChargeRate: 0.01,
  slowAfterChargeRate: 0.003,
  slowAnswerMs: 12_000,
  resetRate: 0.005,
};

const EMPTY_OUTCOMES: Record<StudentOutcome, number> = {
  paid: 0,
  declined: 0,
  'pending-then-paid': 0,
  'pending-then-declined': 0,
  pending: 0,
  'gave-up-failed': 0,
  'gave-up-no-answer': 0,
  'no-order': 0,
};

async function getJson<T>(url: string): Promise<T | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return response.ok || response.status === 404 ? ((await response.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

/** The restarted shop's start-up steps (its `ready` and `recovered` messages), from the SIGKILL. */
function restartTimings(
  killedAt: number,
  exitedAt: number,
  ready: ServiceMessage,
  recovered: ServiceMessage,
): { recovered: number; restart: RestartTimings } {
  const startedAt = Number(ready.startedAt);
  const step = (message: ServiceMessage, name: string) =>
    Math.round(startedAt + Number((message.startup as Record<string, number>)[name]) - killedAt);
  return {
    recovered: Number(recovered.recovered),
    restart: {
      exitedMs: exitedAt - killedAt,
      processStartedMs: Math.round(startedAt - killedAt),
      modulesLoadedMs: step(ready, 'modulesLoadedMs'),
      shopBuiltMs: step(ready, 'shopBuiltMs'),
      ordersSyncedMs: step(ready, 'ordersSyncedMs'),
      listeningMs: step(ready, 'listeningMs'),
      recoveredMs: step(recovered, 'recoveredMs'),
    },
  };
}

/** Where shop process `index` of a run keeps its database and log. */
function shopFile(spec: RunSpec, settings: FestivalSettings, index: number) {
  const file = join(settings.outDir, `${spec.label.replace(/\W+/g, '-')}-${index + 1}`);
  return { db: `${file}.db`, log: `${file}.log` };
}

/** The live dashboard's address, as the shop process reported it when ready (`src/main.ts`). */
function dashboardOf(shop: Service): string {
  const { dashboard } = shop.ready;
  if (typeof dashboard !== 'string') throw new TypeError(`Shop ${shop.url} did not report its dashboard`);
  return dashboard;
}

/**
 * What a shop process says it is (`GET /api/config`), checked against what the run asked for: a run that
 * asked for Fastify and got Express (a flag lost on the way) would compare the wrong app.
 * @throws {Error} when the process does not answer, or answers as another framework.
 */
async function shopConfigOf(shop: Service, spec: RunSpec): Promise<{ sendsIdempotencyKey: boolean }> {
  const config = await getJson<{ framework?: string; sendsIdempotencyKey: boolean }>(
    `${shop.url}/api/config`,
  );
  if (config?.framework !== spec.framework) {
    throw new Error(
      `Shop ${shop.url} (${spec.label}) answered as \`${config?.framework}\`, expected \`${spec.framework}\``,
    );
  }
  return config;
}

/** Starts one shop process, on `port` (0: any). */
function startShop(spec: RunSpec, settings: FestivalSettings, bankUrl: string, index: number, port = 0) {
  const instance = `${spec.shop}-${index + 1}`;
  const file = shopFile(spec, settings, index);
  const args = [
    '--shop',
    spec.shop,
    // Always said, so a `SHOP_FRAMEWORK` in the festival's environment cannot change a shop's app.
    '--framework',
    spec.framework,
    '--port',
    String(port),
    '--db',
    file.db,
    '--bank-url',
    bankUrl,
    '--bank-rate',
    String(settings.bankRate),
    '--instance',
    instance,
    ...(spec.redisUrl ? ['--redis', spec.redisUrl] : []),
  ];
  return { db: file.db, service: startService('main.ts', args, { log: file.log }) };
}

/**
 * The floodgate shop's ledger records each payment's key before anything is sent. A key whose answer
 * the shop never recorded (the process was killed while the request was out) is checked at the bank too.
 */
function ledgerKeysWithoutAnswer(db: ShopDb, known: readonly PaymentAttempt[]): PaymentAttempt[] {
  const hasLedger = db.connection
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'floodgate_payments'")
    .get();
  if (!hasLedger) return [];
  const own = db.attempts();
  const answered = new Set(
    [...known, ...own]
      .filter((a) => a.status === 'succeeded' || a.status === 'declined')
      .map((a) => a.idempotencyKey),
  );
  const rows = db.connection
    .prepare<[], { key: string; orderId: string; createdAt: number; updatedAt: number }>(
      `SELECT idempotency_key AS key, order_id AS orderId, created_at AS createdAt, updated_at AS updatedAt
       FROM floodgate_payments`,
    )
    .all();
  return rows
    .filter((row) => !answered.has(row.key))
    .map((row) => ({
      orderId: row.orderId,
      checkoutId: 'ledger',
      bootId: 'ledger',
      idempotencyKey: row.key,
      status: 'sending' as const,
      httpStatus: null,
      startedAt: row.createdAt,
      finishedAt: row.updatedAt,
    }));
}

/**
 * For each order, which of the shop's requests to the bank charged it. An attempt that got no clear
 * answer is looked up by its key at the bank (GET /payments/{key} is not flow-limited).
 */
async function chargesByOrder(bankUrl: string, attempts: readonly PaymentAttempt[]) {
  const pool = new Pool(bankUrl, { connections: 32 });
  const charged = new Map<string, PaymentAttempt[]>();
  const seenKeys = new Set<string>();
  const ambiguous = attempts.filter(
    (a) => a.status === 'unknown' || a.status === 'error' || a.status === 'sending',
  );
  const lookedUp = new Map<string, boolean>();
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < ambiguous.length) {
        const attempt = ambiguous[next++] as PaymentAttempt;
        if (lookedUp.has(attempt.idempotencyKey)) continue;
        lookedUp.set(attempt.idempotencyKey, false);
        const response = await pool.request({
          method: 'GET',
          path: `/payments/${encodeURIComponent(attempt.idempotencyKey)}`,
        });
        const body = (await response.body.json().catch(() => ({}))) as { status?: string };
        lookedUp.set(attempt.idempotencyKey, body.status === 'succeeded');
      }
    }),
  );
  await pool.close();
  for (const attempt of attempts) {
    // One key charges at most once (the bank deduplicates it), however often it was sent.
    if (seenKeys.has(attempt.idempotencyKey)) continue;
    const didCharge = attempt.status === 'succeeded' || lookedUp.get(attempt.idempotencyKey) === true;
    if (!didCharge) continue;
    seenKeys.add(attempt.idempotencyKey);
    const list = charged.get(attempt.orderId) ?? [];
    list.push(attempt);
    charged.set(attempt.orderId, list);
  }
  return charged;
}

/**
 * Runs the surge against one shop: a fresh bank, fresh shop process(es), the same students.
 * @returns the column of the festival table, with the series for its charts.
 */
export async function runOne(spec: RunSpec, settings: FestivalSettings): Promise<RunReport> {
  const progress = (phase: string, done = 0) =>
    settings.onProgress?.({ label: spec.label, done, total: settings.students, phase });
  progress('starting the bank');
  const bankOptions: BankSimOptions = {
    rate: settings.bankRate,
    // A gateway's flow limit allows little burst: a tenth of a second's worth.
    burst: Math.max(1, Math.round(settings.bankRate / 10)),
    latencyMs: 20,
    latencyJitterMs: 40,
    seed: settings.seed,
  };
  const bank = await startService('festival/bank-process.ts', [JSON.stringify(bankOptions)], {
    log: join(settings.outDir, `${spec.label.replace(/\W+/g, '-')}-bank.log`),
  });
  const shops: Service[] = [];
  const dbFiles: string[] = [];
  try {
    // The deal was joined during the day: open every student's order in the database of the shop process
    // the load balancer sends them to, so the surge is the checkout itself.
    const orders: string[] = [];
    for (let i = 0; i < spec.instances; i++) {
      const db = new ShopDb(shopFile(spec, settings, i).db);
      const joins = [];
      for (let s = i; s < settings.students; s += spec.instances) {
        joins.push({ dealId: dealOf(s), studentId: studentName(s), orderId: `ord_${randomUUID()}` });
      }
      for (const [k, order] of db.joinDeals(joins).entries()) orders[i + k * spec.instances] = order.id;
      db.close();
    }

    progress('starting the shop');
    const started = await Promise.all(
      Array.from({ length: spec.instances }, (_, i) => startShop(spec, settings, bank.url, i)),
    );
    for (const s of started) dbFiles.push(s.db);
    shops.push(...(await Promise.all(started.map((s) => s.service))));
    settings.onShopsReady?.({ label: spec.label, dashboards: shops.map(dashboardOf) });
    const [config] = await Promise.all(shops.map((shop) => shopConfigOf(shop, spec)));

    // Count from the first student on, and let the faults begin with the surge.
    await fetch(`${bank.url}/_stats/reset`, { method: 'POST' });
    if (settings.faults) {
      await fetch(`${bank.url}/_faults`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(REALISTIC_FAULTS),
      });
    }
    let done = 0;
    let crashedAtMs: number | undefined;
    let restartMs: number | undefined;
    let recovery: Promise<{ recovered: number; restart: RestartTimings }> | undefined;
    const surgeStartedAt = Date.now();
    const surge = runSurge({
      shopUrls: shops.map((s) => s.url),
      students: settings.students,
      arrivalMs: settings.arrivalMs,
      seed: settings.seed,
      sendsIdempotencyKey: config?.sendsIdempotencyKey ?? false,
      orders,
      onStudentDone: () => progress('surge', ++done),
    });
    progress('surge');

    if (spec.crash) {
      // Mid-festival: the first shop process dies without a chance to clean up, then comes back on the
      // same port with the same database and recovers what was in flight.
      await sleep(settings.arrivalMs * 0.6);
      const victim = shops[0] as Service;
      const killedAt = Date.now();
      crashedAtMs = killedAt - surgeStartedAt;
      // A supervisor starts the new process as soon as it has sent the SIGKILL; waiting for the exit to be
      // reported would add this process's own event-loop lag (it is also the students' browsers) to the
      // outage. SIGKILL cannot be caught, so the old process runs no more code, and the kernel closes its
      // listening socket as it dies, long before the new one has loaded its modules and binds the port.
      const exited = victim.crash().then(() => Date.now());
      const again = startShop(spec, settings, bank.url, 0, victim.port);
      const restarted = await again.service;
      restartMs = Date.now() - killedAt;
      shops[0] = restarted;
      // The restarted process must be the same app as the one killed.
      await shopConfigOf(restarted, spec);
      recovery = Promise.all([exited, restarted.message('recovered')]).then(([exitedAt, message]) =>
        restartTimings(killedAt, exitedAt, restarted.ready, message),
      );
    }

    const result = await surge;
    const recoveredAfterCrash = await recovery;
    progress('draining', settings.students);
    // Drain: the shop settles what is still pending (reconciliation) before we count.
    const drainDeadline = Date.now() + settings.drainTimeoutMs;
    let lastUnsettled = -1;
    while (Date.now() < drainDeadline) {
      const stats = await Promise.all(
        shops.map((s) => getJson<{ orders: { paying: number; pending: number } }>(`${s.url}/api/stats`)),
      );
      lastUnsettled = stats.reduce((n, s) => n + (s ? s.orders.paying + s.orders.pending : 1), 0);
      if (lastUnsettled === 0) break;
      await sleep(200);
    }
    const drainedAt = Date.now();
    const lastAnswer = Math.max(0, ...result.students.map((s) => s.answeredAt ?? s.arrivedAt));
    const timeToDrainMs =
      lastUnsettled === 0
        ? Math.max(lastAnswer, drainedAt - surgeStartedAt - 200)
        : drainedAt - surgeStartedAt;

    progress('counting');
    await Promise.all(shops.map((s) => s.stop()));
    // The bank finishes what it had accepted even after the shop is gone: count once it is idle.
    let bankStats = await getJson<BankStats>(`${bank.url}/_stats`);
    const idleDeadline = Date.now() + 3000;
    while (bankStats && bankStats.inFlight + bankStats.queued > 0 && Date.now() < idleDeadline) {
      await sleep(100);
      bankStats = await getJson<BankStats>(`${bank.url}/_stats`);
    }

    const attempts: PaymentAttempt[] = [];
    const statuses = { created: 0, paying: 0, paid: 0, declined: 0, pending: 0, failed: 0 } as Record<
      OrderStatus,
      number
    >;
    const orderStatus = new Map<string, OrderStatus>();
    for (const file of dbFiles) {
      const db = new ShopDb(file);
      attempts.push(...db.attempts(), ...ledgerKeysWithoutAnswer(db, attempts));
      for (const order of db.orders()) {
        orderStatus.set(order.id, order.status);
        statuses[order.status]++;
      }
      db.close();
    }
    const charged = await chargesByOrder(bank.url, attempts);
    return summarize({
      spec,
      settings,
      students: result.students,
      requests: result.requests.map((r) => ({ ...r, at: r.at + (result.startedAt - surgeStartedAt) })),
      attempts,
      charged,
      orderStatus,
      statuses,
      bankStats,
      surgeStartedAt,
      timeToDrainMs,
      crashedAtMs,
      restartMs,
      restart: recoveredAfterCrash?.restart,
      recovered: recoveredAfterCrash?.recovered,
    });
  } finally {
    await Promise.all(shops.map((s) => s.stop()));
    await bank.stop();
  }
}

interface SummaryInput {
  spec: RunSpec;
  settings: FestivalSettings;
  students: StudentRecord[];
  requests: { at: number; latencyMs: number; status: number }[];
  attempts: PaymentAttempt[];
  charged: Map<string, PaymentAttempt[]>;
  orderStatus: Map<string, OrderStatus>;
  statuses: Record<OrderStatus, number>;
  bankStats: BankStats | undefined;
  surgeStartedAt: number;
  timeToDrainMs: number;
  crashedAtMs: number | undefined;
  restartMs: number | undefined;
  restart: RestartTimings | undefined;
  recovered: number | undefined;
}

function withoutSeries(stats: BankStats | undefined): Omit<BankStats, 'series'> | undefined {
  if (!stats) return undefined;
  const { series: _series, ...rest } = stats;
  return rest;
}

function summarize(input: SummaryInput): RunReport {
  const { spec, settings, bankStats, charged, orderStatus } = input;
  const seconds = Math.max(1, Math.ceil(input.timeToDrainMs / 1000) + 1);

  // Lost: the bank took money the shop does not show as paid, or the order never settled.
  let chargedNotPaid = 0;
  let unresolved = 0;
  const integrity = {
    paidChargedOnce: 0,
    paidChargedMoreThanOnce: 0,
    paidNotCharged: 0,
    declinedNotCharged: 0,
    declinedButCharged: 0,
  };
  for (const [orderId, status] of orderStatus) {
    const charges = charged.get(orderId)?.length ?? 0;
    if (status === 'paid') {
      if (charges === 1) integrity.paidChargedOnce++;
      else if (charges > 1) integrity.paidChargedMoreThanOnce++;
      else integrity.paidNotCharged++;
    } else if (status === 'declined') {
      if (charges === 0) integrity.declinedNotCharged++;
      else integrity.declinedButCharged++;
    }
    if (charges > 0 && status !== 'paid') chargedNotPaid++;
    else if (status === 'paying' || status === 'pending') unresolved++;
  }

  const sources = { reClicks: 0, retries: 0, crashes: 0 };
  let extraFromShop = 0;
  for (const list of charged.values()) {
    const sorted = [...list].sort((a, b) => a.startedAt - b.startedAt);
    for (let i = 1; i < sorted.length; i++) {
      const previous = sorted[i - 1] as PaymentAttempt;
      const current = sorted[i] as PaymentAttempt;
      extraFromShop++;
      if (current.bootId !== previous.bootId) sources.crashes++;
      else if (current.checkoutId === previous.checkoutId) sources.retries++;
      else sources.reClicks++;
    }
  }

  // Useful bank work: the first charge or the decline that settled each order, by when it was answered.
  const useful: number[] = [];
  const settledOrders = new Set<string>();
  const answeredAt = (a: PaymentAttempt) => a.finishedAt ?? a.startedAt;
  for (const attempt of [...input.attempts].sort((a, b) => answeredAt(a) - answeredAt(b))) {
    if (settledOrders.has(attempt.orderId)) continue;
    const isCharge = charged.get(attempt.orderId)?.[0] === attempt;
    if (isCharge || attempt.status === 'declined') {
      settledOrders.add(attempt.orderId);
      useful.push(answeredAt(attempt));
    }
  }
  const usefulSeries = perSecond(useful, (t) => t, input.surgeStartedAt, seconds);
  const demand = perSecond(
    input.students.filter((s) => s.firstClickAt !== undefined),
    (s) => (s.firstClickAt as number) + input.surgeStartedAt,
    input.surgeStartedAt,
    seconds,
  );
  // Busy seconds: at the start of the second, more orders were already waiting to be paid than the bank
  // could take in it, so a shop that kept the bank at its limit would have used every slot.
  let waiting = 0;
  let busyUseful = 0;
  let busySeconds = 0;
  for (let s = 0; s < seconds; s++) {
    if (waiting >= settings.bankRate) {
      busySeconds++;
      busyUseful += usefulSeries[s] ?? 0;
    }
    waiting += (demand[s] ?? 0) - (usefulSeries[s] ?? 0);
  }
  const goodputShare = busySeconds > 0 ? busyUseful / (busySeconds * settings.bankRate) : 0;

  // The bank's own series: its second 0 is the surge's (the stats were reset as it began).
  const admittedSeries = new Array<number>(seconds).fill(0);
  const throttledSeries = new Array<number>(seconds).fill(0);
  for (const point of bankStats?.series ?? []) {
    if (point.second >= 0 && point.second < seconds) {
      admittedSeries[point.second] = point.admitted;
      throttledSeries[point.second] = point.throttled;
    }
  }

  const latencies = input.requests.map((r) => r.latencyMs);
  const p50: number[] = [];
  const p99: number[] = [];
  for (let s = 0; s < seconds; s++) {
    const inSecond = input.requests
      .filter((r) => r.at >= s * 1000 && r.at < (s + 1) * 1000)
      .map((r) => r.latencyMs);
    p50.push(Math.round(quantile(inSecond, 0.5)));
    p99.push(Math.round(quantile(inSecond, 0.99)));
  }

  const outcomes = { ...EMPTY_OUTCOMES };
  for (const s of input.students) outcomes[s.outcome]++;

  return {
    label: spec.label,
    shop: spec.shop,
    framework: spec.framework,
    crash: spec.crash,
    instances: spec.instances,
    students: settings.students,
    bankRate: settings.bankRate,
    ordersPaid: input.statuses.paid,
    ordersCharged: bankStats?.ordersCharged ?? charged.size,
    ordersChargedTwice:
      bankStats?.ordersChargedMoreThanOnce ?? [...charged.values()].filter((l) => l.length > 1).length,
    extraCharges: bankStats?.extraCharges ?? extraFromShop,
    lostOrders: chargedNotPaid + unresolved,
    lost: { chargedNotPaid, unresolved },
    integrity,
    declined: input.statuses.declined,
    bankPeakAdmittedPerSecond: bankStats?.peakAdmittedPerSecond ?? Math.max(0, ...admittedSeries),
    bankRequests: bankStats?.requests ?? 0,
    bankAdmitted: bankStats?.admitted ?? 0,
    throttled: bankStats?.throttled ?? 0,
    latencyMs: {
      p50: Math.round(quantile(latencies, 0.5)),
      p99: Math.round(quantile(latencies, 0.99)),
      max: Math.round(Math.max(0, ...latencies)),
    },
    checkoutRequests: input.requests.length,
    unanswered: input.requests.filter((r) => r.status === -1).length,
    timeToDrainMs: Math.round(input.timeToDrainMs),
    goodputShare,
    doubleChargeSources: sources,
    studentOutcomes: outcomes,
    orderStatuses: input.statuses,
    series: {
      admitted: admittedSeries,
      throttled: throttledSeries,
      useful: usefulSeries,
      checkouts: perSecond(input.requests, (r) => r.at, 0, seconds),
      p50,
      p99,
    },
    crashedAtMs: input.crashedAtMs,
    restartMs: input.restartMs,
    restart: input.restart,
    recovered: input.recovered,
    bankStats: withoutSeries(bankStats),
  };
}
