// Question: what does floodgate's HTTP rate limit cost per request, next to the bare route and the
// incumbent (express-rate-limit for Express, @fastify/rate-limit for Fastify), when nothing is rejected
// and when everything is rejected?
//
// Each server runs in its own child process (this file, with HTTP_BENCH_SERVER set), pinned to one core
// (the last) when `taskset` exists; autocannon (50 connections) runs here, on the other cores. Besides req/s and p99
// it reports the server's CPU time per request (process.cpuUsage in the child), because Fastify can
// outrun the load generator.
//
//   cd packages/token-bucket && npx tsup && cd ../http && npx tsup && cd ../express && npx tsup && \
//     cd ../fastify && npx tsup && cd ../../bench && node --expose-gc --import tsx http.bench.ts
//
// HTTP_BENCH_SECONDS (default 4) sets the measured duration of each run (after a 1 s warm-up),
// HTTP_BENCH_ROUNDS (default 3) the number of interleaved rounds (one table of medians, one of each
// configuration's best round),
// HTTP_BENCH_FRAMEWORKS (default express,fastify) which frameworks to measure.
// HTTP_BENCH_PAIRED=1 measures in pairs instead: the bare server and each configuration alternate in short
// runs (HTTP_BENCH_SECONDS, default 2; HTTP_BENCH_PAIRS pairs, default 15) and the table gives the median
// and quartiles of the per-pair ratios, which a machine drifting in speed disturbs far less.
//
// HTTP_BENCH_INSTRUCTIONS=1 counts instead of timing: each server runs under `valgrind --tool=callgrind`
// and the table gives the instructions it executed per request (user space: Node, V8, libc; not the
// kernel), between `callgrind_control` zeroing the counters after a warm-up and dumping them after
// HTTP_BENCH_REQUESTS (default 20000) requests. The server runs `--single-threaded` (V8 compiles and
// collects on the main thread, all of it counted). Counts repeat within 1-3% on a quiet machine, where CPU
// time moves 10-20% between identical runs; a busy machine lowers them (a slowed server reads several
// requests per event-loop turn: bare Fastify counted 60.5k beside another callgrind run, 69.2k alone).
// It also measures three floors on Fastify: a no-op onRequest hook, a hook that only sets the two
// RateLimit fields floodgate sends, and a hook that writes a hand-made 429 with the same five fields and
// body as floodgate's, raw, with no decision. HTTP_BENCH_WARMUP (default HTTP_BENCH_REQUESTS) requests
// warm each server up first. Under callgrind V8 is still optimising after that (TurboFan was 15% of a bare
// Fastify request's count after 20,000 requests, 13% after 80,000), about alike for every configuration.
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HttpAnswer, KeyableRequest, RateLimitResult } from '@floodgate/http';

// bench/ has no @types for express and autocannon: a variable specifier keeps them untyped, and these
// interfaces name the little used of them.
const load = (specifier: string): Promise<{ default: unknown }> => import(specifier);
interface ExpressResponse {
  json(body: unknown): void;
}
interface ExpressApp {
  use(handler: unknown): void;
  get(path: string, handler: (req: unknown, res: ExpressResponse) => void): void;
  listen(port: number, host: string, ready: () => void): Server;
}
interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p99: number };
  non2xx: number;
}
type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
}) => Promise<AutocannonResult>;

type Framework = 'express' | 'fastify';
// 'hook', 'headers' and 'raw429' are floors (Fastify only): a no-op onRequest hook, one that sets the
// same two RateLimit fields as floodgate's first answer (same lengths) and nothing else, and one that
// writes floodgate's refusal by hand (same fields and body, no decision).
type Variant = 'bare' | 'floodgate' | 'incumbent' | 'hook' | 'headers' | 'raw429';
type Scenario = 'allow' | 'deny';

interface ServerSpec {
  readonly framework: Framework;
  readonly variant: Variant;
  readonly scenario: Scenario;
}

// A limit nobody reaches, or one request per hour: everything after the first is refused.
const limits = (scenario: Scenario) =>
  scenario === 'allow' ? { limit: 1e9, windowMs: 60_000 } : { limit: 1, windowMs: 3_600_000 };

