import type { AddressInfo } from 'node:net';
import { constants } from 'node:os';
import { settleOrder } from './checkout.js';
import { readShopConfig, type ShopConfig } from './config.js';
import { ShopDb } from './db.js';
import { Meter } from './meter.js';
import { DASHBOARD_PATH } from './pages.js';
import type { MeterName } from './payments.js';
import { serverDrain } from './server-drain.js';
import { createShopServer } from './shop-server.js';

// Runs one shop process: `tsx src/main.ts --shop floodgate --framework fastify --port 3000 --bank-url
// http://127.0.0.1:4000`. Started by the festival as a child process (it reports its URL over IPC), or by
// hand to click around.

// ms since this process started (performance.now()'s origin) at each step of start-up: the festival
// reports where a restart after SIGKILL spends its time.
const startup: Record<string, number> = { modulesLoadedMs: performance.now() };
let config: ShopConfig;
try {
  config = readShopConfig(process.argv.slice(2));
} catch (error) {
  // A bad flag stops the process before it opens a database or a port: the message names the option.
  console.error(`main: ${(error as Error).message}`);
  process.exit(2);
}
const db = new ShopDb(config.db);
const meter = new Meter<MeterName>();
const shop = await createShopServer({
  shop: config.shop,
  framework: config.framework,
  db,
  meter,
  bankUrl: config.bankUrl,
  bankRate: config.bankRate,
  redisUrl: config.redisUrl,
  instance: config.instance,
  onSettled: (orderId, outcome) => settleOrder(db, meter, orderId, outcome),
});

startup.shopBuiltMs = performance.now();
// After a crash, before the first checkout comes in: the orders the last process left mid-payment follow
// the payment ledger (database reads only, a few ms; nothing can race them yet).
if (shop.payments.syncOrders) await shop.payments.syncOrders();
startup.ordersSyncedMs = performance.now();

// A festival opens thousands of connections at once: a short accept queue (Node's default is 511) drops
// them, and a dropped SYN is retried only after a second or more.
const { server } = shop;
const drain = serverDrain(server);
server.listen({ port: config.port, host: config.host, backlog: 4096 });
server.keepAliveTimeout = 30_000;
server.once('listening', () => {
  const { port } = server.address() as AddressInfo;
  const url = `http://${config.host}:${port}`;
  const dashboard = `${url}${DASHBOARD_PATH}`;
  console.error(
    `${config.shop} shop (${config.instance}, ${shop.framework}) listening on ${url} (dashboard ${dashboard})`,
  );
  startup.listeningMs = performance.now();
  const ready = { type: 'ready', url, port, dashboard, framework: shop.framework };
  process.send?.({ ...ready, startedAt: performance.timeOrigin, startup });
  void recoverInBackground();
});

// Then, while it already takes checkouts, it settles what the last process left unknown. That waits for
// the bank (a status query per payment through the gate, some answered only at the recovery deadline):
// seconds during which a shop that recovered first would stay closed. A student who clicks "Pay" meanwhile
// shares the payment being recovered instead of starting another (see FloodgatePayments.recover).
async function recoverInBackground(): Promise<void> {
  try {
    const recovered = shop.payments.recover ? await shop.payments.recover() : 0;
    startup.recoveredMs = performance.now();
    console.error(`${config.shop} shop (${config.instance}) recovered ${recovered} payments`);
    process.send?.({ type: 'recovered', recovered, startup });
  } catch (error) {
    if (closing) return;
    // What is left unresolved stays in the ledger for the next start; this process must not go on
    // believing it recovered.
    console.error('recovery failed:', error);
    process.exit(1);
  }
}

let closing = false;
// A rolling deploy stops the process with SIGTERM while students are checking out: it stops taking
// connections, lets the checkouts in flight finish for `--shutdown-grace-ms`, and answers those still
// waiting for the bank 202 pending (closing the payments ends their payments as `pending`, kept in the
// ledger for the next start) instead of dropping them. A second signal exits at once.
async function shutdown(signal?: NodeJS.Signals): Promise<void> {
  if (closing) {
    if (signal === undefined) return;
    console.error(`${config.shop} shop (${config.instance}): ${signal} again, exiting now`);
    process.exit(128 + constants.signals[signal]);
  }
  closing = true;
  const why = signal ?? 'shutdown message';
  try {
    const closed = drain.close({
      graceMs: config.shutdownGraceMs,
      answerInFlight: () => shop.payments.close(),
    });
    // The listening socket is closed by now: a test (or a load balancer's health check) may rely on it.
    console.error(
      `${config.shop} shop (${config.instance}): ${why}, not accepting connections; ${drain.inFlight} requests in flight, grace ${config.shutdownGraceMs} ms`,
    );
    const { inFlightAtGraceEnd, dropped } = await closed;
    if (inFlightAtGraceEnd > 0) {
      console.error(
        `${config.shop} shop (${config.instance}): ${inFlightAtGraceEnd} requests still in flight at the end of the grace period, ${dropped} of them dropped unanswered`,
      );
    }
    await shop.close();
    db.close();
  } catch (error) {
    console.error('shutdown failed:', error);
    process.exit(1);
  }
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.on('message', (message) => {
  if ((message as { type?: string }).type === 'shutdown') void shutdown();
});
