/**
 * The `PaymentLedger` contract (src/ledger.ts), written plainly from its TSDoc, `canTransition`, the
 * `MemoryLedgerOptions.maxPaid` documentation, ARCHITECTURE.md ("Payment states") and the way the client
 * (src/client.ts) calls each method; and the fast-check commands that hold a ledger to it. The memory and
 * SQLite ledgers both run these commands (src/ledger.model.test.ts), so they are held to one model.
 *
 * The contract as modelled:
 * - `create` / `createSending` insert a new payment in state `created` / `sending` and answer true; they
 *   answer false, writing nothing, when the key is held, or the scope holds a payment of the same or a
 *   later generation (both ledgers refuse a generation that is not newer than the scope's latest: "a newer
 *   generation won the race" is a refusal, not a second live generation). A new payment has counted no
 *   attempts and has no reference, decline reason or unknown-since; `firstSentAt` is the record's for
 *   `createSending` (it is `create` + `transition('sending', { firstSentAt })`) and null for `create`. The
 *   record's other fields are stored as given (`createdAt`, `updatedAt` included); its `state` is not.
 * - `transition(key, to, patch)` is a compare-and-set against the state machine: it moves the payment when
 *   `canTransition(current, to)`, sets `updatedAt` to the wall clock, overwrites `reference` and
 *   `declineReason` when the patch has them, and writes `firstSentAt` and `unknownSince` only while they
 *   are null (first write wins); it answers the updated record. A missing payment or a move the machine does
 *   not allow answers undefined and changes nothing, except that `patch.attempt` is recorded either way
 *   (it happened). `paid` and `declined` are final. The set is compared with the machine, not with
 *   what the caller read: a driver whose read is stale is refused unless the move is allowed from where
 *   the payment is now (a driver that read `sending` moves a payment now `reconciling` to `unknown`).
 * - `recordAttempt` appends the attempt to its key's list (when attempts are kept) and counts it in the
 *   payment's `attempts` (when the payment exists; an attempt for a missing payment is still listed by
 *   both ledgers). `attempts(key)` lists them in the order recorded.
 * - `latest(scope)` is the payment of the highest generation the ledger holds for the scope.
 * - `unresolved(limit)` lists every payment in created/sending/unknown/reconciling, oldest first: by
 *   `createdAt`, ties in insertion order; at most `limit` of them (none for 0, all when omitted or
 *   `Infinity`). Any other `limit` (negative, fractional, NaN, not a number) throws `InvalidOptionError`
 *   (`ERR_INVALID_OPTION`, `option: 'limit'`, the value in the message) in both ledgers, changing nothing.
 * - The SQLite ledger keeps everything committed across a close and reopen of its file (a restart), and
 *   two connections to one file see one ledger. The memory ledger's `close` forgets everything (a restart
 *   of a process that keeps payments in memory).
 *
 * The memory ledger's `maxPaid` (what eviction may forget, and what it must not):
 * - May forget: a `paid` payment, once `maxPaid` payments paid after it are held (oldest paid first). A
 *   forgotten payment is gone with its attempts; its key may be created again.
 * - Never forgets: a payment in any other state.
 * - The scope's latest is then again the highest generation still held. When the forgotten payment was
 *   the scope's latest and the next `pay()` would not derive its generation (latest + 1, or 0), that
 *   generation is remembered and `create` refuses any lower one, until that generation or a later one is
 *   recorded again.
 * - What this is for (checked against a shadow ledger that never forgets, for every order written only
 *   the way the client writes): a later click on a paid-then-forgotten order derives the paid
 *   generation's key again (the bank replays the charge). Forgetting never makes a click answer
 *   `declined`, charge a key it would not have charged, or fail where the full ledger would not.
 */

import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { expect } from 'vitest';
import type {
  AttemptRecord,
  Awaitable,
  PaymentLedger,
  PaymentRecord,
  PaymentState,
  RecordPatch,
} from '../src/ledger.js';
import { canTransition, UNRESOLVED_STATES } from '../src/ledger.js';
import { newPaymentRecord } from './new-payment-record.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export const STATES: readonly PaymentState[] = [
  'created',
  'sending',
  'paid',
  'declined',
  'unknown',
  'reconciling',
];

/** Orders, as the client spells their scope (`JSON.stringify([merchant, orderId])`). */
export const ORDERS: readonly (readonly [merchant: string, orderId: string])[] = [
  ['shop', 'o-1'],
  ['shop', 'o-2'],
  ['kiosk', 'o-1'],
  ['kiosk', 'o-3'],
];
export const SCOPES: readonly string[] = ORDERS.map((order) => JSON.stringify(order));
export const GENERATIONS = 3;

/** The key the client derives for an order's generation (a stand-in for `deriveIdempotencyKey`). */
export function derivedKey(order: number, generation: number): string {
  return `k${order}g${generation}`;
}

/** Keys no order derives: a caller's own `idempotencyKey`, reusable across orders through the API. */
const FOREIGN_KEYS = ['x', 'y'];
export const KEYS: readonly string[] = [
  ...ORDERS.flatMap((_, order) => Array.from({ length: GENERATIONS }, (_, g) => derivedKey(order, g))),
  ...FOREIGN_KEYS,
];

/** The order whose derived keys include `key`, if any. */
function homeOf(key: string): number | undefined {
  const match = /^k(\d+)g\d+$/.exec(key);
  return match === null ? undefined : Number(match[1]);
}