async function startServer(spec: ServerSpec): Promise<Server> {
  const { limit, windowMs } = limits(spec.scenario);
  if (spec.framework === 'express') {
    const express = (await load('express')).default as () => ExpressApp;
    const app = express();
    if (spec.variant === 'floodgate') {
      const { rateLimit } = await import('@floodgate/express');
      app.use(rateLimit({ limit, windowMs }));
    } else if (spec.variant === 'incumbent') {
      const { rateLimit } = await import('express-rate-limit');
      app.use(rateLimit({ limit, windowMs, standardHeaders: 'draft-8', legacyHeaders: false }));
    }
    app.get('/', (_req, res) => {
      res.json({ hello: 'world' });
    });
    return await new Promise((resolve) => {
      const server = app.listen(0, '127.0.0.1', () => resolve(server));
    });
  }
  const { default: Fastify } = await import('fastify');
  const app = Fastify({ logger: false });
  if (spec.variant === 'floodgate') {
    const { floodgateRateLimit } = await import('@floodgate/fastify');
    await app.register(floodgateRateLimit, { limit, windowMs });
  } else if (spec.variant === 'incumbent') {
    const { default: fastifyRateLimit } = await import('@fastify/rate-limit');
    await app.register(fastifyRateLimit, { max: limit, timeWindow: windowMs });
  } else if (spec.variant === 'hook') {
    app.addHook('onRequest', (_request, _reply, done) => done());
  } else if (spec.variant === 'headers') {
    const { RateLimitHeaders } = await import('@floodgate/http');
    const policy = { name: `${limit}-in-${windowMs / 1000}s`, limit, windowMs };
    const decision = { allowed: true, limit, remaining: limit - 1, retryAfterMs: 0, resetAfterMs: 1 };
    const fields = new RateLimitHeaders([policy]).format([{ policy: 0, key: '', decision }], 0);
    app.addHook('onRequest', (_request, reply, done) => {
      for (const [name, value] of fields) reply.header(name, value);
      done();
    });
  } else if (spec.variant === 'raw429') {
    // floodgate's refusal, taken from floodgate itself once, then written by hand on every request.
    const { RateLimit } = await import('@floodgate/http');
    const core = new RateLimit<KeyableRequest>({ limit, windowMs });
    const client: KeyableRequest = { ip: '127.0.0.1', headers: {} };
    core.check(client);
    const refusal = core.check(client) as RateLimitResult;
    const answer = refusal.answer as HttpAnswer;
    const list = [...refusal.headers.flat(), 'content-type', answer.headers['content-type'] as string];
    list.push('content-length', String(Buffer.byteLength(answer.body as string)));
    app.addHook('onRequest', (_request, reply) => {
      reply.hijack();
      reply.raw.writeHead(answer.status, list);
      reply.raw.end(answer.body);
    });
  }
  app.get('/', async () => ({ hello: 'world' }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  return app.server;
}

async function serve(): Promise<void> {
  const spec = JSON.parse(process.env.HTTP_BENCH_SERVER as string) as ServerSpec;
  const server = await startServer(spec);
  let requests = 0;
  server.on('request', () => {
    requests += 1;
  });
  process.on('message', (message: string) => {
    if (message === 'mark') {
      requests = 0;
      process.send?.({ cpu: process.cpuUsage(), requests });
    } else if (message === 'read') {
      process.send?.({ cpu: process.cpuUsage(), requests });
    } else if (message === 'exit') {
      process.exit(0); // a clean exit, so `--cpu-prof` writes its profile
    }
  });
  process.send?.({ port: (server.address() as AddressInfo).port });
}

function ask<T>(child: ChildProcess, message?: string): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (reply) => resolve(reply as T));
    if (message !== undefined) child.send(message);
  });
}

interface Row {
  framework: Framework;
  variant: Variant;
  scenario: Scenario;
  rps: number;
  p99: number;
  cpuUsPerRequest: number;
  /** Share of the CPU time spent in user space (the rest is the kernel's: sockets, epoll). */
  userShare: number;
  non2xx: number;
  total: number;
}

const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** Pins every thread of `pid` to `cores` (a taskset list such as `1` or `0-2`). */
function pin(pid: number, cores: string): void {
  if (hasTaskset) execFileSync('taskset', ['-a', '-p', '-c', cores, String(pid)], { stdio: 'ignore' });
}

/** A server child process, listening. */
interface RunningServer {
  readonly child: ChildProcess;
  readonly url: string;
}

