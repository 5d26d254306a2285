/** What the wrapped function receives: its own cancellation signal. */
export interface CallContext {
  /**
   * Aborted when this call times out (reason: `CircuitTimeoutError`), when the caller's `signal` aborts
   * (its reason), or when the breaker is shut down (`CircuitShutdownError`). Each call has its own: one
   * call's timeout never aborts another call. Created on first read, so calls that never look at it
   * do not pay for an AbortController.
   */
  readonly signal: AbortSignal;
  /** True when the breaker is half-open and this call is one of its probes. */
  readonly probe: boolean;
}

/**
 * One call in flight. It is the `ctx` handed to the wrapped function, the node of the breaker's
 * in-flight lists (so shutdown and timeouts find it without a per-call timer or a Set entry), and the
 * caller-signal listener (`handleEvent`), so a call allocates this object, its promise and two callbacks.
 * @internal
 */
export class Call implements CallContext {
  readonly start: number;
  readonly epoch: number;
  readonly probe: boolean;
  readonly callerSignal: AbortSignal | undefined;
  /** Deadline on the breaker's clock; Infinity when the call has no timeout. */
  deadline: number;
  /** 0: in the breaker's FIFO of calls with its default timeout; 1: in the other list. */
  list: 0 | 1 = 0;
  prev: Call | undefined = undefined;
  next: Call | undefined = undefined;
  /** Set once the call's outcome is decided (settled, timed out or shut down): later settlements are dropped. */
  done = false;
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  args: unknown[] | undefined;
  fallback: ((error: unknown, ...args: never[]) => unknown) | undefined;
  resolve!: (value: unknown) => void;
  reject!: (error: unknown) => void;
  /**
   * When the caller's signal aborted, on the breaker's clock: what tells a call abandoned early from one
   * abandoned after `slowCallDurationMs`, however long the function then takes to reject. Only kept when
   * the breaker has a slow-call rule (`clock` given).
   */
  abandonedAt: number | undefined = undefined;
  readonly #clock: (() => number) | undefined;
  #controller: AbortController | undefined = undefined;
  #abortReason: unknown = undefined;
  #listening = false;

  constructor(
    start: number,
    epoch: number,
    probe: boolean,
    callerSignal: AbortSignal | undefined,
    args: unknown[] | undefined,
    fallback: ((error: unknown, ...args: never[]) => unknown) | undefined,
    clock?: () => number,
  ) {
    this.start = start;
    this.#clock = clock;
    // With a slow-call rule the moment of the abort matters, so listen from the start; otherwise only
    // once the function reads `ctx.signal`.
    if (clock !== undefined && callerSignal !== undefined) {
      callerSignal.addEventListener('abort', this, { once: true });
      this.#listening = true;
    }
    this.epoch = epoch;
    this.probe = probe;
    this.callerSignal = callerSignal;
    this.deadline = Number.POSITIVE_INFINITY;
    this.args = args;
    this.fallback = fallback;
  }

  get signal(): AbortSignal {
    let controller = this.#controller;
    if (controller === undefined) {
      controller = this.#controller = new AbortController();
      const caller = this.callerSignal;
      if (this.#abortReason !== undefined) controller.abort(this.#abortReason);
      else if (caller !== undefined) {
        if (caller.aborted) controller.abort(caller.reason);
        else if (!this.done && !this.#listening) {
          caller.addEventListener('abort', this, { once: true });
          this.#listening = true;
        }
      }
    }
    return controller.signal;
  }

  /** The caller's signal aborted: pass it on to this call only. */
  handleEvent(): void {
    this.#listening = false;
    if (this.#clock !== undefined) this.abandonedAt = this.#clock();
    this.#controller?.abort(this.callerSignal?.reason);
  }

  /** Aborts this call's signal (now, or when it is first read). */
  abort(reason: unknown): void {
    if (this.#abortReason !== undefined) return;
    this.#abortReason = reason;
    this.#controller?.abort(reason);
  }

  /** Stops listening to the caller's signal, so a long-lived caller signal does not collect listeners. */
  release(): void {
    if (this.#listening) {
      this.#listening = false;
      this.callerSignal?.removeEventListener('abort', this);
    }
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.args = undefined;
    this.fallback = undefined;
  }
}
