// A private redis-server for the fault tests: stopping, pausing or flushing it disturbs nobody else
// (the shared Redis on 6379 is never stopped, paused or flushed by these tests).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const required = process.env.FLOODGATE_REQUIRE_REDIS === '1';
const version = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
const found = version.status === 0;
// Redis 7 refuses DEBUG (used for DEBUG SLEEP) unless enabled; Redis 6 allows it and knows no such option.
const major = Number(/v=(\d+)\./.exec(version.stdout ?? '')?.[1] ?? 0);
const debugArgs = major >= 7 ? ['--enable-debug-command', 'yes'] : [];
if (!found) {
  const message =
    'redis-server is not on PATH: the fault tests (stop, restart, pause) cannot start their own';
  if (required) throw new Error(`${message}, and FLOODGATE_REQUIRE_REDIS=1.`);
  console.warn(
    `\n${'!'.repeat(100)}\n!!! SKIPPING the @floodgate/redis fault tests: ${message}.\n${'!'.repeat(100)}\n`,
  );
}

/** True when a redis-server binary can be started. */
export const redisServerAvailable = found;

/** A TCP port nobody listens on (the kernel hands one out, we close it at once). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function answersPing(port: number): Promise<boolean> {
  const socket = new Socket();
  try {
    const reply = new Promise<boolean>((resolve) => {
      socket.once('data', (data) => resolve(data.toString().startsWith('+PONG')));
      socket.once('error', () => resolve(false));
      socket.once('close', () => resolve(false));
    });
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    return await reply;
  } finally {
    socket.destroy();
  }
}

/**
 * A redis-server on `port` that can be stopped and started again (same port, empty data). Each run
 * works in its own directory under the OS temp dir, removed when it stops, so nothing is left behind.
 */
export class PrivateRedis {
  #child: ChildProcess | undefined;
  #dir: string | undefined;

  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.#child !== undefined) return;
    this.#dir = mkdtempSync(join(tmpdir(), 'floodgate-redis-'));
    const child = spawn(
      'redis-server',
      [
        ...['--port', String(this.port), '--bind', '127.0.0.1'],
        ...['--save', '', '--appendonly', 'no', '--dir', this.#dir],
        ...debugArgs,
      ],
      { stdio: 'ignore' },
    );
    this.#child = child;
    for (let attempt = 0; attempt < 250; attempt += 1) {
      if (child.exitCode !== null) {
        await this.stop();
        throw new Error(`redis-server exited with ${child.exitCode}`);
      }
      if (await answersPing(this.port)) return;
      await sleep(20);
    }
    await this.stop();
    throw new Error(`redis-server on port ${this.port} did not answer within 5 s`);
  }

  async stop(): Promise<void> {
    const child = this.#child;
    const dir = this.#dir;
    this.#child = undefined;
    this.#dir = undefined;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }
}

/** Starts a private redis-server on a free port. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const server = new PrivateRedis(await freePort());
  await server.start();
  return server;
}
