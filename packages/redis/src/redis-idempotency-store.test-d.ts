import type {
  BeginResult as HttpBeginResult,
  StoredResponse as HttpStoredResponse,
  IdempotencyStore,
} from '@floodgate/http';
import { describe, expectTypeOf, it } from 'vitest';
import {
  type BeginResult,
  type RedisIdempotencyStore,
  type RedisIdempotencyStoreOptions,
  redisIdempotencyStore,
  type StoredResponse,
} from './index.js';

describe('RedisIdempotencyStore types', () => {
  it('is an IdempotencyStore of @floodgate/http, by shape (no import of it in the published types)', () => {
    expectTypeOf(redisIdempotencyStore).returns.toEqualTypeOf<RedisIdempotencyStore>();
    expectTypeOf<RedisIdempotencyStore>().toExtend<IdempotencyStore>();
    expectTypeOf<RedisIdempotencyStore>().toExtend<Required<IdempotencyStore>>();
    expectTypeOf<BeginResult>().toEqualTypeOf<HttpBeginResult>();
    expectTypeOf<StoredResponse>().toEqualTypeOf<HttpStoredResponse>();
  });

  it('answers promises', () => {
    const store = {} as RedisIdempotencyStore;
    expectTypeOf(store.begin('k', 'fp', 1_000)).toEqualTypeOf<Promise<BeginResult>>();
    expectTypeOf(store.complete).returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf(store.release).returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf(store.waitForChange).returns.toEqualTypeOf<Promise<void>>();
  });

  it('takes one of client and url', () => {
    expectTypeOf<{ url: string }>().toExtend<RedisIdempotencyStoreOptions>();
    // @ts-expect-error: not an option of the store
    redisIdempotencyStore({ url: 'redis://127.0.0.1', ttlMs: 5 });
  });
});
