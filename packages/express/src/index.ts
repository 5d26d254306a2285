export type {
  CapturedResponse,
  HttpAnswer,
  IdempotencyStore,
  KeyGenerator,
  RateLimitAllowed,
  RateLimitDenied,
  RateLimitPolicy,
  RateLimitResult,
  RateLimitSkipped,
  StandardHeaders,
} from '@floodgate/http';
export {
  byAddress,
  byApiKey,
  byUser,
  ClientAddressUnknownError,
  IdempotencyKeyError,
  InvalidCostError,
  InvalidKeyError,
  InvalidOptionError,
  InvalidScopeError,
  LoadShedder,
  loadShedder,
  MemoryIdempotencyStore,
  memoryIdempotencyStore,
} from '@floodgate/http';
export type { ExpressIdempotencyOptions, IdempotencyMiddleware } from './idempotency.js';
export { idempotency } from './idempotency.js';
export type { ExpressLoadSheddingOptions, LoadSheddingMiddleware } from './load-shedding.js';
export { loadShedding } from './load-shedding.js';
export type { ExpressRateLimitOptions, RateLimitMiddleware } from './rate-limit.js';
export { rateLimit } from './rate-limit.js';
