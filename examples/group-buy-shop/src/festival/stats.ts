/** Small statistics helpers for the festival report. */

/** The q-quantile (0..1) of `values` by nearest rank; 0 for no values. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

/** Counts `items` per whole second since `origin` (ms), for `seconds` seconds. */
export function perSecond<T>(
  items: readonly T[],
  at: (item: T) => number,
  origin: number,
  seconds: number,
): number[] {
  const out = new Array<number>(seconds).fill(0);
  for (const item of items) {
    const s = Math.floor((at(item) - origin) / 1000);
    if (s >= 0 && s < seconds) out[s] = (out[s] ?? 0) + 1;
  }
  return out;
}
