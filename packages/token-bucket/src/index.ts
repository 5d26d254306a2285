export {
  ClosedError,
  InvalidOptionError,
  QueueFullError,
  RateLimitedError,
  StoreUnavailableError,
  TokenBucketError,
} from './errors.js';
export type { Clock, RefillRate } from './options.js';
export type { BucketSpec, ConsumeOptions, Decision, LimiterStore, StoreDecision } from './store.js';
