import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createShopApp, settleOrder } from '../src/app.js';
import { ShopDb } from '../src/db.js';
import { floodgateShop } from '../src/floodgate-shop.js';
import { Meter } from '../src/meter.js';
import type { MeterName } from '../src/payments.js';
import { appPartsOf, type ShopWiring } from '../src/shops.js';

// Debian's chromium, driven by playwright-core. CI installs it (and sets FLOODGATE_REQUIRE_BROWSER=1, so
// a missing browser fails there); elsewhere the test skips with a notice.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  const message = `\n!!! group-buy-shop browser test SKIPPED: no chromium at ${CHROMIUM} (apt-get install -y chromium) !!!\n`;
  if (process.env.FLOODGATE_REQUIRE_BROWSER === '1') throw new Error(message);
  console.warn(message);
}

describe.skipIf(!haveChromium)('the storefront in a real browser', () => {
  let bank: BankSim;
  let db: ShopDb;
  let wiring: ShopWiring;
  let server: Server;
  let shopUrl: string;
  let userDataDir: string;
  let browser: BrowserContext;

  beforeAll(async () => {
    bank = await startBankSim({ rate: 50 });
    db = new ShopDb(':memory:');
    const meter = new Meter<MeterName>();
    wiring = await floodgateShop({
      db,
      meter,
      bankUrl: bank.url,
      bankRate: 50,
      onSettled: (orderId, outcome) => settleOrder(db, meter, orderId, outcome),
    });
    const app = createShopApp({
      db,
      meter,
      ...appPartsOf(wiring),
      bankUrl: bank.url,
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    shopUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    userDataDir = await mkdtemp(join(tmpdir(), 'shop-chromium-'));
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  }, 30_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await wiring?.close();
    db?.close();
    await bank?.close();
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  });

  it('joins a deal and pays; a second click does not charge again', async () => {
    const page = await browser.newPage();
    await page.goto(shopUrl);
    await page.fill('#student', 'browser-student');
    await page.dispatchEvent('#student', 'change');
    await expect.poll(() => page.locator('#shop-kind').textContent()).toBe('floodgate shop');
    await page.click('button[data-deal="d-kettle"]');
    await page.waitForSelector('#checkout:not([hidden])');
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();

    const order = db.orders('paid').find((o) => o.studentId === 'browser-student');
    expect(order).toMatchObject({ dealId: 'd-kettle', amount: 1200, status: 'paid' });
    expect(bank.stats()).toMatchObject({ charges: 1, ordersChargedMoreThanOnce: 0 });

    // The page sends the same Idempotency-Key again: the shop replays its first answer.
    const [again] = await Promise.all([page.waitForResponse('**/api/checkout'), page.click('#pay')]);
    expect(again.status()).toBe(201);
    expect(await again.headerValue('idempotent-replayed')).toBe('true');
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();
    expect(bank.stats()).toMatchObject({ charges: 1, ordersChargedMoreThanOnce: 0 });

    const dashboard = await browser.newPage();
    await dashboard.goto(`${shopUrl}/dashboard`);
    await dashboard.locator('#paid', { hasText: /^1$/ }).waitFor();
    expect(await dashboard.locator('#limit').textContent()).toBe('50');
    expect(await dashboard.locator('#double').textContent()).toBe('0');
    expect(await dashboard.locator('#chart polyline').count()).toBeGreaterThan(0);
  }, 30_000);

  it('shows a declined card as declined, and nothing is charged', async () => {
    const page = await browser.newPage();
    await page.goto(shopUrl);
    await page.fill('#student', 'broke-student');
    await page.dispatchEvent('#student', 'change');
    await expect.poll(() => page.locator('#shop-kind').textContent()).toBe('floodgate shop');
    await page.click('button[data-deal="d-textbook"]');
    await page.waitForSelector('#checkout:not([hidden])');
    await page.selectOption('#card', 'tok_decline_insufficient_funds');
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Declined/ }).waitFor();
    const order = db.orders('declined').find((o) => o.studentId === 'broke-student');
    expect(order?.declineReason).toBe('insufficient_funds');
    expect(bank.stats().declines).toBe(1);
  }, 30_000);
});
