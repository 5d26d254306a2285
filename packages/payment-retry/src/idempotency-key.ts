import { hash } from 'node:crypto';
import { IdempotencyKeyInvalidError, InvalidOptionError } from './errors.js';

/** The business identity a derived idempotency key stands for. */
export interface PaymentIdentity {
  /** Who is paid: one merchant's order ids never collide with another's. */
  readonly merchant: string;
  /** The business id of the order (not a request id: a repeated click carries the same one). */
  readonly orderId: string;
  /** Integer amount in minor units (cents). */
  readonly amount: number;
  /** ISO 4217 code, e.g. `EUR`. */
  readonly currency: string;
  /** Starts at 0 and changes only after a definitive decline, so a new try gets a new key. */
  readonly generation: number;
}

/** Keys are at least this long: below it, two orders could share a key. */
export const MIN_DERIVED_KEY_LENGTH = 16;

const NAMESPACE = 'floodgate/payment-retry/v1';

/**
 * Derives the idempotency key of one payment from its business identity: the same order, amount,
 * currency and generation always give the same key, in any process, after any restart.
 *
 * The key is a UUID (RFC 9562 version 8, built from SHA-256 of the identity), 36 characters that every
 * gateway accepts (Adyen allows 64, Stripe 255). When `maxLength` is below 36 the key is the hash in
 * lowercase hex cut to `maxLength` (at least 16 characters, 64 bits).
 *
 * @example
 * deriveIdempotencyKey({ merchant: 'shop', orderId: 'o-1', amount: 1250, currency: 'EUR', generation: 0 });
 * //=> '5b0e...-....-8...-....-............' (always the same for this identity)
 * @throws {InvalidOptionError} when a field of the identity or `maxLength` is malformed.
 */
export function deriveIdempotencyKey(identity: PaymentIdentity, maxLength = 255): string {
  if (!Number.isInteger(maxLength) || maxLength < MIN_DERIVED_KEY_LENGTH) {
    throw new InvalidOptionError('maxLength', `an integer >= ${MIN_DERIVED_KEY_LENGTH}`, maxLength);
  }
  if (!Number.isSafeInteger(identity.generation) || identity.generation < 0) {
    throw new InvalidOptionError('generation', 'a safe integer >= 0', identity.generation);
  }
  // JSON of an array keeps the fields apart: ('a|b','c') and ('a','b|c') cannot collide.
  const hex = hash(
    'sha256',
    JSON.stringify([
      NAMESPACE,
      identity.merchant,
      identity.orderId,
      identity.amount,
      identity.currency.toUpperCase(),
      identity.generation,
    ]),
    'hex',
  );
  if (maxLength < 36) return hex.slice(0, maxLength);
  // RFC 9562 section 5.8: version 8 in the high nibble of byte 6, variant 0b10 in the top bits of byte 8.
  // Written into one buffer and read out as one flat string: a template of five slices made a tree of
  // about ten string objects per key, and the memory ledger keeps every key for as long as it keeps the
  // payment, so each survived into the old generation (callgrind, bench path: see bench/README.md).
  const out = UUID_SCRATCH;
  for (let from = 0, to = 0; from < 32; from++, to++) {
    if (to === 8 || to === 13 || to === 18 || to === 23) out[to++] = DASH;
    out[to] = hex.charCodeAt(from);
  }
  out[14] = DIGIT_8;
  out[19] = HEX_DIGITS.charCodeAt((Number.parseInt(hex.charAt(16), 16) & 0x3) | 0x8);
  return out.toString('latin1', 0, 36);
}

const DASH = 0x2d;
const DIGIT_8 = 0x38;
const HEX_DIGITS = '0123456789abcdef';
/** One derived key's characters; reused, as a key is built and read out without yielding. */
const UUID_SCRATCH = Buffer.alloc(36);

/**
 * Whether `key` can travel as an idempotency key: 1..maxLength characters of visible ASCII, without the
 * two characters a Structured Field string would have to escape (`"` and `\`).
 */
export function isValidIdempotencyKey(key: unknown, maxLength = 255): key is string {
  if (typeof key !== 'string' || key.length === 0 || key.length > maxLength) return false;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}

/**
 * Asserts that `key` is an idempotency key a gateway whose longest key is `maxLength` accepts.
 *
 * @throws {IdempotencyKeyInvalidError} when `key` is not valid under `maxLength` (see isValidIdempotencyKey).
 */
export function assertIdempotencyKey(key: unknown, maxLength = 255): asserts key is string {
  if (!isValidIdempotencyKey(key, maxLength)) throw new IdempotencyKeyInvalidError(key, maxLength);
}
