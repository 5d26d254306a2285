import { type HttpAnswer, InvalidOptionError } from '@floodgate/http';
import type { FastifyReply } from 'fastify';
import { answerBody } from './answer-body.js';
import { type ReplyFieldMap, ReplyFields } from './reply-fields.js';

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
  readonly #replyFields: ReplyFields;

  /** @param replyFields Where this Fastify keeps pending fields (shared with the plugin's other hooks). */
  constructor(denials: Denials, replyFields: ReplyFields = new ReplyFields()) {
    this.#denials = checkDenials(denials);
    this.#replyFields = replyFields;
  }

  /** Sends `answer` with `first` fields (they win over the answer's own) and ends the request. */
  send(reply: FastifyReply, answer: HttpAnswer, first: Fields = NO_FIELDS): void {
    if (this.#denials === 'reply') {
      for (let i = 0; i < first.length; i += 1) {
        const field = first[i] as readonly [string, string];
        reply.header(field[0], field[1]);
      }
      reply.code(answer.status).headers(answer.headers).send(answerBody(answer.body));
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
    const earlier = pending(this.#replyFields.of(reply) ?? reply.getHeaders());
    if (earlier !== undefined) {
      const merged = list.slice();
      for (const name in earlier) {
        const value = earlier[name];
        if (value !== undefined && !hasField(list, name)) merged.push(name, value);
      }
      list = merged;
    }
    try {
      raw.writeHead(answer.status, list as string[]);
    } catch (error) {
      // A field an earlier hook set that Node will not send (a control character, say). The reply is
      // hijacked, so nothing else will answer: send the refusal with its own fields, or, should even that
      // fail, end the connection with the error rather than leave the request hanging.
      written(reply, raw, answer, this.#lastList, error);
      return;
    }
    raw.end(answer.body);
  }
}

/** The raw refusal again with only its own `fields`, after `error`; destroys the response if it fails. */
function written(
  reply: FastifyReply,
  raw: FastifyReply['raw'],
  answer: HttpAnswer,
  fields: readonly string[],
  error: unknown,
): void {
  reply.log?.warn?.({ err: error }, 'floodgate: refusal sent without fields set earlier: one is invalid');
  try {
    if (raw.headersSent) throw error;
    // What a failed writeHead leaves behind stays on `raw`: over HTTP/2 every field of the list, so a
    // connection-specific one (`Keep-Alive`, `Transfer-Encoding`) failed the retry too and the client got a
    // reset stream instead of the refusal.
    for (const name of raw.getHeaderNames()) raw.removeHeader(name);
    raw.writeHead(answer.status, fields as string[]);
    raw.end(answer.body);
  } catch (again) {
    raw.destroy(again as Error);
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

/** `fields` when it holds any, else undefined. */
function pending(fields: ReplyFieldMap): ReplyFieldMap | undefined {
  for (const _ in fields) return fields;
  return undefined;
}
