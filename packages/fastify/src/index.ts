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
export type {
  FloodgateRouteConfig,
  RouteIdempotencyConfig,
  RouteLoadSheddingConfig,
  RouteRateLimitConfig,
} from './config.js';
export type { FastifyIdempotencyOptions } from './idempotency.js';
export { floodgateIdempotency } from './idempotency.js';
export type { FastifyLoadSheddingOptions } from './load-shedding.js';
export { floodgateLoadShedding } from './load-shedding.js';
export type { FastifyRateLimitOptions } from './rate-limit.js';
export { floodgateRateLimit } from './rate-limit.js';
export type { Denials } from './send-refusal.js';