export function paymentRecord(order: number, generation: number, key: string, at: number): PaymentRecord {
  const [merchant, orderId] = ORDERS[order] as readonly [string, string];
  return newPaymentRecord({
    idempotencyKey: key,
    scope: SCOPES[order] as string,
    merchant,
    orderId,
    generation,
    amount: 1000 + order,
    createdAt: at,
    updatedAt: at,
  });
}

interface Held {
  readonly record: Mutable<PaymentRecord>;
  /** Insertion order: the tie-break of "oldest first". */
  readonly seq: number;
}

export interface LedgerModelOptions {
  /** The memory ledger's `maxPaid`. @default Infinity */
  readonly maxPaid?: number;
  readonly keepAttempts?: boolean;
}

/** How often the interesting cases came up, so a test can show that they were exercised. */
export interface Seen {
  created: number;
  refusedKey: number;
  refusedGeneration: number;
  refusedFloor: number;
  recreated: number;
  moved: number;
  refusedMove: number;
  orphanAttempts: number;
  evicted: number;
  evictedLatest: number;
  floorsSet: number;
  unresolvedCut: number;
  /** `unresolved(limit)` calls with a limit both ledgers must refuse. */
  badLimits: number;
  staleRefused: number;
  staleMovedAnyway: number;
  clicks: Record<ClickOutcome['kind'] | 'replayed', number>;
  /** Clicks compared with the ledger that never forgets. */
  clicksAgainstShadow: number;
  reopens: number;
  restarts: number;
}

export function emptySeen(): Seen {
  return {
    created: 0,
    refusedKey: 0,
    refusedGeneration: 0,
    refusedFloor: 0,
    recreated: 0,
    moved: 0,
    refusedMove: 0,
    orphanAttempts: 0,
    evicted: 0,
    evictedLatest: 0,
    floorsSet: 0,
    unresolvedCut: 0,
    badLimits: 0,
    staleRefused: 0,
    staleMovedAnyway: 0,
    clicks: { paid: 0, drive: 0, created: 0, replayed: 0, declined: 0, mismatch: 0, conflict: 0 },
    clicksAgainstShadow: 0,
    reopens: 0,
    restarts: 0,
  };
}

export function addSeen(total: Seen, run: Seen): void {
  for (const name of Object.keys(run) as (keyof Seen)[]) {
    if (name === 'clicks') {
      for (const kind of Object.keys(run.clicks) as (keyof Seen['clicks'])[]) {
        total.clicks[kind] += run.clicks[kind];
      }
    } else {
      total[name] += run[name];
    }
  }
}

/** The model's answer to a `limit` that is not an integer >= 0 or `Infinity`. */
export class BadLimit extends Error {
  readonly code = 'ERR_INVALID_OPTION';
  readonly option = 'limit';
  constructor(readonly limit: unknown) {
    super(`bad limit ${String(limit)}`);
  }
}

/** What a ledger threw, in the terms the contract names: class, `code`, `option` and the value shown. */
function thrown(error: unknown): unknown {
  if (!(error instanceof Error)) return { threw: error };
  const { code, option } = error as { code?: unknown; option?: unknown };
  return { threw: error.name, code, option, message: error.message };
}

/** The reference ledger: answers synchronously, with copies. Its wall clock is `now`. */
export class LedgerModel {
  now = 1_000;
  readonly maxPaid: number;
  readonly keepAttempts: boolean;
  readonly seen = emptySeen();
  readonly #held = new Map<string, Held>();
  readonly #attempts = new Map<string, AttemptRecord[]>();
  /** Held paid keys, oldest paid first. */
  #paid: string[] = [];
  /** Scope -> a forgotten paid generation below which `create` refuses. */
  readonly #floor = new Map<string, number>();
  /** Keys forgotten by eviction and not created again. */
  readonly #forgotten = new Set<string>();
  #seq = 0;

  constructor(options: LedgerModelOptions = {}) {
    this.maxPaid = options.maxPaid ?? Number.POSITIVE_INFINITY;
    this.keepAttempts = options.keepAttempts ?? true;
  }

  latest(scope: string): PaymentRecord | undefined {
    const held = this.#latest(scope);
    return held === undefined ? undefined : { ...held.record };
  }

  get(key: string): PaymentRecord | undefined {
    const held = this.#held.get(key);
    return held === undefined ? undefined : { ...held.record };
  }

  create(record: PaymentRecord): boolean {
    return this.#insert(record, 'created');
  }

  createSending(record: PaymentRecord): boolean {
    return this.#insert(record, 'sending');
  }

