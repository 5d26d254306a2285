import { EventEmitter } from 'node:events';
import type { CallContext } from './call.js';
import { Call } from './call.js';
import { retryAfterOf } from './classify.js';
import {
  CircuitOpenError,
  CircuitShutdownError,
  CircuitTimeoutError,
  InvalidClassificationError,
  InvalidOptionError,
} from './errors.js';
import type { LatencyPercentiles } from './latency-histogram.js';
import { LatencyHistogram } from './latency-histogram.js';
import type { CircuitBreakerOptions, ResolvedOptions } from './options.js';
import { resolveOptions } from './options.js';
import { RollingCounters } from './rolling-counters.js';
import { StateEngine } from './state-engine.js';

/** The breaker's state. */
export type CircuitState = 'closed' | 'open' | 'half-open';

/** Why the breaker opened. */
export type OpenReason =
  | 'failure-rate'
  | 'slow-call-rate'
  | 'half-open-failure'
  | 'half-open-slow'
  | 'throttled'
  | 'manual';

/** Why the breaker changed state. */
export type TransitionReason = OpenReason | 'reset-timeout' | 'half-open-success' | 'manual-reset';

/** Payload of the `stateChange` event (also of `open`, `halfOpen` and `close`). */
export interface StateChange {
  /** The breaker's `name`. */
  readonly name: string;
  /** The state it left. */
  readonly from: CircuitState;
  /** The state it entered. */
  readonly to: CircuitState;
  /** Why it changed state. */
  readonly reason: TransitionReason;
  /** When `to` is `open`: ms it will stay open (backoff, jitter and any `Retry-After` hold applied). */
  readonly openForMs: number;
  /** Failure rate (%) of the window when the breaker opened from closed; otherwise 0. */
  readonly failureRate: number;
  /** Slow-call rate (%) of the window when the breaker opened from closed; otherwise 0. */
  readonly slowCallRate: number;
}

/** Options of one `execute()` call. */
export interface ExecuteOptions<T> {
  /** The caller's signal: aborting it aborts this call's `ctx.signal` (the breaker does not reject on it: the function decides). A rejection that arrives after it aborted is `ignored`, unless it aborted more than `slowCallDurationMs` after the call started. Already aborted: the call is refused with its reason. */
  readonly signal?: AbortSignal | undefined;
  /** This call's timeout instead of the breaker's `timeoutMs` (`false`: none). */
  readonly timeoutMs?: number | false | undefined;
  /** Called instead of failing when the call is refused (open), times out, or fails with a `failure` or `throttled` outcome. */
  readonly fallback?: ((error: unknown) => T | PromiseLike<T>) | undefined;
}

/** Counters since the breaker was created (monotonic: export them as counters). */
export interface CircuitBreakerTotals {
  /** Calls that ran the wrapped function. */
  readonly calls: number;
  /** `success` outcomes. */
  readonly successes: number;
  /** `failure` outcomes, timeouts not included. */
  readonly failures: number;
  /** Calls that exceeded `timeoutMs`. */
  readonly timeouts: number;
  /** `throttled` outcomes (429, or 503 with `Retry-After`). */
  readonly throttled: number;
  /** `ignored` outcomes, counted neither for nor against the gateway (nothing sent, a 409). */
  readonly ignored: number;
  /** Calls slower than `slowCallDurationMs` (also counted under their outcome). */
  readonly slow: number;
  /** Calls refused because the breaker was open (or half-open with every probe slot taken). */
  readonly rejected: number;
  /** Calls a fallback answered instead of failing. */
  readonly fallbacks: number;
  /** Times the breaker opened. */
  readonly opened: number;
}

/** The counted calls of the rolling window since the breaker last closed: what the rules decide on. */
export interface CircuitBreakerWindow {
  /** `success` outcomes in the window. */
  readonly successes: number;
  /** `failure` outcomes in the window, timeouts not included. */
  readonly failures: number;
  /** Timeouts in the window. */
  readonly timeouts: number;
  /** `throttled` outcomes in the window. */
  readonly throttled: number;
  /** Calls in the window slower than `slowCallDurationMs`. */
  readonly slow: number;
  /** successes + failures + timeouts + throttled (`ignored` outcomes are not counted). */
  readonly calls: number;
  /** (failures + timeouts + throttled) / calls, in %; 0 when there are no calls. */
  readonly failureRate: number;
  /** slow / calls, in %. */
  readonly slowCallRate: number;
}

/** A snapshot for an exporter (OpenTelemetry observable gauges/counters, prom-client collect()). */
export interface CircuitBreakerStats {
  /** The breaker's `name`. */
  readonly name: string;
  /** The state now. */
  readonly state: CircuitState;
  /** Calls running the wrapped function right now. */
  readonly inFlight: number;
  /** Ms until a call is let through again; 0 when one would be now (see `CircuitBreaker.retryAfterMs`). */
  readonly retryAfterMs: number;
  /** Openings in a row without a close (drives the backoff); 0 when closed. */
  readonly consecutiveOpens: number;
  /** The rolling window the opening rules decide on. */
  readonly window: CircuitBreakerWindow;
  /** Counters since the breaker was created. */
  readonly totals: CircuitBreakerTotals;
  /** Latency percentiles of the window, in ms; only with the `latencyPercentiles` option. */
  readonly latency?: LatencyPercentiles;
}

