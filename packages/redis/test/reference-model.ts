// The token bucket of the store contract, written plainly from @floodgate/token-bucket's `LimiterStore`
// documentation: the Redis script and the local fallback are both checked against it.
import type { BucketSpec, StoreDecision } from '@floodgate/token-bucket';

export type ModelOperation =
  | {
      readonly kind: 'consume';
      readonly cost: number;
      readonly maxWaitMs: number;
      readonly operationId?: string;
    }
  | { readonly kind: 'refund'; readonly cost: number; readonly operationId?: string };

interface OperationRecord {
  readonly remaining: number;
  readonly resetAfterMs: number;
  readonly readyAt: number;
  /** A consume replayed it: a refund naming it gives nothing back (the replay may be using the tokens). */
  replayed: boolean;
}

/** One bucket: a missing state means full. */
export class ModelBucket {
  tokens: number | undefined;
  at = 0;
  readonly #records = new Map<string, OperationRecord>();

  constructor(readonly spec: BucketSpec) {}

  /** Applies one operation at time `now` (ms); answers a decision for consumes. */
  apply(now: number, operation: ModelOperation): StoreDecision | undefined {
    const { capacity, refillPerMs } = this.spec;
    let tokens = capacity;
    let at = now;
    if (this.tokens !== undefined) {
      tokens = this.tokens;
      at = this.at;
      if (now > at) {
        tokens += (now - at) * refillPerMs;
        at = now;
      }
      tokens = Math.min(capacity, tokens);
    }
    let decision: StoreDecision | undefined;
    let changed = false;
    if (operation.kind === 'refund') {
      const { operationId } = operation;
      const record = operationId === undefined ? undefined : this.#records.get(operationId);
      // Named: the tokens go back only through a record that exists and was never replayed, and the
      // operation is forgotten with them, so a retry is decided afresh. A replayed or missing record gives
      // nothing back and stays as it is.
      if (operationId === undefined || (record !== undefined && !record.replayed)) {
        tokens = Math.min(capacity, tokens + operation.cost);
        changed = true;
        if (operationId !== undefined) this.#records.delete(operationId);
      }
    } else {
      const record =
        operation.operationId === undefined ? undefined : this.#records.get(operation.operationId);
      if (record !== undefined) {
        record.replayed = true;
        return {
          allowed: true,
          limit: capacity,
          remaining: record.remaining,
          retryAfterMs: 0,
          resetAfterMs: Math.ceil(record.resetAfterMs),
          waitMs: Math.ceil(Math.max(0, record.readyAt - now)),
          replayed: true,
        };
      }
      const { cost, maxWaitMs } = operation;
      let allowed = tokens >= cost;
      let waitMs = 0;
      let retryAfterMs = 0;
      if (!allowed) {
        const need = (cost - tokens) / refillPerMs;
        if (cost <= capacity && need <= maxWaitMs) {
          allowed = true;
          waitMs = need;
        } else {
          retryAfterMs = cost > capacity ? Number.POSITIVE_INFINITY : need;
        }
      }
      if (allowed) {
        tokens -= cost;
        changed = true;
      }
      const resetAfterMs = (capacity - tokens) / refillPerMs;
      // Durations in whole ms rounded up, as every store answers them.
      decision = {
        allowed,
        limit: capacity,
        remaining: tokens >= 1 ? Math.floor(tokens) : 0,
        retryAfterMs: Math.ceil(retryAfterMs),
        resetAfterMs: Math.ceil(resetAfterMs),
        waitMs: Math.ceil(waitMs),
      };
      if (allowed && operation.operationId !== undefined) {
        this.#records.set(operation.operationId, {
          remaining: decision.remaining,
          resetAfterMs,
          readyAt: now + waitMs,
          replayed: false,
        });
      }
    }
    if (changed) {
      this.tokens = tokens >= capacity ? undefined : tokens;
      this.at = at;
    }
    return decision;
  }

  /** The TTL (ms) the bucket's key should have: none (-2, absent) when full. */
  expectedTtlMs(): number {
    if (this.tokens === undefined) return -2;
    return Math.ceil((this.spec.capacity - this.tokens) / this.spec.refillPerMs) + 1;
  }
}
