/**
 * An HTTP answer of the shop's API, independent of the framework that sends it: the Express and the
 * Fastify shop both build their answers here (`ShopApi`, `checkoutOrder`) and write them with
 * {@link contentTypeOf} and {@link serialize}, so the two send the same fields and the same bytes.
 */
export interface ShopAnswer {
  readonly status: number;
  /** Lower-case names; `content-type` comes from {@link contentTypeOf}. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: object;
  /** Send as `application/problem+json` (RFC 9457) rather than `application/json`. */
  readonly problem: boolean;
}

export const JSON_TYPE = 'application/json; charset=utf-8';
export const PROBLEM_TYPE = 'application/problem+json; charset=utf-8';

/** A JSON answer. */
export function json(status: number, body: object, headers: Record<string, string> = {}): ShopAnswer {
  return { status, headers, body, problem: false };
}

/**
 * Longest `detail` a problem carries; a longer one is cut. A detail may hold what the client sent (a
 * path, an id, body-parser's "unsupported charset" with the request's charset, Fastify's message with the
 * URL, a payment's validation message with the card source): up to 16 KB each, which a client could have
 * the shop copy into every answer.
 */
export const MAX_DETAIL_LENGTH = 300;

/** Longest part of a client's value (a path, an order or deal id) that {@link quoted} shows. */
export const MAX_QUOTED_LENGTH = 100;

/** `text` cut to `max` characters, the cut marked `…`. */
function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * A client's value as a detail quotes it: in backticks, cut to {@link MAX_QUOTED_LENGTH} characters.
 * @example quoted('ord_1') // '`ord_1`'
 */
export function quoted(value: string): string {
  return `\`${clip(value, MAX_QUOTED_LENGTH)}\``;
}

/**
 * An RFC 9457 problem: `type`, `title`, `status`, `detail` (cut to {@link MAX_DETAIL_LENGTH} characters),
 * then `extra`'s fields.
 */
export function problem(
  status: number,
  title: string,
  detail: string,
  extra: object = {},
  headers: Record<string, string> = {},
): ShopAnswer {
  const body = { type: 'about:blank', title, status, detail: clip(detail, MAX_DETAIL_LENGTH), ...extra };
  return { status, headers, body, problem: true };
}

export function contentTypeOf(answer: ShopAnswer): string {
  return answer.problem ? PROBLEM_TYPE : JSON_TYPE;
}

/** The body as sent: one serialisation for both frameworks (neither adds its own JSON settings). */
export function serialize(answer: ShopAnswer): string {
  return JSON.stringify(answer.body);
}
