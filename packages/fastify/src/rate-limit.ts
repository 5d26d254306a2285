import { invalidOption, RateLimit, type RateLimitOptions, type RateLimitResult } from '@floodgate/http';
import type { FastifyPluginCallback, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import fp from 'fastify-plugin';
import { socketAddressReader } from './client-address.js';
import { appendHook } from './config.js';
import { pluginOptions } from './registration-options.js';
import { ReplyFields } from './reply-fields.js';
import { type Denials, RefusalSender } from './send-refusal.js';

/** Options of the {@link floodgateRateLimit} plugin. */
export interface FastifyRateLimitOptions extends RateLimitOptions<FastifyRequest> {
  /**
   * Limit every route registered after the plugin (opt out with `config.floodgate.rateLimit: false`);
   * `false` limits only routes that set `config.floodgate.rateLimit`.
   * @default true
   */
  readonly global?: boolean;
  /**
   * Hook the check runs in: `onRequest` refuses before the body is read (cheapest); `preHandler` when
   * the key needs something set later (an authenticated user decorated by an auth hook).
   * @default 'onRequest'
   */
  readonly hook?: 'onRequest' | 'preHandler';
  /**
   * How a 429 is sent: `'raw'` on Node's response after `reply.hijack()` (`onSend` hooks do not see it),
   * `'reply'` through `reply.send()`. See {@link Denials}.
   * @default 'raw'
   */
  readonly denials?: Denials;
}

/** What the hooks of one plugin registration share. */
interface HookParts {
  readonly core: RateLimit<FastifyRequest>;
  readonly sender: RefusalSender;
  readonly replyFields: ReplyFields;
}

function apply(
  result: RateLimitResult,
  request: FastifyRequest,
  reply: FastifyReply,
  done: HookHandlerDoneFunction,
  { core, sender, replyFields }: HookParts,
): void {
  request.floodgateRateLimit = result;
  if (result.action === 'deny') {
    sender.send(reply, result.answer, result.headers);
    return;
  }
  if (core.settlesResponses) core.settleOnClose(request, result, reply.raw);
  const headers = result.headers;
  // The RateLimit fields are lower-case and never set-cookie: storing them where `reply.header()` would is
  // what it does, without its per-call checks (see ReplyFields).
  const pending = replyFields.of(reply);
  for (let i = 0; i < headers.length; i += 1) {
    const field = headers[i] as readonly [string, string];
    if (pending === undefined) reply.header(field[0], field[1]);
    else pending[field[0]] = field[1];
  }
  done();
}

function hookOf(parts: HookParts) {
  const core = parts.core;
  return function floodgateRateLimit(
    request: FastifyRequest,
    reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ): void {
    let result: RateLimitResult | Promise<RateLimitResult>;
    try {
      result = core.check(request);
    } catch (error) {
      done(error as Error);
      return;
    }
    // A thenable, as the core tells one (a store may answer with any promise-like).
    if (typeof (result as Partial<Promise<RateLimitResult>>).then === 'function') {
      // Anything `apply` throws reaches Fastify's error handler too, never an unhandled rejection with the
      // request left hanging. (On the synchronous path Fastify's hook runner catches it.)
      Promise.resolve(result)
        .then((settled) => apply(settled, request, reply, done, parts))
        .then(undefined, (error: unknown) => done(error as Error));
    } else {
      apply(result as RateLimitResult, request, reply, done, parts);
    }
  };
}

const setup: FastifyPluginCallback<FastifyRateLimitOptions> = (fastify, options, done) => {
  const { global = true, hook = 'onRequest', denials = 'raw', ...coreOptions } = options;
  if (typeof global !== 'boolean') throw invalidOption('global', 'a boolean', global);
  if (hook !== 'onRequest' && hook !== 'preHandler') {
    throw invalidOption('hook', "`'onRequest'` or `'preHandler'`", hook);
  }
  const replyFields = new ReplyFields();
  // Each hook has its own sender: its cache holds the refusal of one core.
  const sender = new RefusalSender(denials, replyFields);
  const core = new RateLimit<FastifyRequest>(coreOptions, { clientAddress: socketAddressReader() });
  const shared = hookOf({ core, sender, replyFields });
  const derived: RateLimit<FastifyRequest>[] = [];
  fastify.decorateRequest('floodgateRateLimit', null);
  // Each route gets its own prepared hook at registration: nothing is looked up per request.
  fastify.addHook('onRoute', (route) => {
    const config = route.config?.floodgate?.rateLimit;
    if (config === false || (config === undefined && !global)) return;
    let routeHook = shared;
    if (config !== undefined && Object.keys(config).length > 0) {
      const routeCore = core.derive(config);
      derived.push(routeCore);
      routeHook = hookOf({
        core: routeCore,
        sender: new RefusalSender(denials, replyFields),
        replyFields,
      });
    }
    route[hook] = appendHook(route[hook], routeHook as never);
  });
  fastify.addHook('onClose', async () => {
    await Promise.all([core.close(), ...derived.map((d) => d.close())]);
  });
  done();
};

// Avvio does not catch a synchronous throw of a callback plugin (fastify-plugin then reports a timeout):
// an invalid option must reach `ready()`/`register()` as the error it is.
const plugin: FastifyPluginCallback<FastifyRateLimitOptions> = (fastify, options, done) => {
  try {
    setup(fastify, pluginOptions(options), done);
  } catch (error) {
    done(error as Error);
  }
};
/**
 * Fastify 5 plugin: floodgate token-bucket rate limits on every route registered after it (or only on
 * routes that opt in), 429 + `Retry-After` + `application/problem+json`, RateLimit headers (draft-8 by
 * default). The default key is `request.ip`, which honours Fastify's `trustProxy`; IPv6 is grouped by /56.
 * Per-route override: `config: { floodgate: { rateLimit: { cost: 5 } } }` or `rateLimit: false`.
 *
 * @throws {InvalidOptionError} at registration on an unknown or invalid option.
 * @example
 * await app.register(floodgateRateLimit, { limit: 100, windowMs: 60_000 });
 */
export const floodgateRateLimit = fp(plugin, { fastify: '5.x', name: '@floodgate/fastify/rate-limit' });
