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

/** An RFC 9457 problem: `type`, `title`, `status`, `detail`, then `extra`'s fields. */
export function problem(
  status: number,
  title: string,
  detail: string,
  extra: object = {},
  headers: Record<string, string> = {},
): ShopAnswer {
  return { status, headers, body: { type: 'about:blank', title, status, detail, ...extra }, problem: true };
}

export function contentTypeOf(answer: ShopAnswer): string {
  return answer.problem ? PROBLEM_TYPE : JSON_TYPE;
}

/** The body as sent: one serialisation for both frameworks (neither adds its own JSON settings). */
export function serialize(answer: ShopAnswer): string {
  return JSON.stringify(answer.body);
}
