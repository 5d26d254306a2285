import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { equalJitter, fullJitter, serverDelay } from './backoff.js';

describe('fullJitter', () => {
  it('is random(0, min(cap, base * 2^retry))', () => {
    expect(fullJitter(0, 50, 2000, () => 0.999)).toBeCloseTo(49.95);
    expect(fullJitter(3, 50, 2000, () => 0.5)).toBe(200);
    expect(fullJitter(10, 50, 2000, () => 0.5)).toBe(1000);
    expect(fullJitter(3, 50, 2000, () => 0)).toBe(0);
  });

  it('property: stays within [0, cap) even for huge retry counts', () => {
    fc.assert(
      fc.property(fc.nat(10_000), fc.double({ min: 0, max: 0.999_999, noNaN: true }), (retry, r) => {
        const delay = fullJitter(retry, 50, 2000, () => r);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThan(2000);
      }),
    );
  });
});

describe('equalJitter', () => {
  it('is t/2 + random(0, t/2), t = min(cap, base * 2^retry)', () => {
    expect(equalJitter(0, 1000, 60_000, () => 0)).toBe(500);
    expect(equalJitter(0, 1000, 60_000, () => 0.5)).toBe(750);
    expect(equalJitter(3, 1000, 60_000, () => 0.25)).toBe(5000);
    expect(equalJitter(10, 1000, 60_000, () => 0)).toBe(30_000);
    expect(equalJitter(10, 1000, 60_000, () => 0.999)).toBeCloseTo(59_970);
  });

  it('property: stays within [t/2, t), below the cap, even for huge retry counts', () => {
    fc.assert(
      fc.property(fc.nat(10_000), fc.double({ min: 0, max: 0.999_999, noNaN: true }), (retry, r) => {
        const ceiling = Math.min(60_000, 1000 * 2 ** Math.min(retry, 52));
        const delay = equalJitter(retry, 1000, 60_000, () => r);
        expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
        expect(delay).toBeLessThan(ceiling);
        expect(delay).toBeLessThan(60_000);
      }),
    );
  });
});

describe('serverDelay', () => {
  it('honours Retry-After, capped, stretched by at most 10%', () => {
    expect(serverDelay(1000, 30_000, () => 0)).toBe(1000);
    expect(serverDelay(1000, 30_000, () => 0.5)).toBe(1050);
    expect(serverDelay(60_000, 30_000, () => 0)).toBe(30_000);
  });
});
