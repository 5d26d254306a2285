import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualBank, turns } from '../test/manual-bank.js';
import type { PaymentClient, PaymentClientOptions } from './client.js';
import { createPaymentClient } from './client.js';
import { ietfGateway } from './ietf-gateway.js';
import type { PaymentLedger } from './ledger.js';
import { MemoryLedger } from './memory-ledger.js';
import type { PaymentIntent } from './types.js';

// The background reconciler of PaymentClient: when it runs, what it sends, what it reports.

const intent: PaymentIntent = { orderId: 'o-1', amount: 1250, currency: 'EUR', payer: 'tok_ok' };
const PAID = { id: 'pay_1', status: 'succeeded' };
const lostAnswer = () => Object.assign(new Error('timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' });

let client: PaymentClient | undefined;

afterEach(async () => {
  await client?.close();
  client = undefined;
  vi.useRealTimers();
});

/**
 * A client on a {@link ManualBank} with fake timers and a clock that follows them, so the reconciler's
 * schedule is exact: `vi.advanceTimersByTimeAsync(ms)` is the only thing that moves time.
 */
function fakeTimeSetup(options: Partial<PaymentClientOptions> = {}): {
  bank: ManualBank;
  client: PaymentClient;
  ledger: PaymentLedger;
} {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  const bank = new ManualBank();
  const ledger = (options.ledger as PaymentLedger | undefined) ?? new MemoryLedger();
  client = createPaymentClient({
    gateway: ietfGateway({ origin: 'http://bank.test' }),
    merchant: 'shop',
    dispatcher: bank.dispatcher,
    clock: () => Date.now(),
    random: () => 0.5,
    ...options,
    ledger,
    retry: { maxAttempts: 1, ...options.retry },
    timeouts: { paymentMs: 60_000, ...options.timeouts },
  });
  return { bank, client, ledger };
}

describe('the reconciler schedule', () => {
  it('a payment that goes pending while a later pass is armed is tried after intervalMs, not then', async () => {
    const { bank, client } = fakeTimeSetup({ reconcile: { intervalMs: 1000, maxIntervalMs: 60_000 } });
    const first = client.pay(intent);
    (await bank.until(1)).fail(lostAnswer());
    expect(await first).toMatchObject({ status: 'pending', reason: 'max_attempts' });
    // Its first reconciliation (t = 1000) loses the answer too: it backs off to 2000 (next at t = 3000).
    await vi.advanceTimersByTimeAsync(1000);
    (await bank.until(2)).fail(lostAnswer());
    await turns();
    // A second payment goes pending at t = 1000: its first try is due at t = 2000.
    const second = client.pay({ ...intent, orderId: 'o-2' });
    (await bank.until(3)).fail(lostAnswer());
    expect(await second).toMatchObject({ status: 'pending', orderId: 'o-2' });
    await vi.advanceTimersByTimeAsync(999);
    await turns();
    expect(bank.requests).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    const status = await bank.until(4);
    expect(status).toMatchObject({ method: 'GET' });
    expect(status.path).toContain((await second).idempotencyKey);
    status.answer(200, PAID);
    await turns();
    expect(client.pendingCount).toBe(1);
  });

  it('a payment that goes pending during reconcileNow() is tried after intervalMs, not at the armed pass', async () => {
    const { bank, client } = fakeTimeSetup({ reconcile: { intervalMs: 1000, maxIntervalMs: 60_000 } });
    const first = client.pay(intent);
    (await bank.until(1)).fail(lostAnswer());
    await first;
    // Two passes lose the answer (t = 1000, t = 3000): the next is armed for t = 7000.
    await vi.advanceTimersByTimeAsync(1000);
    (await bank.until(2)).fail(lostAnswer());
    await vi.advanceTimersByTimeAsync(2000);
    (await bank.until(3)).fail(lostAnswer());
    await turns();
    // At t = 3000 a pass is run by hand; while it waits for the bank, a second payment goes pending.
    const pass = client.reconcileNow();
    const asked = await bank.until(4);
    const second = client.pay({ ...intent, orderId: 'o-2' });
    (await bank.until(5)).fail(lostAnswer());
    const { idempotencyKey } = await second;
    asked.fail(lostAnswer());
    expect(await pass).toEqual({ resolved: 0, pending: 2 });
    await vi.advanceTimersByTimeAsync(999);
    await turns();
    expect(bank.requests).toHaveLength(5);
    await vi.advanceTimersByTimeAsync(1);
    const status = await bank.until(6);
    expect(status.path).toContain(idempotencyKey);
  });
});

