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

/** What a family counted for one request while it is under way. */
interface Counted {
  /** The answer of the member that counted it last: an `'allow'` holds what a variant gives back. */
  result: RateLimitResult;
  /** Whether that member was a variant: the limiter it refines then lets the request by, uncounted. */
  byVariant: boolean;
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
 * and the limiter reached after a variant lets the request by. Express has no route-level replacement as
 * Fastify's `config` has: `app.use(limiter)` runs before the router knows the route.
 *
 * Until the first such variant exists no member looks anything up: a plain `app.use(rateLimit(...))`
 * pays nothing for this (its middleware tests one flag it tested before for `settlesResponses`).
 */
export class Family {
  readonly #root: RateLimit<Request>;
  /**
   * What each request in flight was counted as, keyed by Express's request: a property on `req` would cost
   * every request ~17k instructions (bench/README.md session 10), a WeakMap costs only this family's
   * requests, and nothing is left to clean up once a request is gone.
   */
  #counted: WeakMap<Request, Counted> | undefined;
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
    let entry = counted?.get(req);
    if (entry !== undefined) {
      if (!variant) {
        if (entry.byVariant) {
          next();
          return;
        }
      } else if (res.closed) {
        // The client is gone and a member in front may have settled its count already (given it back
        // for `skipFailedRequests`): recounting now could give the same tokens back twice.
        next();
        return;
      } else {
        this.#giveBack(entry, res);
      }
    }
    let result: RateLimitResult | Promise<RateLimitResult>;
    try {
      result = core.check(req);
    } catch (error) {
      next(error);
      return;
    }
    const apply = (settled: RateLimitResult): void => {
      if (settled.headers.length > 0) setHeaders(res, settled.headers);
      if (counted !== undefined && (variant || settled.action === 'allow')) {
        if (entry === undefined) {
          entry = { result: settled, byVariant: variant };
          counted.set(req, entry);
        } else {
          entry.result = settled;
          entry.byVariant = variant;
        }
      }
      if (settled.action === 'deny') {
        sendAnswer(res, settled.answer);
        return;
      }
      if (core.settlesResponses && settled.action === 'allow') {
        if (entry === undefined) core.settleOnClose(req, settled, res);
        else settleWhileCurrent(core, req, settled, res, entry);
      }
      next();
    };
    // A thenable, as the core tells one (a store may answer with any promise-like).
    if (typeof (result as Partial<Promise<RateLimitResult>>).then === 'function') {
      Promise.resolve(result)
        .then(apply)
        .then(undefined, (error: unknown) => next(error));
    } else {
      apply(result as RateLimitResult);
    }
  }

  /**
   * Undoes what a member in front counted for the request: its tokens go back before the variant asks
   * for its own (a variant of cost 5 behind a limiter of cost 1 must fit a bucket holding 5), and its
   * fields come off the response, which then carries the variant's alone (none if the variant skips).
   */
  #giveBack(entry: Counted, res: Response): void {
    const previous = entry.result;
    // Marked first: a close listener of the member in front then finds its count superseded.
    entry.result = NOTHING;
    if (!res.headersSent) {
      for (let i = 0; i < previous.headers.length; i += 1) {
        res.removeHeader((previous.headers[i] as readonly [string, string])[0]);
      }
    }
    // The root's refund serves every member: a same-bucket variant keeps the policies and their order.
    this.#root.refund(previous);
  }
}

/**
 * `core.settleOnClose`, unless another member counted the request again after this one: that one then
 * holds the count, and settling this one too could give the same tokens back twice.
 */
function settleWhileCurrent(
  core: RateLimit<Request>,
  req: Request,
  result: RateLimitResult,
  res: Response,
  entry: Counted,
): void {
  const settle = () => {
    if (entry.result === result) core.settle(req, result, res.writableEnded ? res.statusCode : undefined);
  };
  if (res.closed) settle();
  else res.once('close', settle);
}
