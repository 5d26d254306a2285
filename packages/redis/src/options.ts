import { InvalidOptionError } from '@floodgate/token-bucket';
import type { Cluster, Redis, RedisOptions } from 'ioredis';

/**
 * What the store does while Redis cannot answer (unreachable, paused, slower than `timeoutMs`):
 * - `'fail-closed'`: `consume` rejects with `StoreUnavailableError` (`ERR_STORE_UNAVAILABLE`); nothing is
 *   admitted. The default: when the limit guards a bank, letting a surge through is worse than a pause.
 * - `'fail-open'`: every `consume` is allowed. For limits that protect nothing critical.
 *   What it lets through is spent nowhere, so refunds of it are dropped, never sent to Redis.
 * - `'local-fallback'`: each process keeps an in-memory bucket per key at `limit / liveInstances` (capacity
 *   and rate both divided), where `liveInstances` is counted from heartbeats in Redis before the outage,
 *   so the fleet as a whole stays near the shared limit.
 */
export type FailMode = 'fail-closed' | 'fail-open' | 'local-fallback';

/** A connected ioredis client: a standalone `Redis` or a `Cluster`. */
export type RedisClient = Redis | Cluster;

/** Options of {@link redisStore}. Exactly one of `client` and `url` is required. */
export interface RedisStoreOptions {
  /**
   * An ioredis client (standalone or Cluster) the store uses but does not own: `close()` leaves it open.
   * Recommended client options: `enableOfflineQueue: false` and `maxRetriesPerRequest: 0`; the store
   * never sends while the client is not ready, and bounds every call by `timeoutMs` in any case. With
   * retries, ioredis sends a decision in flight when the connection drops again after the reconnect, and
   * one that had run (only its reply lost) runs twice: a consume spends twice, a refund gives back twice.
   */
  readonly client?: RedisClient;
  /**
   * A `redis://` or `rediss://` URL; the store creates (and on `close()` quits) its own client with safe
   * settings: no offline queue, no retry of a call in flight when the connection drops (it fails and the
   * fail mode answers), auto-pipelining, capped reconnect backoff.
   */
  readonly url?: string;
  /** Extra ioredis options for the client created from `url` (TLS, username...). Merged over the safe defaults. */
  readonly redisOptions?: RedisOptions;
  /**
   * Prepended to every key. Must not contain `{` or `}`: the store wraps each limiter key in a hash tag.
   * @default 'floodgate:'
   */
  readonly prefix?: string;
  /**
   * Behaviour while Redis cannot answer; see {@link FailMode}.
   * @default 'fail-closed'
   */
  readonly failMode?: FailMode;
  /**
   * Longest a decision waits for Redis (from the call, through any wait for the connection, to the
   * reply). Past it the decision is taken by the fail mode. Keep it short: it is added to the latency of
   * every decision while Redis is slow, until the store is marked degraded.
   * @default 250
   */
  readonly timeoutMs?: number;
  /**
   * How long an `operationId` is remembered per key, so a retried consume does not spend twice; counted
   * from when the grant's tokens are ready (a reservation's wait is added). With `'local-fallback'` and
   * `'fail-open'`, also how long the tokens granted for a key without Redis are remembered, so that their
   * refunds do not go to Redis, which never spent them (see `refund`).
   * @default 600_000 (10 minutes)
   */
  readonly operationTtlMs?: number;
  /**
   * While degraded, how often one decision is sent to Redis as a probe (the others go straight to the
   * fail mode, so a slow Redis does not add `timeoutMs` to each of them). A `ready` event from the client
   * allows a probe at once.
   * @default 1_000
   */
  readonly probeIntervalMs?: number;
  /**
   * Coalesce concurrent decisions for the same key: while a script call for a key is in flight, further
   * calls for it queue and go together in the next call (one round trip, applied in order, atomically).
   * @default true
   */
  readonly coalesce?: boolean;
  /**
   * Most operations one script call carries when coalescing.
   * @default 128
   */
  readonly maxBatch?: number;
  /**
   * `'local-fallback'` only: how often this instance writes its heartbeat (and reads the live count).
   * An instance is live while its last beat is younger than three intervals.
   * @default 2_000
   */
  readonly heartbeatIntervalMs?: number;
  /**
   * `'local-fallback'`: most keys the local fallback keeps buckets for (least recently used first out).
   * `'local-fallback'` and `'fail-open'`: apart from those, most keys whose grants made without Redis are
   * remembered for their refunds (least recently granted first out).
   * @default 10_000
   */
  readonly maxLocalKeys?: number;
}

/** Options after defaults, validated. */
export interface ResolvedOptions {
  readonly client: RedisClient | undefined;
  readonly url: string | undefined;
  readonly redisOptions: RedisOptions;
  readonly prefix: string;
  readonly failMode: FailMode;
  readonly timeoutMs: number;
  readonly operationTtlMs: number;
  readonly probeIntervalMs: number;
  readonly coalesce: boolean;
  readonly maxBatch: number;
  readonly heartbeatIntervalMs: number;
  readonly maxLocalKeys: number;
}

