/**
 * Option names of express-rate-limit 8 and @fastify/rate-limit 10 that floodgate's rate limit does not
 * take, each with what to use instead. Someone moving a configuration over gets the way forward in the
 * `InvalidOptionError` at start-up, not only "unknown option". Read at construction only, and only for a
 * key that is unknown anyway.
 */
export const PEER_RATE_LIMIT_OPTIONS: Readonly<Record<string, string>> = Object.freeze({
  max: 'it is `limit` here (the burst, and the quota per `windowMs`)',
  timeWindow: 'it is `windowMs` here, in milliseconds',
  keyGenerator: 'it is `key` here (answer `undefined` to fall back to the client address)',
  identifier: 'it is `name` here',
  message: 'the text of a refusal is `detail` here (the body stays problem+json with its `code`)',
  errorResponseBuilder:
    'a refusal is problem+json with a stable `code` here: set its text with `detail`, its status with `statusCode`',
  handler:
    'a refusal is problem+json with a stable `code` here: set its text with `detail`, its status with `statusCode`, and hear of it with `onLimit`',
  onLimitReached: 'it is `onLimit` here',
  onExceeded: 'it is `onLimit` here',
  skipOnError: 'it is `passOnStoreError` here',
  cache: 'it is `maxKeys` here',
  whitelist: 'it is `allowList` here',
  enableDraftSpec:
    "it is `standardHeaders` here (`'draft-6'` for separate RateLimit-* fields; `'draft-8'` is the default)",
  headers: 'it is `standardHeaders` and `legacyHeaders` here',
  addHeaders: 'it is `standardHeaders` and `legacyHeaders` here, for all fields at once',
  addHeadersOnExceeding: 'it is `standardHeaders` and `legacyHeaders` here, for all fields at once',
  groupId: 'pass one `limiter` to the routes that share a quota',
  ban: 'none here: a token bucket refuses until tokens refill, however often the client knocks',
  onBanReach: 'none here: a token bucket refuses until tokens refill; `onLimit` hears of each refusal',
  continueExceeding: 'none here: a token bucket refuses until tokens refill, however often the client knocks',
  exponentialBackoff:
    'none here: a token bucket refuses until tokens refill, however often the client knocks',
  requestPropertyName:
    'the outcome is `request.floodgateRateLimit` on Fastify; on Express, where a request property would cost every request, `onLimit` hears of refusals, or your own middleware calls `limiter.core.check(req)` instead of mounting the limiter',
  redis: 'pass `store: redisStore({ url, prefix })` from @floodgate/redis',
  nameSpace: 'it is the `prefix` of `redisStore({ url, prefix })` from @floodgate/redis',
  validate: 'options are validated here, once, and a mistake throws: there is nothing to turn off',
});
