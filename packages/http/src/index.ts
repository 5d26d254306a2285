export type { ByAddressOptions, ByApiKeyOptions, KeyableRequest, KeyGenerator } from './client-key.js';
export { addressKey, byAddress, byApiKey, byUser } from './client-key.js';
export type { AddressUser, ConnectionOf } from './client-key-unknown.js';
export { ClientAddressUnknownError } from './client-key-unknown.js';
export type { IdempotencyKeyProblem } from './errors.js';
export {
  FloodgateHttpError,
  IdempotencyKeyError,
  InvalidCostError,
  InvalidKeyError,
  InvalidOptionError,
  InvalidScopeError,
  StoreUnavailableError,
} from './errors.js';
export type { FingerprintInput } from './fingerprint.js';
export { canonicalJson, requestFingerprint } from './fingerprint.js';
export type {
  DecisionLike,
  PolicyOutcome,
  QuotaPolicy,
  RateLimitHeadersOptions,
  StandardHeaders,
} from './headers.js';
export { RateLimitHeaders, sfString } from './headers.js';
export type {
  CapturedResponse,
  ClosingConnection,
  IdempotencyOptions,
  IdempotencyRequest,
  IdempotencyStart,
} from './idempotency.js';
export {
  createIdempotency,
  defaultIdempotencyScope,
  IDEMPOTENCY_OPTION_NAMES,
  Idempotency,
  IdempotencyTicket,
  isStorableStatus,
  resolveIdempotencyScope,
} from './idempotency.js';
export { MAX_IDEMPOTENCY_KEY_LENGTH, parseIdempotencyKey } from './idempotency-key.js';
export type {
  BeginResult,
  IdempotencyRecord,
  IdempotencyStore,
  StoredResponse,
} from './idempotency-store.js';
export type { KeyedLimiterLike } from './limiter.js';
export type {
  Admission,
  BreakerLike,
  GateLike,
  LoadShedderOptions,
  Refusal,
  ShedReason,
  ShedVerdict,
} from './load-shedder.js';
export { LOAD_SHEDDER_OPTION_NAMES, LoadShedder, loadShedder, shedderFromOptions } from './load-shedder.js';
export type { MemoryIdempotencyStoreOptions } from './memory-idempotency-store.js';
export { MemoryIdempotencyStore, memoryIdempotencyStore } from './memory-idempotency-store.js';
export type { HttpAnswer, ProblemAnswerOptions, ProblemDetails } from './problem.js';
export { PROBLEM_CONTENT_TYPE, problemAnswer, retryAfterSeconds } from './problem.js';
export type {
  ClosingResponse,
  RateLimitAdapter,
  RateLimitAllowed,
  RateLimitDenied,
  RateLimitOptions,
  RateLimitPolicy,
  RateLimitResult,
  RateLimitSkipped,
} from './rate-limit.js';
export { RATE_LIMIT_OPTION_NAMES, RateLimit } from './rate-limit.js';
export type { ClosableResponse } from './response-closed.js';
export { responseClosed } from './response-closed.js';
export { invalidOption } from './validate.js';
