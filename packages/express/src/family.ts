import type { RateLimit, RateLimitResult, RateLimitSkipped } from '@floodgate/http';
import type { NextFunction, Request, Response } from 'express';
import { sendAnswer, setHeaders } from './send.js';

/**
 * The overrides that give a variant buckets of its own, as `RateLimit.derive` in `@floodgate/http` reads
 * them: one of these set (not `undefined`) starts a family of its own, which adds to the limiter in front.
 */
const OWN_POLICY_OPTIONS = ['limit', 'windowMs', 'key', 'store', 'limiter', 'name', 'policies'] as const;

/** Whether a variant made with these overrides spends from its parent's buckets. */
export function sharesBuckets(overrides: object): boolean {
  const given = overrides as Record<string, unknown>;
  return !OWN_POLICY_OPTIONS.some((name) => name in given && given[name] !== undefined);
}

/** Nothing to give back: a count that was given back already, or a variant's skip. */
const NOTHING: RateLimitSkipped = Object.freeze({
  action: 'skip',
  limited: false,
  headers: [],
  outcomes: [],
});

/**
 * A rate limit and the `.with()` variants made of it that spend from its buckets (transitively). Once such
 * a variant exists, the family counts each request once: a variant gives back what a member in front took
 * for the request (and takes its fields off the response) before it counts the request at its own cost,
 * and the limiter, reached once the family counted the request (after a variant, or mounted twice), lets
 * it by. Express has no route-level replacement as Fastify's `config` has: `app.use(limiter)` runs before
 * the router knows the route.
 *
 * Until the first such variant exists no member looks anything up: a plain `app.use(rateLimit(...))`
 * pays nothing for this (its middleware tests one flag it tested before for `settlesResponses`).
 */
export class Family {
  readonly #root: RateLimit<Request>;
  /**
   * What the family counted each request in flight as, last (`NOTHING` once given back), keyed by Express's
   * request: a property on `req` would cost every request ~17k instructions (bench/README.md session 10),
   * a WeakMap costs only this family's requests, and nothing is left to clean up once a request is gone.
   */
  #counted: WeakMap<Request, RateLimitResult> | undefined;
  /** Tells each member's middleware to leave its plain path. */
  readonly #onShared: Array<() => void> = [];

  constructor(root: RateLimit<Request>) {
    this.#root = root;
  }

  /** Registers a member; `onShared` runs once the family is shared (at once if it is already). */
  join(onShared: () => void): void {
    if (this.#counted !== undefined) onShared();
    else this.#onShared.push(onShared);
  }

  /** Called when a same-bucket variant is made: from now on the members count each request once. */
  share(): void {
    if (this.#counted !== undefined) return;
    this.#counted = new WeakMap();
    for (const onShared of this.#onShared.splice(0)) onShared();
  }

  /**
   * The middleware of a member off its plain path: in a shared family, or one that settles responses
   * (`skipFailedRequests`/`skipSuccessfulRequests`).
   */
  handle(core: RateLimit<Request>, variant: boolean, req: Request, res: Response, next: NextFunction): void {
    const counted = this.#counted;
    const previous = counted?.get(req);
    if (counted !== undefined && previous !== undefined) {
      // The family counted the request already. The limiter itself (after a variant, or mounted on the app
      // and a router too) lets it by: counting anew would count it twice, and the count it superseded would
      // never be settled. So does a variant that finds the client gone: a member in front may have settled
      // its count already (given it back for `skipFailedRequests`), and giving it back again would mint.
      if (!variant || res.closed) {
        next();
        return;
      }
      this.#giveBack(counted, req, previous, res);
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
      Promise.resolve(result)
        .then((settled) => apply(core, variant, counted, settled, req, res, next))
        .then(undefined, (error: unknown) => next(error));
    } else {
      // A function of the module, not a closure: a synchronous store allocates nothing more per request.
      apply(core, variant, counted, result as RateLimitResult, req, res, next);
    }
  }

  /**
   * Undoes what a member in front counted for the request: its tokens go back before the variant asks
   * for its own (a variant of cost 5 behind a limiter of cost 1 must fit a bucket holding 5), and its
   * fields come off the response, which then carries the variant's alone (none if the variant skips).
   */
  #giveBack(
    counted: WeakMap<Request, RateLimitResult>,
    req: Request,
    previous: RateLimitResult,
    res: Response,
  ): void {
    // Marked first: a close listener of the member in front then finds its count superseded.
    counted.set(req, NOTHING);
    if (!res.headersSent) {
      for (let i = 0; i < previous.headers.length; i += 1) {
        const [name, value] = previous.headers[i] as readonly [string, string];
        // Only while it holds what the family set: another limiter mounted since may have written its own
        // value, which stays (it counted the request).
        if (res.getHeader(name) === value) res.removeHeader(name);
      }
    }
    // The root's refund serves every member: a same-bucket variant keeps the policies and their order.
    this.#root.refund(previous);
  }
}

/** A member's answer: its fields, what the family counted (if shared), its refusal or its settling. */
function apply(
  core: RateLimit<Request>,
  variant: boolean,
  counted: WeakMap<Request, RateLimitResult> | undefined,
  result: RateLimitResult,
  req: Request,
  res: Response,
  next: NextFunction,
): void {
  if (result.headers.length > 0) setHeaders(res, result.headers);
  // A variant's skip counts too: the limiter reached after it lets the request by.
  if (counted !== undefined && (variant || result.action === 'allow')) counted.set(req, result);
  if (result.action === 'deny') {
    sendAnswer(res, result.answer);
    return;
  }
  if (core.settlesResponses && result.action === 'allow') {
    if (counted === undefined) core.settleOnClose(req, result, res);
    else settleWhileCurrent(core, counted, req, result, res);
  }
  next();
}

/**
 * `core.settleOnClose`, unless another member counted the request again after this one: that one then
 * holds the count, and settling this one too could give the same tokens back twice.
 */
function settleWhileCurrent(
  core: RateLimit<Request>,
  counted: WeakMap<Request, RateLimitResult>,
  req: Request,
  result: RateLimitResult,
  res: Response,
): void {
  const settle = () => {
    if (counted.get(req) === result) core.settle(req, result, res.writableEnded ? res.statusCode : undefined);
  };
  if (res.closed) settle();
  else res.once('close', settle);
}
