// Question: what does floodgate's HTTP rate limit cost per request, next to the bare route and the
// incumbent (express-rate-limit for Express, @fastify/rate-limit for Fastify), when nothing is rejected
// and when everything is rejected?
//
// Each server runs in its own child process (http-server.mjs, with HTTP_BENCH_SERVER set), pinned to one core
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
// HTTP_BENCH_PAIRED=1 measures in pairs instead: a bare server and each configuration, started together,
// alternate in short runs (HTTP_BENCH_SECONDS, default 2; HTTP_BENCH_PAIRS pairs, default 15) and the table
// gives the median and quartiles of the per-pair ratios, which a machine drifting in speed disturbs far
// less, and the user-space and kernel parts of the CPU ratio.
//
// HTTP_BENCH_INSTRUCTIONS=1 counts instead of timing: each server runs under `valgrind --tool=callgrind`
// and the table gives the instructions it executed per request (user space: Node, V8, libc; not the
// kernel). One autocannon run (10 connections) drives each server: `callgrind_control` zeroes the counters
// after HTTP_BENCH_WARMUP (default 40000) responses and dumps them HTTP_BENCH_REQUESTS (default 20000)
// responses later. One run, not a warm-up run and then a counted run: a new run opens new connections,
// whose first requests deoptimised a score of Node's stream and HTTP functions, and their recompiling was
// counted (V8's compiler was 13-15% of every count until session 5; 0.2% now). The server runs
// `--single-threaded` (V8 compiles and collects on the main thread, all of it counted) with its young
// generation held at V8's maximum (16 MB semi-spaces): V8 otherwise sizes it from the run's history, and
// the fixed cost of each scavenge moved one server's count by up to 1.4k instructions per request between
// runs. A busy machine lowers the counts (a slowed server reads several requests per event-loop turn):
// run it alone.
// It also measures five floors with Fastify: a no-op onRequest hook, a hook that only sets the two
// RateLimit fields floodgate sends, a hook that writes a hand-made 429 with the same five fields and
// body as floodgate's, raw, with no decision; and, with no framework at all, a plain Node server sending
// the bare route's bytes and one sending that hand-made 429 (Node's own share of each answer).
// HTTP_BENCH_ONLY (a comma list of variants, or variant-scenario such as floodgate-deny) runs a subset,
// floors included, in any mode; a name that matches nothing is an error.
// HTTP_BENCH_ROUTE=deals puts every configuration in front of a route that does real work instead of
// hello-world: the shop's `GET /api/deals` (its deals read from SQLite, renamed for JSON). The floors
// measure the hello-world route only and are left out.
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// bench/ has no @types for autocannon: a variable specifier keeps it untyped, and these interfaces name
// the little used of it.
const load = (specifier: string): Promise<{ default: unknown }> => import(specifier);
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
// 'nodebare' and 'node429' (counted with Fastify) are a plain Node server with no framework, writing the
// bare route's bytes and floodgate's refusal: Node's own share of each answer.
type Variant = 'bare' | 'floodgate' | 'incumbent' | 'hook' | 'headers' | 'raw429' | 'nodebare' | 'node429';
type Scenario = 'allow' | 'deny';

/** The route every configuration protects (see http-server.mjs): hello-world, or the shop's deal list. */
type Route = 'hello' | 'deals';

interface ServerSpec {
  readonly framework: Framework;
  readonly variant: Variant;
  readonly scenario: Scenario;
  readonly route: Route;
}

function ask<T>(child: ChildProcess, message?: string): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (reply) => resolve(reply as T));
    if (message !== undefined) child.send(message);
  });
}

