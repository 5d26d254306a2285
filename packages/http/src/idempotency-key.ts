import { IdempotencyKeyError } from './errors.js';
import { trimOws } from './field-value.js';

/** Longest accepted key, in characters: Stripe's limit, the strictest common gateway one is Adyen's 64. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

// A raw field longer than this cannot hold a valid key even fully escaped; refuse it before any parsing.
const MAX_FIELD_LENGTH = 2 * MAX_IDEMPOTENCY_KEY_LENGTH + 2;
const SF_STRING_CHAR = /^[\x20-\x21\x23-\x5b\x5d-\x7e]$/;
// RFC 9110 tchar plus ":" and "/" (sf-token's tail); a UUID is one, so is a ULID or a base64url id.
const BARE_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z:/]+$/;

/**
 * Parses an `Idempotency-Key` field value: a Structured Field string (`"8e03978e-..."`, as
 * draft-ietf-httpapi-idempotency-key-header requires) or, as a kindness, a bare token (`8e03978e-...`).
 *
 * @returns the key, or `undefined` when the header is absent.
 * @throws {IdempotencyKeyError} (`ERR_IDEMPOTENCY_KEY_INVALID`, `reason`) when the header is sent more than
 *   once, is empty, is not a string, is longer than 255 characters or is malformed.
 * @example
 * parseIdempotencyKey('"order-42"') // 'order-42'
 * parseIdempotencyKey('order-42')   // 'order-42'
 * parseIdempotencyKey('')           // throws, reason 'empty'
 */
export function parseIdempotencyKey(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) {
    if (value.length === 1) return parseIdempotencyKey(value[0]);
    throw new IdempotencyKeyError('malformed', 'The Idempotency-Key header must be sent at most once');
  }
  if (typeof value !== 'string') {
    throw new IdempotencyKeyError('not-a-string', 'The Idempotency-Key header must be a string');
  }
  // Only SP and HTAB are whitespace around a field (trimOws): `k<NBSP>` is not the key `k`.
  const field = trimOws(value);
  if (field === '' || field === '""') {
    throw new IdempotencyKeyError('empty', 'The Idempotency-Key header must not be empty');
  }
  if (field.length > MAX_FIELD_LENGTH) throw tooLong();
  let key: string;
  if (field.charCodeAt(0) === 0x22) {
    key = parseSfString(field);
  } else {
    if (!BARE_TOKEN.test(field)) {
      throw new IdempotencyKeyError(
        'malformed',
        'The Idempotency-Key header must be a quoted string ("...") or a token, sent at most once',
      );
    }
    key = field;
  }
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) throw tooLong();
  if (key === '') throw new IdempotencyKeyError('empty', 'The Idempotency-Key header must not be empty');
  return key;
}

function tooLong(): IdempotencyKeyError {
  return new IdempotencyKeyError(
    'too-long',
    `The Idempotency-Key header must be at most ${MAX_IDEMPOTENCY_KEY_LENGTH} characters long`,
  );
}

/** RFC 8941 section 4.2.5, strict: nothing may follow the closing quote (so a second key is refused). */
function parseSfString(field: string): string {
  let key = '';
  for (let i = 1; i < field.length; i += 1) {
    const char = field[i] as string;
    if (char === '\\') {
      const next = field[i + 1];
      if (next !== '"' && next !== '\\') break;
      key += next;
      i += 1;
    } else if (char === '"') {
      if (i !== field.length - 1) break;
      return key;
    } else if (SF_STRING_CHAR.test(char)) {
      key += char;
    } else {
      break;
    }
  }
  throw new IdempotencyKeyError(
    'malformed',
    'The Idempotency-Key header must be a single Structured Field string of printable ASCII',
  );
}
