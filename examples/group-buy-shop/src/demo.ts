import { parseArgs } from 'node:util';
import { startBankSim } from '@floodgate/bank-sim';
import { createShopApp, settleOrder } from './app.js';
import { DEFAULT_BANK_RATE, SHOP_KINDS, type ShopKind } from './config.js';
import { ShopDb } from './db.js';
import { Meter } from './meter.js';
import { DASHBOARD_PATH } from './pages.js';
import type { MeterName } from './payments.js';
import { appPartsOf, buildShop } from './shops.js';

// `pnpm demo`: a bank (bank-sim) and one shop in this process, to click through the storefront and watch
// the dashboard. `--shop naive|careful|floodgate`, `--port 3000`, `--bank-rate 300`, `--db shop.db`.
const { values } = parseArgs({
  options: {
    shop: { type: 'string', default: 'floodgate' },
    port: { type: 'string', default: '3000' },
    'bank-rate': { type: 'string', default: String(DEFAULT_BANK_RATE) },
    db: { type: 'string', default: 'shop.db' },
  },
});
const shop = values.shop as ShopKind;
if (!SHOP_KINDS.includes(shop))
  throw new TypeError(`Expected \`--shop\` to be one of ${SHOP_KINDS.join(', ')}`);
const bankRate = Number(values['bank-rate']);

const bank = await startBankSim({ rate: bankRate, latencyMs: 20, latencyJitterMs: 40 });
const db = new ShopDb(values.db);
const meter = new Meter<MeterName>();
const wiring = await buildShop(shop, {
  db,
  meter,
  bankUrl: bank.url,
  bankRate,
  onSettled: (orderId, outcome) => settleOrder(db, meter, orderId, outcome),
});
// As `main.ts`: the orders follow the ledger before the shop listens, and the payments a previous run
// left in flight are recovered while it already serves.
if (wiring.payments.syncOrders) await wiring.payments.syncOrders();
const app = createShopApp({
  db,
  meter,
  ...appPartsOf(wiring),
  bankUrl: bank.url,
});
const server = app.listen(Number(values.port), '127.0.0.1', () => {
  console.log(
    `${shop} shop: http://127.0.0.1:${values.port}/  dashboard: http://127.0.0.1:${values.port}${DASHBOARD_PATH}`,
  );
  console.log(`bank (limit ${bankRate}/s): ${bank.url}  ground truth: ${bank.url}/_stats  Ctrl-C to stop`);
  wiring.payments.recover?.().catch((error: unknown) => console.error('recovery failed:', error));
});
process.once('SIGINT', async () => {
  server.close();
  server.closeAllConnections();
  await wiring.close();
  db.close();
  await bank.close();
});
