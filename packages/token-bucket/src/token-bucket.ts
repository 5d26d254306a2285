import { ClosedError, InvalidOptionError, QueueFullError, RateLimitedError } from './errors.js';
import { type LongTimeout, longTimeout } from './long-timeout.js';
import {
  booleanOption,
  type Clock,
  checkOptionKeys,
  clockOption,
  finiteNumber,
  integer,
  numberOrInfinity,
  type RefillRate,
  refillPerMs,
  signalOption,
} from './options.js';
import type { BucketSpec, Decision } from './store.js';

/**
 * Float slack when comparing tokens: `tokens + elapsed * rate` can land a few ulps below the exact value
 * after waiting exactly `retryAfterMs`, and a caller told "retry in 5 ms" must then be admitted. 1e-9
 * token is far below any real cost, so it can never grant a token that is not there. Wait times are
 * computed with the same slack, so a wait never rounds up to one ms past the grant (a 3/s bucket's third
 * token is due at 1000 ms, not at `ceil(3 / 0.003)` = 1001).
 */
export const TOKEN_EPSILON = 1e-9;

/** Options of {@link TokenBucket} / {@link tokenBucket}. */
export interface TokenBucketOptions {
  /** The most tokens the bucket holds: the burst. A finite number >= 1. */
  readonly capacity: number;
  /** Tokens added per second, or `{ tokens, perMs }` (`{ tokens: 100, perMs: 60_000 }` = 100 per minute). */
  readonly refillRate: RefillRate;
  /**
   * Tokens in the bucket at construction, between 0 and `capacity`.
   * @default capacity
   */
  readonly initialTokens?: number;
  /**
   * A monotonic clock in ms. Inject one in tests; only differences between readings matter.
   * @default () => performance.now()
   */
  readonly clock?: Clock;
  /**
   * The most {@link TokenBucket.take} calls that may wait at once; the next one is rejected at once with
   * {@link QueueFullError}. `Infinity` lifts the bound.
   * @default 1024
   */
  readonly maxQueue?: number;
  /**
   * Whether a pending wait keeps the process alive. By default the one timer behind a wait is unref'd, so
   * a limiter never holds a process open by itself; a script or CLI with nothing else holding the event
   * loop (no server, no socket) that awaits a wait should set this, or it exits with the wait unsettled.
   * @default false
   */
  readonly keepAlive?: boolean;
  /**
   * How far behind schedule queued waiters may be granted together after the event loop stalls (a timer
   * that fires late). Waiters due within this much of the head are granted at once; the refill of a longer
   * stall is forfeited, as a full bucket forfeits refill, and the rest follow at the rate from then on.
   * So a stall never lets more than `capacity + rate × (d + maxCatchUpMs)` through in any span `d`, and
   * ordinary timer lateness (a few ms) costs no rate. `Infinity` grants every waiter on its original
   * schedule however long the stall (the rate over the stall is kept exactly; a burst follows it).
   * @default 20
   */
  readonly maxCatchUpMs?: number;
}

/** Options of one {@link TokenBucket.take} call. */
export interface TakeOptions {
  /** Aborting gives the waiter's place back and rejects the call with `signal.reason`. */
  readonly signal?: AbortSignal;
  /**
   * The longest this call may wait. When the tokens cannot be granted within it, the call is rejected at
   * once with {@link RateLimitedError}, not after waiting.
   * @default Infinity
   */
  readonly maxWaitMs?: number;
}

interface Waiter {
  readonly n: number;
  readonly resolve: (decision: Decision) => void;
  readonly reject: (reason: unknown) => void;
  readonly signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Its slot in `TokenBucket.waiters`, kept up to date by compaction: an abort finds it in O(1). */
  slot: number;
}

const OPTION_KEYS = [
  'capacity',
  'refillRate',
  'initialTokens',
  'clock',
  'maxQueue',
  'keepAlive',
  'maxCatchUpMs',
] as const;
const TAKE_KEYS = ['signal', 'maxWaitMs'] as const;

let slotsOf: (bucket: TokenBucket) => number;

/**
 * Package-internal, for tests (not exported from `index.ts`): the length of a bucket's waiter array, live
 * waiters and cleared slots together. It shows the memory an abandoned backlog still holds.
 * @internal
 */
