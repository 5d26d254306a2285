import type { FastifyReply } from 'fastify';

/** What an HTTP/2 compatibility response has instead of `closed`: its stream. */
interface StreamResponse {
  readonly stream?: { readonly closed: boolean; readonly destroyed: boolean };
}

/**
 * Whether the Node response under a reply has closed: answered, or its client gone. HTTP/1's
 * `ServerResponse` says so in `closed`; Node's HTTP/2 compatibility response (`Fastify({ http2: true })`)
 * has no `closed` (nor `destroyed`), only its stream knows. Read as `raw.closed === true`, a stream the
 * client had reset (RST_STREAM) looked open, and a listener added for its `close`, which had fired
 * already, waited for ever: a load-shedding slot was never freed, a coalescing duplicate waited for
 * `coalesceTimeoutMs`, and `skipFailedRequests` never gave the token back.
 */
export function responseClosed(raw: FastifyReply['raw']): boolean {
  const closed = (raw as { readonly closed?: boolean }).closed;
  if (closed !== undefined) return closed;
  const stream = (raw as StreamResponse).stream;
  return stream !== undefined && (stream.closed || stream.destroyed);
}
