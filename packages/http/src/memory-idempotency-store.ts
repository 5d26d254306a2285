import { randomUUID } from 'node:crypto';
import { StoreUnavailableError } from './errors.js';
import type { BeginResult, IdempotencyStore, StoredResponse } from './idempotency-store.js';
import { checkFunction, checkInteger, checkObject, rejectUnknownKeys } from './validate.js';

/** Options of {@link MemoryIdempotencyStore}. */
export interface MemoryIdempotencyStoreOptions {
  /**
   * Most keys held. When full, expired entries go first, then the oldest completed ones; in-flight
   * leases are never evicted (their number is bounded by the requests being served).
   * @default 10000
   */
  readonly maxKeys?: number;
  /**
   * Monotonic clock in milliseconds.
   * @default performance.now
   */
  readonly clock?: () => number;
}

interface Entry {
  fingerprint: string;
  lease: string | undefined;
  leaseExpiresAt: number;
  response: StoredResponse | undefined;
  expiresAt: number;
}

/**
 * Bounded in-process idempotency store: right for one server process. Use @floodgate/redis for a fleet,
 * or duplicates reaching different processes are each processed.
 *
 * @throws {InvalidOptionError} on an unknown option or a bad `maxKeys`/`clock`.
 * @example
 * const store = memoryIdempotencyStore({ maxKeys: 50_000 });
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  /** Most keys held; past it the oldest completed one is dropped. */
  readonly maxKeys: number;
  readonly #clock: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #waiters = new Map<string, Set<() => void>>();
  /** No entry expires before this (a lower bound, kept as entries are written): see #makeRoom. */
  #nextExpiry = Number.POSITIVE_INFINITY;
  #closed = false;

  constructor(options: MemoryIdempotencyStoreOptions = {}) {
    checkObject('options', options);
    rejectUnknownKeys(options, ['maxKeys', 'clock'], 'memoryIdempotencyStore()');
    this.maxKeys = options.maxKeys === undefined ? 10_000 : checkInteger('maxKeys', options.maxKeys, 1);
    this.#clock =
      options.clock === undefined ? () => performance.now() : checkFunction('clock', options.clock);
  }

  /** Number of keys held (in flight or completed, not yet swept). */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * @throws {StoreUnavailableError} after {@link close}: a request must not proceed without a lock (nor
   * wait on a store that no longer notifies), so it is answered 503 as for any failed store.
   */
  begin(key: string, fingerprint: string, leaseMs: number): BeginResult {
    if (this.#closed) throw new StoreUnavailableError('The idempotency store is closed', 1000);
    const now = this.#clock();
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      if (entry.response !== undefined && entry.expiresAt > now) {
        return {
          acquired: false,
          record: { state: 'completed', fingerprint: entry.fingerprint, response: entry.response },
        };
      }
      if (entry.lease !== undefined && entry.leaseExpiresAt > now) {
        return {
          acquired: false,
          record: {
            state: 'in-flight',
            fingerprint: entry.fingerprint,
            leaseRemainingMs: entry.leaseExpiresAt - now,
          },
        };
      }
      this.#entries.delete(key);
    }
    this.#makeRoom(now);
    if (now + leaseMs < this.#nextExpiry) this.#nextExpiry = now + leaseMs;
    const lease = randomUUID();
    this.#entries.set(key, {
      fingerprint,
      lease,
      leaseExpiresAt: now + leaseMs,
      response: undefined,
      expiresAt: now + leaseMs,
    });
    return { acquired: true, lease };
  }

  complete(key: string, lease: string, response: StoredResponse, ttlMs: number): void {
    const entry = this.#entries.get(key);
    if (entry === undefined || entry.lease !== lease) return;
    const now = this.#clock();
    // An expired lease owns nothing, taken over or not: the key is free (as in Redis, where it expired
    // away), so a late complete is ignored rather than stored depending on whether a begin came first.
    if (entry.leaseExpiresAt <= now) return;
    // Re-insert so Map order is the order of completion: #makeRoom evicts the oldest stored response first.
    this.#entries.delete(key);
    entry.lease = undefined;
    entry.response = response;
    entry.expiresAt = now + ttlMs;
    if (entry.expiresAt < this.#nextExpiry) this.#nextExpiry = entry.expiresAt;
    this.#entries.set(key, entry);
    this.#wake(key);
  }

  release(key: string, lease: string): void {
    const entry = this.#entries.get(key);
    if (entry === undefined || entry.lease !== lease) return;
    this.#entries.delete(key);
    this.#wake(key);
  }

  waitForChange(key: string, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const entry = this.#entries.get(key);
      if (this.#closed || signal.aborted || entry === undefined || entry.lease === undefined) {
        resolve();
        return;
      }
      let waiters = this.#waiters.get(key);
      if (waiters === undefined) {
        waiters = new Set();
        this.#waiters.set(key, waiters);
      }
      const set = waiters;
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        set.delete(done);
        if (set.size === 0 && this.#waiters.get(key) === set) this.#waiters.delete(key);
        resolve();
      };
      // The lease may expire (a crashed request): wake up then so the waiter can take the key over.
      const timer = setTimeout(done, Math.max(0, entry.leaseExpiresAt - this.#clock()) + 1);
      timer.unref?.();
      signal.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  /** Wakes every waiter and empties the store; `begin` fails from now on. */
  close(): void {
    this.#closed = true;
    for (const waiters of [...this.#waiters.values()]) for (const wake of [...waiters]) wake();
    this.#waiters.clear();
    this.#entries.clear();
  }

  #wake(key: string): void {
    const waiters = this.#waiters.get(key);
    if (waiters === undefined) return;
    for (const wake of [...waiters]) wake();
  }

  #makeRoom(now: number): void {
    if (this.#entries.size < this.maxKeys) return;
    // Expired entries go before any live stored response, wherever they sit in Map order (a crashed
    // request's lease begun after a response was stored sits behind it). One pass drops them all; until
    // the earliest expiry left nothing can have expired, so a full store under a flood of fresh keys does
    // not scan every entry on every begin.
    if (now >= this.#nextExpiry) {
      let next = Number.POSITIVE_INFINITY;
      for (const [key, entry] of this.#entries) {
        if (entry.expiresAt <= now) this.#entries.delete(key);
        else if (entry.expiresAt < next) next = entry.expiresAt;
      }
      this.#nextExpiry = next;
    }
    for (const [key, entry] of this.#entries) {
      if (this.#entries.size < this.maxKeys) return;
      const leased = entry.lease !== undefined && entry.leaseExpiresAt > now;
      if (!leased) this.#entries.delete(key);
    }
  }
}

/** Creates a {@link MemoryIdempotencyStore}. */
export function memoryIdempotencyStore(options: MemoryIdempotencyStoreOptions = {}): MemoryIdempotencyStore {
  return new MemoryIdempotencyStore(options);
}