export function queueSlots(bucket: TokenBucket): number {
  return slotsOf(bucket);
}

/**
 * A token bucket with lazy refill: tokens are computed from the clock when asked, so an idle bucket costs
 * nothing (no timers, no intervals). {@link tryTake} decides synchronously; {@link take} waits in FIFO
 * order, so a large request is not starved by a stream of small ones.
 *
 * A waiting {@link take} reserves its tokens at once (the level goes into debt) and is granted when the
 * refill has paid that debt off, as `golang.org/x/time/rate` reservations are. The rate therefore stays
 * exact when a timer fires late: the refill accrued during the lateness is owed to the waiters behind,
 * not thrown away by the `capacity` cap, so a late timer delays only its own grant. A stall longer than
 * `maxCatchUpMs` is the exception: its refill is forfeited, so the waiters it held back do not all leave
 * together when it ends.
 *
 * @example
 * ```ts
 * const bucket = tokenBucket({ capacity: 10, refillRate: 5 }); // bursts of 10, 5 per second
 * const decision = bucket.tryTake();
 * if (!decision.allowed) console.log(`retry in ${decision.retryAfterMs} ms`);
 * await bucket.take(3, { maxWaitMs: 1000 }); // waits up to 1 s, else RateLimitedError at once
 * ```
 */
export class TokenBucket {
  /** The most tokens the bucket holds. */
  readonly capacity: number;
  /** Tokens added per millisecond. */
  readonly refillPerMs: number;
  /** The limit as a {@link BucketSpec}, e.g. for RateLimit headers. */
  readonly spec: BucketSpec;
  /** The bound on waiting {@link take} calls. */
  readonly maxQueue: number;
  /** How far behind schedule waiters may be granted together after a stall (see the option). */
  readonly maxCatchUpMs: number;

  private readonly clock: Clock;
  private readonly keepAlive: boolean;
  /**
   * Tokens in the bucket minus those reserved by waiters: negative (debt) while waiters are queued. The
   * `capacity` cap applies to this level, so refill owed to waiters is never capped away.
   */
  private level: number;
  private last: number;
  /**
   * The FIFO queue: live waiters from `headSlot` on, in arrival order, with `undefined` in the slots of
   * those that aborted. A grant advances `headSlot` and an abort clears its slot, both O(1): with `indexOf`
   * + `splice` (and `shift()`, which may copy the whole array), a shared deadline aborting 40k waiters
   * blocked the event loop for 1.5 s. Compaction keeps the array within twice the live waiters, and an
   * empty queue is an empty array, so `waiters.length === 0` still says "nobody waits" on the `tryTake`
   * hot path.
   */
  private readonly waiters: Array<Waiter | undefined> = [];
  /** The slot of the first live waiter (the one due next); 0 when the queue is empty. */
  private headSlot = 0;
  /** Live waiters in `waiters`: what `queued` and `maxQueue` count. */
  private live = 0;
  /** Tokens reserved by the waiters still queued (already deducted from `level`). */
  private reserved = 0;
  private timer: LongTimeout | undefined;
  private closed = false;

  static {
    slotsOf = (bucket) => bucket.waiters.length;
  }

  /** @throws {InvalidOptionError} When an option is missing, out of range or unknown. */
  constructor(options: TokenBucketOptions) {
    checkOptionKeys(options, OPTION_KEYS, 'options');
    this.capacity = finiteNumber('capacity', options.capacity, 1);
    this.refillPerMs = refillPerMs('refillRate', options.refillRate);
    const initial = options.initialTokens ?? this.capacity;
    if (typeof initial !== 'number' || !(initial >= 0 && initial <= this.capacity)) {
      throw new InvalidOptionError(
        'initialTokens',
        `a number between 0 and capacity (${this.capacity})`,
        initial,
      );
    }
    this.maxQueue = integer('maxQueue', options.maxQueue ?? 1024, 0, true);
    this.clock = clockOption(options.clock);
    this.keepAlive = booleanOption('keepAlive', options.keepAlive ?? false);
    this.maxCatchUpMs = numberOrInfinity('maxCatchUpMs', options.maxCatchUpMs ?? 20, 0);
    this.spec = Object.freeze({ capacity: this.capacity, refillPerMs: this.refillPerMs });
    this.level = initial;
    this.last = this.clock();
  }

