import { type HttpAnswer, InvalidOptionError } from '@floodgate/http';
import type { FastifyReply } from 'fastify';

/**
 * How the plugins send a refusal (a 429 or a shedding 503).
 * - `'raw'`: on Node's response after `reply.hijack()`, in one `writeHead`. Fields set earlier with
 *   `reply.header()` or on `reply.raw` (CORS, say) are kept unless the refusal sets the same field, and
 *   `onResponse` hooks still run, but `onSend` hooks never see the refusal. Under a flood of refused
 *   requests Fastify's send path, not the decision, is the cost: on it a refusal costs more than the bare
 *   route it protects (instructions per request under callgrind, bench/README.md).
 * - `'reply'`: through `reply.send()`, so `onSend` hooks see it too.
 */
export type Denials = 'raw' | 'reply';

/** Validates the `denials` option. @throws {InvalidOptionError} naming the option and the value. */
export function checkDenials(value: unknown): Denials {
  if (value !== 'raw' && value !== 'reply') {
    throw new InvalidOptionError(
      'denials',
      `Expected \`denials\` to be 'raw' or 'reply', got \`${String(value)}\``,
    );
  }
  return value;
}

/** Fields of a refusal, in the order they win: the RateLimit ones, then the answer's own. */
type Fields = ReadonlyArray<readonly [string, string]>;

const NO_FIELDS: Fields = Object.freeze([]);

/**
 * Sends the refusals of one plugin the way `denials` says: `first` fields (the RateLimit ones) and the
 * answer, raw or through `reply.send()`.
 */
export class RefusalSender {
  readonly #denials: Denials;
  // A one-entry cache of the flat field list: the core hands out the same frozen answer and fields again
  // while a refusal reads the same (LastRefusal in @floodgate/http), so under a flood of refusals the list
  // is built once per change, not per request. Compared by identity: nothing stale can come back.
  #lastAnswer: HttpAnswer | undefined;
  #lastFirst: Fields | undefined;
  #lastList: readonly string[] = [];
  /** See replyHeadersSymbol: looked up on the first refusal; null when this Fastify has none. */
  #replyHeaders: symbol | null | undefined;

  constructor(denials: Denials) {
    this.#denials = checkDenials(denials);
  }

  /** Sends `answer` with `first` fields (they win over the answer's own) and ends the request. */
  send(reply: FastifyReply, answer: HttpAnswer, first: Fields = NO_FIELDS): void {
    if (this.#denials === 'reply') {
      for (let i = 0; i < first.length; i += 1) {
        const field = first[i] as readonly [string, string];
        reply.header(field[0], field[1]);
      }
      reply.code(answer.status).headers(answer.headers).send(answer.body);
      return;
    }
    reply.hijack();
    const raw = reply.raw;
    if (raw.headersSent) {
      raw.end();
      return;
    }
    let list: readonly unknown[] = this.#lastList;
    if (answer !== this.#lastAnswer || first !== this.#lastFirst) {
      this.#lastList = flatFields(answer, first);
      this.#lastAnswer = answer;
      this.#lastFirst = first;
      list = this.#lastList;
    }
    // Fields set earlier on `reply.raw` need nothing here: given a list, Node's writeHead lets the list's
    // fields replace them and keeps the rest. Those set with `reply.header()` live in Fastify's reply
    // until it sends, so they are added, unless the refusal sets the same field.
    // Not `??=`: a Fastify without the symbol (null) must not be searched again on every refusal.
    if (this.#replyHeaders === undefined) this.#replyHeaders = replyHeadersSymbol(reply);
    const earlier = replyFields(reply, this.#replyHeaders);
    if (earlier !== undefined) {
      const merged = list.slice();
      for (const name in earlier) {
        const value = earlier[name];
        if (value !== undefined && !hasField(list, name)) merged.push(name, value);
      }
      list = merged;
    }
    raw.writeHead(answer.status, list as string[]);
    raw.end(answer.body);
  }
}

/** `[name, value, name, value, ...]` for writeHead: `first`, the answer's fields, its content-length. */
function flatFields(answer: HttpAnswer, first: Fields): string[] {
  const list: string[] = [];
  for (let i = 0; i < first.length; i += 1) {
    const field = first[i] as readonly [string, string];
    list.push(field[0], field[1]);
  }
  for (const name in answer.headers) {
    if (!hasField(list, name)) list.push(name, answer.headers[name] as string);
  }
  const body = answer.body;
  // A string, as Fastify sends it: Node checks a field value with a regular expression, and one given a
  // number goes the slow way through RegExp.prototype.test (about 1k instructions per refusal).
  list.push('content-length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength));
  return list;
}

/** Whether a flat `[name, value, name, value, ...]` list names `name`. */
function hasField(fields: ReadonlyArray<unknown>, name: string): boolean {
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return true;
  return false;
}

/**
 * Where Fastify keeps the fields set with `reply.header()` until it sends: an object under a symbol of
 * its own, `fastify.reply.headers` (Fastify 5). Reading it tells whether any were set for the cost of a
 * property load, where `reply.getHeaders()` copies the reply's and the raw response's fields into a new
 * object on every refusal (about 1.2k instructions per refusal under callgrind, bench/README.md). Found by
 * its description; a Fastify without it, or with something else under it, gets `reply.getHeaders()`.
 */
function replyHeadersSymbol(reply: FastifyReply): symbol | null {
  for (const symbol of Object.getOwnPropertySymbols(reply)) {
    if (symbol.description !== 'fastify.reply.headers') continue;
    const value = (reply as unknown as Record<symbol, unknown>)[symbol];
    if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
      return symbol;
    }
  }
  return null;
}

/**
 * The fields set before the refusal and not yet on the raw response (those set with `reply.header()`),
 * or undefined when there are none.
 */
function replyFields(reply: FastifyReply, symbol: symbol | null): Record<string, unknown> | undefined {
  const earlier =
    symbol === null
      ? reply.getHeaders()
      : (reply as unknown as Record<symbol, Record<string, unknown>>)[symbol];
  for (const _ in earlier) return earlier;
  return undefined;
}
