import { describe, expect, it } from 'vitest';
import { type FestivalReport, findings, machineLine } from './report.js';
import type { RunReport } from './run.js';

const crashRun = {
  label: 'floodgate + SIGKILL',
  crash: true,
  extraCharges: 0,
  ordersChargedTwice: 0,
  doubleChargeSources: { reClicks: 0, retries: 0, crashes: 0 },
  lost: { chargedNotPaid: 0, unresolved: 0 },
  bankPeakAdmittedPerSecond: 150,
  bankRate: 150,
  unanswered: 0,
  crashedAtMs: 1200,
  restartMs: 1340,
  recovered: 116,
  restart: {
    exitedMs: 143,
    processStartedMs: 16,
    modulesLoadedMs: 939,
    shopBuiltMs: 1284,
    ordersSyncedMs: 1303,
    listeningMs: 1315,
    recoveredMs: 8369,
  },
} as unknown as RunReport;

describe('findings', () => {
  it('says when the restarted shop took checkouts again and where the time went, step by step', () => {
    expect(findings(crashRun)).toBe(
      'floodgate + SIGKILL: no double charges; shop SIGKILLed at 1.2 s, taking checkouts again after 1.3 s, ' +
        '116 payments recovered after 8.4 s (from the SIGKILL: new process running 16 ms, modules loaded ' +
        '939 ms, shop built 1284 ms, orders synced 1303 ms, listening 1315 ms, recovered 8369 ms, the killed ' +
        'one seen gone 143 ms).',
    );
  });

  it('counts in the singular and the plural', () => {
    const naive = {
      ...crashRun,
      label: 'naive',
      crash: false,
      extraCharges: 1,
      ordersChargedTwice: 1,
      doubleChargeSources: { reClicks: 1, retries: 0, crashes: 0 },
      lost: { chargedNotPaid: 1, unresolved: 2 },
      unanswered: 1,
    } as unknown as RunReport;
    expect(findings(naive)).toBe(
      'naive: 1 extra charge on 1 order (1 from re-clicks paid with a new key); 1 order charged but shown ' +
        'as not paid; 2 orders still unresolved at the end; 1 click was never answered.',
    );
    expect(findings({ ...naive, extraCharges: 3, ordersChargedTwice: 2, unanswered: 2 })).toMatch(
      /^naive: 3 extra charges on 2 orders .*; 2 clicks were never answered\.$/,
    );
  });
});

describe('machineLine', () => {
  const on = (loadAtStart: number) =>
    ({ machine: { cores: 2, loadAtStart, loadAtEnd: 2.5 } }) as unknown as FestivalReport;

  it('names the cores and the load, and warns when other work was running at the start', () => {
    expect(machineLine(on(0.4))).toBe('machine: 2 cores, load average 0.4 at start, 2.5 at end');
    expect(machineLine(on(3.2))).toBe(
      'machine: 2 cores, load average 3.2 at start, 2.5 at end (other work was running: expect lower goodput and higher latency)',
    );
  });
});
