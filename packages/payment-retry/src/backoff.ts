/**
 * Full jitter (AWS Architecture blog, "Exponential Backoff And Jitter"):
 * `random(0, min(cap, base * 2^retry))`. It spreads a crowd of clients and does the least total work of
 * the jittered kinds. `retry` counts from 0 for the first retry.
 *
 * @example
 * fullJitter(3, 50, 2000, Math.random); // somewhere in [0, 400)
 */
export function fullJitter(retry: number, baseMs: number, capMs: number, random: () => number): number {
  // 2^retry overflows to Infinity for large retry counts; min() keeps that finite.
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(retry, 52));
  return random() * ceiling;
}

/**
 * The wait a server asked for (`Retry-After`) wins over the computed backoff; it is capped, and stretched
 * by up to 10% at random so a crowd that all got `Retry-After: 1` does not come back in the same ms.
 */
export function serverDelay(retryAfterMs: number, capMs: number, random: () => number): number {
  const capped = Math.min(retryAfterMs, capMs);
  return capped + random() * capped * 0.1;
}

/**
 * Equal jitter (AWS Architecture blog, "Exponential Backoff And Jitter"): with
 * `t = min(cap, base * 2^retry)`, `t/2 + random(0, t/2)`. Half of the wait is kept, so a crowd is spread
 * over `[t/2, t)` and yet no wait is shorter than `t/2`: full jitter's waits near 0 would let a caller
 * come straight back. `retry` counts from 0 for the first retry.
 *
 * @example
 * equalJitter(0, 1000, 60_000, Math.random); // somewhere in [500, 1000)
 */
export function equalJitter(retry: number, baseMs: number, capMs: number, random: () => number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(retry, 52));
  return ceiling / 2 + random() * (ceiling / 2);
}
