import { createHash } from 'node:crypto';

/** What a request fingerprint is made of. */
export interface FingerprintInput {
  readonly method: string;
  /** Path and query string: the same key sent to another endpoint is another payload. */
  readonly url: string;
  /** The parsed body (any JSON value), or the raw body as a string or bytes, or `undefined`. */
  readonly body?: unknown;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * JSON with object keys sorted at every depth, so `{"a":1,"b":2}` and `{"b":2,"a":1}` are the same
 * payload. Array order is kept: it is meaningful.
 */
export function canonicalJson(value: unknown): string {
  return (
    JSON.stringify(value, (_key, inner: unknown) => {
      if (!isPlainObject(inner)) return inner;
      const sorted: Record<string, unknown> = {};
      for (const name of Object.keys(inner).sort()) sorted[name] = inner[name];
      return sorted;
    }) ?? 'undefined'
  );
}

/**
 * A SHA-256 fingerprint (base64url) of a request: method, URL and body, independent of JSON key order.
 * Raw bodies (string, Buffer, Uint8Array) are hashed byte for byte.
 *
 * @example
 * requestFingerprint({ method: 'POST', url: '/checkout', body: { a: 1, b: 2 } }) ===
 *   requestFingerprint({ method: 'POST', url: '/checkout', body: { b: 2, a: 1 } }) // true
 */
export function requestFingerprint(input: FingerprintInput): string {
  const hash = createHash('sha256');
  hash.update(input.method.toUpperCase()).update('\n').update(input.url).update('\n');
  const { body } = input;
  if (body === undefined) hash.update('u');
  else if (typeof body === 'string') hash.update('s').update(body);
  else if (body instanceof Uint8Array) hash.update('b').update(body);
  else hash.update('j').update(canonicalJson(body));
  return hash.digest('base64url');
}
