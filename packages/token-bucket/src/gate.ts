import {
  ClosedError,
  InvalidOptionError,
  QueueFullError,
  RateLimitedError,
  StoreUnavailableError,
  TokenBucketError,
} from './errors.js';
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
import type { BucketSpec, LimiterStore } from './store.js';
import { TokenBucket } from './token-bucket.js';

/** Options of {@link Gate} / {@link gate}. */
export interface GateOptions {
  /**
   * The flow limit of the gateway behind the gate: calls (tokens) per second, or `{ tokens, perMs }`.
   * This is the one place an app states it; read it back from {@link Gate.spec} for headers and reports.
   */
  readonly rate: RefillRate;
  /**
   * Tokens that may be spent at once after a quiet spell. 1 spaces calls evenly, so no one-second window
   * sees more than `rate + 1` calls (calls are granted when due, so a timer that fires L ms late lets the
   * ones due meanwhile go together: up to `rate × L` more); raise it only if the gateway tolerates bursts.
   * @default 1
   */
  readonly burst?: number;
  /** The most calls running at once (an integer >= 1, or `Infinity`). */
  readonly concurrency: number;
  /**
   * The most calls waiting (for a slot or a token) at once; the next is shed at once with
   * {@link QueueFullError}. An integer >= 0, or `Infinity`. With a `store`, a call may learn only from the
   * store's answer that it must wait (tokens other processes took are not seen before): it counts from
   * then, or is shed then with its reservation given back.
   */
  readonly maxQueue: number;
  /**
   * The longest a call may wait to start, for a concurrency slot and its token together. A call whose
   * estimated wait is longer is shed at once with {@link RateLimitedError}; a call still waiting for a slot
   * or its token when the budget is spent is rejected then with `RateLimitedError` (it never starts late).
   */
  readonly maxWaitMs: number;
  /**
   * Take the tokens from this store (for example `@floodgate/redis`) instead of a local bucket, so the rate
   * holds for the whole fleet. The store is not closed by {@link Gate.close}.
   */
  readonly store?: LimiterStore;
  /**
   * The bucket's key in `store` (only with `store`): every gate sharing a key shares the rate.
   * @default 'gate'
   */
  readonly key?: string;
  /**
   * A monotonic clock in ms (local bucket, wait budgets and durations).
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
  /**
   * How far behind schedule calls held back by an event-loop stall may be let through together when it
   * ends (`TokenBucketOptions.maxCatchUpMs` of the local bucket; left out with a `store`): the refill of a longer stall is
   * forfeited, so no window sees more than `rate × (1 s + maxCatchUpMs) + burst` calls.
   * @default 20
   */
  readonly maxCatchUpMs?: number;
}

/** Options of one {@link Gate.run} call. */
export interface GateRunOptions {
  /** Aborting while waiting gives the place back and rejects with `signal.reason`; while running, it aborts the signal given to `fn`. */
  readonly signal?: AbortSignal;
  /**
   * Tokens this call spends, between 0 and `burst`.
   * @default 1
   */
  readonly cost?: number;
}

/** A snapshot of a gate, for metrics and dashboards. */
export interface GateStats {
  /** Calls running now. */
  readonly active: number;
  /** Calls admitted and waiting for a slot or a token. */
  readonly queued: number;
  /** The rate, in tokens per second. */
  readonly rate: number;
  /** The bucket size: calls that may start back to back. */
  readonly burst: number;
  /** The most calls running at once (the `concurrency` option). */
  readonly concurrency: number;
  /** The most calls waiting at once; the next is shed with `QueueFullError`. */
  readonly maxQueue: number;
  /** The longest a call may wait to start, in ms; longer is shed with `RateLimitedError`. */
  readonly maxWaitMs: number;
  /** What a new call of cost 1 would wait now (see {@link Gate.estimatedWaitMs}). */
  readonly estimatedWaitMs: number;
  /** Calls that started. */
  readonly started: number;
  /** Calls whose `fn` settled (fulfilled or rejected). */
  readonly completed: number;
  /** Calls whose `fn` rejected. */
  readonly failed: number;
  /** Calls shed with {@link QueueFullError}. */
  readonly shedQueueFull: number;
  /** Calls shed (or rejected later) with {@link RateLimitedError}. */
  readonly shedRateLimited: number;
}

