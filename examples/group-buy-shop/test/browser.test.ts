import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import { type BrowserContext, chromium, type Page, type Request, type Route } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
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

/** What the dashboard shows of `GET /api/stats`. */
interface StatsBody {
  shop: string;
  instance: string;
  bankRate: number;
  perSecond: Record<'checkouts' | 'shed' | 'bank', number>;
  payments: { breaker: string; queued: number };
  orders: Record<'paid' | 'pending' | 'declined' | 'failed', number>;
  bank: { ordersChargedMoreThanOnce: number; extraCharges: number };
}

describe.skipIf(!haveChromium)('the storefront in a real browser', () => {
  let bank: BankSim;
  let db: ShopDb;
  let wiring: ShopWiring;
  let server: Server;
  let shopUrl: string;
  let userDataDir: string;
  let browser: BrowserContext;
  /** The `Idempotency-Key` of every checkout that reached the shop, by student, as the shop received them. */
  const checkoutKeys = new Map<string, Array<string | undefined>>();

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
    server.prependListener('request', (request) => {
      if (request.url !== '/api/checkout') return;
      const student = String(request.headers['x-student-id']);
      const key = request.headers['idempotency-key'];
      checkoutKeys.set(student, [
        ...(checkoutKeys.get(student) ?? []),
        typeof key === 'string' ? key : undefined,
      ]);
    });
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

  // The fake clock (`page.clock`) is the whole context's: one a test stopped must run again for the next.
  let clockPaused = false;
  afterEach(async () => {
    if (clockPaused) await browser.clock.resume();
    clockPaused = false;
  });

  /** From here the page's clock (installed) stands still: it moves only by `runFor()`. */
  async function pauseClock(page: Page): Promise<void> {
    clockPaused = true;
    await page.clock.pauseAt(await page.evaluate(() => Date.now() + 1000));
  }

  /** Opens the storefront as `student`, once it has said which shop serves it. */
  async function openShop(page: Page, student: string): Promise<void> {
    await page.goto(shopUrl);
    await page.fill('#student', student);
    await page.dispatchEvent('#student', 'change');
    await expect.poll(() => page.locator('#shop-kind').textContent()).toBe('floodgate shop on Express');
  }

  it('joins a deal and pays; a double click sends one checkout, and a paid order cannot be paid again', async () => {
    const page = await browser.newPage();
    await openShop(page, 'browser-student');
    await page.click('button[data-deal="d-kettle"]');
    await page.waitForSelector('#checkout:not([hidden])');
    const keys: Array<string | undefined> = [];
    page.on('request', (request) => {
      if (request.url().endsWith('/api/checkout')) keys.push(request.headers()['idempotency-key']);
    });
    await page.dblclick('#pay');
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();

    const order = db.orders('paid').find((o) => o.studentId === 'browser-student');
    expect(order).toMatchObject({ dealId: 'd-kettle', amount: 1200, status: 'paid' });
    expect(bank.stats()).toMatchObject({ charges: 1, ordersChargedMoreThanOnce: 0 });
    // The second click of the double click found "Pay" locked while the first was under way.
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatch(/^"[0-9a-f-]{36}"$/);
    // Paid: "Pay" stays locked, for the mouse and the keyboard.
    expect(await page.getAttribute('#pay', 'aria-disabled')).toBe('true');
    await page.click('#pay', { force: true });
    await page.focus('#pay');
    await page.keyboard.press('Enter');
    expect(await page.locator('#result').textContent()).toMatch(/^Paid/);
    expect(keys).toHaveLength(1);
    expect(bank.stats()).toMatchObject({ charges: 1, ordersChargedMoreThanOnce: 0 });

    const dashboard = await browser.newPage();
    await dashboard.goto(`${shopUrl}/dashboard`);
    await dashboard.locator('#paid', { hasText: /^1$/ }).waitFor();
    expect(await dashboard.locator('#limit').textContent()).toBe('50');
    expect(await dashboard.locator('#double').textContent()).toBe('0');
    expect(await dashboard.locator('#shed').textContent()).toBe('0');
    expect(await dashboard.locator('#chart polyline').count()).toBeGreaterThan(0);
  }, 30_000);

  it('keeps the key of a click whose answer was lost: the same card is answered from it, another card is told how the order ended', async () => {
    const page = await browser.newPage();
    await openShop(page, 'lost-answer-student');
    await page.click('button[data-deal="d-textbook"]');
    await page.waitForSelector('#checkout:not([hidden])');
    // The shop takes the click and pays, but its answer never reaches the page.
    await page.route('**/api/checkout', async (route) => {
      await route.fetch();
      await route.abort('connectionreset');
    });
    const [lost] = await Promise.all([page.waitForRequest('**/api/checkout'), page.click('#pay')]);
    await page.locator('#result', { hasText: /^Shop not answering/ }).waitFor();
    const order = db.orders('paid').find((o) => o.studentId === 'lost-answer-student');
    expect(order?.dealId).toBe('d-textbook');
    const chargesBefore = bank.stats().charges;
    await page.unroute('**/api/checkout');

    // Clicked again with the same card: the same key, answered from the first click.
    const [again] = await Promise.all([page.waitForResponse('**/api/checkout'), page.click('#pay')]);
    expect(await again.request().headerValue('idempotency-key')).toBe(
      await lost.headerValue('idempotency-key'),
    );
    expect(again.status()).toBe(201);
    expect(await again.headerValue('idempotent-replayed')).toBe('true');
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();
    expect(bank.stats()).toMatchObject({ charges: chargesBefore, ordersChargedMoreThanOnce: 0 });

    // Another student, the same lost answer, then another card: the key's first use was another card
    // (422), so the page asks how the order ended instead of saying "failed".
    await page.fill('#student', 'lost-answer-student-2');
    await page.dispatchEvent('#student', 'change');
    await page.click('button[data-deal="d-textbook"]');
    await page.waitForSelector('#checkout:not([hidden])');
    await page.route('**/api/checkout', async (route) => {
      await route.fetch();
      await route.abort('connectionreset');
    });
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Shop not answering/ }).waitFor();
    await page.unroute('**/api/checkout');
    await page.selectOption('#card', 'tok_decline_insufficient_funds');
    const [reused] = await Promise.all([page.waitForResponse('**/api/checkout'), page.click('#pay')]);
    expect(reused.status()).toBe(422);
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();
    expect(bank.stats()).toMatchObject({ charges: chargesBefore + 1, ordersChargedMoreThanOnce: 0 });
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
    // Said as a student reads it, with what to do next.
    expect(await page.locator('#result').textContent()).toBe(
      'Declined: not enough funds on this card. Nothing was charged. Choose another card and pay again.',
    );
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

  /** The page's checkouts in progress of `student` (localStorage: `checkout:<student>:<order>` -> key). */
  function storedCheckouts(page: Page, student: string): Promise<Record<string, string>> {
    const prefix = JSON.stringify(`checkout:${student}:`);
    return page.evaluate(`Object.fromEntries(
      Object.entries(localStorage).filter(([name]) => name.startsWith(${prefix})))`);
  }

  it('keeps the key of a click on its way across a reload: "Pay" after it is the same checkout, charged once', async () => {
    const page = await browser.newPage();
    const student = 'reload-paying-student';
    await openShop(page, student);
    await page.click('button[data-deal="d-headphones"]');
    await page.waitForSelector('#checkout:not([hidden])');
    const orderId = db.orders('created').find((o) => o.studentId === student)?.id as string;
    const chargesBefore = bank.stats().charges;
    // The click is slow to go out (a weak signal), and the student reloads the page on "Paying…". (Held,
    // not unrouted: Playwright would send a request still held by a handler it removes.)
    let onTheWay!: (request: Request) => void;
    const clicked = new Promise<Request>((resolve) => (onTheWay = resolve));
    let held = false;
    await page.route('**/api/checkout', (route) => {
      if (held) return route.continue();
      held = true;
      onTheWay(route.request());
    });
    await page.click('#pay');
    const first = await clicked;
    const key = await first.headerValue('idempotency-key');
    await page.locator('#result', { hasText: /^Paying/ }).waitFor();
    expect(await storedCheckouts(page, student)).toEqual({
      [`checkout:${student}:${orderId}`]: JSON.parse(key as string),
    });
    await page.reload();
    await expect.poll(() => page.locator('#shop-kind').textContent()).toBe('floodgate shop on Express');
    // The shop has not seen that click yet: the order can be paid. The student joins the deal again, which
    // finds the same order (and keeps its checkout).
    await page.click('button[data-deal="d-headphones"]');
    await page.locator('#order-summary', { hasText: orderId }).waitFor();
    const said = await page.locator('#result').textContent();
    expect(await page.getAttribute('#pay', 'aria-disabled')).toBe('false');
    // The click from before the reload reaches the shop now, and pays.
    const late = await page.request.post(`${shopUrl}/api/checkout`, {
      headers: await first.allHeaders(),
      data: first.postData() ?? '',
    });
    expect(late.status()).toBe(201);

    const [again] = await Promise.all([page.waitForResponse('**/api/checkout'), page.click('#pay')]);
    expect(await again.request().headerValue('idempotency-key')).toBe(key);
    // And the page had said so.
    expect(said).toMatch(/^Not paid yet\. "Pay" goes on with the checkout you started/);
    // One checkout: the shop answers the second click from the first one.
    expect(again.status()).toBe(201);
    expect(await again.headerValue('idempotent-replayed')).toBe('true');
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();
    expect(checkoutKeys.get(student)).toEqual([key, key]);
    expect(bank.stats()).toMatchObject({ charges: chargesBefore + 1, ordersChargedMoreThanOnce: 0 });
    expect(await storedCheckouts(page, student)).toEqual({});
  }, 30_000);

  it('shows a paid order as paid after a reload, with "Pay" locked', async () => {
    const page = await browser.newPage();
    const student = 'reload-paid-student';
    await openShop(page, student);
    await page.click('button[data-deal="d-kettle"]');
    await page.waitForSelector('#checkout:not([hidden])');
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();
    const order = db.orders('paid').find((o) => o.studentId === student);
    const chargesBefore = bank.stats().charges;

    await page.reload();
    const checkouts: string[] = [];
    page.on('request', (request) => {
      if (request.url().endsWith('/api/checkout')) checkouts.push(request.url());
    });
    // Without joining the deal again: the page shows the order it showed, as the shop has it now.
    await page.locator('#result', { hasText: /^Already paid/ }).waitFor({ timeout: 10_000 });
    expect(await page.locator('#order-summary').textContent()).toBe(
      `Order ${order?.id} — Kettle for every kitchen, €12.00`,
    );
    expect(await page.getAttribute('#pay', 'aria-disabled')).toBe('true');
    expect(await page.isDisabled('#card')).toBe(true);
    await page.click('#pay', { force: true });
    await page.focus('#pay');
    await page.keyboard.press('Enter');
    expect(await page.locator('#result').textContent()).toMatch(/^Already paid/);
    expect(checkouts).toHaveLength(0);
    expect(bank.stats().charges).toBe(chargesBefore);
    expect(await storedCheckouts(page, student)).toEqual({});
  }, 30_000);

  it('shows a pending payment as pending after a reload, "Pay" locked and the key kept, and watches it to its end', async () => {
    const page = await browser.newPage();
    await page.clock.install();
    const student = 'reload-pending-student';
    await openShop(page, student);
    await page.click('button[data-deal="d-textbook"]');
    await page.waitForSelector('#checkout:not([hidden])');
    const orderId = db.orders('created').find((o) => o.studentId === student)?.id as string;
    await pauseClock(page);
    // The bank is slow: the shop answers "pending", and the order stays pending while it asks the bank.
    const keys: Array<string | undefined> = [];
    await page.route('**/api/checkout', (route) => {
      keys.push(route.request().headers()['idempotency-key']);
      db.setOrderStatus(orderId, 'pending');
      return route.fulfill({
        status: 202,
        contentType: 'application/json',
        headers: { location: `/api/orders/${orderId}` },
        body: JSON.stringify({
          status: 'pending',
          orderId,
          detail: 'Payment pending: we will confirm it shortly.',
        }),
      });
    });
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Payment pending/ }).waitFor();
    const inProgress = { [`checkout:${student}:${orderId}`]: JSON.parse(keys[0] as string) };
    expect(await storedCheckouts(page, student)).toEqual(inProgress);

    await page.reload();
    await page.locator('#result', { hasText: /^Payment pending/ }).waitFor({ timeout: 10_000 });
    expect(await page.locator('#order-summary').textContent()).toContain(orderId);
    expect(await page.getAttribute('#pay', 'aria-disabled')).toBe('true');
    expect(await page.isDisabled('#card')).toBe(true);
    await page.click('#pay', { force: true });
    expect(keys).toHaveLength(1);
    expect(await storedCheckouts(page, student)).toEqual(inProgress);

    // The bank answers: the shop settles the order, and the page's next look at it says so.
    db.setOrderStatus(orderId, 'paid', { paymentId: 'pay_reload_pending' });
    await page.clock.runFor(1000);
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();
    expect(await storedCheckouts(page, student)).toEqual({});
  }, 30_000);

  it('removes a checkout’s entry once its answer is final: declined, refused for good, paid', async () => {
    const page = await browser.newPage();
    const student = 'final-answers-student';
    await openShop(page, student);
    await page.click('button[data-deal="d-textbook"]');
    await page.waitForSelector('#checkout:not([hidden])');
    const orderId = db.orders('created').find((o) => o.studentId === student)?.id as string;
    const item = `checkout:${student}:${orderId}`;
    // What the page keeps while each click is on its way, and the key the click carries.
    const whileSent: Array<{ kept: Record<string, string>; key: string | undefined }> = [];
    const refusal = { answer: false };
    await page.route('**/api/checkout', async (route) => {
      whileSent.push({
        kept: await storedCheckouts(page, student),
        key: route.request().headers()['idempotency-key'],
      });
      // The shop was started on a fresh database: it knows no such order (nothing started).
      if (refusal.answer) {
        return route.fulfill({
          status: 404,
          contentType: 'application/problem+json',
          body: JSON.stringify({
            status: 404,
            title: 'Not Found',
            detail: `You have no order \`${orderId}\``,
          }),
        });
      }
      return route.continue();
    });
    const keptWhileSent = (i: number) => ({ [item]: JSON.parse(whileSent[i]?.key as string) });

    await page.selectOption('#card', 'tok_decline_insufficient_funds');
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Declined/ }).waitFor();
    expect(whileSent[0]?.kept).toEqual(keptWhileSent(0));
    expect(await storedCheckouts(page, student)).toEqual({});

    refusal.answer = true;
    await page.selectOption('#card', 'tok_ok');
    await page.click('#pay');
    await page.locator('#result', { hasText: /^You have no order/ }).waitFor();
    expect(whileSent[1]?.kept).toEqual(keptWhileSent(1));
    expect(await storedCheckouts(page, student)).toEqual({});

    refusal.answer = false;
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();
    expect(whileSent[2]?.kept).toEqual(keptWhileSent(2));
    expect(await storedCheckouts(page, student)).toEqual({});
    // Each final answer ended its checkout: every click was a new one.
    expect(new Set(whileSent.map((sent) => sent.key)).size).toBe(3);
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

  it('keeps "Pay" locked and the key when the student joins the same deal again while its click is on its way', async () => {
    const page = await browser.newPage();
    await openShop(page, 'rejoining-student');
    await page.click('button[data-deal="d-kettle"]');
    await page.waitForSelector('#checkout:not([hidden])');
    const chargesBefore = bank.stats().charges;
    let letThrough!: () => void;
    const slow = new Promise<void>((resolve) => (letThrough = resolve));
    const keys: Array<string | undefined> = [];
    await page.route('**/api/checkout', async (route) => {
      keys.push(route.request().headers()['idempotency-key']);
      await slow;
      await route.continue();
    });
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Paying/ }).waitFor();
    // The click has not reached the shop yet, so the order it answers with is still `created`.
    await Promise.all([page.waitForResponse('**/api/deals'), page.click('button[data-deal="d-kettle"]')]);
    expect(await page.locator('#result').textContent()).toMatch(/^Paying/);
    expect(await page.getAttribute('#pay', 'aria-disabled')).toBe('true');
    await page.click('#pay', { force: true });

    letThrough();
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();
    expect(keys).toHaveLength(1);
    expect(bank.stats()).toMatchObject({ charges: chargesBefore + 1, ordersChargedMoreThanOnce: 0 });
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
    let checkouts = 0;
    await page.route('**/api/checkout', (route) => {
      checkouts++;
      return route.fulfill({
        status: 202,
        contentType: 'application/json',
        body: JSON.stringify({ status: 'pending', orderId }),
      });
    });
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
    // "Do not pay again": "Pay" and the card are locked while the page watches the payment.
    expect(await page.getAttribute('#pay', 'aria-disabled')).toBe('true');
    expect(await page.isDisabled('#card')).toBe(true);
    await page.click('#pay', { force: true });
    expect(checkouts).toBe(1);
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

  it('on a phone, with the keyboard: joining moves to the checkout, Tab reaches the card and "Pay", Enter pays', async () => {
    const page = await browser.newPage();
    await page.setViewportSize({ width: 390, height: 844 });
    await openShop(page, 'keyboard-student');
    // Readable at phone width: the form controls take the page's text size, not the browser's 13 px.
    for (const control of ['#student', '#card', '#pay']) {
      const px = await page.evaluate(
        `parseFloat(getComputedStyle(document.querySelector('${control}')).fontSize)`,
      );
      expect(px, control).toBeGreaterThanOrEqual(16);
    }
    // The test's TypeScript has no DOM types: what runs in the page is written as a string.
    const onScreen = (selector: string) =>
      page.evaluate(`(({ top, bottom }) => top >= 0 && bottom <= innerHeight)(
        document.querySelector('${selector}').getBoundingClientRect())`);
    const focused = () => page.evaluate('document.activeElement?.id');

    await page.focus('button[data-deal="d-headphones"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#checkout:not([hidden])');
    // The deals are redrawn after a join: the focus goes to the checkout, not to the page's start with the
    // pressed button, and the checkout (below the deals on a phone) comes into view.
    await expect.poll(focused).toBe('checkout-title');
    expect(await onScreen('#pay')).toBe(true);
    await page.keyboard.press('Tab');
    expect(await focused()).toBe('card');
    await page.keyboard.press('Tab');
    expect(await focused()).toBe('pay');
    await page.keyboard.press('Enter');
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();
    expect(await onScreen('#result')).toBe(true);
    expect(db.orders('paid').filter((o) => o.studentId === 'keyboard-student')).toHaveLength(1);
  }, 30_000);

  it('says why joining did not work where the student looks, and closes the checkout when the student id changes', async () => {
    const page = await browser.newPage();
    await openShop(page, 'notice-student');
    await page.click('button[data-deal="d-kettle"]');
    await page.waitForSelector('#checkout:not([hidden])');
    const first = await page.locator('#order-summary').textContent();

    // Another student: the order shown is not theirs (paying it would be "You have no order").
    await page.fill('#student', 'bad id!');
    await page.dispatchEvent('#student', 'change');
    expect(await page.locator('#checkout').isHidden()).toBe(true);
    expect(await page.evaluate("document.getElementById('student').validity.patternMismatch")).toBe(true);
    await page.click('button[data-deal="d-kettle"]');
    // Said above the deals: the checkout, where such a message used to go, is closed.
    await page.locator('#notice', { hasText: /^Student ID: 1-64 letters/ }).waitFor();
    expect(await page.locator('#checkout').isHidden()).toBe(true);
    expect(db.orders().filter((o) => o.studentId === 'bad id!')).toHaveLength(0);

    await page.fill('#student', 'notice-student-2');
    await page.dispatchEvent('#student', 'change');
    expect(await page.locator('#notice').textContent()).toBe('');
    await page.route('**/api/deals/*/join', (route) => route.abort('connectionrefused'));
    await page.click('button[data-deal="d-kettle"]');
    await page.locator('#notice', { hasText: /^Shop not answering/ }).waitFor();
    await page.unroute('**/api/deals/*/join');
    await page.click('button[data-deal="d-kettle"]');
    await page.waitForSelector('#checkout:not([hidden])');
    expect(await page.locator('#notice').textContent()).toBe('');
    expect(await page.locator('#order-summary').textContent()).not.toBe(first);
  }, 30_000);

  it('honours Retry-After: "Pay" comes back when the busy (503) or rate-limited (429) shop said it may', async () => {
    const page = await browser.newPage();
    await page.clock.install();
    await openShop(page, 'busy-student');
    await page.click('button[data-deal="d-kettle"]');
    await page.waitForSelector('#checkout:not([hidden])');
    await pauseClock(page);
    let refused = 0;
    await page.route('**/api/checkout', async (route) => {
      refused++;
      const busy = refused === 1;
      // The shop sends seconds; an HTTP date is read too (whole seconds: 2 s from the page's time, which
      // stands still).
      const at = await page.evaluate(() => Date.now() + 2000);
      return route.fulfill({
        status: busy ? 503 : 429,
        contentType: 'application/problem+json',
        headers: { 'retry-after': busy ? '3' : new Date(at).toUTCString() },
        body: JSON.stringify(
          busy
            ? { status: 503, detail: 'The upstream queue is full', code: 'ERR_LOAD_SHED' }
            : { status: 429, detail: 'Too many requests', code: 'ERR_RATE_LIMITED' },
        ),
      });
    });
    const tryToPay = async () => {
      await page.click('#pay', { force: true });
      await page.focus('#pay');
      await page.keyboard.press('Enter');
    };

    await page.click('#pay');
    await page
      .locator('#result', { hasText: 'The shop is busy; nothing was charged. You can pay again in 3 s.' })
      .waitFor();
    expect(await page.getAttribute('#pay', 'aria-disabled')).toBe('true');
    await tryToPay();
    await page.clock.runFor(1000);
    await page.locator('#result', { hasText: /in 2 s\.$/ }).waitFor();
    await tryToPay();
    expect(refused).toBe(1);
    await page.clock.runFor(2000);
    await page
      .locator('#result', { hasText: /^The shop is busy; nothing was charged. You can pay again now/ })
      .waitFor();
    expect(await page.getAttribute('#pay', 'aria-disabled')).toBe('false');

    await page.click('#pay');
    await page
      .locator('#result', {
        hasText: 'Too many attempts in a short time; nothing was charged. You can pay again in 2 s.',
      })
      .waitFor();
    await tryToPay();
    expect(refused).toBe(2);
    await page.clock.runFor(2000);
    await page.locator('#result', { hasText: /You can pay again now/ }).waitFor();
    await page.unroute('**/api/checkout');
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();
    expect(db.orders('paid').filter((o) => o.studentId === 'busy-student')).toHaveLength(1);
  }, 30_000);

  it('watches the order when another payment of it is under way (409), with "Pay" and the card locked', async () => {
    const page = await browser.newPage();
    await page.clock.install();
    await openShop(page, 'second-tab-student');
    await page.click('button[data-deal="d-textbook"]');
    await page.waitForSelector('#checkout:not([hidden])');
    const orderId = db.orders('created').find((o) => o.studentId === 'second-tab-student')?.id as string;
    await pauseClock(page);
    let checkouts = 0;
    // Another tab pays the order with another card: this one is told so, as the shop tells it.
    await page.route('**/api/checkout', (route) => {
      checkouts++;
      return route.fulfill({
        status: 409,
        contentType: 'application/problem+json',
        headers: { 'retry-after': '2' },
        body: JSON.stringify({
          status: 'in-progress',
          code: 'ERR_PAYMENT_MISMATCH',
          orderId,
          detail:
            'Another payment of this order, with other payment details, is in progress or done: wait for it.',
        }),
      });
    });
    const answers = ['paying', 'paid'];
    let polls = 0;
    await page.route('**/api/orders/*', (route) =>
      route.fulfill({
        contentType: 'application/json',
        body: JSON.stringify({ id: orderId, status: answers[polls++] ?? 'paid' }),
      }),
    );
    await page.click('#pay');
    await page.locator('#result', { hasText: /^Another payment of this order is under way/ }).waitFor();
    expect(await page.getAttribute('#pay', 'aria-disabled')).toBe('true');
    expect(await page.isDisabled('#card')).toBe(true);
    await page.click('#pay', { force: true });
    expect(checkouts).toBe(1);
    await page.clock.runFor(1000);
    await expect.poll(() => polls).toBe(1);
    await page.locator('#result', { hasText: /^Another payment of this order is under way/ }).waitFor();
    await page.clock.runFor(1000);
    await expect.poll(() => polls).toBe(2);
    await page.locator('#result', { hasText: /^Paid/ }).waitFor();
    expect(checkouts).toBe(1);
  }, 30_000);

  it('the dashboard shows what /api/stats says, polls once the last poll is answered, and greys the numbers out when the shop stops answering', async () => {
    const dashboard = await browser.newPage();
    await dashboard.clock.install();
    let served: StatsBody | undefined;
    let held: Route | undefined;
    let polls = 0;
    await dashboard.route('**/api/stats', async (route) => {
      polls++;
      // The first poll goes to the shop; the next is held, so the numbers compared below stay on screen.
      if (served) {
        held ??= route;
        return;
      }
      const response = await route.fetch();
      served = await response.json();
      await route.fulfill({ response });
    });
    await dashboard.goto(`${shopUrl}/dashboard`);
    await dashboard.locator('#who', { hasText: / shop \(/ }).waitFor();
    const stats = served as StatsBody;
    const shown = await dashboard.evaluate(`Object.fromEntries(
      [...document.querySelectorAll('.card .value, #limit, #who')].map((element) => [element.id, element.textContent]),
    )`);
    expect(shown).toEqual({
      who: `${stats.shop} shop (${stats.instance})`,
      checkouts: String(stats.perSecond.checkouts),
      shed: String(stats.perSecond.shed),
      bank: String(stats.perSecond.bank),
      limit: String(stats.bankRate),
      breaker: stats.payments.breaker,
      queued: String(stats.payments.queued),
      paid: String(stats.orders.paid),
      pending: String(stats.orders.pending),
      declined: String(stats.orders.declined),
      failed: String(stats.orders.failed),
      double: String(stats.bank.ordersChargedMoreThanOnce),
      extra: String(stats.bank.extraCharges),
    });

    // A poll that is slow to answer: the next one waits for it (polls sent every second regardless could
    // be answered out of order, and show older numbers after newer).
    await pauseClock(dashboard);
    await expect.poll(() => held !== undefined).toBe(true);
    await dashboard.clock.runFor(3000);
    // Requests are routed in the order sent: once this one is answered, any poll sent before it was seen.
    await dashboard.evaluate(() => fetch('/api/config').then((response) => response.ok));
    expect(polls).toBe(2);

    await held?.abort('connectionrefused');
    await dashboard.locator('#who', { hasText: /^shop not answering: numbers as of / }).waitFor();
    expect(await dashboard.getAttribute('#board', 'class')).toContain('stale');
    expect(await dashboard.locator('#paid').textContent()).toBe(String(stats.orders.paid));
    await dashboard.close();
  }, 30_000);
});
