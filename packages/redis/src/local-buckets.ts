import type { BucketSpec, StoreDecision } from '@floodgate/token-bucket';

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * The in-process buckets of the `'local-fallback'` mode: the same token bucket as the Redis script
 * (reservations as debt, refunds capped at capacity), kept per key with a bound on the number of keys
 * (least recently used first out). Used only while Redis cannot answer, and emptied when it is back.
 */
export class LocalBuckets {
  readonly #buckets = new Map<string, Bucket>();
  readonly #maxKeys: number;
  readonly #clock: () => number;

  constructor(maxKeys: number, clock: () => number = performance.now.bind(performance)) {
    this.#maxKeys = maxKeys;
    this.#clock = clock;
  }

  /** The number of keys held. */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Decides on this instance's share of a limit. `spec` is the share (see `RedisStore`), `limit` the shared
   * capacity, reported as the decision's `limit` (what the client's quota is, not a fraction of it).
   *
   * A cost above the share but within `limit` (cost 2 when 3 instances share a capacity of 5) could never
   * fit the share, so it is admitted from a **full** local bucket, which it draws into debt: it waits for a
   * full bucket as a cost equal to the share would, and the refill then pays the rest off at the share's
   * rate. Each instance's long-run rate stays its share and its burst is at most one such cost, and the
   * caller gets a finite `retryAfterMs` instead of a refusal for the whole outage. Only a cost above
   * `limit` is never admitted (`retryAfterMs: Infinity`), as with Redis.
   */
  consume(
    key: string,
    cost: number,
    spec: BucketSpec,
    maxWaitMs: number,
    limit: number = spec.capacity,
  ): StoreDecision {
    const { capacity, refillPerMs } = spec;
    const bucket = this.#refilled(key, spec);
    // What must be in the bucket before the cost is taken: the cost, or a full bucket for a larger one.
    const needed = Math.min(cost, capacity);
    let allowed = false;
    let waitMs = 0;
    let retryAfterMs = 0;
    if (bucket.tokens >= needed) {
      allowed = cost <= limit;
      if (!allowed) retryAfterMs = Number.POSITIVE_INFINITY;
    } else {
      const need = (needed - bucket.tokens) / refillPerMs;
      if (cost <= limit && need <= maxWaitMs) {
        allowed = true;
        waitMs = need;
      } else {
        retryAfterMs = cost > limit ? Number.POSITIVE_INFINITY : need;
      }
    }
    if (allowed) bucket.tokens -= cost;
    return {
      allowed,
      limit,
      remaining: bucket.tokens >= 1 ? Math.floor(bucket.tokens) : 0,
      retryAfterMs: Math.ceil(retryAfterMs),
      resetAfterMs: Math.ceil((capacity - bucket.tokens) / refillPerMs),
      waitMs: Math.ceil(waitMs),
    };
  }

  refund(key: string, cost: number, spec: BucketSpec): void {
    const bucket = this.#refilled(key, spec);
    bucket.tokens = Math.min(spec.capacity, bucket.tokens + cost);
  }

  clear(): void {
    this.#buckets.clear();
  }

  #refilled(key: string, spec: BucketSpec): Bucket {
    const now = this.#clock();
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: spec.capacity, at: now };
      if (this.#buckets.size >= this.#maxKeys) {
        const oldest = this.#buckets.keys().next();
        if (!oldest.done) this.#buckets.delete(oldest.value);
      }
    } else {
      // Re-inserting keeps Map order = recency, so the first key is the least recently used.
      this.#buckets.delete(key);
      if (now > bucket.at) {
        bucket.tokens = Math.min(spec.capacity, bucket.tokens + (now - bucket.at) * spec.refillPerMs);
        bucket.at = now;
      }
      bucket.tokens = Math.min(spec.capacity, bucket.tokens);
    }
    this.#buckets.set(key, bucket);
    return bucket;
  }
}
