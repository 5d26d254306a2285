/** Per-second counters for the dashboard: how many checkouts, bank calls, payments in each second. */
export class Meter<Name extends string = string> {
  readonly #seconds: number;
  readonly #now: () => number;
  readonly #series = new Map<Name, { second: number; counts: number[]; total: number }>();

  /**
   * @param seconds how many whole seconds of history to keep.
   * @param now wall clock in ms (injectable for tests).
   */
  constructor(seconds = 120, now: () => number = Date.now) {
    this.#seconds = seconds;
    this.#now = now;
  }

  mark(name: Name, n = 1): void {
    const second = Math.floor(this.#now() / 1000);
    let entry = this.#series.get(name);
    if (!entry) {
      entry = { second, counts: [0], total: 0 };
      this.#series.set(name, entry);
    }
    this.#advance(entry, second);
    entry.counts[entry.counts.length - 1] = (entry.counts.at(-1) ?? 0) + n;
    entry.total += n;
  }

  #advance(entry: { second: number; counts: number[] }, second: number): void {
    const gap = second - entry.second;
    if (gap <= 0) return;
    for (let i = 0; i < Math.min(gap, this.#seconds); i++) entry.counts.push(0);
    if (entry.counts.length > this.#seconds) entry.counts.splice(0, entry.counts.length - this.#seconds);
    entry.second = second;
  }

  /** Counts of the last complete second (the current one is still filling). */
  lastSecond(name: Name): number {
    const entry = this.#series.get(name);
    if (!entry) return 0;
    this.#advance(entry, Math.floor(this.#now() / 1000));
    return entry.counts.at(-2) ?? 0;
  }

  total(name: Name): number {
    return this.#series.get(name)?.total ?? 0;
  }

  /** The last `seconds` complete seconds, oldest first, padded with zeros. */
  history(name: Name, seconds = 60): number[] {
    const entry = this.#series.get(name);
    const out = new Array<number>(seconds).fill(0);
    if (!entry) return out;
    this.#advance(entry, Math.floor(this.#now() / 1000));
    const complete = entry.counts.slice(0, -1).slice(-seconds);
    out.splice(seconds - complete.length, complete.length, ...complete);
    return out;
  }
}
