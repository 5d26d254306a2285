import { describe, expect, it } from 'vitest';
import {
  checkOptionKeys,
  clockOption,
  finiteNumber,
  integer,
  numberOrInfinity,
  refillPerMs,
} from './options.js';

describe('option validation', () => {
  it('converts both refill rate forms to tokens per ms', () => {
    expect(refillPerMs('refillRate', 10)).toBe(0.01);
    expect(refillPerMs('refillRate', { tokens: 100, perMs: 60_000 })).toBeCloseTo(100 / 60_000);
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY, '5', null, { tokens: 1 }, { tokens: 1, perMs: 0 }])(
    'rejects the rate %j naming the option',
    (rate) => {
      expect(() => refillPerMs('refillRate', rate)).toThrow(
        expect.objectContaining({
          code: 'ERR_INVALID_OPTION',
          message: expect.stringContaining('refillRate'),
        }),
      );
    },
  );

  it('rejects unknown keys and non-objects', () => {
    expect(() => checkOptionKeys({ capacity: 1, capcity: 2 }, ['capacity'], 'options')).toThrow(/`capcity`/);
    expect(() => checkOptionKeys(undefined, ['capacity'], 'options')).toThrow(/`options`/);
    expect(() => checkOptionKeys({ capacity: 1 }, ['capacity'], 'options')).not.toThrow();
  });

  it('checks numbers and integers', () => {
    expect(() => finiteNumber('capacity', 0, 1)).toThrow(
      'Expected `capacity` to be a finite number >= 1, got `0` (number)',
    );
    expect(finiteNumber('capacity', 1, 1)).toBe(1);
    expect(() => finiteNumber('x', 0, 0, true)).toThrow(/> 0/);
    expect(numberOrInfinity('maxWaitMs', Number.POSITIVE_INFINITY, 0)).toBe(Number.POSITIVE_INFINITY);
    expect(() => numberOrInfinity('maxWaitMs', -1, 0)).toThrow(/maxWaitMs/);
    expect(() => integer('maxQueue', 1.5, 0)).toThrow(/an integer >= 0/);
    expect(() => integer('maxQueue', Number.POSITIVE_INFINITY, 0)).toThrow(/maxQueue/);
    expect(integer('maxQueue', Number.POSITIVE_INFINITY, 0, true)).toBe(Number.POSITIVE_INFINITY);
  });

  it('defaults the clock to a monotonic one and rejects non-functions', () => {
    const clock = clockOption(undefined);
    expect(clock()).toBeGreaterThanOrEqual(0);
    expect(() => clockOption(5)).toThrow(/`clock`/);
  });
});
