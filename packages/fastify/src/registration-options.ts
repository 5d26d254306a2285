/**
 * Options Fastify itself reads from `register(plugin, options)` and then hands to the plugin along with
 * its own: a plugin that rejects unknown options must not reject these.
 */
const REGISTRATION_OPTIONS = ['prefix', 'logLevel', 'logSerializers'] as const;

/** The plugin's own options: `options` without Fastify's registration options (a copy only when needed). */
export function pluginOptions<T extends object>(options: T): T {
  if (!REGISTRATION_OPTIONS.some((name) => name in options)) return options;
  const own = { ...options } as Record<string, unknown>;
  for (const name of REGISTRATION_OPTIONS) delete own[name];
  return own as T;
}
