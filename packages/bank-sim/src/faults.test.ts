import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type BankSim, startBankSim } from './bank-sim.js';
import type { BankSimOptions } from './options.js';

// Each fault driven against a real socket. Probabilities are 0 or 1 (or a seed), so every test is
// deterministic.

const banks: BankSim[] = [];

async function start(options: BankSimOptions = {}): Promise<BankSim> {
  const bank = await startBankSim({ latencyMs: 0, rate: Number.POSITIVE_INFINITY, ...options });
  banks.push(bank);
  return bank;
}

afterEach(async () => {
  await Promise.all(banks.splice(0).map((bank) => bank.close()));
});

function order(orderId: string) {
  return { orderId, amount: 4200, currency: 'EUR', source: 'tok_ok' };
}

function pay(bank: BankSim, key: string, orderId = 'o1', signal?: AbortSignal) {
  return fetch(`${bank.url}/payments`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': `"${key}"` },
    body: JSON.stringify(order(orderId)),
    ...(signal === undefined ? {} : { signal }),
  });
}

/** The Node/undici code of a failed fetch (ECONNREFUSED, ECONNRESET, UND_ERR_SOCKET...). */
async function failure(request: Promise<Response>): Promise<string> {
  try {
    const res = await request;
    return `answered ${res.status}`;
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    return cause?.code ?? String(error);
  }
}

async function paymentStatus(bank: BankSim, key: string): Promise<unknown> {
  return (await fetch(`${bank.url}/payments/${key}`)).json();
}

describe('the ambiguous case: charged, then no answer', () => {
  it('a naive client that retries a dropped charge with a FRESH key charges twice, and /_stats says so', async () => {
    const bank = await start({ faults: { dropAfterChargeRate: 1 } });
    expect(await failure(pay(bank, 'attempt-1', 'order-7'))).toMatch(/UND_ERR_SOCKET|ECONNRESET/);
    bank.setFaults({ dropAfterChargeRate: 0 });
    // The naive client thinks the first attempt failed and tries again with a new key.
    const retry = await pay(bank, 'attempt-2', 'order-7');
    expect(retry.status).toBe(201);
    const stats = (await (await fetch(`${bank.url}/_stats`)).json()) as Record<string, unknown>;
    expect(stats).toMatchObject({
      charges: 2,
      ordersCharged: 1,
      ordersChargedMoreThanOnce: 1,
      extraCharges: 1,
    });
    expect(stats.droppedAfterCharge).toBe(1);
  });

  it('retrying with the SAME key replays the charge instead', async () => {
    const bank = await start({ faults: { dropAfterChargeRate: 1 } });
    expect(await failure(pay(bank, 'order-7-key', 'order-7'))).toMatch(/UND_ERR_SOCKET|ECONNRESET/);
    bank.setFaults({ dropAfterChargeRate: 0 });
    const retry = await pay(bank, 'order-7-key', 'order-7');
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(bank.stats()).toMatchObject({
      charges: 1,
      ordersChargedMoreThanOnce: 0,
      extraCharges: 0,
      replays: 1,
    });
  });

  it('the status endpoint tells a reconciling client that the dropped payment succeeded', async () => {
    const bank = await start({ faults: { dropAfterChargeRate: 1 } });
    await failure(pay(bank, 'k1'));
    expect(await paymentStatus(bank, 'k1')).toMatchObject({
      status: 'succeeded',
      orderId: 'o1',
      amount: 4200,
    });
  });
});

describe('slow answer after charging', () => {
  it('charges at once, answers only after slowAnswerMs, and replays to a retry meanwhile', async () => {
    const bank = await start({ faults: { slowAfterChargeRate: 1, slowAnswerMs: 60_000 } });
    const controller = new AbortController();
    const slow = failure(pay(bank, 'k1', 'o1', controller.signal));
    await vi.waitFor(() => expect(bank.stats().charges).toBe(1));
    expect(await paymentStatus(bank, 'k1')).toMatchObject({ status: 'succeeded' });
    bank.setFaults({ slowAfterChargeRate: 0 });
    const retry = await pay(bank, 'k1');
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    // The client gives up on the slow answer, as any sane timeout would.
    controller.abort();
    expect(await slow).not.toMatch(/^answered/);
    expect(bank.stats()).toMatchObject({ slowAnswers: 1, charges: 1, ordersChargedMoreThanOnce: 0 });
  });

  it('does answer eventually', async () => {
    const bank = await start({ faults: { slowAfterChargeRate: 1, slowAnswerMs: 5 } });
    const res = await pay(bank, 'k1');
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ status: 'succeeded' });
  });
});

