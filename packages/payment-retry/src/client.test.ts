import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBankSim } from '@floodgate/bank-sim';
import { tokenBucket } from '@floodgate/token-bucket';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { laterLedger, ManualBank, turns } from '../test/manual-bank.js';
import { newPaymentRecord } from '../test/new-payment-record.js';
import { type StubAction, StubBank, type StubRequest } from '../test/stub-bank.js';
import type { PaymentClient } from './client.js';
import { createPaymentClient, type PaymentClientOptions } from './client.js';
import {
  ClientClosedError,
  IdempotencyKeyInvalidError,
  InvalidOptionError,
  PaymentMismatchError,
} from './errors.js';
import type {
  ChargeInput,
  ChargeResult,
  GatewayAdapter,
  GatewayRequest,
  GatewayResponse,
  StatusResult,
} from './gateway.js';
import { deriveIdempotencyKey } from './idempotency-key.js';
import { ietfGateway } from './ietf-gateway.js';
import type { PaymentLedger } from './ledger.js';
import { MemoryLedger } from './memory-ledger.js';
import type { AttemptEvent, PaymentClientEvents, PaymentIntent, ReconciledEvent } from './types.js';

const intent: PaymentIntent = { orderId: 'o-1', amount: 1250, currency: 'EUR', payer: 'tok_ok' };
const key0 = deriveIdempotencyKey({
  merchant: 'shop',
  orderId: 'o-1',
  amount: 1250,
  currency: 'EUR',
  generation: 0,
});
const paid = (request: StubRequest): StubAction => ({
  status: 201,
  body: { id: `pay_${keyOf(request)}`, status: 'succeeded' },
});
const keyOf = (request: StubRequest): string =>
  String(request.headers['idempotency-key']).replaceAll('"', '');

let bank: StubBank | undefined;
let client: PaymentClient | undefined;
let dir: string | undefined;

afterEach(async () => {
  await client?.close();
  await bank?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  client = undefined;
  bank = undefined;
  dir = undefined;
});

async function setup(
  handle: (request: StubRequest) => StubAction,
  options: Partial<PaymentClientOptions> & { statusPath?: false } = {},
): Promise<{ bank: StubBank; client: PaymentClient; ledger: PaymentLedger }> {
  bank = await StubBank.start(handle);
  const { statusPath, ...rest } = options;
  const ledger = (rest.ledger as PaymentLedger | undefined) ?? new MemoryLedger();
  client = createPaymentClient({
    gateway: ietfGateway(statusPath === false ? { origin: bank.url, statusPath } : { origin: bank.url }),
    ledger,
    merchant: 'shop',
    retry: { baseDelayMs: 1, maxDelayMs: 5, ...rest.retry },
    timeouts: { headersMs: 40, bodyMs: 40, paymentMs: 400, ...rest.timeouts },
    reconcile: false,
    random: () => 0.5,
    ...Object.fromEntries(
      Object.entries(rest).filter(([name]) => !['retry', 'timeouts', 'ledger'].includes(name)),
    ),
  });
  return { bank, client, ledger };
}

/** A client paying a bank the test answers by hand (no socket, no timer): see ManualBank. */
function manualSetup(options: Partial<PaymentClientOptions> = {}): {
  bank: ManualBank;
  client: PaymentClient;
  ledger: PaymentLedger;
} {
  const manual = new ManualBank();
  const ledger = (options.ledger as PaymentLedger | undefined) ?? new MemoryLedger();
  client = createPaymentClient({
    gateway: ietfGateway({ origin: 'http://bank.test' }),
    merchant: 'shop',
    dispatcher: manual.dispatcher,
    reconcile: false,
    random: () => 0.5,
    ...options,
    ledger,
    retry: { baseDelayMs: 1, maxDelayMs: 5, ...options.retry },
    timeouts: { paymentMs: 60_000, ...options.timeouts },
  });
  return { bank: manual, client, ledger };
}

const PAID = { id: 'pay_1', status: 'succeeded' };

