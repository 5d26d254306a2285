import { parseArgs } from 'node:util';

/**
 * The bank's flow limit, payments per second. This is the ONE place the shop's number comes from: the
 * festival starts the bank with it and hands the same value to every shop process, whose gate, RateLimit
 * headers, load shedding and dashboard all read `ShopConfig.bankRate`.
 */
export const DEFAULT_BANK_RATE = 300;

export const SHOP_KINDS = ['naive', 'careful', 'floodgate'] as const;
export type ShopKind = (typeof SHOP_KINDS)[number];

/**
 * The HTTP frameworks a shop can be served by: `app.ts` (Express 5) and `fastify-app.ts` (Fastify 5). The
 * Fastify app is the floodgate shop only: the naive and careful shops' checkout guards are Express
 * middleware (express-rate-limit among them).
 */
export const FRAMEWORKS = ['express', 'fastify'] as const;
export type Framework = (typeof FRAMEWORKS)[number];

/** How one shop process is started (flags, each with an environment fallback). */
export interface ShopConfig {
  readonly shop: ShopKind;
  /** Which app serves it (`--framework`, env `SHOP_FRAMEWORK`); `fastify` only with `--shop floodgate`. */
  readonly framework: Framework;
  readonly host: string;
  readonly port: number;
  /** SQLite file; created with its schema on first run. */
  readonly db: string;
  readonly bankUrl: string;
  readonly bankRate: number;
  /** Share the bank's limit with other shop processes through Redis (floodgate shop only). */
  readonly redisUrl: string | undefined;
  readonly instance: string;
  /**
   * How long a stopping process (SIGTERM, SIGINT) lets the requests in flight finish, in ms
   * (`--shutdown-grace-ms`, env `SHOP_SHUTDOWN_GRACE_MS`). A checkout still waiting for the bank at its
   * end is answered 202 pending; its payment stays in the ledger for the next start. 0 answers them at
   * once.
   * @default 5000
   */
  readonly shutdownGraceMs: number;
}

/** {@link ShopConfig.shutdownGraceMs}'s default: a few seconds, well inside an orchestrator's own (30 s). */
export const DEFAULT_SHUTDOWN_GRACE_MS = 5000;

function fail(message: string): never {
  throw new TypeError(message);
}

/**
 * `value` as a framework, for a command line's `--${name}`.
 * @throws {TypeError} naming the option and the value when it is not one of {@link FRAMEWORKS}.
 */
export function parseFramework(value: string, name = 'framework'): Framework {
  const framework = value as Framework;
  if (!FRAMEWORKS.includes(framework))
    fail(`Expected \`--${name}\` to be one of ${FRAMEWORKS.join(', ')}, got \`${value}\``);
  return framework;
}

/**
 * Checks that `framework` can serve `shop`.
 * @throws {TypeError} naming both options when it cannot (Fastify serves the floodgate shop only).
 */
export function checkFrameworkServes(framework: Framework, shop: ShopKind): void {
  if (framework === 'fastify' && shop !== 'floodgate') {
    fail(
      `Expected \`--shop\` to be \`floodgate\` with \`--framework fastify\` (the Fastify app is the floodgate shop only), got \`${shop}\``,
    );
  }
}

/**
 * A script's flags as typed after `pnpm start --`: pnpm 10 hands that `--` on to the script (npm drops
 * it), and `parseArgs` would read every flag after it as a positional argument and refuse them all.
 */
export function flagsOf(args: readonly string[]): string[] {
  return args[0] === '--' ? args.slice(1) : [...args];
}

function positiveNumber(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    fail(`Expected \`--${name}\` to be a finite number > 0, got \`${value}\``);
  return n;
}

function nonNegativeInteger(name: string, value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < 0)
    fail(`Expected \`--${name}\` to be an integer >= 0, got \`${value}\``);
  return n;
}

/**
 * Reads a shop's configuration from its command line and environment.
 * @throws {TypeError} on an unknown flag or a value out of range.
 */
export function readShopConfig(args: readonly string[], env: NodeJS.ProcessEnv = process.env): ShopConfig {
  const { values } = parseArgs({
    args: flagsOf(args),
    strict: true,
    options: {
      shop: { type: 'string', default: env.SHOP ?? 'floodgate' },
      framework: { type: 'string', default: env.SHOP_FRAMEWORK ?? 'express' },
      host: { type: 'string', default: env.HOST ?? '127.0.0.1' },
      port: { type: 'string', default: env.PORT ?? '3000' },
      db: { type: 'string', default: env.SHOP_DB ?? 'shop.db' },
      'bank-url': { type: 'string', default: env.BANK_URL ?? 'http://127.0.0.1:4000' },
      'bank-rate': { type: 'string', default: env.BANK_RATE ?? String(DEFAULT_BANK_RATE) },
      redis: { type: 'string', ...(env.REDIS_URL_SHOP ? { default: env.REDIS_URL_SHOP } : {}) },
      instance: { type: 'string', default: env.SHOP_INSTANCE ?? 'shop-1' },
      'shutdown-grace-ms': {
        type: 'string',
        default: env.SHOP_SHUTDOWN_GRACE_MS ?? String(DEFAULT_SHUTDOWN_GRACE_MS),
      },
    },
  });
  const shop = values.shop as ShopKind;
  if (!SHOP_KINDS.includes(shop))
    fail(`Expected \`--shop\` to be one of ${SHOP_KINDS.join(', ')}, got \`${values.shop}\``);
  const framework = parseFramework(values.framework);
  checkFrameworkServes(framework, shop);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`Expected \`--port\` to be an integer from 0 to 65535, got \`${values.port}\``);
  }
  return {
    shop,
    framework,
    host: values.host,
    port,
    db: values.db,
    bankUrl: values['bank-url'].replace(/\/+$/, ''),
    bankRate: positiveNumber('bank-rate', values['bank-rate']),
    redisUrl: values.redis,
    instance: values.instance,
    shutdownGraceMs: nonNegativeInteger('shutdown-grace-ms', values['shutdown-grace-ms']),
  };
}
