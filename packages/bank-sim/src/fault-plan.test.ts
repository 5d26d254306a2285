import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FaultPlan } from './fault-plan.js';
import { defaultFaults } from './options.js';
import { prng } from './prng.js';

describe('FaultPlan', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function plan() {
    const changes: boolean[] = [];
    const p = new FaultPlan({
      faults: defaultFaults,
      random: prng(1),
      clock: () => Date.now(),
      onChange: (down) => changes.push(down),
    });
    return { p, changes };
  }

  it('opens and closes outage windows on time, then recovers at a reduced rate', () => {
    const { p, changes } = plan();
    p.set({ outages: [{ startMs: 1000, durationMs: 500 }], recoveryMs: 2000, recoveryRateFactor: 0.1 });
    expect(p.down).toBe(false);
    vi.advanceTimersByTime(1000);
    expect(p.down).toBe(true);
    expect(p.downForMs(Date.now())).toBe(500);
    vi.advanceTimersByTime(500);
    expect(p.down).toBe(false);
    expect(changes).toEqual([true, false]);
    expect(p.rateFactor(Date.now())).toBe(0.1);
    expect(p.rateFactor(Date.now() + 2000)).toBe(1);
  });

  it('starts a window at 0 at once and stays down while overlapping windows are open', () => {
    const { p, changes } = plan();
    p.set({
      outages: [
        { startMs: 0, durationMs: 100 },
        { startMs: 50, durationMs: 200 },
      ],
    });
    expect(p.down).toBe(true);
    vi.advanceTimersByTime(150);
    expect(p.down).toBe(true);
    vi.advanceTimersByTime(100);
    expect(p.down).toBe(false);
    expect(changes).toEqual([true, false]);
  });

  it('setting outages to [] ends an open outage and cancels its timers', () => {
    const { p, changes } = plan();
    p.set({ outages: [{ startMs: 0, durationMs: 10_000 }] });
    p.set({ outages: [] });
    expect(p.down).toBe(false);
    expect(changes).toEqual([true, false]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('keeps the faults unchanged when a partial is invalid', () => {
    const { p } = plan();
    p.set({ errorRate: 0.5 });
    expect(() => p.set({ errorRate: 3 })).toThrow(/errorRate/);
    expect(p.faults.errorRate).toBe(0.5);
  });

  it('close() clears every timer', () => {
    const { p } = plan();
    p.set({ outages: [{ startMs: 100, durationMs: 100 }] });
    p.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('schedules no outage after close() (a late setFaults)', () => {
    const { p, changes } = plan();
    p.close();
    p.set({
      outages: [
        { startMs: 0, durationMs: 100 },
        { startMs: 100, durationMs: 100 },
      ],
    });
    // before the fix: two timers armed after close(), and the window at 0 opened
    expect(vi.getTimerCount()).toBe(0);
    expect(p.down).toBe(false);
    expect(changes).toEqual([]);
  });
});