interface Row extends ServerSpec {
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

/** The servers' entry point: plain JavaScript (see its header). */
const SERVER = fileURLToPath(new URL('./http-server.mjs', import.meta.url));
/**
 * The Node that runs the servers: HTTP_BENCH_NODE=path measures another version (say
 * `$(npx -y node@22 -p process.execPath)`) while autocannon and this script stay on this one.
 */
const SERVER_NODE = process.env.HTTP_BENCH_NODE ?? process.execPath;

async function startProcess(spec: ServerSpec): Promise<RunningServer> {
  // HTTP_BENCH_CPU_PROF=dir: profile each server (one directory per configuration) to see where its CPU goes.
  const profile = process.env.HTTP_BENCH_CPU_PROF;
  const child = fork(SERVER, [], {
    env: { ...process.env, HTTP_BENCH_SERVER: JSON.stringify(spec) },
    execPath: SERVER_NODE,
    execArgv: [
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
 * HTTP_BENCH_PAIRED=1: a bare server and one other, started together, stay up side by side (same core,
 * loaded one at a time) and are measured in alternating short runs, bare first in odd pairs, last in even
 * ones. Each pair gives one CPU ratio from two runs a second apart, so a machine that changes speed over
 * tens of seconds (these shared machines do, by 2x) moves both sides of a ratio alike. Prints the median ratio and its
 * quartiles, and the medians of the user-space and kernel parts of it separately.
 */
async function paired(specs: readonly ServerSpec[], seconds: number, pairs: number): Promise<void> {
  console.log(
    `\npaired runs: ${pairs} pairs of ${seconds} s runs per configuration, bare and configuration alternating; ratios to bare; route: ${specs[0]?.route ?? 'hello'}\n`,
  );
  console.log(
    '| framework | limiter | rejected | CPU × bare: median | quartiles | user CPU × bare | kernel CPU × bare | bare user share | req/s × bare: median | quartiles |',
  );
  console.log('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const spec of specs) {
    const bareSpec: ServerSpec = { ...spec, variant: 'bare', scenario: 'allow' };
    // A new bare server for each configuration, so both sides of every pair are the same age: with one
    // bare server kept for all four, the configurations measured later were compared with a server
    // minutes older, and @fastify/rate-limit read at 0.99-1.02x bare CPU while it runs 1.31x the
    // instructions (session 6).
    const bare = await startProcess(bareSpec);
    const other = await startProcess(spec).catch(async (error: unknown) => {
      await stopProcess(bare);
      throw error;
    });
    try {
      await sample(bare, bareSpec, 1);
      await sample(other, spec, 1);
      const cpu: number[] = [];
      const user: number[] = [];
      const kernel: number[] = [];
      const bareUserShare: number[] = [];
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
        // The split says which side moved: a limiter's own work is user time (comparable with the
        // instruction counts); the kernel part moves with what is written and how reads batch.
        user.push((measured.cpuUsPerRequest * measured.userShare) / (base.cpuUsPerRequest * base.userShare));
        kernel.push(
          (measured.cpuUsPerRequest * (1 - measured.userShare)) /
            (base.cpuUsPerRequest * (1 - base.userShare)),
        );
        bareUserShare.push(base.userShare);
        rps.push(measured.rps / base.rps);
      }
      const q = (values: number[]) => {
        const sorted = [...values].sort((x, y) => x - y);
        const at = (f: number) => sorted[Math.round(f * (sorted.length - 1))] as number;
        return { median: median(values), low: at(0.25), high: at(0.75) };
      };
      const c = q(cpu);
      const r = q(rps);
      console.log(
        `| ${spec.framework} | ${limiterName(spec)} | ${rejectedName(spec)} | ${c.median.toFixed(2)} | ${c.low.toFixed(2)}-${c.high.toFixed(2)} | ${median(user).toFixed(2)} | ${median(kernel).toFixed(2)} | ${(median(bareUserShare) * 100).toFixed(0)}% | ${r.median.toFixed(2)} | ${r.low.toFixed(2)}-${r.high.toFixed(2)} |`,
      );
    } finally {
      await stopProcess(other);
      await stopProcess(bare);
    }
  }
}

const INSTRUCTIONS = process.env.HTTP_BENCH_INSTRUCTIONS === '1';
/** Young-generation semi-space of the counted servers, in MB: V8's own maximum, held fixed (see the header). */
const SEMI_SPACE_MB = 16;
interface AutocannonInstance {
  on(event: 'response', listener: (client: unknown, statusCode: number) => void): void;
  on(event: 'done', listener: () => void): void;
  stop(): void;
}

/** The server's instructions per request under callgrind (see the header comment). */
async function measureInstructions(spec: ServerSpec, requests: number, warmup: number): Promise<Row> {
  const autocannon = (await load('autocannon')).default as (options: {
    url: string;
    connections: number;
    amount: number;
  }) => AutocannonInstance;
  const dir = mkdtempSync(join(tmpdir(), 'http-bench-callgrind-'));
  const out = join(dir, 'callgrind.out');
  // fork() through valgrind: the IPC channel's descriptor is inherited by the node it runs.
  const child = fork(SERVER, [], {
    execPath: 'valgrind',
    execArgv: [
      '--tool=callgrind',
      `--callgrind-out-file=${out}`,
      SERVER_NODE,
      '--single-threaded',
      `--min-semi-space-size=${SEMI_SPACE_MB}`,
      `--max-semi-space-size=${SEMI_SPACE_MB}`,
    ],
    env: { ...process.env, HTTP_BENCH_SERVER: JSON.stringify(spec) },
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
  });
  try {
    const { port } = await ask<{ port: number }>(child);
    const pid = String(child.pid);
    // One run of the load generator, counted in its middle: the counters are zeroed after `warmup`
    // responses and dumped `requests` responses later, on the same connections (see the header comment).
    let seen = 0;
    let counted = -1;
    let non2xx = 0;
    const run = autocannon({
      url: `http://127.0.0.1:${port}/`,
      connections: 10,
      amount: warmup + requests + 1000,
    });
    await new Promise<void>((resolve) => {
      run.on('response', (_client, statusCode) => {
        seen += 1;
        if (counted < 0) {
          if (seen < warmup) return;
          execFileSync('callgrind_control', ['--zero', pid], { stdio: 'ignore' });
          counted = 0;
          return;
        }
        if (counted >= requests) return;
        counted += 1;
        if (statusCode < 200 || statusCode > 299) non2xx += 1;
        if (counted === requests) {
          execFileSync('callgrind_control', ['--dump', pid], { stdio: 'ignore' });
          run.stop();
          resolve();
        }
      });
      run.on('done', () => resolve());
    });
    if (counted !== requests) {
      throw new Error(`${spec.framework} ${spec.variant}: ${counted} of ${requests} requests counted`);
    }
    const dump = readdirSync(dir).find((name) => name.startsWith('callgrind.out.'));
    const text = dump === undefined ? '' : readFileSync(join(dir, dump), 'utf8');
    const total = Number(/^(?:totals|summary):\s+(\d+)/m.exec(text)?.[1] ?? Number.NaN);
    return {
      ...spec,
      rps: 0,
      p99: 0,
      cpuUsPerRequest: total / requests,
      userShare: 0,
      non2xx,
      total: requests,
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
  const warmup = Number(process.env.HTTP_BENCH_WARMUP ?? (INSTRUCTIONS ? 40_000 : requests));
  // Shared 2-core machines are noisy: every configuration runs in several interleaved rounds (counts
  // repeat within a few percent: one round unless asked).
  const rounds = Number(process.env.HTTP_BENCH_ROUNDS ?? (INSTRUCTIONS ? 1 : 3));
  // HTTP_BENCH_FRAMEWORKS=express (or fastify) measures one framework only.
  const frameworks = (process.env.HTTP_BENCH_FRAMEWORKS ?? 'express,fastify').split(',') as Framework[];
  const route = process.env.HTTP_BENCH_ROUTE ?? 'hello';
  if (route !== 'hello' && route !== 'deals') {
    throw new Error(`HTTP_BENCH_ROUTE: expected hello or deals, got ${JSON.stringify(route)}`);
  }
  const all: ServerSpec[] = [];
  for (const framework of frameworks) {
    all.push({ framework, variant: 'bare', scenario: 'allow', route });
    // The floors stand for the hello-world route (the plain Node ones send its bytes).
    if (framework === 'fastify' && route === 'hello') {
      all.push({ framework, variant: 'hook', scenario: 'allow', route });
      all.push({ framework, variant: 'headers', scenario: 'allow', route });
      all.push({ framework, variant: 'raw429', scenario: 'deny', route });
      all.push({ framework, variant: 'nodebare', scenario: 'allow', route });
      all.push({ framework, variant: 'node429', scenario: 'deny', route });
    }
    for (const scenario of ['allow', 'deny'] as const) {
      for (const variant of ['floodgate', 'incumbent'] as const) {
        all.push({ framework, variant, scenario, route });
      }
    }
  }
  // By default: the floors only when counting; HTTP_BENCH_ONLY=floodgate-deny,raw429 picks
  // configurations by variant or variant-scenario instead. The bare route every ratio is taken against is
  // always kept (paired runs start their own bare server beside each configuration).
  const only = process.env.HTTP_BENCH_ONLY?.split(',');
  let specs: ServerSpec[];
  if (only === undefined) {
    specs = all.filter((s) => INSTRUCTIONS || !isFloor(s));
  } else {
    const picked = (s: ServerSpec, name: string) =>
      name === s.variant || name === `${s.variant}-${s.scenario}`;
    const unknown = only.filter((name) => !all.some((s) => picked(s, name)));
    if (unknown.length > 0) {
      const names = [...new Set(all.map((s) => `${s.variant}-${s.scenario}`))].join(', ');
      throw new Error(
        `HTTP_BENCH_ONLY: no configuration named ${unknown.join(', ')} on the ${route} route (configurations: ${names})`,
      );
    }
    specs = all.filter((s) => s.variant === 'bare' || only.some((name) => picked(s, name)));
  }
  if (process.env.HTTP_BENCH_PAIRED === '1') {
    await paired(
      specs.filter((s) => s.variant !== 'bare'),
      Number(process.env.HTTP_BENCH_SECONDS ?? 2),
      Number(process.env.HTTP_BENCH_PAIRS ?? 15),
    );
    return;
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
      `\ninstructions per request under callgrind (user space), ${requests} requests counted after ${warmup} on the same 10 connections, ${SEMI_SPACE_MB} MB semi-spaces, median of ${rounds} round(s); route: ${route}`,
    );
    printInstructions(summarize(median));
    return;
  }
  console.log(
    `\nautocannon, 50 connections, ${seconds} s per run, ${rounds} interleaved rounds; server in its own process; route: ${route}`,
  );
  printTable(`median of ${rounds} rounds`, summarize(median));
  printTable(`best of ${rounds} rounds (req/s: most; CPU: least; p99: median)`, summarize(best));
}

const INCUMBENT = { express: 'express-rate-limit', fastify: '@fastify/rate-limit' } as const;
const FLOOR = {
  hook: 'no-op onRequest hook (floor)',
  headers: 'hook setting the 2 RateLimit fields (floor)',
  raw429: "floodgate's 429 written by hand, no decision (floor)",
  nodebare: "the bare route's answer from a plain Node server, no framework (floor)",
  node429: "floodgate's 429 from a plain Node server, no framework (floor)",
};

/** Whether `spec` is one of the floors (FLOOR) rather than the bare route or a limiter. */
function isFloor(spec: ServerSpec): boolean {
  return Object.hasOwn(FLOOR, spec.variant);
}

/** What a limiter configuration rejects ('none' or 'all'); '-' for the bare route and the floors. */
function rejectedName(spec: ServerSpec): string {
  if (spec.variant === 'bare' || isFloor(spec)) return '-';
  return spec.scenario === 'allow' ? 'none' : 'all';
}

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
    console.log(
      `| ${row.framework} | ${limiterName(row)} | ${rejectedName(row)} | ${Math.round(row.cpuUsPerRequest)} | ${(row.cpuUsPerRequest / bare.cpuUsPerRequest).toFixed(3)} | ${row.non2xx}/${row.total} |`,
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
    console.log(
      `| ${row.framework} | ${limiterName(row)} | ${rejectedName(row)} | ${Math.round(row.rps)} | ${(row.rps / bare.rps).toFixed(2)} | ${row.p99} | ${row.cpuUsPerRequest.toFixed(1)} | ${(row.cpuUsPerRequest / bare.cpuUsPerRequest).toFixed(2)} | ${(row.userShare * 100).toFixed(0)}% | ${row.non2xx}/${row.total} |`,
    );
  }
}

await main();
