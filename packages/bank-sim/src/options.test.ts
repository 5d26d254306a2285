import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from './errors.js';
import { defaultFaults, resolveFaults, resolveOptions } from './options.js';

describe('resolveOptions', () => {
  it('fills in the documented defaults', () => {
    const o = resolveOptions();
    expect(o).toMatchObject({
      port: 0,
      host: '127.0.0.1',
      rate: 300,
      burst: 300,
      throttleStatus: 503,
      rateLimitHeaders: false,
      limitStatusChecks: false,
      latencyMs: 20,
      tellers: 64,
      maxQueued: 1024,
      overloadMode: 'status',
      maxKeys: 100_000,
      maxKeyLength: 255,
      mismatchStatus: 422,
      maxBodyBytes: 16_384,
      seed: 1,
      faults: defaultFaults,
    });
    expect(resolveOptions({ rate: Number.POSITIVE_INFINITY }).burst).toBe(1000);
    // The default burst is the rate, but never below the one request a bucket must hold.
    expect(resolveOptions({ rate: 40 }).burst).toBe(40);
    expect(resolveOptions({ rate: 0.5 }).burst).toBe(1);
  });

  it.each([
    [{ rate: 0 }, 'rate', 'Expected `rate` to be a number > 0 (or Infinity), got `0` (number)'],
    [{ burst: 0.5 }, 'burst', 'Expected `burst` to be a finite number >= 1, got `0.5` (number)'],
    [{ tellers: 1.5 }, 'tellers', 'Expected `tellers` to be an integer >= 1, got `1.5` (number)'],
    [
      { throttleStatus: 500 },
      'throttleStatus',
      'Expected `throttleStatus` to be one of 429, 503, got `500` (number)',
    ],
    [{ port: 70_000 }, 'port', 'Expected `port` to be an integer in [0, 65535], got `70000` (number)'],
    [{ clock: 'now' }, 'clock', 'Expected `clock` to be a function, got `"now"` (string)'],
    [{ nope: 1 }, 'nope', 'Expected `nope` to be a known option, got `"nope"` (string)'],
    [
      { faults: { errorRate: 2 } },
      'faults.errorRate',
      'Expected `faults.errorRate` to be a probability in [0, 1], got `2` (number)',
    ],
    [
      { faults: { typo: 1 } },
      'faults.typo',
      'Expected `faults.typo` to be a known fault, got `"typo"` (string)',
    ],
    [
      { faults: { outages: [{ durationMs: 0 }] } },
      'faults.outages[0].durationMs',
      'Expected `faults.outages[0].durationMs` to be a finite number in [1, 2147483647], got `0` (number)',
    ],
    // Only `undefined` means "not given": null is a bad value, never a silent default.
    [{ rate: null }, 'rate', 'Expected `rate` to be a number > 0 (or Infinity), got `null`'],
    [{ tellers: null }, 'tellers', 'Expected `tellers` to be an integer >= 1, got `null`'],
    [{ seed: null }, 'seed', 'Expected `seed` to be an integer >= 0, got `null`'],
    [{ clock: null }, 'clock', 'Expected `clock` to be a function, got `null`'],
    [{ faults: null }, 'faults', 'Expected `faults` to be an object, got `null`'],
    [
      { faults: { errorRate: null } },
      'faults.errorRate',
      'Expected `faults.errorRate` to be a probability in [0, 1], got `null`',
    ],
    [
      { faults: { outages: null } },
      'faults.outages',
      'Expected `faults.outages` to be an array of windows, got `null`',
    ],
    [
      { faults: { outages: [{ startMs: null, durationMs: 5 }] } },
      'faults.outages[0].startMs',
      'Expected `faults.outages[0].startMs` to be a finite number in [0, 2147483647], got `null`',
    ],
  ])('rejects %j', (options, option, message) => {
    let error: unknown;
    try {
      resolveOptions(options as never);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option, message });
  });
});

describe('resolveFaults', () => {
  it('merges a partial set over the current one', () => {
    const base = resolveFaults({ errorRate: 0.5 }, defaultFaults);
    const next = resolveFaults({ dropAfterChargeRate: 1 }, base);
    expect(next).toMatchObject({ errorRate: 0.5, dropAfterChargeRate: 1, outageMode: 'refuse' });
    expect(Object.isFrozen(next)).toBe(true);
  });

  it('rejects a non-object and a zero recovery factor', () => {
    expect(() => resolveFaults([], defaultFaults)).toThrow(InvalidOptionError);
    expect(() => resolveFaults({ recoveryRateFactor: 0 }, defaultFaults)).toThrow(/recoveryRateFactor/);
  });
});
