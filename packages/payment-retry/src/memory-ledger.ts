import { InvalidOptionError } from './errors.js';
import type { AttemptRecord, PaymentLedger, PaymentRecord, PaymentState, RecordPatch } from './ledger.js';
import { canTransition, UNRESOLVED_STATES } from './ledger.js';
import { booleanOption, checkOptions, unresolvedLimit } from './options.js';

/** Options of {@link memoryLedger}. */
export interface MemoryLedgerOptions {
  /** Keep each attempt (for `attempts()`); the counts are kept either way. @default true */
  readonly keepAttempts?: boolean;
  /**
   * The most `paid` payments kept; past it the oldest are forgotten. A forgotten order paid again derives
   * the same key, so the bank replays its answer, as long as the bank still remembers the key (Stripe:
   * 24 h): bound it only where that holds. Unresolved and declined payments are never forgotten. With a
   * finite bound the client refuses a caller's own `intent.idempotencyKey`: a forgotten order paid under
   * one is no longer known as paid, so the caller's next key would be charged again. An integer >= 1, or
   * `Infinity`.
   * @default Infinity
   */
  readonly maxPaid?: number;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * A ledger in process memory, for tests and for processes that can afford to forget in-flight payments
 * on a restart (the derived keys still stop a repeated order from being charged twice, but `recover()`
 * has nothing to find). Answers synchronously. The records it returns are live: read them, never write.
 *
 * @example
 * const client = createPaymentClient({ gateway, ledger: memoryLedger() });
 * @throws {InvalidOptionError} for a malformed option.
 */
export class MemoryLedger implements PaymentLedger {
  readonly #byKey = new Map<string, Mutable<PaymentRecord>>();
  readonly #latest = new Map<string, Mutable<PaymentRecord>>();
  readonly #attempts = new Map<string, AttemptRecord[]>();
  /**
   * With `maxPaid`: for a payment that replaced an earlier generation of its order (paid again after a
   * decline), that earlier record. Forgetting the new one makes it the latest again. Keyed by the record
   * itself, not its key: a forgotten key may be created again (even for another order), and the chain
   * through the forgotten record must not jump to the new one's. Weak: a link lives as long as a record
   * still held can reach it.
   */
  #previous = new WeakMap<Mutable<PaymentRecord>, Mutable<PaymentRecord>>();
  /**
   * Scope -> generation of a paid payment forgotten as its order's latest, when the next `pay()` would
   * not derive that generation by itself (a gap below it). It must derive that same generation's key, so
   * the bank replays the charge rather than making a new one: `create` refuses any lower generation.
   * Dropped when that generation (or a later one) is recorded again.
   */
  readonly #forgotten = new Map<string, number>();
  /**
   * Paid keys, oldest first, from #paidHead on. An array queue: taking the first key of a Map after
   * many deletions walks over every deleted slot.
   */
  #paid: string[] = [];
  #paidHead = 0;
  readonly #keepAttempts: boolean;
  readonly #maxPaid: number;
  /** True with a finite `maxPaid`: see {@link PaymentLedger.forgetsPaid}. */
  readonly forgetsPaid: boolean;

