import {
  defaultIdempotencyScope,
  IDEMPOTENCY_OPTION_NAMES,
  Idempotency,
  type IdempotencyOptions,
  type IdempotencyTicket,
  InvalidOptionError,
  invalidOption,
  resolveIdempotencyScope,
} from '@floodgate/http';
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { answerBody } from './answer-body.js';
import { appendHook } from './config.js';
import { pluginOptions } from './registration-options.js';

/** Options of the {@link floodgateIdempotency} plugin. */
export interface FastifyIdempotencyOptions extends IdempotencyOptions {
  /**
   * Who a key belongs to: one scope's key never replays another scope's response. Return the
   * authenticated user or tenant id. `undefined`, `null` or `''` (no user known) fall back to the
   * default, so anonymous clients never share one scope.
   * @default a hash of the `Authorization` header when there is one, else `request.ip`
   */
  readonly scope?: (
    request: FastifyRequest,
  ) => string | number | undefined | null | Promise<string | number | undefined | null>;
  /**
   * Apply to every route (of the concerned methods) registered after the plugin; `false` applies only to
   * routes with `config.floodgate.idempotency`.
   * @default false
   */
  readonly global?: boolean;
}

const KNOWN = [...IDEMPOTENCY_OPTION_NAMES, 'scope', 'global'];

/**
 * Whether the request carries a body nothing has read: a content-type parser that leaves the payload to
 * the handler (`done(null)` without reading it) makes `request.body` undefined whatever was sent, and the
 * fingerprint would call every payload the same. Over HTTP/2, where no `Content-Length` is needed, a
 * stream whose headers did not end it carries a body.
 */
function bodyUnread(raw: FastifyRequest['raw']): boolean {
  if (raw.readableEnded) return false;
  const { headers } = raw;
  if (headers['transfer-encoding'] !== undefined) return true;
  const length = headers['content-length'];
  if (length !== undefined) return Number(length) > 0;
  return (
    (raw as { readonly stream?: { readonly endAfterHeaders: boolean } }).stream?.endAfterHeaders === false
  );
}

const setup: FastifyPluginCallback<FastifyIdempotencyOptions> = (fastify, options, done) => {
  for (const name of Object.keys(options)) {
    if (!KNOWN.includes(name)) {
      throw new InvalidOptionError(
        name,
        `Unknown option \`${name}\` for floodgateIdempotency; expected one of ${KNOWN.join(', ')}`,
      );
    }
  }
  const { scope, global = false, ...coreOptions } = options;
  if (scope !== undefined && typeof scope !== 'function') throw invalidOption('scope', 'a function', scope);
  if (typeof global !== 'boolean') throw invalidOption('global', 'a boolean', global);
  const core = new Idempotency(coreOptions);
  const tickets = new WeakMap<FastifyRequest, IdempotencyTicket>();

  function preHandlerOf(routeCore: Idempotency) {
    return async function floodgateIdempotency(request: FastifyRequest, reply: FastifyReply) {
      if (!routeCore.appliesTo(request.method)) return;
      const scoped =
        scope === undefined
          ? defaultIdempotencyScope(request)
          : resolveIdempotencyScope(await scope(request), request);
      const raw = reply.raw;
      const start = await routeCore.startWhileConnected(
        {
          method: request.method,
          url: request.url,
          keyHeader: request.headers[routeCore.header],
          body: request.body,
          bodyUnread: bodyUnread(request.raw),
          scope: scoped,
        },
        raw,
      );
      if (start.kind === 'answer') {
        return reply
          .code(start.answer.status)
          .headers(start.answer.headers)
          .send(answerBody(start.answer.body));
      }
      if (start.kind === 'proceed') tickets.set(request, start.ticket);
      return;
    };
  }

  // The handler's reply, as serialised, is what a retry gets back.
  async function onSend(request: FastifyRequest, reply: FastifyReply, payload: unknown) {
    const ticket = tickets.get(request);
    if (ticket === undefined) return payload;
    tickets.delete(request);
    if (
      // A head sent through `reply.raw` already: the wire carries another answer than this payload (Fastify
      // cannot send it and destroys the connection), so there is nothing true to replay.
      reply.raw.headersSent ||
      // A Node or web stream, or a fetch `Response`: sent as it is read, not stored.
      !(
        payload === undefined ||
        payload === null ||
        typeof payload === 'string' ||
        payload instanceof Uint8Array
      )
    ) {
      await ticket.abandon();
    } else {
      await ticket.finish({
        status: reply.statusCode,
        headers: reply.getHeaders() as Record<string, string | number | string[] | undefined>,
        body: payload ?? undefined,
      });
    }
    return payload;
  }

  async function onResponse(request: FastifyRequest) {
    const ticket = tickets.get(request);
    if (ticket === undefined) return;
    tickets.delete(request);
    await ticket.abandon();
  }

  const shared = preHandlerOf(core);
  fastify.addHook('onRoute', (route) => {
    const config = route.config?.floodgate?.idempotency;
    if (config === false || (config === undefined && !global)) return;
    let routeCore = core;
    if (config !== undefined && typeof config !== 'boolean') {
      const option = 'config.floodgate.idempotency';
      const onRoute = `on route ${String(route.method)} ${route.url}`;
      if (typeof config !== 'object' || config === null || Array.isArray(config))
        throw invalidOption(option, `\`true\`, \`false\` or idempotency options ${onRoute}`, config);
      // Every route shares the plugin's store (a route's own would split one key's records in two).
      if ('store' in config) {
        const store = (config as { store?: unknown }).store;
        throw invalidOption(`${option}.store`, `absent ${onRoute} (routes share the plugin's store)`, store);
      }
      routeCore = new Idempotency({ ...coreOptions, ...config, store: core.store });
    }
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!methods.some((m) => routeCore.appliesTo(m))) return;
    route.preHandler = appendHook(
      route.preHandler,
      (routeCore === core ? shared : preHandlerOf(routeCore)) as never,
    );
    route.onSend = appendHook(route.onSend, onSend as never);
    route.onResponse = appendHook(route.onResponse, onResponse as never);
  });
  fastify.addHook('onClose', async () => {
    await core.close();
  });
  done();
};

// Avvio does not catch a synchronous throw of a callback plugin (fastify-plugin then reports a timeout):
// an invalid option must reach `ready()`/`register()` as the error it is.
const plugin: FastifyPluginCallback<FastifyIdempotencyOptions> = (fastify, options, done) => {
  try {
    setup(fastify, pluginOptions(options), done);
  } catch (error) {
    done(error as Error);
  }
};
/**
 * Fastify 5 plugin for idempotent endpoints (draft-ietf-httpapi-idempotency-key-header). Routes opt in
 * with `config: { floodgate: { idempotency: true } }` (or all routes with `global: true`). The check
 * runs in `preHandler` (the body is parsed, so the fingerprint covers it) and the reply is captured in
 * `onSend`: replay with `Idempotent-Replayed: true`, 422 for another payload, 409 + `Retry-After` or
 * coalescing while in flight.
 *
 * @throws {InvalidOptionError} at registration on an unknown or invalid option.
 * @example
 * await app.register(floodgateIdempotency, { scope: (req) => req.user.id });
 * app.post('/checkout', { config: { floodgate: { idempotency: true } } }, checkout);
 */
export const floodgateIdempotency = fp(plugin, { fastify: '5.x', name: '@floodgate/fastify/idempotency' });
