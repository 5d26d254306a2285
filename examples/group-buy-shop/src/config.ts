import { parseArgs } from 'node:util';

/**
 * The bank's flow limit, payments per second. This is the ONE place the shop's number comes from: the
 * festival starts the bank with it and hands the same value to every shop process, whose gate, RateLimit
 * headers, load shedding and dashboard all read `ShopConfig.bankRate`.
 */
export const DEFAULT_BANK_RATE = 300;

export const SHOP_KINDS = ['naive', 'careful', 'floodgate'] as const;
export type ShopKind = (typeof SHOP_KINDS)[number];

/** How one shop process is started (flags, each with an environment fallback). */
export interface ShopConfig {
  readonly shop: ShopKind;
  readonly host: string;
  readonly port: number;
  /** SQLite file; created with its schema on first run. */
  readonly db: string;
  readonly bankUrl: string;
  readonly bankRate: number;
  /** Share the bank's limit with other shop processes through Redis (floodgate shop only). */
  readonly redisUrl: string | undefined;
  readonly instance: string;
}

function fail(message: string): never {
  throw new TypeError(message);
}

function positiveNumber(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    fail(`Expected \`--${name}\` to be a finite number > 0, got \`${value}\``);
  return n;
}

/**
 * Reads a shop's configuration from its command line and environment.
 * @throws {TypeError} on an unknown flag or a value out of range.
 */
export function readShopConfig(args: readonly string[], env: NodeJS.ProcessEnv = process.env): ShopConfig {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    options: {
      shop: { type: 'string', default: env.SHOP ?? 'floodgate' },
      host: { type: 'string', default: env.HOST ?? '127.0.0.1' },
      port: { type: 'string', default: env.PORT ?? '3000' },
      db: { type: 'string', default: env.SHOP_DB ?? 'shop.db' },
      'bank-url': { type: 'string', default: env.BANK_URL ?? 'http://127.0.0.1:4000' },
      'bank-rate': { type: 'string', default: env.BANK_RATE ?? String(DEFAULT_BANK_RATE) },
      redis: { type: 'string', ...(env.REDIS_URL_SHOP ? { default: env.REDIS_URL_SHOP } : {}) },
      instance: { type: 'string', default: env.SHOP_INSTANCE ?? 'shop-1' },
    },
  });
  const shop = values.shop as ShopKind;
  if (!SHOP_KINDS.includes(shop))
    fail(`Expected \`--shop\` to be one of ${SHOP_KINDS.join(', ')}, got \`${values.shop}\``);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`Expected \`--port\` to be an integer from 0 to 65535, got \`${values.port}\``);
  }
  return {
    shop,
    host: values.host,
    port,
    db: values.db,
    bankUrl: values['bank-url'].replace(/\/+$/, ''),
    bankRate: positiveNumber('bank-rate', values['bank-rate']),
    redisUrl: values.redis,
    instance: values.instance,
  };
}