describe('concurrent pay() of one order', () => {
  it.each([
    ['answers at once', () => new MemoryLedger()],
    ['answers on a later turn', () => laterLedger()],
  ])('a mismatch carries the key of the payment in flight (ledger %s)', async (_name, makeLedger) => {
    const { bank, client } = manualSetup({ ledger: makeLedger() });
    const first = client.pay(intent);
    // Called before the first call has read the ledger and derived its key.
    await expect(client.pay({ ...intent, amount: 999 })).rejects.toMatchObject({
      code: 'ERR_PAYMENT_MISMATCH',
      orderId: 'o-1',
      idempotencyKey: key0,
    });
    (await bank.until(1)).answer(201, PAID);
    expect(await first).toMatchObject({ status: 'paid', idempotencyKey: key0 });
    // With a key of the caller's in flight, that key.
    const second = client.pay({ ...intent, orderId: 'o-2', idempotencyKey: 'caller-key-2' });
    await expect(client.pay({ ...intent, orderId: 'o-2', payer: 'tok_other' })).rejects.toMatchObject({
      code: 'ERR_PAYMENT_MISMATCH',
      orderId: 'o-2',
      idempotencyKey: 'caller-key-2',
    });
    (await bank.until(2)).answer(201, PAID);
    expect(await second).toMatchObject({ status: 'paid', idempotencyKey: 'caller-key-2' });
    expect(bank.charges).toHaveLength(2);
  });

  it('refuses another key of the caller while the order is in flight, as it does once paid', async () => {
    const { bank, client } = manualSetup({ ledger: laterLedger() });
    const first = client.pay({ ...intent, idempotencyKey: 'my-key-1' });
    await expect(client.pay({ ...intent, idempotencyKey: 'my-key-2' })).rejects.toMatchObject({
      code: 'ERR_PAYMENT_MISMATCH',
      orderId: 'o-1',
      idempotencyKey: 'my-key-1',
    });
    // The same key joins it, and so does no key (the order's recorded key is used).
    const same = client.pay({ ...intent, idempotencyKey: 'my-key-1' });
    const none = client.pay(intent);
    (await bank.until(1)).answer(201, PAID);
    for (const outcome of await Promise.all([first, same, none])) {
      expect(outcome).toMatchObject({ status: 'paid', idempotencyKey: 'my-key-1' });
    }
    // A derived key in flight is refused to a caller's key the same way.
    const derived = client.pay({ ...intent, orderId: 'o-2' });
    await expect(client.pay({ ...intent, orderId: 'o-2', idempotencyKey: 'my-key-3' })).rejects.toMatchObject(
      { code: 'ERR_PAYMENT_MISMATCH', orderId: 'o-2' },
    );
    (await bank.until(2)).answer(201, PAID);
    expect(await derived).toMatchObject({ status: 'paid' });
    expect(bank.charges.map((request) => request.headers['idempotency-key'])).toEqual([
      '"my-key-1"',
      `"${(await derived).idempotencyKey}"`,
    ]);
    expect(client.metrics().coalesced).toBe(2);
  });

  it.each([
    ['answers at once', () => new MemoryLedger()],
    ['answers on a later turn', () => laterLedger()],
  ])(
    'a call with a wrong payload does not fail a concurrent right one (ledger %s)',
    async (_name, makeLedger) => {
      const { bank, client } = manualSetup({ ledger: makeLedger() });
      const paying = client.pay(intent);
      (await bank.until(1)).answer(201, PAID);
      await paying;
      // The wrong one is refused by the ledger's paid record; the right one matches that record.
      const wrong = client.pay({ ...intent, amount: 999 });
      const right = client.pay(intent);
      await expect(wrong).rejects.toMatchObject({ code: 'ERR_PAYMENT_MISMATCH', idempotencyKey: key0 });
      expect(await right).toMatchObject({ status: 'paid', idempotencyKey: key0, attempts: 0 });
      expect(bank.requests).toHaveLength(1);
    },
  );

  it("a call that joins a payment in flight keeps its own signal: aborting ends that call's wait", async () => {
    const { bank, client } = manualSetup({ ledger: laterLedger() });
    const first = client.pay(intent);
    const controller = new AbortController();
    const joined = client.pay(intent, { signal: controller.signal });
    const request = await bank.until(1);
    controller.abort();
    expect(await joined).toEqual({
      status: 'pending',
      orderId: 'o-1',
      merchant: 'shop',
      idempotencyKey: key0,
      attempts: 0,
      reason: 'aborted',
    });
    // The payment goes on for the call that sent it, and is charged once.
    expect(request.aborted).toBe(false);
    request.answer(201, PAID);
    expect(await first).toMatchObject({ status: 'paid', idempotencyKey: key0 });
    expect(bank.charges).toHaveLength(1);
    // Aborted before it joins, a call ends at once; an abort after the outcome changes nothing.
    const again = new AbortController();
    const late = client.pay({ ...intent, orderId: 'o-2' }, { signal: again.signal });
    const early = client.pay({ ...intent, orderId: 'o-2' }, { signal: AbortSignal.abort() });
    expect(await early).toMatchObject({ status: 'pending', reason: 'aborted', attempts: 0 });
    (await bank.until(2)).answer(201, PAID);
    expect(await late).toMatchObject({ status: 'paid' });
    again.abort();
  });

  it('a call that joins a payment in flight keeps its own deadline', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const { bank, client } = manualSetup();
      const first = client.pay(intent);
      const joined = client.pay(intent, { deadlineMs: 50 });
      const request = await bank.until(1);
      vi.advanceTimersByTime(49);
      await turns();
      let settled = false;
      void joined.then(() => {
        settled = true;
      });
      await turns();
      expect(settled).toBe(false);
      vi.advanceTimersByTime(1);
      expect(await joined).toMatchObject({ status: 'pending', reason: 'deadline', idempotencyKey: key0 });
      request.answer(201, PAID);
      expect(await first).toMatchObject({ status: 'paid', attempts: 1 });
      expect(bank.charges).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it("a click that joins recover()'s payment of its order keeps its own signal", async () => {
    const ledger = new MemoryLedger();
    ledger.create(newPaymentRecord({ idempotencyKey: key0 }));
    const { bank, client } = manualSetup({ ledger });
    const recovering = client.recover();
    const request = await bank.until(1);
    // Another card for the order is refused, naming the key recovery sends.
    await expect(client.pay({ ...intent, payer: 'tok_other' })).rejects.toMatchObject({
      code: 'ERR_PAYMENT_MISMATCH',
      idempotencyKey: key0,
    });
    const controller = new AbortController();
    const click = client.pay(intent, { signal: controller.signal });
    controller.abort();
    expect(await click).toMatchObject({ status: 'pending', reason: 'aborted', idempotencyKey: key0 });
    request.answer(201, PAID);
    expect(await recovering).toEqual({ found: 1, paid: 1, declined: 0, pending: 0 });
    expect(bank.charges).toHaveLength(1);
  });
});

describe('PaymentClient.pay', () => {
  it('charges once with the derived key, records it, and answers paid', async () => {
    const { bank, client, ledger } = await setup(paid);
    const outcome = await client.pay(intent);
    expect(outcome).toEqual({
      status: 'paid',
      orderId: 'o-1',
      merchant: 'shop',
      idempotencyKey: key0,
      attempts: 1,
      reference: `pay_${key0}`,
    });
    expect(bank.charges).toHaveLength(1);
    expect(bank.charges[0]?.headers['idempotency-key']).toBe(`"${key0}"`);
    expect(JSON.parse(bank.charges[0]?.body ?? '')).toEqual({
      orderId: 'o-1',
      amount: 1250,
      currency: 'EUR',
      source: 'tok_ok',
    });
    expect(await ledger.get(key0)).toMatchObject({ state: 'paid', reference: `pay_${key0}`, attempts: 1 });
    // Paying a paid order again is answered from the ledger.
    expect(await client.pay(intent)).toMatchObject({ status: 'paid', attempts: 0 });
    expect(bank.requests).toHaveLength(1);
  });

  it('records a new payment in one write with createSending, and in two with a ledger without it', async () => {
    const calls: string[] = [];
    const recording = (withCreateSending: boolean): PaymentLedger => {
      const inner = new MemoryLedger();
      const ledger: PaymentLedger = {
        latest: (scope) => inner.latest(scope),
        get: (key) => inner.get(key),
        create: (record) => {
          calls.push('create');
          return inner.create(record);
        },
        transition: (key, to, patch) => {
          calls.push(`transition:${to}`);
          return inner.transition(key, to, patch);
        },
        recordAttempt: (attempt) => {
          calls.push('recordAttempt');
          inner.recordAttempt(attempt);
        },
        attempts: (key) => inner.attempts(key),
        unresolved: (limit) => inner.unresolved(limit),
        close: () => inner.close(),
      };
      if (withCreateSending) {
        ledger.createSending = (record) => {
          calls.push('createSending');
          return inner.createSending(record);
        };
      }
      return ledger;
    };
    const { bank, client, ledger } = await setup(paid, { ledger: recording(true) });
    expect(await client.pay(intent)).toMatchObject({ status: 'paid', attempts: 1 });
    expect(calls).toEqual(['createSending', 'transition:paid']);
    expect(await ledger.get(key0)).toMatchObject({ state: 'paid', attempts: 1 });
    expect(bank.charges).toHaveLength(1);
    await client.close();
    await bank.close();

    calls.length = 0;
    const custom = await setup(paid, { ledger: recording(false) });
    expect(await custom.client.pay(intent)).toMatchObject({ status: 'paid', attempts: 1 });
    expect(calls).toEqual(['create', 'transition:sending', 'transition:paid']);
    expect(await custom.ledger.get(key0)).toMatchObject({ state: 'paid', attempts: 1 });
    expect(custom.bank.charges).toHaveLength(1);
  });

  it('never retries a decline; paying the order again starts a new generation with a new key', async () => {
    let decline = true;
    const { bank, client } = await setup((request) =>
      decline ? { status: 402, body: { status: 'declined', reason: 'insufficient_funds' } } : paid(request),
    );
    expect(await client.pay(intent)).toMatchObject({
      status: 'declined',
      reason: 'insufficient_funds',
      attempts: 1,
    });
    expect(bank.requests).toHaveLength(1);
    decline = false;
    const second = await client.pay({ ...intent, payer: 'tok_other' });
    expect(second).toMatchObject({ status: 'paid' });
    expect(second.idempotencyKey).not.toBe(key0);
    expect(second.idempotencyKey).toBe(
      deriveIdempotencyKey({
        merchant: 'shop',
        orderId: 'o-1',
        amount: 1250,
        currency: 'EUR',
        generation: 1,
      }),
    );
  });

  it('asks about the key before settling a rejected request: a forgotten paid order stays paid', async () => {
    // The ledger lost the record of a paid order (a memory ledger restarted); the customer pays again with
    // another card, so the bank sees the same key with another payload and rejects it with a 400 that does
    // not say why. Settling that as declined would start a new key: a second charge.
    const { bank, client, ledger } = await setup((request) => {
      if (request.method === 'GET') return { status: 200, body: { status: 'succeeded', id: 'pay_first' } };
      return { status: 400, body: { title: 'Bad Request' } };
    });
    const outcome = await client.pay({ ...intent, payer: 'tok_other_card' });
    expect(outcome).toMatchObject({ status: 'paid', reference: 'pay_first', idempotencyKey: key0 });
    expect(bank.requests.map((r) => r.method)).toEqual(['POST', 'GET']);
    expect(await ledger.get(key0)).toMatchObject({ state: 'paid', reference: 'pay_first' });
  });

  it('settles a rejected request as declined when the bank never saw the key', async () => {
    const { bank, client } = await setup((request) =>
      request.method === 'GET'
        ? { status: 404, body: { status: 'not_found' } }
        : { status: 400, body: { code: 'invalid_currency' } },
    );
    expect(await client.pay(intent)).toMatchObject({
      status: 'declined',
      reason: 'invalid_currency',
      attempts: 2,
    });
    expect(bank.requests.map((r) => r.method)).toEqual(['POST', 'GET']);
  });

  it('without a status endpoint declines a rejected first request, but never one after an unanswered charge', async () => {
    const first = await setup(() => ({ status: 400, body: { code: 'invalid_currency' } }), {
      statusPath: false,
    });
    expect(await first.client.pay(intent)).toMatchObject({ status: 'declined', reason: 'invalid_currency' });
    expect(first.bank.charges).toHaveLength(1);
    await first.client.close();
    await first.bank.close();

    // The first charge went out and its answer was lost (the bank may have charged); the re-send with the
    // same key meets a 401 (an expired token, say). That says nothing about the first charge: stay pending
    // with the same key rather than decline and let the next pay() charge a new one.
    let n = 0;
    const { bank, client, ledger } = await setup(
      () => (n++ === 0 ? { drop: true } : { status: 401, body: { code: 'token_expired' } }),
      { statusPath: false, retry: { maxAttempts: 4 } },
    );
    expect(await client.pay(intent)).toMatchObject({
      status: 'pending',
      reason: 'max_attempts',
      attempts: 4,
    });
    expect(new Set(bank.charges.map(keyOf))).toEqual(new Set([key0]));
    expect(await ledger.get(key0)).toMatchObject({ state: 'unknown' });
  });

  it('honours Retry-After on 503 and 409, with the same key every time', async () => {
    let n = 0;
    const { bank, client } = await setup((request) => {
      n++;
      if (n === 1) return { status: 503, headers: { 'retry-after': '0.01' } };
      if (n === 2) return { status: 409, headers: { 'retry-after': '0.01' } };
      return paid(request);
    });
    const retries: string[] = [];
    client.on('retry', (event) => retries.push(`${event.reason}:${Math.round(event.delayMs)}`));
    expect(await client.pay(intent)).toMatchObject({ status: 'paid', attempts: 3 });
    expect(retries).toEqual(['throttled:11', 'conflict:11']);
    expect(new Set(bank.charges.map(keyOf))).toEqual(new Set([key0]));
  });

  it('after a dropped answer asks the status endpoint instead of charging again', async () => {
    const charged = new Set<string>();
    const { bank, client } = await setup((request) => {
      if (request.method === 'GET') {
        return charged.has(request.url.split('/').pop() ?? '')
          ? { status: 200, body: { status: 'succeeded', id: 'pay_1' } }
          : { status: 404, body: { status: 'not_found' } };
      }
      charged.add(keyOf(request));
      return { drop: true };
    });
    const attempts: AttemptEvent[] = [];
    client.on('attempt', (event) => attempts.push(event));
    expect(await client.pay(intent)).toMatchObject({ status: 'paid', reference: 'pay_1', attempts: 2 });
    expect(bank.charges).toHaveLength(1);
    expect(attempts.map((a) => `${a.kind}:${a.outcome}`)).toEqual(['charge:unknown', 'status:responded']);
    expect(client.metrics().attempts).toEqual({ notSent: 0, sentNoResponse: 1, responded: 1 });
  });

  it('drops an answer larger than pool.maxResponseBytes unread: sent with no response, then asks', async () => {
    const { bank, client } = await setup(
      (request) =>
        request.method === 'GET'
          ? { status: 200, body: { status: 'succeeded', id: 'pay_small' } }
          : { status: 201, body: { id: 'x'.repeat(4096), status: 'succeeded' } },
      { pool: { maxResponseBytes: 1024 } },
    );
    const attempts: AttemptEvent[] = [];
    client.on('attempt', (event) => attempts.push(event));
    expect(await client.pay(intent)).toMatchObject({ status: 'paid', reference: 'pay_small' });
    expect(bank.charges).toHaveLength(1);
    expect(attempts.map((a) => `${a.kind}:${a.outcome}`)).toEqual(['charge:unknown', 'status:responded']);
  });

  it('without a status endpoint re-sends the same key, and the bank replays', async () => {
    const answers = new Map<string, number>();
    const { bank, client } = await setup(
      (request) => {
        const key = keyOf(request);
        const seen = answers.get(key) ?? 0;
        answers.set(key, seen + 1);
        return seen === 0 ? { drop: true } : paid(request);
      },
      { statusPath: false },
    );
    expect(await client.pay(intent)).toMatchObject({ status: 'paid', attempts: 2 });
    expect(bank.charges.map(keyOf)).toEqual([key0, key0]);
  });

  it('answers pending, never failed, when the answer is lost past the deadline; reconciles later', async () => {
    let slow = true;
    const { bank, client, ledger } = await setup(
      (request) =>
        slow
          ? { hang: true }
          : request.method === 'GET'
            ? { status: 200, body: { status: 'succeeded', id: 'pay_9' } }
            : paid(request),
      { timeouts: { headersMs: 20, paymentMs: 60 } },
    );
    const outcome = await client.pay(intent);
    expect(outcome).toMatchObject({ status: 'pending', reason: 'deadline', idempotencyKey: key0 });
    expect(await ledger.get(key0)).toMatchObject({ state: 'unknown' });
    expect(client.pendingCount).toBe(1);
    expect(client.metrics().outcomeUnknown).toBe(1);

    slow = false;
    const reconciled = once(client, 'reconciled');
    expect(await client.reconcileNow()).toEqual({ resolved: 1, pending: 0 });
    const [event] = await reconciled;
    expect(event.outcome).toMatchObject({ status: 'paid', reference: 'pay_9' });
    expect(await ledger.get(key0)).toMatchObject({ state: 'paid', reference: 'pay_9' });
    expect(client.metrics().reconciliation.resolved).toBe(1);
    // Reconciling asked the status first: no second charge.
    expect(bank.charges).toHaveLength(bank.charges.filter((r) => keyOf(r) === key0).length);
    expect(bank.requests.at(-1)?.method).toBe('GET');
  });

  it('a ledger failure while reconciling leaves the payment pending and reported, not a rejection', async () => {
    let slow = true;
    const ledger = new MemoryLedger();
    const { client } = await setup(
      (request) =>
        slow
          ? { hang: true }
          : request.method === 'GET'
            ? { status: 200, body: { status: 'succeeded', id: 'pay_9' } }
            : paid(request),
      { timeouts: { headersMs: 20, paymentMs: 60 }, ledger },
    );
    expect(await client.pay(intent)).toMatchObject({ status: 'pending', reason: 'deadline' });
    slow = false;
    const get = ledger.get.bind(ledger);
    let failures = 1;
    ledger.get = (key) => {
      if (failures-- > 0) throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      return get(key);
    };
    const failed: { idempotencyKey: string; error: unknown }[] = [];
    client.on('reconcileFailed', (event) => failed.push(event));
    expect(await client.reconcileNow()).toEqual({ resolved: 0, pending: 1 });
    expect(failed).toEqual([
      { idempotencyKey: key0, error: expect.objectContaining({ code: 'SQLITE_BUSY' }) },
    ]);
    expect(await client.reconcileNow()).toEqual({ resolved: 1, pending: 0 });
    expect(ledger.get(key0)).toMatchObject({ state: 'paid', reference: 'pay_9' });
  });

  it('the background reconciler settles pending payments by itself', async () => {
    let slow = true;
    const { client } = await setup(
      (request) =>
        slow ? { hang: true } : request.method === 'GET' ? { status: 404, body: {} } : paid(request),
      { timeouts: { headersMs: 20, paymentMs: 50 }, reconcile: { intervalMs: 5 } },
    );
    expect(await client.pay(intent)).toMatchObject({ status: 'pending' });
    slow = false;
    const [event] = await once(client, 'reconciled');
    expect(event.outcome).toMatchObject({ status: 'paid', idempotencyKey: key0 });
    expect(client.pendingCount).toBe(0);
  });

  it('coalesces concurrent pays of one order onto one bank call', async () => {
    const { bank, client } = await setup(paid);
    const outcomes = await Promise.all([client.pay(intent), client.pay(intent), client.pay({ ...intent })]);
    expect(new Set(outcomes.map((o) => (o.status === 'paid' ? o.reference : o.status)))).toEqual(
      new Set([`pay_${key0}`]),
    );
    expect(bank.charges).toHaveLength(1);
    expect(client.metrics().coalesced).toBe(2);
  });

  it('rejects the same order with another amount, in flight or paid, before sending anything', async () => {
    const { bank, client } = await setup(paid);
    const first = client.pay(intent);
    await expect(client.pay({ ...intent, amount: 999 })).rejects.toBeInstanceOf(PaymentMismatchError);
    await first;
    await expect(client.pay({ ...intent, amount: 999 })).rejects.toMatchObject({
      code: 'ERR_PAYMENT_MISMATCH',
      orderId: 'o-1',
      idempotencyKey: key0,
    });
    await expect(client.pay({ ...intent, payer: 'tok_other' })).rejects.toBeInstanceOf(PaymentMismatchError);
    expect(bank.requests).toHaveLength(1);
  });

  it('uses a caller-given key verbatim and refuses it for another order', async () => {
    const { bank, client } = await setup(paid);
    expect(await client.pay({ ...intent, idempotencyKey: 'my-key-1' })).toMatchObject({
      status: 'paid',
      idempotencyKey: 'my-key-1',
    });
    expect(bank.charges[0]?.headers['idempotency-key']).toBe('"my-key-1"');
    await expect(
      client.pay({ ...intent, orderId: 'o-2', idempotencyKey: 'my-key-1' }),
    ).rejects.toBeInstanceOf(PaymentMismatchError);
    await expect(
      client.pay({ ...intent, orderId: 'o-3', idempotencyKey: 'has space' }),
    ).rejects.toBeInstanceOf(IdempotencyKeyInvalidError);
  });

  it('refuses the same order, paid, under another caller-given key (a second charge), sending nothing', async () => {
    const { bank, client } = await setup(paid);
    await client.pay({ ...intent, idempotencyKey: 'my-key-1' });
    await expect(client.pay({ ...intent, idempotencyKey: 'my-key-2' })).rejects.toMatchObject({
      code: 'ERR_PAYMENT_MISMATCH',
      orderId: 'o-1',
    });
    // Without a key of its own the order's recorded key is used: the paid answer, nothing sent.
    expect(await client.pay(intent)).toMatchObject({ status: 'paid', idempotencyKey: 'my-key-1' });
    expect(bank.requests).toHaveLength(1);
  });

  it('classifies a refused connection as not sent and stays pending, never declined', async () => {
    const { bank, client, ledger } = await setup(paid, { retry: { maxAttempts: 3 } });
    const { url } = bank;
    await bank.close();
    const closedClient = createPaymentClient({
      gateway: ietfGateway({ origin: url }),
      ledger,
      merchant: 'shop',
      retry: { baseDelayMs: 1, maxDelayMs: 2, maxAttempts: 3 },
      reconcile: false,
    });
    try {
      const outcome = await closedClient.pay(intent);
      expect(outcome).toMatchObject({ status: 'pending', reason: 'max_attempts', attempts: 3 });
      expect(closedClient.metrics().attempts).toEqual({ notSent: 3, sentNoResponse: 0, responded: 0 });
      expect(await ledger.attempts(key0)).toMatchObject([
        { outcome: 'not_sent', errorCode: 'ECONNREFUSED' },
        { outcome: 'not_sent' },
        { outcome: 'not_sent' },
      ]);
    } finally {
      await closedClient.close();
    }
    void client;
  });

  it('stops retrying when the retry budget is spent: pending, not failed', async () => {
    let taken = 0;
    const budget = {
      tryTake: (cost: number) => {
        taken += cost;
        return { allowed: taken <= 5, remaining: Math.max(0, 5 - taken) };
      },
      refund: () => {},
    };
    const { bank, client } = await setup(() => ({ status: 500 }), { retry: { budget } });
    expect(await client.pay(intent)).toMatchObject({
      status: 'pending',
      reason: 'retry_budget',
      attempts: 2,
    });
    expect(bank.charges).toHaveLength(2);
    expect(client.metrics().retryBudgetRemaining).toBe(0);
  });

  it('gives budget back: 1 for a first-try success, the retry cost after a retried one', async () => {
    const refunds: number[] = [];
    const budget = {
      tryTake: () => ({ allowed: true, remaining: 100 }),
      refund: (n: number) => refunds.push(n),
    };
    let n = 0;
    const { client } = await setup((request) => (++n === 2 ? { status: 500 } : paid(request)), {
      retry: { budget },
    });
    await client.pay(intent);
    await client.pay({ ...intent, orderId: 'o-2' });
    expect(refunds).toEqual([1, 5]);
  });

  it('treats a rejection by an open breaker as not sent and retries after it', async () => {
    let open = 2;
    const seen: unknown[] = [];
    const breaker = {
      async execute<T>(fn: (context: { signal: AbortSignal }) => Promise<T>): Promise<T> {
        if (open-- > 0) throw Object.assign(new Error('open'), { code: 'ERR_CIRCUIT_OPEN', retryAfterMs: 2 });
        try {
          return await fn({ signal: new AbortController().signal });
        } catch (error) {
          seen.push(error);
          throw error;
        }
      },
    };
    let n = 0;
    const { bank, client } = await setup((request) => (++n === 1 ? { status: 503 } : paid(request)), {
      breaker,
    });
    expect(await client.pay(intent)).toMatchObject({ status: 'paid', attempts: 4 });
    expect(bank.charges).toHaveLength(2);
    expect(client.metrics().attempts.notSent).toBe(2);
    // The breaker saw the 503 as an error it can classify.
    expect(seen).toMatchObject([{ statusCode: 503, outcome: 'responded', code: 'ERR_GATEWAY_RESPONSE' }]);
  });

  it('goes through the limiter, and a shed call is retried as not sent', async () => {
    let calls = 0;
    const limiter = {
      run<T>(fn: (signal: AbortSignal) => Promise<T>, options?: { signal?: AbortSignal }): Promise<T> {
        calls++;
        expect(options?.signal).toBeInstanceOf(AbortSignal);
        if (calls === 1)
          return Promise.reject(
            Object.assign(new Error('full'), { code: 'ERR_QUEUE_FULL', retryAfterMs: 1 }),
          );
        return fn(new AbortController().signal);
      },
    };
    const { bank, client } = await setup(paid, { limiter });
    expect(await client.pay(intent)).toMatchObject({ status: 'paid', attempts: 2 });
    expect(bank.charges).toHaveLength(1);
  });

  it("a caller's abort ends the wait as pending", async () => {
    const { client } = await setup(() => ({ status: 503, headers: { 'retry-after': '0.02' } }));
    const controller = new AbortController();
    const outcome = client.pay(intent, { signal: controller.signal });
    client.once('retry', () => controller.abort());
    expect(await outcome).toMatchObject({ status: 'pending', reason: 'aborted' });
  });

  it('close() ends calls in flight as pending and refuses new ones', async () => {
    const { bank, client, ledger } = await setup(() => ({ hang: true }), {
      timeouts: { headersMs: 5000, paymentMs: 5000 },
    });
    const outcome = client.pay(intent);
    while (bank.requests.length === 0) await new Promise((resolve) => setImmediate(resolve));
    const closing = client.close();
    expect(await outcome).toMatchObject({ status: 'pending', reason: 'closed' });
    await closing;
    expect(await ledger.get(key0)).toMatchObject({ state: 'unknown' });
    await expect(client.pay(intent)).rejects.toBeInstanceOf(ClientClosedError);
    await expect(client.recover()).rejects.toMatchObject({ code: 'ERR_CLIENT_CLOSED' });
  });
});

describe('close() with a ledger that answers asynchronously', () => {
  it('sends nothing for a pay() whose ledger writes were still settling when close() ran', async () => {
    const inner = new MemoryLedger();
    const later = <T>(value: T) => new Promise<T>((resolve) => setImmediate(() => resolve(value)));
    // A networked ledger (Postgres, say): every answer arrives on a later turn of the event loop.
    const ledger: PaymentLedger = {
      latest: (scope) => later(inner.latest(scope)),
      get: (key) => later(inner.get(key)),
      create: (record) => later(inner.create(record)),
      createSending: (record) => later(inner.createSending(record)),
      transition: (key, to, patch) => later(inner.transition(key, to, patch)),
      recordAttempt: (attempt) => later(inner.recordAttempt(attempt)),
      attempts: (key) => later(inner.attempts(key)),
      unresolved: (limit) => later(inner.unresolved(limit)),
      close: () => later(inner.close()),
    };
    const { bank, client } = await setup(paid, { ledger });
    const outcome = client.pay(intent);
    await client.close();
    expect(await outcome).toMatchObject({ status: 'pending', reason: 'closed' });
    expect(bank.requests).toHaveLength(0);
  });
});

describe('a ledger that throws', () => {
  const busy = () => Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });

  it('after the bank charged: pending, not a rejection, and reconciled without a second charge', async () => {
    const ledger = new MemoryLedger();
    const transition = ledger.transition.bind(ledger);
    let failures = 1;
    ledger.transition = (key, to, patch) => {
      if (to === 'paid' && failures-- > 0) throw busy();
      return transition(key, to, patch);
    };
    const { bank, client } = manualSetup({ ledger });
    const failed: { idempotencyKey: string; error: unknown }[] = [];
    client.on('reconcileFailed', (event) => failed.push(event));
    const paying = client.pay(intent);
    (await bank.until(1)).answer(201, PAID);
    expect(await paying).toEqual({
      status: 'pending',
      orderId: 'o-1',
      merchant: 'shop',
      idempotencyKey: key0,
      attempts: 1,
      reason: 'ledger_error',
    });
    expect(failed).toEqual([
      { idempotencyKey: key0, error: expect.objectContaining({ code: 'SQLITE_BUSY' }) },
    ]);
    expect(client.pendingCount).toBe(1);
    // The reconciler asks the bank about the key, and records its answer.
    const reconciling = client.reconcileNow();
    const status = await bank.until(2);
    expect(status.method).toBe('GET');
    status.answer(200, { status: 'succeeded', id: 'pay_1' });
    expect(await reconciling).toEqual({ resolved: 1, pending: 0 });
    expect(ledger.get(key0)).toMatchObject({ state: 'paid', reference: 'pay_1' });
    expect(bank.charges).toHaveLength(1);
  });

  it('after an answer was lost: pending, and the next click asks before it charges', async () => {
    const ledger = new MemoryLedger();
    const recordAttempt = ledger.recordAttempt.bind(ledger);
    let failures = 1;
    ledger.recordAttempt = (attempt) => {
      if (failures-- > 0) throw busy();
      recordAttempt(attempt);
    };
    const { bank, client } = manualSetup({ ledger });
    const paying = client.pay(intent);
    (await bank.until(1)).fail(Object.assign(new Error('timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' }));
    expect(await paying).toMatchObject({ status: 'pending', reason: 'ledger_error', attempts: 1 });
    expect(client.pendingCount).toBe(1);
    const again = client.pay(intent);
    const status = await bank.until(2);
    expect(status.method).toBe('GET');
    status.answer(200, { status: 'succeeded', id: 'pay_1' });
    expect(await again).toMatchObject({ status: 'paid', reference: 'pay_1' });
    expect(bank.charges).toHaveLength(1);
    expect(client.pendingCount).toBe(0);
  });

  it('when the outcome should become unknown: pending all the same', async () => {
    const ledger = new MemoryLedger();
    const transition = ledger.transition.bind(ledger);
    ledger.transition = (key, to, patch) => {
      if (to === 'unknown') throw busy();
      return transition(key, to, patch);
    };
    const { bank, client } = manualSetup({ ledger, retry: { maxAttempts: 1 } });
    const paying = client.pay(intent);
    (await bank.until(1)).fail(Object.assign(new Error('timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' }));
    expect(await paying).toMatchObject({ status: 'pending', reason: 'ledger_error', attempts: 1 });
    expect(ledger.get(key0)).toMatchObject({ state: 'sending' });
    expect(client.pendingCount).toBe(1);
  });

  it('before the payment is recorded: pay() rejects with its error, and nothing is sent', async () => {
    const ledger = new MemoryLedger();
    ledger.createSending = () => {
      throw busy();
    };
    const { bank, client } = manualSetup({ ledger });
    await expect(client.pay(intent)).rejects.toMatchObject({ code: 'SQLITE_BUSY' });
    expect(bank.requests).toHaveLength(0);
    expect(client.pendingCount).toBe(0);
  });

  it('in recover(): that payment stays pending, the others are driven, and the summary counts each', async () => {
    const ledger = new MemoryLedger();
    for (const orderId of ['a', 'b']) {
      ledger.create(newPaymentRecord({ idempotencyKey: `k-${orderId}`, orderId, amount: 100 }));
    }
    const transition = ledger.transition.bind(ledger);
    ledger.transition = (key, to, patch) => {
      if (key === 'k-a' && to === 'sending') throw busy();
      return transition(key, to, patch);
    };
    const { bank, client } = manualSetup({ ledger });
    const recovering = client.recover();
    (await bank.until(1)).answer(201, PAID);
    expect(await recovering).toEqual({ found: 2, paid: 1, declined: 0, pending: 1 });
    expect(bank.charges.map((request) => request.headers['idempotency-key'])).toEqual(['"k-b"']);
    expect(client.pendingCount).toBe(1);
  });
});

