import type { IncomingHttpHeaders } from 'node:http';

const STUDENT_ID = /^[\w.-]{1,64}$/;

/**
 * Who is asking: the `X-Student-Id` header, a stand-in for the session cookie a real shop would read;
 * `undefined` when it is missing or malformed (the API answers 401, the rate limit and idempotency fall
 * back to the client address). Reads only `headers`, which an Express and a Fastify request both carry.
 */
export function studentOf(request: { readonly headers: IncomingHttpHeaders }): string | undefined {
  const student = request.headers['x-student-id'];
  return typeof student === 'string' && STUDENT_ID.test(student) ? student : undefined;
}
