import { InvalidOptionError } from './errors.js';

/**
 * A refill rate: tokens per second, or `tokens` every `perMs` milliseconds
 * (`{ tokens: 100, perMs: 60_000 }` is 100 per minute).
 */
export type RefillRate =
  | number
  | {
      /** Tokens added every `perMs`. */
      readonly tokens: number;
      /** The period `tokens` are added over, in ms. */
      readonly perMs: number;
    };

/** A monotonic clock in milliseconds. Only differences between readings matter. */
export type Clock = () => number;

/** Throws unless `options` is a plain object whose keys are all in `allowed`. */
export function checkOptionKeys(options: unknown, allowed: readonly string[], what: string): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidOptionError(what, 'an object', options);
  }
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      throw new InvalidOptionError(key, `one of the known options of ${what} (${allowed.join(', ')})`, key);
    }
  }
}

/** Returns `value` when it is a finite number >= `min` (> `min` when `exclusive`), else throws. */
export function finiteNumber(name: string, value: unknown, min: number, exclusive = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || (exclusive ? value <= min : value < min)) {
    throw new InvalidOptionError(name, `a finite number ${exclusive ? '>' : '>='} ${min}`, value);
  }
  return value;
}

/** Like {@link finiteNumber}, but `Infinity` is accepted (meaning "no bound"). */
export function numberOrInfinity(name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < min) {
    throw new InvalidOptionError(name, `a number >= ${min} (or Infinity)`, value);
  }
  return value;
}

/** Returns `value` when it is an integer >= `min` (or `Infinity` when `allowInfinity`), else throws. */
export function integer(name: string, value: unknown, min: number, allowInfinity = false): number {
  if (
    typeof value !== 'number' ||
    !(Number.isSafeInteger(value) || (allowInfinity && value === Number.POSITIVE_INFINITY)) ||
    value < min
  ) {
    throw new InvalidOptionError(name, `an integer >= ${min}${allowInfinity ? ' (or Infinity)' : ''}`, value);
  }
  return value;
}

/** Converts a {@link RefillRate} to tokens per millisecond, validating it. */
export function refillPerMs(name: string, rate: unknown): number {
  if (typeof rate === 'number') {
    return finiteNumber(name, rate, 0, true) / 1000;
  }
  if (rate !== null && typeof rate === 'object' && !Array.isArray(rate)) {
    checkOptionKeys(rate, ['tokens', 'perMs'], name);
    const { tokens, perMs } = rate as { tokens?: unknown; perMs?: unknown };
    const perMsTokens =
      finiteNumber(`${name}.tokens`, tokens, 0, true) / finiteNumber(`${name}.perMs`, perMs, 0, true);
    if (!(perMsTokens > 0 && Number.isFinite(perMsTokens))) {
      throw new InvalidOptionError(name, 'a rate that is finite and > 0 once divided', rate);
    }
    return perMsTokens;
  }
  throw new InvalidOptionError(name, 'a finite number > 0 (tokens per second) or { tokens, perMs }', rate);
}

/** Returns the clock to use, validating a given one. */
export function clockOption(value: unknown): Clock {
  if (value === undefined) return defaultClock();
  if (typeof value !== 'function') throw new InvalidOptionError('clock', 'a function returning ms', value);
  return value as Clock;
}

/** `performance.now()`: monotonic, so wall-clock jumps (NTP, DST) never mint or destroy tokens. */
export function defaultClock(): Clock {
  // An arrow, not `performance.now.bind(performance)`: V8 inlines it into the hot path, a bound native is
  // a slower call on every decision.
  return () => performance.now();
}

/** Returns `value` when it is a boolean, else throws. */
export function booleanOption(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new InvalidOptionError(name, 'a boolean', value);
  return value;
}

/** Validates an `AbortSignal` option. */
export function signalOption(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw new InvalidOptionError('signal', 'an AbortSignal', value);
  return value;
}
