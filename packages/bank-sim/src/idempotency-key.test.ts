import { describe, expect, it } from 'vitest';
import { parseIdempotencyKey } from './idempotency-key.js';

describe('parseIdempotencyKey', () => {
  it('accepts the Structured Field string form and unescapes it', () => {
    expect(parseIdempotencyKey('"8e03978e-40d5-43e8-bc93-6894a57f9324"', 255)).toBe(
      '8e03978e-40d5-43e8-bc93-6894a57f9324',
    );
    expect(parseIdempotencyKey('"with space and \\"quote\\""', 255)).toBe('with space and "quote"');
  });

  it('accepts a bare token', () => {
    expect(parseIdempotencyKey('order-42:attempt/1', 255)).toBe('order-42:attempt/1');
  });

  it.each([
    ['empty quoted', '""'],
    ['empty', ''],
    ['unterminated', '"abc'],
    ['two keys', '"a", "b"'],
    ['two bare keys', 'a, b'],
    ['bare with space', 'a b'],
    ['control character', '"a\u0001"'],
    ['non-ASCII', '"café"'],
    ['lone backslash', '"a\\b"'],
  ])('rejects %s', (_name, value) => {
    expect(parseIdempotencyKey(value, 255)).toBeUndefined();
  });

  it('enforces the length limit on the key, not the quotes', () => {
    expect(parseIdempotencyKey(`"${'k'.repeat(255)}"`, 255)).toHaveLength(255);
    expect(parseIdempotencyKey(`"${'k'.repeat(256)}"`, 255)).toBeUndefined();
    expect(parseIdempotencyKey('k'.repeat(256), 255)).toBeUndefined();
  });
});
