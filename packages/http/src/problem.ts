import { STATUS_CODES } from 'node:http';

/** Media type of RFC 9457 problem details. */
export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** An RFC 9457 problem details object. Extension members carry machine-readable data such as `code`. */
export interface ProblemDetails {
  /** A URI reference naming the problem type; `about:blank` means "the status code says it all". */
  readonly type: string;
  /** Short summary of the problem type, the same for every occurrence. */
  readonly title: string;
  /** The HTTP status code, as sent. */
  readonly status: number;
  /** Human-readable explanation of this occurrence. */
  readonly detail?: string;
  /** A URI reference naming this occurrence. */
  readonly instance?: string;
  readonly [extension: string]: unknown;
}

/**
 * A ready-to-send answer the core decided on; the adapters only write it out, so Express and Fastify send
 * byte-identical answers.
 */
export interface HttpAnswer {
  /** HTTP status to answer. */
  readonly status: number;
  /** Header names in lower case. */
  readonly headers: Readonly<Record<string, string>>;
  /** The body, as it is sent. */
  readonly body: string | Uint8Array;
}

/** Options of {@link problemAnswer}. */
export interface ProblemAnswerOptions {
  /** Human-readable explanation of this occurrence. */
  readonly detail?: string;
  /** Stable machine-readable code, sent as the `code` extension member (e.g. `ERR_RATE_LIMITED`). */
  readonly code?: string;
  /** Adds `Retry-After` (whole seconds, rounded up) and a `retryAfter` member. */
  readonly retryAfterMs?: number;
  /** Further headers (lower-case names). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Further extension members. */
  readonly extensions?: Readonly<Record<string, unknown>>;
}

/** Seconds for a `Retry-After` field: whole seconds rounded up, at least 1 (0 would invite a hot loop). */
export function retryAfterSeconds(retryAfterMs: number): number {
  if (!(retryAfterMs > 0)) return 1;
  // One millisecond of slack, as in the RateLimit fields: stores round float clock arithmetic up to
  // whole milliseconds, and 30 000.0000001 ms must read 30 s, not 31.
  return Math.max(1, Math.ceil((retryAfterMs - 1) / 1000));
}

/**
 * Builds an RFC 9457 `application/problem+json` answer.
 *
 * @example
 * problemAnswer(429, { code: 'ERR_RATE_LIMITED', retryAfterMs: 1200 })
 * // { status: 429, headers: { 'content-type': 'application/problem+json', 'retry-after': '2' }, body: '{...}' }
 */
export function problemAnswer(status: number, options: ProblemAnswerOptions = {}): HttpAnswer {
  const problem: Record<string, unknown> = {
    type: 'about:blank',
    title: STATUS_CODES[status] ?? 'Error',
    status,
  };
  if (options.detail !== undefined) problem.detail = options.detail;
  if (options.code !== undefined) problem.code = options.code;
  const headers: Record<string, string> = { 'content-type': PROBLEM_CONTENT_TYPE, ...options.headers };
  if (options.retryAfterMs !== undefined) {
    const seconds = retryAfterSeconds(options.retryAfterMs);
    headers['retry-after'] = String(seconds);
    problem.retryAfter = seconds;
  }
  if (options.extensions !== undefined) {
    for (const [name, value] of Object.entries(options.extensions)) {
      if (!(name in problem)) problem[name] = value;
    }
  }
  return { status, headers, body: JSON.stringify(problem) };
}
