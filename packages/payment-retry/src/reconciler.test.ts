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

// With `random: () => 0.5` the n-th wait (equal jitter) is 3/4 of min(maxIntervalMs, intervalMs * 2^n):
// 750, 1500, 3000, 6000... ms for an intervalMs of 1000.
describe('the reconciler schedule', () => {
  it('a payment that goes pending while a later pass is armed is tried after its first wait, not then', async () => {
    const { bank, client } = fakeTimeSetup({ reconcile: { intervalMs: 1000, maxIntervalMs: 60_000 } });
    const first = client.pay(intent);
    (await bank.until(1)).fail(lostAnswer());
    expect(await first).toMatchObject({ status: 'pending', reason: 'max_attempts' });
    // Its first reconciliation (t = 750) loses the answer too: it backs off 1500 (next at t = 2250).
    await vi.advanceTimersByTimeAsync(750);
    (await bank.until(2)).fail(lostAnswer());
    await turns();
    // A second payment goes pending at t = 750: its first try is due at t = 1500.
    const second = client.pay({ ...intent, orderId: 'o-2' });
    (await bank.until(3)).fail(lostAnswer());
    expect(await second).toMatchObject({ status: 'pending', orderId: 'o-2' });
    await vi.advanceTimersByTimeAsync(749);
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

  it('a payment that goes pending during reconcileNow() is tried after its first wait, not at the armed pass', async () => {
    const { bank, client } = fakeTimeSetup({ reconcile: { intervalMs: 1000, maxIntervalMs: 60_000 } });
    const first = client.pay(intent);
    (await bank.until(1)).fail(lostAnswer());
    await first;
    // Two passes lose the answer (t = 750, t = 2250): the next is armed for t = 5250.
    await vi.advanceTimersByTimeAsync(750);
    (await bank.until(2)).fail(lostAnswer());
    await vi.advanceTimersByTimeAsync(1500);
    (await bank.until(3)).fail(lostAnswer());
    await turns();
    // At t = 2250 a pass is run by hand; while it waits for the bank, a second payment goes pending (due
    // at t = 3000).
    const pass = client.reconcileNow();
    const asked = await bank.until(4);
    const second = client.pay({ ...intent, orderId: 'o-2' });
    (await bank.until(5)).fail(lostAnswer());
    const { idempotencyKey } = await second;
    asked.fail(lostAnswer());
    expect(await pass).toEqual({ resolved: 0, pending: 2 });
    await vi.advanceTimersByTimeAsync(749);
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
    // The reconciler's first try (t = 751) asks; the bank is busy (its answer comes at t = 1001) and asks
    // for 20 s.
    await vi.advanceTimersByTimeAsync(1000);
    const busy = await bank.until(2);
    expect(busy.method).toBe('GET');
    busy.answer(503, { title: 'busy' }, { 'retry-after': '20' });
    await turns();
    expect(client.pendingCount).toBe(1);
    // Its own back-off would ask again at t = 2501 (1500 ms); the bank's 20 s (stretched by up to 10%:
    // random 0.5 makes it 21 s) win: due at t = 22001.
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

/**
 * Moves fake time 1 ms at a time for `ms` ms, losing the answer to every request as it comes (so each
 * payment stays pending and no pass waits), and returns the time each new request after the first
 * `answered` left at, in ms since `since`.
 */
async function loseEveryAnswerFor(
  bank: ManualBank,
  ms: number,
  answered: number,
  since: number,
): Promise<number[]> {
  const seen = { answered };
  const at: number[] = [];
  for (let step = 0; step < ms; step++) {
    await vi.advanceTimersByTimeAsync(1);
    await turns(5);
    while (seen.answered < bank.requests.length) {
      (bank.requests[seen.answered++] as (typeof bank.requests)[number]).fail(lostAnswer());
      at.push(Date.now() - since);
    }
  }
  return at;
}

describe("the reconciler's back-off", () => {
  it('spreads the first tries of payments that went pending together over [intervalMs/2, intervalMs)', async () => {
    const draws = [0, 0.25, 0.5, 0.75];
    const { bank, client } = fakeTimeSetup({
      reconcile: { intervalMs: 1000, maxIntervalMs: 60_000 },
      random: () => draws.shift() ?? 0.5,
    });
    const start = Date.now();
    for (const [index, orderId] of ['o-1', 'o-2', 'o-3', 'o-4'].entries()) {
      const paying = client.pay({ ...intent, orderId });
      (await bank.until(index + 1)).fail(lostAnswer());
      expect(await paying).toMatchObject({ status: 'pending' });
    }
    // Went pending at t = 0 together: asked about at 500 + 500 * random, not all at t = 1000.
    expect(await loseEveryAnswerFor(bank, 1000, 4, start)).toEqual([500, 625, 750, 875]);
    expect(bank.requests.slice(4).map((request) => request.method)).toEqual(['GET', 'GET', 'GET', 'GET']);
  });

  it.each([
    // random 0: the floor, half of each doubling step; never sooner.
    [[0], [500, 1000, 2000, 4000, 4000, 4000]],
    // random near 1: just under each step, and under maxIntervalMs once it is reached.
    [[0.998], [999, 1998, 3996, 7992, 7992]],
    // One draw per wait, the try's own included (a try that ends pending draws nothing more).
    [
      [0, 0.5, 0.25, 0.75, 0.5],
      [500, 1500, 2500, 7000, 6000],
    ],
  ])(
    'with random draws %j waits t/2 + random * t/2, t doubling from intervalMs up to maxIntervalMs',
    async (draws, gaps) => {
      let drawn = 0;
      const { bank, client } = fakeTimeSetup({
        reconcile: { intervalMs: 1000, maxIntervalMs: 8000 },
        random: () => draws[drawn++ % draws.length] as number,
      });
      const start = Date.now();
      const paying = client.pay(intent);
      (await bank.until(1)).fail(lostAnswer());
      await paying;
      const at = await loseEveryAnswerFor(bank, 25_000, 1, start);
      const waits = at.map((t, i) => t - (i === 0 ? 0 : (at[i - 1] as number)));
      expect(waits.slice(0, gaps.length)).toEqual(gaps);
      expect(waits.every((wait) => wait >= 500 && wait < 8000)).toBe(true);
      expect(client.pendingCount).toBe(1);
    },
  );
});

describe('metrics().outcomes and the outcome event', () => {
  it('count a payment pending once, however many tries leave it pending, then once as settled', async () => {
    const { bank, client } = fakeTimeSetup({ reconcile: false });
    const events: string[] = [];
    client.on('outcome', (outcome) => events.push(outcome.status));
    const paying = client.pay(intent);
    (await bank.until(1)).fail(lostAnswer());
    expect(await paying).toMatchObject({ status: 'pending' });
    // Three passes, and a click again on the order, each lose the answer: still the one pending payment.
    for (let pass = 0; pass < 3; pass++) {
      const passing = client.reconcileNow();
      (await bank.until(2 + pass)).fail(lostAnswer());
      expect(await passing).toEqual({ resolved: 0, pending: 1 });
    }
    const again = client.pay(intent);
    (await bank.until(5)).fail(lostAnswer());
    expect(await again).toMatchObject({ status: 'pending' });
    expect(client.metrics().outcomes).toEqual({ paid: 0, declined: 0, pending: 1 });
    expect(events).toEqual(['pending']);
    // A second payment goes pending: counted, once.
    const other = client.pay({ ...intent, orderId: 'o-2' });
    (await bank.until(6)).fail(lostAnswer());
    await other;
    expect(client.metrics().outcomes).toEqual({ paid: 0, declined: 0, pending: 2 });
    // The reconciler settles both: each counted once more, as what it became.
    const passing = client.reconcileNow();
    (await bank.until(7)).answer(200, { ...PAID, orderId: 'o-1' });
    (await bank.until(8)).answer(200, { status: 'declined', orderId: 'o-2', decline_code: 'card_declined' });
    expect(await passing).toEqual({ resolved: 2, pending: 0 });
    expect(client.metrics()).toMatchObject({
      outcomes: { paid: 1, declined: 1, pending: 2 },
      outcomeUnknown: 0,
      reconciliation: { resolved: 2 },
    });
    expect(events).toEqual(['pending', 'pending', 'paid', 'declined']);
  });
});
