/**
 * What the core reads to tell whether a Node response has closed. HTTP/1's `ServerResponse` says so in
 * `closed`; Node's HTTP/2 compatibility response (`Fastify({ http2: true })`) has no `closed` (nor
 * `destroyed`): only its `stream` knows.
 */
export interface ClosableResponse {
  /** True once the response has closed (HTTP/1: Node's `res.closed`). */
  readonly closed?: boolean;
  /** An HTTP/2 compatibility response's stream; closed or destroyed once its client reset it. */
  readonly stream?: {
    /** The stream has closed. */
    readonly closed: boolean;
    /** The stream was destroyed (a reset stream may say so before `closed`). */
    readonly destroyed: boolean;
  };
}

/**
 * Whether a Node response has closed: answered, or its client gone. Read as `closed === true` alone, an
 * HTTP/2 stream the client had reset (RST_STREAM) looked open, and a listener added for its `close`, which
 * had fired already, waited for ever: a load-shedding slot was never freed, a coalescing duplicate waited
 * for `coalesceTimeoutMs`, and `skipFailedRequests` never gave the token back.
 */
export function responseClosed(response: ClosableResponse): boolean {
  if (response.closed !== undefined) return response.closed;
  const stream = response.stream;
  return stream !== undefined && (stream.closed || stream.destroyed);
}
