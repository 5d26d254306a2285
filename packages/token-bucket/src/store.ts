/**
 * The store interface: how a {@link KeyedLimiter} (and a store-backed gate) keeps one bucket per key.
 * The in-process {@link MemoryStore} implements it synchronously; `@floodgate/redis` implements it with
 * promises so one limit holds across a fleet.
 *
 * @module
 */

/** The shape every bucket of one limiter shares. */
export interface BucketSpec {
  /** Burst: the most tokens a bucket holds (finite, >= 1). */
  readonly capacity: number;
  /** Tokens added per millisecond (finite, > 0). */
  readonly refillPerMs: number;
}

/** A limiter decision is a value; denial is not an exception. */
export interface Decision {
  /** Whether the tokens were granted. */
  readonly allowed: boolean;
  /** The bucket's capacity (burst), for `RateLimit-Limit`. */
  readonly limit: number;
  /** Whole tokens left after this decision (floor, >= 0). */
  readonly remaining: number;
  /** 0 when allowed; otherwise ms until `cost` tokens will be there. */
  readonly retryAfterMs: number;
  /** Ms until the bucket is full again. */
  readonly resetAfterMs: number;
}

/** A decision of a {@link LimiterStore}: a {@link Decision} that may have been reserved from the future. */
export interface StoreDecision extends Decision {
  /** > 0 when the tokens were reserved from the future (see maxWaitMs): sleep this long, then proceed. */
  readonly waitMs: number;
  /**
   * True when this decision replays an earlier grant of the same `operationId`: it spent nothing, so a
   * caller that abandons it must not refund it (the tokens belong to the first grant). Absent otherwise.
   */
  readonly replayed?: boolean;
}

/** Options of one {@link LimiterStore.consume} call. */
export interface ConsumeOptions {
  /**
   * When the tokens are not there now but will be within maxWaitMs, reserve them (the bucket goes into
   * debt) and answer allowed with waitMs > 0.
   * @default 0 (no reservation)
   */
  readonly maxWaitMs?: number;
  /**
   * Idempotent spending: a consume with an operationId that was already granted for this key (within the
   * store's operation TTL, counted from when the grant's tokens are ready) returns the earlier decision,
   * flagged `replayed`, and spends nothing. A denied operation is not remembered: it spent nothing, so its
   * retry is decided afresh. Nor is an abandoned one: a refund that names the operation gives its tokens
   * back and forgets it in the same step (see {@link RefundOptions}), so the operation is spent at most
   * once and a retry after an abort is decided afresh, never replayed as granted with tokens that were
   * given back. Once a grant has been replayed, a refund naming it gives nothing back.
   */
  readonly operationId?: string;
}

/** Options of one {@link LimiterStore.refund} call. */
export interface RefundOptions {
  /**
   * The operation whose tokens are given back: its record is forgotten in the same atomic step as the
   * refund, so a retry with the same id is decided afresh (and spends again) instead of replaying a
   * grant whose tokens went back. Refund only the first grant of an operation, never a `replayed` one.
   *
   * The tokens go back only through a record the store still holds and has never replayed. Once a
   * consume has replayed the grant, that replay may be using the tokens (two takes of one id in flight,
   * the first one abandoned): the refund then gives nothing back and the record stays, so the operation
   * is spent once and used at most once. A record the store no longer holds (expired, evicted, never
   * written) cannot say whether it was replayed, so nothing is given back either. Both err on the strict
   * side: tokens are never minted.
   */
  readonly operationId?: string;
}

/** Where a keyed limiter keeps its buckets. Implementations may answer synchronously or with a promise. */
export interface LimiterStore {
  /** Takes `cost` tokens from the bucket of `key` (created full on first use) and says whether it could. */
  consume(
    key: string,
    cost: number,
    spec: BucketSpec,
    options?: ConsumeOptions,
  ): StoreDecision | Promise<StoreDecision>;
  /**
   * Gives back tokens taken or reserved and not used (never above capacity). With `operationId`, also
   * forgets that operation's record, atomically with the refund; a grant that was replayed, or that the
   * store no longer remembers, is not given back (see {@link RefundOptions}).
   */
  refund(key: string, cost: number, spec: BucketSpec, options?: RefundOptions): void | Promise<void>;
  /** Releases what the store holds (connections, memory). */
  close(): void | Promise<void>;
}
