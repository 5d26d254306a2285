/**
 * Counters over a sliding time window split into buckets, like opossum's `Status` window but without
 * its costs: no interval rotates the buckets (they are rotated lazily, from the clock, when a value is
 * recorded or read, so an idle breaker runs no timer at all), no per-call arrays (opossum pushes every
 * call's latency into the current bucket even with percentiles off, so its heap grows with the call
 * rate), and the window totals are kept up to date on each record, so reading them is O(width), not a
 * reduce over every bucket's keys on every failure.
 *
 * `width` counters per bucket, stored flat in one Float64Array.
 * @internal
 */
export class RollingCounters {
  readonly width: number;
  readonly #buckets: number;
  readonly #bucketMs: number;
  readonly #counts: Float64Array;
  /** The window's sums, kept equal to the sum of the live buckets. */
  readonly totals: Float64Array;
  /**
   * Set when advancing dropped a non-zero count (the totals went down without a record); the reader that
   * decides on the totals clears it. The breaker needs it: a window that lost old successes can have a
   * higher failure rate than when it was last checked, without a single new failure.
   */
  dropped = false;
  /** Index of the current bucket. */
  #current = 0;
  /** `floor(now / bucketMs)` of the current bucket; -Infinity before the first record. */
  #epoch = Number.NEGATIVE_INFINITY;

  constructor(windowMs: number, buckets: number, width: number) {
    this.width = width;
    this.#buckets = buckets;
    this.#bucketMs = windowMs / buckets;
    this.#counts = new Float64Array(buckets * width);
    this.totals = new Float64Array(width);
  }

  /** Adds `by` to counter `index` of the bucket `now` falls in. */
  add(now: number, index: number, by = 1): void {
    this.advance(now);
    const slot = this.#current * this.width + index;
    this.#counts[slot] = (this.#counts[slot] as number) + by;
    this.totals[index] = (this.totals[index] as number) + by;
  }

  /** Drops the buckets that `now` has left behind. */
  advance(now: number): void {
    const epoch = Math.floor(now / this.#bucketMs);
    if (epoch === this.#epoch) return;
    const steps = epoch - this.#epoch;
    // A clock that went backwards (an injected one) keeps the current bucket rather than corrupting totals.
    if (steps < 0) return;
    this.#epoch = epoch;
    const rotations = Math.min(steps, this.#buckets);
    const width = this.width;
    const counts = this.#counts;
    const totals = this.totals;
    for (let r = 0; r < rotations; r++) {
      this.#current = this.#current + 1 === this.#buckets ? 0 : this.#current + 1;
      const base = this.#current * width;
      for (let i = 0; i < width; i++) {
        const value = counts[base + i] as number;
        if (value !== 0) {
          totals[i] = (totals[i] as number) - value;
          counts[base + i] = 0;
          this.dropped = true;
        }
      }
    }
  }

  /** Forgets everything (the breaker does this when it closes, so old failures cannot re-trip it). */
  reset(): void {
    this.#counts.fill(0);
    this.totals.fill(0);
    this.dropped = false;
  }
}
