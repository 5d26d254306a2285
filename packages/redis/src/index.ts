export {
  ClosedError,
  InvalidOptionError,
  StoreUnavailableError,
} from '@floodgate/token-bucket';
export type { FailMode, RedisClient, RedisStoreOptions } from './options.js';
export type {
  BeginResult,
  IdempotencyRecord,
  RedisIdempotencyStoreOptions,
  StoredResponse,
} from './redis-idempotency-store.js';
export { RedisIdempotencyStore, redisIdempotencyStore } from './redis-idempotency-store.js';
export type { DegradedEvent, RecoveredEvent, RedisStoreEvents, RedisStoreStats } from './redis-store.js';
export { RedisStore, redisStore } from './redis-store.js';
