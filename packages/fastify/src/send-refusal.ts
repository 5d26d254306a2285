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

/**
 * Sends a refusal the way `denials` says: `first` fields (the RateLimit ones) and the answer, raw or
 * through `reply.send()`.
 */
export function sendRefusal(
  reply: FastifyReply,
  answer: HttpAnswer,
  denials: Denials,
  first: ReadonlyArray<readonly [string, string]> = [],
): void {
  if (denials === 'raw') {
    sendRaw(reply, answer, first);
    return;
  }
  for (let i = 0; i < first.length; i += 1) {
    const field = first[i] as readonly [string, string];
    reply.header(field[0], field[1]);
  }
  reply.code(answer.status).headers(answer.headers).send(answer.body);
}

/** Whether a flat `[name, value, name, value, ...]` list names `name`. */
function hasField(fields: ReadonlyArray<unknown>, name: string): boolean {
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return true;
  return false;
}

/**
 * Sends an answer on Node's response in one `writeHead` with a flat field list (no header object, no
 * serializer, no `onSend` hooks). `first` fields (the RateLimit ones) win over the answer's own, and both
 * over fields set earlier on the reply or the raw response.
 */
function sendRaw(
  reply: FastifyReply,
  answer: HttpAnswer,
  first: ReadonlyArray<readonly [string, string]> = [],
): void {
  reply.hijack();
  const raw = reply.raw;
  if (raw.headersSent) {
    raw.end();
    return;
  }
  const fields: Array<string | number | readonly string[]> = [];
  for (let i = 0; i < first.length; i += 1) {
    const field = first[i] as readonly [string, string];
    fields.push(field[0], field[1]);
  }
  for (const name in answer.headers) {
    if (!hasField(fields, name)) fields.push(name, answer.headers[name] as string);
  }
  const body = answer.body;
  fields.push('content-length', typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength);
  const earlier = reply.getHeaders();
  for (const name in earlier) {
    const value = earlier[name];
    if (value !== undefined && !hasField(fields, name)) fields.push(name, value as string);
  }
  raw.writeHead(answer.status, fields as string[]);
  raw.end(body);
}
