import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import type { RequestHandler } from 'express';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createShopApp } from './app.js';
import { ShopDb } from './db.js';
import { DASHBOARD_PATH } from './pages.js';
import type { PaymentIntent, Payments, PayOutcome } from './payments.js';

class ScriptedPayments implements Payments {
  readonly name = 'floodgate' as const;
  readonly calls: PaymentIntent[] = [];
  readonly outcomes: Array<PayOutcome | Error>;
  release: (() => void) | undefined;
  hold = false;

  constructor(...outcomes: Array<PayOutcome | Error>) {
    this.outcomes = outcomes;
  }

  async pay(intent: PaymentIntent): Promise<PayOutcome> {
    this.calls.push(intent);
    if (this.hold) await new Promise<void>((resolve) => (this.release = resolve));
    const next = this.outcomes.shift() ?? { status: 'failed', message: 'no outcome scripted' };
    if (next instanceof Error) throw next;
    return next;
  }

  status() {
    return { breaker: 'closed' as const, queued: 0, active: 0, bankRate: 300 };
  }

  async close() {}
}

let server: Server | undefined;
let db: ShopDb | undefined;
let bank: BankSim | undefined;

afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  db?.close();
  await bank?.close();
  bank = undefined;
});

async function start(
  payments: Payments,
  options: { lockOrders?: boolean; checkoutMiddleware?: RequestHandler[]; bankUrl?: string } = {},
) {
  db = new ShopDb(':memory:');
  const app = createShopApp({ db, payments, ...options });
  server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server?.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const call = async (path: string, init: RequestInit & { student?: string } = {}) => {
    const response = await fetch(`${base}${path}`, {
      ...init,
      headers: { 'content-type': 'application/json', 'x-student-id': init.student ?? 'ann', ...init.headers },
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
  };
  const join = async (student = 'ann', deal = 'd-kettle') =>
    (await call(`/api/deals/${deal}/join`, { method: 'POST', body: '{}', student })).body.order as {
      id: string;
    };
  const checkout = (orderId: string, student = 'ann', source?: string) =>
    call('/api/checkout', { method: 'POST', body: JSON.stringify({ orderId, source }), student });
  return { base, call, join, checkout, db };
}

describe('the catalogue and deals', () => {
  it('creates and seeds the database on first open', async () => {
    const { call } = await start(new ScriptedPayments());
    const products = await call('/api/products');
    expect(products.status).toBe(200);
    expect(products.body.map((p: { id: string }) => p.id)).toContain('p-kettle');
    const deals = await call('/api/deals');
    expect(deals.body.find((d: { id: string }) => d.id === 'd-kettle')).toMatchObject({
      joined: 0,
      status: 'open',
    });
  });

  it('opens one order per student and deal, and completes the deal when enough join', async () => {
    const { call, join } = await start(new ScriptedPayments());
    const first = await join('ann');
    expect(await join('ann')).toEqual(first);
    for (let i = 1; i < 20; i++) await join(`s${i}`);
    const deal = (await call('/api/deals')).body.find((d: { id: string }) => d.id === 'd-kettle');
    expect(deal).toMatchObject({ joined: 20, target: 20, status: 'completed' });
  });

  it('answers 404 for an unknown deal and 401 without a student', async () => {
    const { call } = await start(new ScriptedPayments());
    expect((await call('/api/deals/nope/join', { method: 'POST', body: '{}' })).status).toBe(404);
    const anonymous = await call('/api/deals/d-kettle/join', { method: 'POST', body: '{}', student: '' });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('content-type')).toContain('application/problem+json');
  });
});

describe('checkout', () => {
  it('pays an order and records it', async () => {
    const payments = new ScriptedPayments({ status: 'paid', paymentId: 'pay_1' });
    const { join, checkout, call } = await start(payments);
    const order = await join();
    const res = await checkout(order.id);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ status: 'paid', paymentId: 'pay_1' });
    expect(payments.calls[0]).toMatchObject({
      orderId: order.id,
      amount: 1200,
      currency: 'EUR',
      source: 'tok_ok',
    });
    expect((await call(`/api/orders/${order.id}`)).body).toMatchObject({
      status: 'paid',
      paymentId: 'pay_1',
    });
    // A paid order is never sent to the bank again.
    expect((await checkout(order.id)).status).toBe(200);
    expect(payments.calls).toHaveLength(1);
  });

  it('maps each outcome to its answer', async () => {
    const payments = new ScriptedPayments(
      { status: 'declined', reason: 'insufficient_funds' },
      { status: 'pending' },
      { status: 'failed', message: 'nope' },
      { status: 'busy', retryAfterMs: 1500 },
    );
    const { join, checkout, db } = await start(payments);
    const order = await join();
    const declined = await checkout(order.id, 'ann', 'tok_decline_insufficient_funds');
    expect(declined.status).toBe(402);
    expect(declined.body.reason).toBe('insufficient_funds');
    const pending = await checkout(order.id);
    expect(pending.status).toBe(202);
    expect(pending.headers.get('location')).toBe(`/api/orders/${order.id}`);
    expect(db.order(order.id)?.status).toBe('pending');
    const failed = await checkout(order.id);
    expect(failed.status).toBe(502);
    expect(failed.body.status).toBe('failed');
    const busy = await checkout(order.id);
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toBe('2');
    expect(db.order(order.id)?.status).toBe('failed');
  });

  it('answers what the body parser refuses as the client’s error (413, 415), not as the shop’s 500', async () => {
    const payments = new ScriptedPayments();
    const { join, call } = await start(payments);
    const order = await join();
    const errorLog = vi.spyOn(console, 'error').mockImplementation(() => {});
    const body = JSON.stringify({ orderId: order.id });
    const charset = await call('/api/checkout', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json; charset=latin2' },
    });
    expect(charset.status).toBe(415);
    expect(charset.headers.get('content-type')).toContain('application/problem+json');
    expect(charset.body).toMatchObject({ title: 'Unsupported Media Type', status: 415 });
    const large = await call('/api/checkout', {
      method: 'POST',
      body: JSON.stringify({ orderId: order.id, source: 'x'.repeat(20_000) }),
    });
    expect(large.status).toBe(413);
    expect(large.body).toMatchObject({ title: 'Payload Too Large', status: 413 });
    expect(errorLog).not.toHaveBeenCalled();
    expect(payments.calls).toHaveLength(0);
  });

  it('refuses a checkout of another student’s order and a malformed body', async () => {
    const { join, checkout, call } = await start(new ScriptedPayments());
    const order = await join('ann');
    expect((await checkout(order.id, 'bob')).status).toBe(404);
    const bad = await call('/api/checkout', { method: 'POST', body: '{"orderId":' });
    expect(bad.status).toBe(400);
    expect((await call('/api/checkout', { method: 'POST', body: '{"orderId":1}' })).status).toBe(400);
  });

  it('refuses an empty card source with 400 before paying, and leaves the order payable', async () => {
    const payments = new ScriptedPayments({ status: 'paid', paymentId: 'pay_1' });
    const { join, checkout, db } = await start(payments);
    const order = await join();
    const bad = await checkout(order.id, 'ann', '');
    expect(bad.status).toBe(400);
    expect(payments.calls).toHaveLength(0);
    expect(db.order(order.id)?.status).toBe('created');
    expect((await checkout(order.id)).status).toBe(201);
  });

  it('puts the order back where it was when the payment rejects: 409, 400 or 500, never stuck paying', async () => {
    const coded = (code: string) => Object.assign(new Error(code), { code });
    const payments = new ScriptedPayments(
      coded('ERR_PAYMENT_MISMATCH'),
      coded('ERR_INVALID_OPTION'),
      new Error('bug'),
      { status: 'paid', paymentId: 'pay_1' },
    );
    const { join, checkout, db } = await start(payments);
    const order = await join();
    const mismatch = await checkout(order.id, 'ann', 'tok_other');
    expect(mismatch.status).toBe(409);
    expect(mismatch.body).toMatchObject({ status: 'in-progress', code: 'ERR_PAYMENT_MISMATCH' });
    expect(mismatch.headers.get('retry-after')).toBe('2');
    expect(db.order(order.id)?.status).toBe('created');
    const invalid = await checkout(order.id);
    expect(invalid.status).toBe(400);
    expect(invalid.body.code).toBe('ERR_INVALID_OPTION');
    expect(db.order(order.id)?.status).toBe('created');
    const errorLog = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      expect((await checkout(order.id)).status).toBe(500);
    } finally {
      errorLog.mockRestore();
    }
    expect(db.order(order.id)?.status).toBe('created');
    expect((await checkout(order.id)).status).toBe(201);
  });

  it('with lockOrders, a rejected payment frees the order and keeps its decline', async () => {
    const payments = new ScriptedPayments(
      { status: 'declined', reason: 'insufficient_funds' },
      Object.assign(new Error('mismatch'), { code: 'ERR_PAYMENT_MISMATCH' }),
      { status: 'paid', paymentId: 'pay_1' },
    );
    const { join, checkout, db } = await start(payments, { lockOrders: true });
    const order = await join();
    expect((await checkout(order.id, 'ann', 'tok_decline_insufficient_funds')).status).toBe(402);
    expect((await checkout(order.id)).status).toBe(409);
    expect(db.order(order.id)).toMatchObject({ status: 'declined', declineReason: 'insufficient_funds' });
    // Not held: the next checkout may claim it.
    expect((await checkout(order.id)).status).toBe(201);
  });

  it('holds the order while a checkout runs when lockOrders is set', async () => {
    const payments = new ScriptedPayments({ status: 'paid', paymentId: 'pay_1' });
    payments.hold = true;
    const { join, checkout } = await start(payments, { lockOrders: true });
    const order = await join();
    const first = checkout(order.id);
    await expect.poll(() => payments.calls.length).toBe(1);
    const second = await checkout(order.id);
    expect(second.status).toBe(409);
    expect(second.headers.get('retry-after')).toBe('2');
    payments.release?.();
    expect((await first).status).toBe(201);
    expect(payments.calls).toHaveLength(1);
  });

  it('runs the checkout middleware first', async () => {
    const refuse: RequestHandler = (_req, res) => {
      res.status(429).json({ status: 'limited' });
    };
    const payments = new ScriptedPayments();
    const { join, checkout } = await start(payments, { checkoutMiddleware: [refuse] });
    const order = await join();
    expect((await checkout(order.id)).status).toBe(429);
    expect(payments.calls).toHaveLength(0);
  });
});

