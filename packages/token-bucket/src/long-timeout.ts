/**
 * The longest delay `setTimeout` honours: Node (and browsers) store it as a signed 32-bit integer, and a
 * larger delay is not clamped but replaced by 1 ms (with a `TimeoutOverflowWarning`). A wait of 25 days
 * or more (a quota of 100 a day with 2,500 callers queued, one token a month) would then end at once.
 */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** A pending {@link longTimeout}. */
export interface LongTimeout {
  /** Cancels it; idempotent. */
  clear(): void;
}

/**
 * `setTimeout(fn, ms)` for any `ms`: the wait is cut into timers of at most {@link MAX_TIMEOUT_MS}, each
 * re-armed for what is left, so only one timer is pending at a time. Every timer is unref'd unless
 * `keepAlive`. A delay below 1 ms (or NaN) waits 1 ms, as `setTimeout` does; `Infinity` never fires.
 */
export function longTimeout(fn: () => void, ms: number, keepAlive: boolean): LongTimeout {
  let left = Math.max(ms, 1);
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const step = Math.min(left, MAX_TIMEOUT_MS);
    left -= step;
    timer = setTimeout(left > 0 ? arm : fn, step);
    if (!keepAlive) timer.unref();
  };
  arm();
  return {
    clear() {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      left = 0;
    },
  };
}
