import { RateLimit, type RateLimitOptions, type RateLimitResult } from '@floodgate/http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { clientAddress } from './client-address.js';
import { Family, sharesBuckets } from './family.js';
import { sendAnswer, setHeaders } from './send.js';

/** Options of {@link rateLimit}: every option of the shared core, with Express's `Request`. */
export type ExpressRateLimitOptions = RateLimitOptions<Request>;

/** The rate-limit middleware, with its core for inspection and clean-up. */
export interface RateLimitMiddleware extends RequestHandler {
  /** The framework-agnostic rate limit behind this middleware. */
  readonly core: RateLimit<Request>;
  /**
   * A middleware for one route with some options changed. Unless the override names a policy (`limit`,
   * `windowMs`, `key`, `store`, `limiter`, `name`, `policies`) it counts against the same buckets and
   * replaces this limiter for the requests it sees: behind `app.use(limiter)`, a request the variant sees
   * is counted once, at the variant's cost, with the variant's fields or refusal (what the limiter took
   * goes back first; a variant that skips or refuses leaves nothing spent). A variant of a variant does the
   * same; this limiter, reached after a variant or reached again, lets the request by. The limiter in front
   * still decides first: a request it refuses never reaches the variant. An override that names a policy
   * counts in buckets of its own, on top of this limiter's (two limits stacked).
   *
   * @throws {InvalidOptionError} at set-up on an invalid override (before anything changes).
   * @example
   * app.use(limiter);
   * app.get('/search', limiter.with({ cost: 5 }), search); // 5 tokens a search, not 1 + 5
   */
  with(overrides: Partial<ExpressRateLimitOptions>): RateLimitMiddleware;
  /** Stops the limiters this middleware created (not stores or limiters passed in). */
  close(): Promise<void>;
}

/** The plain path's answer: no settling, no family to tell (see {@link Family}). */
function apply(result: RateLimitResult, res: Response, next: NextFunction): void {
  // No `req.floodgateRateLimit` as on Fastify: a property added to Express's request costs ~17k
  // instructions per request (3% of a hello-world route, bench/README.md session 10).
  if (result.headers.length > 0) setHeaders(res, result.headers);
  if (result.action === 'deny') {
    sendAnswer(res, result.answer);
    return;
  }
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
  const core = new RateLimit<Request>(options, { clientAddress });
  return middlewareOf(core, new Family(core), false);
}

function middlewareOf(core: RateLimit<Request>, family: Family, variant: boolean): RateLimitMiddleware {
  // One flag for everything off the plain path, tested where `core.settlesResponses` was: a limiter with
  // no same-bucket variant and nothing to settle does no more per request than before families existed.
  let plain = !core.settlesResponses;
  family.join(() => {
    plain = false;
  });
  const middleware = function floodgateRateLimit(req: Request, res: Response, next: NextFunction): void {
    if (!plain) {
      family.handle(core, variant, req, res, next);
      return;
    }
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
        .then((settled) => apply(settled, res, next))
        .then(undefined, (error: unknown) => next(error));
    } else {
      apply(result as RateLimitResult, res, next);
    }
  };
  const derive = (overrides: Partial<ExpressRateLimitOptions>): RateLimitMiddleware => {
    const derived = core.derive(overrides);
    if (!sharesBuckets(overrides)) return middlewareOf(derived, new Family(derived), false);
    family.share();
    return middlewareOf(derived, family, true);
  };
  return Object.assign(middleware, { core, with: derive, close: () => core.close() });
}