describe('pages and the dashboard', () => {
  it('serves the storefront, the dashboard and their stats', async () => {
    const { base, call } = await start(new ScriptedPayments());
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<script src="/shop.js"');
    // The festival prints this address for people to open while the surge runs.
    const dashboard = await fetch(`${base}${DASHBOARD_PATH}`);
    expect(dashboard.status).toBe(200);
    const html = await dashboard.text();
    expect(html).toContain('<title>Festival dashboard</title>');
    expect(html).toContain('<script src="/dashboard.js"');
    expect((await fetch(`${base}/dashboard.js`)).status).toBe(200);
    const stats = await call('/api/stats');
    expect(stats.body).toMatchObject({ shop: 'floodgate', bankRate: 300, orders: { total: 0 }, bank: null });
    expect(stats.body.history.checkouts).toHaveLength(60);
  });

  it('draws the bank’s admitted requests over the same last minute as the shop’s own numbers', async () => {
    // A bank started a few seconds ago, as every festival run's is.
    let now = 0;
    bank = await startBankSim({ rate: 50, latencyMs: 0, clock: () => now });
    const { call } = await start(new ScriptedPayments(), { bankUrl: bank.url });
    const pay = (key: string) =>
      fetch(`${bank?.url}/payments`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': `"${key}"` },
        body: JSON.stringify({ orderId: key, amount: 100, currency: 'EUR', source: 'tok_ok' }),
      });
    now = 1000;
    await pay('k-1');
    await pay('k-2');
    now = 2000;
    // In the second still filling: not drawn yet.
    await pay('k-3');

    const { history } = (await call('/api/stats')).body as {
      history: { checkouts: number[]; bankAdmitted: number[] };
    };
    expect(history.bankAdmitted).toHaveLength(history.checkouts.length);
    expect(history.bankAdmitted.slice(-3)).toEqual([0, 0, 2]);
    expect(history.bankAdmitted.slice(0, -1).every((admitted) => admitted === 0)).toBe(true);
  });
});