describe('a listener that throws', () => {
  /** The process's `uncaughtException` listeners, set aside while a test catches the errors itself. */
  let saved: NodeJS.UncaughtExceptionListener[] | undefined;
  let uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => {
    uncaught.push(error);
  };

  /** From here on an uncaught exception lands in `uncaught` instead of vitest's handler (and failing). */
  function catchUncaught(): void {
    saved = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', onUncaught);
  }

  afterEach(async () => {
    // A listener's error is thrown on a later tick: let it land here, not in the next test.
    await turns(2);
    if (saved !== undefined) {
      process.off('uncaughtException', onUncaught);
      for (const listener of saved) process.on('uncaughtException', listener);
    }
    saved = undefined;
    uncaught = [];
    vi.useRealTimers();
  });

  const lostAnswer = () => Object.assign(new Error('timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' });
  const settled = <T>(promise: Promise<T>) =>
    promise.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    );

  /**
   * One course through every event: a pay() whose answers are lost (pending), a reconciliation pass
   * the ledger fails, one that settles it paid, a recover() of a payment a crashed process left `sending`,
   * and the click again. Answers what a listener must not change: every answer, the ledger, the requests,
   * the counters.
   */
  async function course(event: keyof PaymentClientEvents | undefined, thrown: Error[]) {
    // Frozen wall clock and monotonic clock: two runs write the very same records.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_700_000_000_000);
    const ledger = new MemoryLedger();
    ledger.create(newPaymentRecord({ idempotencyKey: 'k-r', orderId: 'r', amount: 500 }));
    ledger.transition('k-r', 'sending', { firstSentAt: 1 });
    let getFails = false;
    const get = ledger.get.bind(ledger);
    ledger.get = (key) => {
      if (getFails) {
        getFails = false;
        throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      }
      return get(key);
    };
    const { bank, client } = manualSetup({
      ledger,
      clock: () => 0,
      retry: { maxAttempts: 2, baseDelayMs: 0, maxDelayMs: 0, budget: false },
    });
    if (event !== undefined) {
      client.on(event, () => {
        const error = new Error(`${event} listener ${thrown.length + 1}`);
        thrown.push(error);
        throw error;
      });
    }

    const paying = settled(client.pay(intent));
    (await bank.until(1)).fail(lostAnswer());
    (await bank.until(2)).fail(lostAnswer());
    const pay = await paying;
    getFails = true;
    const failedPass = await settled(client.reconcileNow());
    const passing = settled(client.reconcileNow());
    (await bank.until(3)).answer(200, { status: 'succeeded', id: 'pay_1' });
    const pass = await passing;
    const recovering = settled(client.recover());
    (await bank.until(4)).answer(200, { status: 'succeeded', id: 'pay_r' });
    const recovered = await recovering;
    const again = await settled(client.pay(intent));
    await turns(2);
    const seen = {
      answers: { pay, failedPass, pass, recovered, again },
      records: [ledger.get(key0), ledger.get('k-r')],
      attempts: [ledger.attempts(key0), ledger.attempts('k-r')],
      requests: bank.requests.map((request) => [request.method, request.path, request.body]),
      pendingCount: client.pendingCount,
      metrics: client.metrics(),
    };
    await client.close();
    vi.useRealTimers();
    return seen;
  }

  it.each<[keyof PaymentClientEvents, number]>([
    ['attempt', 4],
    ['retry', 1],
    ['outcome', 3],
    ['reconciled', 1],
    ['reconcileFailed', 1],
  ])(
    'on %s changes no answer, no record, no request; its error is thrown on the next tick',
    async (event, calls) => {
      const without = await course(undefined, []);
      expect(without.answers.pay).toEqual({
        value: expect.objectContaining({ status: 'pending', reason: 'max_attempts' }),
      });
      expect(without.answers.recovered).toEqual({ value: { found: 1, paid: 1, declined: 0, pending: 0 } });

      catchUncaught();
      const thrown: Error[] = [];
      const withListener = await course(event, thrown);
      expect(withListener).toEqual(without);
      expect(thrown).toHaveLength(calls);
      // Each error surfaces, as thrown, in the order thrown: never swallowed.
      expect(uncaught).toEqual(thrown);
      expect(uncaught[0]).toBe(thrown[0]);
    },
  );

  it('on outcome, for a paid payment: pay() answers paid and the ledger holds it paid', async () => {
    catchUncaught();
    const { bank, client, ledger } = manualSetup();
    const error = new Error('outcome listener');
    client.on('outcome', () => {
      throw error;
    });
    const paying = client.pay(intent);
    (await bank.until(1)).answer(201, PAID);
    expect(await paying).toEqual({
      status: 'paid',
      orderId: 'o-1',
      merchant: 'shop',
      idempotencyKey: key0,
      attempts: 1,
      reference: 'pay_1',
    });
    expect(ledger.get(key0)).toMatchObject({ state: 'paid', reference: 'pay_1' });
    await turns(1);
    expect(uncaught).toEqual([error]);
  });

  it('on attempt, after a lost answer: pay() answers pending and the background reconciler settles it', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    catchUncaught();
    const { bank, client, ledger } = manualSetup({
      clock: () => Date.now(),
      reconcile: { intervalMs: 1000 },
      retry: { maxAttempts: 1 },
    });
    client.on('attempt', (event) => {
      throw new Error(`attempt listener: ${event.kind} ${event.outcome}`);
    });
    const reconciled: ReconciledEvent[] = [];
    client.on('reconciled', (event) => reconciled.push(event));
    const paying = client.pay(intent);
    (await bank.until(1)).fail(lostAnswer());
    expect(await paying).toMatchObject({ status: 'pending', reason: 'max_attempts', idempotencyKey: key0 });
    expect(ledger.get(key0)).toMatchObject({ state: 'unknown' });
    expect(client.pendingCount).toBe(1);

    await vi.advanceTimersByTimeAsync(1000);
    const status = await bank.until(2);
    expect(status.method).toBe('GET');
    status.answer(200, { status: 'succeeded', id: 'pay_1' });
    await turns();
    expect(reconciled).toEqual([{ outcome: expect.objectContaining({ status: 'paid' }), latencyMs: 1000 }]);
    expect(ledger.get(key0)).toMatchObject({ state: 'paid', reference: 'pay_1' });
    expect(bank.charges).toHaveLength(1);
    expect(client.pendingCount).toBe(0);
    expect(uncaught).toEqual([
      expect.objectContaining({ message: 'attempt listener: charge unknown' }),
      expect.objectContaining({ message: 'attempt listener: status responded' }),
    ]);
  });
});

