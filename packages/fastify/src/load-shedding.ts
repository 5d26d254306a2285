import {
  InvalidOptionError,
  invalidOption,
  type LoadShedder,
  type LoadShedderOptions,
  responseClosed,
  shedderFromOptions,
} from '@floodgate/http';
import type { FastifyPluginCallback, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import fp from 'fastify-plugin';
import { appendHook } from './config.js';
import { pluginOptions } from './registration-options.js';
import { checkDenials, type Denials, RefusalSender } from './send-refusal.js';

/** Options of the {@link floodgateLoadShedding} plugin. */
export interface FastifyLoadSheddingOptions extends LoadShedderOptions {
  /** A shedder shared with other code (e.g. an Express part of the app), instead of the shedder options. */
  readonly shedder?: LoadShedder;
  /**
   * Guard every route registered after the plugin (opt out with `config.floodgate.loadShedding: false`);
   * `false` guards only routes that set it.
   * @default true
   */
  readonly global?: boolean;
  /**
   * Priority class of a request when its route sets none: a class name or a function of the request.
   * @default the shedder's defaultPriority ('normal')
   */
  readonly priority?: string | ((request: FastifyRequest) => string);
  /**
   * When to shed: `'onRequest'` (before the body is read: the cheapest refusal) or `'preHandler'`, after
   * the `preHandler` hooks registered before this plugin, e.g. so `floodgateIdempotency` answers a
   * replay of a request already paid before shedding can answer "busy".
   * @default 'onRequest'
   */
  readonly hook?: 'onRequest' | 'preHandler';
  /**
   * How a 503 is sent: `'raw'` on Node's response after `reply.hijack()` (`onSend` hooks do not see it),
   * `'reply'` through `reply.send()`. See {@link Denials}.
   * @default 'raw'
   */
  readonly denials?: Denials;
}

const OWN = ['shedder', 'global', 'priority', 'hook', 'denials'];

const setup: FastifyPluginCallback<FastifyLoadSheddingOptions> = (fastify, options, done) => {
  const {
    shedder: given,
    global = true,
    priority,
    hook = 'onRequest',
    denials = 'raw',
    ...shedderOptions
  } = options;
  // As Express's loadShedding(): with a shared shedder, its options here would be silently ignored.
  const shedder = shedderFromOptions(given, shedderOptions, 'floodgateLoadShedding', OWN);
  if (typeof global !== 'boolean') throw invalidOption('global', 'a boolean', global);
  if (hook !== 'onRequest' && hook !== 'preHandler') {
    throw invalidOption('hook', "`'onRequest'` or `'preHandler'`", hook);
  }
  const sender = new RefusalSender(checkDenials(denials));
  const check = (name: unknown, option: string, onRoute = '') => {
    if (typeof name !== 'string' || !shedder.hasPriority(name))
      throw invalidOption(option, `a configured priority class${onRoute}`, name);
  };
  if (priority !== undefined && typeof priority !== 'string' && typeof priority !== 'function') {
    throw invalidOption('priority', 'a priority class name or a function of the request', priority);
  }
  if (typeof priority === 'string') check(priority, 'priority');

  function hookOf(classify: (request: FastifyRequest) => string) {
    return function floodgateLoadShedding(
      request: FastifyRequest,
      reply: FastifyReply,
      done: HookHandlerDoneFunction,
    ) {
      let admission: ReturnType<LoadShedder['admit']>;
      try {
        admission = shedder.admit(classify(request));
      } catch (error) {
        done(error as Error);
        return;
      }
      if (!admission.admitted) {
        sender.send(reply, admission.answer);
        return;
      }
      // Node's 'close' of the response, as in Express: it fires once the response is finished or the
      // connection is gone. Fastify's hooks miss a client that leaves a POST whose body was read:
      // `onRequestAbort` only runs while the body is unread, and `onResponse` needs a 'finish' that a
      // response written to a closed connection never emits, so the slot was never freed. A client
      // that left before this hook (during an earlier preHandler) sent its 'close' already.
      const raw = reply.raw;
      if (responseClosed(raw)) admission.release();
      else raw.once('close', admission.release);
      done();
    };
  }

  const fallback =
    typeof priority === 'function'
      ? priority
      : () => (priority as string | undefined) ?? shedder.defaultPriority;
  const shared = hookOf(fallback);
  fastify.addHook('onRoute', (route) => {
    const config = route.config?.floodgate?.loadShedding;
    if (config === false || (config === undefined && !global)) return;
    const option = 'config.floodgate.loadShedding';
    const onRoute = `on route ${String(route.method)} ${route.url}`;
    if (config !== undefined) {
      if (typeof config !== 'object' || config === null || Array.isArray(config))
        throw invalidOption(option, `\`false\` or \`{ priority }\` ${onRoute}`, config);
      for (const name of Object.keys(config)) {
        if (name !== 'priority') {
          throw new InvalidOptionError(
            `${option}.${name}`,
            `Unknown option \`${name}\` in \`${option}\` ${onRoute}; expected \`priority\``,
          );
        }
      }
    }
    let routeHook = shared;
    if (config?.priority !== undefined) {
      check(config.priority, `${option}.priority`, ` ${onRoute}`);
      const fixed = config.priority;
      routeHook = hookOf(() => fixed);
    }
    route[hook] = appendHook(route[hook], routeHook as never);
  });
  done();
};

// Avvio does not catch a synchronous throw of a callback plugin (fastify-plugin then reports a timeout):
// an invalid option must reach `ready()`/`register()` as the error it is.
const plugin: FastifyPluginCallback<FastifyLoadSheddingOptions> = (fastify, options, done) => {
  try {
    setup(fastify, pluginOptions(options), done);
  } catch (error) {
    done(error as Error);
  }
};
/**
 * Fastify 5 plugin: answer 503 + `Retry-After` + problem+json in `onRequest` (before the body is read;
 * `hook: 'preHandler'` sheds later) when the protected upstream is saturated or too many requests are in
 * flight; routes pick their priority class with `config: { floodgate: { loadShedding: { priority: 'low' } } }`.
 *
 * @throws {InvalidOptionError} at registration on an unknown or invalid option or priority.
 * @example
 * await app.register(floodgateLoadShedding, { maxConcurrent: 200, breaker: bankBreaker });
 */
export const floodgateLoadShedding = fp(plugin, { fastify: '5.x', name: '@floodgate/fastify/load-shedding' });
