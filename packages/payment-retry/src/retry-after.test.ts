import { describe, expect, it } from 'vitest';
import { parseRetryAfter } from './retry-after.js';

describe('parseRetryAfter', () => {
  it('reads delay-seconds', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter(' 0 ')).toBe(0);
    expect(parseRetryAfter(['3', '9'])).toBe(3000);
  });

  it('reads fractional seconds some gateways send', () => {
    expect(parseRetryAfter('0.25')).toBe(250);
  });

  it('reads an HTTP-date against the given wall clock', () => {
    const now = Date.parse('Wed, 25 Nov 2026 12:00:00 GMT');
    expect(parseRetryAfter('Wed, 25 Nov 2026 12:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('Wed, 25 Nov 2026 11:00:00 GMT', now)).toBe(0);
  });

  it('reads the obsolete HTTP-date forms (RFC 850, asctime) as GMT, as RFC 9110 section 5.6.7 requires', () => {
    const now = Date.parse('Wed, 25 Nov 2026 12:00:00 GMT');
    const tz = process.env.TZ;
    // asctime carries no zone: HTTP means GMT, whatever the local time zone is.
    process.env.TZ = 'America/New_York';
    try {
      expect(parseRetryAfter('Wednesday, 25-Nov-26 12:00:05 GMT', now)).toBe(5000);
      expect(parseRetryAfter('Wed Nov 25 12:00:05 2026', now)).toBe(5000);
      expect(parseRetryAfter('Wed Nov  5 12:00:05 2026', now)).toBe(0);
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });

  it('answers undefined for absent or malformed values', () => {
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter('-1')).toBeUndefined();
    expect(parseRetryAfter('Wednesday')).toBeUndefined();
    expect(parseRetryAfter('Wed Nov 25 2026')).toBeUndefined();
  });

  it('reads pathological 64 KB values, each refused by its length or scanned once', () => {
    // A bank's (or a proxy's) Retry-After: undici takes up to 16 KB of fields by default, a Pool more.
    const values = [
      `${'1'.repeat(65_536)}x`,
      `${'1'.repeat(65_536)}.x`,
      `.${'1'.repeat(65_536)}x`,
      `Sun,${' 1'.repeat(32_768)}`,
      `Sun, ${'1:'.repeat(32_768)}`,
      `Sun Nov ${' '.repeat(65_536)}`,
      `${' '.repeat(32_768)}x${' '.repeat(32_768)}`,
    ];
    for (const value of values) {
      expect(parseRetryAfter(value)).toBeUndefined();
    }
  });
});
