import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const cli = fileURLToPath(new URL('./cli.ts', import.meta.url));
const children: ChildProcess[] = [];
const servers: Server[] = [];

function run(args: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return child;
}

async function firstLine(child: ChildProcess): Promise<string> {
  let text = '';
  for await (const chunk of child.stdout as NodeJS.ReadableStream) {
    text += String(chunk);
    if (text.includes('\n')) break;
  }
  return text.split('\n')[0] ?? '';
}

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function exit(child: ChildProcess): Promise<{ code: number | null; stderr: string }> {
  let stderr = '';
  child.stderr?.on('data', (chunk) => {
    stderr += String(chunk);
  });
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stderr };
}

describe('floodgate-bank-sim', () => {
  it('exits 2 with the usage on a bad flag value, naming the flag', async () => {
    const { code, stderr } = await exit(run(['--drop-rate', '2']));
    expect(code).toBe(2);
    expect(stderr).toContain('Invalid --drop-rate "2"');
    expect(stderr).toContain('Usage: floodgate-bank-sim');
  });

  it('exits 1 without the usage when it cannot listen (port in use)', async () => {
    const server = createServer();
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const { code, stderr } = await exit(run(['--port', String(port)]));
    // before the fix: 2, and the usage after the reason
    expect(code).toBe(1);
    expect(stderr).toContain('EADDRINUSE');
    expect(stderr).not.toContain('Usage:');
  });

  it('prints its address, serves payments and stops cleanly on SIGTERM with its stats', async () => {
    const child = run(['--port', '0', '--rate', '300', '--seed', '3', '--latency', '1', '--json']);
    let stderr = '';
    child.stderr?.on('data', (chunk) => {
      stderr += String(chunk);
    });
    const { url } = JSON.parse(await firstLine(child)) as { url: string };
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${url}/payments`, {
      method: 'POST',
      headers: { 'idempotency-key': '"k1"' },
      body: JSON.stringify({ orderId: 'o1', amount: 100, currency: 'EUR', source: 'tok_ok' }),
    });
    expect(res.status).toBe(201);
    child.kill('SIGTERM');
    const [code] = await once(child, 'close'); // 'close': stdio is flushed too
    expect(code).toBe(0);
    expect(stderr).toContain('"charges":1');
  });

  it('stays up through a refuse-mode outage, listens again after it and still stops cleanly', async () => {
    // A `refuse` outage closes the server and the library's timers are unref'd: without a handle of
    // its own the CLI would exit (code 0) the moment the outage began.
    const child = run(['--port', '0', '--latency', '1', '--outage', '0:300', '--json']);
    let stderr = '';
    child.stderr?.on('data', (chunk) => {
      stderr += String(chunk);
    });
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });
    const { url } = JSON.parse(await firstLine(child)) as { url: string };
    let status = 0;
    // Real time: the outage runs in another process. Poll until it is back (bounded).
    for (let i = 0; i < 100 && status === 0 && !exited; i++) {
      status = await fetch(`${url}/payments`, {
        method: 'POST',
        headers: { 'idempotency-key': '"k1"' },
        body: JSON.stringify({ orderId: 'o1', amount: 100, currency: 'EUR', source: 'tok_ok' }),
      }).then(
        (res) => res.status,
        () => new Promise<number>((resolve) => setTimeout(resolve, 50, 0)),
      );
    }
    expect(exited).toBe(false);
    expect(status).toBe(201);
    child.kill('SIGINT');
    const [code] = await once(child, 'close'); // 'close': stdio is flushed too
    expect(code).toBe(0);
    expect(stderr).toContain('stopped (SIGINT)');
    expect(stderr).toContain('"charges":1');
  });
});
