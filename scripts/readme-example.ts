// Runs the example on a package README's first screen the way a reader would: the first ```js or ```ts
// block, copied to its own file and run by Node with tsx, as a separate process. Used by
// readme-examples.test.ts.
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ListeningMessage } from './readme-example-port.ts';

const repo = fileURLToPath(new URL('../', import.meta.url));
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const preload = new URL('./readme-example-preload.ts', import.meta.url).href;

export interface ExampleBlock {
  lang: 'js' | 'ts';
  code: string;
}

/**
 * The first ```js or ```ts fenced block of a README.
 * @throws Error naming the README when it has none.
 */
export function firstExampleBlock(markdown: string, readme: string): ExampleBlock {
  const match = /^```(js|ts)[ \t]*\r?\n([\s\S]*?)^```[ \t]*$/m.exec(markdown);
  if (match === null) {
    throw new Error(
      `${readme} has no \`\`\`js or \`\`\`ts block: its first screen promises an example that runs`,
    );
  }
  return { lang: match[1] as ExampleBlock['lang'], code: match[2] as string };
}

/** The example of packages/`pkg`/README.md, read now, so the test follows edits to the README. */
export async function readmeExample(pkg: string): Promise<ExampleBlock> {
  const readme = `packages/${pkg}/README.md`;
  return firstExampleBlock(await readFile(join(repo, readme), 'utf8'), readme);
}

export interface ExampleRun {
  child: ChildProcess;
  /** The example's directory and cwd, a fresh temporary one (payment-retry writes `payments.db` there). */
  dir: string;
  stdout(): string;
  stderr(): string;
  /** Settles when the child has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Writes `code` as `example.mjs`/`.mts` into a new temporary directory and starts it with Node + tsx.
 * The directory's `node_modules` links to the package's, so `express`, `ioredis`... resolve as they do for
 * the package; `@floodgate/*` resolve to the workspace source through the root tsconfig's `paths`
 * (TSX_TSCONFIG_PATH, since the cwd is outside the repo), and the preload fails the run if one lands on a
 * dist/ build. Remove `dir` when done.
 */
export async function startExample(pkg: string, example: ExampleBlock): Promise<ExampleRun> {
  const dir = await mkdtemp(join(tmpdir(), `floodgate-readme-${pkg}-`));
  try {
    await symlink(join(repo, 'packages', pkg, 'node_modules'), join(dir, 'node_modules'), 'dir');
    const file = join(dir, example.lang === 'ts' ? 'example.mts' : 'example.mjs');
    await writeFile(file, example.code);
    const forked = forkExample(file, {
      cwd: dir,
      preload,
      env: { ...process.env, TSX_TSCONFIG_PATH: join(repo, 'tsconfig.json') },
    });
    return { ...forked, dir };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** A forked example: its process, what it printed so far, and its exit. */
export type ForkedExample = Omit<ExampleRun, 'dir'>;

/**
 * Runs `file` (an example written out as .mjs/.mts) in its own Node process under tsx, with `preload`
 * imported after tsx, and collects what it prints. Its IPC channel carries the preload's messages.
 */
export function forkExample(
  file: string,
  options: { cwd: string; preload: string; env: NodeJS.ProcessEnv },
): ForkedExample {
  const child = fork(file, [], {
    cwd: options.cwd,
    execArgv: ['--import', tsx, '--import', options.preload],
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Kills the example if it still runs, waits for its exit, and removes its directory. */
export async function stopExample(run: ExampleRun): Promise<void> {
  const { child } = run;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const escalate = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await run.exited;
    clearTimeout(escalate);
  }
  await rm(run.dir, { recursive: true, force: true });
}

function describeRun(run: ExampleRun): string {
  return `stdout:\n${run.stdout()}\nstderr:\n${run.stderr()}`;
}

/** `promise`, or a rejection with `message()` once `timeoutMs` has passed (the timer is cleared either way). */
async function within<T>(promise: Promise<T>, timeoutMs: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), timeoutMs);
  });
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for the example to exit by itself; rejects after `timeoutMs` (`stopExample` then kills it). */
export function exampleExit(
  run: ExampleRun,
  timeoutMs: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return within(
    run.exited,
    timeoutMs,
    () => `the example did not exit within ${timeoutMs} ms\n${describeRun(run)}`,
  );
}

// Requests come from 127.0.0.1, the proxy address the fastify example trusts: a server on every address
// (`::`, `0.0.0.0`) takes them there, and one on `localhost` once its 127.0.0.1 binding listens (Fastify
// binds ::1 and 127.0.0.1, the first the resolver names before the other).
const REACHABLE_FROM_LOOPBACK = new Set(['127.0.0.1', '::', '0.0.0.0']);

/**
 * The base URL of a server example once it listens on 127.0.0.1 (the preload moved it from port 3000 to a
 * free one); rejects if the example exits first or `timeoutMs` passes.
 */
export async function exampleServerUrl(run: ExampleRun, timeoutMs: number): Promise<string> {
  let onMessage: ((message: unknown) => void) | undefined;
  const listening = new Promise<ListeningMessage>((resolve) => {
    onMessage = (message) => {
      const { type, address } = message as Partial<ListeningMessage>;
      if (type === 'listening' && REACHABLE_FROM_LOOPBACK.has(address ?? '')) {
        resolve(message as ListeningMessage);
      }
    };
    run.child.on('message', onMessage);
  });
  const exitedFirst = run.exited.then(({ code, signal }): never => {
    throw new Error(`the example exited (${code ?? signal}) before listening\n${describeRun(run)}`);
  });
  try {
    const { port } = await within(
      Promise.race([listening, exitedFirst]),
      timeoutMs,
      () => `the example did not listen on 127.0.0.1 within ${timeoutMs} ms\n${describeRun(run)}`,
    );
    return `http://127.0.0.1:${port}`;
  } finally {
    if (onMessage !== undefined) run.child.off('message', onMessage);
  }
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request on its own connection (no agent: nothing is left open when the server goes). */
export function send(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    const req = request(
      url,
      { method: options.method ?? 'GET', headers: options.headers, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}