describe('close() racing recover()', () => {
  it('a recover() under way when close() runs resolves its summary and starts nothing more', async () => {
    dir = mkdtempSync(join(tmpdir(), 'payment-retry-client-'));
    const path = join(dir, 'payments.db');
    const { SqliteLedger } = await import('./sqlite-ledger.js');
    const seed = new SqliteLedger({ path });
    for (let i = 0; i < 12; i++) {
      seed.create(
        newPaymentRecord({
          idempotencyKey: `k-${i}`,
          orderId: `o-${i}`,
          amount: 100,
          createdAt: i,
          updatedAt: i,
        }),
      );
    }
    await seed.close();
    // The client opens the file and closes it in close(): recover() must not write to it after that.
    const { bank, client } = manualSetup({ ledger: path as unknown as PaymentLedger });
    const recovering = client.recover();
    await client.close();
    expect(await recovering).toEqual({ found: 12, paid: 0, declined: 0, pending: 12 });
    expect(bank.requests).toHaveLength(0);
    // Nothing was sent or moved: the next process's recover() finds every payment as it was.
    const reopened = new SqliteLedger({ path });
    expect(reopened.unresolved().map((record) => record.state)).toEqual(Array(12).fill('created'));
    await reopened.close();
  });
});

describe('key retention', () => {
  it('past the gateway key retention never re-sends a charge: it asks, or stays pending', async () => {
    bank = await StubBank.start((request) =>
      request.method === 'GET' ? { status: 200, body: { status: 'succeeded', id: 'pay_r' } } : { drop: true },
    );
    const make = (statusPath?: false) =>
      createPaymentClient({
        gateway: ietfGateway({
          origin: (bank as StubBank).url,
          keyRetentionMs: 1,
          ...(statusPath === false ? { statusPath } : {}),
        }),
        ledger: new MemoryLedger(),
        retry: { baseDelayMs: 10, maxDelayMs: 10 },
        reconcile: false,
        random: () => 0.5,
      });
    client = make(false);
    expect(await client.pay(intent)).toMatchObject({ status: 'pending', reason: 'key_expired', attempts: 1 });
    expect(bank.charges).toHaveLength(1);
    await client.close();
    client = make();
    expect(await client.pay({ ...intent, orderId: 'o-2' })).toMatchObject({
      status: 'paid',
      reference: 'pay_r',
    });
    expect(bank.charges).toHaveLength(2);
  });
});

