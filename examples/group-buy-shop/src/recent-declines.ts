/** Options of {@link RecentDeclines}. */
export interface RecentDeclinesOptions {
  /**
   * How long a decline is remembered: at least the longest a checkout can be held before it reaches the
   * handler (the idempotency layer's `coalesceTimeoutMs`); a click held longer was answered 409 instead.
   */
  readonly holdMs: number;
  /**
   * Monotonic clock in ms.
   * @default performance.now
   */
  readonly clock?: () => number;
}

interface Decline {
  readonly source: string;
  readonly reason: string;
  readonly at: number;
}

/**
 * The declines the shop's checkouts answered lately, per order: a checkout that arrived before its order
 * was declined, with the same card, is the same click as the declined one and gets its decline.
 *
 * Why: the floodgate shop's idempotency layer holds a double click while the first click pays and, since
 * only a paid answer is stored (`isStoredCheckoutAnswer`), lets the held one run once the first answered
 * 402. The payment client cannot tell that click from a deliberate new payment (after a decline it makes
 * a new key, by design), so the bank would decline the card a second time. Only the shop knows when the
 * click arrived. A click made after the decline (the student chose to try again, or another card) pays.
 *
 * @example
 * const declines = new RecentDeclines({ holdMs: 20_000 });
 * const arrivedAt = declines.now(); // when the request comes in, before any middleware holds it
 * declines.declinedSince(orderId, source, arrivedAt); // the reason, or undefined: pay
 */
export class RecentDeclines {
  readonly #holdMs: number;
  readonly #clock: () => number;
  // Insertion order is the order of `at` (a re-recorded order moves to the end), so the oldest go first.
  readonly #byOrder = new Map<string, Decline>();

  constructor(options: RecentDeclinesOptions) {
    if (!Number.isFinite(options.holdMs) || options.holdMs <= 0) {
      throw new TypeError(`Expected \`holdMs\` to be a finite number > 0, got \`${options.holdMs}\``);
    }
    this.#holdMs = options.holdMs;
    this.#clock = options.clock ?? (() => performance.now());
  }

  /** The clock's reading: stamp a checkout with it when it arrives. */
  now(): number {
    return this.#clock();
  }

  /** Records that a checkout of `orderId` with `source` was declined just now. */
  record(orderId: string, source: string, reason: string): void {
    const at = this.#clock();
    for (const [id, decline] of this.#byOrder) {
      if (at - decline.at <= this.#holdMs) break;
      this.#byOrder.delete(id);
    }
    this.#byOrder.delete(orderId);
    this.#byOrder.set(orderId, { source, reason, at });
  }

  /**
   * The reason of a decline of `orderId` with `source` recorded at or after `arrivedAt` (a reading of
   * {@link now}), or `undefined` when the checkout came after it or none is remembered.
   */
  declinedSince(orderId: string, source: string, arrivedAt: number): string | undefined {
    const decline = this.#byOrder.get(orderId);
    if (decline === undefined || decline.source !== source || decline.at < arrivedAt) return undefined;
    return decline.reason;
  }

  /** How many declines are remembered. */
  get size(): number {
    return this.#byOrder.size;
  }
}