  constructor(options: MemoryLedgerOptions = {}) {
    checkOptions('options', options, ['keepAttempts', 'maxPaid']);
    this.#keepAttempts = booleanOption('keepAttempts', options.keepAttempts, true);
    this.#maxPaid = options.maxPaid ?? Number.POSITIVE_INFINITY;
    this.forgetsPaid = this.#maxPaid !== Number.POSITIVE_INFINITY;
    if (
      typeof this.#maxPaid !== 'number' ||
      !(Number.isSafeInteger(this.#maxPaid) || this.#maxPaid === Number.POSITIVE_INFINITY) ||
      this.#maxPaid < 1
    ) {
      throw new InvalidOptionError('maxPaid', 'an integer >= 1 or Infinity', options.maxPaid);
    }
  }

  latest(scope: string): PaymentRecord | undefined {
    return this.#latest.get(scope);
  }

  get(idempotencyKey: string): PaymentRecord | undefined {
    return this.#byKey.get(idempotencyKey);
  }

  create(record: PaymentRecord): boolean {
    return this.#insert(record, 'created');
  }

  createSending(record: PaymentRecord): boolean {
    return this.#insert(record, 'sending');
  }

  #insert(record: PaymentRecord, state: 'created' | 'sending'): boolean {
    if (this.#byKey.has(record.idempotencyKey)) return false;
    const latest = this.#latest.get(record.scope);
    if (latest !== undefined && latest.generation >= record.generation) return false;
    const forgotten = this.#forgotten.size === 0 ? undefined : this.#forgotten.get(record.scope);
    if (forgotten !== undefined) {
      // A paid generation was forgotten: a lower one would be a new key for an order the bank charged.
      if (record.generation < forgotten) return false;
      this.#forgotten.delete(record.scope);
    }
    // A new payment, as the SQLite ledger inserts it: nothing counted or settled yet, whatever the record
    // passed in says; `firstSentAt` only when it goes in already `sending`.
    const stored: Mutable<PaymentRecord> = {
      ...record,
      state,
      attempts: 0,
      reference: null,
      declineReason: null,
      firstSentAt: state === 'sending' ? record.firstSentAt : null,
      unknownSince: null,
    };
    this.#byKey.set(record.idempotencyKey, stored);
    this.#latest.set(record.scope, stored);
    if (latest !== undefined && this.#maxPaid !== Number.POSITIVE_INFINITY) {
      this.#previous.set(stored, latest);
    }
    return true;
  }

  transition(idempotencyKey: string, to: PaymentState, patch: RecordPatch = {}): PaymentRecord | undefined {
    if (patch.attempt !== undefined) this.recordAttempt(patch.attempt);
    const current = this.#byKey.get(idempotencyKey);
    if (current === undefined || !canTransition(current.state, to)) return undefined;
    current.state = to;
    current.updatedAt = Date.now();
    if (patch.reference !== undefined) current.reference = patch.reference;
    if (patch.declineReason !== undefined) current.declineReason = patch.declineReason;
    // First write wins, as in the SQLite ledger: key retention and latency count from the first time.
    if (current.firstSentAt === null && patch.firstSentAt !== undefined)
      current.firstSentAt = patch.firstSentAt;
    if (current.unknownSince === null && patch.unknownSince !== undefined)
      current.unknownSince = patch.unknownSince;
    if (to === 'paid') this.#remember(idempotencyKey);
    return current;
  }

  recordAttempt(attempt: AttemptRecord): void {
    const current = this.#byKey.get(attempt.idempotencyKey);
    if (current !== undefined) current.attempts++;
    if (!this.#keepAttempts) return;
    const list = this.#attempts.get(attempt.idempotencyKey);
    if (list === undefined) this.#attempts.set(attempt.idempotencyKey, [attempt]);
    else list.push(attempt);
  }

  attempts(idempotencyKey: string): readonly AttemptRecord[] {
    return [...(this.#attempts.get(idempotencyKey) ?? [])];
  }

  unresolved(limit?: number): readonly PaymentRecord[] {
    const most = unresolvedLimit(limit);
    const out: PaymentRecord[] = [];
    for (const record of this.#byKey.values()) {
      if (UNRESOLVED_STATES.includes(record.state)) out.push(record);
    }
    // Oldest first by `createdAt`, as the SQLite ledger answers (insertion order breaks ties: the sort is
    // stable). Insertion order alone differs once a wall clock steps back, and so would what `limit` keeps.
    out.sort((a, b) => a.createdAt - b.createdAt);
    return out.length > most ? out.slice(0, most) : out;
  }

  close(): void {
    this.#byKey.clear();
    this.#latest.clear();
    this.#attempts.clear();
    this.#previous = new WeakMap();
    this.#forgotten.clear();
    this.#paid = [];
    this.#paidHead = 0;
  }

  #remember(idempotencyKey: string): void {
    if (this.#maxPaid === Number.POSITIVE_INFINITY) return;
    this.#paid.push(idempotencyKey);
    if (this.#paid.length - this.#paidHead <= this.#maxPaid) return;
    const oldest = this.#paid[this.#paidHead] as string;
    this.#paidHead++;
    if (this.#paidHead >= 1024 && this.#paidHead * 2 >= this.#paid.length) {
      this.#paid = this.#paid.slice(this.#paidHead);
      this.#paidHead = 0;
    }
    const record = this.#byKey.get(oldest);
    this.#byKey.delete(oldest);
    this.#attempts.delete(oldest);
    // A paid record that is not its order's latest (a later generation was created over it through the
    // ledger's own API; the client never does that) keeps its link, so the chain stays walkable.
    if (record === undefined || this.#latest.get(record.scope) !== record) return;
    let previous = this.#previous.get(record);
    // The order's latest record goes: its latest is again the highest generation still kept (declined
    // ones are never forgotten). Records forgotten before are skipped.
    while (previous !== undefined && this.#byKey.get(previous.idempotencyKey) !== previous) {
      previous = this.#previous.get(previous);
    }
    if (previous === undefined) this.#latest.delete(record.scope);
    else this.#latest.set(record.scope, previous);
    // The next pay() derives generation (latest + 1), or 0 with no latest: when that is not the paid
    // generation, remember it, so that create() refuses any other.
    if (record.generation !== (previous === undefined ? 0 : previous.generation + 1)) {
      this.#forgotten.set(record.scope, record.generation);
    }
  }
}

/** Creates a {@link MemoryLedger}. */
export function memoryLedger(options?: MemoryLedgerOptions): MemoryLedger {
  return new MemoryLedger(options);
}
