import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newPaymentRecord } from '../test/new-payment-record.js';
import { createPaymentClient, type PaymentClient } from './client.js';
import { InvalidOptionError } from './errors.js';
import { ietfGateway } from './ietf-gateway.js';
import type { PaymentLedger, PaymentState } from './ledger.js';
import { canTransition } from './ledger.js';
import { MemoryLedger } from './memory-ledger.js';
import { SqliteLedger } from './sqlite-ledger.js';

const record = newPaymentRecord;

describe('canTransition', () => {
  it('allows only the documented state machine', () => {
    const states: PaymentState[] = ['created', 'sending', 'paid', 'declined', 'unknown', 'reconciling'];
    const allowed = states.flatMap((from) =>
      states.filter((to) => canTransition(from, to)).map((to) => `${from}>${to}`),
    );
    expect(allowed.sort()).toEqual(
      [
        'created>sending',
        'sending>paid',
        'sending>declined',
        'sending>unknown',
        'unknown>reconciling',
        'reconciling>paid',
        'reconciling>declined',
        'reconciling>unknown',
      ].sort(),
    );
  });
});

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'payment-retry-ledger-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const ledgers: [string, () => PaymentLedger][] = [
  ['MemoryLedger', () => new MemoryLedger()],
  ['SqliteLedger', () => new SqliteLedger({ path: join(dir, 'ledger.db') })],
];

