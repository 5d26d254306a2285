import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Server } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BankSim, startBankSim } from './bank-sim.js';
import { InvalidOptionError } from './errors.js';
import type { BankSimOptions } from './options.js';
import type { BankStats } from './stats.js';

const banks: BankSim[] = [];

async function start(options: BankSimOptions = {}): Promise<BankSim> {
  const bank = await startBankSim({ latencyMs: 0, rate: Number.POSITIVE_INFINITY, ...options });
  banks.push(bank);
  return bank;
}

afterEach(async () => {
  await Promise.all(banks.splice(0).map((bank) => bank.close()));
});

function order(orderId: string, extra: Record<string, unknown> = {}) {
  return { orderId, amount: 1999, currency: 'EUR', source: 'tok_ok', ...extra };
}

function pay(
  bank: BankSim,
  key: string | undefined,
  body: unknown = order('o1'),
  headers: Record<string, string> = {},
) {
  return fetch(`${bank.url}/payments`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(key === undefined ? {} : { 'idempotency-key': key }),
      ...headers,
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

async function httpStats(bank: BankSim): Promise<BankStats> {
  const res = await fetch(`${bank.url}/_stats`);
  expect(res.status).toBe(200);
  return (await res.json()) as BankStats;
}

/** The simulator's own HTTP server, as Node's `http.server.request.start` channel names it on a request. */
async function serverOf(bank: BankSim): Promise<Server> {
  let server: Server | undefined;
  const onRequest = (message: unknown) => {
    server ??= (message as { server: Server }).server;
  };
  subscribe('http.server.request.start', onRequest);
  try {
    await (await fetch(`${bank.url}/_faults`)).body?.cancel();
  } finally {
    unsubscribe('http.server.request.start', onRequest);
  }
  if (server === undefined) throw new Error('no request reached the server');
  return server;
}

describe('startBankSim', () => {
  it('listens on a free port and reports its url', async () => {
    const bank = await start();
    expect(bank.port).toBeGreaterThan(0);
    expect(bank.url).toBe(`http://127.0.0.1:${bank.port}`);
  });

  it('rejects invalid options before listening', async () => {
    await expect(startBankSim({ rate: -1 })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(startBankSim({ colour: 'red' } as never)).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
    });
  });

  it('close() is idempotent and refuses a later listen()', async () => {
    const bank = await start();
    await bank.close();
    await bank.close();
    await expect(bank.listen()).rejects.toMatchObject({ code: 'ERR_CLOSED' });
  });

  it('a listen() overtaken by close() rejects with ERR_CLOSED instead of never settling', async () => {
    const bank = new BankSim({ latencyMs: 0 });
    const listening = bank.listen();
    await bank.close();
    // before the fix: Node dropped the listen without an event, and this promise stayed pending for ever
    await expect(listening).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    expect(bank.port).toBe(0);
  });

  it('a second listen() is refused without leaving listeners behind', async () => {
    const bank = await start();
    await expect(bank.listen()).rejects.toMatchObject({ code: 'ERR_SERVER_ALREADY_LISTEN' });
    expect((await pay(bank, '"k1"')).status).toBe(201);
  });
});

describe('POST /payments', () => {
  it('charges and answers 201 with the payment', async () => {
    const bank = await start();
    const res = await pay(bank, '"k1"');
    expect(res.status).toBe(201);
    expect(res.headers.get('location')).toBe('/payments/k1');
    expect(res.headers.get('idempotent-replayed')).toBeNull();
    const body = await json(res);
    expect(body).toMatchObject({
      status: 'succeeded',
      orderId: 'o1',
      amount: 1999,
      currency: 'EUR',
      idempotencyKey: 'k1',
    });
    expect(body.id).toMatch(/^pay_/);
    expect(bank.stats()).toMatchObject({ requests: 1, admitted: 1, charges: 1, ordersCharged: 1 });
  });

  it('declines definitively with 402 and a reason for tok_decline_* sources', async () => {
    const bank = await start();
    const res = await pay(bank, 'k1', order('o1', { source: 'tok_decline_insufficient_funds' }));
    expect(res.status).toBe(402);
    expect(await res.json()).toMatchObject({
      status: 'declined',
      reason: 'insufficient_funds',
      orderId: 'o1',
    });
    const replay = await pay(bank, 'k1', order('o1', { source: 'tok_decline_insufficient_funds' }));
    expect(replay.status).toBe(402);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(bank.stats()).toMatchObject({ declines: 1, charges: 0, replays: 1 });
  });

  it.each([
    ['bad JSON', '{"orderId":', 'invalid_json'],
    ['an array', '[]', 'invalid_request'],
    ['no orderId', JSON.stringify({ amount: 1, currency: 'EUR', source: 'tok_ok' }), 'invalid_request'],
    ['a fractional amount', JSON.stringify(order('o', { amount: 1.5 })), 'invalid_request'],
    ['a zero amount', JSON.stringify(order('o', { amount: 0 })), 'invalid_request'],
    ['a bad currency', JSON.stringify(order('o', { currency: 'EURO' })), 'invalid_request'],
    ['an empty source', JSON.stringify(order('o', { source: '' })), 'invalid_request'],
  ])('answers 400 problem+json for %s', async (_name, body, code) => {
    const bank = await start();
    const res = await pay(bank, 'k', body);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(await res.json()).toMatchObject({ status: 400, code });
    expect(bank.stats()).toMatchObject({ badRequests: 1, charges: 0 });
  });

  it('answers 413 past maxBodyBytes', async () => {
    const bank = await start({ maxBodyBytes: 64 });
    const res = await pay(bank, 'k', order('o'.repeat(100)));
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ code: 'payload_too_large' });
  });

  it('answers 404 for unknown routes and 405 with Allow for wrong methods', async () => {
    const bank = await start();
    const missing = await fetch(`${bank.url}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: 'route_not_found' });
    const wrong = await fetch(`${bank.url}/payments`, { method: 'GET' });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('POST');
    const wrongStatus = await fetch(`${bank.url}/payments/k`, { method: 'DELETE' });
    expect(wrongStatus.status).toBe(405);
    expect(wrongStatus.headers.get('allow')).toBe('GET, HEAD');
  });
});

describe('idempotency (draft-ietf-httpapi-idempotency-key-header)', () => {
  it('answers 400 problem+json naming the header when the key is missing', async () => {
    const bank = await start();
    const res = await pay(bank, undefined);
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const body = await json(res);
    expect(body).toMatchObject({ code: 'idempotency_key_missing' });
    expect(body.detail).toContain('Idempotency-Key');
    expect(bank.stats().charges).toBe(0);
  });

  it.each([
    ['empty', '""'],
    ['two keys', '"a", "b"'],
    ['over 255 characters', `"${'k'.repeat(256)}"`],
    ['unterminated', '"abc'],
  ])('answers 400 for a malformed key (%s)', async (_name, key) => {
    const bank = await start();
    const res = await pay(bank, key);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'idempotency_key_invalid' });
  });

  it('replays the stored answer with Idempotent-Replayed: true, without charging again', async () => {
    const bank = await start();
    const first = await pay(bank, '"k1"');
    const firstBody = await first.text();
    // The bare token is the same key as its quoted form.
    const replay = await pay(bank, 'k1');
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('location')).toBe('/payments/k1');
    expect(await replay.text()).toBe(firstBody);
    expect(bank.stats()).toMatchObject({ charges: 1, replays: 1, ordersChargedMoreThanOnce: 0 });
  });

  it('fingerprints the payload independently of JSON key order', async () => {
    const bank = await start();
    await pay(bank, 'k1', {
      source: 'tok_ok',
      currency: 'EUR',
      amount: 5,
      orderId: 'o',
      note: { b: 1, a: 2 },
    });
    const replay = await pay(bank, 'k1', {
      orderId: 'o',
      amount: 5,
      currency: 'EUR',
      source: 'tok_ok',
      note: { a: 2, b: 1 },
    });
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
  });

  it('answers 422 for the same key with another payload (400 by mismatchStatus)', async () => {
    const bank = await start();
    await pay(bank, 'k1', order('o1'));
    const res = await pay(bank, 'k1', order('o1', { amount: 2500 }));
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ code: 'idempotency_key_reused' });
    expect(bank.stats()).toMatchObject({ mismatches: 1, charges: 1 });

    const stripeLike = await start({ mismatchStatus: 400 });
    await pay(stripeLike, 'k1', order('o1'));
    expect((await pay(stripeLike, 'k1', order('o2'))).status).toBe(400);
  });

  it('answers 409 with Retry-After while the first request with the key is processing', async () => {
    const bank = await start({ latencyMs: 60_000 });
    const first = pay(bank, 'k1').catch((error: unknown) => error);
    await vi.waitFor(() => expect(bank.stats().inFlight).toBe(1));
    const second = await pay(bank, 'k1');
    expect(second.status).toBe(409);
    expect(second.headers.get('retry-after')).toBe('1');
    expect(await second.json()).toMatchObject({ code: 'idempotency_key_in_use' });
    const status = await fetch(`${bank.url}/payments/k1`);
    expect(await status.json()).toMatchObject({ status: 'processing', orderId: 'o1', idempotencyKey: 'k1' });
    expect(bank.stats().conflicts).toBe(1);
    await bank.close();
    await first;
  });

  it('scopes keys by the Authorization header', async () => {
    const bank = await start();
    await pay(bank, 'k1', order('o1'), { authorization: 'Bearer merchant-a' });
    const other = await pay(bank, 'k1', order('o2'), { authorization: 'Bearer merchant-b' });
    expect(other.status).toBe(201);
    expect(other.headers.get('idempotent-replayed')).toBeNull();
    const status = await fetch(`${bank.url}/payments/k1`, {
      headers: { authorization: 'Bearer merchant-b' },
    });
    expect(await status.json()).toMatchObject({ orderId: 'o2' });
    expect((await fetch(`${bank.url}/payments/k1`)).status).toBe(404);
  });

  it('forgets the oldest completed key past maxKeys (a retry then charges again)', async () => {
    const bank = await start({ maxKeys: 1 });
    await pay(bank, 'k1', order('o1'));
    await pay(bank, 'k2', order('o2'));
    const late = await pay(bank, 'k1', order('o1'));
    expect(late.headers.get('idempotent-replayed')).toBeNull();
    expect(bank.stats()).toMatchObject({ charges: 3, ordersChargedMoreThanOnce: 1, extraCharges: 1 });
  });

  it('forgets keys after keyTtlMs', async () => {
    let now = 0;
    const bank = await start({ keyTtlMs: 1000, clock: () => now });
    await pay(bank, 'k1');
    now = 999;
    expect((await pay(bank, 'k1')).headers.get('idempotent-replayed')).toBe('true');
    now = 1000;
    expect((await fetch(`${bank.url}/payments/k1`)).status).toBe(404);
  });
});

describe('GET /payments/{key}', () => {
  it('reports succeeded, declined and not_found', async () => {
    const bank = await start();
    await pay(bank, 'paid', order('o1'));
    await pay(bank, 'nope', order('o2', { source: 'tok_decline_card_expired' }));
    const paid = await fetch(`${bank.url}/payments/paid`);
    expect(paid.status).toBe(200);
    expect(await paid.json()).toMatchObject({
      status: 'succeeded',
      orderId: 'o1',
      amount: 1999,
      currency: 'EUR',
    });
    const declined = await fetch(`${bank.url}/payments/nope`);
    expect(await declined.json()).toMatchObject({ status: 'declined', reason: 'card_expired' });
    const missing = await fetch(`${bank.url}/payments/${encodeURIComponent('never seen')}`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ status: 'not_found' });
    expect(bank.stats().statusChecks).toBe(3);
  });

  it('is not flow-limited unless limitStatusChecks is set', async () => {
    const open = await start({ rate: 1, burst: 1 });
    await pay(open, 'k1');
    for (let i = 0; i < 3; i++) expect((await fetch(`${open.url}/payments/k1`)).status).toBe(200);

    const limited = await start({ rate: 1, burst: 1, limitStatusChecks: true });
    expect((await fetch(`${limited.url}/payments/k1`)).status).toBe(404);
    expect((await fetch(`${limited.url}/payments/k1`)).status).toBe(503);
    expect(limited.stats()).toMatchObject({ admitted: 1, throttled: 1, requests: 0 });
  });
});

describe('flow limit', () => {
  it('admits the burst, then answers 503 with Retry-After in whole seconds', async () => {
    const bank = await start({ rate: 0.5, burst: 2 });
    expect((await pay(bank, 'a', order('a'))).status).toBe(201);
    expect((await pay(bank, 'b', order('b'))).status).toBe(201);
    const throttled = await pay(bank, 'c', order('c'));
    expect(throttled.status).toBe(503);
    expect(throttled.headers.get('retry-after')).toBe('2');
    expect(await throttled.json()).toMatchObject({ code: 'rate_limited' });
    expect(bank.stats()).toMatchObject({ requests: 3, admitted: 2, throttled: 1, charges: 2 });
  });

  it('refills at `rate` per second (injected clock)', async () => {
    let now = 0;
    const bank = await start({ rate: 10, burst: 1, clock: () => now });
    expect((await pay(bank, 'a', order('a'))).status).toBe(201);
    expect((await pay(bank, 'b', order('b'))).status).toBe(503);
    now = 100;
    expect((await pay(bank, 'b', order('b'))).status).toBe(201);
  });

  it('answers 429 when throttleStatus is 429', async () => {
    const bank = await start({ rate: 1, burst: 1, throttleStatus: 429 });
    await pay(bank, 'a', order('a'));
    const res = await pay(bank, 'b', order('b'));
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('1');
  });

  it('sends draft-7 RateLimit fields', async () => {
    const bank = await start({ rate: 10, burst: 5, rateLimitHeaders: 'draft-7', clock: () => 0 });
    const res = await pay(bank, 'a', order('a'));
    expect(res.headers.get('ratelimit')).toBe('limit=5, remaining=4, reset=1');
    expect(res.headers.get('ratelimit-policy')).toBe('5;w=1');
  });

  it('sends draft-8 RateLimit fields, on throttled answers too', async () => {
    const bank = await start({ rate: 1, burst: 1, rateLimitHeaders: 'draft-8', clock: () => 0 });
    await pay(bank, 'a', order('a'));
    const res = await pay(bank, 'b', order('b'));
    expect(res.status).toBe(503);
    expect(res.headers.get('ratelimit')).toBe('"bank";r=0;t=1');
    expect(res.headers.get('ratelimit-policy')).toBe('"bank";q=1;w=1');
  });

  it('reports the peak admitted in any 1 s window', async () => {
    let now = 0;
    const bank = await start({ rate: 5, burst: 5, clock: () => now });
    for (let i = 0; i < 7; i++) await pay(bank, `k${i}`, order(`o${i}`));
    now = 400; // two more tokens by now
    for (let i = 7; i < 10; i++) await pay(bank, `k${i}`, order(`o${i}`));
    expect(bank.stats()).toMatchObject({ admitted: 7, throttled: 3, peakAdmittedPerSecond: 7 });
  });
});

describe('teller queue', () => {
  it('queues past the tellers and serves everyone in turn', async () => {
    const bank = await start({ tellers: 1, latencyMs: 5 });
    const pending = Promise.all([0, 1, 2, 3].map((i) => pay(bank, `k${i}`, order(`o${i}`))));
    await vi.waitFor(() => expect(bank.stats().queued + bank.stats().charges).toBeGreaterThanOrEqual(3), {
      interval: 1,
    });
    const answers = await pending;
    expect(answers.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    const stats = bank.stats();
    expect(stats).toMatchObject({ charges: 4, inFlight: 0, queued: 0 });
    // One teller and four arrivals within its service time: at least one of them waited.
    expect(stats.peakQueued).toBeGreaterThanOrEqual(1);
  });

  it('answers 503 + Retry-After past maxQueued, nothing charged or stored', async () => {
    const bank = await start({ tellers: 1, maxQueued: 0, latencyMs: 60_000 });
    const first = pay(bank, 'k1', order('o1')).catch((error: unknown) => error);
    await vi.waitFor(() => expect(bank.stats().inFlight).toBe(1));
    const res = await pay(bank, 'k2', order('o2'));
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toMatchObject({ code: 'overloaded' });
    expect((await fetch(`${bank.url}/payments/k2`)).status).toBe(404);
    expect(bank.stats().overloaded).toBe(1);
    await bank.close();
    await first;
  });

  it('resets the connection past maxQueued with overloadMode reset', async () => {
    const bank = await start({ tellers: 1, maxQueued: 0, latencyMs: 60_000, overloadMode: 'reset' });
    const first = pay(bank, 'k1', order('o1')).catch((error: unknown) => error);
    await vi.waitFor(() => expect(bank.stats().inFlight).toBe(1));
    await expect(pay(bank, 'k2', order('o2'))).rejects.toThrow();
    expect(bank.stats().overloaded).toBe(1);
    await bank.close();
    await first;
  });
});

describe('GET /_stats, POST /_stats/reset, /_faults', () => {
  it('serves the same ground truth as stats(), with a per-second series', async () => {
    const bank = await start();
    await pay(bank, 'k1', order('o1'));
    await pay(bank, 'k1', order('o1'));
    const stats = await httpStats(bank);
    expect(stats).toMatchObject({ requests: 2, admitted: 2, charges: 1, replays: 1, ordersCharged: 1 });
    expect(stats.series.at(-1)).toMatchObject({ requests: 2, charges: 1, replays: 1 });
    expect(stats.series.reduce((sum, s) => sum + s.requests, 0)).toBe(2);
  });

  it('resets the counters but keeps the idempotency records', async () => {
    const bank = await start();
    await pay(bank, 'k1');
    const reset = await fetch(`${bank.url}/_stats/reset`, { method: 'POST' });
    expect(reset.status).toBe(204);
    expect(bank.stats()).toMatchObject({ requests: 0, charges: 0 });
    expect((await pay(bank, 'k1')).headers.get('idempotent-replayed')).toBe('true');
  });

  it('changes faults with POST /_faults and rejects invalid ones with 400', async () => {
    const bank = await start();
    const res = await fetch(`${bank.url}/_faults`, {
      method: 'POST',
      body: JSON.stringify({ errorRate: 1 }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ errorRate: 1, dropAfterChargeRate: 0 });
    expect(bank.faults.errorRate).toBe(1);
    expect((await pay(bank, 'k1')).status).toBe(500);

    const bad = await fetch(`${bank.url}/_faults`, {
      method: 'POST',
      body: JSON.stringify({ errorRate: 7 }),
    });
    expect(bad.status).toBe(400);
    expect((await json(bad)).detail).toBe(
      'Expected `faults.errorRate` to be a probability in [0, 1], got `7` (number)',
    );
    expect((await json(await fetch(`${bank.url}/_faults`))).errorRate).toBe(1);

    const nulled = await fetch(`${bank.url}/_faults`, {
      method: 'POST',
      body: JSON.stringify({ errorRate: null }),
    });
    expect(nulled.status).toBe(400);
    expect((await json(nulled)).detail).toBe(
      'Expected `faults.errorRate` to be a probability in [0, 1], got `null`',
    );
    expect(() => bank.setFaults({ errorRate: null } as never)).toThrow(InvalidOptionError);
    expect(bank.faults.errorRate).toBe(1);
  });
});

describe('server errors', () => {
  it('keeps serving after an error event of its server (EMFILE on accept), counting it instead of crashing', async () => {
    const bank = await start();
    const server = await serverOf(bank);
    // What Node emits when accept() fails because the process is out of file descriptors.
    const emfile = Object.assign(new Error('accept EMFILE'), {
      code: 'EMFILE',
      errno: -24,
      syscall: 'accept',
    });
    // before the fix: no 'error' listener, so emit() threw the error (an uncaught exception: the process
    // running the benchmark died)
    expect(() => server.emit('error', emfile)).not.toThrow();
    const stats = bank.stats();
    expect(stats).toMatchObject({ serverErrors: 1, lastServerError: 'accept EMFILE' });
    expect(stats.series.at(-1)?.faults).toBe(0); // the simulator's own trouble, not an injected fault
    expect((await pay(bank, '"k1"')).status).toBe(201);
    expect(await httpStats(bank)).toMatchObject({ serverErrors: 1, lastServerError: 'accept EMFILE' });
    bank.resetStats();
    expect(bank.stats()).toMatchObject({ serverErrors: 0, lastServerError: null });
  });

  it('leaves a listen error to listen(), which rejects with it, counting nothing', async () => {
    const first = await start();
    const second = new BankSim({ port: first.port });
    banks.push(second);
    await expect(second.listen()).rejects.toMatchObject({ code: 'EADDRINUSE' });
    expect(second.stats()).toMatchObject({ serverErrors: 0, lastServerError: null });
  });
});
