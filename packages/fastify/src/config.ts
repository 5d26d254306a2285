import type { IdempotencyOptions, RateLimitOptions, RateLimitResult } from '@floodgate/http';
import type { FastifyRequest } from 'fastify';

/** Per-route rate-limit override: `false` turns it off; options change the route's cost, headers or policy. */
export type RouteRateLimitConfig = false | Partial<RateLimitOptions<FastifyRequest>>;

/** Per-route idempotency: `true` turns it on, `false` off, options override the plugin's (same store). */
export type RouteIdempotencyConfig = boolean | Omit<IdempotencyOptions, 'store'>;

/** Per-route load shedding: `false` turns it off; `priority` sets the route's class. */
export type RouteLoadSheddingConfig =
  | false
  | {
      /** The route's priority class, one of the shedder's `priorities`. @default the plugin's `priority` */
      readonly priority?: string;
    };

/** floodgate's part of a route's `config`: one key, so it never collides with other plugins' keys. */
export interface FloodgateRouteConfig {
  /** The route's rate limit: `false` (off) or options over `floodgateRateLimit`'s. */
  readonly rateLimit?: RouteRateLimitConfig;
  /** The route's idempotency: on, off, or options over `floodgateIdempotency`'s. @default the plugin's `global` */
  readonly idempotency?: RouteIdempotencyConfig;
  /** The route's load shedding: `false` (off) or its priority class. */
  readonly loadShedding?: RouteLoadSheddingConfig;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * floodgate per-route settings, e.g.
     * `{ config: { floodgate: { rateLimit: { cost: 5 }, idempotency: true, loadShedding: { priority: 'low' } } } }`.
     */
    floodgate?: FloodgateRouteConfig;
  }
  interface FastifyRequest {
    /** The rate-limit outcome of this request (`null` when the route is not limited). */
    floodgateRateLimit: RateLimitResult | null;
  }
}

/** Adds a hook to a route's own hook list, whatever shape (none, one, array) the list has. */
export function appendHook<T>(existing: T | readonly T[] | undefined, hook: T): T[] {
  if (existing === undefined) return [hook];
  return Array.isArray(existing) ? [...existing, hook] : [existing as T, hook];
}
