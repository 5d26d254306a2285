import { describe, expect, it } from 'vitest';
import { LatencyHistogram } from './latency-histogram.js';

describe('LatencyHistogram', () => {
  it('estimates percentiles within 10% above the truth', () => {
    const h = new LatencyHistogram(10_000, 10);
    for (let i = 1; i <= 1000; i++) h.record(0, i);
    const p = h.percentiles(0);
    expect(p.count).toBe(1000);
    for (const [estimate, truth] of [
      [p.p50, 500],
      [p.p90, 900],
      [p.p95, 950],
      [p.p99, 990],
      [p.max, 1000],
    ] as const) {
      expect(estimate).toBeGreaterThanOrEqual(truth);
      expect(estimate).toBeLessThanOrEqual(truth * 1.1);
    }
  });

  it('is windowed and reports zeros when empty', () => {
    const h = new LatencyHistogram(1000, 10);
    h.record(0, 5);
    expect(h.percentiles(500).count).toBe(1);
    expect(h.percentiles(5000)).toEqual({ count: 0, p50: 0, p90: 0, p95: 0, p99: 0, max: 0 });
  });

  it('keeps 0, sub-microsecond and huge latencies in range', () => {
    const h = new LatencyHistogram(1000, 1);
    h.record(0, 0);
    h.record(0, 0.001);
    h.record(0, 1e12);
    const p = h.percentiles(0);
    expect(p.count).toBe(3);
    expect(p.p50).toBeLessThanOrEqual(0.01);
    expect(p.max).toBeGreaterThan(2 ** 31);
  });
});
