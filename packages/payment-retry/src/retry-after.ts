const ASCTIME = /^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;

/**
 * Parses a `Retry-After` value (RFC 9110 section 10.2.3: delay-seconds or an HTTP-date) into ms.
 * Returns undefined when absent or malformed. `nowMs` is wall-clock time (the header is wall-clock).
 * The delay is as large as the sender wrote it (up to `Infinity` for 400 digits): cap it before a
 * `setTimeout`, which fires at once for more than 2147483647 ms (the payment client caps what it waits).
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
  // Only an HTTP-date-like text is a date; Date.parse would also take '-1' as a year. RFC 9110 section
  // 5.6.7: a recipient MUST accept the IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and the obsolete
  // RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`) forms. asctime
  // has no zone, and Date.parse would read it as local time: it is GMT.
  let date: number;
  if (/^[A-Za-z]{3,9},/.test(text)) date = Date.parse(text);
  else if (ASCTIME.test(text)) date = Date.parse(`${text} GMT`);
  else return undefined;
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}
