import type { CallContext } from './call.js';
import type { CircuitBreakerStats, ExecuteOptions } from './circuit-breaker.js';
import { CircuitBreaker } from './circuit-breaker.js';
import { InvalidOptionError, RegistryClosedError, RegistryFullError } from './errors.js';
import type { CircuitBreakerOptions } from './options.js';
import { resolveOptions } from './options.js';

/** Options of {@link CircuitBreakerRegistry}. */
export interface CircuitBreakerRegistryOptions {
  /**
   * The most breakers held at once. When a new key needs room, the least recently used breaker with no
   * call in flight is closed and forgotten (closed-state ones first, so an open breaker keeps protecting
   * its gateway as long as possible).
   * @default 1000
   */
  readonly maxBreakers?: number;
  /**
   * Options of each breaker, or a function of the key returning them. `name` defaults to the key.
   * @default {}
   */
  readonly breaker?:
    | Omit<CircuitBreakerOptions<[], never>, 'fallback'>
    | ((key: string) => Omit<CircuitBreakerOptions<[], never>, 'fallback'>);
}

const KEYS: ReadonlySet<string> = new Set(['maxBreakers', 'breaker']);

/**
 * One breaker per gateway or endpoint key, created on first use, bounded. Breakers are
 * `execute()`-only (they have no action).
 *
 * @example
 * ```ts
 * const breakers = circuitBreakerRegistry({ breaker: { timeoutMs: 5_000 } });
 * const res = await breakers.execute(`bank:${host}`, ({ signal }) => request(url, { signal }));
 * ```
 */
export class CircuitBreakerRegistry {
  readonly #maxBreakers: number;
  readonly #breakerOptions: (key: string) => CircuitBreakerOptions<[], never>;
  /** In least-recently-used order (a Map iterates in insertion order; a hit re-inserts). */
  readonly #breakers = new Map<string, CircuitBreaker<[], never>>();
  #closed = false;

  /** @throws {InvalidOptionError} when an option is unknown or out of range. */
  constructor(options: CircuitBreakerRegistryOptions = {}) {
    if (typeof options !== 'object' || options === null)
      throw new InvalidOptionError('options', 'an object', options);
    for (const key of Object.keys(options)) {
      if (!KEYS.has(key)) {
        throw new InvalidOptionError(
          key,
          'a known option (one of maxBreakers, breaker)',
          (options as Record<string, unknown>)[key],
        );
      }
    }
    const maxBreakers = options.maxBreakers === undefined ? 1000 : options.maxBreakers;
    if (typeof maxBreakers !== 'number' || !Number.isSafeInteger(maxBreakers) || maxBreakers < 1) {
      throw new InvalidOptionError('maxBreakers', 'an integer >= 1', maxBreakers);
    }
    this.#maxBreakers = maxBreakers;
    const breaker = options.breaker === undefined ? {} : options.breaker;
    if (typeof breaker === 'function') {
      this.#breakerOptions = (key) => {
        const options = breaker(key);
        // As for an options object: a registry breaker has no action, so a fallback would never run.
        if (typeof options === 'object' && options !== null && 'fallback' in options) {
          throw new InvalidOptionError(
            'breaker.fallback',
            'absent (pass a fallback to execute())',
            (options as { fallback?: unknown }).fallback,
          );
        }
        return { name: key, ...options };
      };
    } else if (typeof breaker === 'object' && breaker !== null) {
      if ('fallback' in breaker) {
        throw new InvalidOptionError(
          'breaker.fallback',
          'absent (pass a fallback to execute())',
          breaker.fallback,
        );
      }
      // Validate once now, so a bad configuration fails at start-up rather than on the first call.
      resolveOptions(breaker, 'registry');
      this.#breakerOptions = (key) => ({ name: key, ...breaker });
    } else throw new InvalidOptionError('breaker', 'an options object or a function of the key', breaker);
  }

  /** Breakers held. */
  get size(): number {
    return this.#breakers.size;
  }

  /**
   * The breaker of `key`, created on first use.
   * @throws {RegistryFullError} when `maxBreakers` are held and all have calls in flight.
   * @throws {InvalidOptionError} when the `breaker` function returns bad options.
   * @throws {RegistryClosedError} after {@link close}.
   */
  get(key: string): CircuitBreaker<[], never> {
    if (this.#closed) throw new RegistryClosedError(key);
    const breakers = this.#breakers;
    let breaker = breakers.get(key);
    if (breaker !== undefined) {
      breakers.delete(key);
      breakers.set(key, breaker);
      return breaker;
    }
    // Choose the breaker to evict (a full registry refuses before any work), build the new one (its
    // options may be invalid), and only then evict: a failed get() must not cost another key its breaker.
    const evict = breakers.size >= this.#maxBreakers ? this.#evictee(key) : undefined;
    breaker = new CircuitBreaker<[], never>(this.#breakerOptions(key));
    // Stored before the eviction closes the old one: a 'shutdown' listener that throws cannot lose it.
    breakers.set(key, breaker);
    if (evict !== undefined) this.delete(evict);
    return breaker;
  }

  /** Whether `key` has a breaker now (does not create one or refresh its recency). */
  has(key: string): boolean {
    return this.#breakers.has(key);
  }

  /**
   * `get(key).execute(fn, options)`; a full registry rejects with {@link RegistryFullError}, a closed one
   * with {@link RegistryClosedError}.
   */
  execute<T>(
    key: string,
    fn: (ctx: CallContext) => T | PromiseLike<T>,
    options?: ExecuteOptions<T>,
  ): Promise<T> {
    let breaker: CircuitBreaker<[], never>;
    try {
      breaker = this.get(key);
    } catch (error) {
      return Promise.reject(error);
    }
    return breaker.execute(fn, options);
  }

  /** Closes and forgets the breaker of `key`; false when there was none. */
  delete(key: string): boolean {
    const breaker = this.#breakers.get(key);
    if (breaker === undefined) return false;
    this.#breakers.delete(key);
    breaker.close();
    return true;
  }

  /** The keys held, least recently used first. */
  keys(): IterableIterator<string> {
    return this.#breakers.keys();
  }

  /** Every breaker's stats (its `name` is the key unless the options named it). */
  stats(): CircuitBreakerStats[] {
    const all: CircuitBreakerStats[] = [];
    for (const breaker of this.#breakers.values()) all.push(breaker.stats());
    return all;
  }

  /** Closes every breaker (see {@link CircuitBreaker.close}); `get()` throws afterwards. */
  close(): void {
    this.#closed = true;
    for (const breaker of this.#breakers.values()) breaker.close();
    this.#breakers.clear();
  }

  /** The key to evict for `forKey`: the least recently used idle breaker, a closed-state one first. */
  #evictee(forKey: string): string {
    let idle: string | undefined;
    for (const [key, breaker] of this.#breakers) {
      if (breaker.inFlight !== 0) continue;
      if (breaker.state === 'closed') {
        idle = key;
        break;
      }
      idle ??= key;
    }
    if (idle === undefined) throw new RegistryFullError(forKey, this.#maxBreakers);
    return idle;
  }
}

/**
 * Creates a {@link CircuitBreakerRegistry}.
 * @throws {InvalidOptionError} when an option is unknown or out of range.
 */
export function circuitBreakerRegistry(options?: CircuitBreakerRegistryOptions): CircuitBreakerRegistry {
  return new CircuitBreakerRegistry(options);
}