describe('key retention after a rejected request', () => {
  it('does not take a 404 past the retention as "never charged": pending, not declined', async () => {
    bank = await StubBank.start((request) => {
      if (request.method === 'POST') return { status: 401, body: { code: 'token_expired' } };
      // The status answer comes after the key's 1 ms retention: the bank may have forgotten a charge.
      const until = Date.now() + 3;
      while (Date.now() < until) {}
      return { status: 404, body: { status: 'not_found' } };
    });
    client = createPaymentClient({
      gateway: ietfGateway({ origin: bank.url, keyRetentionMs: 1 }),
      ledger: new MemoryLedger(),
      reconcile: false,
    });
    expect(await client.pay(intent)).toMatchObject({ status: 'pending', reason: 'key_expired', attempts: 2 });
    expect(bank.requests.map((r) => r.method)).toEqual(['POST', 'GET']);
  });
});

describe('PaymentClient.recover', () => {
  it('drives what a crashed process left in the ledger with the original keys', async () => {
    const ledger = new MemoryLedger();
    ledger.create(newPaymentRecord({ idempotencyKey: 'k-sent', orderId: 'a', amount: 500 }));
    ledger.transition('k-sent', 'sending');
    ledger.create(newPaymentRecord({ idempotencyKey: 'k-created', orderId: 'b', amount: 500 }));
    ledger.create(
      newPaymentRecord({ idempotencyKey: 'k-declined', orderId: 'c', amount: 500, payer: 'tok_decline_x' }),
    );
    ledger.transition('k-declined', 'sending');
    const { bank, client } = await setup(
      (request) => {
        if (request.method === 'GET') {
          return request.url.endsWith('k-sent')
            ? { status: 200, body: { status: 'succeeded', id: 'pay_a' } }
            : { status: 404, body: {} };
        }
        return request.body.includes('tok_decline') ? { status: 402, body: { reason: 'x' } } : paid(request);
      },
      { ledger },
    );
    expect(await client.recover()).toEqual({ found: 3, paid: 2, declined: 1, pending: 0 });
    expect(ledger.get('k-sent')).toMatchObject({ state: 'paid', reference: 'pay_a' });
    expect(ledger.get('k-created')).toMatchObject({ state: 'paid', reference: 'pay_k-created' });
    expect(ledger.get('k-declined')).toMatchObject({ state: 'declined', declineReason: 'x' });
    // The one that may have been sent was asked about, not charged again.
    expect(bank.charges.map(keyOf).sort()).toEqual(['k-created', 'k-declined']);
    expect(await client.recover()).toEqual({ found: 0, paid: 0, declined: 0, pending: 0 });
  });

  it('opens, uses and closes a SQLite ledger given as a path', async () => {
    dir = mkdtempSync(join(tmpdir(), 'payment-retry-client-'));
    const path = join(dir, 'payments.db');
    const { client } = await setup(paid, { ledger: path as unknown as PaymentLedger });
    expect(await client.pay(intent)).toMatchObject({ status: 'paid' });
    expect(await client.lookup('o-1')).toMatchObject({ state: 'paid' });
    await client.close();
    const { SqliteLedger } = await import('./sqlite-ledger.js');
    const reopened = new SqliteLedger({ path });
    expect(reopened.get(key0)).toMatchObject({ state: 'paid' });
    reopened.close();
  });
});

