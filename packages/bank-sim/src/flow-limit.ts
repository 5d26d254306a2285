/** Options of {@link FlowLimit}. */
export interface FlowLimitOptions {
  /** Tokens added per second; `Infinity` turns the limit off. */
  readonly rate: number;
  /** The most tokens the bucket holds: how many requests may arrive back to back. */
  readonly burst: number;
}

/**
 * The gateway's global flow limit: one token bucket (rate, burst). Deliberately tiny and local:
 * bank-sim imports nothing of floodgate, so the thing under test is never the thing measuring it.
 *
 * The decision is a boolean; the details a throttled answer needs (Retry-After, RateLimit fields)
 * are computed on demand, so an admitted request allocates nothing here.
 *
 * @example
 * ```ts
 * const limit = flowLimit({ rate: 300, burst: 30 });
 * if (!limit.tryTake(performance.now())) console.log(limit.retryAfterMs(1));
 * ```
 */
export class FlowLimit {
  readonly rate: number;
  readonly burst: number;
  #tokens: number;
  #last = Number.NaN;
  #perMs: number;
  #factor = 1;
  /** Until when `#factor` holds; the refill runs at the whole rate after it. */
  #factorUntil = Number.POSITIVE_INFINITY;

  constructor(options: FlowLimitOptions) {
    this.rate = options.rate;
    this.burst = options.burst;
    this.#tokens = options.burst;
    this.#perMs = options.rate / 1000;
  }

  /**
   * Takes one token at time `now` (ms, monotonic). `factor` scales the refill rate from now until
   * `factorUntil`, the whole rate after it (slow recovery after an outage runs at a fraction of the rate
   * for a while: a quiet spell that outlasts it refills at the whole rate once it is over).
   */
  tryTake(now: number, factor = 1, factorUntil = Number.POSITIVE_INFINITY): boolean {
    if (this.rate === Number.POSITIVE_INFINITY) return true;
    this.#refill(now);
    this.#factor = factor;
    this.#factorUntil = factorUntil;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return true;
    }
    return false;
  }

  /** Whole tokens left (as of the last decision). */
  get remaining(): number {
    return this.rate === Number.POSITIVE_INFINITY ? this.burst : Math.floor(this.#tokens);
  }

  /** Milliseconds until one token is there, as of the last decision. */
  retryAfterMs(): number {
    if (this.rate === Number.POSITIVE_INFINITY || this.#tokens >= 1) return 0;
    return this.#msUntil(1);
  }

  /** Milliseconds until the bucket is full again, as of the last decision. */
  resetAfterMs(): number {
    if (this.rate === Number.POSITIVE_INFINITY) return 0;
    return this.#msUntil(this.burst);
  }

  /**
   * The gateway comes back from an outage at `now`: from here the bucket refills at `factor` × rate,
   * and it holds at most `max(1, burst × factor)` tokens, so a comeback admits a small burst (at least
   * one request), not the full bucket that filled up while it was down.
   */
  recover(now: number, factor: number, factorUntil = Number.POSITIVE_INFINITY): void {
    if (this.rate === Number.POSITIVE_INFINITY) return;
    this.#refill(now);
    this.#factor = factor;
    this.#factorUntil = factorUntil;
    this.#tokens = Math.min(this.#tokens, Math.max(1, this.burst * factor));
  }

  /** Refills the bucket to `burst`. */
  reset(): void {
    this.#tokens = this.burst;
    this.#last = Number.NaN;
  }

  /**
   * Milliseconds from the last decision until the bucket holds `tokens`, refilling as `#refill` does: at
   * the factor until `#factorUntil`, at the whole rate after it (a recovery that ends before the token
   * is there must not stretch the whole wait).
   */
  #msUntil(tokens: number): number {
    const missing = tokens - this.#tokens;
    if (!(missing > 0)) return 0;
    const reducedPerMs = this.#perMs * this.#factor;
    const reducedMs = Math.max(0, this.#factorUntil - this.#last);
    const reducedGain = reducedMs * reducedPerMs; // Infinity while no recovery end is set
    if (missing <= reducedGain) return missing / reducedPerMs;
    return reducedMs + (missing - reducedGain) / this.#perMs;
  }

  #refill(now: number): void {
    if (Number.isNaN(this.#last)) {
      this.#last = now;
      return;
    }
    const last = this.#last;
    if (now <= last) return;
    // The part of the gap before `#factorUntil` at the factor, the rest at the whole rate.
    const reducedEnd = Math.min(now, Math.max(last, this.#factorUntil));
    const added = ((reducedEnd - last) * this.#factor + (now - reducedEnd)) * this.#perMs;
    this.#tokens = Math.min(this.burst, this.#tokens + added);
    this.#last = now;
  }
}

/** Creates a {@link FlowLimit}. */
export function flowLimit(options: FlowLimitOptions): FlowLimit {
  return new FlowLimit(options);
}
