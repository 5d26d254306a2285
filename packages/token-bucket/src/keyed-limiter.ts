import {
  ClosedError,
  InvalidOptionError,
  RateLimitedError,
  StoreUnavailableError,
  TokenBucketError,
} from './errors.js';
import { longTimeout } from './long-timeout.js';
import { MemoryStore } from './memory-store.js';
import {
  booleanOption,
  type Clock,
  checkOptionKeys,
  finiteNumber,
  numberOrInfinity,
  type RefillRate,
  refillPerMs,
  signalOption,
} from './options.js';
import type { BucketSpec, ConsumeOptions, Decision, LimiterStore, StoreDecision } from './store.js';

/** Options of {@link KeyedLimiter} / {@link keyedLimiter}. */
export interface KeyedLimiterOptions<S extends LimiterStore = MemoryStore> {
  /** The most tokens each key's bucket holds: the burst. A finite number >= 1. */
  readonly capacity: number;
  /** Tokens added per second, or `{ tokens, perMs }` (`{ tokens: 100, perMs: 60_000 }` = 100 per minute). */
  readonly refillRate: RefillRate;
  /**
   * Where the buckets live. Give `@floodgate/redis`'s store to share the limit across processes.
   * A store you give is not closed by {@link KeyedLimiter.close} (it may be shared).
   * @default a new MemoryStore({ maxKeys, clock }), closed with the limiter
   */
  readonly store?: S;
  /**
   * For the default memory store only: the most keys being limited at once (see {@link MemoryStore}).
   * @default 100_000
   */
  readonly maxKeys?: number;
  /**
   * For the default memory store only: a monotonic clock in ms.
   * @default () => performance.now()
   */
  readonly clock?: Clock;
  /**
   * Whether a pending wait keeps the process alive. By default the one timer behind a wait is unref'd, so
   * a limiter never holds a process open by itself; a script or CLI with nothing else holding the event
   * loop (no server, no socket) that awaits a wait should set this, or it exits with the wait unsettled.
   * @default false
   */
  readonly keepAlive?: boolean;
}

/** Options of one {@link KeyedLimiter.take} call. */
export interface KeyedTakeOptions {
  /** Aborting while waiting gives the reserved tokens back and rejects with `signal.reason`. */
  readonly signal?: AbortSignal;
  /**
   * The longest this call may wait for its tokens; beyond it the call is rejected at once with
   * {@link RateLimitedError}. Waiting reserves the tokens (the bucket goes into debt), so later callers
   * queue behind this one.
   * @default Infinity
   */
  readonly maxWaitMs?: number;
  /** Idempotent spending: the same operationId for the same key spends once (see {@link ConsumeOptions}). */
  readonly operationId?: string;
}

/** What {@link KeyedLimiter.tryTake} returns: a decision now with the memory store, a promise otherwise. */
export type KeyedDecision<S extends LimiterStore> = S extends MemoryStore ? Decision : Promise<Decision>;
/** What {@link KeyedLimiter.refund} returns: nothing with the memory store, a promise otherwise. */
export type KeyedRefund<S extends LimiterStore> = S extends MemoryStore ? undefined : Promise<void>;

const OPTION_KEYS = ['capacity', 'refillRate', 'store', 'maxKeys', 'clock', 'keepAlive'] as const;
const TAKE_KEYS = ['signal', 'maxWaitMs', 'operationId'] as const;

/**
 * One token bucket per key (user, IP address, merchant), kept in a {@link LimiterStore}. With the default
 * memory store every decision is synchronous; with an async store (Redis) it is a promise, and the types
 * say which.
 *
 * @example
 * ```ts
 * const perUser = keyedLimiter({ capacity: 5, refillRate: { tokens: 5, perMs: 60_000 } });
 * const decision = perUser.tryTake(userId); // Decision, synchronously
 * if (!decision.allowed) reply.status(429).header('Retry-After', Math.ceil(decision.retryAfterMs / 1000));
 * ```
 */
export class KeyedLimiter<S extends LimiterStore = MemoryStore> {
  /** The limit every key shares, for RateLimit headers and for stores. */
  readonly spec: BucketSpec;
  /** The store holding the buckets. */
  readonly store: S;

  private readonly capacity: number;
  private readonly memory: MemoryStore | undefined;
  private readonly ownsStore: boolean;
  private readonly keepAlive: boolean;
  private readonly sleepers = new Set<(error: Error) => void>();
  private closed = false;

