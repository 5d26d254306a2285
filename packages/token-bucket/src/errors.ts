/**
 * The base class of every error `@floodgate/token-bucket` throws. Branch on `code` (stable) or on
 * `instanceof`, never on the message.
 */
export class TokenBucketError extends Error {
  /** A stable, machine-readable code such as `ERR_RATE_LIMITED`. */
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A caller's mistake: an option or argument that is out of range, of the wrong type, or unknown.
 * Thrown at construction or at the call, never after waiting.
 */
export class InvalidOptionError extends TokenBucketError {
  declare readonly code: 'ERR_INVALID_OPTION';
  /** The option or argument at fault, e.g. `capacity` or `n`. */
  readonly option: string;
  /** The value that was given. */
  readonly value: unknown;

  constructor(option: string, expected: string, value: unknown) {
    super('ERR_INVALID_OPTION', `Expected \`${option}\` to be ${expected}, got ${describe(value)}`);
    this.option = option;
    this.value = value;
  }
}

/** The tokens cannot be granted within the allowed wait (`maxWaitMs`). Rejected at once, not after waiting. */
export class RateLimitedError extends TokenBucketError {
  declare readonly code: 'ERR_RATE_LIMITED';
  /** Ms after which a retry has a fair chance to be admitted (for `Retry-After`). */
  readonly retryAfterMs: number;

  constructor(retryAfterMs: number, message = `Rate limited: retry after ${retryAfterMs} ms`) {
    super('ERR_RATE_LIMITED', message);
    this.retryAfterMs = retryAfterMs;
  }
}

/** The wait queue is full: the call was shed at once. */
export class QueueFullError extends TokenBucketError {
  declare readonly code: 'ERR_QUEUE_FULL';
  /** Ms after which the queue is expected to have room again (an estimate, for `Retry-After`). */
  readonly retryAfterMs: number;
  /** The queue bound that was reached. */
  readonly maxQueue: number;

  constructor(maxQueue: number, retryAfterMs: number) {
    super('ERR_QUEUE_FULL', `Queue full (${maxQueue} waiting): retry after ${retryAfterMs} ms`);
    this.maxQueue = maxQueue;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The store behind a limiter failed (for example Redis is unreachable); the original error is `cause`. */
export class StoreUnavailableError extends TokenBucketError {
  declare readonly code: 'ERR_STORE_UNAVAILABLE';

  constructor(message: string, options?: ErrorOptions) {
    super('ERR_STORE_UNAVAILABLE', message, options);
  }
}

/** The limiter or gate was closed: pending waiters are rejected with this, and so are later calls. */
export class ClosedError extends TokenBucketError {
  declare readonly code: 'ERR_CLOSED';

  constructor(what: string) {
    super('ERR_CLOSED', `${what} is closed`);
  }
}

/** Renders a value for a validation message: `` `0` (number) ``. */
export function describe(value: unknown): string {
  let shown: string;
  if (typeof value === 'string') shown = JSON.stringify(value);
  else if (typeof value === 'bigint') shown = `${value}n`;
  else if (typeof value === 'function') shown = value.name ? `function ${value.name}` : 'function';
  else if (value !== null && typeof value === 'object') shown = shape(value);
  else shown = String(value);
  const type = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  return `\`${shown}\` (${type})`;
}

/**
 * An object by its key names, never its values: options may hold secrets (a Redis URL with a password)
 * and reading values could run getters or `toJSON`. An array of plain values is shown as it is.
 */
function shape(value: object): string {
  if (Array.isArray(value)) {
    if (value.some((item) => item !== null && typeof item === 'object')) return `[${value.length} items]`;
    try {
      return JSON.stringify(value);
    } catch {
      return `[${value.length} items]`; // a BigInt inside
    }
  }
  const keys = Object.keys(value);
  if (keys.length === 0) return '{}';
  return `{ ${keys.length > 6 ? `${keys.slice(0, 6).join(', ')}, ...` : keys.join(', ')} }`;
}
