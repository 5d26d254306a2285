import { describe, expect, it } from 'vitest';
import type { OutcomeKind } from './classify.js';
import { classifyGatewayOutcome, retryAfterOf } from './classify.js';

const err = (fields: Record<string, unknown>) => Object.assign(new Error('gateway'), fields);

describe('classifyGatewayOutcome', () => {
  const thrown: Array<[string, unknown, OutcomeKind]> = [
    ['500', err({ statusCode: 500 }), 'failure'],
    ['502', err({ statusCode: 502 }), 'failure'],
    ['504', err({ statusCode: 504 }), 'failure'],
    ['503 without Retry-After', err({ statusCode: 503 }), 'failure'],
    ['503 with Retry-After', err({ statusCode: 503, retryAfterMs: 2000 }), 'throttled'],
    ['503 with Retry-After 0', err({ statusCode: 503, retryAfterMs: 0 }), 'throttled'],
    ['503 with a bogus Retry-After', err({ statusCode: 503, retryAfterMs: Number.NaN }), 'failure'],
    ['429 with Retry-After', err({ statusCode: 429, retryAfterMs: 1000 }), 'throttled'],
    ['429 without Retry-After', err({ statusCode: 429 }), 'throttled'],
    ['408 request timeout', err({ statusCode: 408 }), 'failure'],
    ['409 same key in flight', err({ statusCode: 409, retryAfterMs: 1000 }), 'ignored'],
    ['402 declined', err({ statusCode: 402, outcome: 'responded' }), 'success'],
    ['400 validation', err({ statusCode: 400 }), 'success'],
    ['404', err({ statusCode: 404 }), 'success'],
    ['422 key reused with another payload', err({ statusCode: 422 }), 'success'],
    ['301 thrown', err({ statusCode: 301 }), 'success'],
    ['ECONNREFUSED not sent', err({ code: 'ECONNREFUSED', outcome: 'not_sent' }), 'failure'],
    ['ECONNRESET', err({ code: 'ECONNRESET' }), 'failure'],
    ['ETIMEDOUT', err({ code: 'ETIMEDOUT' }), 'failure'],
    ['ENOTFOUND', err({ code: 'ENOTFOUND' }), 'failure'],
    ['UND_ERR_CONNECT_TIMEOUT', err({ code: 'UND_ERR_CONNECT_TIMEOUT', outcome: 'not_sent' }), 'failure'],
    ['UND_ERR_HEADERS_TIMEOUT', err({ code: 'UND_ERR_HEADERS_TIMEOUT', outcome: 'unknown' }), 'failure'],
    ['UND_ERR_BODY_TIMEOUT', err({ code: 'UND_ERR_BODY_TIMEOUT' }), 'failure'],
    ['UND_ERR_SOCKET', err({ code: 'UND_ERR_SOCKET' }), 'failure'],
    ['outcome unknown', err({ outcome: 'unknown' }), 'failure'],
    ['outcome responded, no status', err({ outcome: 'responded' }), 'success'],
    ['not sent, no code', err({ outcome: 'not_sent' }), 'ignored'],
    ['local rate limit', err({ code: 'ERR_RATE_LIMITED', retryAfterMs: 100 }), 'ignored'],
    ['local queue full', err({ code: 'ERR_QUEUE_FULL' }), 'ignored'],
    ['nested breaker open', err({ code: 'ERR_CIRCUIT_OPEN' }), 'ignored'],
    ['our own timeout', err({ code: 'ERR_CIRCUIT_TIMEOUT' }), 'failure'],
    ['unknown code, no status', err({ code: 'EWHATEVER' }), 'failure'],
    ['plain Error', new Error('bug'), 'failure'],
    ['TypeError', new TypeError('x is undefined'), 'failure'],
    ['a thrown string', 'oops', 'failure'],
    ['undefined', undefined, 'failure'],
  ];
  it.each(thrown)('thrown %s → %s', (_name, value, expected) => {
    expect(classifyGatewayOutcome(value, true)).toBe(expected);
  });

  const returned: Array<[string, unknown, OutcomeKind]> = [
    ['a plain value', 42, 'success'],
    ['undefined', undefined, 'success'],
    ['an object without status', { id: 'pay_1' }, 'success'],
    ['a 201 response', { statusCode: 201 }, 'success'],
    ['a 402 response', { statusCode: 402 }, 'success'],
    ['a 503 response', { statusCode: 503 }, 'failure'],
    ['a 429 response', { statusCode: 429, retryAfterMs: 1000 }, 'throttled'],
    ['an object with an error-looking outcome but no status', { outcome: 'unknown' }, 'success'],
  ];
  it.each(returned)('returned %s → %s', (_name, value, expected) => {
    expect(classifyGatewayOutcome(value, false)).toBe(expected);
  });
});

describe('retryAfterOf', () => {
  it('reads a usable retryAfterMs and 0 otherwise', () => {
    expect(retryAfterOf(err({ retryAfterMs: 1500 }))).toBe(1500);
    expect(retryAfterOf(err({ retryAfterMs: -1 }))).toBe(0);
    expect(retryAfterOf(err({ retryAfterMs: Number.POSITIVE_INFINITY }))).toBe(0);
    expect(retryAfterOf(err({ retryAfterMs: '1500' }))).toBe(0);
    expect(retryAfterOf(null)).toBe(0);
    expect(retryAfterOf('x')).toBe(0);
  });
});
