import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Framework } from '../src/config.js';
import type { FestivalReport } from '../src/festival/report.js';
import { type FestivalOptions, runFestival } from '../src/festival/run-festival.js';

// The festival's acceptance, on a smaller surge: a bank limited to 60 payments/s with realistic faults,
// and 240 students paying within one second, four times what it can take.
const BANK_RATE = 60;
const base = (outDir: string): FestivalOptions => ({
  students: 240,
  arrivalMs: 1000,
  bankRate: BANK_RATE,
  faults: true,
  seed: 7,
  shops: ['floodgate'],
  crash: false,
  instances: 1,
  redisUrl: undefined,
  drainTimeoutMs: 8000,
  outDir,
});

let outDir: string;
beforeAll(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'festival-test-'));
});
afterAll(async () => {
  await rm(outDir, { recursive: true, force: true });
});

// The same acceptance for the floodgate shop on either framework: the app in front of the checkout must
// not change what is charged.
describe.each<[Framework, string]>([
  ['express', 'floodgate'],
  ['fastify', 'floodgate (fastify)'],
])('the festival, floodgate shop on %s', (framework, label) => {
  let report: FestivalReport;

  beforeAll(async () => {
    report = await runFestival({ ...base(join(outDir, framework)), framework, crash: true });
  }, 90_000);

  it('runs the app it was asked for, before and after the SIGKILL', () => {
    // Each run checks every shop process's `GET /api/config` against the framework it asked for.
    expect(report.settings.framework).toBe(framework);
    expect(report.runs.map((r) => [r.label, r.framework])).toEqual([
      [label, framework],
      [`${label} + SIGKILL`, framework],
    ]);
  });

  it('charges no order twice and loses none', () => {
    const run = report.runs[0];
    expect(run?.label).toBe(label);
    expect(run?.ordersChargedTwice).toBe(0);
    expect(run?.extraCharges).toBe(0);
    expect(run?.lostOrders).toBe(0);
    // Every order that was paid for was charged exactly once; every other one was declined, uncharged.
    expect(run?.integrity.paidChargedMoreThanOnce).toBe(0);
    expect(run?.integrity.paidNotCharged).toBe(0);
    expect(run?.integrity.declinedButCharged).toBe(0);
    expect(run?.ordersPaid).toBe(run?.integrity.paidChargedOnce);
    expect(run?.ordersPaid).toBeGreaterThan(215);
  });

  it('keeps the bank at its limit and uses at least 90% of it while demand exceeds it', () => {
    const run = report.runs[0];
    expect(run?.bankPeakAdmittedPerSecond).toBeLessThanOrEqual(BANK_RATE * 1.05);
    expect(run?.goodputShare).toBeGreaterThanOrEqual(0.9);
  });

  it('recovers from a SIGKILL mid-surge: every order charged exactly once or definitively declined', () => {
    const run = report.runs[1];
    expect(run?.crash).toBe(true);
    expect(run?.crashedAtMs).toBeGreaterThan(0);
    expect(run?.ordersChargedTwice).toBe(0);
    expect(run?.extraCharges).toBe(0);
    expect(run?.lost).toEqual({ chargedNotPaid: 0, unresolved: 0 });
    expect(run?.integrity.paidChargedMoreThanOnce).toBe(0);
    expect(run?.integrity.paidNotCharged).toBe(0);
    expect(run?.integrity.declinedButCharged).toBe(0);
  });

  it('takes checkouts again before it has recovered what the killed process left in flight', () => {
    const run = report.runs[1];
    const restart = run?.restart;
    expect(restart).toBeDefined();
    expect(run?.recovered).toEqual(expect.any(Number));
    // Recovery waits for the bank; the restarted shop listens first and recovers in the background.
    expect(restart?.ordersSyncedMs).toBeLessThanOrEqual(restart?.listeningMs ?? 0);
    expect(restart?.listeningMs).toBeLessThanOrEqual(restart?.recoveredMs ?? 0);
  });

  it('writes the JSON and HTML report', async () => {
    const json = JSON.parse(await readFile(join(outDir, framework, 'report.json'), 'utf8')) as FestivalReport;
    expect(json.runs.map((r) => r.label)).toEqual([label, `${label} + SIGKILL`]);
    const html = await readFile(join(outDir, framework, 'report.html'), 'utf8');
    expect(html).toContain('<svg');
    expect(html).toContain('Requests at the bank against its limit');
  });
});

describe('the festival, naive shop', () => {
  it('shows what the festival went through: double charges or collapse', async () => {
    const report = await runFestival({
      ...base(join(outDir, 'naive')),
      shops: ['naive'],
      drainTimeoutMs: 2000,
    });
    const run = report.runs[0];
    expect(run?.label).toBe('naive');
    // Measured by the bank: orders charged twice, or a retry storm (the bank refused more than two
    // requests per student) or goodput collapsing.
    const students = run?.students ?? 0;
    const collapsed = (run?.throttled ?? 0) > 2 * students || (run?.goodputShare ?? 1) < 0.5;
    expect((run?.ordersChargedTwice ?? 0) > 0 || collapsed).toBe(true);
    // With no limiter it goes past the bank's limit: the bank refuses requests.
    expect(run?.throttled).toBeGreaterThan(students);
    // The bank's ground truth and the shop's records agree on where the extra charges came from.
    const sources = run?.doubleChargeSources;
    expect((sources?.reClicks ?? 0) + (sources?.retries ?? 0) + (sources?.crashes ?? 0)).toBe(
      run?.extraCharges,
    );
  }, 60_000);
});
