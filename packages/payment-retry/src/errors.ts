/** Why an attempt failed, as far as the bank's side effects are concerned (see the README). */
export type AttemptOutcome = 'not_sent' | 'unknown' | 'responded';

/**
 * Base class of every error @floodgate/payment-retry throws. Branch on `code`, never on the message.
 */
export class PaymentRetryError extends Error {
  /** Stable machine-readable code, e.g. `ERR_INVALID_OPTION`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** An option or argument has the wrong type or value. Thrown synchronously, at set-up or call time. */
export class InvalidOptionError extends PaymentRetryError {
  /** The option that is wrong, e.g. `retry.maxAttempts`. */
  readonly option: string;

  constructor(option: string, expected: string, value: unknown) {
    super('ERR_INVALID_OPTION', `Expected \`${option}\` to be ${expected}, got ${describe(value)}`);
    this.option = option;
  }
}

/**
 * The same order was paid again with a different amount, currency, payer or gateway fields while an
 * earlier payment of it is in flight or paid, or a caller-given key already belongs to another order.
 * Nothing was sent.
 */
export class PaymentMismatchError extends PaymentRetryError {
  /** The order paid again. */
  readonly orderId: string;
  /**
   * The key of the payment in conflict: the one in flight or paid for the order (for a concurrent call,
   * once the call in flight has derived it), or, for a caller-given key, the other order's payment.
   */
  readonly idempotencyKey: string;

  constructor(message: string, orderId: string, idempotencyKey: string) {
    super('ERR_PAYMENT_MISMATCH', message);
    this.orderId = orderId;
    this.idempotencyKey = idempotencyKey;
  }
}

/** A caller-given idempotency key breaks the gateway adapter's rules (length, characters). */
export class IdempotencyKeyInvalidError extends PaymentRetryError {
  /** The gateway adapter's longest key, in characters. */
  readonly maxLength: number;

  constructor(key: unknown, maxLength: number) {
    super(
      'ERR_IDEMPOTENCY_KEY_INVALID',
      `Expected the idempotency key to be 1..${maxLength} visible ASCII characters without '"' or '\\', got ${describe(key)}`,
    );
    this.maxLength = maxLength;
  }
}

/** `pay()` or `recover()` was called after `close()`. */
export class ClientClosedError extends PaymentRetryError {
  constructor() {
    super('ERR_CLIENT_CLOSED', 'The payment client is closed');
  }
}

/**
 * The better-sqlite3 that would be loaded cannot run on this Node.js: better-sqlite3 13 declares Node >= 22
 * and crashes the process (segmentation fault) on Node 20 when it opens a database. Thrown by
 * `sqliteLedger({ path })` before it opens anything, so the crash becomes an error that says what to install.
 */
export class SqliteDriverUnsupportedError extends PaymentRetryError {
  /** The running Node.js, e.g. `20.20.2`. */
  readonly nodeVersion: string;
  /** The better-sqlite3 version found, e.g. `13.2.0`. */
  readonly driverVersion: string;

  constructor(nodeVersion: string, driverVersion: string) {
    super(
      'ERR_SQLITE_DRIVER_UNSUPPORTED',
      `better-sqlite3 ${driverVersion} needs Node.js >= 22 and crashes on Node.js ${nodeVersion}; install ` +
        'better-sqlite3 12 for this Node (npm picks it by itself; with pnpm add "pnpm": { "overrides": ' +
        '{ "better-sqlite3": "^12.6.2" } } to package.json, with yarn "resolutions": { "better-sqlite3": "^12.6.2" })',
    );
    this.nodeVersion = nodeVersion;
    this.driverVersion = driverVersion;
  }
}

/**
 * One failed attempt, shaped so a circuit breaker can classify it (the fields the floodgate contract
 * names: `statusCode`, `retryAfterMs`, `code`, `outcome`). Thrown inside the breaker's `execute` and
 * caught by the client; it never reaches the caller of `pay()`.
 */
export class AttemptError extends PaymentRetryError {
  /** `not_sent`: the bank cannot have seen it; `unknown`: sent, no answer; `responded`: the bank answered. */
  readonly outcome: AttemptOutcome;
  /** HTTP status the gateway answered, when it answered. */
  readonly statusCode: number | undefined;
  /** The wait the gateway asked for (`Retry-After`), in ms. */
  readonly retryAfterMs: number | undefined;

  constructor(
    code: string,
    message: string,
    fields: { outcome: AttemptOutcome; statusCode?: number | undefined; retryAfterMs?: number | undefined },
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.outcome = fields.outcome;
    this.statusCode = fields.statusCode;
    this.retryAfterMs = fields.retryAfterMs;
  }
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return `\`${JSON.stringify(value).slice(1, -1)}\` (string)`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return `\`${String(value)}\` (${typeof value})`;
  }
  if (value === null) return '`null`';
  if (value === undefined) return '`undefined`';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}