/** The breaker's events and their arguments. */
export interface CircuitBreakerEvents {
  /** Every transition; also emitted as `open`, `halfOpen` or `close`. */
  stateChange: [change: StateChange];
  /** The breaker opened: calls are refused for `change.openForMs`. */
  open: [change: StateChange];
  /** The breaker turned half-open: probe calls are let through. */
  halfOpen: [change: StateChange];
  /** The breaker closed: calls flow again. */
  close: [change: StateChange];
  /** A `success` outcome: `value` is the result, or the error (a 402 decline counts as healthy). */
  success: [value: unknown, latencyMs: number];
  /** A `failure` outcome: what the call threw, or its result classified as a failure. */
  failure: [error: unknown, latencyMs: number];
  /** A call exceeded `timeoutMs`; its `ctx.signal` was aborted with `error`. */
  timeout: [error: CircuitTimeoutError, latencyMs: number];
  /** A `throttled` outcome, with the wait the gateway asked for, in ms. */
  throttled: [value: unknown, latencyMs: number, retryAfterMs: number];
  /** An `ignored` outcome, counted neither for nor against the gateway. */
  ignored: [value: unknown, latencyMs: number];
  /** A call slower than `slowCallDurationMs`, after its outcome event. */
  slow: [latencyMs: number];
  /** A call refused because the breaker is open. */
  reject: [error: CircuitOpenError];
  /** A fallback ran instead of failing the call. */
  fallback: [error: unknown];
  /** `close()` was called. */
  shutdown: [];
}

const CLOSED = 0;
const OPEN = 1;
const HALF_OPEN = 2;
type StateCode = typeof CLOSED | typeof OPEN | typeof HALF_OPEN;
const STATE_NAMES: readonly CircuitState[] = ['closed', 'open', 'half-open'];

// Outcome codes (internal): failure and timeout both count as failures of the gateway.
const K_SUCCESS = 0;
const K_FAILURE = 1;
const K_TIMEOUT = 2;
const K_THROTTLED = 3;
const K_IGNORED = 4;
type KindCode = 0 | 1 | 2 | 3 | 4;
// Columns of the rolling window.
const W_SLOW = 4;
const W_WIDTH = 5;

/**
 * A circuit breaker for a gateway: it stops calling a gateway that is failing or slowing down, lets a
 * few probes through after a (jittered, backed-off) pause, and closes again when they succeed.
 *
 * Built on opossum: opossum's CircuitBreaker is the state engine and owns the open timer; floodgate keeps
 * the window, the classification, the half-open admission and the per-call cancellation (see
 * state-engine.ts for why those are not opossum's).
 *
 * @example
 * ```ts
 * const breaker = circuitBreaker({ name: 'bank', timeoutMs: 5_000, slowCallDurationMs: 2_000 });
 * const payment = await breaker.execute(({ signal }) => fetch(url, { method: 'POST', body, signal }));
 * ```
 */
export class CircuitBreaker<
  TArgs extends unknown[] = unknown[],
  TResult = unknown,
