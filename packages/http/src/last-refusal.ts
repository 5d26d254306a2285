import { type DecisionLike, fieldSeconds, wallResetSecond } from './headers.js';
import { type HttpAnswer, retryAfterSeconds } from './problem.js';

/** The header fields and the answer of one refusal, as a {@link RateLimitResult} carries them. */
export interface Refusal {
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly answer: HttpAnswer;
}

/**
 * The last single-policy refusal a rate limit made, reused while the next one would read the same.
 *
 * Under a flood of refused requests (what a limit is for) most refusals carry the same numbers once
 * rounded to whole seconds: the same RateLimit fields, `Retry-After` and body. Formatting them once per
 * change instead of once per request saves the strings and objects of every other refusal, and an adapter
 * may keep what it derives from a refusal (Fastify's flat field list) for as long as the same objects come
 * back. The numbers compared are every number the fields and the body are made of (a property test checks
 * that a reused refusal equals a freshly made one), so reuse never changes an answer.
 */
export class LastRefusal {
  #policy = -1;
  #limit = -1;
  #remaining = -1;
  #reset = -1;
  #retry = -1;
  #wallReset = -1;
  #refusal: Refusal | undefined;

  /**
   * The kept refusal if it was made for the same policy from a decision that reads the same, else
   * undefined.
   *
   * @param nowMs Wall-clock time when legacy `X-RateLimit-Reset` (a Unix time) is sent, else 0.
   */
  find(policy: number, decision: DecisionLike, nowMs: number): Refusal | undefined {
    if (
      policy === this.#policy &&
      decision.limit === this.#limit &&
      decision.remaining === this.#remaining &&
      fieldSeconds(decision.resetAfterMs) === this.#reset &&
      retryAfterSeconds(decision.retryAfterMs) === this.#retry &&
      wallResetSecond(decision, nowMs) === this.#wallReset
    ) {
      return this.#refusal;
    }
    return undefined;
  }

  /** Keeps `refusal`, made for `policy` from `decision` at `nowMs`; freezes it, as it will be shared. */
  keep(policy: number, decision: DecisionLike, nowMs: number, refusal: Refusal): Refusal {
    for (const field of refusal.headers) Object.freeze(field);
    Object.freeze(refusal.headers);
    Object.freeze(refusal.answer.headers);
    Object.freeze(refusal.answer);
    this.#policy = policy;
    this.#limit = decision.limit;
    this.#remaining = decision.remaining;
    this.#reset = fieldSeconds(decision.resetAfterMs);
    this.#retry = retryAfterSeconds(decision.retryAfterMs);
    this.#wallReset = wallResetSecond(decision, nowMs);
    this.#refusal = Object.freeze(refusal);
    return refusal;
  }
}