  /** @throws {InvalidOptionError} When an option is missing, out of range or unknown. */
  constructor(options: KeyedLimiterOptions<S>) {
    checkOptionKeys(options, OPTION_KEYS, 'options');
    this.capacity = finiteNumber('capacity', options.capacity, 1);
    this.spec = Object.freeze({
      capacity: this.capacity,
      refillPerMs: refillPerMs('refillRate', options.refillRate),
    });
    if (options.store === undefined) {
      const memoryOptions: { maxKeys?: number; clock?: Clock } = {};
      if (options.maxKeys !== undefined) memoryOptions.maxKeys = options.maxKeys;
      if (options.clock !== undefined) memoryOptions.clock = options.clock;
      this.store = new MemoryStore(memoryOptions) as unknown as S;
      this.ownsStore = true;
    } else {
      const { store } = options;
      if (typeof store !== 'object' || store === null || typeof store.consume !== 'function') {
        throw new InvalidOptionError('store', 'a LimiterStore (consume, refund, close)', store);
      }
      for (const name of ['maxKeys', 'clock'] as const) {
        if (options[name] !== undefined) {
          throw new InvalidOptionError(
            name,
            'left out when a `store` is given (configure the store)',
            options[name],
          );
        }
      }
      this.store = store;
      this.ownsStore = false;
    }
    this.memory = this.store instanceof MemoryStore ? this.store : undefined;
    this.keepAlive = booleanOption('keepAlive', options.keepAlive ?? false);
  }

  /**
   * Takes `cost` tokens from `key`'s bucket if they are there now. A denial is a decision, not an error.
   *
   * @throws {InvalidOptionError} When `key` is not a string or `cost` is negative or above capacity.
   * @throws {StoreUnavailableError} (rejection, async stores) When the store fails.
   * @example
   * ```ts
   * const { allowed, remaining, retryAfterMs } = limiter.tryTake(`ip:${ip}`);
   * ```
   */
  tryTake(key: string, cost = 1): KeyedDecision<S> {
    if (typeof key !== 'string') throw new InvalidOptionError('key', 'a string', key);
    if (typeof cost !== 'number' || !(cost >= 0 && cost <= this.capacity)) throw this.invalidCost(cost);
    if (this.memory !== undefined)
      return this.memory.consume(key, cost, this.spec) as unknown as KeyedDecision<S>;
    if (this.closed) return Promise.reject(new ClosedError('KeyedLimiter')) as KeyedDecision<S>;
    return this.consumeAsync(key, cost, undefined) as unknown as KeyedDecision<S>;
  }

  /**
   * Resolves when `cost` tokens of `key` are granted, waiting (reserved, in arrival order) up to `maxWaitMs`.
   *
   * @throws {RateLimitedError} (rejection, at once) When the wait would exceed `maxWaitMs`.
   * @throws {InvalidOptionError} (rejection) When an argument or option is invalid.
   * @throws {StoreUnavailableError} (rejection) When the store fails.
   * @throws {ClosedError} (rejection) When the limiter is closed, before or while waiting.
   * @throws The signal's reason (rejection) When `signal` aborts while waiting; the tokens are given back
   *   and the `operationId` is forgotten with them, so a retry with the same id is decided afresh. A call
   *   that replayed an earlier grant of its `operationId` gives nothing back: it spent nothing. Nor does
   *   the first grant once another take has replayed it (that take may be using the tokens): the store
   *   refuses the refund and keeps the operation, so later retries are replayed.
   */
  async take(key: string, cost = 1, options?: KeyedTakeOptions): Promise<StoreDecision> {
    if (typeof key !== 'string') throw new InvalidOptionError('key', 'a string', key);
    if (typeof cost !== 'number' || !(cost >= 0 && cost <= this.capacity)) throw this.invalidCost(cost);
    let signal: AbortSignal | undefined;
    const consumeOptions: { maxWaitMs: number; operationId?: string } = {
      maxWaitMs: Number.POSITIVE_INFINITY,
    };
    if (options !== undefined) {
      checkOptionKeys(options, TAKE_KEYS, 'take options');
      signal = signalOption(options.signal);
      if (options.maxWaitMs !== undefined) {
        consumeOptions.maxWaitMs = numberOrInfinity('maxWaitMs', options.maxWaitMs, 0);
      }
      if (options.operationId !== undefined) {
        if (typeof options.operationId !== 'string') {
          throw new InvalidOptionError('operationId', 'a string', options.operationId);
        }
        consumeOptions.operationId = options.operationId;
      }
    }
    if (this.closed) throw new ClosedError('KeyedLimiter');
    signal?.throwIfAborted();

    const decision =
      this.memory !== undefined
        ? this.memory.consume(key, cost, this.spec, consumeOptions)
        : await this.consumeAsync(key, cost, consumeOptions);
    if (!decision.allowed) throw new RateLimitedError(decision.retryAfterMs);
    if (decision.waitMs > 0 || signal?.aborted === true || this.closed) {
      try {
        if (this.closed) throw new ClosedError('KeyedLimiter');
        signal?.throwIfAborted();
        await this.sleep(decision.waitMs, signal);
      } catch (error) {
        // Not used: the reservation goes back so the callers behind it move up, and its operation is
        // forgotten with it (a retry is decided afresh). A replay reserved nothing: giving back the first
        // grant's tokens would mint them.
        if (decision.replayed !== true) await this.refundQuietly(key, cost, consumeOptions.operationId);
        throw error;
      }
    }
    return decision;
  }

