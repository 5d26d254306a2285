import { expect, it, describe as suite } from 'vitest';
import {
  ClosedError,
  InvalidOptionError,
  QueueFullError,
  RateLimitedError,
  StoreUnavailableError,
  TokenBucketError,
} from './index.js';

suite('errors', () => {
  it('carry stable codes and data fields', () => {
    const invalid = new InvalidOptionError('capacity', 'a finite number >= 1', 0);
    expect(invalid).toBeInstanceOf(TokenBucketError);
    expect(invalid).toBeInstanceOf(Error);
    expect(invalid.code).toBe('ERR_INVALID_OPTION');
    expect(invalid.name).toBe('InvalidOptionError');
    expect(invalid.option).toBe('capacity');
    expect(invalid.value).toBe(0);
    expect(invalid.message).toBe('Expected `capacity` to be a finite number >= 1, got `0` (number)');

    const limited = new RateLimitedError(250);
    expect(limited.code).toBe('ERR_RATE_LIMITED');
    expect(limited.retryAfterMs).toBe(250);

    const full = new QueueFullError(10, 40);
    expect(full.code).toBe('ERR_QUEUE_FULL');
    expect(full.retryAfterMs).toBe(40);
    expect(full.maxQueue).toBe(10);

    const cause = new Error('ECONNREFUSED');
    const store = new StoreUnavailableError('store failed', { cause });
    expect(store.code).toBe('ERR_STORE_UNAVAILABLE');
    expect(store.cause).toBe(cause);

    expect(new ClosedError('TokenBucket').code).toBe('ERR_CLOSED');
  });

  it('describe strings, objects and missing values in messages', () => {
    expect(new InvalidOptionError('x', 'y', 'a').message).toContain('`"a"` (string)');
    expect(new InvalidOptionError('x', 'y', undefined).message).toContain('`undefined` (undefined)');
    expect(new InvalidOptionError('x', 'y', null).message).toContain('`null` (null)');
    // An object by its keys only: its values may be secrets (a Redis URL with a password).
    expect(new InvalidOptionError('x', 'y', { url: 'redis://:pw@h' }).message).toContain(
      '`{ url }` (object)',
    );
    expect(new InvalidOptionError('x', 'y', { url: 'redis://:pw@h' }).message).not.toContain('pw');
    expect(new InvalidOptionError('x', 'y', ['a', 1]).message).toContain('`["a",1]` (array)');
    expect(new InvalidOptionError('x', 'y', Number.NaN).message).toContain('`NaN` (number)');
  });
});
