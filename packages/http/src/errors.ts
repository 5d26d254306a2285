/**
 * Base class of every error @floodgate/http throws. Callers branch on `code` (stable) or `instanceof`,
 * never on the message text.
 */
export class FloodgateHttpError extends Error {
  /** A stable, machine-readable code such as `ERR_INVALID_OPTION`. */
  readonly code: string;

  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * An option given to a factory or constructor is missing, of the wrong type or out of range. Thrown at
 * set-up, never per request.
 */
export class InvalidOptionError extends FloodgateHttpError {
  /** The option that was rejected, e.g. `ipv6Subnet`. */
  readonly option: string;

  constructor(option: string, message: string) {
    super(message, 'ERR_INVALID_OPTION');
    this.option = option;
  }
}

/**
 * The `Idempotency-Key` request header is malformed: empty, longer than 255 characters, sent more than
 * once, or neither a Structured Field string nor a bare token. Answered with 400.
 */
export class IdempotencyKeyError extends FloodgateHttpError {
  /** HTTP status the request is answered with. */
  readonly statusCode = 400;
  /** Why the key was rejected. */
  readonly reason: IdempotencyKeyProblem;

  constructor(reason: IdempotencyKeyProblem, message: string) {
    super(message, 'ERR_IDEMPOTENCY_KEY_INVALID');
    this.reason = reason;
  }
}

/** Why an `Idempotency-Key` header was rejected. */
export type IdempotencyKeyProblem = 'missing' | 'empty' | 'too-long' | 'malformed' | 'not-a-string';

/**
 * A store (rate-limit or idempotency) failed and the middleware was not told to pass on store errors.
 * Answered with 503 and `Retry-After`, never a 500.
 */
export class StoreUnavailableError extends FloodgateHttpError {
  /** HTTP status the request is answered with. */
  readonly statusCode = 503;
  /** Ms after which a retry may find the store back, for `Retry-After` (rounded up to seconds). */
  readonly retryAfterMs: number;

  constructor(message: string, retryAfterMs: number, options?: { cause?: unknown }) {
    super(message, 'ERR_STORE_UNAVAILABLE', options);
    this.retryAfterMs = retryAfterMs;
  }
}

/** Longest part of a string cost a message quotes. */
const QUOTED_COST_LENGTH = 64;

/**
 * What a cost function answered, for a message. A cost may be a field of the request (`req.body.quantity`
 * is a common slip), so a string is quoted only in part, and nothing is converted with `String()`: a body's
 * `{"toString":1}` cannot be, and the constructor would throw instead of the check rejecting.
 */
function describeCost(cost: unknown): string {
  if (typeof cost === 'string') {
    const shown = cost.length > QUOTED_COST_LENGTH ? `${cost.slice(0, QUOTED_COST_LENGTH)}…` : cost;
    return `\`${JSON.stringify(shown)}\` (string)`;
  }
  if (typeof cost === 'number' || typeof cost === 'bigint' || typeof cost === 'boolean') {
    return `\`${String(cost)}\` (${typeof cost})`;
  }
  if (cost === null) return '`null`';
  return Array.isArray(cost) ? 'an array' : typeof cost;
}

/**
 * A `cost` function returned something a request cannot cost: not a number, not above 0, or more than
 * the smallest policy's `limit` (a bucket could never hold it). The request's check rejects with it, for
 * the framework's error handler: it is the application's mistake, not the client's.
 */
export class InvalidCostError extends FloodgateHttpError {
  /** What the cost function returned. */
  readonly cost: unknown;
  /** The largest cost a request may have: the smallest policy's `limit`. */
  readonly maxCost: number;

  constructor(cost: unknown, maxCost: number) {
    super(
      `Expected \`cost\` to return a number > 0 and <= ${maxCost}, got ${describeCost(cost)}`,
      'ERR_INVALID_COST',
    );
    this.cost = cost;
    this.maxCost = maxCost;
  }
}

/**
 * An idempotency `scope` function answered something that is no user id: an object (`req.user` where
 * `req.user.id` was meant), an array, a boolean, a number that is not finite. Written as text, every such
 * answer would be the same (`[object Object]`): every user one scope, and one user replayed another's
 * stored response. The request is not processed; the adapters pass the error to the framework's error
 * handler (a 500), as for a `key` function's bad answer.
 */
export class InvalidScopeError extends FloodgateHttpError {
  /** What the scope function answered. */
  readonly scope: unknown;

  constructor(scope: unknown) {
    const kind = scope === null ? 'null' : Array.isArray(scope) ? 'an array' : typeof scope;
    super(
      `Expected \`scope\` to return a string, a finite number, or undefined/null/'' for no user, got ${
        typeof scope === 'number' || typeof scope === 'boolean'
          ? `\`${String(scope)}\` (${typeof scope})`
          : kind
      }`,
      'ERR_INVALID_SCOPE',
    );
    this.scope = scope;
  }
}

/**
 * A `key` function answered what cannot name a bucket: not a string, a finite number or `undefined`.
 * `RateLimit.check` rejects with it, for the framework's error handler (a mistake in the app, not a
 * store that is down: answering 503 `ERR_STORE_UNAVAILABLE` for it would send every client away).
 */
export class InvalidKeyError extends FloodgateHttpError {
  /** What the key function answered. */
  readonly key: unknown;

  constructor(key: unknown) {
    const kind = key === null ? 'null' : Array.isArray(key) ? 'an array' : typeof key;
    super(
      `Expected \`key\` to return a string, a finite number or undefined, got ${
        typeof key === 'number' ? `\`${String(key)}\` (number)` : kind
      }`,
      'ERR_INVALID_KEY',
    );
    this.key = key;
  }
}
