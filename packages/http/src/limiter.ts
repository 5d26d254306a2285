import { keyedLimiter, type LimiterStore } from '@floodgate/token-bucket';
import type { DecisionLike } from './headers.js';

/**
 * What the rate limit reads of a keyed limiter (a @floodgate/token-bucket `KeyedLimiter`, structurally):
 * a decision per key, refunds, and the bucket shape for the policy headers.
 */
export interface KeyedLimiterLike {
  /** The bucket shape, for the quota and window of the policy headers. */
  readonly spec: {
    /** The bucket size: the policy's quota. */
    readonly capacity: number;
    /** Tokens added per ms. */
    readonly refillPerMs: number;
  };
  /** Takes `cost` tokens from `key`'s bucket if it holds them, without waiting. */
  tryTake(key: string, cost: number): DecisionLike | Promise<DecisionLike>;
  /** Gives `cost` tokens back to `key`'s bucket (`skipFailedRequests`, a later policy's denial). */
  refund(key: string, cost: number): void | Promise<void>;
  /** Releases the limiter's resources; called on a limiter the rate limit made. */
  close?(): void | Promise<void>;
}

/** Builds the keyed limiter of one policy on @floodgate/token-bucket. */
export function createKeyedLimiter(options: {
  readonly capacity: number;
  readonly windowMs: number;
  readonly store: LimiterStore | undefined;
  readonly maxKeys: number | undefined;
  readonly clock: (() => number) | undefined;
}): KeyedLimiterLike {
  // The store decides sync or async; the rate limit handles both, so the generic is erased here.
  return keyedLimiter<LimiterStore>({
    capacity: options.capacity,
    refillRate: { tokens: options.capacity, perMs: options.windowMs },
    ...(options.store === undefined ? {} : { store: options.store }),
    ...(options.maxKeys === undefined ? {} : { maxKeys: options.maxKeys }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
}