> extends EventEmitter<CircuitBreakerEvents> {
  /** The breaker's `name` option. */
  readonly name: string;
  readonly #o: ResolvedOptions;
  readonly #action: ((...args: TArgs) => TResult | PromiseLike<TResult>) | undefined;
  readonly #engine: StateEngine;
  readonly #window: RollingCounters;
  readonly #latency: LatencyHistogram | undefined;
  readonly #openMessage: string;
  readonly #halfOpenMessage: string;

  #state: StateCode = CLOSED;
  #shutdown = false;
  /** Bumped on every transition; an outcome only counts towards the state it was admitted in. */
  #epoch = 0;
  #openUntil = 0;
  /** Latest end of a `Retry-After` hold asked for while closed (applied if the breaker opens). */
  #holdUntil = Number.NEGATIVE_INFINITY;
  #consecutiveOpens = 0;
  #probesAdmitted = 0;
  /** When the probes admitted in this half-open spell will all have answered or timed out (estimate). */
  #probesDueBy = 0;
  /** Whether a probe without a timeout was admitted in this half-open spell (its due time is a guess). */
  #untimedProbe = false;
  #probeSuccesses = 0;
  #probeFailures = 0;
  #inFlight = 0;
  /** The refusal shared by calls refused with the same state and retryAfterMs. */
  #refusal: { state: StateCode; error: CircuitOpenError; promise: Promise<never> } | undefined = undefined;

  // Calls with the breaker's own timeout start in clock order and share one deadline length, so their
  // deadlines are in FIFO order: one unref'd timer armed for the oldest one serves them all. opossum
  // creates a timer per call, which is not unref'd: a call that never settles keeps the process alive.
  #timedHead: Call | undefined = undefined;
  #timedTail: Call | undefined = undefined;
  // Calls with their own timeout (each has its own unref'd timer) or none: listed so close() finds them.
  #otherHead: Call | undefined = undefined;
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;

  /** The `classify` bugs reported so far (see #classifyBugFound for why once each); made on the first. */
  #reportedClassifyBugs: Set<string> | undefined = undefined;

  #calls = 0;
  #successes = 0;
  #failures = 0;
  #timeouts = 0;
  #throttled = 0;
  #ignored = 0;
  #slow = 0;
  #rejected = 0;
  #fallbacks = 0;
  #opened = 0;

  /**
   * @param action The function `fire(...args)` calls; omit it (pass only options) for an `execute()`-only breaker.
   * @throws {InvalidOptionError} when an option is unknown or out of range.
   */
  constructor(
    action: (...args: TArgs) => TResult | PromiseLike<TResult>,
    options?: CircuitBreakerOptions<TArgs, TResult>,
  );
  constructor(options?: CircuitBreakerOptions<TArgs, TResult>);
  constructor(
    actionOrOptions?:
      | ((...args: TArgs) => TResult | PromiseLike<TResult>)
      | CircuitBreakerOptions<TArgs, TResult>,
    maybeOptions?: CircuitBreakerOptions<TArgs, TResult>,
  ) {
    super();
    let action: ((...args: TArgs) => TResult | PromiseLike<TResult>) | undefined;
    let options: unknown;
    if (typeof actionOrOptions === 'function') {
      action = actionOrOptions;
      options = maybeOptions;
    } else {
      options = actionOrOptions;
      if (maybeOptions !== undefined) {
        // Options in both places: one would be dropped without a word.
        if (actionOrOptions !== undefined) {
          throw new InvalidOptionError(
            'action',
            'a function, or undefined when options come second',
            actionOrOptions,
          );
        }
        options = maybeOptions;
      }
    }
    const o = resolveOptions(options, action?.name || 'circuit');
    this.#o = o;
    this.#action = action;
    this.name = o.name;
    this.#window = new RollingCounters(o.windowMs, o.windowBuckets, W_WIDTH);
    this.#latency = o.latencyPercentiles ? new LatencyHistogram(o.windowMs, o.windowBuckets) : undefined;
    this.#openMessage = `Circuit \`${o.name}\` is open`;
    this.#halfOpenMessage = `Circuit \`${o.name}\` is half-open and its probes are in flight`;
    this.#engine = new StateEngine(o.name, () => this.#onResetTimeout());
  }

  /** `closed`, `open` or `half-open`. */
  get state(): CircuitState {
    return STATE_NAMES[this.#state] as CircuitState;
  }

  /** Calls running the wrapped function right now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Ms until the breaker lets a call through again; 0 when a call made now would be let through
   * (closed, or half-open with a free probe slot). Cheap: read it to shed load before queueing work
   * (e.g. answer 503 with `Retry-After` at once).
   */
  get retryAfterMs(): number {
    if (this.#state === CLOSED) return 0;
    if (this.#state === HALF_OPEN && this.#probesAdmitted < this.#o.halfOpenMaxCalls) return 0;
    return this.#refusalDelay(this.#o.clock());
  }

  /** True once `close()` was called. */
  get isShutdown(): boolean {
    return this.#shutdown;
  }

  /**
   * Calls the action with `args` through the breaker (opossum-style). The action gets no signal: use
   * `execute()` when it should be cancellable.
   *
   * @returns the action's result, or the `fallback` option's when the call is refused or fails.
   * @throws {CircuitOpenError} (rejects) when open; {@link CircuitTimeoutError} after `timeoutMs`;
   *   {@link CircuitShutdownError} after `close()`; {@link InvalidOptionError} (option `action`) when the
   *   breaker was created without an action; otherwise whatever the action threw.
   */
  fire(...args: TArgs): Promise<TResult> {
    if (this.#action === undefined) {
      return Promise.reject(
        new InvalidOptionError(
          'action',
          'a function given to circuitBreaker(action, options) to call fire(); without one use execute(fn)',
          undefined,
        ),
      );
    }
    return this.#admit(undefined, args, undefined, this.#o.fallback, this.#o.timeoutMs) as Promise<TResult>;
  }

  /**
   * Runs `fn` through the breaker (cockatiel-style), handing it a context with its own `signal`.
   *
   * @example
   * ```ts
   * const res = await breaker.execute(({ signal }) => request(url, { signal }), { signal: req.signal });
   * ```
   * @throws {CircuitOpenError} (rejects) when open; {@link CircuitTimeoutError} after the timeout;
   *   {@link CircuitShutdownError} after `close()`; the caller signal's reason when it was already
   *   aborted; otherwise whatever `fn` threw.
   * @throws {InvalidOptionError} (rejects) when `fn` is not a function or `options` is not an object of
   *   known options with valid values (`signal` an AbortSignal, `timeoutMs`, `fallback` a function). A
   *   caller's mistake is refused before admission: nothing is counted and the breaker's state is not
   *   touched.
   */
  execute<T>(fn: (ctx: CallContext) => T | PromiseLike<T>, options?: ExecuteOptions<T>): Promise<T> {
    // One typeof on the common path; the options, when given, are checked in full.
    if (typeof fn !== 'function') {
      return Promise.reject(new InvalidOptionError('fn', 'a function', fn));
    }
    if (options === undefined)
      return this.#admit(fn, undefined, undefined, undefined, this.#o.timeoutMs) as Promise<T>;
    const invalid = invalidExecuteOption(options);
    if (invalid !== undefined) return Promise.reject(invalid);
    let timeoutMs = this.#o.timeoutMs;
    if (options.timeoutMs !== undefined) {
      timeoutMs = timeoutOf(options.timeoutMs);
      if (Number.isNaN(timeoutMs)) {
        return Promise.reject(
          new InvalidOptionError(
            'timeoutMs',
            '`false` or a number between 1 and 2147483647',
            options.timeoutMs,
          ),
        );
      }
    }
    return this.#admit(fn, undefined, options.signal, options.fallback, timeoutMs) as Promise<T>;
  }

  /**
   * Opens the breaker now, e.g. from a health check or an operator: for `openForMs` (capped at
   * 2147483647), or by default for the computed backoff. A no-op after `close()`.
   * @throws {InvalidOptionError} when `openForMs` is not a finite number >= 0.
   */
  trip(openForMs?: number): void {
    if (
      openForMs !== undefined &&
      !(typeof openForMs === 'number' && openForMs >= 0 && Number.isFinite(openForMs))
    ) {
      throw new InvalidOptionError('openForMs', 'a finite number >= 0', openForMs);
    }
    if (this.#shutdown) return;
    this.#open('manual', 0, 0, openForMs);
  }

  /** Closes the breaker now, forgetting the window (e.g. after an operator confirmed the gateway is back). */
  reset(): void {
    if (this.#shutdown || this.#state === CLOSED) return;
    this.#close('manual-reset');
  }

  /**
   * Shuts the breaker down: refuses new calls with `CircuitShutdownError`, rejects the calls in flight
   * with it (aborting their `ctx.signal`), and clears every timer and listener. Idempotent.
   */
  close(): void {
    if (this.#shutdown) return;
    this.#shutdown = true;
    this.#engine.shutdown();
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const error = new CircuitShutdownError(this.name);
    for (const head of [this.#timedHead, this.#otherHead]) {
      for (let call = head; call !== undefined; call = call.next) {
        call.done = true;
        call.release();
        call.abort(error);
        this.#inFlight--;
        call.reject(error);
      }
    }
    this.#timedHead = this.#timedTail = this.#otherHead = undefined;
    this.emit('shutdown');
    this.removeAllListeners();
  }

  /** A snapshot of the state and counters, cheap enough to read on every scrape. */
  stats(): CircuitBreakerStats {
    const now = this.#o.clock();
    this.#window.advance(now);
    const t = this.#window.totals;
    const successes = t[K_SUCCESS] as number;
    const failures = t[K_FAILURE] as number;
    const timeouts = t[K_TIMEOUT] as number;
    const throttled = t[K_THROTTLED] as number;
    const slow = t[W_SLOW] as number;
    const calls = successes + failures + timeouts + throttled;
    const stats: CircuitBreakerStats = {
      name: this.name,
      state: this.state,
      inFlight: this.#inFlight,
      retryAfterMs: this.retryAfterMs,
      consecutiveOpens: this.#consecutiveOpens,
      window: {
        successes,
        failures,
        timeouts,
        throttled,
        slow,
        calls,
        failureRate: calls === 0 ? 0 : ((failures + timeouts + throttled) / calls) * 100,
        slowCallRate: calls === 0 ? 0 : (slow / calls) * 100,
      },
      totals: {
        calls: this.#calls,
        successes: this.#successes,
        failures: this.#failures,
        timeouts: this.#timeouts,
        throttled: this.#throttled,
        ignored: this.#ignored,
        slow: this.#slow,
        rejected: this.#rejected,
        fallbacks: this.#fallbacks,
        opened: this.#opened,
      },
    };
    if (this.#latency === undefined) return stats;
    return { ...stats, latency: this.#latency.percentiles(now) };
  }

  // ---- admission -------------------------------------------------------------------------------

  #admit(
    fn: ((ctx: CallContext) => unknown) | undefined,
    args: TArgs | undefined,
    signal: AbortSignal | undefined,
    fallback: ((error: unknown, ...args: never[]) => unknown) | undefined,
    timeoutMs: number,
  ): Promise<unknown> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    let probe = false;
    if (this.#state !== CLOSED || this.#shutdown) {
      if (this.#shutdown) return Promise.reject(new CircuitShutdownError(this.name));
      if (this.#state === OPEN || this.#probesAdmitted >= this.#o.halfOpenMaxCalls) {
        return this.#refuse(fallback, args);
      }
      this.#probesAdmitted++;
      probe = true;
    }

    const start = this.#o.clock();
    const call = new Call(
      start,
      this.#epoch,
      probe,
      signal,
      args,
      fallback,
      Number.isFinite(this.#o.slowCallDurationMs) ? this.#o.clock : undefined,
    );
    this.#inFlight++;
    this.#calls++;
    const promise = new Promise<unknown>((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
    });
    this.#track(call, timeoutMs);
    if (probe) {
      // A probe may carry its own (longer) timeout: refusals in half-open wait for the last of them. One
      // without any timeout is assumed to answer within resetTimeoutMs.
      const timed = Number.isFinite(call.deadline);
      if (!timed) this.#untimedProbe = true;
      const due = timed ? call.deadline : start + this.#o.resetTimeoutMs;
      if (due > this.#probesDueBy) this.#probesDueBy = due;
    }

    let value: unknown;
    try {
      value =
        fn === undefined ? (this.#action as (...a: unknown[]) => unknown)(...(args as unknown[])) : fn(call);
      // Inside the try: a thenable whose `then` (or its getter) throws rejects the call, as `await` would,
      // rather than throw out of execute() and leave the call in flight.
      if (isThenable(value)) {
        value.then(
          (result) => this.#onFulfilled(call, result),
          (error: unknown) => this.#onRejected(call, error),
        );
        return promise;
      }
    } catch (error) {
      try {
        this.#onRejected(call, error);
      } catch (listenerError) {
        throw this.#dropped(promise, listenerError);
      }
      return promise;
    }
    try {
      this.#onFulfilled(call, value);
    } catch (listenerError) {
      throw this.#dropped(promise, listenerError);
    }
    return promise;
  }

  /**
   * An event listener threw out of a call settled synchronously, so the error leaves execute()/fire() and
   * the caller never receives `promise`: it must not also surface as an unhandled rejection (a crash under
   * Node's default) when the call failed. Returns the listener's error to rethrow.
   */
  #dropped(promise: Promise<unknown>, listenerError: unknown): unknown {
    promise.catch(noop);
    return listenerError;
  }

  #refuse(
    fallback: ((error: unknown, ...args: never[]) => unknown) | undefined,
    args: TArgs | undefined,
  ): Promise<never> {
    this.#rejected++;
    const retryAfterMs = this.#refusalDelay(this.#o.clock());
    let refusal = this.#refusal;
    // Calls refused in the same state with the same retryAfterMs (the same millisecond, in practice)
    // share one error and one already-handled rejected promise. Most of what a refusal costs is not the
    // breaker's decision but building an Error (its stack) and a fresh rejected promise, which Node's
    // unhandled-rejection tracking records and then forgets when the caller attaches its handler.
    if (
      refusal === undefined ||
      refusal.error.retryAfterMs !== retryAfterMs ||
      refusal.state !== this.#state
    ) {
      const error = this.#openError(retryAfterMs);
      const promise = Promise.reject(error);
      promise.catch(noop);
      refusal = this.#refusal = { state: this.#state, error, promise };
    }
    this.emit('reject', refusal.error);
    if (fallback === undefined) return refusal.promise;
    this.emit('fallback', refusal.error);
    return this.#runFallback(fallback, refusal.error, args) as Promise<never>;
  }

  /** retryAfterMs of a refusal now: >= 1, since the call is refused. */
  #refusalDelay(now: number): number {
    if (this.#state === OPEN) return Math.max(1, Math.ceil(this.#openUntil - now));
    // Half-open with every probe slot taken: the state changes once the probes have answered or timed
    // out, by the latest deadline among them (their own per-call timeouts included). Past it, a timed
    // probe's timer is only running late (1 ms is right), but one with no timeout may hang for good: ask
    // for another reset period then, rather than have every caller retry each millisecond.
    const left = this.#probesDueBy - now;
    if (left > 0) return Math.max(1, Math.ceil(left));
    return this.#untimedProbe ? this.#o.resetTimeoutMs : 1;
  }

  #openError(retryAfterMs: number): CircuitOpenError {
    const state = this.#state === OPEN ? 'open' : 'half-open';
    // A stack trace would only point here (the refused call never ran), and capturing it is the most
    // expensive part of building an Error. stackTraceLimit is restored before anything else can run.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return new CircuitOpenError(
        this.name,
        retryAfterMs,
        state,
        state === 'open' ? this.#openMessage : this.#halfOpenMessage,
      );
    } finally {
      Error.stackTraceLimit = limit;
    }
  }

  /** Runs the fallback (its `fallback` event is the caller's to emit, once the call is settled). */
  #runFallback(
    fallback: (error: unknown, ...args: never[]) => unknown,
    error: unknown,
    args: unknown[] | undefined,
  ): Promise<unknown> {
    this.#fallbacks++;
    try {
      const f = fallback as (error: unknown, ...a: unknown[]) => unknown;
      return Promise.resolve(args === undefined ? f(error) : f(error, ...args));
    } catch (fallbackError) {
      return Promise.reject(fallbackError);
    }
  }

  // ---- timeouts ----------------------------------------------------------------------------------

  #track(call: Call, timeoutMs: number): void {
    if (timeoutMs === this.#o.timeoutMs && timeoutMs !== Number.POSITIVE_INFINITY) {
      call.deadline = call.start + timeoutMs;
      call.list = 0;
      const tail = this.#timedTail;
      call.prev = tail;
      if (tail === undefined) this.#timedHead = call;
      else tail.next = call;
      this.#timedTail = call;
      if (this.#timer === undefined) this.#arm(timeoutMs);
      return;
    }
    call.list = 1;
    const head = this.#otherHead;
    call.next = head;
    if (head !== undefined) head.prev = call;
    this.#otherHead = call;
    if (timeoutMs !== Number.POSITIVE_INFINITY) {
      call.deadline = call.start + timeoutMs;
      call.timer = setTimeout(() => this.#expire(call, timeoutMs, this.#o.clock()), timeoutMs);
      call.timer.unref();
    }
  }

  #untrack(call: Call): void {
    const { prev, next } = call;
    if (call.list === 0) {
      if (prev === undefined) this.#timedHead = next;
      else prev.next = next;
      if (next === undefined) this.#timedTail = prev;
      else next.prev = prev;
    } else {
      if (prev === undefined) this.#otherHead = next;
      else prev.next = next;
      if (next !== undefined) next.prev = prev;
    }
    call.prev = call.next = undefined;
  }

  #arm(delayMs: number): void {
    // Left armed when its calls settle early (re-arming per call would cost a timer per call); when it
    // fires with nothing due it re-arms for the new oldest call, or stops.
    this.#timer = setTimeout(this.#onTimer, Math.max(1, Math.ceil(delayMs)));
    this.#timer.unref();
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    const now = this.#o.clock();
    let head = this.#timedHead;
    // A `timeout` listener that throws must not stop the sweep: every due call still expires and the
    // timer is re-armed for the rest; the first listener error then propagates as EventEmitter's do.
    let thrown: { error: unknown } | undefined;
    while (head !== undefined && head.deadline <= now) {
      try {
        this.#expire(head, this.#o.timeoutMs, now);
      } catch (error) {
        thrown ??= { error };
      }
      head = this.#timedHead;
    }
    if (head !== undefined && !this.#shutdown) this.#arm(head.deadline - now);
    if (thrown !== undefined) throw thrown.error;
  };

  #expire(call: Call, timeoutMs: number, now: number): void {
    if (call.done) return;
    const error = new CircuitTimeoutError(this.name, timeoutMs);
    call.abort(error);
    // The signal's abort listeners ran just now: one may have shut the breaker down (close() settled
    // this call and every other); settling it again would count it twice and relink the emptied list.
    if (call.done) return;
    this.#settle(call, K_TIMEOUT, error, now, 1);
  }

  // ---- outcomes ----------------------------------------------------------------------------------

  #onFulfilled(call: Call, result: unknown): void {
    if (call.done) return;
    this.#settle(call, this.#classify(result, false), result, this.#o.clock(), 0);
  }

  #onRejected(call: Call, error: unknown): void {
    if (call.done) return;
    const now = this.#o.clock();
    // The caller gave up. Early, that says nothing about the gateway: ignored. Given up after the call had
    // run longer than `slowCallDurationMs` (measured to the abort, not to the function's late rejection),
    // the gateway had not answered within what the operator calls slow, and ignoring it would let a hung
    // gateway stay "healthy" whenever callers' deadlines are shorter than `timeoutMs`; so it is
    // classified like any rejection (an AbortError is a failure) and is slow.
    const abandonedAt = call.abandonedAt ?? now;
    const kind =
      call.callerSignal?.aborted === true && !(abandonedAt - call.start > this.#o.slowCallDurationMs)
        ? K_IGNORED
        : this.#classify(error, true);
    this.#settle(call, kind, error, now, 1);
  }

  #classify(value: unknown, failed: boolean): KindCode {
    let kind: unknown;
    try {
      kind = this.#o.classify(value, failed);
    } catch (error) {
      // The call's own outcome must not be lost to the classifier's bug: it counts as a failure.
      return this.#classifyBugFound(true, error);
    }
    switch (kind) {
      case 'success':
        return K_SUCCESS;
      case 'failure':
        return K_FAILURE;
      case 'ignored':
        return K_IGNORED;
      case 'throttled':
        return K_THROTTLED;
      default:
        return this.#classifyBugFound(false, kind);
    }
  }

  /**
   * `classify` threw or returned no OutcomeKind: the call counts as a failure (never lost, and never
   * taken for a healthy answer), and the bug goes out as a process warning. A warning, not an error thrown
   * from where the call settles: the classifier runs after the call did its work (a payment may have been
   * charged), and neither its caller nor the process should lose that to a bug in the bookkeeping.
   *
   * Each distinct bug (the value returned, or the class and message thrown) is warned of once per
   * breaker, and at most MAX_REPORTED_CLASSIFY_BUGS of them: a broken classifier is broken on every call,
   * and a warning per call at the gateway's call rate would flood the log. The first says all there is.
   */
  #classifyBugFound(threw: boolean, returnedOrThrown: unknown): KindCode {
    const key = classifyBugKey(threw, returnedOrThrown);
    let reported = this.#reportedClassifyBugs;
    if (reported === undefined) reported = this.#reportedClassifyBugs = new Set();
    if (!reported.has(key) && reported.size < MAX_REPORTED_CLASSIFY_BUGS) {
      reported.add(key);
      process.emitWarning(new InvalidClassificationError(this.name, threw, returnedOrThrown));
    }
    return K_FAILURE;
  }

  /** Books the outcome, applies the rules, then settles the caller's promise (`failed`: 1 rejects). */
  #settle(call: Call, kind: KindCode, value: unknown, now: number, failed: 0 | 1): void {
    const latency = now - call.start;
    call.done = true;
    this.#inFlight--;
    this.#untrack(call);
    const fallback = call.fallback;
    const args = call.args;
    call.release();

    // The caller's promise is settled first (the `fallback` event, too, comes after), so a listener that
    // throws cannot leave it hanging.
    let fellBack = false;
    if (failed === 0) call.resolve(value);
    else if (fallback !== undefined && (kind === K_FAILURE || kind === K_TIMEOUT || kind === K_THROTTLED)) {
      fellBack = true;
      call.resolve(this.#runFallback(fallback, value, args));
    } else call.reject(value);

    const slow = kind !== K_IGNORED && latency > this.#o.slowCallDurationMs;
    const retryAfterMs = kind === K_THROTTLED ? retryAfterOf(value) : 0;
    if (this.#latency !== undefined && kind !== K_IGNORED) this.#latency.record(now, latency);
    if (slow) this.#slow++;
    try {
      switch (kind) {
        case K_SUCCESS:
          this.#successes++;
          this.emit('success', value, latency);
          break;
        case K_FAILURE:
          this.#failures++;
          this.emit('failure', value, latency);
          break;
        case K_TIMEOUT:
          this.#timeouts++;
          this.emit('timeout', value as CircuitTimeoutError, latency);
          break;
        case K_THROTTLED:
          this.#throttled++;
          this.emit('throttled', value, latency, retryAfterMs);
          break;
        default:
          this.#ignored++;
          this.emit('ignored', value, latency);
      }
      if (slow) this.emit('slow', latency);
      // Last, as a refusal's comes after its `reject`: the counters are all booked by now.
      if (fellBack) this.emit('fallback', value);
    } finally {
      // ...and the rules apply even then (the listener's error still propagates, as EventEmitter's do).
      if (!this.#shutdown) {
        if (call.epoch === this.#epoch) {
          if (this.#state === CLOSED) this.#countClosed(kind, slow, now, retryAfterMs);
          else if (call.probe) this.#countProbe(kind, slow, now, retryAfterMs);
        } else if (kind === K_THROTTLED && this.#state === OPEN && retryAfterMs > 0) {
          // A late answer (sent before the breaker opened) asking for a longer hold: honour it.
          const until = now + this.#holdFor(retryAfterMs);
          if (until > this.#openUntil) this.#openUntil = until;
        }
      }
    }
  }

  #countClosed(kind: KindCode, slow: boolean, now: number, retryAfterMs: number): void {
    if (kind === K_IGNORED) return;
    const w = this.#window;
    w.add(now, kind);
    if (slow) w.add(now, W_SLOW);
    if (retryAfterMs > 0) {
      const until = now + retryAfterMs;
      if (until > this.#holdUntil) this.#holdUntil = until;
    }
    const t = w.totals;
    const calls =
      (t[K_SUCCESS] as number) +
      (t[K_FAILURE] as number) +
      (t[K_TIMEOUT] as number) +
      (t[K_THROTTLED] as number);
    if (calls === 0 || calls < this.#o.volumeThreshold) return;
    // A fast success added to a window that passed the last check can only lower the rates, so it skips
    // the check, except when it is the call that brings the window to volumeThreshold (the failures
    // before it were not checked: too few calls), or when buckets slid out since the last check (losing
    // old successes raises the rates without any new failure).
    if (kind === K_SUCCESS && !slow && calls !== this.#o.volumeThreshold && !w.dropped) return;
    w.dropped = false;
    const failureRate =
      (((t[K_FAILURE] as number) + (t[K_TIMEOUT] as number) + (t[K_THROTTLED] as number)) / calls) * 100;
    const slowCallRate = ((t[W_SLOW] as number) / calls) * 100;
    if (failureRate > this.#o.errorThresholdPercentage) this.#open('failure-rate', failureRate, slowCallRate);
    else if (slowCallRate > this.#o.slowCallThresholdPercentage)
      this.#open('slow-call-rate', failureRate, slowCallRate);
  }

  #countProbe(kind: KindCode, slow: boolean, now: number, retryAfterMs: number): void {
    if (kind === K_IGNORED) {
      // Neither a success nor a failure (opossum's errorFilter would have closed the breaker here):
      // give the slot back so another call can probe.
      this.#probesAdmitted--;
      return;
    }
    if (kind === K_SUCCESS && !slow) {
      this.#probeSuccesses++;
      if (this.#probeSuccesses >= this.#o.halfOpenSuccessThreshold) this.#close('half-open-success');
      return;
    }
    this.#probeFailures++;
    if (kind === K_THROTTLED) {
      if (retryAfterMs > 0) this.#holdUntil = now + retryAfterMs;
      this.#open('throttled', 0, 0);
    } else if (this.#probeFailures > this.#o.halfOpenMaxCalls - this.#o.halfOpenSuccessThreshold) {
      this.#open(kind === K_SUCCESS ? 'half-open-slow' : 'half-open-failure', 0, 0);
    }
  }

  // ---- transitions -------------------------------------------------------------------------------

  /** A `Retry-After` hold, jittered upwards only (never shorter than asked), capped. */
  #holdFor(retryAfterMs: number): number {
    const o = this.#o;
    return Math.min(o.maxResetTimeoutMs, retryAfterMs * (1 + o.resetJitter * o.random()));
  }

  #open(reason: OpenReason, failureRate: number, slowCallRate: number, openForMs?: number): void {
    const o = this.#o;
    const now = o.clock();
    const from = this.#state;
    this.#consecutiveOpens++;
    let duration: number;
    if (openForMs !== undefined) duration = Math.min(Math.max(1, openForMs), 2_147_483_647);
    else {
      // Exponential backoff across re-openings, shortened by up to resetJitter so instances that opened
      // together spread their probes; then a Retry-After hold the gateway asked for wins if longer.
      const backoff = Math.min(
        o.maxResetTimeoutMs,
        o.resetTimeoutMs * o.resetBackoffFactor ** (this.#consecutiveOpens - 1),
      );
      duration = Math.max(1, backoff * (1 - o.resetJitter * o.random()));
      const hold = this.#holdUntil - now;
      if (hold > 0) duration = Math.max(duration, this.#holdFor(hold));
    }
    this.#state = OPEN;
    this.#epoch++;
    this.#opened++;
    this.#openUntil = now + duration;
    this.#holdUntil = Number.NEGATIVE_INFINITY;
    this.#engine.open(duration);
    this.#transition({
      name: this.name,
      from: STATE_NAMES[from] as CircuitState,
      to: 'open',
      reason,
      openForMs: duration,
      failureRate,
      slowCallRate,
    });
  }

  #onResetTimeout(): void {
    if (this.#shutdown || this.#state !== OPEN) return;
    const now = this.#o.clock();
    const remaining = this.#openUntil - now;
    if (remaining >= 1) {
      // The hold was extended while open (a late Retry-After); opossum's timer cannot be moved, so it
      // is re-armed for the rest.
      this.#engine.open(remaining);
      return;
    }
    this.#state = HALF_OPEN;
    this.#epoch++;
    this.#probesDueBy = now;
    this.#untimedProbe = false;
    this.#probesAdmitted = 0;
    this.#probeSuccesses = 0;
    this.#probeFailures = 0;
    this.#transition({
      name: this.name,
      from: 'open',
      to: 'half-open',
      reason: 'reset-timeout',
      openForMs: 0,
      failureRate: 0,
      slowCallRate: 0,
    });
  }

  #close(reason: 'half-open-success' | 'manual-reset'): void {
    const from = this.#state;
    this.#state = CLOSED;
    this.#epoch++;
    this.#consecutiveOpens = 0;
    this.#holdUntil = Number.NEGATIVE_INFINITY;
    this.#window.reset();
    this.#engine.close();
    this.#transition({
      name: this.name,
      from: STATE_NAMES[from] as CircuitState,
      to: 'closed',
      reason,
      openForMs: 0,
      failureRate: 0,
      slowCallRate: 0,
    });
  }

  #transition(change: StateChange): void {
    this.emit('stateChange', change);
    this.emit(change.to === 'open' ? 'open' : change.to === 'closed' ? 'close' : 'halfOpen', change);
  }
}