interface Call {
  readonly cost: number;
  readonly signal: AbortSignal | undefined;
  readonly admittedAt: number;
  /** Set when the call left the queue: started, aborted, or closed. */
  settled: boolean;
  /** True until the call gets its concurrency slot. */
  waitingForSlot: boolean;
  /** True while the call counts against `maxQueue` (it could not start at once). */
  queued: boolean;
  reject: (reason: unknown) => void;
  controller: AbortController | undefined;
  /** Runs the call once it holds a slot: its token, then `fn`. Settles without throwing. */
  task: () => Promise<void>;
  onAbort: (() => void) | undefined;
}

const OPTION_KEYS = [
  'rate',
  'burst',
  'concurrency',
  'maxQueue',
  'maxWaitMs',
  'store',
  'key',
  'clock',
  'keepAlive',
  'maxCatchUpMs',
] as const;
const RUN_KEYS = ['signal', 'cost'] as const;
/** Weight of the newest duration in the moving average used to estimate slot waits. */
const DURATION_WEIGHT = 0.2;

/**
 * Admission for calls to one flow-limited gateway: a token bucket (the rate) and a concurrency cap
 * together, a bounded queue, and a maximum wait. Calls beyond what the gateway can take within
 * `maxWaitMs` are shed at once with a typed error carrying `retryAfterMs`, instead of piling up.
 *
 * A call first waits for a concurrency slot, then for its token, so it is sent the moment its token is
 * granted: tokens never pile up behind busy slots and then leave together, and the gateway never sees
 * more than the bucket allows.
 *
 * @example
 * ```ts
 * const bank = gate({ rate: 50, concurrency: 20, maxQueue: 500, maxWaitMs: 2000 });
 * const receipt = await bank.run((signal) => fetch(url, { method: 'POST', body, signal }));
 * ```
 */
export class Gate {
  /** The rate limit as a {@link BucketSpec} (capacity = burst), for RateLimit headers and reports. */
  readonly spec: BucketSpec;
  /** The most calls running at once. */
  readonly concurrency: number;
  /** The most calls waiting at once. */
  readonly maxQueue: number;
  /** The longest a call may wait to start, in ms. */
  readonly maxWaitMs: number;

  private readonly clock: Clock;
  private readonly keepAlive: boolean;
  private readonly bucket: TokenBucket | undefined;
  private readonly store: LimiterStore | undefined;
  private readonly key: string;
  /**
   * The concurrency cap: slots taken and the calls waiting for one, in arrival order. Written here rather
   * than with p-limit, which cannot take one queued task out: a call aborted while waiting for a slot
   * stayed in its queue, holding its closures, until a slot reached it. Measured: 200,000 such aborts
   * behind one hung call grew the heap by 572 MB (about 2.9 kB each) while `maxQueue` was 10. A Set
   * drops an aborted or expired waiter at once and keeps the FIFO order.
   */
  private slotsTaken = 0;
  private readonly slotQueue = new Set<Call>();
  /** One unref'd timer for the earliest `maxWaitMs` deadline of the calls waiting for a slot. */
  private slotDeadline: LongTimeout | undefined;
  private readonly waiting = new Set<Call>();
  /** Calls waiting for a slot, and the tokens they will want (they are not in the bucket's queue yet). */
  private slotWaiters = 0;
  private slotWaitCost = 0;
  /** Admitted calls that could not start at once and have not started yet: what `maxQueue` bounds. */
  private queuedCount = 0;
  /** Tokens wanted by store-backed calls waiting for their token. */
  private storeWaitCost = 0;
  private readonly running = new Set<Call>();
  private readonly settledRuns = new Set<Promise<unknown>>();
  private averageDurationMs: number | undefined;
  private counters = { started: 0, completed: 0, failed: 0, shedQueueFull: 0, shedRateLimited: 0 };
  private closed = false;

