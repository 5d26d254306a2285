import type { ServerResponse } from 'node:http';
import type { HttpAnswer } from '@floodgate/http';

/**
 * Writes an answer the core decided on with Node's own response API, so it costs the same on Express 4
 * and 5 and skips Express's ETag and content negotiation (a 429 must be cheaper than the route it
 * protects).
 */
export function sendAnswer(res: ServerResponse, answer: HttpAnswer): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const status = answer.status;
  res.statusCode = status;
  for (const name in answer.headers) res.setHeader(name, answer.headers[name] as string);
  // A replayed 204 or 304 has no content (RFC 9110 8.6, 15.4.5): it must not claim `Content-Length: 0`
  // (a 304's would have to be the 200's length), and Node would not send a body anyway.
  if (status === 204 || status === 304) {
    res.end();
    return;
  }
  const body = answer.body;
  // A string: Node checks a field value with a regular expression, and one given a number goes the slow
  // way through RegExp.prototype.test.
  res.setHeader(
    'content-length',
    String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength),
  );
  res.end(body);
}

/** Sets header fields on a response that has not been sent yet. */
export function setHeaders(res: ServerResponse, headers: ReadonlyArray<readonly [string, string]>): void {
  if (res.headersSent) return;
  for (let i = 0; i < headers.length; i += 1) {
    const field = headers[i] as readonly [string, string];
    res.setHeader(field[0], field[1]);
  }
}
