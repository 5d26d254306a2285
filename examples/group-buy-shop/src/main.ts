import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createShopApp, DASHBOARD_PATH, settleOrder } from './app.js';
import { readShopConfig } from './config.js';
import { ShopDb } from './db.js';
import { Meter } from './meter.js';
import type { MeterName } from './payments.js';
import { buildShop } from './shops.js';

// Runs one shop process: `tsx src/main.ts --shop floodgate --port 3000 --bank-url http://127.0.0.1:4000`.
// Started by the festival as a child process (it reports its URL over IPC), or by hand to click around.
const config = readShopConfig(process.argv.slice(2));
const db = new ShopDb(config.db);
const meter = new Meter<MeterName>();
const wiring = await buildShop(config.shop, {
  db,
  meter,
  bankUrl: config.bankUrl,
  bankRate: config.bankRate,
  redisUrl: config.redisUrl,
  onSettled: (orderId, outcome) => settleOrder(db, meter, orderId, outcome),
});

// After a crash: settle what the last process left unknown before taking new checkouts.
// The payment client's timers are unref'd (a library must not hold a process open) and nothing else is
// listening yet, so hold the process open while recovery waits for the bank.
const holdOpen = setInterval(() => {}, 1000);
const recovered = wiring.payments.recover ? await wiring.payments.recover() : 0;
clearInterval(holdOpen);

const app = createShopApp({
  db,
  meter,
  payments: wiring.payments,
  checkoutMiddleware: wiring.checkoutMiddleware,
  lockOrders: wiring.lockOrders,
  pageSendsIdempotencyKey: wiring.pageSendsIdempotencyKey,
  bankUrl: config.bankUrl,
  instance: config.instance,
});

// A festival opens thousands of connections at once: a short accept queue (Node's default is 511) drops
// them, and a dropped SYN is retried only after a second or more.
const server = createServer(app);
server.listen({ port: config.port, host: config.host, backlog: 4096 });
server.keepAliveTimeout = 30_000;
server.once('listening', () => {
  const { port } = server.address() as AddressInfo;
  const url = `http://${config.host}:${port}`;
  const dashboard = `${url}${DASHBOARD_PATH}`;
  console.error(
    `${config.shop} shop (${config.instance}) listening on ${url} (dashboard ${dashboard}); recovered ${recovered} payments`,
  );
  process.send?.({ type: 'ready', url, port, dashboard, recovered });
});

let closing = false;
async function shutdown(): Promise<void> {
  if (closing) return;
  closing = true;
  server.close();
  server.closeAllConnections();
  await wiring.close();
  db.close();
  process.exit(0);
}
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
process.on('message', (message) => {
  if ((message as { type?: string }).type === 'shutdown') void shutdown();
});
