export {
  ClosedError,
  InvalidOptionError,
  QueueFullError,
  RateLimitedError,
  StoreUnavailableError,
  TokenBucketError,
} from './errors.js';
export type { GateOptions, GateRunOptions, GateStats } from './gate.js';
export { Gate, gate } from './gate.js';
export type { KeyedDecision, KeyedLimiterOptions, KeyedRefund, KeyedTakeOptions } from './keyed-limiter.js';
export { KeyedLimiter, keyedLimiter } from './keyed-limiter.js';
export type { MemoryStoreOptions } from './memory-store.js';
export { MemoryStore, memoryStore } from './memory-store.js';
export type { Clock, RefillRate } from './options.js';
export type {
  BucketSpec,
  ConsumeOptions,
  Decision,
  LimiterStore,
  RefundOptions,
  StoreDecision,
} from './store.js';
export type { TakeOptions, TokenBucketOptions } from './token-bucket.js';
export { TokenBucket, tokenBucket } from './token-bucket.js';
