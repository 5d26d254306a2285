/**
 * What one call's outcome says about the gateway's health.
 *
 * - `success`: the gateway is healthy; this includes definitive business answers such as a card
 *   declined (402) or a validation error (400): the bank answered, and answered correctly.
 * - `failure`: the gateway is sick or unreachable: 5xx, timeouts, connection errors, "outcome unknown".
 * - `throttled`: the gateway asked us to slow down (429, or 503 with `Retry-After`). Counts as a failure
 *   for the error rate, and when the breaker opens it stays open at least for the `Retry-After` asked.
 * - `ignored`: says nothing about the gateway (the caller aborted, a local rate limiter refused, an
 *   idempotency conflict). Not counted at all, and never taken as a successful half-open probe.
 */
export type OutcomeKind = 'success' | 'failure' | 'throttled' | 'ignored';

/**
 * Decides the {@link OutcomeKind} of a call from what it threw (`failed: true`) or returned
 * (`failed: false`). For `throttled`, the hold is read from the value's `retryAfterMs` field. One that
 * throws or returns anything else counts the call as a failure and is reported with an
 * `InvalidClassificationError` (see the breaker's `classify` option).
 */
export type Classifier = (errorOrResult: unknown, failed: boolean) => OutcomeKind;

/**
 * The fields of a thrown error (or returned response) the default classifier reads. The floodgate
 * payment client throws errors of this shape; undici's errors carry `code`.
 */
export interface GatewayOutcomeFields {
  /** HTTP status the gateway answered. */
  readonly statusCode?: number;
  /** `Retry-After` the gateway sent, in ms. */
  readonly retryAfterMs?: number;
  /** A Node or undici error code: `ECONNREFUSED`, `UND_ERR_HEADERS_TIMEOUT`, ... */
  readonly code?: string;
  /** Whether the request reached the gateway. */
  readonly outcome?: 'not_sent' | 'unknown' | 'responded';
}

// Refusals decided on this side of the wire (floodgate's own limiters, a nested breaker): they say
// nothing about the gateway, so they must neither trip the breaker nor pass for a healthy probe.
const LOCAL_REFUSAL_CODES: ReadonlySet<string> = new Set([
  'ERR_RATE_LIMITED',
  'ERR_QUEUE_FULL',
  'ERR_CIRCUIT_OPEN',
  'ERR_CIRCUIT_SHUTDOWN',
]);

// Connection and timeout codes of Node's net/dns/http and of undici. Any error with no HTTP status
// counts as a failure anyway; listing these makes them win over an `outcome` field that says otherwise
// (`ECONNREFUSED` with `outcome: 'not_sent'` is still a dead gateway).
const TRANSPORT_FAILURE_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'ERR_CIRCUIT_TIMEOUT',
]);

/**
 * The default {@link Classifier}, for payment gateways. Read the README's classification table; in
 * order:
 *
 * 1. returned without a numeric `statusCode` → `success`; a returned response with a `statusCode` is
 *    classified like a thrown one (`{ statusCode: 503 }` returned is a failure, though the call resolves);
 * 2. `code` of a local refusal (`ERR_RATE_LIMITED`, `ERR_QUEUE_FULL`, `ERR_CIRCUIT_OPEN`, ...) → `ignored`;
 * 3. `code` of a transport failure (`ECONNREFUSED`, `UND_ERR_HEADERS_TIMEOUT`, ...) → `failure`;
 * 4. `statusCode`: 429 → `throttled`; 503 with `retryAfterMs` → `throttled`; 408 and other 5xx →
 *    `failure`; 409 (the same idempotency key still in flight) → `ignored`; other 4xx, and < 400 →
 *    `success` (the gateway answered definitively);
 * 5. `outcome`: `unknown` → `failure`; `responded` → `success`; `not_sent` → `ignored`;
 * 6. anything else thrown (a plain `Error`, a bug, a non-object) → `failure`.
 *
 * @example
 * ```ts
 * // 404 from this endpoint means "no such payment yet": healthy, and so is everything else the default says.
 * const classify: Classifier = (value, failed) =>
 *   failed && (value as { statusCode?: number }).statusCode === 404 ? 'success' : classifyGatewayOutcome(value, failed);
 * ```
 */
export function classifyGatewayOutcome(errorOrResult: unknown, failed: boolean): OutcomeKind {
  if (typeof errorOrResult !== 'object' || errorOrResult === null) return failed ? 'failure' : 'success';
  const value = errorOrResult as GatewayOutcomeFields;
  const statusCode = value.statusCode;
  if (!failed && typeof statusCode !== 'number') return 'success';
  const code = value.code;
  if (typeof code === 'string') {
    if (LOCAL_REFUSAL_CODES.has(code)) return 'ignored';
    if (TRANSPORT_FAILURE_CODES.has(code)) return 'failure';
  }
  if (typeof statusCode === 'number') return classifyStatus(statusCode, value.retryAfterMs);
  switch (value.outcome) {
    case 'unknown':
      return 'failure';
    case 'responded':
      return 'success';
    case 'not_sent':
      return 'ignored';
    default:
      return failed ? 'failure' : 'success';
  }
}

function classifyStatus(statusCode: number, retryAfterMs: number | undefined): OutcomeKind {
  if (statusCode === 429) return 'throttled';
  if (statusCode === 503) return isHold(retryAfterMs) ? 'throttled' : 'failure';
  if (statusCode === 408) return 'failure';
  if (statusCode === 409) return 'ignored';
  if (statusCode >= 500) return 'failure';
  return 'success';
}

/** The `retryAfterMs` field of a thrown error or returned response, when it is a usable hold. */
export function retryAfterOf(errorOrResult: unknown): number {
  if (typeof errorOrResult !== 'object' || errorOrResult === null) return 0;
  const retryAfterMs = (errorOrResult as GatewayOutcomeFields).retryAfterMs;
  return isHold(retryAfterMs) ? retryAfterMs : 0;
}

function isHold(value: unknown): value is number {
  return typeof value === 'number' && value >= 0 && Number.isFinite(value);
}