describe('transient 5xx before charging', () => {
  it('answers errorStatus, charges nothing and stores nothing, so the same key works later', async () => {
    const bank = await start({ faults: { errorRate: 1, errorStatus: 502 } });
    const res = await pay(bank, 'k1');
    expect(res.status).toBe(502);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(await res.json()).toMatchObject({ code: 'transient_error' });
    expect(await paymentStatus(bank, 'k1')).toEqual({ status: 'not_found' });
    bank.setFaults({ errorRate: 0 });
    const retry = await pay(bank, 'k1');
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(bank.stats()).toMatchObject({ transientErrors: 1, charges: 1 });
  });
});

describe('connection reset before processing', () => {
  it('resets the request, charging and storing nothing', async () => {
    const bank = await start({ faults: { resetRate: 1 } });
    expect(await failure(pay(bank, 'k1'))).toMatch(/ECONNRESET|UND_ERR_SOCKET/);
    expect(await paymentStatus(bank, 'k1')).toEqual({ status: 'not_found' });
    expect(bank.stats()).toMatchObject({ resets: 1, charges: 0 });
  });

  it('resets new connections as they are accepted with refuseConnectionRate', async () => {
    const bank = await start({ faults: { refuseConnectionRate: 1 } });
    expect(await failure(pay(bank, 'k1'))).toMatch(/ECONNRESET|UND_ERR_SOCKET/);
    expect(bank.stats()).toMatchObject({ refusedConnections: 1, requests: 0, charges: 0 });
  });
});

