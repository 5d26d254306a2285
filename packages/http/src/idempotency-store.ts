/** A response as an idempotency store keeps it (JSON-serialisable, so a Redis store can hold it too). */
export interface StoredResponse {
  /** HTTP status of the stored response. */
  readonly status: number;
  /** Allow-listed response headers, lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  /** The body, in `encoding`. */
  readonly body: string;
  /** How `body` is encoded: `base64` for a binary body. */
  readonly encoding: 'utf8' | 'base64';
}

/** What a store holds for a key that is taken. */
export type IdempotencyRecord =
  | {
      readonly state: 'in-flight';
      /** The fingerprint of the request that holds the key; a duplicate must match it. */
      readonly fingerprint: string;
      /** Milliseconds until the lease expires and another request may take the key over. */
      readonly leaseRemainingMs: number;
    }
  | {
      readonly state: 'completed';
      /** The fingerprint of the request whose response is stored. */
      readonly fingerprint: string;
      /** The response a duplicate with the same fingerprint is answered with. */
      readonly response: StoredResponse;
    };

/** Outcome of {@link IdempotencyStore.begin}. */
export type BeginResult =
  | {
      /** The key was free and is now leased to the caller. */
      readonly acquired: true;
      /** Proof of ownership for complete/release. */
      readonly lease: string;
    }
  | {
      /** The key is taken. */
      readonly acquired: false;
      /** What the store holds for it. */
      readonly record: IdempotencyRecord;
    };

/**
 * Where idempotency keys live. The short in-flight lease (a crashed request frees the key when it
 * expires) is separate from the long-lived stored response. Implemented by the bounded memory store
 * here and by @floodgate/redis for a fleet.
 */
export interface IdempotencyStore {
  /**
   * Atomically: when the key is free (never seen, released, or its lease expired), lease it for
   * `leaseMs` and answer `acquired: true`; otherwise answer what is there.
   */
  begin(key: string, fingerprint: string, leaseMs: number): BeginResult | Promise<BeginResult>;
  /**
   * Stores the response for `ttlMs` and ends the lease, if `lease` still owns the key: a request whose
   * lease expired and was taken over must not overwrite the new owner's outcome.
   *
   * A lease owns its key from `begin` until it is completed, released or expires. A `complete` or
   * `release` by a lease that no longer owns the key changes nothing, also when its lease expired and
   * nobody has taken the key over yet (the key is free then, as for `begin`).
   */
  complete(key: string, lease: string, response: StoredResponse, ttlMs: number): void | Promise<void>;
  /** Ends the lease without storing anything (a retryable outcome: 5xx, 429, aborted). */
  release(key: string, lease: string): void | Promise<void>;
  /**
   * Optional: resolves when the key may have left the in-flight state (completed, released, lease
   * expired) or when `signal` aborts. Without it, coalescing duplicates poll `begin`.
   */
  waitForChange?(key: string, signal: AbortSignal): Promise<void>;
  /** Releases the store's timers and connections; the middleware closes only a store it made. */
  close(): void | Promise<void>;
}