describe("the bank's Retry-After", () => {
  it('a status query answered 503 with a Retry-After past the try is asked again no sooner', async () => {
    const { bank, client } = fakeTimeSetup({
      reconcile: { intervalMs: 1000, maxIntervalMs: 60_000, deadlineMs: 10_000 },
      retry: { maxAttempts: 3 },
    });
    const paying = client.pay(intent, { deadlineMs: 1 });
    await bank.until(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(await paying).toMatchObject({ status: 'pending', reason: 'deadline' });
    // The reconciler's first try (t = 1000) asks; the bank is busy and asks for 20 s.
    await vi.advanceTimersByTimeAsync(1000);
    const busy = await bank.until(2);
    expect(busy.method).toBe('GET');
    busy.answer(503, { title: 'busy' }, { 'retry-after': '20' });
    await turns();
    expect(client.pendingCount).toBe(1);
    // Its own back-off would ask again at t = 3000; the bank's 20 s (stretched by up to 10%: random 0.5
    // makes it 21 s) win: due at t = 22000.
    await vi.advanceTimersByTimeAsync(20_999);
    await turns();
    expect(bank.requests).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    const again = await bank.until(3);
    expect(again.method).toBe('GET');
    again.answer(200, { ...PAID, orderId: 'o-1' });
    await turns();
    expect(client.pendingCount).toBe(0);
  });
});

describe('a Retry-After longer than the deadline', () => {
  it('ends pay() pending at once, without sleeping, and the reconciler asks no sooner than the bank said', async () => {
    const { bank, client } = fakeTimeSetup({
      reconcile: { intervalMs: 1000 },
      retry: { maxAttempts: 5 },
      timeouts: { paymentMs: 5000 },
    });
    const paying = client.pay(intent);
    (await bank.until(1)).answer(429, { title: 'slow down' }, { 'retry-after': '10' });
    // No timer has moved: the 10 s (10.5 s with random 0.5's 5% stretch) were not slept.
    expect(await paying).toMatchObject({ status: 'pending', reason: 'deadline', attempts: 1 });
    await vi.advanceTimersByTimeAsync(10_499);
    await turns();
    expect(bank.requests).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    // The reconciler drives it from the ledger (`unknown`): it asks first, then sends the same key.
    const status = await bank.until(2);
    expect(status.method).toBe('GET');
    status.answer(404, { status: 'not_found' });
    const retry = await bank.until(3);
    const { idempotencyKey } = await paying;
    expect(retry).toMatchObject({ method: 'POST', headers: { 'idempotency-key': `"${idempotencyKey}"` } });
    retry.answer(201, { ...PAID, orderId: 'o-1' });
    await turns();
    expect(client.pendingCount).toBe(0);
  });
});

describe('a reconciliation pass', () => {
  it('queries at most reconcile.concurrency payments at once', async () => {
    const { bank, client } = fakeTimeSetup({ reconcile: { intervalMs: 1000, concurrency: 2 } });
    for (const [index, orderId] of ['o-1', 'o-2', 'o-3'].entries()) {
      const paying = client.pay({ ...intent, orderId });
      (await bank.until(index + 1)).fail(lostAnswer());
      await paying;
    }
    await vi.advanceTimersByTimeAsync(1000);
    await bank.until(5);
    await turns();
    expect(bank.requests.slice(3).map((request) => request.method)).toEqual(['GET', 'GET']);
    (bank.requests[3] as (typeof bank.requests)[number]).answer(200, { ...PAID, orderId: 'o-1' });
    const third = await bank.until(6);
    expect(third.method).toBe('GET');
    third.answer(200, { ...PAID, orderId: 'o-3' });
    (bank.requests[4] as (typeof bank.requests)[number]).answer(200, { ...PAID, orderId: 'o-2' });
    await turns();
    expect(client.pendingCount).toBe(0);
    expect(bank.charges).toHaveLength(3);
  });

  it('close() during a pass ends its queries, leaves the payment unknown and nothing scheduled', async () => {
    const { bank, client, ledger } = fakeTimeSetup({ reconcile: { intervalMs: 1000 } });
    const paying = client.pay(intent);
    (await bank.until(1)).fail(lostAnswer());
    const { idempotencyKey } = await paying;
    await vi.advanceTimersByTimeAsync(1000);
    const status = await bank.until(2);
    await client.close();
    expect(status.aborted).toBe(true);
    expect(await ledger.get(idempotencyKey)).toMatchObject({ state: 'unknown' });
    expect(client.pendingCount).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(bank.requests).toHaveLength(2);
  });

  it('past keyRetentionMs only asks, whatever the status query answers, and never charges again', async () => {
    const { bank, client, ledger } = fakeTimeSetup({
      gateway: ietfGateway({ origin: 'http://bank.test', keyRetentionMs: 5000 }),
      reconcile: { intervalMs: 1000, maxIntervalMs: 1000 },
      retry: { maxAttempts: 3 },
    });
    // Charges lose their answer; status queries answer, in turn, 404, 500, processing, 503.
    const statusAnswers: [number, unknown][] = [
      [404, { status: 'not_found' }],
      [500, {}],
      [200, { status: 'processing' }],
      [503, {}],
    ];
    const sent: { method: string; at: number }[] = [];
    let answered = 0;
    let queries = 0;
    const pump = async () => {
      for (let round = 0; round < 5; round++) {
        await turns();
        while (answered < bank.requests.length) {
          const request = bank.requests[answered++] as (typeof bank.requests)[number];
          sent.push({ method: request.method, at: Date.now() });
          if (request.method === 'POST') request.fail(lostAnswer());
          else request.answer(...(statusAnswers[queries++ % statusAnswers.length] as [number, unknown]));
        }
      }
    };
    const paying = client.pay(intent);
    await pump();
    const [record] = await ledger.unresolved();
    const firstSentAt = record?.firstSentAt;
    expect(firstSentAt).toEqual(expect.any(Number));
    for (let step = 0; step < 40; step++) {
      await vi.advanceTimersByTimeAsync(250);
      await pump();
    }
    expect(await paying).toMatchObject({ status: 'pending' });
    const charges = sent.filter((request) => request.method === 'POST');
    // Within the retention the same key was re-sent; past it, never, though the bank said 404 again.
    expect(charges.length).toBeGreaterThan(1);
    expect(charges.every((request) => request.at - (firstSentAt as number) <= 5000)).toBe(true);
    expect(sent.filter((request) => request.at - (firstSentAt as number) > 5000).length).toBeGreaterThan(4);
    expect(client.pendingCount).toBe(1);
  });
});

describe('a pending payment another process settles', () => {
  it('is reported reconciled once by the client that held it pending, and counted in its metrics', async () => {
    // Two processes sharing one ledger (as with one SQLite file): A lost the answer, B's click settles it.
    const shared = new MemoryLedger();
    const a = fakeTimeSetup({ ledger: shared, reconcile: false });
    const paying = a.client.pay(intent);
    (await a.bank.until(1)).fail(lostAnswer());
    expect(await paying).toMatchObject({ status: 'pending' });
    const b = new ManualBank();
    const other = createPaymentClient({
      gateway: ietfGateway({ origin: 'http://bank.test' }),
      ledger: shared,
      merchant: 'shop',
      dispatcher: b.dispatcher,
      reconcile: false,
    });
    try {
      const click = other.pay(intent);
      const status = await b.until(1);
      expect(status.method).toBe('GET');
      status.answer(200, { ...PAID, orderId: 'o-1' });
      expect(await click).toMatchObject({ status: 'paid', reference: 'pay_1' });
    } finally {
      await other.close();
    }
    const reconciled: unknown[] = [];
    a.client.on('reconciled', (event) => reconciled.push(event));
    expect(await a.client.reconcileNow()).toEqual({ resolved: 1, pending: 0 });
    expect(reconciled).toEqual([
      { outcome: expect.objectContaining({ status: 'paid', reference: 'pay_1' }), latencyMs: 0 },
    ]);
    expect(a.client.metrics()).toMatchObject({ outcomeUnknown: 0, reconciliation: { resolved: 1 } });
    // A asked the bank nothing more: the ledger already knew.
    expect(a.bank.requests).toHaveLength(1);
    expect(await a.client.reconcileNow()).toEqual({ resolved: 0, pending: 0 });
    expect(reconciled).toHaveLength(1);
  });
});
