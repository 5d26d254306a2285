import { RateLimit, type RateLimitOptions, type RateLimitResult } from '@floodgate/http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { clientAddress } from './client-address.js';
import { sendAnswer, setHeaders } from './send.js';

/** Options of {@link rateLimit}: every option of the shared core, with Express's `Request`. */
export type ExpressRateLimitOptions = RateLimitOptions<Request>;

/** The rate-limit middleware, with its core for inspection and clean-up. */
export interface RateLimitMiddleware extends RequestHandler {
  /** The framework-agnostic rate limit behind this middleware. */
  readonly core: RateLimit<Request>;
  /**
   * A middleware for one route with some options changed. Unless the override names a policy (`limit`,
   * `windowMs`, `key`, `store`, `limiter`, `name`, `policies`) it counts against the same buckets:
   * `app.get('/search', limiter.with({ cost: 5 }), search)`.
   */
  with(overrides: Partial<ExpressRateLimitOptions>): RateLimitMiddleware;
  /** Stops the limiters this middleware created (not stores or limiters passed in). */
  close(): Promise<void>;
}

function apply(
  core: RateLimit<Request>,
  result: RateLimitResult,
  req: Request,
  res: Response,
  next: NextFunction,
): void {
  // No `req.floodgateRateLimit` as on Fastify: a property added to Express's request costs ~17k
  // instructions per request (3% of a hello-world route, bench/README.md session 10).
  if (result.headers.length > 0) setHeaders(res, result.headers);
  if (result.action === 'deny') {
    sendAnswer(res, result.answer);
    return;
  }
  if (core.settlesResponses) core.settleOnClose(req, result, res);
  next();
}

/**
 * Express (5 and 4) rate-limit middleware on floodgate token buckets: 429 + `Retry-After` +
 * `application/problem+json` when over the limit, RateLimit headers (draft-8 by default) on every answer.
 * The default key is `req.ip`, which honours `app.set('trust proxy', ...)`; IPv6 is grouped by /56.
 *
 * @throws {InvalidOptionError} at set-up on an unknown or invalid option.
 * @example
 * app.use(rateLimit({ limit: 100, windowMs: 60_000 }));
 * app.post('/checkout', rateLimit({ name: 'checkout', limit: 5, key: byUser((req) => req.user?.id) }), checkout);
 */
export function rateLimit(options: ExpressRateLimitOptions): RateLimitMiddleware {
  return middlewareOf(new RateLimit<Request>(options, { clientAddress }));
}

function middlewareOf(core: RateLimit<Request>): RateLimitMiddleware {
  const middleware = function floodgateRateLimit(req: Request, res: Response, next: NextFunction): void {
    let result: RateLimitResult | Promise<RateLimitResult>;
    try {
      result = core.check(req);
    } catch (error) {
      next(error);
      return;
    }
    // A thenable, as the core tells one (a store may answer with any promise-like).
    if (typeof (result as Partial<Promise<RateLimitResult>>).then === 'function') {
      // Anything `apply` throws (writing the answer) reaches the error handler too, never an unhandled
      // rejection with the request left hanging.
      Promise.resolve(result)
        .then((settled) => apply(core, settled, req, res, next))
        .then(undefined, (error: unknown) => next(error));
    } else {
      apply(core, result as RateLimitResult, req, res, next);
    }
  };
  return Object.assign(middleware, {
    core,
    with: (overrides: Partial<ExpressRateLimitOptions>) => middlewareOf(core.derive(overrides)),
    close: () => core.close(),
  });
}