  /** Whole tokens in the bucket now (refilled lazily), not counting those reserved by waiters. */
  get tokens(): number {
    this.refill();
    return Math.max(0, Math.floor(this.level + TOKEN_EPSILON));
  }

  /** How many {@link take} calls are waiting. */
  get queued(): number {
    return this.live;
  }

  /**
   * Takes `n` tokens now if they are there and nobody is waiting ahead. Never waits, never throws for a
   * denial: the decision says when to retry.
   *
   * @throws {InvalidOptionError} When `n` is negative, not a number, or larger than `capacity` (it could
   *   never be granted).
   * @example
   * ```ts
   * const { allowed, retryAfterMs } = bucket.tryTake(2);
   * ```
   */
  tryTake(n = 1): Decision {
    // The negated comparison also rejects NaN; the message is only built on failure.
    if (typeof n !== 'number' || !(n >= 0 && n <= this.capacity)) throw this.invalidCost(n);
    const capacity = this.capacity;
    const rate = this.refillPerMs;
    const now = this.clock();
    let level = this.level;
    // A clock that stands still or steps back (an injected one) adds nothing; it never removes tokens.
    if (now > this.last) {
      if (this.waiters.length > 0) {
        this.refillAt(now);
        level = this.level;
      } else {
        level += (now - this.last) * rate;
        if (level > capacity) level = capacity;
        this.level = level;
        this.last = now;
      }
    }
    if (level + TOKEN_EPSILON >= n && this.waiters.length === 0) {
      level -= n;
      if (level < 0) level = 0;
      this.level = level;
      return {
        allowed: true,
        limit: capacity,
        remaining: Math.floor(level + TOKEN_EPSILON),
        retryAfterMs: 0,
        resetAfterMs: Math.ceil((capacity - level) / rate),
      };
    }
    // `level` already has the waiters' reservations deducted: it says both how long this call waits
    // behind them and when the bucket is full again.
    return {
      allowed: false,
      limit: capacity,
      remaining: level > 0 ? Math.floor(level + TOKEN_EPSILON) : 0,
      retryAfterMs: Math.max(1, Math.ceil((n - level - TOKEN_EPSILON) / rate)),
      resetAfterMs: Math.ceil((capacity - level) / rate),
    };
  }

