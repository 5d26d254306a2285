import { InvalidOptionError } from './errors.js';

/** Describes a value for a validation message: `` `0` (number) ``. */
export function describe(value: unknown): string {
  if (typeof value === 'function') return `\`${value.name || 'anonymous'}\` (function)`;
  if (typeof value === 'string') return `\`${JSON.stringify(value)}\` (string)`;
  if (value === null) return '`null`';
  if (Array.isArray(value)) {
    // Method and header names: worth showing. Anything holding objects is only counted.
    if (!value.every((item) => item === null || typeof item !== 'object'))
      return `(array of ${value.length})`;
    const shown = JSON.stringify(value.map((item) => (typeof item === 'bigint' ? String(item) : item)));
    return `\`${shown.length > 60 ? `${shown.slice(0, 57)}...` : shown}\` (array)`;
  }
  if (typeof value === 'object') {
    // Key names only: an options object may hold secrets (a Redis URL with its password), and reading
    // its values could run getters or toJSON.
    const keys = Object.keys(value);
    if (keys.length === 0) return '`{}` (object)';
    const shown = keys.length > 6 ? `${keys.slice(0, 6).join(', ')}, ...` : keys.join(', ');
    return `\`{ ${shown} }\` (object)`;
  }
  return `\`${String(value)}\` (${typeof value})`;
}

/**
 * The `InvalidOptionError` naming the option, what was expected and what came (for the adapters, whose
 * own options must read the same as the core's).
 * @example throw invalidOption('global', 'a boolean', 'yes'); // Expected `global` to be a boolean, got `"yes"` (string)
 */
export function invalidOption(option: string, expected: string, value: unknown): InvalidOptionError {
  return new InvalidOptionError(option, `Expected \`${option}\` to be ${expected}, got ${describe(value)}`);
}

/** Throws `InvalidOptionError` naming the option, what was expected and what came. */
export function fail(option: string, expected: string, value: unknown): never {
  throw invalidOption(option, expected, value);
}

/** An HTTP token (RFC 9110 §5.6.2): a field name or a method. */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Rejects option keys the entry point does not know: a typo must fail at start-up, not be ignored.
 * `hints` says what to use instead of a name another library uses (``Unknown option `max` for
 * rateLimit(); it is `limit` here; expected one of ...``).
 */
export function rejectUnknownKeys(
  options: object,
  known: readonly string[],
  where: string,
  hints?: Readonly<Record<string, string>>,
): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const hint = hints !== undefined && Object.hasOwn(hints, key) ? `; ${hints[key]}` : '';
      throw new InvalidOptionError(
        key,
        `Unknown option \`${key}\` for ${where}${hint}; expected one of ${known.map((k) => `\`${k}\``).join(', ')}`,
      );
    }
  }
}

export function checkObject(option: string, value: unknown): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(option, 'an object', value);
}

export function checkNumber(
  option: string,
  value: unknown,
  min: number,
  max = Number.POSITIVE_INFINITY,
): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    const range = max === Number.POSITIVE_INFINITY ? `>= ${min}` : `between ${min} and ${max}`;
    fail(option, `a finite number ${range}`, value);
  }
  return value;
}

export function checkInteger(
  option: string,
  value: unknown,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(option, `an integer between ${min} and ${max}`, value);
  }
  return value;
}

export function checkFunction<T>(option: string, value: unknown): T {
  if (typeof value !== 'function') fail(option, 'a function', value);
  return value as T;
}

export function checkBoolean(option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail(option, 'a boolean', value);
  return value;
}

export function checkOneOf<T extends string | number | boolean>(
  option: string,
  value: unknown,
  allowed: readonly T[],
): T {
  if (!allowed.includes(value as T))
    fail(option, `one of ${allowed.map((a) => `\`${String(a)}\``).join(', ')}`, value);
  return value as T;
}
