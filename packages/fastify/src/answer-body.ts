/**
 * The body of an answer the core made, as `reply.send()` must get it to send it unchanged. Fastify adds
 * `; charset=utf-8` to the content type of a string payload whose type names no charset, so the core's
 * `application/problem+json` answers (400, 409, 422, 503, a 429 through `denials: 'reply'`) would differ
 * from what Express sends; a replay must also go out as it was stored. A Buffer is sent as it is. Only on paths that are not hot: refusals through
 * `denials: 'reply'` and idempotency answers (replays, 400, 409, 422).
 */
export function answerBody(body: string | Uint8Array): Uint8Array | undefined {
  // An empty answer goes out as no payload: an empty Buffer would be labelled application/octet-stream
  // (and an empty string text/plain), where the original answer had no content type at all.
  if (body.length === 0) return undefined;
  return typeof body === 'string' ? Buffer.from(body) : body;
}
