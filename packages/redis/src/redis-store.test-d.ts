import type { LimiterStore, StoreDecision } from '@floodgate/token-bucket';
import { keyedLimiter } from '@floodgate/token-bucket';
import { describe, expectTypeOf, it } from 'vitest';
import { type FailMode, type RedisStore, type RedisStoreStats, redisStore } from './index.js';

describe('RedisStore types', () => {
  it('is a LimiterStore whose decisions are promises', () => {
    expectTypeOf(redisStore).returns.toEqualTypeOf<RedisStore>();
    const store = {} as RedisStore;
    expectTypeOf(store).toExtend<LimiterStore>();
    expectTypeOf(store.consume('k', 1, { capacity: 1, refillPerMs: 1 })).toEqualTypeOf<
      Promise<StoreDecision>
    >();
    expectTypeOf(store.refund).returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf(store.stats()).toEqualTypeOf<RedisStoreStats>();
  });

  it('types its events', () => {
    const store = {} as RedisStore;
    store.on('degraded', (event) => {
      expectTypeOf(event.error).toEqualTypeOf<Error>();
      expectTypeOf(event.failMode).toEqualTypeOf<FailMode>();
    });
    store.on('recovered', (event) => expectTypeOf(event.downtimeMs).toBeNumber());
    // @ts-expect-error: not an event of the store
    store.on('degradedd', () => {});
  });

  it('makes keyedLimiter answer promises', () => {
    const limiter = keyedLimiter({ capacity: 5, refillRate: 1, store: {} as RedisStore });
    expectTypeOf(limiter.tryTake('k')).resolves.toHaveProperty('allowed');
  });
});