describe.each(ledgers)('%s', (_name, make) => {
  let ledger: PaymentLedger;
  beforeEach(() => {
    ledger = make();
  });
  afterEach(async () => {
    await ledger.close();
  });

  it('creates a payment once; a second create with the same key or generation is refused', async () => {
    expect(await ledger.create(record())).toBe(true);
    expect(await ledger.create(record())).toBe(false);
    expect(await ledger.create(record({ idempotencyKey: 'key-2' }))).toBe(false);
    expect(await ledger.get('key-1')).toMatchObject({ state: 'created', amount: 1250, attempts: 0 });
    expect(await ledger.latest('["shop","o-1"]')).toMatchObject({ idempotencyKey: 'key-1' });
    expect(await ledger.latest('["shop","o-2"]')).toBeUndefined();
  });

  it('refuses an older generation once a newer one exists', async () => {
    await ledger.create(record({ idempotencyKey: 'g1', generation: 1 }));
    expect(await ledger.create(record({ idempotencyKey: 'g0', generation: 0 }))).toBe(false);
    expect(await ledger.create(record({ idempotencyKey: 'g2', generation: 2 }))).toBe(true);
    expect(await ledger.latest('["shop","o-1"]')).toMatchObject({ idempotencyKey: 'g2', generation: 2 });
  });

  it('moves along the state machine and refuses other moves', async () => {
    await ledger.create(record());
    expect(await ledger.transition('key-1', 'paid')).toBeUndefined();
    expect(await ledger.transition('key-1', 'sending', { firstSentAt: 10 })).toMatchObject({
      state: 'sending',
      firstSentAt: 10,
    });
    expect(await ledger.transition('key-1', 'unknown', { unknownSince: 20 })).toMatchObject({
      unknownSince: 20,
    });
    expect(await ledger.transition('key-1', 'reconciling')).toMatchObject({ state: 'reconciling' });
    // First write wins for the timestamps the latency and key retention count from.
    expect(await ledger.transition('key-1', 'unknown', { unknownSince: 99 })).toMatchObject({
      unknownSince: 20,
    });
    await ledger.transition('key-1', 'reconciling');
    expect(await ledger.transition('key-1', 'paid', { reference: 'pay_1' })).toMatchObject({
      state: 'paid',
      reference: 'pay_1',
    });
    expect(await ledger.transition('key-1', 'declined', { declineReason: 'late' })).toBeUndefined();
    expect(await ledger.transition('missing', 'sending')).toBeUndefined();
    expect(await ledger.get('key-1')).toMatchObject({
      state: 'paid',
      reference: 'pay_1',
      declineReason: null,
    });
  });

  it('records attempts and counts them', async () => {
    await ledger.create(record());
    const attempt = {
      idempotencyKey: 'key-1',
      kind: 'charge' as const,
      outcome: 'unknown' as const,
      statusCode: null,
      errorCode: 'UND_ERR_SOCKET',
      startedAt: 5,
      durationMs: 1.5,
    };
    await ledger.recordAttempt(attempt);
    await ledger.recordAttempt({
      ...attempt,
      kind: 'status',
      outcome: 'responded',
      statusCode: 200,
      errorCode: null,
    });
    expect((await ledger.get('key-1'))?.attempts).toBe(2);
    expect(await ledger.attempts('key-1')).toEqual([
      attempt,
      { ...attempt, kind: 'status', outcome: 'responded', statusCode: 200, errorCode: null },
    ]);
  });

  it('writes an attempt with the state change it caused, and keeps it when the move is refused', async () => {
    await ledger.create(record());
    await ledger.transition('key-1', 'sending');
    const attempt = {
      idempotencyKey: 'key-1',
      kind: 'charge' as const,
      outcome: 'responded' as const,
      statusCode: 201,
      errorCode: null,
      startedAt: 5,
      durationMs: 2,
    };
    expect(await ledger.transition('key-1', 'paid', { reference: 'r', attempt })).toMatchObject({
      state: 'paid',
      attempts: 1,
    });
    expect(await ledger.transition('key-1', 'declined', { declineReason: 'late', attempt })).toBeUndefined();
    expect(await ledger.get('key-1')).toMatchObject({ state: 'paid', attempts: 2 });
    expect(await ledger.attempts('key-1')).toHaveLength(2);
  });

  it('createSending inserts a payment already sending, refusing what create refuses', async () => {
    const sending = record({ state: 'sending', firstSentAt: 7 });
    expect(await ledger.createSending?.(sending)).toBe(true);
    expect(await ledger.get('key-1')).toMatchObject({ state: 'sending', firstSentAt: 7, attempts: 0 });
    expect(await ledger.createSending?.(sending)).toBe(false);
    expect(await ledger.create(record())).toBe(false);
    expect(await ledger.createSending?.(record({ idempotencyKey: 'key-2', state: 'sending' }))).toBe(false);
    expect(await ledger.unresolved()).toMatchObject([{ idempotencyKey: 'key-1', state: 'sending' }]);
    // It goes on as if created and moved to sending: `created` moves are refused, settling works.
    expect(await ledger.transition('key-1', 'sending')).toBeUndefined();
    expect(
      await ledger.transition('key-1', 'paid', {
        reference: 'r',
        attempt: {
          idempotencyKey: 'key-1',
          kind: 'charge',
          outcome: 'responded',
          statusCode: 201,
          errorCode: null,
          startedAt: 7,
          durationMs: 1,
        },
      }),
    ).toMatchObject({ state: 'paid', reference: 'r', attempts: 1, firstSentAt: 7 });
    // A newer generation of the order is refused once a later one exists, as with create.
    await ledger.create(record({ idempotencyKey: 'g2', generation: 2 }));
    expect(await ledger.createSending?.(record({ idempotencyKey: 'g1', generation: 1 }))).toBe(false);
  });

  it('inserts a new payment with nothing counted or settled, whatever the record passed in says', async () => {
    const stale = {
      attempts: 7,
      reference: 'stale-ref',
      declineReason: 'stale-reason',
      firstSentAt: 3,
      unknownSince: 4,
    };
    expect(await ledger.create(record({ ...stale, state: 'unknown' }))).toBe(true);
    expect(await ledger.get('key-1')).toMatchObject({
      state: 'created',
      attempts: 0,
      reference: null,
      declineReason: null,
      firstSentAt: null,
      unknownSince: null,
    });
    // createSending keeps the record's firstSentAt (it is create + the move to sending), nothing else.
    const other = { idempotencyKey: 'key-2', scope: 'other', state: 'paid' as const };
    expect(await ledger.createSending?.(record({ ...stale, ...other }))).toBe(true);
    expect(await ledger.get('key-2')).toMatchObject({
      state: 'sending',
      attempts: 0,
      reference: null,
      declineReason: null,
      firstSentAt: 3,
      unknownSince: null,
    });
  });

  it('lists unresolved payments oldest first by createdAt, also when inserted out of that order', async () => {
    // Two processes' wall clocks, or one stepped back: insertion order is not age.
    await ledger.create(record({ idempotencyKey: 'late', scope: 'late', createdAt: 30 }));
    await ledger.create(record({ idempotencyKey: 'early', scope: 'early', createdAt: 10 }));
    await ledger.create(record({ idempotencyKey: 'tie', scope: 'tie', createdAt: 30 }));
    expect((await ledger.unresolved()).map((r) => r.idempotencyKey)).toEqual(['early', 'late', 'tie']);
    expect((await ledger.unresolved(1)).map((r) => r.idempotencyKey)).toEqual(['early']);
    expect(await ledger.unresolved(0)).toEqual([]);
  });

  it('lists unresolved payments oldest first', async () => {
    await ledger.create(record({ idempotencyKey: 'a', scope: 'a', createdAt: 1 }));
    await ledger.create(record({ idempotencyKey: 'b', scope: 'b', createdAt: 2 }));
    await ledger.create(record({ idempotencyKey: 'c', scope: 'c', createdAt: 3 }));
    await ledger.transition('b', 'sending');
    await ledger.transition('b', 'paid', { reference: 'r' });
    await ledger.transition('c', 'sending');
    expect((await ledger.unresolved()).map((r) => r.idempotencyKey)).toEqual(['a', 'c']);
    expect((await ledger.unresolved(1)).map((r) => r.idempotencyKey)).toEqual(['a']);
  });

  it.each([
    [-1, '`-1` (number)'],
    [1.5, '`1.5` (number)'],
    [Number.NaN, '`NaN` (number)'],
    ['2', '`2` (string)'],
  ])(
    'refuses unresolved(%s) with InvalidOptionError naming `limit`, as every ledger does',
    async (limit, shown) => {
      await ledger.create(record({ idempotencyKey: 'a', scope: 'a' }));
      // Once [] from the memory ledger and every payment from SQLite for -1, and a SQLite error for 1.5.
      const refused = (async () => ledger.unresolved(limit as number))();
      await expect(refused).rejects.toThrow(InvalidOptionError);
      await expect(refused).rejects.toMatchObject({
        code: 'ERR_INVALID_OPTION',
        option: 'limit',
        message: `Expected \`limit\` to be an integer >= 0 or Infinity, got ${shown}`,
      });
      expect(await ledger.unresolved(Number.POSITIVE_INFINITY)).toHaveLength(1);
    },
  );
});

