/** Where a payment stands, as `GET /payments/{key}` reports it. */
export type PaymentState = 'processing' | 'succeeded' | 'declined';

/** One idempotency key's record: the in-flight lock and, once done, the stored answer. */
export interface IdempotencyRecord {
  readonly key: string;
  /** Identifies the request payload; independent of JSON key order. */
  readonly fingerprint: string;
  state: PaymentState;
  /** The stored answer (status and JSON body) replayed to a retry; 0 while processing. */
  status: number;
  body: string;
  /** The payment as `GET /payments/{key}` shows it (without `status`). */
  payment: Readonly<Record<string, unknown>>;
  readonly createdAt: number;
  /** When the definitive answer was stored (`complete()`); the TTL counts from here. */
  completedAt: number;
}

/** Options of {@link IdempotencyStore}. */
export interface IdempotencyStoreOptions {
  /** The most keys held; past it the oldest completed record is evicted. */
  readonly maxKeys: number;
  /** How long a completed record is kept after its completion, in ms. */
  readonly ttlMs: number;
}

/**
 * Records per idempotency key, bounded twice: by count (`maxKeys`, oldest completed first) and by age
 * (`ttlMs` from completion, checked lazily: a payment slower than `ttlMs` is still remembered for
 * `ttlMs` after its answer, so a retry of it replays instead of charging again). A record in `processing` is a lock and is never evicted: those are bounded
 * by the tellers and their queue, and `begin()` answers undefined rather than break a lock.
 *
 * Only definitive answers (2xx and the 402 decline) are stored; a request that failed before a
 * definitive answer is `abandon()`ed, so its retry with the same key is processed afresh (the draft's
 * advice: do not store 5xx).
 */
export class IdempotencyStore {
  readonly #records = new Map<string, IdempotencyRecord>();
  readonly #options: IdempotencyStoreOptions;

  constructor(options: IdempotencyStoreOptions) {
    this.#options = options;
  }

  get size(): number {
    return this.#records.size;
  }

  /** The record for `key`, unless there is none or it has expired. */
  get(key: string, now: number): IdempotencyRecord | undefined {
    const record = this.#records.get(key);
    if (record === undefined) return undefined;
    if (record.state !== 'processing' && now - record.completedAt >= this.#options.ttlMs) {
      this.#records.delete(key);
      return undefined;
    }
    return record;
  }

  /**
   * Locks `key` for a new request. Undefined when the store is full of requests still in flight.
   * The caller has checked `get()` first.
   */
  begin(
    key: string,
    fingerprint: string,
    payment: Readonly<Record<string, unknown>>,
    now: number,
  ): IdempotencyRecord | undefined {
    if (this.#records.size >= this.#options.maxKeys && !this.#evictOne()) return undefined;
    const record: IdempotencyRecord = {
      key,
      fingerprint,
      state: 'processing',
      status: 0,
      body: '',
      payment,
      createdAt: now,
      completedAt: now,
    };
    this.#records.set(key, record);
    return record;
  }

  /** Stores the definitive answer of `record`, completed at `now` (its TTL starts then). */
  complete(
    record: IdempotencyRecord,
    state: Exclude<PaymentState, 'processing'>,
    status: number,
    body: string,
    payment: Readonly<Record<string, unknown>>,
    now: number,
  ): void {
    record.completedAt = now;
    record.state = state;
    record.status = status;
    record.body = body;
    record.payment = payment;
  }

  /** Forgets `record` (no definitive answer: a retry with the same key starts over). */
  abandon(record: IdempotencyRecord): void {
    if (this.#records.get(record.key) === record) this.#records.delete(record.key);
  }

  clear(): void {
    this.#records.clear();
  }

  // Map order is creation order, so the first completed record found is the oldest one begun.
  #evictOne(): boolean {
    for (const [key, record] of this.#records) {
      if (record.state !== 'processing') {
        this.#records.delete(key);
        return true;
      }
    }
    return false;
  }
}
