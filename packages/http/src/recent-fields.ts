import { type DecisionLike, fieldSeconds, wallResetSecond } from './headers.js';

/** Header fields as a {@link RateLimitResult} carries them. */
export type Fields = ReadonlyArray<readonly [string, string]>;

/** Slots of the table: a power of two, so a slot is picked with a mask. */
const SLOTS = 64;

interface Entry {
  readonly policy: number;
  readonly limit: number;
  readonly remaining: number;
  readonly reset: number;
  readonly wallReset: number;
  readonly fields: Fields;
}

/**
 * The RateLimit fields of recent single-policy answers that let a request through, reused while a new
 * answer would read the same.
 *
 * Most allowed answers repeat their numbers once rounded to whole seconds: a client far from its limit
 * reads the same `remaining` and reset seconds request after request, and clients at the same point of
 * their quota read the same fields. Handing out one frozen field list per distinct reading saves the
 * strings and arrays of every other answer, and a string kept is a flat one: Node checks every field
 * value with a regular expression, which takes V8's slow path (about 1k instructions under callgrind) on
 * the concatenated string a fresh format makes, and flattens it in place, so a kept value pays that once. The table is direct-mapped (one entry per slot, the
 * newest wins), so it never holds more than {@link SLOTS} lists however many clients there are, and a
 * lookup is a few comparisons. The numbers compared are every number the fields are made of (a property
 * test checks that a reused list equals a freshly formatted one), so reuse never changes an answer.
 */
export class RecentFields {
  readonly #slots: Array<Entry | undefined> = new Array<Entry | undefined>(SLOTS).fill(undefined);

  /**
   * The kept fields of an allowed answer of `policy` that read like `decision`, else undefined.
   *
   * @param nowMs Wall-clock time when legacy `X-RateLimit-Reset` (a Unix time) is sent, else 0.
   */
  find(policy: number, decision: DecisionLike, nowMs: number): Fields | undefined {
    const reset = fieldSeconds(decision.resetAfterMs);
    const entry = this.#slots[slotOf(decision.remaining, reset)];
    if (
      entry !== undefined &&
      entry.policy === policy &&
      entry.limit === decision.limit &&
      entry.remaining === decision.remaining &&
      entry.reset === reset &&
      entry.wallReset === wallResetSecond(decision, nowMs)
    ) {
      return entry.fields;
    }
    return undefined;
  }

  /**
   * Keeps `fields`, formatted for an allowed answer of `policy` from `decision` at `nowMs`, in place of
   * whatever its slot held; freezes them, as they will be shared.
   */
  keep(policy: number, decision: DecisionLike, nowMs: number, fields: Array<[string, string]>): Fields {
    for (const field of fields) Object.freeze(field);
    Object.freeze(fields);
    const reset = fieldSeconds(decision.resetAfterMs);
    this.#slots[slotOf(decision.remaining, reset)] = {
      policy,
      limit: decision.limit,
      remaining: decision.remaining,
      reset,
      wallReset: wallResetSecond(decision, nowMs),
      fields,
    };
    return fields;
  }
}

/** The slot of a reading: `| 0` turns any number (a float, NaN from a foreign limiter) into an integer. */
function slotOf(remaining: number, reset: number): number {
  return ((remaining | 0) ^ (reset << 3)) & (SLOTS - 1);
}