describe('SqliteLedger', () => {
  it('keeps payments across a close and reopen (WAL file)', () => {
    const path = join(dir, 'durable.db');
    const first = new SqliteLedger({ path });
    first.create(record());
    first.transition('key-1', 'sending');
    first.close();
    const second = new SqliteLedger({ path });
    expect(second.unresolved()).toMatchObject([{ idempotencyKey: 'key-1', state: 'sending' }]);
    second.close();
    const db = new Database(path);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('counts an attempt written with a state change, refused or not, without keeping rows', () => {
    const ledger = new SqliteLedger({ path: join(dir, 'counts.db'), keepAttempts: false });
    ledger.createSending(record({ state: 'sending', firstSentAt: 1 }));
    const attempt = {
      idempotencyKey: 'key-1',
      kind: 'charge' as const,
      outcome: 'responded' as const,
      statusCode: 201,
      errorCode: null,
      startedAt: 1,
      durationMs: 1,
    };
    expect(ledger.transition('key-1', 'paid', { reference: 'r', attempt })).toMatchObject({ attempts: 1 });
    expect(ledger.transition('key-1', 'unknown', { attempt })).toBeUndefined();
    ledger.recordAttempt(attempt);
    expect(ledger.get('key-1')).toMatchObject({ state: 'paid', attempts: 3 });
    expect(ledger.attempts('key-1')).toEqual([]);
    ledger.close();
  });

  it('uses a caller-owned database without closing it', () => {
    const db = new Database(':memory:');
    const ledger = new SqliteLedger({ database: db });
    ledger.create(record());
    ledger.close();
    expect(db.open).toBe(true);
    db.close();
  });

  it.each<[string, Record<string, unknown>, string]>([
    [
      'keepAttempts',
      { keepAttempts: 'no' },
      'Expected `keepAttempts` to be `true` or `false`, got `no` (string)',
    ],
    // SQLite would turn it into busy_timeout = 0: SQLITE_BUSY at once instead of waiting.
    [
      'busyTimeoutMs',
      { busyTimeoutMs: 3e9 },
      'Expected `busyTimeoutMs` to be a finite number in [0, 2147483647] (ms), got `3000000000` (number)',
    ],
  ])('rejects a bad %s before opening anything', (option, bad, message) => {
    const path = join(dir, 'never.db');
    const make = () => new SqliteLedger({ path, ...bad });
    expect(make).toThrow(InvalidOptionError);
    expect(make).toThrow(message);
    expect(make).toThrow(expect.objectContaining({ option }));
  });

  it('validates its options', () => {
    expect(() => new SqliteLedger({})).toThrow(InvalidOptionError);
    expect(() => new SqliteLedger({ path: '' })).toThrow('Expected `path` to be a non-empty string');
    // @ts-expect-error testing a bad value
    expect(() => new SqliteLedger({ path: 'x.db', synchronous: 'off' })).toThrow(
      "Expected `synchronous` to be 'normal' or 'full', got `off` (string)",
    );
    // @ts-expect-error testing an unknown key
    expect(() => new SqliteLedger({ path: 'x.db', journal: 'wal' })).toThrow(
      'Expected `journal` to be a known option',
    );
  });
});

describe('MemoryLedger', () => {
  it('forgets the oldest paid payments past maxPaid, never unresolved or declined ones', () => {
    const ledger = new MemoryLedger({ maxPaid: 2 });
    for (const key of ['a', 'b', 'c', 'd']) {
      ledger.create(record({ idempotencyKey: key, scope: key }));
      ledger.transition(key, 'sending');
    }
    ledger.transition('a', 'paid', { reference: 'ra' });
    ledger.transition('b', 'declined', { declineReason: 'x' });
    ledger.transition('c', 'paid', { reference: 'rc' });
    ledger.transition('d', 'paid', { reference: 'rd' });
    expect(ledger.get('a')).toBeUndefined();
    expect(ledger.latest('a')).toBeUndefined();
    expect(ledger.get('b')).toMatchObject({ state: 'declined' });
    expect(ledger.get('c')).toMatchObject({ state: 'paid' });
    expect(ledger.get('d')).toMatchObject({ state: 'paid' });
    expect(() => new MemoryLedger({ maxPaid: 0 })).toThrow(
      'Expected `maxPaid` to be an integer >= 1 or Infinity, got `0` (number)',
    );
  });

  it('after forgetting a paid payment, points the order at its highest generation still kept', () => {
    const ledger = new MemoryLedger({ maxPaid: 1 });
    ledger.createSending(record({ idempotencyKey: 'g0', generation: 0 }));
    ledger.transition('g0', 'declined', { declineReason: 'insufficient_funds' });
    ledger.createSending(record({ idempotencyKey: 'g1', generation: 1 }));
    ledger.transition('g1', 'paid', { reference: 'r1' });
    ledger.createSending(record({ idempotencyKey: 'other', scope: 'other' }));
    ledger.transition('other', 'paid', { reference: 'r2' });
    expect(ledger.get('g1')).toBeUndefined();
    // The next pay() derives generation 1 again: the paid payment's key, which the bank replays.
    expect(ledger.latest(record().scope)).toMatchObject({ idempotencyKey: 'g0', generation: 0 });
    expect(ledger.create(record({ idempotencyKey: 'g1', generation: 1 }))).toBe(true);
    expect(ledger.latest(record().scope)).toMatchObject({ idempotencyKey: 'g1', state: 'created' });
  });

  it('after forgetting a paid generation with a gap below it, refuses every lower generation', () => {
    const ledger = new MemoryLedger({ maxPaid: 1 });
    ledger.createSending(record({ idempotencyKey: 'g0', generation: 0 }));
    ledger.transition('g0', 'declined', { declineReason: 'x' });
    // Written through the ledger's API (a client never skips a generation).
    ledger.createSending(record({ idempotencyKey: 'g2', generation: 2 }));
    ledger.transition('g2', 'paid', { reference: 'r2' });
    ledger.createSending(record({ idempotencyKey: 'other', scope: 'other' }));
    ledger.transition('other', 'paid', { reference: 'r' });
    expect(ledger.latest(record().scope)).toMatchObject({ idempotencyKey: 'g0' });
    // Generation 1 would be a new key for an order the bank charged under generation 2's.
    expect(ledger.create(record({ idempotencyKey: 'g1', generation: 1 }))).toBe(false);
    expect(ledger.create(record({ idempotencyKey: 'g2', generation: 2 }))).toBe(true);
    expect(ledger.create(record({ idempotencyKey: 'g3', generation: 3 }))).toBe(true);
  });

  it("never answers another order's payment as an order's latest once a forgotten key is used again", () => {
    // Found by the model (ledger.model.test.ts). Through the ledger's API only: the client never creates
    // a generation over a paid one, nor one order's key for another.
    const ledger = new MemoryLedger({ maxPaid: 1 });
    const order = (orderId: string, key: string, generation = 0) =>
      record({ idempotencyKey: key, scope: orderId, orderId, generation, state: 'sending', firstSentAt: 1 });
    const pay = (key: string) => ledger.transition(key, 'paid', { reference: `ref-${key}` });
    ledger.createSending(order('o-1', 'reused'));
    pay('reused');
    ledger.createSending(order('o-1', 'o-1-g1', 1));
    ledger.createSending(order('o-2', 'o-2-g0'));
    pay('o-1-g1'); // forgets `reused`, which o-1-g1 was created over
    ledger.createSending(order('o-3', 'o-3-g0'));
    ledger.createSending(order('o-3', 'reused', 1)); // the forgotten key, now o-3's
    pay('o-2-g0'); // forgets o-1-g1, o-1's latest: o-1 holds nothing any more
    expect(ledger.get('o-1-g1')).toBeUndefined();
    expect(ledger.latest('o-1')).toBeUndefined();
    expect(ledger.latest('o-3')).toMatchObject({ idempotencyKey: 'reused', generation: 1 });
    // o-1 paid generation 1 last: its next payment must derive that key again, not generation 0's.
    expect(ledger.create(order('o-1', 'o-1-g0-again'))).toBe(false);
    expect(ledger.create(order('o-1', 'o-1-g1', 1))).toBe(true);
  });

  it.each<[string, Record<string, unknown>, string]>([
    [
      'keepAttempts',
      { keepAttempts: 'no' },
      'Expected `keepAttempts` to be `true` or `false`, got `no` (string)',
    ],
    ['maxPaid', { maxPaid: '5' }, 'Expected `maxPaid` to be an integer >= 1 or Infinity, got `5` (string)'],
    ['maxPaid', { maxPaid: 2.5 }, 'Expected `maxPaid` to be an integer >= 1 or Infinity, got `2.5` (number)'],
    ['maxPaid', { maxPaid: Number.NaN }, 'Expected `maxPaid` to be an integer >= 1 or Infinity'],
  ])('rejects a bad %s', (option, options, message) => {
    expect(() => new MemoryLedger(options)).toThrow(InvalidOptionError);
    expect(() => new MemoryLedger(options)).toThrow(message);
    expect(() => new MemoryLedger(options)).toThrow(expect.objectContaining({ option }));
  });

  it('accepts maxPaid: Infinity and keepAttempts: false', () => {
    expect(() => new MemoryLedger({ maxPaid: Number.POSITIVE_INFINITY, keepAttempts: false })).not.toThrow();
  });
});

describe('MemoryLedger({ maxPaid }) against bank-sim', () => {
  let bank: BankSim | undefined;
  let client: PaymentClient | undefined;
  afterEach(async () => {
    await client?.close();
    await bank?.close();
    client = undefined;
    bank = undefined;
  });

  it('an order paid after a decline, then forgotten, is paid again without a second charge', async () => {
    bank = await startBankSim({ latencyMs: 0 });
    client = createPaymentClient({
      gateway: ietfGateway({ origin: bank.url }),
      ledger: new MemoryLedger({ maxPaid: 1 }),
      reconcile: false,
    });
    const order = { orderId: 'o-1', amount: 100, currency: 'EUR' };
    const declined = await client.pay({ ...order, payer: 'tok_decline_insufficient_funds' });
    expect(declined.status).toBe('declined');
    const paid = await client.pay({ ...order, payer: 'tok_ok' });
    expect(paid.status).toBe('paid');
    // Another order paid forgets o-1's paid payment (maxPaid 1); its declined one is kept.
    expect((await client.pay({ orderId: 'o-2', amount: 5, currency: 'EUR', payer: 'tok_ok' })).status).toBe(
      'paid',
    );

    const again = await client.pay({ ...order, payer: 'tok_ok' });
    // The same key as the paid charge: the bank replays its answer and charges nothing.
    expect(again).toMatchObject({
      status: 'paid',
      idempotencyKey: paid.idempotencyKey,
      reference: paid.status === 'paid' ? paid.reference : undefined,
    });
    expect((await client.lookup('o-1'))?.state).toBe('paid');
    const stats = bank.stats();
    expect(stats.replays).toBe(1);
    expect(stats.charges).toBe(2); // o-1 once, o-2 once
    expect(stats.ordersChargedMoreThanOnce).toBe(0);
  });
});
