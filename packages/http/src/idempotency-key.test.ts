import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdempotencyKeyError } from './errors.js';
import { parseIdempotencyKey } from './idempotency-key.js';

function reasonOf(value: unknown): string | undefined {
  try {
    parseIdempotencyKey(value);
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(IdempotencyKeyError);
    expect((error as IdempotencyKeyError).code).toBe('ERR_IDEMPOTENCY_KEY_INVALID');
    return (error as IdempotencyKeyError).reason;
  }
}

describe('parseIdempotencyKey', () => {
  it('accepts a Structured Field string and a bare token', () => {
    expect(parseIdempotencyKey('"8e03978e-40d5-43e8-bc93-6894a57f9324"')).toBe(
      '8e03978e-40d5-43e8-bc93-6894a57f9324',
    );
    expect(parseIdempotencyKey('8e03978e-40d5-43e8-bc93-6894a57f9324')).toBe(
      '8e03978e-40d5-43e8-bc93-6894a57f9324',
    );
    expect(parseIdempotencyKey('"with space and \\"quote\\""')).toBe('with space and "quote"');
    expect(parseIdempotencyKey(['"one"'])).toBe('one');
  });

  it('strips only HTTP whitespace (SP, HTAB) around the field: a no-break space is part of the value', () => {
    expect(parseIdempotencyKey(' \t"k"\t ')).toBe('k');
    expect(parseIdempotencyKey('\tk ')).toBe('k');
    // Node hands an obs-text byte 0xA0 over as U+00A0, which String.prototype.trim() removes: `k<NBSP>`
    // was the key `k`, and replayed k's stored answer.
    expect(reasonOf('"order-1"\u00a0')).toBe('malformed');
    expect(reasonOf('order-1\u00a0')).toBe('malformed');
    expect(reasonOf('\u00a0order-1')).toBe('malformed');
    expect(reasonOf('\u00a0')).toBe('malformed');
  });

  it('answers undefined when absent', () => {
    expect(parseIdempotencyKey(undefined)).toBeUndefined();
  });

  it('rejects empty, too long, not a string, several, and malformed keys', () => {
    expect(reasonOf('')).toBe('empty');
    expect(reasonOf('   ')).toBe('empty');
    expect(reasonOf('""')).toBe('empty');
    expect(reasonOf('a'.repeat(256))).toBe('too-long');
    expect(reasonOf(`"${'a'.repeat(256)}"`)).toBe('too-long');
    expect(reasonOf('a'.repeat(100_000))).toBe('too-long');
    expect(reasonOf(42)).toBe('not-a-string');
    expect(reasonOf(['a', 'b'])).toBe('malformed');
    expect(reasonOf('"a", "b"')).toBe('malformed');
    expect(reasonOf('a, b')).toBe('malformed');
    expect(reasonOf('"unterminated')).toBe('malformed');
    expect(reasonOf('"bad\\escape"')).toBe('malformed');
    expect(reasonOf('"tab\tinside"')).toBe('malformed');
    expect(reasonOf('bare space')).toBe('malformed');
    expect(reasonOf('"é"')).toBe('malformed');
    // A Structured Field string with parameters, or a token with them: no parameters are defined for it.
    expect(reasonOf('"k";p=1')).toBe('malformed');
    expect(reasonOf('k;p=1')).toBe('malformed');
  });

  it('accepts exactly 255 characters', () => {
    expect(parseIdempotencyKey('k'.repeat(255))).toHaveLength(255);
    expect(parseIdempotencyKey(`"${'k'.repeat(255)}"`)).toHaveLength(255);
  });

  it('property: any printable ASCII key of 1..255 survives SF quoting', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[\x20-\x7e]{1,255}$/), (key) => {
        if (key.trim() === '' || key !== key.trim()) return;
        const quoted = `"${key.replace(/[\\"]/g, '\\$&')}"`;
        expect(parseIdempotencyKey(quoted)).toBe(key);
      }),
    );
  });

  it('property: never throws anything but IdempotencyKeyError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 600 }), fc.anything()), (value) => {
        try {
          const key = parseIdempotencyKey(value);
          if (key !== undefined) expect(key.length).toBeGreaterThan(0);
        } catch (error) {
          expect(error).toBeInstanceOf(IdempotencyKeyError);
        }
      }),
    );
  });

  it('reads pathological 64 KB fields, each refused by its length or scanned once', () => {
    // Node's default limit on all header fields together is 16 KB; a server may raise it. Each field is
    // either refused by its length before any parsing or scanned once.
    const fields = [
      `${' '.repeat(32_768)}k k${' '.repeat(32_768)}`,
      'k'.repeat(65_536),
      `"${'\\"'.repeat(21_845)}`,
      `"${'k'.repeat(65_536)}`,
      'k:'.repeat(32_768),
      ['k', ' '.repeat(65_536)],
    ];
    for (const field of fields) {
      expect(() => parseIdempotencyKey(field)).toThrow(IdempotencyKeyError);
    }
    // Only SP and HTAB around a key are dropped, however many.
    expect(parseIdempotencyKey(`${' '.repeat(32_768)}"k"${'\t'.repeat(32_768)}`)).toBe('k');
  });
});
