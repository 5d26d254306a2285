import type { AttemptRecord, PaymentLedger, PaymentRecord, PaymentState, RecordPatch } from './ledger.js';
import { canTransition, UNRESOLVED_STATES } from './ledger.js';

/**
 * A ledger in process memory, for tests and for processes that can afford to forget in-flight payments
 * on a restart (the derived keys still stop a repeated order from being charged twice, but `recover()`
 * has nothing to find). Answers synchronously.
 *
 * @example
 * const client = createPaymentClient({ gateway, ledger: memoryLedger() });
 */
export class MemoryLedger implements PaymentLedger {
  readonly #byKey = new Map<string, PaymentRecord>();
  readonly #latest = new Map<string, PaymentRecord>();
  readonly #attempts = new Map<string, AttemptRecord[]>();
  readonly #keepAttempts: boolean;

  /** @param options.keepAttempts keep each attempt (for `attempts()`); counts are kept either way. @default true */
  constructor(options: { readonly keepAttempts?: boolean } = {}) {
    this.#keepAttempts = options.keepAttempts ?? true;
  }

  latest(scope: string): PaymentRecord | undefined {
    return this.#latest.get(scope);
  }

  get(idempotencyKey: string): PaymentRecord | undefined {
    return this.#byKey.get(idempotencyKey);
  }

  create(record: PaymentRecord): boolean {
    if (this.#byKey.has(record.idempotencyKey)) return false;
    const latest = this.#latest.get(record.scope);
    if (latest !== undefined && latest.generation >= record.generation) return false;
    const stored = Object.freeze({ ...record, state: 'created' as const });
    this.#byKey.set(record.idempotencyKey, stored);
    this.#latest.set(record.scope, stored);
    return true;
  }

  transition(idempotencyKey: string, to: PaymentState, patch: RecordPatch = {}): PaymentRecord | undefined {
    const current = this.#byKey.get(idempotencyKey);
    if (current === undefined || !canTransition(current.state, to)) return undefined;
    const next: PaymentRecord = Object.freeze({
      ...current,
      state: to,
      updatedAt: Date.now(),
      reference: patch.reference ?? current.reference,
      declineReason: patch.declineReason ?? current.declineReason,
      // First write wins, as in the SQLite ledger: key retention and latency count from the first time.
      firstSentAt: current.firstSentAt ?? patch.firstSentAt ?? null,
      unknownSince: current.unknownSince ?? patch.unknownSince ?? null,
    });
    this.#store(next);
    return next;
  }

  recordAttempt(attempt: AttemptRecord): void {
    const current = this.#byKey.get(attempt.idempotencyKey);
    if (current !== undefined) this.#store(Object.freeze({ ...current, attempts: current.attempts + 1 }));
    if (!this.#keepAttempts) return;
    const list = this.#attempts.get(attempt.idempotencyKey);
    if (list === undefined) this.#attempts.set(attempt.idempotencyKey, [attempt]);
    else list.push(attempt);
  }

  attempts(idempotencyKey: string): readonly AttemptRecord[] {
    return [...(this.#attempts.get(idempotencyKey) ?? [])];
  }

  unresolved(limit = Number.POSITIVE_INFINITY): readonly PaymentRecord[] {
    const out: PaymentRecord[] = [];
    for (const record of this.#byKey.values()) {
      if (out.length >= limit) break;
      if (UNRESOLVED_STATES.includes(record.state)) out.push(record);
    }
    return out;
  }

  close(): void {
    this.#byKey.clear();
    this.#latest.clear();
    this.#attempts.clear();
  }

  #store(record: PaymentRecord): void {
    this.#byKey.set(record.idempotencyKey, record);
    if (this.#latest.get(record.scope)?.idempotencyKey === record.idempotencyKey) {
      this.#latest.set(record.scope, record);
    }
  }
}

/** Creates a {@link MemoryLedger}. */
export function memoryLedger(options?: { readonly keepAttempts?: boolean }): MemoryLedger {
  return new MemoryLedger(options);
}
