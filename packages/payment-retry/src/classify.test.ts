import { describe, expect, it } from 'vitest';
import { classifyError, errorCode, errorRetryAfterMs } from './classify.js';

const withCode = (code: string) => Object.assign(new Error(code), { code });

describe('classifyError', () => {
  it.each([
    'ECONNREFUSED',
    'ENOTFOUND',
    'EAI_AGAIN',
    'UND_ERR_CONNECT_TIMEOUT',
    'ERR_CIRCUIT_OPEN',
    'ERR_QUEUE_FULL',
    'ERR_RATE_LIMITED',
  ])('%s: not sent', (code) => {
    expect(classifyError(withCode(code))).toBe('not_sent');
  });

  it.each([
    'ECONNRESET',
    'EPIPE',
    'UND_ERR_SOCKET',
    'UND_ERR_HEADERS_TIMEOUT',
    'UND_ERR_BODY_TIMEOUT',
    'UND_ERR_ABORTED',
  ])('%s: sent, no response (unknown)', (code) => {
    expect(classifyError(withCode(code))).toBe('unknown');
  });

  it('treats what it cannot place as unknown (the safe side)', () => {
    expect(classifyError(new Error('what'))).toBe('unknown');
    expect(classifyError('a string')).toBe('unknown');
  });

  it('looks through cause chains and AggregateError', () => {
    expect(classifyError(new Error('wrapped', { cause: withCode('ECONNREFUSED') }))).toBe('not_sent');
    expect(classifyError(new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')]))).toBe(
      'not_sent',
    );
    expect(errorCode(null)).toBeUndefined();
  });
});

describe('errorRetryAfterMs', () => {
  it('reads a finite, non-negative retryAfterMs', () => {
    expect(errorRetryAfterMs(Object.assign(new Error('open'), { retryAfterMs: 250 }))).toBe(250);
    expect(errorRetryAfterMs(Object.assign(new Error('open'), { retryAfterMs: -1 }))).toBeUndefined();
    expect(errorRetryAfterMs(new Error('plain'))).toBeUndefined();
    expect(errorRetryAfterMs(undefined)).toBeUndefined();
  });
});