describe('outage windows', () => {
  it("'refuse' stops listening (ECONNREFUSED), then comes back", async () => {
    const bank = await start();
    bank.setFaults({ outages: [{ startMs: 0, durationMs: 60_000 }] });
    expect(bank.stats().down).toBe(true);
    expect(await failure(pay(bank, 'k1'))).toBe('ECONNREFUSED');
    bank.setFaults({ outages: [] });
    await vi.waitFor(async () => expect((await pay(bank, 'k1')).status).toBe(201));
    expect(bank.stats().down).toBe(false);
  });

  it("comes back listening even when the mode changed from 'refuse' during the outage", async () => {
    const bank = await start({ faults: { outages: [{ startMs: 0, durationMs: 60_000 }] } });
    bank.setFaults({ outageMode: 'status' });
    bank.setFaults({ outages: [] });
    await vi.waitFor(async () => expect((await pay(bank, 'k1')).status).toBe(201));
  });

  it('outages set again and again while refusing leave no listen listeners behind', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const bank = await start({ faults: { outages: [{ startMs: 0, durationMs: 60_000 }] } });
      // Each one ends the open outage (listen again) and opens a new one (close before it binds).
      for (let i = 0; i < 15; i++) bank.setFaults({ outages: [{ startMs: 0, durationMs: 60_000 }] });
      expect(await failure(pay(bank, 'k1'))).toBe('ECONNREFUSED');
      bank.setFaults({ outages: [] });
      await vi.waitFor(async () => expect((await pay(bank, 'k1')).status).toBe(201));
    } finally {
      process.off('warning', onWarning);
    }
    // before the fix: MaxListenersExceededWarning, 11 'listening' and 11 'error' listeners on the server
    expect(warnings.map((warning) => warning.name)).not.toContain('MaxListenersExceededWarning');
  });

  it('a window opens and closes on its own timers', async () => {
    const bank = await start({ faults: { outageMode: 'status', outages: [{ startMs: 1, durationMs: 5 }] } });
    await vi.waitFor(() => expect(bank.stats().down).toBe(true), { interval: 1 });
    await vi.waitFor(() => expect(bank.stats().down).toBe(false), { interval: 1 });
    expect((await pay(bank, 'k1')).status).toBe(201);
  });

  it("'status' answers 503 with the outage's time left as Retry-After; admin endpoints stay up", async () => {
    const bank = await start({
      faults: { outageMode: 'status', outages: [{ startMs: 0, durationMs: 60_000 }] },
    });
    const res = await pay(bank, 'k1');
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('60');
    expect(await res.json()).toMatchObject({ code: 'outage' });
    expect((await fetch(`${bank.url}/payments/k1`)).status).toBe(503);
    const stats = (await (await fetch(`${bank.url}/_stats`)).json()) as Record<string, unknown>;
    expect(stats).toMatchObject({ down: true, outageRejections: 2, charges: 0 });
  });

  it("'reset' resets payment requests but keeps the admin endpoints reachable", async () => {
    const bank = await start({
      faults: { outageMode: 'reset', outages: [{ startMs: 0, durationMs: 60_000 }] },
    });
    expect(await failure(pay(bank, 'k1'))).toMatch(/ECONNRESET|UND_ERR_SOCKET/);
    const ended = await fetch(`${bank.url}/_faults`, {
      method: 'POST',
      body: JSON.stringify({ outages: [] }),
    });
    expect(ended.status).toBe(200);
    expect((await pay(bank, 'k1')).status).toBe(201);
    expect(bank.stats().outageRejections).toBe(1);
  });

  it('an outage set in the options starts refusing from the first connection', async () => {
    const bank = await start({ faults: { outages: [{ startMs: 0, durationMs: 60_000 }] } });
    expect(await failure(pay(bank, 'k1'))).toBe('ECONNREFUSED');
  });

  it('recovers slowly: the flow limit refills at recoveryRateFactor × rate after an outage', async () => {
    let now = 0;
    const clock = () => now;
    const control = await start({ rate: 10, burst: 1, clock });
    await pay(control, 'a', 'a');
    expect((await pay(control, 'b', 'b')).headers.get('retry-after')).toBe('1');

    const bank = await start({
      rate: 10,
      burst: 1,
      clock,
      faults: { outageMode: 'status', recoveryMs: 60_000, recoveryRateFactor: 0.01 },
    });
    bank.setFaults({ outages: [{ startMs: 0, durationMs: 60_000 }] });
    bank.setFaults({ outages: [] });
    expect((await pay(bank, 'a', 'a')).status).toBe(201);
    const throttled = await pay(bank, 'b', 'b');
    expect(throttled.status).toBe(503);
    // 1 token at 10/s × 0.01 = 10 s.
    expect(throttled.headers.get('retry-after')).toBe('10');
    now = 60_000;
    expect((await pay(bank, 'b', 'b')).status).toBe(201);
  });

  it('a Retry-After during a short recovery counts the whole rate after it ends', async () => {
    const bank = await start({
      rate: 10,
      burst: 1,
      clock: () => 0,
      faults: { outageMode: 'status', recoveryMs: 1000, recoveryRateFactor: 0.01 },
    });
    bank.setFaults({ outages: [{ startMs: 0, durationMs: 60_000 }] });
    bank.setFaults({ outages: [] });
    expect((await pay(bank, 'a', 'a')).status).toBe(201);
    const throttled = await pay(bank, 'b', 'b');
    expect(throttled.status).toBe(503);
    // 0.1 token in the reduced second, 0.9 at 10/s after it: 1.09 s (before the fix: 10 s)
    expect(throttled.headers.get('retry-after')).toBe('2');
  });

  it('comes back with at most burst × recoveryRateFactor tokens, not the bucket that filled while down', async () => {
    const bank = await start({
      rate: 100,
      burst: 100,
      clock: () => 0,
      faults: { outageMode: 'status', recoveryMs: 60_000, recoveryRateFactor: 0.1 },
    });
    bank.setFaults({ outages: [{ startMs: 0, durationMs: 60_000 }] });
    bank.setFaults({ outages: [] });
    const statuses: number[] = [];
    for (let i = 0; i < 15; i++) statuses.push((await pay(bank, `k${i}`, `o${i}`)).status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(10);
    expect(statuses.slice(10)).toEqual([503, 503, 503, 503, 503]);
  });
});

