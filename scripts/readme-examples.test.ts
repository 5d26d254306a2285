// Every package README promises "a 10-line example that runs" on its first screen. This runs each one as a
// reader would (the first ```js/```ts block, read from the README at test time, in its own Node process)
// and checks what it prints against its own `// comments`; the server examples get real HTTP requests.
import { access, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { adminClient, deleteKeys, describeRedis, REDIS_URL } from '../packages/redis/test/redis-available.js';
import {
  type Answer,
  type ExampleRun,
  exampleExit,
  exampleServerUrl,
  firstExampleBlock,
  readmeExample,
  send,
  startExample,
  stopExample,
} from './readme-example.js';

// Generous: a cold tsx compiles a package's source on first import, on a loaded 2-core CI machine.
const RUN_TIMEOUT_MS = 20_000;
const TEST_TIMEOUT_MS = 40_000;

const runs = new Set<ExampleRun>();
afterEach(async () => {
  await Promise.all([...runs].map((run) => stopExample(run)));
  runs.clear();
});

async function start(pkg: string, edit?: (code: string) => string): Promise<ExampleRun> {
  const example = await readmeExample(pkg);
  const run = await startExample(
    pkg,
    edit === undefined ? example : { ...example, code: edit(example.code) },
  );
  runs.add(run);
  return run;
}

/** Runs an example that ends by itself and answers the lines it printed, once it exited 0 and quietly. */
async function linesOf(pkg: string, edit?: (code: string) => string): Promise<string[]> {
  const run = await start(pkg, edit);
  const exit = await exampleExit(run, RUN_TIMEOUT_MS);
  expect({ ...exit, stderr: run.stderr() }, run.stdout()).toEqual({ code: 0, signal: null, stderr: '' });
  return run.stdout().trimEnd().split('\n');
}

/** `retry in N ms` → N. */
function retryInMs(line: string | undefined): number {
  const match = /retry in (\d+) ms$/.exec(line ?? '');
  if (match === null) {
    throw new Error(`expected a line ending "retry in <n> ms", got ${JSON.stringify(line)}`);
  }
  return Number(match[1]);
}

describe('finding the example in a README', () => {
  it('takes the first js or ts block, after the sh install block', () => {
    const markdown = '# x\n\n```sh\nnpm i x\n```\n\n```ts\nconst a = 1;\n```\n\n```js\nlater();\n```\n';
    expect(firstExampleBlock(markdown, 'x/README.md')).toEqual({ lang: 'ts', code: 'const a = 1;\n' });
  });

  it('fails naming the README when there is no example', () => {
    expect(() => firstExampleBlock('# x\n\n```sh\nnpm i x\n```\n', 'packages/x/README.md')).toThrow(
      'packages/x/README.md has no ```js or ```ts block',
    );
  });
});

// The house standard for a package README's first screen: what it is for, install, a 10-line example.
const PACKAGES = [
  'bank-sim',
  'circuit-breaker',
  'express',
  'fastify',
  'http',
  'payment-retry',
  'redis',
  'token-bucket',
];
const MAX_EXAMPLE_LINES = 10;
// A terminal's first screen; the example must have ended by then.
const FIRST_SCREEN_LINES = 40;

describe('the example is on the first screen and 10 lines long', () => {
  it('covers every package', async () => {
    const dirs = await readdir(join(import.meta.dirname, '..', 'packages'));
    expect(dirs.sort()).toEqual(PACKAGES);
  });

  it.each(PACKAGES)('%s', async (pkg) => {
    const { code } = await readmeExample(pkg);
    const lines = code.split('\n').filter((line) => line.trim() !== '');
    expect(lines.length, code).toBeLessThanOrEqual(MAX_EXAMPLE_LINES);
    const readme = await readFile(join(import.meta.dirname, '..', 'packages', pkg, 'README.md'), 'utf8');
    const endsAt = readme.slice(0, readme.indexOf(code) + code.length).split('\n').length;
    expect(endsAt, `packages/${pkg}/README.md: the example ends on line ${endsAt}`).toBeLessThanOrEqual(
      FIRST_SCREEN_LINES,
    );
  });
});

describe('README examples that end by themselves', { timeout: TEST_TIMEOUT_MS }, () => {
  it('token-bucket: a burst of 3 per user, the 4th refused with its wait, another user served', async () => {
    const lines = await linesOf('token-bucket');
    expect(lines.slice(0, 3)).toEqual(['paid for ana', 'paid for ana', 'paid for ana']);
    expect(lines[3]).toMatch(/^ana 429, retry in \d+ ms$/);
    // 3 tokens a minute: the next one is at most 20 s away.
    expect(retryInMs(lines[3])).toBeGreaterThan(0);
    expect(retryInMs(lines[3])).toBeLessThanOrEqual(20_000);
    expect(lines.slice(4)).toEqual(['paid for ben']);
  });

  it('circuit-breaker: `failed: 502` twice, then `open: retry in <ms>`', async () => {
    const lines = await linesOf('circuit-breaker');
    expect(lines.slice(0, 2)).toEqual(['failed: 502', 'failed: 502']);
    expect(lines[2]).toMatch(/^open: retry in \d+ ms$/);
    // The first opening lasts resetTimeoutMs (30 s by default), shortened by up to 20 % jitter.
    expect(retryInMs(lines[2])).toBeGreaterThan(0);
    expect(retryInMs(lines[2])).toBeLessThanOrEqual(30_000);
    expect(lines).toHaveLength(3);
  });

  it('bank-sim: `201 0`', async () => {
    expect(await linesOf('bank-sim')).toEqual(['201 0']);
  });

  it('payment-retry: paid on the first attempt, its ledger in the cwd', async () => {
    const run = await start('payment-retry');
    const exit = await exampleExit(run, RUN_TIMEOUT_MS);
    expect({ ...exit, stderr: run.stderr() }, run.stdout()).toEqual({ code: 0, signal: null, stderr: '' });
    // console.log of the outcome: { status: 'paid', reference: 'pay_…', idempotencyKey: '…', attempts: 1, … }
    const printed = run.stdout();
    expect(printed).toMatch(/status: 'paid'/);
    expect(printed).toMatch(/reference: 'pay_\w+'/);
    expect(printed).toMatch(/idempotencyKey: '[^']+'/);
    expect(printed).toMatch(/attempts: 1\b/);
    await expect(access(join(run.dir, 'payments.db'))).resolves.toBeUndefined();
  });
});

describeRedis('README example that needs Redis', { timeout: TEST_TIMEOUT_MS }, () => {
  // The example's own prefix and keys: a bucket left by an earlier run would make it print `true 3 0`.
  async function deleteExampleKeys(): Promise<void> {
    const admin = adminClient();
    try {
      for (const key of ['shop:{student-42}', 'shop:{bank}']) await deleteKeys(admin, key);
    } finally {
      admin.disconnect();
    }
  }
  afterEach(deleteExampleKeys);

  it('redis: `true 4 0`, then `paid`', async () => {
    await deleteExampleKeys();
    const readmeUrl = 'redis://127.0.0.1:6379';
    // The README names the default Redis; CI may run one elsewhere (REDIS_URL).
    const lines = await linesOf('redis', (code) => {
      if (!code.includes(`'${readmeUrl}'`)) {
        throw new Error(`the redis example no longer connects to '${readmeUrl}'`);
      }
      return code.replace(`'${readmeUrl}'`, JSON.stringify(REDIS_URL));
    });
    expect(lines).toEqual(['true 4 0', 'paid']);
  });
});

const json = { 'content-type': 'application/json' };
const POLICY = '"100-in-60s";q=100;w=60';
/** 100 per minute: the first request leaves 99, and the token it took comes back in 0.6 s, so `t=1`. */
const FIRST = '"100-in-60s";r=99;t=1';

/** Requests until one is refused, from the same client; answers it and how many were let through. */
async function untilRefused(request: () => Promise<Answer>): Promise<{ refused: Answer; allowed: number }> {
  // The bucket refills 1 token per 0.6 s while this runs: allow some past the 100.
  for (let allowed = 0; allowed < 200; allowed++) {
    const answer = await request();
    if (answer.status !== 200) return { refused: answer, allowed };
  }
  throw new Error('200 requests in a row were let through a limit of 100 a minute');
}

/** A refusal as the READMEs describe it, after at least the `left` requests the bucket still held. */
function expectRateLimited({ refused, allowed }: { refused: Answer; allowed: number }, left: number): void {
  expect(refused.status).toBe(429);
  expect(allowed).toBeGreaterThanOrEqual(left);
  expect(refused.headers['retry-after']).toMatch(/^[1-9]\d*$/);
  expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(JSON.parse(refused.body)).toMatchObject({ status: 429, code: 'ERR_RATE_LIMITED' });
  expect(refused.headers.ratelimit).toMatch(/^"100-in-60s";r=0;t=\d+$/);
}

/** An idempotent checkout, as a shopper's double click would send it twice. */
function checkout(url: string, client: string): Promise<Answer> {
  return send(`${url}/checkout`, {
    method: 'POST',
    headers: { ...json, 'idempotency-key': '"order-42"', 'x-user-id': 'user-7', 'x-forwarded-for': client },
    body: JSON.stringify({ orderId: 'order-42', amount: 1250 }),
  });
}

describe('README server examples (port 3000 moved to a free port)', { timeout: TEST_TIMEOUT_MS }, () => {
  it('http: `hello` with RateLimit fields, then 429 problem+json past 100 a minute', async () => {
    const url = await exampleServerUrl(await start('http'), RUN_TIMEOUT_MS);

    const first = await send(`${url}/`);
    expect(first).toMatchObject({ status: 200, body: 'hello' });
    expect(first.headers['ratelimit-policy']).toBe(POLICY);
    expect(first.headers.ratelimit).toBe(FIRST);

    expectRateLimited(await untilRefused(() => send(`${url}/`)), 99);
  });

  it('express: RateLimit fields on GET /products, a replayed checkout, 429 past the limit', async () => {
    const url = await exampleServerUrl(await start('express'), RUN_TIMEOUT_MS);

    // 'trust proxy' 1: the client is the address the proxy forwarded, each its own bucket.
    const products = await send(`${url}/products`, { headers: { 'x-forwarded-for': '203.0.113.1' } });
    expect(products).toMatchObject({ status: 200, body: '[]' });
    expect(products.headers['ratelimit-policy']).toBe(POLICY);
    expect(products.headers.ratelimit).toBe(FIRST);

    const paid = await checkout(url, '203.0.113.2');
    expect(paid).toMatchObject({ status: 201, body: '{"ok":true}' });
    expect(paid.headers['idempotent-replayed']).toBeUndefined();
    const replayed = await checkout(url, '203.0.113.2');
    expect(replayed).toMatchObject({ status: 201, body: '{"ok":true}' });
    expect(replayed.headers['idempotent-replayed']).toBe('true');

    const client = { headers: { 'x-forwarded-for': '203.0.113.3' } };
    expectRateLimited(await untilRefused(() => send(`${url}/products`, client)), 100);
  });

  it('fastify: RateLimit fields, checkout costs 5 and is replayed, 429 past the limit', async () => {
    const url = await exampleServerUrl(await start('fastify'), RUN_TIMEOUT_MS);

    // trustProxy '127.0.0.1': the test is the proxy, the forwarded address the client.
    const products = await send(`${url}/products`, { headers: { 'x-forwarded-for': '203.0.113.1' } });
    expect(products).toMatchObject({ status: 200, body: '[]' });
    expect(products.headers['ratelimit-policy']).toBe(POLICY);
    expect(products.headers.ratelimit).toBe(FIRST);

    const paid = await checkout(url, '203.0.113.2');
    expect(paid).toMatchObject({ status: 201, body: '{"ok":true}' });
    expect(paid.headers.ratelimit).toMatch(/^"100-in-60s";r=95;t=\d+$/); // rateLimit: { cost: 5 }
    expect(paid.headers['idempotent-replayed']).toBeUndefined();
    const replayed = await checkout(url, '203.0.113.2');
    expect(replayed).toMatchObject({ status: 201, body: '{"ok":true}' });
    expect(replayed.headers['idempotent-replayed']).toBe('true');

    const client = { headers: { 'x-forwarded-for': '203.0.113.3' } };
    expectRateLimited(await untilRefused(() => send(`${url}/products`, client)), 100);
  });
});
