/**
 * Parses a `Retry-After` value (RFC 9110 section 10.2.3: delay-seconds or an HTTP-date) into ms.
 * Returns undefined when absent or malformed. `nowMs` is wall-clock time (the header is wall-clock).
 *
 * @example
 * parseRetryAfter('2'); //=> 2000
 */
export function parseRetryAfter(
  value: string | string[] | undefined,
  nowMs = Date.now(),
): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined) return undefined;
  const text = raw.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // Sub-second delays are not in the RFC, but some gateways (and simulators) send them.
  if (/^\d*\.\d+$/.test(text)) return Math.round(Number(text) * 1000);
  // Only an IMF-fixdate-like text is a date; Date.parse would also take '-1' as a year.
  if (!/^[A-Za-z]{3},/.test(text)) return undefined;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}
