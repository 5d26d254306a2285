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
  res.statusCode = answer.status;
  for (const name in answer.headers) res.setHeader(name, answer.headers[name] as string);
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