  /** Gives back `cost` tokens of `key` taken and not used (never above capacity). */
  refund(key: string, cost: number): KeyedRefund<S> {
    if (!(typeof cost === 'number' && cost >= 0 && Number.isFinite(cost))) {
      throw new InvalidOptionError('cost', 'a finite number >= 0', cost);
    }
    if (this.memory !== undefined) return this.memory.refund(key, cost, this.spec) as KeyedRefund<S>;
    return (async () => {
      try {
        await this.store.refund(key, cost, this.spec);
      } catch (error) {
        throw this.storeError(error, 'refund');
      }
    })() as KeyedRefund<S>;
  }

  /**
   * Rejects pending waits with {@link ClosedError} and closes the store if the limiter created it
   * (a store you passed in is left open: it may be shared). Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const error = new ClosedError('KeyedLimiter');
    for (const wake of [...this.sleepers]) wake(error);
    if (this.ownsStore) await this.store.close();
  }

  private async consumeAsync(
    key: string,
    cost: number,
    options: ConsumeOptions | undefined,
  ): Promise<StoreDecision> {
    try {
      return await (options === undefined
        ? this.store.consume(key, cost, this.spec)
        : this.store.consume(key, cost, this.spec, options));
    } catch (error) {
      throw this.storeError(error, 'consume');
    }
  }

  private storeError(error: unknown, operation: string): Error {
    if (error instanceof TokenBucketError) return error;
    return new StoreUnavailableError(`The limiter store failed to ${operation}`, { cause: error });
  }

  private async refundQuietly(key: string, cost: number, operationId: string | undefined): Promise<void> {
    try {
      await (operationId === undefined
        ? this.store.refund(key, cost, this.spec)
        : this.store.refund(key, cost, this.spec, { operationId }));
    } catch {
      // Best effort: failing to give tokens back only makes the limit stricter for a while.
    }
  }

  private sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const finish = (error?: unknown) => {
        timer.clear();
        signal?.removeEventListener('abort', onAbort);
        this.sleepers.delete(finish);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onAbort = () => finish(signal?.reason);
      // Reservations can be weeks away (a daily quota with a long queue): past 2^31-1 ms a plain
      // setTimeout would fire after 1 ms and grant the tokens at once.
      const timer = longTimeout(finish, ms, this.keepAlive);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.sleepers.add(finish);
    });
  }

  private invalidCost(cost: unknown): InvalidOptionError {
    return new InvalidOptionError('cost', `a number between 0 and capacity (${this.capacity})`, cost);
  }
}

/**
 * Creates a {@link KeyedLimiter}.
 *
 * @throws {InvalidOptionError} When an option is missing, out of range or unknown.
 * @example
 * ```ts
 * const perIp = keyedLimiter({ capacity: 20, refillRate: 10, maxKeys: 50_000 });
 * const perMerchant = keyedLimiter({ capacity: 100, refillRate: 50, store: redisStore });
 * ```
 */
export function keyedLimiter<S extends LimiterStore = MemoryStore>(
  options: KeyedLimiterOptions<S>,
): KeyedLimiter<S> {
  return new KeyedLimiter(options);
}
