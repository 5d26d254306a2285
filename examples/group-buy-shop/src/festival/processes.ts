import { type ChildProcess, fork } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { fileURLToPath } from 'node:url';

const packageDir = fileURLToPath(new URL('../../', import.meta.url));
/**
 * Child processes run TypeScript from source through tsx; the root tsconfig maps `@floodgate/*` to each
 * package's `src`, so nothing has to be built first.
 */
const rootTsconfig = fileURLToPath(new URL('../../../../tsconfig.json', import.meta.url));

/** A message a process of ours sends its parent over IPC. */
export interface ServiceMessage {
  readonly type: string;
  readonly [field: string]: unknown;
}

export interface ReadyMessage extends ServiceMessage {
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
  /**
   * The first message of `type` the process sent since it started (also one that came before this call).
   * @throws {Error} (as a rejection) when the process exits without sending one.
   */
  message(type: string): Promise<ServiceMessage>;
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
  // Every message is kept from the start: one can come right behind 'ready', before anyone asks for it.
  const received: ServiceMessage[] = [];
  child.on('message', (message: unknown) => {
    if (typeof (message as ServiceMessage | null)?.type === 'string')
      received.push(message as ServiceMessage);
  });
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
  const message = (type: string) =>
    new Promise<ServiceMessage>((resolve, reject) => {
      const already = received.find((m) => m.type === type);
      if (already) return resolve(already);
      if (!isRunning()) return reject(new Error(`${script} exited without sending '${type}'`));
      const onMessage = (m: unknown) => {
        if ((m as ServiceMessage | null)?.type !== type) return;
        child.off('exit', onExit);
        resolve(m as ServiceMessage);
      };
      const onExit = () => {
        child.off('message', onMessage);
        reject(new Error(`${script} exited without sending '${type}'`));
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  return {
    ready,
    url: ready.url,
    port: ready.port,
    child,
    exited,
    message,
    // Longer than a shop's own shutdown (5 s of grace for checkouts in flight, then 1 s for their
    // answers): SIGKILL is for a process that hangs, not one that is still answering.
    async stop(graceMs = 8000) {
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
