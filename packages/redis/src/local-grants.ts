interface Grants {
  /** Tokens granted locally, in any outage, and not yet given back. */
  tokens: number;
  /** The part of `tokens` granted in `outage`: what that outage's local bucket may be credited with. */
  live: number;
  /** The outage the latest grant was made in. */
  outage: number;
  /** When the record is forgotten (clock time). */
  expiresAt: number;
}

/** What {@link LocalGrants.take} found of a refund: the part that is the local side's. */
export interface LocalShare {
  /** Tokens the refund gives back to local grants: never to go to Redis, which did not spend them. */
  readonly local: number;
  /** The part of `local` the current outage's local bucket granted, and may be credited with. */
  readonly live: number;
}

const NONE: LocalShare = Object.freeze({ local: 0, live: 0 });

/**
 * What the fail mode granted without Redis and was not given back, per key: the `'local-fallback'`
 * mode's local buckets, or the `'fail-open'` mode, which spends nothing anywhere (its grants are noted
 * with no live bucket to credit, and their refunds are simply dropped). A refund carries no grant id, so
 * the store cannot tell a local grant's refund from one of Redis's: it takes refunds off the local grants
 * first and sends only the rest to Redis. Each side then gets back at most what it spent (given that
 * callers refund no more than they were granted), whatever order the refunds come in: a local grant's
 * tokens never reach the shared bucket, and a Redis grant's never reach a local bucket. Holding back too
 * much errs on the strict side (a lost refund); sending too much would mint tokens in the fleet's bucket.
 *
 * Bounded: at most `maxKeys` keys (the least recently granted is forgotten first), each until `holdMs`
 * after its latest grant's tokens are ready, when its refund is no longer expected.
 */
export class LocalGrants {
  readonly #grants = new Map<string, Grants>();
  readonly #maxKeys: number;
  readonly #holdMs: number;
  readonly #clock: () => number;

  constructor(maxKeys: number, holdMs: number, clock: () => number = performance.now.bind(performance)) {
    this.#maxKeys = maxKeys;
    this.#holdMs = holdMs;
    this.#clock = clock;
  }

  /** The number of keys remembered. */
  get size(): number {
    return this.#grants.size;
  }

  /** Notes `cost` tokens of `key` granted locally in `outage`, their reservation ready in `waitMs`. */
  add(key: string, cost: number, outage: number, waitMs: number): void {
    if (!(cost > 0)) return;
    const now = this.#clock();
    const expiresAt = now + waitMs + this.#holdMs;
    let grants = this.#grants.get(key);
    // Re-inserting keeps Map order = recency of the latest grant, so the first key is evicted first.
    if (grants !== undefined) this.#grants.delete(key);
    if (grants === undefined || now >= grants.expiresAt) {
      grants = { tokens: 0, live: 0, outage, expiresAt };
    } else {
      if (grants.outage !== outage) {
        grants.live = 0;
        grants.outage = outage;
      }
      if (expiresAt > grants.expiresAt) grants.expiresAt = expiresAt;
    }
    grants.tokens += cost;
    grants.live += cost;
    this.#grants.set(key, grants);
    this.#evict(now);
  }

  /**
   * Takes a refund of `cost` tokens of `key` off its local grants: the answer's `local` part is the local
   * side's (the rest is Redis's), and of that the `live` part may be credited to the local bucket of
   * `outage` (0 when Redis is answering: no local bucket is live then).
   */
  take(key: string, cost: number, outage: number): LocalShare {
    const grants = this.#grants.get(key);
    if (grants === undefined) return NONE;
    if (this.#clock() >= grants.expiresAt) {
      this.#grants.delete(key);
      return NONE;
    }
    const local = Math.min(cost, grants.tokens);
    // The current outage's grants first: a refund comes most often soon after its grant.
    const live = grants.outage === outage ? Math.min(local, grants.live) : 0;
    grants.tokens -= local;
    grants.live = Math.min(grants.live - live, grants.tokens);
    if (grants.tokens <= 0) this.#grants.delete(key);
    return { local, live };
  }

  clear(): void {
    this.#grants.clear();
  }

  #evict(now: number): void {
    if (this.#grants.size > this.#maxKeys) {
      const oldest = this.#grants.keys().next();
      if (!oldest.done) this.#grants.delete(oldest.value);
    }
    // Expired records leave from the front as new grants come, so memory does not wait for the cap.
    for (let checked = 0; checked < 2; checked += 1) {
      const first = this.#grants.entries().next();
      if (first.done || now < first.value[1].expiresAt) break;
      this.#grants.delete(first.value[0]);
    }
  }
}
