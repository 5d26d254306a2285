import { InvalidOptionError } from './errors.js';

/** Rejects a non-object and unknown keys, so a typo in an option name fails loudly at start-up. */
export function checkOptions(name: string, value: unknown, known: readonly string[]): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError(name, 'an object', value);
  }
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new InvalidOptionError(
        name === 'options' ? key : `${name}.${key}`,
        `a known option (one of ${known.join(', ')})`,
        (value as Record<string, unknown>)[key],
      );
    }
  }
}

export function finiteAtLeast(option: string, value: unknown, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new InvalidOptionError(option, `a finite number >= ${min}`, value);
  }
  return value;
}

/**
 * 2^31 - 1: the longest delay Node's `setTimeout` (and undici's timers, and SQLite's `busy_timeout`)
 * can hold. A longer one is not an error there: Node fires it after 1 ms, SQLite turns it into 0.
 */
export const MAX_DELAY_MS = 2_147_483_647;

/**
 * A duration that reaches a timer: a finite number in `[min, max]`, `max` at most {@link MAX_DELAY_MS}.
 * @throws {InvalidOptionError} naming the option, the range and the value.
 */
export function delayMs(
  option: string,
  value: unknown,
  min: number,
  fallback: number,
  max = MAX_DELAY_MS,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new InvalidOptionError(option, `a finite number in [${min}, ${max}] (ms)`, value);
  }
  return value;
}

/** `true` or `false`; `undefined` gives `fallback`. A string such as `'no'` is refused, not coerced. */
export function booleanOption(option: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidOptionError(option, '`true` or `false`', value);
  return value;
}

export function integerAtLeast(option: string, value: unknown, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidOptionError(option, `an integer >= ${min}`, value);
  }
  return value;
}

/**
 * The `limit` of `PaymentLedger.unresolved(limit)`: an integer >= 0 or `Infinity`; `undefined` is every
 * payment. Both built-in ledgers check it the same way, so a `-1` or a `1.5` is a caller's mistake in
 * either, not "everything" in one and "nothing" in the other.
 * @throws {InvalidOptionError} naming `limit` and the value.
 */
export function unresolvedLimit(limit: unknown): number {
  if (limit === undefined) return Number.POSITIVE_INFINITY;
  if (
    typeof limit !== 'number' ||
    !(Number.isSafeInteger(limit) || limit === Number.POSITIVE_INFINITY) ||
    limit < 0
  ) {
    throw new InvalidOptionError('limit', 'an integer >= 0 or Infinity', limit);
  }
  return limit;
}
