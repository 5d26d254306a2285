import { type ChildProcess, fork } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { fileURLToPath } from 'node:url';

const packageDir = fileURLToPath(new URL('../../', import.meta.url));
/**
 * Child processes run TypeScript from source through tsx; the root tsconfig maps `@floodgate/*` to each
 * package's `src`, so nothing has to be built first.
 */
const rootTsconfig = fileURLToPath(new URL('../../../../tsconfig.json', import.meta.url));

export interface ReadyMessage {
  readonly type: 'ready';
  readonly url: string;
  readonly port: number;
  readonly [field: string]: unknown;
}

/** A process of ours (the bank or a shop) that reported its URL. */
export interface Service {
  /** What the process said when it was ready. */
  readonly ready: ReadyMessage;
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>;
  /** Asks it to close cleanly; kills it if it has not gone within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL: no cleanup, no flush, like a machine losing power. */
  crash(): Promise<void>;
}

/**
 * Forks `script` (a .ts file under src/) with tsx and waits for its `{ type: 'ready', url }` message.
 * @throws {Error} when it exits or stays silent for `readyTimeoutMs` first.
 */
export async function startService(
  script: string,
  args: readonly string[],
  options: {
    log?: string | undefined;
    readyTimeoutMs?: number;
    env?: NodeJS.ProcessEnv;
    /** Extra Node flags, e.g. `--cpu-prof` to profile a shop. */
    execArgv?: readonly string[];
  } = {},
): Promise<Service> {
  const child = fork(fileURLToPath(new URL(`../${script}`, import.meta.url)), [...args], {
    cwd: packageDir,
    execArgv: ['--import', 'tsx', ...(options.execArgv ?? [])],
    env: { ...process.env, ...options.env, TSX_TSCONFIG_PATH: rootTsconfig },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let log: WriteStream | undefined;
  if (options.log) {
    log = createWriteStream(options.log, { flags: 'a' });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
  } else {
    child.stdout?.resume();
    child.stderr?.resume();
  }
  let tail = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-2000);
  });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      log?.end();
      resolve();
    });
  });

  const ready = await new Promise<ReadyMessage>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} did not start within ${options.readyTimeoutMs ?? 20_000} ms:\n${tail}`));
    }, options.readyTimeoutMs ?? 20_000);
    child.on('message', (message: unknown) => {
      if ((message as ReadyMessage).type === 'ready') {
        clearTimeout(timer);
        resolve(message as ReadyMessage);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${signal ?? code}) before it was ready:\n${tail}`));
    });
  });

  const isRunning = () => child.exitCode === null && child.signalCode === null;
  return {
    ready,
    url: ready.url,
    port: ready.port,
    child,
    exited,
    async stop(graceMs = 3000) {
      if (!isRunning()) return;
      if (child.connected) child.send({ type: 'shutdown' });
      else child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
    async crash() {
      if (!isRunning()) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}
