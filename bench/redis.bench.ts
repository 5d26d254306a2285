// Question: how many rate-limit decisions per second does one process get out of one Redis connection,
// with 1, 16 and 256 decisions in flight on one key: @floodgate/redis against rate-limiter-flexible's
// RateLimiterRedis on the same server in the same run, with `redis-benchmark` EVALSHA of each script as
// the ceiling of what the server itself can run.
//
//   cd packages/token-bucket && npx tsup && cd ../redis && npx tsup && cd ../../bench
//   node --expose-gc --import tsx redis.bench.ts            (REDIS_URL, default redis://127.0.0.1:6379)
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { redisStore } from '@floodgate/redis';
import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';

const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const MEASURE_MS = Number(process.env.BENCH_MS ?? 1_500);
const WARMUP_MS = 300;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const IN_FLIGHT = [1, 16, 256];
const run = randomUUID().slice(0, 8);
const prefix = `floodgate-bench:${run}:`;
// Limits far above what is reached: every decision is an admission, for both libraries alike.
const spec = Object.freeze({ capacity: 1e9, refillPerMs: 1e6 });

type Decide = () => Promise<unknown>;
interface Contender {
  readonly name: string;
  readonly setup: (client: Redis) => { decide: Decide; close: () => Promise<void> | void };
}

const contenders: Contender[] = [
  {
    name: '@floodgate/redis (coalescing)',
    setup: (client) => {
      const store = redisStore({ client, prefix: `${prefix}fg:`, timeoutMs: 5_000 });
      return { decide: () => store.consume('bank', 1, spec), close: () => store.close() };
    },
  },
  {
    name: '@floodgate/redis (coalesce: false)',
    setup: (client) => {
      const store = redisStore({ client, prefix: `${prefix}fg1:`, timeoutMs: 5_000, coalesce: false });
      return { decide: () => store.consume('bank', 1, spec), close: () => store.close() };
    },
  },
  {
    name: 'rate-limiter-flexible RateLimiterRedis',
    setup: (client) => {
      const limiter = new RateLimiterRedis({
        storeClient: client,
        keyPrefix: `${prefix}rlf`,
        points: 1e9,
        duration: 60,
      });
      return { decide: () => limiter.consume('bank', 1), close: () => {} };
    },
  },
];

async function measure(decide: Decide, inFlight: number, ms: number): Promise<number> {
  let count = 0;
  const until = performance.now() + ms;
  const worker = async (): Promise<void> => {
    while (performance.now() < until) {
      await decide();
      count += 1;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  return count / ((performance.now() - started) / 1000);
}

function format(perSecond: number): string {
  return `${(perSecond / 1000).toFixed(1)}k/s`;
}

async function main(): Promise<void> {
  const probe = new Redis(url.toString(), {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  probe.on('error', () => {});
  try {
    await probe.connect();
  } catch (error) {
    console.log(`redis.bench: Redis not reachable at ${url} (${(error as Error).message}); skipped.`);
    return;
  }
  const server = (await probe.info('server')).match(/redis_version:(\S+)/)?.[1];
  console.log(
    `Redis ${server} at ${url.host}, Node ${process.version}, ${ROUNDS} rounds x ${MEASURE_MS} ms, best round`,
  );

  for (const autoPipelining of [false, true]) {
    console.log(`\none ioredis connection, enableAutoPipelining: ${autoPipelining}`);
    const best = new Map<string, number>();
    for (let round = 0; round < ROUNDS; round += 1) {
      // A different contender goes first in each round: the first to run pays for warming up the process.
      const order = [
        ...contenders.slice(round % contenders.length),
        ...contenders.slice(0, round % contenders.length),
      ];
      for (const contender of order) {
        const client = new Redis(url.toString(), { enableAutoPipelining: autoPipelining });
        const { decide, close } = contender.setup(client);
        for (const inFlight of IN_FLIGHT) {
          globalThis.gc?.();
          await measure(decide, inFlight, WARMUP_MS);
          const rate = await measure(decide, inFlight, MEASURE_MS);
          const id = `${contender.name}|${inFlight}`;
          best.set(id, Math.max(best.get(id) ?? 0, rate));
        }
        await close();
        await client.quit();
      }
    }
    const header = ['in flight', ...contenders.map((c) => c.name), 'floodgate / rlf'];
    const rows = IN_FLIGHT.map((inFlight) => {
      const rates = contenders.map((c) => best.get(`${c.name}|${inFlight}`) ?? 0);
      return [String(inFlight), ...rates.map(format), `${((rates[0] ?? 0) / (rates[2] ?? 1)).toFixed(2)}x`];
    });
    console.log(`| ${header.join(' | ')} |`);
    console.log(`| ${header.map(() => '---').join(' | ')} |`);
    for (const row of rows) console.log(`| ${row.join(' | ')} |`);
  }

  // The ceiling: the server running each script as fast as redis-benchmark can send it (50 clients).
  const { BUCKET_SCRIPT_FOR_BENCH } = await scriptOf();
  const rlfScript = `redis.call('set', KEYS[1], 0, 'EX', ARGV[2], 'NX') local consumed = redis.call('incrby', KEYS[1], ARGV[1]) local ttl = redis.call('pttl', KEYS[1]) if ttl == -1 then redis.call('expire', KEYS[1], ARGV[2]) ttl = 1000 * ARGV[2] end return {consumed, ttl}`;
  const fgSha = (await probe.script('LOAD', BUCKET_SCRIPT_FOR_BENCH)) as string;
  const rlfSha = (await probe.script('LOAD', rlfScript)) as string;
  const scripts: [string, string[]][] = [
    [
      'floodgate bucket script',
      [fgSha, '1', `${prefix}{rb}`, '1e9', '1e6', '600000', '', 'c', '1', '0', '0'],
    ],
    ['rate-limiter-flexible script', [rlfSha, '1', `${prefix}rb`, '1', '60']],
  ];
  console.log('\nredis-benchmark EVALSHA (-c 50), the server-side ceiling');
  console.log('| script | unpipelined | -P 16 |');
  console.log('| --- | --- | --- |');
  for (const [name, args] of scripts) {
    const rates = [1, 16].map((pipeline) => {
      const result = spawnSync(
        'redis-benchmark',
        [
          '-h',
          url.hostname,
          '-p',
          url.port || '6379',
          '-n',
          pipeline === 1 ? '100000' : '400000',
          '-q',
          '-P',
          String(pipeline),
          'EVALSHA',
          ...args,
        ],
        { encoding: 'utf8' },
      );
      const match = /([\d.]+) requests per second/.exec(`${result.stdout}${result.stderr}`);
      return match ? format(Number(match[1])) : `n/a (${(result.error?.message ?? result.stderr).trim()})`;
    });
    console.log(`| ${name} | ${rates.join(' | ')} |`);
  }

  const keys = await probe.keys(`${prefix}*`);
  if (keys.length > 0) await probe.unlink(...keys);
  await probe.quit();
}

async function scriptOf(): Promise<{ BUCKET_SCRIPT_FOR_BENCH: string }> {
  // The script source is internal to the package; read it from the source file the build is made of.
  const { BUCKET_SCRIPT } = await import('../packages/redis/src/script.ts');
  return { BUCKET_SCRIPT_FOR_BENCH: BUCKET_SCRIPT };
}

await main();
