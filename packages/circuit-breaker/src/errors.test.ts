import { describe, expect, it } from 'vitest';
import {
  CircuitBreakerError,
  CircuitOpenError,
  CircuitShutdownError,
  CircuitTimeoutError,
  InvalidClassificationError,
  InvalidOptionError,
  isCircuitOpenError,
  RegistryClosedError,
  RegistryFullError,
} from './errors.js';

describe('errors', () => {
  it('carry a stable code, data fields and the base class', () => {
    const cases: Array<[CircuitBreakerError, string, string]> = [
      [new CircuitOpenError('bank', 1500), 'ERR_CIRCUIT_OPEN', 'CircuitOpenError'],
      [new CircuitTimeoutError('bank', 100), 'ERR_CIRCUIT_TIMEOUT', 'TimeoutError'],
      [new CircuitShutdownError('bank'), 'ERR_CIRCUIT_SHUTDOWN', 'CircuitShutdownError'],
      [new RegistryFullError('k', 10), 'ERR_REGISTRY_FULL', 'RegistryFullError'],
      [new RegistryClosedError('k'), 'ERR_REGISTRY_CLOSED', 'RegistryClosedError'],
      [new InvalidOptionError('timeoutMs', 'a number', 'x'), 'ERR_INVALID_OPTION', 'InvalidOptionError'],
      [
        new InvalidClassificationError('bank', false, 'sucess'),
        'ERR_INVALID_CLASSIFICATION',
        'InvalidClassificationError',
      ],
    ];
    for (const [error, code, name] of cases) {
      expect(error).toBeInstanceOf(CircuitBreakerError);
      expect(error).toBeInstanceOf(Error);
      expect(error.code).toBe(code);
      expect(error.name).toBe(name);
    }
    expect(new CircuitOpenError('bank', 1500)).toMatchObject({
      retryAfterMs: 1500,
      circuit: 'bank',
      state: 'open',
    });
    expect(new CircuitOpenError('bank', 5, 'half-open').message).toBe('Circuit `bank` is half-open');
  });

  it('describes the value and its type in InvalidOptionError', () => {
    expect(new InvalidOptionError('a', 'x', 'str').message).toBe(
      'Expected `a` to be x, got `"str"` (string)',
    );
    expect(new InvalidOptionError('a', 'x', null).message).toContain('`null` (null)');
    expect(new InvalidOptionError('a', 'x', [1]).message).toContain('`[1]` (array)');
    expect(new InvalidOptionError('a', 'x', () => 1).message).toContain('(function)');
    expect(new InvalidOptionError('a', 'x', 10n).message).toContain('`10n` (bigint)');
  });

  it('InvalidClassificationError names the option and the value returned, or the error thrown as cause', () => {
    const returned = new InvalidClassificationError('bank', false, undefined);
    expect(returned).toMatchObject({ option: 'classify', circuit: 'bank', threw: false, value: undefined });
    expect(returned.message).toBe(
      "Expected `classify` of circuit `bank` to return 'success', 'failure', 'throttled' or 'ignored', got `undefined` (undefined); the call was counted as a failure",
    );
    expect(returned.cause).toBeUndefined();
    const bug = new RangeError('no such status');
    const threw = new InvalidClassificationError('bank', true, bug);
    expect(threw).toMatchObject({ option: 'classify', threw: true, value: undefined, cause: bug });
    expect(threw.message).toBe(
      '`classify` of circuit `bank` threw RangeError: no such status; the call was counted as a failure',
    );
    expect(new InvalidClassificationError('bank', true, 'oops').message).toContain('threw `"oops"` (string)');
  });

  it('isCircuitOpenError recognises the error by class or by code', () => {
    expect(isCircuitOpenError(new CircuitOpenError('x', 1))).toBe(true);
    expect(isCircuitOpenError({ code: 'ERR_CIRCUIT_OPEN' })).toBe(true);
    expect(isCircuitOpenError(new Error('open'))).toBe(false);
    expect(isCircuitOpenError(null)).toBe(false);
  });
});
