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
    await expect.poll(() => page.locator('#shop-kind').textContent()).toBe('floodgate shop on Express');
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
    expect(await dashboard.locator('#shed').textContent()).toBe('0');
    expect(await dashboard.locator('#chart polyline').count()).toBeGreaterThan(0);
  }, 30_000);

  it('shows a declined card as declined, nothing is charged; then pays with another card, charged once', async () => {
    const page = await browser.newPage();
    await page.goto(shopUrl);
    await page.fill('#student', 'broke-student');
    await page.dispatchEvent('#student', 'change');
    await expect.poll(() => page.locator('#shop-kind').textContent()).toBe('floodgate shop on Express');
    await page.click('button[data-deal="d-textbook"]');
    await page.waitForSelector('#checkout:not([hidden])');
    const chargesBefore = bank.stats().charges;
    await page.selectOption('#card', 'tok_decline_insufficient_funds');
    const [declined] = await Promise.all([page.waitForRequest('**/api/checkout'), page.click('#pay')]);
    await page.locator('#result', { hasText: /^Declined/ }).waitFor();
    const order = db.orders('declined').find((o) => o.studentId === 'broke-student');
    expect(order?.declineReason).toBe('insufficient_funds');
    expect(bank.stats().declines).toBe(1);
    expect(bank.stats().charges).toBe(chargesBefore);

    // Another card: a new checkout, with a new key.
    await page.selectOption('#card', 'tok_ok');
    const [paid] = await Promise.all([page.waitForRequest('**/api/checkout'), page.click('#pay')]);
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();
    expect(await paid.headerValue('idempotency-key')).not.toBe(await declined.headerValue('idempotency-key'));
    expect(db.order(order?.id ?? '')?.status).toBe('paid');
    expect(bank.stats()).toMatchObject({ charges: chargesBefore + 1, ordersChargedMoreThanOnce: 0 });
  }, 30_000);

  it('keeps the student across a reload, so joining the deal again shows the same order', async () => {
    const page = await browser.newPage();
    await page.goto(shopUrl);
    // A student who never typed an id: the page made one up.
    await page.evaluate('localStorage.clear()');
    await page.reload();
    await expect.poll(() => page.locator('#shop-kind').textContent()).toBe('floodgate shop on Express');
    const student = await page.inputValue('#student');
    await page.click('button[data-deal="d-kettle"]');
    await page.waitForSelector('#checkout:not([hidden])');
    const summary = await page.locator('#order-summary').textContent();

    await page.reload();
    await expect.poll(() => page.locator('#shop-kind').textContent()).toBe('floodgate shop on Express');
    expect(await page.inputValue('#student')).toBe(student);
    await page.click('button[data-deal="d-kettle"]');
    await page.waitForSelector('#checkout:not([hidden])');
    expect(await page.locator('#order-summary').textContent()).toBe(summary);
    expect(db.orders().filter((o) => o.studentId === student)).toHaveLength(1);
  }, 30_000);

  it('does not show the answer of an order’s checkout once the student moved on to another order', async () => {
    const page = await browser.newPage();
    await page.goto(shopUrl);
    await page.fill('#student', 'switching-student');
    await page.dispatchEvent('#student', 'change');
    await expect.poll(() => page.locator('#shop-kind').textContent()).toBe('floodgate shop on Express');
    await page.click('button[data-deal="d-kettle"]');
    await page.waitForSelector('#checkout:not([hidden])');
    // The first order's checkout is slow to answer...
    let letThrough!: () => void;
    const slow = new Promise<void>((resolve) => (letThrough = resolve));
    await page.route('**/api/checkout', async (route) => {
      await slow;
      await route.continue();
    });
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Paying/ }).waitFor();
    // ...and meanwhile the student opens another order.
    await page.click('button[data-deal="d-textbook"]');
    await page.locator('#order-summary', { hasText: /Textbook/ }).waitFor();

    const [answer] = await Promise.all([page.waitForResponse('**/api/checkout'), letThrough()]);
    expect(answer.status()).toBe(201);
    // Once the page has read the answer (its body is in, and the page's queued tasks ran), what it shows
    // is still about the textbook order, which is not paid.
    await answer.finished();
    await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 0)));
    expect(await page.locator('#result').textContent()).not.toMatch(/^Paid/);
    const textbook = db
      .orders()
      .find((o) => o.studentId === 'switching-student' && o.dealId === 'd-textbook');
    expect(textbook?.status).toBe('created');
  }, 30_000);

  it('says so when the shop is not answering, and keeps watching a pending payment through it', async () => {
    const page = await browser.newPage();
    // The page's timers run on this clock: polling is driven below, without waiting for it.
    await page.clock.install();
    await page.goto(shopUrl);
    await page.fill('#student', 'offline-student');
    await page.dispatchEvent('#student', 'change');
    await expect.poll(() => page.locator('#shop-kind').textContent()).toBe('floodgate shop on Express');
    await page.click('button[data-deal="d-headphones"]');
    await page.waitForSelector('#checkout:not([hidden])');
    const orderId = db.orders('created').find((o) => o.studentId === 'offline-student')?.id as string;

    // The shop is down: the click fails at once instead of leaving "Paying…".
    await page.route('**/api/checkout', (route) => route.abort('connectionrefused'));
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Shop not answering/ }).waitFor();

    // Back, the bank's answer is unknown: "pending". The order page is unreachable for a while (the shop
    // restarts), then says `created` (the restarted shop found nothing sent): payable again.
    await page.unroute('**/api/checkout');
    await page.route('**/api/checkout', (route) =>
      route.fulfill({
        status: 202,
        contentType: 'application/json',
        body: JSON.stringify({ status: 'pending', orderId }),
      }),
    );
    const answers: Array<'down' | 'pending' | 'created'> = ['down', 'pending', 'down', 'created'];
    let polls = 0;
    await page.route('**/api/orders/*', (route) => {
      const answer = answers[polls++] ?? 'created';
      if (answer === 'down') return route.abort('connectionrefused');
      return route.fulfill({
        contentType: 'application/json',
        body: JSON.stringify({ id: orderId, status: answer }),
      });
    });
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Payment pending/ }).waitFor();
    for (let i = 1; i <= answers.length; i++) {
      await page.clock.runFor(1000);
      await expect.poll(() => polls).toBe(i);
      if (i === 1) await page.locator('#result', { hasText: /Shop not answering; still checking/ }).waitFor();
      if (i < answers.length) await page.locator('#result', { hasText: /Do not pay again/ }).waitFor();
    }
    await page
      .locator('#result', { hasText: /^The payment did not go through. You can pay again/ })
      .waitFor();

    // Pending for good: after a minute the page says it stopped checking.
    answers.splice(0, answers.length, ...Array<'pending'>(60).fill('pending'));
    polls = 0;
    await page.click('#pay');
    for (let i = 1; i <= 60; i++) {
      await page.clock.runFor(1000);
      await expect.poll(() => polls).toBe(i);
    }
    await page.locator('#result', { hasText: /^Still pending: we stopped checking/ }).waitFor();
    expect(bank.stats().ordersChargedMoreThanOnce).toBe(0);
  }, 60_000);
});
