import { describe, expect, it } from 'vitest';
import { PROBLEM_CONTENT_TYPE, problemAnswer, retryAfterSeconds } from './problem.js';

describe('problemAnswer', () => {
  it('builds an RFC 9457 body with the status title and a code', () => {
    const answer = problemAnswer(429, { code: 'ERR_RATE_LIMITED', detail: 'slow down', retryAfterMs: 1500 });
    expect(answer.status).toBe(429);
    expect(answer.headers).toEqual({ 'content-type': PROBLEM_CONTENT_TYPE, 'retry-after': '2' });
    expect(JSON.parse(answer.body as string)).toEqual({
      type: 'about:blank',
      title: 'Too Many Requests',
      status: 429,
      detail: 'slow down',
      code: 'ERR_RATE_LIMITED',
      retryAfter: 2,
    });
  });

  it('keeps the standard members when an extension collides', () => {
    const answer = problemAnswer(503, { extensions: { status: 200, reason: 'x' } });
    expect(JSON.parse(answer.body as string)).toMatchObject({
      status: 503,
      reason: 'x',
      title: 'Service Unavailable',
    });
  });

  it('rounds Retry-After up to whole seconds, at least 1', () => {
    expect(retryAfterSeconds(0)).toBe(1);
    expect(retryAfterSeconds(1)).toBe(1);
    expect(retryAfterSeconds(1000)).toBe(1);
    expect(retryAfterSeconds(1001)).toBe(1);
    expect(retryAfterSeconds(1002)).toBe(2);
    expect(retryAfterSeconds(Number.NaN)).toBe(1);
  });
});
