import { describe, expect, it } from 'vitest';
import { StatsRecorder } from './stats.js';

const live = { inFlight: 0, queued: 0, peakQueued: 0, down: false, rate: 10, burst: 10 };

function recorder(seriesSeconds = 3600, maxTrackedOrders = 100) {
  return new StatsRecorder({ maxTrackedOrders, seriesSeconds, now: 0 });
}

describe('StatsRecorder', () => {
  it('counts double charges per order id, not per key', () => {
    const stats = recorder();
    for (const order of ['a', 'b', 'a', 'a', 'c', 'b']) stats.charge(order);
    expect(stats.snapshot(0, live)).toMatchObject({
      charges: 6,
      ordersCharged: 3,
      ordersChargedMoreThanOnce: 2,
      extraCharges: 3,
    });
  });

  it('stops tracking past maxTrackedOrders but still counts the charges', () => {
    const stats = recorder(3600, 2);
    for (const order of ['a', 'b', 'c', 'a']) stats.charge(order);
    expect(stats.snapshot(0, live)).toMatchObject({
      charges: 4,
      ordersCharged: 2, // tracked orders only: c is in untrackedCharges
      untrackedCharges: 1,
      ordersChargedMoreThanOnce: 1,
    });
  });

  it('never counts an untracked order charged twice as two orders', () => {
    const stats = recorder(3600, 1);
    for (const order of ['first', 'x', 'x']) stats.charge(order);
    // Truth: 2 orders. ordersCharged is exact for the tracked ones; the rest is a bounded unknown.
    expect(stats.snapshot(0, live)).toMatchObject({ charges: 3, ordersCharged: 1, untrackedCharges: 2 });
  });

  it('finds the peak of admissions in any sliding 1 s window, not per calendar second', () => {
    const stats = recorder();
    // 3 at the end of second 0 and 3 at the start of second 1: 6 within 200 ms.
    for (const t of [100, 900, 950, 999, 1001, 1050, 1100, 2500]) stats.admit(t);
    expect(stats.snapshot(2500, live).peakAdmittedPerSecond).toBe(6);
  });

  it('keeps a window large enough for heavy traffic', () => {
    const stats = recorder();
    for (let i = 0; i < 5000; i++) stats.admit(i / 10);
    expect(stats.snapshot(500, live).peakAdmittedPerSecond).toBe(5000);
  });

  it('builds a per-second series with zero entries for quiet seconds', () => {
    const stats = recorder();
    const event = (now: number) => {
      stats.tick(now);
      stats.counters.requests++;
    };
    event(10);
    event(20);
    event(2500);
    const { series } = stats.snapshot(2600, live);
    expect(series.map((s) => [s.second, s.requests])).toEqual([
      [0, 2],
      [1, 0],
      [2, 1],
    ]);
  });

  it('bounds the series to seriesSeconds', () => {
    const stats = recorder(3);
    for (let t = 0; t < 10_000; t += 500) {
      stats.tick(t);
      stats.counters.requests++;
    }
    const { series } = stats.snapshot(9999, live);
    expect(series.map((s) => s.second)).toEqual([7, 8, 9]);
    expect(series.every((s) => s.requests === 2)).toBe(true);
  });

  it('reset() starts afresh', () => {
    const stats = recorder();
    stats.charge('a');
    stats.charge('a');
    stats.admit(5);
    stats.reset(5000);
    expect(stats.snapshot(5000, live)).toMatchObject({
      charges: 0,
      ordersChargedMoreThanOnce: 0,
      peakAdmittedPerSecond: 0,
      uptimeMs: 0,
      series: [{ second: 0, requests: 0 }],
    });
  });
  it('counts server errors with the last message, bounded, and forgets them on reset', () => {
    const stats = recorder();
    stats.serverError(Object.assign(new Error('accept EMFILE'), { code: 'EMFILE' }));
    stats.serverError(new Error('x'.repeat(500)));
    const snapshot = stats.snapshot(0, live);
    expect(snapshot.serverErrors).toBe(2);
    expect(snapshot.lastServerError).toBe(`${'x'.repeat(197)}...`);
    stats.serverError('not an Error');
    expect(stats.snapshot(0, live).lastServerError).toBe('not an Error');
    stats.reset(0);
    expect(stats.snapshot(0, live)).toMatchObject({ serverErrors: 0, lastServerError: null });
  });
});
