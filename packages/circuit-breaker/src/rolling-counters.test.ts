import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RollingCounters } from './rolling-counters.js';

describe('RollingCounters', () => {
  it('sums the buckets of the window and forgets the ones left behind', () => {
    const w = new RollingCounters(1000, 10, 2);
    w.add(0, 0);
    w.add(50, 0);
    w.add(150, 1, 3);
    expect([...w.totals]).toEqual([2, 3]);
    w.advance(999);
    expect([...w.totals]).toEqual([2, 3]);
    w.advance(1000); // the bucket [0, 100) leaves the window
    expect([...w.totals]).toEqual([0, 3]);
    w.advance(1100);
    expect([...w.totals]).toEqual([0, 0]);
  });

  it('clears everything after an idle gap longer than the window', () => {
    const w = new RollingCounters(1000, 10, 1);
    for (let t = 0; t < 1000; t += 10) w.add(t, 0);
    expect(w.totals[0]).toBe(100);
    w.add(50_000, 0);
    expect(w.totals[0]).toBe(1);
  });

  it('reset() forgets the window', () => {
    const w = new RollingCounters(1000, 4, 1);
    w.add(10, 0, 5);
    w.reset();
    expect(w.totals[0]).toBe(0);
    w.add(20, 0);
    expect(w.totals[0]).toBe(1);
  });

  it('flags a slide that dropped counts until the reader clears it, and only then', () => {
    const w = new RollingCounters(1000, 10, 1);
    w.add(0, 0);
    w.advance(900);
    expect(w.dropped).toBe(false);
    w.advance(5000); // the record leaves the window
    expect(w.dropped).toBe(true);
    w.dropped = false;
    w.advance(9000); // only empty buckets slide out
    expect(w.dropped).toBe(false);
    w.add(9000, 0);
    w.reset();
    expect(w.dropped).toBe(false);
  });

  it('ignores a clock that goes backwards instead of corrupting the totals', () => {
    const w = new RollingCounters(1000, 10, 1);
    w.add(5000, 0);
    w.add(4000, 0);
    expect(w.totals[0]).toBe(2);
    w.advance(5050);
    expect(w.totals[0]).toBe(2);
  });

  it('agrees with a naive model (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 2 })), {
          maxLength: 200,
        }),
        (buckets, steps) => {
          const bucketMs = 100;
          const w = new RollingCounters(bucketMs * buckets, buckets, 3);
          const events: Array<[number, number]> = [];
          let now = 0;
          for (const [dt, index] of steps) {
            now += dt;
            w.add(now, index);
            events.push([now, index]);
            const oldest = (Math.floor(now / bucketMs) - buckets + 1) * bucketMs;
            const expected = [0, 0, 0];
            for (const [t, i] of events) if (t >= oldest) expected[i] = (expected[i] as number) + 1;
            expect([...w.totals]).toEqual(expected);
          }
        },
      ),
    );
  });
});
