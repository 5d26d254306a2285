// The one place that decides whether the Redis tests run. Without Redis they skip LOUDLY; with
// FLOODGATE_REQUIRE_REDIS=1 (CI) a missing Redis fails the suite instead of hiding behind a skip.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe } from 'vitest';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const required = process.env.FLOODGATE_REQUIRE_REDIS === '1';

async function probe(): Promise<Error | undefined> {
  const client = new Redis(REDIS_URL, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1_000,
    retryStrategy: () => null,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return undefined;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  } finally {
    client.disconnect();
  }
}

const failure = await probe();
if (failure !== undefined) {
  const message = `Redis is not reachable at ${REDIS_URL} (${failure.message})`;
  if (required) {
    throw new Error(`${message}, and FLOODGATE_REQUIRE_REDIS=1: the Redis tests must run.`);
  }
  const bar = '!'.repeat(100);
  console.warn(
    `\n${bar}\n!!! SKIPPING the @floodgate/redis tests that need Redis: ${message}.\n!!! Start one (redis-server) or set REDIS_URL; CI sets FLOODGATE_REQUIRE_REDIS=1 so this fails there.\n${bar}\n`,
  );
}

/** True when the Redis at REDIS_URL answered PING. */
export const redisAvailable = failure === undefined;

/** `describe` for suites that need Redis: skipped (loudly, above) without it, unless Redis is required. */
export const describeRedis = redisAvailable ? describe : describe.skip;

/** A key prefix unique to one test run, so parallel runs and other users of the server never collide. */
export function testPrefix(name: string): string {
  return `floodgate-test:${name}:${process.pid}:${randomUUID().slice(0, 8)}:`;
}

/** A plain client for assertions and clean-up. */
export function adminClient(): Redis {
  const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: true });
  client.on('error', () => {});
  return client;
}

/** Deletes every key under `prefix` (SCAN + UNLINK; never FLUSHDB: the server is shared). */
export async function deleteKeys(client: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await client.unlink(...keys);
  } while (cursor !== '0');
}
