import { RollingCounters } from './rolling-counters.js';

// Log-scale bins: bin 0 holds latencies <= 10 µs, bin i holds (10 µs * 1.1^(i-1), 10 µs * 1.1^i]. 280
// bins reach past 2^31 ms (the longest setTimeout), so each estimate is within 10% above the truth, in
// a fixed 260 counters per bucket whatever the call rate.
const MIN_MS = 0.01;
const GROWTH = 1.1;
const LOG_GROWTH = Math.log(GROWTH);
const BINS = 280;

/** Latency percentiles over the rolling window, in ms. */
export interface LatencyPercentiles {
  /** How many calls the percentiles are computed from. */
  readonly count: number;
  /** Median latency, in ms. */
  readonly p50: number;
  /** 90th percentile, in ms. */
  readonly p90: number;
  /** 95th percentile, in ms. */
  readonly p95: number;
  /** 99th percentile, in ms. */
  readonly p99: number;
  /** Upper bound of the bin holding the slowest call. */
  readonly max: number;
}

/**
 * A windowed latency histogram with a bounded size, recorded only when the breaker's
 * `latencyPercentiles` option asks for it (opossum records every latency in an array instead).
 * @internal
 */
export class LatencyHistogram {
  readonly #counters: RollingCounters;

  constructor(windowMs: number, buckets: number) {
    this.#counters = new RollingCounters(windowMs, buckets, BINS);
  }

  record(now: number, latencyMs: number): void {
    this.#counters.add(now, binOf(latencyMs));
  }

  percentiles(now: number): LatencyPercentiles {
    this.#counters.advance(now);
    const totals = this.#counters.totals;
    let count = 0;
    let top = 0;
    for (let i = 0; i < BINS; i++) {
      const n = totals[i] as number;
      if (n > 0) {
        count += n;
        top = i;
      }
    }
    return {
      count,
      p50: quantile(totals, count, 0.5),
      p90: quantile(totals, count, 0.9),
      p95: quantile(totals, count, 0.95),
      p99: quantile(totals, count, 0.99),
      max: count === 0 ? 0 : upperBound(top),
    };
  }
}

function binOf(latencyMs: number): number {
  if (!(latencyMs > MIN_MS)) return 0;
  const bin = Math.ceil(Math.log(latencyMs / MIN_MS) / LOG_GROWTH);
  return bin >= BINS ? BINS - 1 : bin;
}

function upperBound(bin: number): number {
  return MIN_MS * GROWTH ** bin;
}

function quantile(totals: Float64Array, count: number, q: number): number {
  if (count === 0) return 0;
  const rank = Math.ceil(q * count);
  let seen = 0;
  for (let i = 0; i < BINS; i++) {
    seen += totals[i] as number;
    if (seen >= rank) return upperBound(i);
  }
  return upperBound(BINS - 1);
}
