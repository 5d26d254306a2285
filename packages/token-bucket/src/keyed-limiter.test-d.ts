import { describe, expectTypeOf, it } from 'vitest';
import {
  type Decision,
  type KeyedLimiter,
  keyedLimiter,
  type LimiterStore,
  type MemoryStore,
  type StoreDecision,
} from './index.js';

declare const asyncStore: LimiterStore & { consume(): Promise<StoreDecision> };

describe('KeyedLimiter types', () => {
  it('is synchronous with the memory store', () => {
    const limiter = keyedLimiter({ capacity: 1, refillRate: 1 });
    expectTypeOf(limiter).toEqualTypeOf<KeyedLimiter<MemoryStore>>();
    expectTypeOf(limiter.tryTake('k')).toEqualTypeOf<Decision>();
    expectTypeOf(limiter.refund).returns.toBeVoid();
  });

  it('returns promises with another store', () => {
    const limiter = keyedLimiter({ capacity: 1, refillRate: 1, store: asyncStore });
    expectTypeOf(limiter.tryTake('k')).toEqualTypeOf<Promise<Decision>>();
    expectTypeOf(limiter.refund('k', 1)).toEqualTypeOf<Promise<void>>();
    expectTypeOf(limiter.take('k')).toEqualTypeOf<Promise<StoreDecision>>();
  });
});