async function startProcess(spec: ServerSpec): Promise<RunningServer> {
  const self = fileURLToPath(import.meta.url);
  // HTTP_BENCH_CPU_PROF=dir: profile each server (one directory per configuration) to see where its CPU goes.
  const profile = process.env.HTTP_BENCH_CPU_PROF;
  const child = fork(self, [], {
    env: { ...process.env, HTTP_BENCH_SERVER: JSON.stringify(spec) },
    execArgv: [
      '--import',
      'tsx',
      ...(profile === undefined
        ? []
        : ['--cpu-prof', `--cpu-prof-dir=${profile}/${spec.framework}-${spec.variant}-${spec.scenario}`]),
    ],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  if (child.pid !== undefined) pin(child.pid, String(cpus().length - 1));
  try {
    const { port } = await ask<{ port: number }>(child);
    return { child, url: `http://127.0.0.1:${port}/` };
  } catch (error) {
    child.kill();
    throw error;
  }
}

async function stopProcess(server: RunningServer): Promise<void> {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  if (child.connected) child.send('exit');
  const timer = setTimeout(() => child.kill(), 5000);
  await exited;
  clearTimeout(timer);
}

/** Loads a running server for `seconds` and reads its CPU time per request. */
async function sample(server: RunningServer, spec: ServerSpec, seconds: number): Promise<Row> {
  const autocannon = (await load('autocannon')).default as Autocannon;
  const before = await ask<{ cpu: NodeJS.CpuUsage }>(server.child, 'mark');
  const result = await autocannon({ url: server.url, connections: 50, duration: seconds });
  const after = await ask<{ cpu: NodeJS.CpuUsage; requests: number }>(server.child, 'read');
  const userUs = after.cpu.user - before.cpu.user;
  const cpuUs = userUs + (after.cpu.system - before.cpu.system);
  return {
    ...spec,
    rps: result.requests.average,
    p99: result.latency.p99,
    cpuUsPerRequest: cpuUs / Math.max(1, after.requests),
    userShare: userUs / Math.max(1, cpuUs),
    non2xx: result.non2xx,
    total: result.requests.total,
  };
}

async function measure(spec: ServerSpec, seconds: number): Promise<Row> {
  const server = await startProcess(spec);
  try {
    await sample(server, spec, 1); // warm-up
    return await sample(server, spec, seconds);
  } finally {
    await stopProcess(server);
  }
}

/**
 * HTTP_BENCH_PAIRED=1: the bare server and one other stay up side by side (same core, loaded one at a
 * time) and are measured in alternating short runs, bare first in odd pairs, last in even ones. Each pair
 * gives one CPU ratio from two runs a second apart, so a machine that changes speed over tens of seconds
 * (these shared machines do, by 2x) moves both sides of a ratio alike. Prints the median ratio and its
 * quartiles.
 */
async function paired(frameworks: readonly Framework[], seconds: number, pairs: number): Promise<void> {
  console.log(
    `\npaired runs: ${pairs} pairs of ${seconds} s runs per configuration, bare and configuration alternating; ratios to bare\n`,
  );
  console.log(
    '| framework | limiter | rejected | CPU × bare: median | quartiles | req/s × bare: median | quartiles |',
  );
  console.log('| --- | --- | --- | ---: | ---: | ---: | ---: |');
  for (const framework of frameworks) {
    const bareSpec: ServerSpec = { framework, variant: 'bare', scenario: 'allow' };
    const bare = await startProcess(bareSpec);
    try {
      await sample(bare, bareSpec, 1);
      for (const scenario of ['allow', 'deny'] as const) {
        for (const variant of ['floodgate', 'incumbent'] as const) {
          const spec: ServerSpec = { framework, variant, scenario };
          const other = await startProcess(spec);
          try {
            await sample(other, spec, 1);
            const cpu: number[] = [];
            const rps: number[] = [];
            for (let pair = 0; pair < pairs; pair += 1) {
              let base: Row;
              let measured: Row;
              if (pair % 2 === 0) {
                base = await sample(bare, bareSpec, seconds);
                measured = await sample(other, spec, seconds);
              } else {
                measured = await sample(other, spec, seconds);
                base = await sample(bare, bareSpec, seconds);
              }
              cpu.push(measured.cpuUsPerRequest / base.cpuUsPerRequest);
              rps.push(measured.rps / base.rps);
            }
            const q = (values: number[]) => {
              const sorted = [...values].sort((x, y) => x - y);
              const at = (f: number) => sorted[Math.round(f * (sorted.length - 1))] as number;
              return { median: median(values), low: at(0.25), high: at(0.75) };
            };
            const c = q(cpu);
            const r = q(rps);
            const rejected = scenario === 'allow' ? 'none' : 'all';
            console.log(
              `| ${framework} | ${limiterName(spec)} | ${rejected} | ${c.median.toFixed(2)} | ${c.low.toFixed(2)}-${c.high.toFixed(2)} | ${r.median.toFixed(2)} | ${r.low.toFixed(2)}-${r.high.toFixed(2)} |`,
            );
          } finally {
            await stopProcess(other);
          }
        }
      }
    } finally {
      await stopProcess(bare);
    }
  }
}

const INSTRUCTIONS = process.env.HTTP_BENCH_INSTRUCTIONS === '1';

/** The server's instructions per request under callgrind (see the header comment). */
async function measureInstructions(spec: ServerSpec, requests: number, warmup: number): Promise<Row> {
  const autocannon = (await load('autocannon')).default as (options: {
    url: string;
    connections: number;
    amount: number;
  }) => Promise<AutocannonResult>;
  const self = fileURLToPath(import.meta.url);
  const dir = mkdtempSync(join(tmpdir(), 'http-bench-callgrind-'));
  const out = join(dir, 'callgrind.out');
  // fork() through valgrind: the IPC channel's descriptor is inherited by the node it runs.
  const child = fork(self, [], {
    execPath: 'valgrind',
    execArgv: [
      '--tool=callgrind',
      `--callgrind-out-file=${out}`,
      process.execPath,
      '--single-threaded',
      '--import',
      'tsx',
    ],
    env: { ...process.env, HTTP_BENCH_SERVER: JSON.stringify(spec) },
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
  });
  try {
    const { port } = await ask<{ port: number }>(child);
    const url = `http://127.0.0.1:${port}/`;
    const pid = String(child.pid);
    // JIT tiers come slowly under valgrind: a long warm-up, so the count is of optimised code.
    await autocannon({ url, connections: 10, amount: warmup });
    execFileSync('callgrind_control', ['--zero', pid], { stdio: 'ignore' });
    const result = await autocannon({ url, connections: 10, amount: requests });
    execFileSync('callgrind_control', ['--dump', pid], { stdio: 'ignore' });
    const dump = readdirSync(dir).find((name) => name.startsWith('callgrind.out.'));
    const text = dump === undefined ? '' : readFileSync(join(dir, dump), 'utf8');
    const total = Number(/^(?:totals|summary):\s+(\d+)/m.exec(text)?.[1] ?? Number.NaN);
    return {
      ...spec,
      rps: 0,
      p99: 0,
      cpuUsPerRequest: total / requests,
      userShare: 0,
      non2xx: result.non2xx,
      total: result.requests.total,
    };
  } finally {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill();
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

async function main(): Promise<void> {
  // The load generator keeps to the other cores, so the server's core is its own.
  if (cpus().length > 1) pin(process.pid, `0-${cpus().length - 2}`);
  const seconds = Number(process.env.HTTP_BENCH_SECONDS ?? 4);
  const requests = Number(process.env.HTTP_BENCH_REQUESTS ?? 20_000);
  const warmup = Number(process.env.HTTP_BENCH_WARMUP ?? requests);
  // Shared 2-core machines are noisy: every configuration runs in several interleaved rounds (counts
  // repeat within a few percent: one round unless asked).
  const rounds = Number(process.env.HTTP_BENCH_ROUNDS ?? (INSTRUCTIONS ? 1 : 3));
  const specs: ServerSpec[] = [];
  // HTTP_BENCH_FRAMEWORKS=express (or fastify) measures one framework only.
  const frameworks = (process.env.HTTP_BENCH_FRAMEWORKS ?? 'express,fastify').split(',') as Framework[];
  if (process.env.HTTP_BENCH_PAIRED === '1') {
    await paired(
      frameworks,
      Number(process.env.HTTP_BENCH_SECONDS ?? 2),
      Number(process.env.HTTP_BENCH_PAIRS ?? 15),
    );
    return;
  }
  for (const framework of frameworks) {
    specs.push({ framework, variant: 'bare', scenario: 'allow' });
    if (INSTRUCTIONS && framework === 'fastify') {
      specs.push({ framework, variant: 'hook', scenario: 'allow' });
      specs.push({ framework, variant: 'headers', scenario: 'allow' });
      specs.push({ framework, variant: 'raw429', scenario: 'deny' });
    }
    for (const scenario of ['allow', 'deny'] as const) {
      for (const variant of ['floodgate', 'incumbent'] as const) specs.push({ framework, variant, scenario });
    }
  }
  const runs = new Map<ServerSpec, Row[]>(specs.map((spec) => [spec, []]));
  for (let round = 0; round < rounds; round += 1) {
    for (const spec of specs) {
      runs
        .get(spec)
        ?.push(await (INSTRUCTIONS ? measureInstructions(spec, requests, warmup) : measure(spec, seconds)));
    }
  }
  // Medians, and each configuration's best round (most req/s, least CPU per request): noise on these
  // machines only ever slows a run down, so the best round is the least disturbed one (the token-bucket
  // bench keeps best rounds for the same reason). Both tables are printed; neither is chosen after the fact.
  const summarize = (pick: (values: number[], higherIsBetter: boolean) => number): Row[] =>
    specs.map((spec) => {
      const measured = runs.get(spec) as Row[];
      return {
        ...spec,
        rps: pick(
          measured.map((r) => r.rps),
          true,
        ),
        p99: median(measured.map((r) => r.p99)),
        cpuUsPerRequest: pick(
          measured.map((r) => r.cpuUsPerRequest),
          false,
        ),
        userShare: median(measured.map((r) => r.userShare)),
        non2xx: measured.reduce((sum, r) => sum + r.non2xx, 0),
        total: measured.reduce((sum, r) => sum + r.total, 0),
      };
    });
  const best = (values: number[], higherIsBetter: boolean) =>
    higherIsBetter ? Math.max(...values) : Math.min(...values);
  if (INSTRUCTIONS) {
    console.log(
      `\ninstructions per request under callgrind (user space), ${requests} requests after ${warmup} to warm up, 10 connections, median of ${rounds} round(s)`,
    );
    printInstructions(summarize(median));
    return;
  }
  console.log(
    `\nautocannon, 50 connections, ${seconds} s per run, ${rounds} interleaved rounds; server in its own process`,
  );
  printTable(`median of ${rounds} rounds`, summarize(median));
  printTable(`best of ${rounds} rounds (req/s: most; CPU: least; p99: median)`, summarize(best));
}

const INCUMBENT = { express: 'express-rate-limit', fastify: '@fastify/rate-limit' } as const;
const FLOOR = {
  hook: 'no-op onRequest hook (floor)',
  headers: 'hook setting the 2 RateLimit fields (floor)',
  raw429: "floodgate's 429 written by hand, no decision (floor)",
};

function limiterName(row: Pick<Row, 'framework' | 'variant'>): string {
  if (row.variant === 'bare') return 'none (bare)';
  if (row.variant === 'floodgate') return 'floodgate';
  if (row.variant === 'incumbent') return INCUMBENT[row.framework];
  return FLOOR[row.variant];
}

function printInstructions(rows: Row[]): void {
  console.log('\n| framework | limiter | rejected | instructions/req | × bare | non-2xx |');
  console.log('| --- | --- | --- | ---: | ---: | ---: |');
  for (const row of rows) {
    const bare = rows.find((r) => r.framework === row.framework && r.variant === 'bare') as Row;
    const rejected = row.variant === 'floodgate' || row.variant === 'incumbent' ? row.scenario : '-';
    console.log(
      `| ${row.framework} | ${limiterName(row)} | ${rejected === 'allow' ? 'none' : rejected === 'deny' ? 'all' : '-'} | ${Math.round(row.cpuUsPerRequest)} | ${(row.cpuUsPerRequest / bare.cpuUsPerRequest).toFixed(3)} | ${row.non2xx}/${row.total} |`,
    );
  }
}

function printTable(title: string, rows: Row[]): void {
  console.log(`\n${title}\n`);
  console.log(
    '| framework | limiter | rejected | req/s | × bare | p99 ms | CPU µs/req | CPU × bare | user share | non-2xx |',
  );
  console.log('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const row of rows) {
    const bare = rows.find((r) => r.framework === row.framework && r.variant === 'bare') as Row;
    const name = limiterName(row);
    const rejected = row.variant === 'bare' ? '-' : row.scenario === 'allow' ? 'none' : 'all';
    console.log(
      `| ${row.framework} | ${name} | ${rejected} | ${Math.round(row.rps)} | ${(row.rps / bare.rps).toFixed(2)} | ${row.p99} | ${row.cpuUsPerRequest.toFixed(1)} | ${(row.cpuUsPerRequest / bare.cpuUsPerRequest).toFixed(2)} | ${(row.userShare * 100).toFixed(0)}% | ${row.non2xx}/${row.total} |`,
    );
  }
}

if (process.env.HTTP_BENCH_SERVER !== undefined) {
  await serve();
} else {
  await main();
}
