import type { FastifyReply } from 'fastify';

/** The fields set with `reply.header()` and not yet sent, by lower-case name. */
export type ReplyFieldMap = Record<string, unknown>;

/**
 * Where Fastify keeps the fields set with `reply.header()` until it sends: a plain object under a symbol of
 * its own, `fastify.reply.headers` (Fastify 5). Found once, by the symbol's description, on the first
 * reply asked about; a Fastify without it, or with something else under it, gets `undefined`, and callers
 * go through the public API instead (`reply.header()`, `reply.getHeaders()`).
 *
 * Why not the public API: `reply.getHeaders()` copies the reply's and the raw response's fields into a
 * new object (about 1.2k instructions per refusal under callgrind), and `reply.header()` lower-cases the
 * name and checks for `set-cookie` on every call (about 200 instructions per field), where floodgate's
 * RateLimit fields are lower-case and never `set-cookie`: for them writing the object is exactly what
 * `reply.header()` does.
 */
export class ReplyFields {
  /** Undefined until the first lookup; null when this Fastify has no such symbol. */
  #symbol: symbol | null | undefined;

  /** The reply's pending-field object, or undefined when this Fastify keeps its fields elsewhere. */
  of(reply: FastifyReply): ReplyFieldMap | undefined {
    // Not `??=`: a Fastify without the symbol (null) must not be searched again on every reply.
    if (this.#symbol === undefined) this.#symbol = fieldsSymbol(reply);
    if (this.#symbol === null) return undefined;
    return (reply as unknown as Record<symbol, ReplyFieldMap>)[this.#symbol];
  }
}

function fieldsSymbol(reply: FastifyReply): symbol | null {
  for (const symbol of Object.getOwnPropertySymbols(reply)) {
    if (symbol.description !== 'fastify.reply.headers') continue;
    const value = (reply as unknown as Record<symbol, unknown>)[symbol];
    if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
      return symbol;
    }
  }
  return null;
}
