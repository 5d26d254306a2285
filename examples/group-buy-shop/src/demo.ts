import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { startBankSim } from '@floodgate/bank-sim';
import { settleOrder } from './checkout.js';
import {
  checkFrameworkServes,
  DEFAULT_BANK_RATE,
  type Framework,
  flagsOf,
  parseFramework,
  SHOP_KINDS,
  type ShopKind,
} from './config.js';
import { ShopDb } from './db.js';
import { Meter } from './meter.js';
import { DASHBOARD_PATH } from './pages.js';
import type { MeterName } from './payments.js';
import { createShopServer } from './shop-server.js';

// `pnpm demo`: a bank (bank-sim) and one shop in this process, to click through the storefront and watch
// the dashboard. `--shop naive|careful|floodgate`, `--framework express|fastify` (fastify: floodgate
// only), `--port 3000`, `--bank-rate 300`, `--db shop.db`.
let shop: ShopKind;
let framework: Framework;
let port: number;
let bankRate: number;
let dbFile: string;
try {
  const { values } = parseArgs({
    args: flagsOf(process.argv.slice(2)),
    strict: true,
    options: {
      shop: { type: 'string', default: 'floodgate' },
      framework: { type: 'string', default: process.env.SHOP_FRAMEWORK ?? 'express' },
      port: { type: 'string', default: '3000' },
      'bank-rate': { type: 'string', default: String(DEFAULT_BANK_RATE) },
      db: { type: 'string', default: 'shop.db' },
    },
  });
  shop = values.shop as ShopKind;
  if (!SHOP_KINDS.includes(shop))
    throw new TypeError(`Expected \`--shop\` to be one of ${SHOP_KINDS.join(', ')}, got \`${values.shop}\``);
  framework = parseFramework(values.framework);
  checkFrameworkServes(framework, shop);
  port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new TypeError(`Expected \`--port\` to be an integer from 0 to 65535, got \`${values.port}\``);
  bankRate = Number(values['bank-rate']);
  if (!Number.isFinite(bankRate) || bankRate <= 0)
    throw new TypeError(`Expected \`--bank-rate\` to be a finite number > 0, got \`${values['bank-rate']}\``);
  dbFile = values.db;
} catch (error) {
  // Before the bank, the database or a port: nothing to clean up.
  console.error(`demo: ${(error as Error).message}`);
  process.exit(2);
}

const bank = await startBankSim({ rate: bankRate, latencyMs: 20, latencyJitterMs: 40 });
const db = new ShopDb(dbFile);
const meter = new Meter<MeterName>();
const served = await createShopServer({
  shop,
  framework,
  db,
  meter,
  bankUrl: bank.url,
  bankRate,
  onSettled: (orderId, outcome) => settleOrder(db, meter, orderId, outcome),
});
// As `main.ts`: the orders follow the ledger before the shop listens, and the payments a previous run
// left in flight are recovered while it already serves.
if (served.payments.syncOrders) await served.payments.syncOrders();
const { server } = served;
server.listen(port, '127.0.0.1', () => {
  // The port it got: `--port 0` asks for any free one.
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  console.log(`${shop} shop (${framework}): ${url}/  dashboard: ${url}${DASHBOARD_PATH}`);
  console.log(`bank (limit ${bankRate}/s): ${bank.url}  ground truth: ${bank.url}/_stats  Ctrl-C to stop`);
  served.payments.recover?.().catch((error: unknown) => console.error('recovery failed:', error));
});
process.once('SIGINT', async () => {
  server.close();
  server.closeAllConnections();
  await served.close();
  db.close();
  await bank.close();
});