  #insert(record: PaymentRecord, state: 'created' | 'sending'): boolean {
    if (this.#held.has(record.idempotencyKey)) {
      this.seen.refusedKey++;
      return false;
    }
    const latest = this.#latest(record.scope);
    if (latest !== undefined && latest.record.generation >= record.generation) {
      this.seen.refusedGeneration++;
      return false;
    }
    const floor = this.#floor.get(record.scope);
    if (floor !== undefined && record.generation < floor) {
      this.seen.refusedFloor++;
      return false;
    }
    this.#floor.delete(record.scope);
    if (this.#forgotten.delete(record.idempotencyKey)) this.seen.recreated++;
    this.seen.created++;
    this.#held.set(record.idempotencyKey, {
      record: {
        ...record,
        state,
        attempts: 0,
        reference: null,
        declineReason: null,
        firstSentAt: state === 'sending' ? record.firstSentAt : null,
        unknownSince: null,
      },
      seq: this.#seq++,
    });
    return true;
  }

  transition(key: string, to: PaymentState, patch: RecordPatch = {}): PaymentRecord | undefined {
    if (patch.attempt !== undefined) this.recordAttempt(patch.attempt);
    const held = this.#held.get(key);
    if (held === undefined || !canTransition(held.record.state, to)) {
      this.seen.refusedMove++;
      return undefined;
    }
    this.seen.moved++;
    const current = held.record;
    current.state = to;
    current.updatedAt = this.now;
    if (patch.reference !== undefined) current.reference = patch.reference;
    if (patch.declineReason !== undefined) current.declineReason = patch.declineReason;
    if (current.firstSentAt === null && patch.firstSentAt !== undefined)
      current.firstSentAt = patch.firstSentAt;
    if (current.unknownSince === null && patch.unknownSince !== undefined) {
      current.unknownSince = patch.unknownSince;
    }
    const answer = { ...current };
    if (to === 'paid' && this.maxPaid !== Number.POSITIVE_INFINITY) {
      this.#paid.push(key);
      while (this.#paid.length > this.maxPaid) this.#forget(this.#paid.shift() as string);
    }
    return answer;
  }

  recordAttempt(attempt: AttemptRecord): void {
    const held = this.#held.get(attempt.idempotencyKey);
    if (held === undefined) this.seen.orphanAttempts++;
    else held.record.attempts++;
    if (!this.keepAttempts) return;
    const list = this.#attempts.get(attempt.idempotencyKey);
    if (list === undefined) this.#attempts.set(attempt.idempotencyKey, [attempt]);
    else list.push(attempt);
  }

  attempts(key: string): readonly AttemptRecord[] {
    return [...(this.#attempts.get(key) ?? [])];
  }

  unresolved(limit = Number.POSITIVE_INFINITY): readonly PaymentRecord[] {
    const valid = Number.isSafeInteger(limit) ? limit >= 0 : limit === Number.POSITIVE_INFINITY;
    if (!valid) throw new BadLimit(limit);
    const all = [...this.#held.values()]
      .filter((held) => UNRESOLVED_STATES.includes(held.record.state))
      .sort((a, b) => a.record.createdAt - b.record.createdAt || a.seq - b.seq)
      .map((held) => ({ ...held.record }));
    if (all.length > limit) this.seen.unresolvedCut++;
    return all.slice(0, limit);
  }

  /** The memory ledger's close: a restart that forgets everything. */
  close(): void {
    this.#held.clear();
    this.#attempts.clear();
    this.#paid = [];
    this.#floor.clear();
    this.#forgotten.clear();
    this.seen.restarts++;
  }

  /** Keys the ledger holds, in insertion order. */
  heldKeys(): readonly string[] {
    return [...this.#held.keys()];
  }

  /** Keys forgotten by eviction and not created again, oldest first. */
  forgottenKeys(): readonly string[] {
    return [...this.#forgotten];
  }

  #latest(scope: string): Held | undefined {
    let latest: Held | undefined;
    for (const held of this.#held.values()) {
      if (held.record.scope !== scope) continue;
      if (latest === undefined || held.record.generation > latest.record.generation) latest = held;
    }
    return latest;
  }

  #forget(key: string): void {
    const held = this.#held.get(key) as Held;
    const { scope, generation } = held.record;
    const wasLatest = this.#latest(scope) === held;
    this.#held.delete(key);
    this.#attempts.delete(key);
    this.#forgotten.add(key);
    this.seen.evicted++;
    if (!wasLatest) return;
    this.seen.evictedLatest++;
    const next = this.#latest(scope);
    if (generation !== (next === undefined ? 0 : next.record.generation + 1)) {
      this.#floor.set(scope, generation);
      this.seen.floorsSet++;
    }
  }
}

/** `expect(actual, message).toEqual(expected)`, without vitest's cost when they are equal (most calls). */
function expectEqual(actual: unknown, expected: unknown, message: string): void {
  if (!isDeepStrictEqual(actual, expected)) expect(actual, message).toEqual(expected);
}

/** A copy of what a ledger answered (the memory ledger answers its live records). */
function snapshot(record: PaymentRecord | undefined): PaymentRecord | undefined {
  return record === undefined ? undefined : { ...record };
}

export type ReopenMode = 'close-open' | 'open-close' | 'all';

/** A ledger under test: one store reached through one or more connections. */
export interface LedgerStore {
  readonly name: string;
  readonly connections: number;
  connection(via: number): PaymentLedger;
  /** Closes and opens again connection `via`, or all of them, on the same file (a restart). */
  reopen?(via: number, mode: ReopenMode): Promise<void>;
  dispose(): Promise<void>;
}

/**
 * The stores under test behind one ledger interface: every call goes to each store (through connection
 * `via`) and each answer is compared with the model's; the model's answer is returned.
 */
export class Checked {
  via = 0;
  constructor(
    readonly model: LedgerModel,
    readonly stores: readonly LedgerStore[],
    /** What the command is, for failure messages. */
    public label = '',
  ) {}

  #each(): [string, PaymentLedger][] {
    return this.stores.map((store) => [store.name, store.connection(this.via % store.connections)]);
  }

  async latest(scope: string): Promise<PaymentRecord | undefined> {
    const expected = this.model.latest(scope);
    for (const [name, ledger] of this.#each()) {
      expectEqual(
        snapshot(await ledger.latest(scope)),
        expected,
        `${name}.latest(${scope}) in ${this.label}`,
      );
    }
    return expected;
  }

  async get(key: string): Promise<PaymentRecord | undefined> {
    const expected = this.model.get(key);
    for (const [name, ledger] of this.#each()) {
      expectEqual(snapshot(await ledger.get(key)), expected, `${name}.get(${key}) in ${this.label}`);
    }
    return expected;
  }

  async create(record: PaymentRecord): Promise<boolean> {
    const expected = this.model.create(record);
    for (const [name, ledger] of this.#each()) {
      expectEqual(
        await ledger.create(record),
        expected,
        `${name}.create(${record.idempotencyKey}) in ${this.label}`,
      );
    }
    return expected;
  }

  async createSending(record: PaymentRecord): Promise<boolean> {
    const expected = this.model.createSending(record);
    for (const [name, ledger] of this.#each()) {
      // Both built-in ledgers have it, and the client prefers it: a ledger without it fails here.
      const answer =
        ledger.createSending === undefined ? 'no createSending' : await ledger.createSending(record);
      expectEqual(answer, expected, `${name}.createSending(${record.idempotencyKey}) in ${this.label}`);
    }
    return expected;
  }

  async transition(key: string, to: PaymentState, patch?: RecordPatch): Promise<PaymentRecord | undefined> {
    const expected = this.model.transition(key, to, patch);
    for (const [name, ledger] of this.#each()) {
      expectEqual(
        snapshot(await ledger.transition(key, to, patch)),
        expected,
        `${name}.transition(${key}, ${to}) in ${this.label}`,
      );
    }
    return expected;
  }

  async recordAttempt(attempt: AttemptRecord): Promise<void> {
    this.model.recordAttempt(attempt);
    for (const [, ledger] of this.#each()) await ledger.recordAttempt(attempt);
  }

  async attempts(key: string): Promise<readonly AttemptRecord[]> {
    const expected = this.model.attempts(key);
    for (const [name, ledger] of this.#each()) {
      expectEqual(await ledger.attempts(key), expected, `${name}.attempts(${key}) in ${this.label}`);
    }
    return expected;
  }

  async unresolved(limit?: number): Promise<readonly PaymentRecord[]> {
    let expected: readonly PaymentRecord[];
    try {
      expected = this.model.unresolved(limit);
    } catch (error) {
      if (!(error instanceof BadLimit)) throw error;
      this.model.seen.badLimits++;
      // Both ledgers refuse it alike: InvalidOptionError naming `limit` and showing the value.
      const shown = typeof limit === 'number' ? `\`${String(limit)}\` (number)` : String(limit);
      for (const [name, ledger] of this.#each()) {
        let answer: unknown;
        try {
          answer = (await ledger.unresolved(limit)).length;
        } catch (refusal) {
          answer = thrown(refusal);
        }
        expectEqual(
          answer,
          {
            threw: 'InvalidOptionError',
            code: 'ERR_INVALID_OPTION',
            option: 'limit',
            message: `Expected \`limit\` to be an integer >= 0 or Infinity, got ${shown}`,
          },
          `${name}.unresolved(${limit}) in ${this.label}`,
        );
      }
      return [];
    }
    for (const [name, ledger] of this.#each()) {
      const actual = (await ledger.unresolved(limit)).map((record) => ({ ...record }));
      expectEqual(actual, expected, `${name}.unresolved(${limit}) in ${this.label}`);
    }
    return expected;
  }

  /**
   * Every key's payment and attempts (the pool's, and any other the model holds), every scope's latest,
   * the unresolved list: all as the model says.
   */
  async checkAll(): Promise<void> {
    for (const key of new Set([...KEYS, ...this.model.heldKeys()])) {
      await this.get(key);
      await this.attempts(key);
    }
    for (const scope of SCOPES) await this.latest(scope);
    await this.unresolved();
  }
}

/** What the client's `pay()` does with an order, as far as the ledger decides it (`#begin` in client.ts). */
export type ClickOutcome =
  | { readonly kind: 'paid' | 'drive' | 'declined' | 'mismatch'; readonly key: string }
  | { readonly kind: 'created'; readonly key: string; readonly generation: number }
  | { readonly kind: 'conflict' };

type ClickLedger = {
  latest(scope: string): Awaitable<PaymentRecord | undefined>;
  get(key: string): Awaitable<PaymentRecord | undefined>;
  createSending(record: PaymentRecord): Awaitable<boolean>;
};

/**
 * The client's `#begin` on one order with derived keys: a held, not declined latest payment is answered
 * (paid) or driven; otherwise the next generation's key is inserted already `sending`; a refused insert
 * reads the key's holder (another order's key: mismatch; declined: answered declined) and tries again,
 * three rounds in all.
 */
export async function click(ledger: ClickLedger, order: number, now: number): Promise<ClickOutcome> {
  const scope = SCOPES[order] as string;
  for (let round = 0; round < 3; round++) {
    const latest = await ledger.latest(scope);
    if (latest !== undefined && latest.state !== 'declined') {
      return { kind: latest.state === 'paid' ? 'paid' : 'drive', key: latest.idempotencyKey };
    }
    const generation = latest === undefined ? 0 : latest.generation + 1;
    const key = derivedKey(order, generation);
    const record = {
      ...paymentRecord(order, generation, key, now),
      state: 'sending' as const,
      firstSentAt: now,
    };
    if (await ledger.createSending(record)) return { kind: 'created', key, generation };
    const holder = await ledger.get(key);
    if (holder !== undefined && holder.scope !== scope) return { kind: 'mismatch', key };
    if (holder?.state === 'declined') return { kind: 'declined', key };
  }
  return { kind: 'conflict' };
}

/**
 * What the model checks besides the stores' answers. `shadow` is the same ledger that never forgets (only
 * with `maxPaid`): clicks on orders written only the way the client writes are compared with it.
 */
export class LedgerWorld {
  readonly shadow: LedgerModel | undefined;
  /** Orders written through the API in ways the client never does (any generation, any key). */
  readonly touched = new Set<number>();

  constructor(readonly model: LedgerModel) {
    this.shadow =
      model.maxPaid === Number.POSITIVE_INFINITY
        ? undefined
        : new LedgerModel({ keepAttempts: model.keepAttempts });
  }

  /** The bank charged this key: it answers it as paid for ever (a replay), never declined. */
  bankPaid(key: string): boolean {
    return this.shadow?.get(key)?.state === 'paid';
  }
}

export class LedgerReal {
  readonly checked: Checked;
  constructor(
    readonly world: LedgerWorld,
    readonly stores: readonly LedgerStore[],
  ) {
    this.checked = new Checked(world.model, stores);
  }
}

type Cmd = fc.AsyncCommand<LedgerWorld, LedgerReal>;

function attemptFor(key: string, n: number, at: number): AttemptRecord {
  const kinds = ['charge', 'status'] as const;
  const outcomes = ['not_sent', 'unknown', 'responded'] as const;
  const outcome = outcomes[n % 3] as AttemptRecord['outcome'];
  return {
    idempotencyKey: key,
    kind: kinds[n % 2] as AttemptRecord['kind'],
    outcome,
    statusCode: outcome === 'responded' ? ([201, 402, 409, 503][n % 4] ?? 201) : null,
    errorCode: outcome === 'responded' ? null : outcome === 'unknown' ? 'UND_ERR_SOCKET' : 'ERR_CIRCUIT_OPEN',
    startedAt: at,
    durationMs: n * 0.25,
  };
}

/** Runs a command's ledger calls with its name in every failure message, then checks the whole ledger. */
async function step<T>(
  real: LedgerReal,
  label: string,
  via: number,
  body: (checked: Checked) => Promise<T>,
): Promise<T> {
  const { checked } = real;
  checked.label = label;
  checked.via = via;
  const answer = await body(checked);
  await checked.checkAll();
  return answer;
}

/** The key a `create` uses: the order's own derived key, any key of the pool, or one eviction forgot. */
export type CreateKey =
  | { readonly kind: 'own' }
  | { readonly kind: 'any'; readonly key: string }
  | { readonly kind: 'forgotten'; readonly index: number };

function resolveCreateKey(model: LedgerModel, order: number, generation: number, pick: CreateKey): string {
  const forgotten = model.forgottenKeys();
  if (pick.kind === 'any') return pick.key;
  if (pick.kind === 'forgotten' && forgotten.length > 0)
    return forgotten[pick.index % forgotten.length] as string;
  return derivedKey(order, generation);
}

class Create implements Cmd {
  constructor(
    readonly via: number,
    readonly order: number,
    readonly generation: number,
    readonly key: CreateKey,
    readonly sending: boolean,
    readonly createdAt: number,
    /** Fields a new payment does not take from the record: they must not leak into it. */
    readonly dirty: boolean,
  ) {}
  check(): boolean {
    return true;
  }
  async run(world: LedgerWorld, real: LedgerReal): Promise<void> {
    const key = resolveCreateKey(world.model, this.order, this.generation, this.key);
    let record = paymentRecord(this.order, this.generation, key, this.createdAt);
    if (this.sending) record = { ...record, state: 'sending', firstSentAt: this.createdAt + 1 };
    if (this.dirty) {
      record = {
        ...record,
        state: this.sending ? 'paid' : 'unknown',
        attempts: 7,
        reference: 'stale-ref',
        declineReason: 'stale-reason',
        firstSentAt: record.firstSentAt ?? 3,
        unknownSince: 4,
      };
    }
    world.touched.add(this.order);
    const home = homeOf(key);
    if (home !== undefined) world.touched.add(home);
    await step(real, `${this} = ${key}`, this.via, async (checked) => {
      if (this.sending) await checked.createSending(record);
      else await checked.create(record);
    });
    if (this.sending) world.shadow?.createSending(record);
    else world.shadow?.create(record);
  }
  toString(): string {
    const key =
      this.key.kind === 'own'
        ? 'own'
        : this.key.kind === 'any'
          ? this.key.key
          : `forgotten[${this.key.index}]`;
    return `${this.sending ? 'createSending' : 'create'}#${this.via}(${key}, order ${this.order}, gen ${this.generation}, at ${this.createdAt}${this.dirty ? ', dirty' : ''})`;
  }
}

class Click implements Cmd {
  constructor(
    readonly via: number,
    readonly order: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(world: LedgerWorld, real: LedgerReal): Promise<void> {
    const { model, shadow } = world;
    const full = shadow === undefined ? undefined : await click(shadow, this.order, model.now);
    const outcome = await step(real, this.toString(), this.via, (checked) =>
      click(checked, this.order, model.now),
    );
    model.seen.clicks[outcome.kind]++;
    if (outcome.kind === 'created' && shadow?.get(outcome.key)?.state === 'paid')
      model.seen.clicks.replayed++;
    if (full === undefined || world.touched.has(this.order)) return;
    model.seen.clicksAgainstShadow++;
    // Forgetting a paid payment may only cost the bank a replay of the same key.
    const allowed: ClickOutcome[] =
      full.kind === 'paid'
        ? [
            full,
            { kind: 'drive', key: full.key },
            { kind: 'created', key: full.key, generation: genOf(full.key) },
          ]
        : [full];
    expect(
      allowed,
      `${this} after forgetting: the ledger that never forgets answers ${JSON.stringify(full)}`,
    ).toContainEqual(outcome);
  }
  toString(): string {
    return `click#${this.via}(order ${this.order})`;
  }
}

function genOf(key: string): number {
  return Number(/g(\d+)$/.exec(key)?.[1]);
}

/**
 * Which key a command names: one the model holds (by index, so most commands meet a live payment), or any
 * key of the pool (missing ones and forgotten ones included).
 */
export type KeyPick =
  | { readonly kind: 'held'; readonly index: number }
  | { readonly kind: 'any'; readonly key: string };

function resolveKey(model: LedgerModel, pick: KeyPick): string {
  const held = model.heldKeys();
  if (pick.kind === 'any' || held.length === 0) return pick.kind === 'any' ? pick.key : (KEYS[0] as string);
  return held[pick.index % held.length] as string;
}

function describeKey(pick: KeyPick): string {
  return pick.kind === 'any' ? pick.key : `held[${pick.index}]`;
}

/** Which state a transition asks for: one the machine allows from the current state, or any. */
export type StatePick =
  | { readonly kind: 'allowed'; readonly index: number }
  | { readonly kind: 'any'; readonly state: PaymentState };

function resolveState(model: LedgerModel, key: string, pick: StatePick): PaymentState {
  if (pick.kind === 'any') return pick.state;
  const current = model.get(key)?.state ?? 'created';
  const allowed = STATES.filter((to) => canTransition(current, to));
  const choices = allowed.length === 0 ? STATES : allowed;
  return choices[pick.index % choices.length] as PaymentState;
}

function describeState(pick: StatePick): string {
  return pick.kind === 'any' ? pick.state : `allowed[${pick.index}]`;
}

interface PatchSpec {
  readonly reference: boolean;
  readonly declineReason: boolean;
  readonly firstSentAt: number | undefined;
  readonly unknownSince: number | undefined;
  readonly attempt: number | undefined;
}

function makePatch(key: string, spec: PatchSpec, now: number): RecordPatch {
  return {
    ...(spec.reference ? { reference: `ref-${now}` } : {}),
    ...(spec.declineReason ? { declineReason: `reason-${now}` } : {}),
    ...(spec.firstSentAt === undefined ? {} : { firstSentAt: spec.firstSentAt }),
    ...(spec.unknownSince === undefined ? {} : { unknownSince: spec.unknownSince }),
    ...(spec.attempt === undefined ? {} : { attempt: attemptFor(key, spec.attempt, now) }),
  };
}

class Transition implements Cmd {
  constructor(
    readonly via: number,
    readonly key: KeyPick,
    readonly to: StatePick,
    readonly patch: PatchSpec,
  ) {}
  check(world: Readonly<LedgerWorld>): boolean {
    // A bank never declines a key it charged (it replays the charge): with a shadow, keep to that.
    const key = resolveKey(world.model, this.key);
    return !(resolveState(world.model, key, this.to) === 'declined' && world.bankPaid(key));
  }
  async run(world: LedgerWorld, real: LedgerReal): Promise<void> {
    const key = resolveKey(world.model, this.key);
    const to = resolveState(world.model, key, this.to);
    const patch = makePatch(key, this.patch, world.model.now);
    await step(real, `${this} = transition(${key}, ${to})`, this.via, async (checked) => {
      await checked.transition(key, to, patch);
    });
    world.shadow?.transition(key, to, patch);
  }
  toString(): string {
    return `transition#${this.via}(${describeKey(this.key)}, ${describeState(this.to)}, ${JSON.stringify(this.patch)})`;
  }
}

/** What the client does next from a state it read (`#drive`, `#settle`, `#pendingOutcome`). */
const CLIENT_NEXT: Readonly<Record<PaymentState, PaymentState | undefined>> = {
  created: 'sending',
  sending: 'unknown',
  unknown: 'reconciling',
  reconciling: 'paid',
  paid: undefined,
  declined: undefined,
};

/**
 * Two drivers of one payment (two processes, or the reconciler and a click): the first reads it, the
 * second moves it, then the first makes the move it decided on from its stale read. The ledger's
 * compare-and-set against the state machine decides; a settled payment never moves again.
 */
class Stale implements Cmd {
  constructor(
    readonly via: number,
    readonly key: KeyPick,
    /** The other driver's moves (one or two) between the first driver's read and its move. */
    readonly others: readonly StatePick[],
  ) {}
  check(world: Readonly<LedgerWorld>): boolean {
    // Only the first of the other driver's moves can be checked before the run: a later one is re-checked
    // (and skipped) as the run goes.
    const key = resolveKey(world.model, this.key);
    return !(
      resolveState(world.model, key, this.others[0] as StatePick) === 'declined' && world.bankPaid(key)
    );
  }
  async run(world: LedgerWorld, real: LedgerReal): Promise<void> {
    const { model, shadow } = world;
    const key = resolveKey(model, this.key);
    await step(real, `${this} = stale(${key})`, this.via, async (checked) => {
      const read = await checked.get(key);
      checked.via = this.via + 1;
      for (const pick of this.others) {
        const other = resolveState(model, key, pick);
        if (other === 'declined' && world.bankPaid(key)) continue;
        checked.label = `${this} = stale(${key}): other driver -> ${other}`;
        await checked.transition(key, other);
        shadow?.transition(key, other);
      }
      const next = read === undefined ? undefined : CLIENT_NEXT[read.state];
      if (next === undefined) return;
      checked.via = this.via;
      checked.label = `${this} = stale(${key}): read ${read?.state}, moves to ${next}`;
      const patch = next === 'paid' ? { reference: `ref-stale-${model.now}` } : {};
      const now = model.get(key)?.state;
      const moved = await checked.transition(key, next, patch);
      shadow?.transition(key, next, patch);
      if (moved === undefined) model.seen.staleRefused++;
      // The set is compared with the machine, not with what the driver read: from `reconciling` a driver
      // that read `sending` still moves it to `unknown` (the client then re-reads before it settles).
      else if (now !== read?.state) model.seen.staleMovedAnyway++;
    });
  }
  toString(): string {
    return `stale#${this.via}(${describeKey(this.key)}, other driver -> ${this.others.map(describeState).join(' -> ')})`;
  }
}

/** The path a payment takes to `paid` from where it is (the bank's answer reaching the client). */
const TO_PAID: Readonly<Record<PaymentState, readonly PaymentState[]>> = {
  created: ['sending', 'paid'],
  sending: ['paid'],
  unknown: ['reconciling', 'paid'],
  reconciling: ['paid'],
  paid: [],
  declined: [],
};

/** A held payment is paid: the moves to `paid`, the last one with its attempt (as `#settle` writes it). */
class Pay implements Cmd {
  constructor(
    readonly via: number,
    readonly key: KeyPick,
  ) {}
  check(): boolean {
    return true;
  }
  async run(world: LedgerWorld, real: LedgerReal): Promise<void> {
    const { model, shadow } = world;
    const key = resolveKey(model, this.key);
    await step(real, `${this} = pay(${key})`, this.via, async (checked) => {
      for (const to of TO_PAID[model.get(key)?.state ?? 'paid']) {
        const patch: RecordPatch =
          to === 'paid' ? { reference: `ref-${model.now}`, attempt: attemptFor(key, 0, model.now) } : {};
        await checked.transition(key, to, patch);
        shadow?.transition(key, to, patch);
      }
    });
  }
  toString(): string {
    return `pay#${this.via}(${describeKey(this.key)})`;
  }
}

class RecordAttempt implements Cmd {
  constructor(
    readonly via: number,
    readonly key: KeyPick,
    readonly n: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(world: LedgerWorld, real: LedgerReal): Promise<void> {
    const key = resolveKey(world.model, this.key);
    const attempt = attemptFor(key, this.n, world.model.now);
    await step(real, `${this} = recordAttempt(${key})`, this.via, async (checked) => {
      await checked.recordAttempt(attempt);
    });
    world.shadow?.recordAttempt(attempt);
  }
  toString(): string {
    return `recordAttempt#${this.via}(${describeKey(this.key)}, ${this.n})`;
  }
}

class Unresolved implements Cmd {
  constructor(
    readonly via: number,
    readonly limit: number | undefined,
  ) {}
  check(): boolean {
    return true;
  }
  async run(_world: LedgerWorld, real: LedgerReal): Promise<void> {
    await step(real, this.toString(), this.via, async (checked) => {
      await checked.unresolved(this.limit);
    });
  }
  toString(): string {
    return `unresolved#${this.via}(${this.limit})`;
  }
}

/** Moves the wall clock (`Date.now()`, faked by the test) that `updatedAt` reads. */
class Tick implements Cmd {
  constructor(
    readonly ms: number,
    readonly setClock: (now: number) => void,
  ) {}
  check(): boolean {
    return true;
  }
  async run(world: LedgerWorld): Promise<void> {
    world.model.now += this.ms;
    if (world.shadow !== undefined) world.shadow.now = world.model.now;
    this.setClock(world.model.now);
  }
  toString(): string {
    return `tick(${this.ms})`;
  }
}

/**
 * A restart: connection `via` is closed and opened again on the same file (`close-open`), or opened again
 * while the old connection is still open, which then closes (`open-close`), or every connection closes
 * and opens again (`all`: the last one out checkpoints the WAL). Everything committed must be there.
 */
class Reopen implements Cmd {
  constructor(
    readonly via: number,
    readonly mode: ReopenMode,
  ) {}
  check(): boolean {
    return true;
  }
  async run(world: LedgerWorld, real: LedgerReal): Promise<void> {
    for (const store of real.stores) await store.reopen?.(this.via % store.connections, this.mode);
    world.model.seen.reopens++;
    await step(real, this.toString(), this.via, async () => {});
  }
  toString(): string {
    return `reopen#${this.via}(${this.mode})`;
  }
}

/** The memory ledger's close and a restart: it forgets everything, and so does its shadow. */
class Restart implements Cmd {
  check(): boolean {
    return true;
  }
  async run(world: LedgerWorld, real: LedgerReal): Promise<void> {
    for (const store of real.stores) await store.connection(0).close();
    world.model.close();
    world.shadow?.close();
    world.touched.clear();
    await step(real, this.toString(), 0, async () => {});
  }
  toString(): string {
    return 'restart';
  }
}

export interface LedgerCommandOptions {
  readonly maxCommands: number;
  /** `reopen` commands (stores that have a file). */
  readonly reopen: boolean;
  /** `restart` commands (stores whose close forgets: the memory ledger alone). */
  readonly restart: boolean;
  /** `create` commands with any key and generation, besides the client's clicks. */
  readonly apiCreates: boolean;
  /** Sets the faked wall clock. */
  readonly setClock: (now: number) => void;
}

export function ledgerCommands(options: LedgerCommandOptions): fc.Arbitrary<Iterable<Cmd>> {
  const via = fc.nat({ max: 3 });
  const order = fc.nat({ max: ORDERS.length - 1 });
  const key = fc.constantFrom(...KEYS);
  const state = fc.constantFrom(...STATES);
  const keyPick: fc.Arbitrary<KeyPick> = fc.oneof(
    { weight: 3, arbitrary: fc.nat({ max: 11 }).map((index) => ({ kind: 'held' as const, index })) },
    { weight: 1, arbitrary: key.map((k) => ({ kind: 'any' as const, key: k })) },
  );
  const statePick: fc.Arbitrary<StatePick> = fc.oneof(
    { weight: 2, arbitrary: fc.nat({ max: 5 }).map((index) => ({ kind: 'allowed' as const, index })) },
    { weight: 1, arbitrary: state.map((s) => ({ kind: 'any' as const, state: s })) },
  );
  const stamp = fc.option(fc.integer({ min: 1, max: 9 }), { nil: undefined });
  const patch: fc.Arbitrary<PatchSpec> = fc.record({
    reference: fc.boolean(),
    declineReason: fc.boolean(),
    firstSentAt: stamp,
    unknownSince: stamp,
    attempt: fc.option(fc.nat({ max: 11 }), { nil: undefined }),
  });
  const createKey: fc.Arbitrary<CreateKey> = fc.oneof(
    // Mostly the order's own derived key; sometimes another order's or a caller's own, or a key that
    // eviction forgot (created again, for this order or another).
    { weight: 3, arbitrary: fc.constant({ kind: 'own' as const }) },
    { weight: 1, arbitrary: key.map((k) => ({ kind: 'any' as const, key: k })) },
    { weight: 1, arbitrary: fc.nat({ max: 7 }).map((index) => ({ kind: 'forgotten' as const, index })) },
  );
  const create = fc
    .record({
      via,
      order,
      generation: fc.nat({ max: GENERATIONS - 1 }),
      key: createKey,
      sending: fc.boolean(),
      // Few distinct creation times: ties, and a clock that goes back.
      createdAt: fc.integer({ min: 0, max: 3 }),
      dirty: fc.constantFrom(false, false, false, true),
    })
    .map((c) => new Create(c.via, c.order, c.generation, c.key, c.sending, c.createdAt, c.dirty));
  const reopen = fc
    .tuple(via, fc.constantFrom<ReopenMode>('close-open', 'open-close', 'all'))
    .map(([v, mode]) => new Reopen(v, mode));
  // fc.commands picks uniformly among the arbitraries: repeating one weighs it.
  const weighted: [fc.Arbitrary<Cmd>, number][] = [
    [fc.tuple(via, order).map(([v, o]) => new Click(v, o)), 12],
    [fc.tuple(via, keyPick, statePick, patch).map(([v, k, s, p]) => new Transition(v, k, s, p)), 16],
    [
      fc
        .tuple(via, keyPick, fc.array(statePick, { minLength: 1, maxLength: 2 }))
        .map(([v, k, s]) => new Stale(v, k, s)),
      3,
    ],
    [fc.tuple(via, keyPick).map(([v, k]) => new Pay(v, k)), 6],
    [fc.tuple(via, keyPick, fc.nat({ max: 11 })).map(([v, k, n]) => new RecordAttempt(v, k, n)), 3],
    [
      fc
        .tuple(
          via,
          fc.option(
            fc.oneof(
              { weight: 6, arbitrary: fc.nat({ max: 4 }) },
              { weight: 2, arbitrary: fc.constant(Number.POSITIVE_INFINITY) },
              // Limits both ledgers must refuse alike (they once differed: [] and everything for -1).
              {
                weight: 1,
                arbitrary: fc.constantFrom(-1, -0.5, 1.5, Number.NaN, Number.NEGATIVE_INFINITY, 2 ** 53),
              },
            ),
            { nil: undefined },
          ),
        )
        .map(([v, limit]) => new Unresolved(v, limit)),
      3,
    ],
    [fc.integer({ min: 1, max: 5_000 }).map((ms) => new Tick(ms, options.setClock)), 3],
    [create, options.apiCreates ? 8 : 0],
    [reopen, options.reopen ? 4 : 0],
    [fc.constant(new Restart()), options.restart ? 1 : 0],
  ];
  const commands = weighted.flatMap(([arbitrary, weight]) => Array.from({ length: weight }, () => arbitrary));
  return fc.commands(commands, { maxCommands: options.maxCommands, size: 'medium' });
}
