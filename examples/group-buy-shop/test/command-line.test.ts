import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Service, startService } from '../src/festival/processes.js';
import { type HoldingBank, holdingBank } from './holding-bank.js';

// The three entry points as a user starts them: `main` (through the festival's own process starter, as
// the festival runs it), and `main`, `demo` and `festival` refusing a bad `--framework` before they open
// a database, a port or a report folder.

const packageDir = fileURLToPath(new URL('../', import.meta.url));
const rootTsconfig = fileURLToPath(new URL('../../../tsconfig.json', import.meta.url));

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shop-command-line-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs `src/<script>` with tsx to its end: its exit code and what it wrote on stderr. */
function run(script: string, args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join('src', script), ...args], {
      cwd: packageDir,
      env: { ...process.env, SHOP_FRAMEWORK: undefined, TSX_TSCONFIG_PATH: rootTsconfig },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.once('error', reject);
    // 'close', not 'exit': stderr has been read to its end.
    child.once('close', (code) => resolve({ code, stderr }));
  });
}

describe('a bad --framework', () => {
  it('stops main before it opens its database, naming the option and the value', async () => {
    const db = join(dir, 'shop.db');
    const { code, stderr } = await run('main.ts', ['--framework', 'koa', '--db', db, '--port', '0']);
    expect(code).toBe(2);
    expect(stderr).toBe('main: Expected `--framework` to be one of express, fastify, got `koa`\n');
    expect(existsSync(db)).toBe(false);
  });

  it('stops main when Fastify is asked to serve a shop it does not', async () => {
    const db = join(dir, 'shop.db');
    const { code, stderr } = await run('main.ts', ['--shop', 'naive', '--framework', 'fastify', '--db', db]);
    expect(code).toBe(2);
    expect(stderr).toContain('Expected `--shop` to be `floodgate` with `--framework fastify`');
    expect(stderr).toContain('got `naive`');
    expect(existsSync(db)).toBe(false);
  });

  it('stops the demo before its bank or database', async () => {
    const db = join(dir, 'demo.db');
    const { code, stderr } = await run('demo.ts', ['--', '--framework', 'express ', '--db', db]);
    expect(code).toBe(2);
    expect(stderr).toBe('demo: Expected `--framework` to be one of express, fastify, got `express `\n');
    expect(existsSync(db)).toBe(false);
  });

  it('stops the festival before its report folder, with its usage', async () => {
    const out = join(dir, 'report');
    const { code, stderr } = await run('festival.ts', ['--', '--framework', 'koa', '--out', out]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^festival: Expected `--framework` to be one of express, fastify, got `koa`\n/);
    expect(stderr).toContain('--framework NAME');
    expect(existsSync(out)).toBe(false);
  });
});

describe('main --framework', () => {
  let bank: BankSim;
  let shop: Service | undefined;
  beforeEach(async () => {
    bank = await startBankSim({ rate: 50, latencyMs: 0 });
  });
  afterEach(async () => {
    await shop?.stop();
    shop = undefined;
    await bank.close();
  });

  /** `main.ts` as the festival starts it; the answers below come from the app it serves. */
  const startMain = async (args: readonly string[]) => {
    shop = await startService('main.ts', [
      '--port',
      '0',
      '--db',
      join(dir, 'shop.db'),
      '--bank-url',
      bank.url,
      '--bank-rate',
      '50',
      ...args,
    ]);
    return shop;
  };

  for (const [framework, args] of [
    ['express', []],
    ['fastify', ['--framework', 'fastify']],
  ] as const) {
    it(`serves the floodgate shop on ${framework}, which takes a checkout to the bank`, async () => {
      const { url, ready } = await startMain(args);
      expect(ready.framework).toBe(framework);
      const config = await (await fetch(`${url}/api/config`)).json();
      expect(config).toEqual({
        shop: 'floodgate',
        framework,
        instance: 'shop-1',
        sendsIdempotencyKey: true,
        bankRate: 50,
      });

      const student = { 'x-student-id': 'ann' };
      const joined = await fetch(`${url}/api/deals/d-kettle/join`, { method: 'POST', headers: student });
      expect(joined.status).toBe(201);
      const { order } = (await joined.json()) as { order: { id: string } };
      const paid = await fetch(`${url}/api/checkout`, {
        method: 'POST',
        headers: { ...student, 'content-type': 'application/json', 'idempotency-key': '"k-1"' },
        body: JSON.stringify({ orderId: order.id }),
      });
      expect(paid.status).toBe(201);
      expect(await paid.json()).toMatchObject({ status: 'paid' });
      expect(bank.stats().charges).toBe(1);
    });
  }
});

