import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, requestFingerprint } from './fingerprint.js';

function shuffleKeys(value: unknown, seed: number): unknown {
  if (Array.isArray(value)) return value.map((v) => shuffleKeys(v, seed));
  if (typeof value !== 'object' || value === null) return value;
  const entries = Object.entries(value);
  const rotated = entries.map((_, i) => entries[(i + seed) % entries.length] as [string, unknown]).reverse();
  return Object.fromEntries(rotated.map(([k, v]) => [k, shuffleKeys(v, seed + 1)]));
}

describe('requestFingerprint', () => {
  it('does not depend on JSON key order, at any depth', () => {
    const a = requestFingerprint({
      method: 'POST',
      url: '/checkout',
      body: { a: 1, b: { c: [1, 2], d: 'x' } },
    });
    const b = requestFingerprint({
      method: 'post',
      url: '/checkout',
      body: { b: { d: 'x', c: [1, 2] }, a: 1 },
    });
    expect(a).toBe(b);
    expect(a).toMatch(/^[\w-]{43}$/);
  });

  it('changes with the method, the URL, the body, and array order', () => {
    const base = { method: 'POST', url: '/checkout', body: { amount: 100, items: [1, 2] } };
    const f = requestFingerprint(base);
    expect(requestFingerprint({ ...base, method: 'PATCH' })).not.toBe(f);
    expect(requestFingerprint({ ...base, url: '/checkout?x=1' })).not.toBe(f);
    expect(requestFingerprint({ ...base, body: { amount: 101, items: [1, 2] } })).not.toBe(f);
    expect(requestFingerprint({ ...base, body: { amount: 100, items: [2, 1] } })).not.toBe(f);
  });

  it('tells a JSON string body, a raw body and no body apart', () => {
    const input = { method: 'POST', url: '/' };
    const fingerprints = new Set([
      requestFingerprint(input),
      requestFingerprint({ ...input, body: '"x"' }),
      requestFingerprint({ ...input, body: 'x' }),
      requestFingerprint({ ...input, body: Buffer.from('x') }),
      requestFingerprint({ ...input, body: null }),
    ]);
    expect(fingerprints.size).toBe(5);
  });

  it('canonicalJson sorts keys and keeps toJSON semantics', () => {
    expect(canonicalJson({ b: 1, a: new Date(0) })).toBe('{"a":"1970-01-01T00:00:00.000Z","b":1}');
    expect(canonicalJson(undefined)).toBe('undefined');
  });

  it('property: key order never changes the fingerprint', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.nat(10), (body, seed) => {
        const shuffled = shuffleKeys(body, seed);
        expect(requestFingerprint({ method: 'POST', url: '/x', body: shuffled })).toBe(
          requestFingerprint({ method: 'POST', url: '/x', body }),
        );
      }),
    );
  });
});
