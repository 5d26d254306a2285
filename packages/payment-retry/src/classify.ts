import type { AttemptOutcome } from './errors.js';

/**
 * Failures that happen before a single byte of the request can have reached the bank: DNS, refused or
 * unreachable connections, connect timeouts, TLS handshake failures, and the floodgate gate/breaker
 * refusing the call. Retrying these is free of risk.
 */
const NOT_SENT_CODES = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'ERR_CIRCUIT_OPEN',
  'ERR_QUEUE_FULL',
  'ERR_RATE_LIMITED',
]);

/** Codes by which floodgate's gate and breaker say "not now", with a `retryAfterMs`. */
export const LOCAL_REJECTION_CODES: ReadonlySet<string> = new Set([
  'ERR_CIRCUIT_OPEN',
  'ERR_QUEUE_FULL',
  'ERR_RATE_LIMITED',
]);

/** The `code` of an error, looking through `cause` chains and AggregateError (happy eyeballs). */
export function errorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const { code } = current as { code?: unknown };
    if (typeof code === 'string') return code;
    const { errors } = current as { errors?: unknown };
    if (Array.isArray(errors) && errors.length > 0) {
      current = errors[0];
      continue;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Classifies an attempt that ended in an error instead of a response (idempotency.md, "Classify every
 * failed attempt"): `not_sent` when the bank cannot have seen it; otherwise `unknown` (sent, no
 * response: the bank may have charged). Anything we cannot place is `unknown`: the safe side.
 *
 * @example
 * classifyError(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })); //=> 'not_sent'
 * classifyError(Object.assign(new Error('timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' })); //=> 'unknown'
 */
export function classifyError(error: unknown): Exclude<AttemptOutcome, 'responded'> {
  const code = errorCode(error);
  return code !== undefined && NOT_SENT_CODES.has(code) ? 'not_sent' : 'unknown';
}

/** `retryAfterMs` carried by a rejection from floodgate's gate or breaker (or any error), if any. */
export function errorRetryAfterMs(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { retryAfterMs } = error as { retryAfterMs?: unknown };
  return typeof retryAfterMs === 'number' && Number.isFinite(retryAfterMs) && retryAfterMs >= 0
    ? retryAfterMs
    : undefined;
}