/**
 * Creates a {@link CircuitBreaker}.
 *
 * @example
 * ```ts
 * const charge = circuitBreaker((order: Order) => bank.charge(order), { timeoutMs: 5_000 });
 * await charge.fire(order);
 * ```
 * @throws {InvalidOptionError} when an option is unknown or out of range.
 */
export function circuitBreaker<TArgs extends unknown[], TResult>(
  action: (...args: TArgs) => TResult | PromiseLike<TResult>,
  options?: CircuitBreakerOptions<TArgs, Awaited<TResult>>,
): CircuitBreaker<TArgs, Awaited<TResult>>;
export function circuitBreaker(options?: CircuitBreakerOptions<[], never>): CircuitBreaker<[], never>;
export function circuitBreaker(
  actionOrOptions?: ((...args: unknown[]) => unknown) | CircuitBreakerOptions,
  options?: CircuitBreakerOptions,
): CircuitBreaker {
  if (typeof actionOrOptions === 'function') return new CircuitBreaker(actionOrOptions, options);
  // `circuitBreaker(undefined, options)` (an action that may be absent) keeps its options, and options in
  // both places are refused, as the class does.
  return new CircuitBreaker(actionOrOptions as never, options);
}

/**
 * What is wrong with `execute`'s options, if anything (the per-call timeout is checked by the caller):
 * not an object, a key that is not an option (a typo such as `timeoutMS` would otherwise be ignored
 * silently), a `signal` that is not an AbortSignal, a `fallback` that is not a function.
 */
