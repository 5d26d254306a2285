import Opossum from 'opossum';

// opossum's Status window rotates its buckets with one setInterval per breaker (and emits snapshots
// from a second one) unless a `rotateBucketController` is given; sharing one real EventEmitter instead
// piles one listener per breaker onto it (MaxListenersExceededWarning past 10 breakers). floodgate keeps
// its own window (./rolling-counters.ts), so opossum's is never read: this controller never rotates it,
// which leaves opossum with no interval and no shared listener at all.
const INERT_ROTATOR = Object.freeze({
  on: () => INERT_ROTATOR,
  removeListener: () => INERT_ROTATOR,
  listenerCount: () => 1,
});

const NEVER_FIRED = (): never => {
  throw new Error('floodgate never fires the opossum engine');
};

/**
 * opossum as floodgate's state engine: its CircuitBreaker holds the open/half-open/closed state and
 * owns the open-state timer (unref'd, cleared by `close()`/`shutdown()`), and floodgate drives it with
 * `open()`/`close()`.
 *
 * Calls do not go through opossum's `fire()`: each of its per-call pieces is one of the traps the issue
 * lists, so floodgate takes them over (see circuit-breaker.ts): its timeout shares one AbortController
 * across calls and its timer is not unref'd; `errorFilter` turns an ignored error into a success that
 * closes a half-open breaker; half-open admits exactly one probe; every call's latency is pushed into an
 * array; and every failure recomputes the window with a reduce over all buckets.
 * @internal
 */
export class StateEngine {
  readonly #breaker: Opossum;

  constructor(name: string, onHalfOpen: () => void) {
    this.#breaker = new Opossum(NEVER_FIRED, {
      name,
      timeout: false,
      enableSnapshots: false,
      rollingPercentilesEnabled: false,
      rotateBucketController: INERT_ROTATOR,
    });
    this.#breaker.on('halfOpen', onHalfOpen);
  }

  /**
   * Opens for `durationMs`, then the engine turns half-open and calls `onHalfOpen`. opossum reads
   * `options.resetTimeout` each time it opens, which is how each opening gets its own jittered, backed-off
   * or `Retry-After` duration. opossum ignores `open()` when already open, so an open engine is closed
   * first (which clears its pending timer) to re-arm it.
   */
  open(durationMs: number): void {
    this.#breaker.close();
    this.#breaker.options.resetTimeout = durationMs;
    this.#breaker.open();
  }

  /** Closes; clears the open timer if one is pending. */
  close(): void {
    this.#breaker.close();
  }

  /** Clears every timer and listener opossum holds. */
  shutdown(): void {
    this.#breaker.shutdown();
  }
}
