import {
  invalidOption,
  type LoadShedder,
  type LoadShedderOptions,
  shedderFromOptions,
} from '@floodgate/http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { sendAnswer } from './send.js';

/** Options of {@link loadShedding}. */
export interface ExpressLoadSheddingOptions extends LoadShedderOptions {
  /**
   * A shedder shared with other routes (so checkout and browsing compete for one capacity), instead of
   * the shedder options.
   */
  readonly shedder?: LoadShedder;
  /**
   * Priority class of the requests through this middleware, or a function of the request.
   * @default the shedder's defaultPriority ('normal')
   */
  readonly priority?: string | ((req: Request) => string);
}

/** The load-shedding middleware, with its shedder. */
export interface LoadSheddingMiddleware extends RequestHandler {
  /** The shedder that decides, given or made from the options: share it with other routes. */
  readonly shedder: LoadShedder;
}

/**
 * Express middleware that answers 503 + `Retry-After` + problem+json at once when the protected
 * upstream is saturated (gate queue full, wait too long, breaker open) or too many requests are in
 * flight; cheaper priority classes are shed first.
 *
 * @throws {InvalidOptionError} at set-up on an unknown or invalid option.
 * @example
 * const shedder = loadShedder({ maxConcurrent: 200, breaker: bankBreaker });
 * app.get('/products', loadShedding({ shedder, priority: 'low' }), browse);
 * app.post('/checkout', loadShedding({ shedder, priority: 'critical' }), checkout);
 */
export function loadShedding(options: ExpressLoadSheddingOptions = {}): LoadSheddingMiddleware {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw invalidOption('options', 'an object', options);
  }
  const { shedder: given, priority, ...shedderOptions } = options;
  const shedder = shedderFromOptions(given, shedderOptions, 'loadShedding()', ['shedder', 'priority']);
  if (priority !== undefined && typeof priority !== 'string' && typeof priority !== 'function') {
    throw invalidOption('priority', 'a priority class name or a function of the request', priority);
  }
  if (typeof priority === 'string' && !shedder.hasPriority(priority)) {
    throw invalidOption('priority', 'a configured priority class', priority);
  }
  const fixed = typeof priority === 'string' ? priority : shedder.defaultPriority;
  const classify = typeof priority === 'function' ? priority : undefined;

  const middleware = function floodgateLoadShedding(req: Request, res: Response, next: NextFunction): void {
    let admission: ReturnType<LoadShedder['admit']>;
    try {
      admission = shedder.admit(classify === undefined ? fixed : classify(req));
    } catch (error) {
      next(error);
      return;
    }
    if (!admission.admitted) {
      sendAnswer(res, admission.answer);
      return;
    }
    // 'close' fires once the response is finished or the connection is gone: the slot is freed either way.
    // A client that left while an earlier middleware awaited (idempotency looking its key up) sent its
    // 'close' already: listening for it would hold the slot for good.
    if (res.closed) admission.release();
    else res.once('close', admission.release);
    next();
  };
  return Object.assign(middleware, { shedder });
}