const KNOWN = [
  'client',
  'url',
  'redisOptions',
  'prefix',
  'failMode',
  'timeoutMs',
  'operationTtlMs',
  'probeIntervalMs',
  'coalesce',
  'maxBatch',
  'heartbeatIntervalMs',
  'maxLocalKeys',
] as const;

const FAIL_MODES: readonly FailMode[] = ['fail-closed', 'fail-open', 'local-fallback'];

/** @internal */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** @internal An integer option in [min, max], or `fallback` when undefined. */
export function integerOption(
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(name, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

/** Merges the defaults once and validates every option, naming the option at fault. */
export function resolveOptions(options: unknown): ResolvedOptions {
  if (!isPlainObject(options)) {
    throw new InvalidOptionError('options', 'an object with `client` or `url`', options);
  }
  for (const key of Object.keys(options)) {
    if (!(KNOWN as readonly string[]).includes(key)) {
      throw new InvalidOptionError(key, `one of the options of redisStore (${KNOWN.join(', ')})`, key);
    }
  }
  const { client, url, redisOptions, prefix, failMode, coalesce } = options;

  checkConnection({ client, url, redisOptions, prefix });
  if (failMode !== undefined && !FAIL_MODES.includes(failMode as FailMode)) {
    throw new InvalidOptionError(
      'failMode',
      `one of ${FAIL_MODES.map((m) => `'${m}'`).join(', ')}`,
      failMode,
    );
  }
  if (coalesce !== undefined && typeof coalesce !== 'boolean') {
    throw new InvalidOptionError('coalesce', 'a boolean', coalesce);
  }
  return {
    client: client as RedisClient | undefined,
    url: url as string | undefined,
    redisOptions: (redisOptions ?? {}) as RedisOptions,
    prefix: (prefix as string | undefined) ?? 'floodgate:',
    failMode: (failMode as FailMode | undefined) ?? 'fail-closed',
    timeoutMs: integerOption('timeoutMs', options.timeoutMs, 250, 1, 60_000),
    operationTtlMs: integerOption('operationTtlMs', options.operationTtlMs, 600_000, 1, 2 ** 31 - 1),
    probeIntervalMs: integerOption('probeIntervalMs', options.probeIntervalMs, 1_000, 1, 3_600_000),
    coalesce: (coalesce as boolean | undefined) ?? true,
    maxBatch: integerOption('maxBatch', options.maxBatch, 128, 1, 10_000),
    heartbeatIntervalMs: integerOption(
      'heartbeatIntervalMs',
      options.heartbeatIntervalMs,
      2_000,
      10,
      3_600_000,
    ),
    maxLocalKeys: integerOption('maxLocalKeys', options.maxLocalKeys, 10_000, 1, 2 ** 31 - 1),
  };
}

/** @internal */
export function checkUrl(url: unknown): void {
  if (typeof url !== 'string') {
    throw new InvalidOptionError('url', 'a redis:// or rediss:// URL string', url);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidOptionError('url', 'a valid redis:// or rediss:// URL', url);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new InvalidOptionError('url', 'a URL with the redis: or rediss: scheme', url);
  }
  if (parsed.hostname === '') {
    throw new InvalidOptionError('url', 'a URL with a host', url);
  }
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) {
    throw new InvalidOptionError('url', 'a URL whose path, if any, is a database number', url);
  }
}

/** The connection options both Redis stores take: exactly one of `client` and `url`, and a `prefix`. */
interface ConnectionOptions {
  readonly client: unknown;
  readonly url: unknown;
  readonly redisOptions: unknown;
  readonly prefix: unknown;
}

/**
 * Validates the connection options every store of this package shares, naming the option at fault.
 * `clientMethods` are the ioredis methods the store calls on a client it is given.
 */
export function checkConnection(
  { client, url, redisOptions, prefix }: ConnectionOptions,
  clientMethods: readonly string[] = ['evalsha'],
): void {
  if (client !== undefined && url !== undefined) {
    throw new InvalidOptionError('client', 'given without `url` (pass one of them, not both)', 'both');
  }
  if (client === undefined && url === undefined) {
    throw new InvalidOptionError('client', 'an ioredis client, or `url` a redis:// URL', client);
  }
  if (
    client !== undefined &&
    (!isPlainObject(client) ||
      clientMethods.some((method) => typeof (client as Record<string, unknown>)[method] !== 'function') ||
      typeof (client as { status?: unknown }).status !== 'string')
  ) {
    throw new InvalidOptionError('client', 'an ioredis client (Redis or Cluster)', client);
  }
  if (url !== undefined) checkUrl(url);
  if (redisOptions !== undefined && !isPlainObject(redisOptions)) {
    throw new InvalidOptionError('redisOptions', 'an object of ioredis options', redisOptions);
  }
  if (redisOptions !== undefined && client !== undefined) {
    throw new InvalidOptionError(
      'redisOptions',
      'given only with `url` (configure your own client)',
      'client',
    );
  }
  if (prefix !== undefined && (typeof prefix !== 'string' || /[{}]/.test(prefix))) {
    throw new InvalidOptionError('prefix', 'a string without `{` or `}` (keys are hash-tagged)', prefix);
  }
}
