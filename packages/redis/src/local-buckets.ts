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

  consume(key: string, cost: number, spec: BucketSpec, maxWaitMs: number): StoreDecision {
    const { capacity, refillPerMs } = spec;
    const bucket = this.#refilled(key, spec);
    let allowed = false;
    let waitMs = 0;
    let retryAfterMs = 0;
    if (bucket.tokens >= cost) {
      allowed = true;
    } else {
      const need = (cost - bucket.tokens) / refillPerMs;
      if (cost <= capacity && need <= maxWaitMs) {
        allowed = true;
        waitMs = need;
      } else {
        retryAfterMs = cost > capacity ? Number.POSITIVE_INFINITY : need;
      }
    }
    if (allowed) bucket.tokens -= cost;
    return {
      allowed,
      limit: capacity,
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
