import type { Request } from 'express';

/**
 * The client address Express's `req.ip` gives, without its cost in the common case. `req.ip` runs
 * proxy-addr on every read, which parses `X-Forwarded-For` even when `trust proxy` is off; with the
 * setting off (Express's default) the answer is always the socket's peer address, so read that instead.
 * Any other setting, or an `ip` an earlier middleware set on the request itself, goes through `req.ip`,
 * so the app's own rules apply unchanged.
 * Measured: `req.ip` cost about as much CPU per request as the rest of the middleware (bench/README.md).
 */
export function clientAddress(req: Request): string | undefined {
  // `settings` inherits from a parent app's through its prototype, as Express's own lookups do.
  if (req.app?.settings?.['trust proxy'] === false && !Object.hasOwn(req, 'ip')) {
    return req.socket?.remoteAddress;
  }
  return req.ip;
}