describe('options', () => {
  const gateway = ietfGateway({ origin: 'http://127.0.0.1:9' });
  const ledger = new MemoryLedger();

  it.each<[string, unknown, string]>([
    ['gateway', { ledger }, 'Expected `gateway` to be a gateway adapter'],
    ['ledger', { gateway }, 'Expected `ledger` to be a PaymentLedger or a SQLite file path'],
    ['unknown key', { gateway, ledger, retires: 3 }, 'Expected `retires` to be a known option'],
    [
      'retry.maxAttempts',
      { gateway, ledger, retry: { maxAttempts: 0 } },
      'Expected `retry.maxAttempts` to be an integer >= 1, got `0` (number)',
    ],
    [
      'retry unknown',
      { gateway, ledger, retry: { attempts: 1 } },
      'Expected `retry.attempts` to be a known option',
    ],
    [
      'timeouts.paymentMs',
      { gateway, ledger, timeouts: { paymentMs: -1 } },
      'Expected `timeouts.paymentMs` to be a finite number in [1, 2147483647] (ms), got `-1` (number)',
    ],
    [
      'breaker',
      { gateway, ledger, breaker: {} },
      'Expected `breaker` to be an object with a execute() method',
    ],
    [
      'limiter',
      { gateway, ledger, limiter: () => {} },
      'Expected `limiter` to be an object with a run() method',
    ],
    [
      'budget',
      { gateway, ledger, retry: { budget: {} } },
      'Expected `retry.budget` to be an object with a tryTake() method',
    ],
    [
      'merchant',
      { gateway, ledger, merchant: '' },
      'Expected `merchant` to be a non-empty well-formed string',
    ],
    [
      'pool.maxResponseBytes',
      { gateway, ledger, pool: { maxResponseBytes: 0.5 } },
      'Expected `pool.maxResponseBytes` to be an integer >= 1, got `0.5` (number)',
    ],
    [
      'pool',
      { gateway, ledger, pool: { connections: 0 } },
      'Expected `pool.connections` to be an integer >= 1',
    ],
    [
      'reconcile',
      { gateway, ledger, reconcile: { concurrency: 1.5 } },
      'Expected `reconcile.concurrency` to be an integer >= 1',
    ],
  ])('rejects a bad %s', (_name, options, message) => {
    expect(() => createPaymentClient(options as PaymentClientOptions)).toThrow(InvalidOptionError);
    expect(() => createPaymentClient(options as PaymentClientOptions)).toThrow(message);
  });

  // Each of these was taken without a word, and failed later or never: at every pay() (a merchant whose
  // lone surrogate SQLite would damage, an adapter's key limit below what a derived key needs), at every
  // attempt (an origin undici cannot parse), or silently (null read as the default, a retention that is
  // not a number, an optional ledger method that is not a function).
  const adapter = {
    name: 'acme',
    origin: 'http://127.0.0.1:9',
    maxKeyLength: 64,
    chargeRequest: () => ({ method: 'POST', path: '/' }),
    parseCharge: () => ({ kind: 'unknown' }),
  };
  it.each<[string, Record<string, unknown>, string]>([
    ['merchant', { merchant: null }, 'Expected `merchant` to be a non-empty well-formed string, got `null`'],
    [
      'merchant',
      { merchant: 'shop\uD800' },
      'Expected `merchant` to be a non-empty well-formed string, got `shop\\ud800` (string)',
    ],
    ['retry', { retry: null }, 'Expected `retry` to be an object, got `null`'],
    ['timeouts', { timeouts: null }, 'Expected `timeouts` to be an object, got `null`'],
    ['pool', { pool: null }, 'Expected `pool` to be an object, got `null`'],
    ['reconcile', { reconcile: null }, 'Expected `reconcile` to be an object or `false`, got `null`'],
    [
      'reconcile',
      { reconcile: true },
      'Expected `reconcile` to be an object or `false`, got `true` (boolean)',
    ],
    [
      'gateway.maxKeyLength',
      { gateway: { ...adapter, maxKeyLength: 8 } },
      'Expected `gateway.maxKeyLength` to be an integer >= 16, got `8` (number)',
    ],
    [
      'gateway.keyRetentionMs',
      { gateway: { ...adapter, keyRetentionMs: Number.NaN } },
      'Expected `gateway.keyRetentionMs` to be a finite number > 0, got `NaN` (number)',
    ],
    [
      'gateway.keyRetentionMs',
      { gateway: { ...adapter, keyRetentionMs: '86400000' } },
      'Expected `gateway.keyRetentionMs` to be a finite number > 0, got `86400000` (string)',
    ],
    [
      'gateway.origin',
      { gateway: { ...adapter, origin: 'api.acme.example' } },
      'Expected `gateway.origin` to be an http(s) origin (scheme://host[:port]), got `api.acme.example` (string)',
    ],
    [
      'gateway.origin',
      { gateway: { ...adapter, origin: 'https://api.acme.example/v1' }, dispatcher: { request() {} } },
      'Expected `gateway.origin` to be an http(s) origin (scheme://host[:port]), got `https://api.acme.example/v1` (string)',
    ],
    [
      'ledger.createSending',
      { ledger: Object.assign(new MemoryLedger(), { createSending: true }) },
      'Expected `ledger.createSending` to be a function when present, got `true` (boolean)',
    ],
    [
      'ledger',
      { ledger: '' },
      'Expected `ledger` to be a PaymentLedger or a SQLite file path, got `` (string)',
    ],
  ])('rejects %s %j at construction, naming it and the value', (option, bad, message) => {
    const make = () =>
      createPaymentClient({ gateway, ledger, reconcile: false, ...bad } as PaymentClientOptions);
    expect(make).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', option }));
    expect(make).toThrow(message);
  });

  it('opens no SQLite file when another option is bad (nobody could close it)', () => {
    dir = mkdtempSync(join(tmpdir(), 'payment-retry-client-'));
    const path = join(dir, 'payments.db');
    expect(() => createPaymentClient({ gateway, ledger: path, retry: { maxAttempts: 0 } })).toThrow(
      expect.objectContaining({ option: 'retry.maxAttempts' }),
    );
    expect(existsSync(path)).toBe(false);
  });

  it('takes an adapter without maxKeyLength or keyRetentionMs, as before', async () => {
    const { maxKeyLength: _unused, ...bare } = adapter;
    await createPaymentClient({ gateway: bare as never, ledger, reconcile: false }).close();
  });

  // Node fires a setTimeout longer than 2^31 - 1 ms after 1 ms (TimeoutOverflowWarning): a 35-day
  // payment deadline would end every payment pending at once, a long reconcile interval would spin.
  it.each<[string, Record<string, unknown>, number, string]>([
    ['timeouts.paymentMs', { timeouts: { paymentMs: 3e9 } }, 1, '3000000000'],
    ['timeouts.connectMs', { timeouts: { connectMs: 2 ** 31 } }, 1, '2147483648'],
    ['timeouts.headersMs', { timeouts: { headersMs: 2 ** 31 } }, 1, '2147483648'],
    ['timeouts.bodyMs', { timeouts: { bodyMs: 2 ** 31 } }, 1, '2147483648'],
    ['reconcile.intervalMs', { reconcile: { intervalMs: 3e9, maxIntervalMs: 3e9 } }, 1, '3000000000'],
    ['reconcile.maxIntervalMs', { reconcile: { maxIntervalMs: 3e9 } }, 1, '3000000000'],
    ['reconcile.deadlineMs', { reconcile: { deadlineMs: 3e9 } }, 1, '3000000000'],
    ['retry.baseDelayMs', { retry: { baseDelayMs: 3e9, maxDelayMs: 3e9 } }, 0, '3000000000'],
    ['retry.maxDelayMs', { retry: { maxDelayMs: 3e9 } }, 0, '3000000000'],
    ['pool.keepAliveTimeoutMs', { pool: { keepAliveTimeoutMs: 3e9 } }, 1, '3000000000'],
  ])('rejects %s past the 2^31 - 1 ms a timer holds', (option, bad, min, value) => {
    const make = () => createPaymentClient({ gateway, ledger, ...bad } as PaymentClientOptions);
    expect(make).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', option }));
    expect(make).toThrow(
      `Expected \`${option}\` to be a finite number in [${min}, 2147483647] (ms), got \`${value}\` (number)`,
    );
  });

  it('rejects retry.maxRetryAfterMs whose 10% stretch would not fit a timer', () => {
    const make = (maxRetryAfterMs: number) =>
      createPaymentClient({ gateway, ledger, reconcile: false, retry: { maxRetryAfterMs } });
    expect(() => make(2 ** 31 - 1)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION', option: 'retry.maxRetryAfterMs' }),
    );
    expect(() => make(2 ** 31 - 1)).toThrow('a finite number in [0, 1952257860] (ms), got `2147483647`');
    // The longest accepted, stretched by the most serverDelay adds, is still a valid timer.
    expect(Math.floor((2 ** 31 - 1) / 1.1) * 1.1).toBeLessThanOrEqual(2 ** 31 - 1);
  });

  it('accepts every timer option at 2^31 - 1 ms', async () => {
    const max = 2 ** 31 - 1;
    const client = createPaymentClient({
      gateway,
      ledger,
      retry: { baseDelayMs: max, maxDelayMs: max, maxRetryAfterMs: Math.floor(max / 1.1) },
      timeouts: { connectMs: max, headersMs: max, bodyMs: max, paymentMs: max },
      reconcile: { intervalMs: max, maxIntervalMs: max, deadlineMs: max },
      pool: { keepAliveTimeoutMs: max },
    });
    await client.close();
  });

  it.each<[string, Record<string, unknown>, string]>([
    [
      'retry.baseDelayMs',
      { retry: { baseDelayMs: 5000, maxDelayMs: 10 } },
      'Expected `retry.baseDelayMs` to be a number <= retry.maxDelayMs (10), got `5000` (number)',
    ],
    [
      'retry.baseDelayMs',
      { retry: { baseDelayMs: 5000 } },
      'Expected `retry.baseDelayMs` to be a number <= retry.maxDelayMs (2000), got `5000` (number)',
    ],
    [
      'reconcile.intervalMs',
      { reconcile: { intervalMs: 60_000, maxIntervalMs: 10 } },
      'Expected `reconcile.intervalMs` to be a number <= reconcile.maxIntervalMs (10), got `60000` (number)',
    ],
    [
      'reconcile.intervalMs',
      { reconcile: { intervalMs: 120_000 } },
      'Expected `reconcile.intervalMs` to be a number <= reconcile.maxIntervalMs (60000), got `120000` (number)',
    ],
  ])('rejects %s above its maximum (%j)', (option, bad, message) => {
    const make = () => createPaymentClient({ gateway, ledger, ...bad } as PaymentClientOptions);
    expect(make).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', option }));
    expect(make).toThrow(message);
  });

  it('rejects bad pay() options, sending nothing', async () => {
    const { bank, client } = await setup(paid);
    // @ts-expect-error testing an unknown option
    await expect(client.pay(intent, { timeout: 5 })).rejects.toMatchObject({ option: 'timeout' });
    await expect(client.pay(intent, { deadlineMs: 0 })).rejects.toThrow(
      'Expected `deadlineMs` to be a finite number in [1, 2147483647] (ms), got `0`',
    );
    // Past 2^31-1 ms Node would fire the deadline timer after 1 ms.
    await expect(client.pay(intent, { deadlineMs: 3e9 })).rejects.toMatchObject({ option: 'deadlineMs' });
    // @ts-expect-error testing a bad signal
    await expect(client.pay(intent, { signal: {} })).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      option: 'signal',
    });
    expect(bank.requests).toHaveLength(0);
  });

  it('refuses a caller idempotency key when the ledger forgets paid payments (maxPaid), sending nothing', async () => {
    // Paid under a key of the caller's and then forgotten, an order would be charged again under the
    // caller's next key: only keys derived from the order are derived again and replayed by the bank.
    const { bank, client } = await setup(paid, { ledger: new MemoryLedger({ maxPaid: 10 }) });
    await expect(client.pay({ ...intent, idempotencyKey: 'caller-key-1' })).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      option: 'intent.idempotencyKey',
    });
    expect(bank.requests).toHaveLength(0);
    expect(await client.pay(intent)).toMatchObject({ status: 'paid' });
  });

  it('takes a well-formed non-ASCII order id (a surrogate pair is not a lone surrogate)', async () => {
    const { client } = await setup(paid);
    expect(await client.pay({ ...intent, orderId: 'order-\u{1F6D2}-42' })).toMatchObject({ status: 'paid' });
  });

  it.each<[string, unknown, string]>([
    ['orderId', { ...intent, orderId: '' }, 'intent.orderId'],
    ['amount', { ...intent, amount: 12.5 }, 'intent.amount'],
    ['amount', { ...intent, amount: 0 }, 'intent.amount'],
    ['currency', { ...intent, currency: 'EURO' }, 'intent.currency'],
    ['orderId', { ...intent, orderId: 'o\uD800-1' }, 'intent.orderId'],
    ['payer', { ...intent, payer: '' }, 'intent.payer'],
    ['payer', { ...intent, payer: 'tok_\uDC00' }, 'intent.payer'],
    ['merchant', { ...intent, merchant: '\uD800' }, 'intent.merchant'],
    ['fields', { ...intent, fields: [] }, 'intent.fields'],
    ['fields', { ...intent, fields: { amount: 10n } }, 'intent.fields'],
    ['idempotencyKey', { ...intent, idempotencykey: 'my-key-1' }, 'intent.idempotencykey'],
    ['intent', null, 'intent'],
  ])('rejects an intent with a bad %s, sending nothing', async (_name, bad, option) => {
    const { bank, client } = await setup(paid);
    await expect(client.pay(bad as PaymentIntent)).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      option,
    });
    expect(bank.requests).toHaveLength(0);
  });
});