describe('main on SIGTERM with a checkout at the bank', () => {
  let bank: BankSim;
  let held: HoldingBank;
  const shops: Service[] = [];
  beforeEach(async () => {
    bank = await startBankSim({ rate: 50, latencyMs: 0 });
    held = await holdingBank(bank.url);
  });
  afterEach(async () => {
    for (const shop of shops.splice(0)) await shop.crash();
    await held.close();
    await bank.close();
  });

  /** `main.ts` on the holding bank; the grace period comes from its environment variable. */
  const startMain = async (graceMs: number, framework: 'express' | 'fastify' = 'express') => {
    const shop = await startService(
      'main.ts',
      ['--port', '0', '--db', join(dir, 'shop.db'), '--bank-url', held.url, '--bank-rate', '50'],
      { env: { SHOP_FRAMEWORK: framework, SHOP_SHUTDOWN_GRACE_MS: String(graceMs) } },
    );
    shops.push(shop);
    return shop;
  };

  /** Resolves with the first line `shop` writes on stderr that contains `text`. */
  const stderrLine = (shop: Service, text: string) =>
    new Promise<string>((resolve, reject) => {
      let out = '';
      const onData = (chunk: Buffer) => {
        out += chunk.toString();
        const line = out.split('\n').find((l) => l.includes(text));
        if (line === undefined) return;
        shop.child.stderr?.off('data', onData);
        resolve(line);
      };
      shop.child.stderr?.on('data', onData);
      shop.child.once('exit', () => reject(new Error(`exited without writing "${text}": ${out}`)));
    });

  const student = { 'x-student-id': 'ann' };
  /** Opens Ann's order and starts its checkout; resolves once the bank holds the payment. */
  const checkoutHeldAtTheBank = async (url: string) => {
    const joined = await fetch(`${url}/api/deals/d-kettle/join`, { method: 'POST', headers: student });
    const { order } = (await joined.json()) as { order: { id: string } };
    const answer = fetch(`${url}/api/checkout`, {
      method: 'POST',
      headers: { ...student, 'content-type': 'application/json', 'idempotency-key': '"k-1"' },
      body: JSON.stringify({ orderId: order.id }),
    });
    // Settled either way from here on: the assertions below read it.
    answer.catch(() => {});
    await held.holding(1);
    return { orderId: order.id, answer };
  };

  for (const framework of ['express', 'fastify'] as const) {
    it(`answers the checkout 202 pending at the end of the grace period, refuses new connections, exits 0; the next start charges it once (${framework})`, async () => {
      const shop = await startMain(100, framework);
      const { orderId, answer } = await checkoutHeldAtTheBank(shop.url);

      const exit = new Promise<number | null>((resolve) => shop.child.once('exit', resolve));
      const notAccepting = stderrLine(shop, 'not accepting connections');
      shop.child.kill('SIGTERM');
      await notAccepting;
      await expect(fetch(`${shop.url}/api/config`)).rejects.toMatchObject({
        cause: { code: 'ECONNREFUSED' },
      });

      const pending = await answer;
      expect(pending.status).toBe(202);
      expect(pending.headers.get('location')).toBe(`/api/orders/${orderId}`);
      expect(await pending.json()).toMatchObject({ status: 'pending', orderId });
      expect(await exit).toBe(0);

      // The bank took the charge the stopped process never heard back about; the next start recovers it
      // with the same key.
      held.release();
      const next = await startMain(100, framework);
      expect(await next.message('recovered')).toMatchObject({ recovered: 1 });
      const order = await (await fetch(`${next.url}/api/orders/${orderId}`, { headers: student })).json();
      expect(order).toMatchObject({ id: orderId, status: 'paid' });
      expect(bank.stats()).toMatchObject({ charges: 1, ordersChargedMoreThanOnce: 0 });
    });
  }

  it('exits at once on a second signal during the grace period', async () => {
    const shop = await startMain(60_000);
    await checkoutHeldAtTheBank(shop.url);
    const exit = new Promise<number | null>((resolve) => shop.child.once('exit', resolve));
    const notAccepting = stderrLine(shop, 'not accepting connections');
    shop.child.kill('SIGTERM');
    await notAccepting;
    shop.child.kill('SIGINT');
    expect(await exit).toBe(130);
  });
});

describe('demo --port 0', () => {
  it('prints the address the shop listens on, and stops on Ctrl-C', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join('src', 'demo.ts'), '--port', '0', '--db', join(dir, 'demo.db')],
      {
        cwd: packageDir,
        env: { ...process.env, SHOP_FRAMEWORK: undefined, TSX_TSCONFIG_PATH: rootTsconfig },
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    try {
      const firstLine = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const end = out.indexOf('\n');
          if (end >= 0) resolve(out.slice(0, end));
        });
        child.once('exit', () => reject(new Error(`demo exited before it printed its address: ${out}`)));
      });
      const shopUrl = /(http:\/\/127\.0\.0\.1:\d+)\//.exec(firstLine)?.[1];
      // It printed `http://127.0.0.1:0/`, an address nothing listens on.
      expect(shopUrl).not.toBe('http://127.0.0.1:0');
      expect(firstLine).toBe(`floodgate shop (express): ${shopUrl}/  dashboard: ${shopUrl}/dashboard`);
      const config = (await (await fetch(`${shopUrl}/api/config`)).json()) as { framework: string };
      expect(config.framework).toBe('express');
      child.kill('SIGINT');
      expect(await exited).toEqual({ code: 0, signal: null });
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
  });
});
