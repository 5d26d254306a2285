import { describe, expect, it } from 'vitest';
import { trimOws } from './field-value.js';

describe('trimOws', () => {
  it('strips SP and HTAB around a value, nothing inside it', () => {
    expect(trimOws(' \t k 1\t ')).toBe('k 1');
    expect(trimOws('k')).toBe('k');
    expect(trimOws(' \t ')).toBe('');
    expect(trimOws('')).toBe('');
  });

  it('keeps every other whitespace, which is part of the value (obs-text arrives as latin1)', () => {
    for (const space of ['\u00a0', '\u0085', '\u2028', '\u3000', '\ufeff', '\r', '\n', '\v', '\f']) {
      expect(trimOws(`${space}k${space}`)).toBe(`${space}k${space}`);
    }
  });
});