describe("a bank answer about another payment than the ledger's", () => {
  it('a key that holds another order and amount at the bank never settles this one as paid', async () => {
    const sim = await startBankSim();
    try {
      // Process A paid order o-1 under a key of the caller's; process B (its own ledger, which never saw
      // that) gets the same key for order o-2 with another amount. The bank answers 422 (another payload),
      // and its status endpoint reports the key paid: for order o-1 and 12.50, not for o-2.
      const make = () =>
        createPaymentClient({
          gateway: ietfGateway({ origin: sim.url }),
          ledger: new MemoryLedger(),
          retry: { baseDelayMs: 1, maxDelayMs: 1, maxAttempts: 4 },
          reconcile: false,
        });
      const a = make();
      expect(await a.pay({ ...intent, idempotencyKey: 'shared-key-1' })).toMatchObject({ status: 'paid' });
      await a.close();
      client = make();
      const outcome = await client.pay({
        ...intent,
        orderId: 'o-2',
        amount: 5000,
        idempotencyKey: 'shared-key-1',
      });
      expect(outcome).toMatchObject({ status: 'pending', orderId: 'o-2' });
      expect(await client.lookup('o-2')).toMatchObject({ state: 'unknown', reference: null });
      // The bank refused every charge of o-2 as another payload: it charged o-1 once, o-2 never.
      expect(sim.stats()).toMatchObject({ charges: 1 });
      expect(sim.stats().mismatches).toBeGreaterThan(0);
    } finally {
      await client?.close();
      client = undefined;
      await sim.close();
    }
  });
});

