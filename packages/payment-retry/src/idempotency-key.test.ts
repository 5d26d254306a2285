import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdempotencyKeyInvalidError, InvalidOptionError } from './errors.js';
import { assertIdempotencyKey, deriveIdempotencyKey, isValidIdempotencyKey } from './idempotency-key.js';

const identity = { merchant: 'shop', orderId: 'o-1', amount: 1250, currency: 'EUR', generation: 0 };

describe('deriveIdempotencyKey', () => {
  it('is a version-8 UUID, the same for the same identity', () => {
    const key = deriveIdempotencyKey(identity);
    expect(key).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(deriveIdempotencyKey({ ...identity })).toBe(key);
    expect(deriveIdempotencyKey({ ...identity, currency: 'eur' })).toBe(key);
  });

  it('changes with every field of the identity', () => {
    const key = deriveIdempotencyKey(identity);
    expect(deriveIdempotencyKey({ ...identity, merchant: 'other' })).not.toBe(key);
    expect(deriveIdempotencyKey({ ...identity, orderId: 'o-2' })).not.toBe(key);
    expect(deriveIdempotencyKey({ ...identity, amount: 1251 })).not.toBe(key);
    expect(deriveIdempotencyKey({ ...identity, currency: 'USD' })).not.toBe(key);
    expect(deriveIdempotencyKey({ ...identity, generation: 1 })).not.toBe(key);
  });

  it('keeps fields apart: a separator inside a field cannot collide', () => {
    const a = deriveIdempotencyKey({ ...identity, merchant: 'a","b', orderId: 'c' });
    const b = deriveIdempotencyKey({ ...identity, merchant: 'a', orderId: 'b","c' });
    expect(a).not.toBe(b);
  });

  it('fits a short gateway limit with hex, never below 16 characters', () => {
    expect(deriveIdempotencyKey(identity, 20)).toMatch(/^[0-9a-f]{20}$/);
    expect(() => deriveIdempotencyKey(identity, 15)).toThrow(InvalidOptionError);
    expect(() => deriveIdempotencyKey({ ...identity, generation: -1 })).toThrow(
      'Expected `generation` to be a safe integer >= 0, got `-1` (number)',
    );
  });

  it('property: distinct identities give distinct, valid keys', () => {
    const arbitrary = fc.record({
      merchant: fc.string({ minLength: 1 }),
      orderId: fc.string({ minLength: 1 }),
      amount: fc.integer({ min: 1 }),
      currency: fc.constantFrom('EUR', 'USD', 'GBP'),
      generation: fc.nat(),
    });
    fc.assert(
      fc.property(arbitrary, arbitrary, fc.integer({ min: 16, max: 255 }), (a, b, maxLength) => {
        const ka = deriveIdempotencyKey(a, maxLength);
        const kb = deriveIdempotencyKey(b, maxLength);
        expect(isValidIdempotencyKey(ka, maxLength)).toBe(true);
        const same =
          a.merchant === b.merchant &&
          a.orderId === b.orderId &&
          a.amount === b.amount &&
          a.currency === b.currency &&
          a.generation === b.generation;
        expect(ka === kb).toBe(same);
      }),
    );
  });
});

describe('isValidIdempotencyKey / assertIdempotencyKey', () => {
  it('accepts visible ASCII within the limit', () => {
    expect(isValidIdempotencyKey('abc-123_~:.', 255)).toBe(true);
    expect(isValidIdempotencyKey('a'.repeat(64), 64)).toBe(true);
  });

  it.each([
    ['empty', ''],
    ['too long', 'a'.repeat(65)],
    ['a space', 'a b'],
    ['a quote', 'a"b'],
    ['a backslash', 'a\\b'],
    ['non-ASCII', 'clé'],
    ['not a string', 42],
  ])('rejects %s', (_name, key) => {
    expect(isValidIdempotencyKey(key, 64)).toBe(false);
    expect(() => assertIdempotencyKey(key, 64)).toThrow(IdempotencyKeyInvalidError);
  });

  it('names the limit in the error', () => {
    try {
      assertIdempotencyKey('', 64);
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({ code: 'ERR_IDEMPOTENCY_KEY_INVALID', maxLength: 64 });
    }
  });
});