  /** @throws {InvalidOptionError} When an option is missing, out of range or unknown. */
  constructor(options: GateOptions) {
    checkOptionKeys(options, OPTION_KEYS, 'options');
    const perMs = refillPerMs('rate', options.rate);
    const burst = finiteNumber('burst', options.burst ?? 1, 1);
    this.spec = Object.freeze({ capacity: burst, refillPerMs: perMs });
    this.concurrency = integer('concurrency', options.concurrency, 1, true);
    this.maxQueue = integer('maxQueue', options.maxQueue, 0, true);
    this.maxWaitMs = numberOrInfinity('maxWaitMs', options.maxWaitMs, 0);
    this.clock = clockOption(options.clock);
    this.keepAlive = booleanOption('keepAlive', options.keepAlive ?? false);
    if (options.store === undefined) {
      if (options.key !== undefined) {
        throw new InvalidOptionError('key', 'left out unless a `store` is given', options.key);
      }
      this.bucket = new TokenBucket({
        capacity: burst,
        refillRate: { tokens: perMs, perMs: 1 },
        clock: this.clock,
        maxQueue: Number.POSITIVE_INFINITY, // the gate bounds its own queue
        keepAlive: this.keepAlive,
        ...(options.maxCatchUpMs === undefined ? {} : { maxCatchUpMs: options.maxCatchUpMs }),
      });
      this.key = 'gate';
    } else {
      const { store } = options;
      if (typeof store !== 'object' || store === null || typeof store.consume !== 'function') {
        throw new InvalidOptionError('store', 'a LimiterStore (consume, refund, close)', store);
      }
      if (options.maxCatchUpMs !== undefined) {
        throw new InvalidOptionError(
          'maxCatchUpMs',
          'left out when a `store` is given (it applies to the local bucket)',
          options.maxCatchUpMs,
        );
      }
      if (options.key !== undefined && (typeof options.key !== 'string' || options.key.length === 0)) {
        throw new InvalidOptionError('key', 'a non-empty string', options.key);
      }
      this.store = store;
      this.key = options.key ?? 'gate';
    }
  }

  /** Calls running now. */
  get active(): number {
    return this.running.size;
  }

  /** Calls admitted and waiting for a slot or a token. */
  get queued(): number {
    return this.queuedCount;
  }