describe('an adapter written as a class', () => {
  /** A bank's adapter as a class whose methods read its own fields through `this`. */
  class AcmeGateway implements GatewayAdapter {
    readonly name = 'acme';
    readonly origin = 'http://bank.test';
    readonly maxKeyLength = 64;
    readonly #path = '/v1/charges';

    chargeRequest(input: ChargeInput): GatewayRequest {
      return {
        method: 'POST',
        path: this.#path,
        headers: { 'content-type': 'application/json', 'acme-request-id': input.idempotencyKey },
        body: JSON.stringify({ reference: input.orderId, amount: input.amount }),
      };
    }

    parseCharge(response: GatewayResponse): ChargeResult {
      return this.#paid(response) ? { kind: 'paid', reference: 'acme_1' } : { kind: 'unknown', reason: 'x' };
    }

    statusRequest(input: ChargeInput): GatewayRequest {
      return { method: 'GET', path: `${this.#path}/${input.idempotencyKey}`, headers: {} };
    }

    parseStatus(response: GatewayResponse): StatusResult {
      return this.#paid(response) ? { kind: 'paid', reference: 'acme_1' } : { kind: 'not_found' };
    }

    #paid(response: GatewayResponse): boolean {
      return response.statusCode === 200 || response.statusCode === 201;
    }
  }

  it('has its status methods called on the adapter, as its charge methods are', async () => {
    // Two tries: the lost charge and the status query (no third request to hang on if it is misread).
    const { bank, client } = manualSetup({ gateway: new AcmeGateway(), retry: { maxAttempts: 2 } });
    const paying = client.pay(intent);
    (await bank.until(1)).fail(Object.assign(new Error('timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' }));
    const status = await bank.until(2);
    expect(status).toMatchObject({ method: 'GET', path: `/v1/charges/${key0}` });
    status.answer(200, {});
    expect(await paying).toMatchObject({ status: 'paid', reference: 'acme_1', attempts: 2 });
    expect(bank.charges).toHaveLength(1);
  });
});

describe('a retry cost larger than the retry budget holds', () => {
  it('is refused at construction, naming the option, rather than rejecting pay() after a lost answer', async () => {
    const gateway = ietfGateway({ origin: 'http://bank.test' });
    // Before: the bank took the charge, its answer was lost, and pay() rejected with the budget's own
    // error (its `n`), the payment left `sending` and handed to no reconciler.
    expect(() =>
      createPaymentClient({ gateway, ledger: new MemoryLedger(), retry: { timeoutRetryCost: 600 } }),
    ).toThrow(
      expect.objectContaining({
        code: 'ERR_INVALID_OPTION',
        option: 'retry.timeoutRetryCost',
        message:
          "Expected `retry.timeoutRetryCost` to be a number <= the retry budget's capacity (500), got `600` (number)",
      }),
    );
    const small = tokenBucket({ capacity: 8, refillRate: 1 });
    expect(() =>
      createPaymentClient({ gateway, ledger: new MemoryLedger(), retry: { budget: small } }),
    ).toThrow(expect.objectContaining({ option: 'retry.timeoutRetryCost' }));
    expect(() =>
      createPaymentClient({
        gateway,
        ledger: new MemoryLedger(),
        retry: { budget: small, retryCost: 9, timeoutRetryCost: 8 },
      }),
    ).toThrow(expect.objectContaining({ option: 'retry.retryCost' }));
    // At the capacity, a retry can still be paid for: the lost answer is asked about.
    const { bank, client } = manualSetup({ retry: { budget: small, retryCost: 8, timeoutRetryCost: 8 } });
    const paying = client.pay(intent);
    (await bank.until(1)).fail(Object.assign(new Error('timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' }));
    (await bank.until(2)).answer(200, { ...PAID, orderId: 'o-1' });
    expect(await paying).toMatchObject({ status: 'paid', attempts: 2 });
  });
});