function invalidExecuteOption(options: unknown): InvalidOptionError | undefined {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    return new InvalidOptionError('options', 'an object { signal?, timeoutMs?, fallback? }', options);
  }
  for (const key of Object.keys(options)) {
    if (key !== 'signal' && key !== 'timeoutMs' && key !== 'fallback') {
      return new InvalidOptionError(key, 'one of the execute options (signal, timeoutMs, fallback)', key);
    }
  }
  const { signal, fallback } = options as ExecuteOptions<unknown>;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    return new InvalidOptionError('signal', 'an AbortSignal', signal);
  }
  if (fallback !== undefined && typeof fallback !== 'function') {
    return new InvalidOptionError('fallback', 'a function', fallback);
  }
  return undefined;
}

/** The per-call timeout in ms (Infinity: none), NaN when invalid. */
function timeoutOf(value: unknown): number {
  if (value === false) return Number.POSITIVE_INFINITY;
  if (typeof value !== 'number' || !(value >= 1) || value > 2_147_483_647) return Number.NaN;
  return value;
}

function noop(): void {}

// Enough distinct classifier bugs to show what is wrong, few enough that a classifier returning per-call
// data (a status code where an OutcomeKind belongs) cannot report once per call after all.
const MAX_REPORTED_CLASSIFY_BUGS = 8;

/** What tells one `classify` bug from another: the value returned, or the class and message thrown. */
function classifyBugKey(threw: boolean, value: unknown): string {
  if (threw) {
    if (!(value instanceof Error)) return `threw ${typeof value}`;
    try {
      return `threw ${value.name}: ${value.message}`;
    } catch {
      return 'threw Error';
    }
  }
  if (typeof value === 'string') return `returned string ${value}`;
  if (value === null || (typeof value !== 'object' && typeof value !== 'function'))
    return `returned ${typeof value} ${String(value)}`;
  // An object's own text could run its toString(); its type is enough to tell the bug.
  return `returned ${typeof value}`;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}