  /**
   * Runs `fn` once a concurrency slot and a token are both free, or sheds the call at once.
   *
   * @param fn Receives a signal that aborts when the caller's signal aborts or the gate closes.
   * @returns What `fn` returns.
   * @throws {QueueFullError} (rejection, at once) When `maxQueue` calls are already waiting; with a
   *   store, also once the store's answer makes the call wait while the queue is full.
   * @throws {RateLimitedError} (rejection) At once when the estimated wait exceeds `maxWaitMs`; later if
   *   the call's token still cannot come within what is left of `maxWaitMs` once it has a slot.
   * @throws {StoreUnavailableError} (rejection) When the store fails.
   * @throws {ClosedError} (rejection) When the gate is closed, before or while waiting.
   * @throws {InvalidOptionError} (rejection) When `cost` or an option is invalid.
   * @throws The signal's reason (rejection) When `signal` aborts while waiting.
   * @example
   * ```ts
   * try {
   *   await bank.run((signal) => pay(intent, { signal }), { signal: request.signal });
   * } catch (error) {
   *   if (error.code === 'ERR_QUEUE_FULL' || error.code === 'ERR_RATE_LIMITED') reply503(error.retryAfterMs);
   * }
   * ```
   */
  run<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: GateRunOptions): Promise<T> {
    let cost = 1;
    let signal: AbortSignal | undefined;
    try {
      if (typeof fn !== 'function') throw new InvalidOptionError('fn', 'a function', fn);
      if (options !== undefined) {
        checkOptionKeys(options, RUN_KEYS, 'run options');
        signal = signalOption(options.signal);
        if (options.cost !== undefined) cost = options.cost;
      }
      if (typeof cost !== 'number' || !(cost >= 0 && cost <= this.spec.capacity)) {
        throw new InvalidOptionError('cost', `a number between 0 and burst (${this.spec.capacity})`, cost);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.closed) return Promise.reject(new ClosedError('Gate'));
    if (signal?.aborted === true) return Promise.reject(signal.reason);

    const waitMs = this.estimatedWaitMs(cost);
    const mustWait = waitMs > 0 || this.slotsBusy();
    if (mustWait && this.queuedCount >= this.maxQueue) {
      this.counters.shedQueueFull++;
      return Promise.reject(new QueueFullError(this.maxQueue, Math.max(1, waitMs)));
    }
    if (waitMs > this.maxWaitMs) {
      this.counters.shedRateLimited++;
      return Promise.reject(new RateLimitedError(waitMs));
    }

    return new Promise<T>((resolve, reject) => {
      const call: Call = {
        cost,
        signal,
        admittedAt: this.clock(),
        settled: false,
        waitingForSlot: true,
        queued: mustWait,
        reject,
        controller: undefined,
        task: async () => {
          if (call.settled) return;
          this.leaveSlotQueue(call);
          try {
            await this.acquireToken(call);
          } catch (error) {
            // A call that left while the store decided (aborted, closed) was not shed: it is not counted.
            if (error instanceof RateLimitedError && !call.settled) this.counters.shedRateLimited++;
            this.leave(call, error);
            return;
          }
          this.detachAbort(call);
          // Aborted or closed between its grant and now (a call that started first cancelled it): the
          // token goes back unused, as it does for a call that leaves while waiting.
          if (call.settled) return this.giveBack(call.cost);
          await this.execute(call, fn, resolve, reject);
        },
        onAbort: undefined,
      };
      this.waiting.add(call);
      if (mustWait) this.queuedCount++;
      this.slotWaiters++;
      this.slotWaitCost += cost;
      if (signal !== undefined) {
        call.onAbort = () => this.leave(call, signal.reason);
        signal.addEventListener('abort', call.onAbort, { once: true });
      }
      if (this.slotQueue.size === 0 && this.slotsTaken < this.concurrency) {
        this.runInSlot(call);
      } else {
        this.slotQueue.add(call);
        this.armSlotDeadline();
      }
    });
  }

  /**
   * What a new call of `cost` would wait now before it starts: for its token behind everyone already
   * waiting, and, once durations are known, for a slot. Cheap (no I/O), for load shedding at the edge.
   * With a store, the tokens other processes take are not seen, so this is a lower bound.
   */
  estimatedWaitMs(cost = 1): number {
    const perMs = this.spec.refillPerMs;
    let tokenWait: number;
    if (this.bucket !== undefined) {
      tokenWait = this.bucket.waitMsFor(this.slotWaitCost + cost);
    } else {
      const ahead = this.slotWaitCost + this.storeWaitCost;
      tokenWait = ahead > 0 ? Math.ceil(ahead / perMs) : 0;
    }
    let slotWait = 0;
    const average = this.averageDurationMs;
    if (average !== undefined && this.running.size >= this.concurrency) {
      const slotsAhead = this.slotWaiters + 1;
      slotWait = Math.ceil(Math.ceil(slotsAhead / this.concurrency) * average);
    }
    return Math.max(tokenWait, slotWait);
  }

  /** Whether a call of `cost` made now would be shed at once (queue full or estimated wait too long). */
  wouldShed(cost = 1): boolean {
    if (this.closed) return true;
    const waitMs = this.estimatedWaitMs(cost);
    if (this.queuedCount >= this.maxQueue && (waitMs > 0 || this.slotsBusy())) return true;
    return waitMs > this.maxWaitMs;
  }

  /** A snapshot of the gate's state and counters. */
  stats(): GateStats {
    return {
      active: this.running.size,
      queued: this.queuedCount,
      rate: this.spec.refillPerMs * 1000,
      burst: this.spec.capacity,
      concurrency: this.concurrency,
      maxQueue: this.maxQueue,
      maxWaitMs: this.maxWaitMs,
      estimatedWaitMs: this.estimatedWaitMs(1),
      ...this.counters,
    };
  }

  /**
   * Rejects every waiting call with {@link ClosedError}, aborts the signal of every running `fn`, and
   * resolves once the running calls have settled. Later calls reject with `ClosedError`. Idempotent.
   */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      const error = new ClosedError('Gate');
      for (const call of [...this.waiting]) this.leave(call, error);
      this.clearSlotDeadline();
      this.bucket?.close();
      for (const call of this.running) call.controller?.abort(error);
    }
    await Promise.allSettled([...this.settledRuns]);
  }

  /** Whether a new call would have to wait for a slot. */
  private slotsBusy(): boolean {
    return this.slotWaiters > 0 || this.slotsTaken >= this.concurrency;
  }

  /** Runs a call in a slot, and passes the slot on when it is done. */
  private runInSlot(call: Call): void {
    this.slotsTaken++;
    void call.task().then(this.releaseSlot, this.releaseSlot);
  }

  private readonly releaseSlot = (): void => {
    this.slotsTaken--;
    const now = this.clock();
    for (const next of this.slotQueue) {
      if (this.slotsTaken >= this.concurrency) break;
      this.slotQueue.delete(next);
      // Never start a call whose wait budget is spent (its deadline timer may not have run yet).
      if (now - next.admittedAt > this.maxWaitMs) this.expire(next);
      else this.runInSlot(next);
    }
    if (this.slotQueue.size === 0) this.clearSlotDeadline();
  };

  /** Arms the one deadline timer for the head of the slot queue (the earliest admitted), if not armed. */
  private armSlotDeadline(): void {
    if (this.slotDeadline !== undefined || this.maxWaitMs === Number.POSITIVE_INFINITY) return;
    const head = this.slotQueue.values().next().value;
    if (head === undefined) return;
    const ms = Math.ceil(head.admittedAt + this.maxWaitMs - this.clock());
    // Unref'd whatever `keepAlive` says: a deadline is no work of its own to keep a process alive for.
    this.slotDeadline = longTimeout(this.onSlotDeadline, ms, false);
  }

  private readonly onSlotDeadline = (): void => {
    this.slotDeadline = undefined;
    const now = this.clock();
    // Arrival order is deadline order (one maxWaitMs for all), so the expired calls are at the front.
    for (const call of this.slotQueue) {
      if (now - call.admittedAt < this.maxWaitMs) break;
      this.slotQueue.delete(call);
      this.expire(call);
    }
    this.armSlotDeadline();
  };

  private clearSlotDeadline(): void {
    this.slotDeadline?.clear();
    this.slotDeadline = undefined;
  }

  /** Rejects a call that waited for a slot for all of `maxWaitMs`. */
  private expire(call: Call): void {
    this.counters.shedRateLimited++;
    this.leave(call, new RateLimitedError(Math.max(1, this.estimatedWaitMs(call.cost))));
  }

  private detachAbort(call: Call): void {
    if (call.onAbort !== undefined) {
      call.signal?.removeEventListener('abort', call.onAbort);
      call.onAbort = undefined;
    }
  }

  private dequeue(call: Call): void {
    this.waiting.delete(call);
    if (call.queued) {
      call.queued = false;
      this.queuedCount--;
    }
  }

  private leaveSlotQueue(call: Call): void {
    if (!call.waitingForSlot) return;
    call.waitingForSlot = false;
    this.slotWaiters--;
    this.slotWaitCost -= call.cost;
    // Float residue of the running sum must not leave a phantom wait behind an empty queue.
    if (this.slotWaiters === 0) this.slotWaitCost = 0;
  }

  private async acquireToken(call: Call): Promise<void> {
    const remaining = Math.max(0, this.maxWaitMs - (this.clock() - call.admittedAt));
    if (this.bucket !== undefined) {
      await this.bucket.take(
        call.cost,
        call.signal === undefined ? { maxWaitMs: remaining } : { maxWaitMs: remaining, signal: call.signal },
      );
      return;
    }
    const store = this.store as LimiterStore;
    this.storeWaitCost += call.cost;
    try {
      let decision: Awaited<ReturnType<LimiterStore['consume']>>;
      try {
        decision = await store.consume(this.key, call.cost, this.spec, { maxWaitMs: remaining });
      } catch (error) {
        throw error instanceof TokenBucketError
          ? error
          : new StoreUnavailableError('The limiter store failed to consume', { cause: error });
      }
      if (!decision.allowed) throw new RateLimitedError(decision.retryAfterMs);
      if (decision.waitMs > 0 || call.settled) {
        try {
          if (call.settled) throw new ClosedError('Gate');
          if (!call.queued) {
            // Admitted as not waiting (the estimate does not see the tokens other processes took), it
            // waits now: it counts against maxQueue from here, or is shed if the queue is full.
            if (this.queuedCount >= this.maxQueue) {
              this.counters.shedQueueFull++;
              throw new QueueFullError(this.maxQueue, decision.waitMs);
            }
            call.queued = true;
            this.queuedCount++;
          }
          await this.sleep(decision.waitMs, call);
        } catch (error) {
          await this.giveBack(call.cost);
          throw error;
        }
      }
    } finally {
      this.storeWaitCost -= call.cost;
    }
  }

  /** Gives back the tokens of a call that will not run. */
  private async giveBack(cost: number): Promise<void> {
    if (this.bucket !== undefined) {
      this.bucket.refund(cost);
      return;
    }
    try {
      await (this.store as LimiterStore).refund(this.key, cost, this.spec);
    } catch {
      // Best effort: a lost refund only makes the rate stricter for a moment.
    }
  }

  /** Sleeps through a store reservation; wakes early (rejecting) when the call is aborted or the gate closes. */
  private sleep(ms: number, call: Call): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const previous = call.reject;
      // In steps of at most 2^31-1 ms: a longer setTimeout fires after 1 ms (with `maxWaitMs: Infinity` a
      // store reservation may be weeks away).
      const timer = longTimeout(
        () => {
          call.reject = previous;
          resolve();
        },
        ms,
        this.keepAlive,
      );
      call.reject = (reason) => {
        timer.clear();
        call.reject = previous;
        reject(reason);
        previous(reason);
      };
    });
  }

  private async execute<T>(
    call: Call,
    fn: (signal: AbortSignal) => T | PromiseLike<T>,
    resolve: (value: T) => void,
    reject: (reason: unknown) => void,
  ): Promise<void> {
    this.dequeue(call);
    call.settled = true;
    const controller = new AbortController();
    call.controller = controller;
    const { signal } = call;
    const forward = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', forward, { once: true });
    this.running.add(call);
    this.counters.started++;
    const startedAt = this.clock();
    const outcome = (async () => fn(controller.signal))();
    this.settledRuns.add(outcome);
    try {
      resolve(await outcome);
    } catch (error) {
      this.counters.failed++;
      reject(error);
    } finally {
      this.settledRuns.delete(outcome);
      signal?.removeEventListener('abort', forward);
      this.running.delete(call);
      this.counters.completed++;
      const duration = Math.max(0, this.clock() - startedAt);
      this.averageDurationMs =
        this.averageDurationMs === undefined
          ? duration
          : this.averageDurationMs + DURATION_WEIGHT * (duration - this.averageDurationMs);
    }
  }

  /** Takes a waiting call out of the queue and rejects it. */
  private leave(call: Call, reason: unknown): void {
    if (call.settled) return;
    call.settled = true;
    this.dequeue(call);
    this.leaveSlotQueue(call);
    this.detachAbort(call);
    if (this.slotQueue.delete(call) && this.slotQueue.size === 0) this.clearSlotDeadline();
    call.reject(reason);
  }
}

/**
 * Creates a {@link Gate}.
 *
 * @throws {InvalidOptionError} When an option is missing, out of range or unknown.
 * @example
 * ```ts
 * const bank = gate({ rate: 50, concurrency: 20, maxQueue: 500, maxWaitMs: 2000 });
 * ```
 */
export function gate(options: GateOptions): Gate {
  return new Gate(options);
}
