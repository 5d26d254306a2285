import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Tellers } from './tellers.js';

describe('Tellers', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function make(tellers: number, maxQueued: number, latencyMs = 10) {
    return new Tellers({ tellers, maxQueued, latencyMs, latencyJitterMs: 0, random: () => 0.5 });
  }

  it('serves up to `tellers` at once and queues the rest in order', () => {
    const tellers = make(2, 10);
    const done: number[] = [];
    for (let i = 0; i < 5; i++) expect(tellers.enter({ serve: () => done.push(i) })).toBe(true);
    expect(tellers.busy).toBe(2);
    expect(tellers.queued).toBe(3);
    vi.advanceTimersByTime(10);
    expect(done).toEqual([0, 1]);
    vi.advanceTimersByTime(10);
    expect(done).toEqual([0, 1, 2, 3]);
    vi.advanceTimersByTime(10);
    expect(done).toEqual([0, 1, 2, 3, 4]);
    expect(tellers.peakQueued).toBe(3);
    expect(tellers.busy).toBe(0);
  });

  it('makes latency grow with load once the tellers are busy', () => {
    const tellers = make(1, 100);
    const finishedAt: number[] = [];
    for (let i = 0; i < 4; i++) tellers.enter({ serve: () => finishedAt.push(Date.now()) });
    const start = Date.now();
    vi.runAllTimers();
    expect(finishedAt.map((t) => t - start)).toEqual([10, 20, 30, 40]);
  });

  it('refuses past maxQueued', () => {
    const tellers = make(1, 2);
    const serve = () => {};
    expect([1, 2, 3, 4].map(() => tellers.enter({ serve }))).toEqual([true, true, true, false]);
  });

  it('grows its ring buffer past the initial size', () => {
    const tellers = make(1, 5000, 1);
    let served = 0;
    for (let i = 0; i < 3000; i++) tellers.enter({ serve: () => served++ });
    vi.runAllTimers();
    expect(served).toBe(3000);
  });

  it('adds jitter from the random source', () => {
    const tellers = new Tellers({
      tellers: 1,
      maxQueued: 1,
      latencyMs: 10,
      latencyJitterMs: 10,
      random: () => 0.5,
    });
    let served = false;
    tellers.enter({ serve: () => (served = true) });
    vi.advanceTimersByTime(14);
    expect(served).toBe(false);
    vi.advanceTimersByTime(1);
    expect(served).toBe(true);
  });

  it('close() cancels everything and refuses new work', () => {
    const tellers = make(1, 10);
    let served = 0;
    tellers.enter({ serve: () => served++ });
    tellers.enter({ serve: () => served++ });
    tellers.close();
    vi.runAllTimers();
    expect(served).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(tellers.enter({ serve: () => served++ })).toBe(false);
  });
});