  /**
   * Resolves when `n` tokens are granted. A call that must wait reserves its tokens at once and is granted
   * when they have refilled, in first come, first served order.
   *
   * @returns The decision at the moment of the grant (`allowed: true`).
   * @throws {RateLimitedError} (rejection, at once) When the wait would exceed `maxWaitMs`.
   * @throws {QueueFullError} (rejection, at once) When `maxQueue` calls are already waiting.
   * @throws {InvalidOptionError} (rejection) When `n` or an option is invalid.
   * @throws {ClosedError} (rejection) When the bucket is closed, before or while waiting.
   * @throws The signal's reason (rejection) When `signal` aborts before the grant.
   * @example
   * ```ts
   * await bucket.take(1, { signal: AbortSignal.timeout(5000), maxWaitMs: 2000 });
   * ```
   */
  take(n = 1, options?: TakeOptions): Promise<Decision> {
    let signal: AbortSignal | undefined;
    let maxWaitMs = Number.POSITIVE_INFINITY;
    try {
      if (typeof n !== 'number' || !(n >= 0 && n <= this.capacity)) throw this.invalidCost(n);
      if (options !== undefined) {
        checkOptionKeys(options, TAKE_KEYS, 'take options');
        signal = signalOption(options.signal);
        if (options.maxWaitMs !== undefined) maxWaitMs = numberOrInfinity('maxWaitMs', options.maxWaitMs, 0);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.closed) return Promise.reject(new ClosedError('TokenBucket'));
    if (signal?.aborted) return Promise.reject(signal.reason);

    const decision = this.tryTake(n);
    if (decision.allowed) return Promise.resolve(decision);
    if (decision.retryAfterMs > maxWaitMs) return Promise.reject(new RateLimitedError(decision.retryAfterMs));
    if (this.live >= this.maxQueue) {
      // The queue has room again once the waiters' debt is paid; with no queue at all (maxQueue 0) that
      // is at once, so the retry that can pass is the one after this call's own wait.
      const retryAfterMs = this.maxQueue === 0 ? decision.retryAfterMs : this.waitMsFor(0);
      return Promise.reject(new QueueFullError(this.maxQueue, retryAfterMs));
    }

    return new Promise<Decision>((resolve, reject) => {
      const waiter: Waiter = { n, resolve, reject, signal, onAbort: undefined, slot: this.waiters.length };
      if (signal !== undefined) {
        waiter.onAbort = () => this.abandon(waiter);
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      // Reserve now (tryTake has just refilled): the grant time follows from the level, and later callers
      // are accounted for behind this one however late the timer fires.
      this.level -= n;
      this.reserved += n;
      this.waiters.push(waiter);
      this.live++;
      if (this.live === 1) this.schedule();
    });
  }

  /**
   * Gives back `n` tokens taken and not used (for example, work admitted and then never sent). The bucket
   * never holds more than `capacity`. Waiters that can now be served are served.
   *
   * @throws {InvalidOptionError} When `n` is negative or not a finite number.
   */
  refund(n: number): void {
    if (!(n >= 0 && Number.isFinite(n))) throw new InvalidOptionError('n', 'a finite number >= 0', n);
    this.refill();
    this.level = Math.min(this.capacity, this.level + n);
    if (this.waiters.length > 0) this.serve();
  }

  /**
   * Rejects every waiter with {@link ClosedError} and clears the timer. Later {@link take} calls reject
   * with `ClosedError`; {@link tryTake} keeps answering (it holds nothing to release). Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.clearTimer();
    const waiters = this.waiters.splice(0);
    this.headSlot = 0;
    this.live = 0;
    // The reservations are cancelled: their tokens go back to the bucket that tryTake still answers from.
    this.refill();
    this.level = Math.min(this.capacity, Math.max(0, this.level + this.reserved));
    this.reserved = 0;
    const error = new ClosedError('TokenBucket');
    for (const waiter of waiters) {
      if (waiter === undefined) continue;
      this.detach(waiter);
      waiter.reject(error);
    }
  }

  /** Ms a new request for `n` tokens would wait now, behind the current waiters (0 when it would pass). */
  waitMsFor(n = 1): number {
    this.refill();
    const missing = n - this.level - TOKEN_EPSILON;
    return missing <= 0 ? 0 : Math.ceil(missing / this.refillPerMs);
  }

  private refill(): void {
    this.refillAt(this.clock());
  }

  /**
   * Adds the refill since the last reading. With waiters queued, refill past the head's due moment plus
   * `maxCatchUpMs` is forfeited: the waiters due in a long stall are not granted all at once when it ends.
   */
  private refillAt(now: number): void {
    if (!(now > this.last)) return;
    let elapsed = now - this.last;
    const head = this.waiters[this.headSlot];
    if (head !== undefined) {
      // The head is due when `level + reserved` reaches its `n`: that many ms after the last reading.
      const dueIn = Math.max(0, (head.n - this.level - this.reserved) / this.refillPerMs);
      if (elapsed > dueIn + this.maxCatchUpMs) elapsed = dueIn + this.maxCatchUpMs;
    }
    this.level = Math.min(this.capacity, this.level + elapsed * this.refillPerMs);
    this.last = now;
  }

  /**
   * Grants every waiter whose reservation is paid off, then arms one timer for the next. The head's debt is
   * paid once the level, with the tokens reserved behind it added back, is >= 0: `level + reserved >= n`.
   * Granting moves nothing out of `level` (it was deducted at reservation).
   */
  private serve(): void {
    this.clearTimer();
    this.refill();
    let head = this.waiters[this.headSlot];
    while (head !== undefined && this.level + this.reserved + TOKEN_EPSILON >= head.n) {
      this.remove(head);
      this.reserved -= head.n;
      if (this.live === 0) this.settleReserved();
      this.detach(head);
      head.resolve({
        allowed: true,
        limit: this.capacity,
        remaining: this.level > 0 ? Math.floor(this.level + TOKEN_EPSILON) : 0,
        retryAfterMs: 0,
        resetAfterMs: Math.ceil((this.capacity - this.level) / this.refillPerMs),
      });
      head = this.waiters[this.headSlot];
    }
    this.schedule();
  }

  /** With the queue empty, drops the float residue of the running sums: no phantom debt is left behind. */
  private settleReserved(): void {
    this.reserved = 0;
    if (this.level < 0) this.level = 0;
  }

  private schedule(): void {
    const head = this.waiters[this.headSlot];
    if (head === undefined || this.timer !== undefined) return;
    // The one timer there is: for the head, the earliest reservation (they are paid off in FIFO order).
    // Timers may fire a little early against performance.now() (libuv's loop time is cached), so serve()
    // re-arms when the debt is not paid yet; a late one only delays grants that are already accounted for.
    const missing = head.n - this.level - this.reserved - TOKEN_EPSILON;
    // A due time past 2^31-1 ms (a slow refill with a long queue) is reached in steps: a plain setTimeout
    // would fire after 1 ms and serve() would re-arm it every ms for weeks.
    const delay = Math.max(1, Math.ceil(missing / this.refillPerMs));
    this.timer = longTimeout(
      () => {
        this.timer = undefined;
        this.serve();
      },
      delay,
      this.keepAlive,
    );
  }

  private clearTimer(): void {
    if (this.timer !== undefined) {
      this.timer.clear();
      this.timer = undefined;
    }
  }

  private abandon(waiter: Waiter): void {
    // Granted, or rejected by close(): its slot is empty or holds a later waiter.
    if (this.waiters[waiter.slot] !== waiter) return;
    const wasHead = waiter.slot === this.headSlot;
    // Refill up to now first, with the queue as it was: the catch-up cap belongs to the head that was
    // waiting all along. Removed first, the waiter behind became the head and its earlier due time, with
    // this waiter's debt still in the level, capped away refill that accrued without any stall.
    this.refill();
    this.remove(waiter);
    // Cancel the reservation: its tokens come back, which pays off the debt of everyone behind it sooner.
    this.reserved -= waiter.n;
    this.level = Math.min(this.capacity, this.level + waiter.n);
    if (this.live === 0) this.settleReserved();
    waiter.reject(waiter.signal?.reason);
    // Those ahead are unaffected (their share of the sum is unchanged); the new head may be paid off now.
    if (wasHead) this.serve();
  }

  /**
   * Takes a queued waiter out in amortised O(1): its slot is cleared (so its promise and signal are not
   * held), `headSlot` skips the cleared slots, and the array is compacted once fewer than half its slots are
   * live. A compaction moves the live waiters, fewer than the slots cleared since the last one, so each
   * removal pays for at most one move.
   */
  private remove(waiter: Waiter): void {
    const waiters = this.waiters;
    waiters[waiter.slot] = undefined;
    this.live--;
    if (this.live === 0) {
      waiters.length = 0;
      this.headSlot = 0;
      return;
    }
    while (waiters[this.headSlot] === undefined) this.headSlot++;
    if (waiters.length > 2 * this.live) {
      let to = 0;
      for (let from = this.headSlot; from < waiters.length; from++) {
        const kept = waiters[from];
        if (kept === undefined) continue;
        kept.slot = to;
        waiters[to++] = kept;
      }
      waiters.length = to;
      this.headSlot = 0;
    }
  }

  private detach(waiter: Waiter): void {
    if (waiter.onAbort !== undefined) {
      waiter.signal?.removeEventListener('abort', waiter.onAbort);
      waiter.onAbort = undefined;
    }
  }

  private invalidCost(n: unknown): InvalidOptionError {
    return new InvalidOptionError('n', `a number between 0 and capacity (${this.capacity})`, n);
  }
}

/**
 * Creates a {@link TokenBucket}.
 *
 * @throws {InvalidOptionError} When an option is missing, out of range or unknown.
 * @example
 * ```ts
 * const bucket = tokenBucket({ capacity: 100, refillRate: { tokens: 100, perMs: 60_000 } });
 * ```
 */
export function tokenBucket(options: TokenBucketOptions): TokenBucket {
  return new TokenBucket(options);
}