describe('reproducibility', () => {
  async function run(seed: number): Promise<number[]> {
    const bank = await start({ seed, faults: { errorRate: 0.5 } });
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await pay(bank, `k${i}`, `o${i}`)).status);
    return statuses;
  }

  it('the same seed and the same requests give the same faults', async () => {
    const a = await run(42);
    expect(await run(42)).toEqual(a);
    expect(a).toContain(500);
    expect(a).toContain(201);
    expect(await run(43)).not.toEqual(a);
  });

  /** Outcome per key of 24 payments that arrive in order: one at a time, or overlapping at the tellers. */
  async function outcomes(overlap: boolean): Promise<{ byKey: string[]; peakQueued: number }> {
    const bank = await start({
      seed: 9,
      faults: { errorRate: 0.3, resetRate: 0.2, dropAfterChargeRate: 0.2 },
      // Service long enough that the next payment arrives while one is served, even on a loaded machine.
      ...(overlap ? { tellers: 1, latencyMs: 20, latencyJitterMs: 10 } : {}),
    });
    const pending: Promise<string>[] = [];
    for (let i = 0; i < 24; i++) {
      const outcome = failure(pay(bank, `k${i}`, `o${i}`));
      if (!overlap) await outcome;
      else {
        // The next payment is sent only once this one has arrived (answered, reset, or at a teller), so
        // the order of arrival is fixed while earlier ones are still queued or being served.
        const arrived = () => {
          const s = bank.stats();
          return s.resets + s.transientErrors + s.charges + s.inFlight + s.queued;
        };
        while (arrived() < i + 1) await new Promise((resolve) => setImmediate(resolve));
      }
      pending.push(outcome);
    }
    const byKey = (await Promise.all(pending)).map((o) =>
      o === 'answered 201' ? 'paid' : o === 'answered 500' ? 'error' : 'no answer',
    );
    return { byKey, peakQueued: bank.stats().peakQueued };
  }

  it('overlapping requests get the same faults as the same requests one at a time', async () => {
    const serial = await outcomes(false);
    const overlapping = await outcomes(true);
    expect(overlapping.peakQueued).toBeGreaterThan(0);
    expect(overlapping.byKey).toEqual(serial.byKey);
    expect(new Set(serial.byKey)).toEqual(new Set(['paid', 'error', 'no answer']));
  });
});

describe('ground truth under random faults (property)', () => {
  // Whole percents: fc.double favours tiny values, which would make every fault vanish.
  const percent = (max: number) => fc.integer({ min: 0, max }).map((p) => p / 100);
  const faults = fc.record({
    dropAfterChargeRate: percent(40),
    errorRate: percent(30),
    resetRate: percent(20),
  });

  /** Pays `orders` one by one, retrying each until 201, with the same key or a fresh one per attempt. */
  async function payAll(bank: BankSim, orders: number, sameKey: boolean): Promise<void> {
    for (let o = 0; o < orders; o++) {
      for (let attempt = 0; ; attempt++) {
        if (attempt === 30) throw new Error(`order ${o} never paid`);
        const key = sameKey ? `order-${o}` : `order-${o}-attempt-${attempt}`;
        const outcome = await failure(pay(bank, key, `order-${o}`));
        if (outcome === 'answered 201') break;
      }
    }
  }

  it('same-key retries never double-charge; fresh-key retries add exactly one extra charge per dropped charge', async () => {
    let drops = 0;
    await fc.assert(
      fc.asyncProperty(faults, fc.integer({ min: 0, max: 1000 }), async (f, seed) => {
        const careful = await start({ seed, faults: f });
        await payAll(careful, 6, true);
        const c = careful.stats();
        expect(c).toMatchObject({
          ordersCharged: 6,
          charges: 6,
          ordersChargedMoreThanOnce: 0,
          extraCharges: 0,
        });

        const naive = await start({ seed, faults: f });
        await payAll(naive, 6, false);
        const n = naive.stats();
        expect(n.ordersCharged).toBe(6);
        expect(n.extraCharges).toBe(n.droppedAfterCharge);
        expect(n.charges).toBe(6 + n.droppedAfterCharge);
        expect(n.ordersChargedMoreThanOnce).toBeLessThanOrEqual(n.droppedAfterCharge);
        drops += n.droppedAfterCharge + c.droppedAfterCharge;
        await Promise.all([careful.close(), naive.close()]);
      }),
      { numRuns: 6, seed: 20261125 },
    );
    // The property is only worth something if the ambiguous fault actually happened.
    expect(drops).toBeGreaterThan(0);
  });
});
