// tchar (RFC 9110) plus ':' and '/', which Structured Field tokens allow.
const BARE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z:/]+$/;
// sf-string (RFC 8941 §3.3.3): printable ASCII, with `"` and `\` escaped.
const QUOTED = /^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$/;
const ESCAPE = /\\(["\\])/g;

/**
 * Parses an `Idempotency-Key` header value: a Structured Field string (`"abc"`, the draft's form) or,
 * as a kindness, a bare token (`abc`, a UUID). Undefined when the value is malformed, empty, longer
 * than `maxLength` or carries several keys (Node joins repeated headers with `, `, which is neither form).
 */
export function parseIdempotencyKey(value: string, maxLength: number): string | undefined {
  if (value.charCodeAt(0) === 34 /* " */) {
    const match = QUOTED.exec(value);
    if (match === null) return undefined;
    const key = (match[1] as string).includes('\\') ? (match[1] as string).replace(ESCAPE, '$1') : match[1];
    return key !== undefined && key.length > 0 && key.length <= maxLength ? key : undefined;
  }
  return value.length <= maxLength && BARE.test(value) ? value : undefined;
}
