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
   * store's operation TTL) returns the earlier decision and spends nothing. A denied operation is not
   * remembered: it spent nothing, so its retry is decided afresh.
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
  /** Gives back tokens taken or reserved and not used (never above capacity). */
  refund(key: string, cost: number, spec: BucketSpec): void | Promise<void>;
  /** Releases what the store holds (connections, memory). */
  close(): void | Promise<void>;
}
