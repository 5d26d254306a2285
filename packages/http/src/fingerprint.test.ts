import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { canonicalJson, requestFingerprint } from './fingerprint.js';

/**
 * The first version's canonical form, as the reference: a copy with keys inserted sorted (JavaScript then
 * puts array-index keys first), written by JSON.stringify. defineProperty keeps a `__proto__` key a key.
 */
function sortedCopy(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedCopy);
  if (typeof value !== 'object' || value === null) return value;
  const copy = {};
  for (const name of Object.keys(value).sort()) {
    const member = sortedCopy((value as Record<string, unknown>)[name]);
    Object.defineProperty(copy, name, {
      value: member,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return copy;
}

/** What requestFingerprint hashes for a JSON body, written whole. */
function referenceFingerprint(url: string, body: unknown): string {
  const text = JSON.stringify(sortedCopy(body));
  return createHash('sha256').update(`POST\n${url}\nj${text}`).digest('base64url');
}

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

  it('fingerprints a body nested 10 000 levels deep (JSON parsers take it; a 500 before)', () => {
    const deep = (depth: number, leaf: number) =>
      JSON.parse(`${'[{"a":'.repeat(depth)}${leaf}${'}]'.repeat(depth)}`) as unknown;
    const f = requestFingerprint({ method: 'POST', url: '/checkout', body: deep(10_000, 1) });
    expect(requestFingerprint({ method: 'POST', url: '/checkout', body: deep(10_000, 1) })).toBe(f);
    expect(requestFingerprint({ method: 'POST', url: '/checkout', body: deep(10_000, 2) })).not.toBe(f);
    expect(canonicalJson(deep(2, 1))).toBe('[{"a":[{"a":1}]}]');
  });

  it('keeps a `__proto__` key of a parsed body as a key: two such payloads are told apart', () => {
    // JSON.parse (express.json()) makes `__proto__` an own property, not the prototype.
    const one = JSON.parse('{"__proto__":{"amount":1},"b":1}') as unknown;
    const two = JSON.parse('{"__proto__":{"amount":2},"b":1}') as unknown;
    expect(canonicalJson(one)).toBe('{"__proto__":{"amount":1},"b":1}');
    expect(requestFingerprint({ method: 'POST', url: '/', body: one })).not.toBe(
      requestFingerprint({ method: 'POST', url: '/', body: two }),
    );
    expect(canonicalJson(JSON.parse('{"__proto__":1}'))).not.toBe(canonicalJson({}));
  });

  it('canonicalJson writes what JSON.stringify writes, keys sorted', () => {
    class Point {
      constructor(
        readonly y: number,
        readonly x: { b: number; a: number },
      ) {}
    }
    const value = {
      z: [undefined, () => 1, Symbol('s'), Number.NaN, -0, 1e21, new Number(3), new String('s'), null],
      skipped: undefined,
      f: () => 1,
      point: new Point(1, { b: 2, a: 1 }),
      at: { toJSON: (key: string) => `key ${key}` },
      '\ud800': '\udfff',
    };
    // Sorted by UTF-16 code units, as Array.prototype.sort does: a lone surrogate sorts after `z`.
    expect(canonicalJson(value)).toBe(
      '{"at":"key at","point":{"y":1,"x":{"a":1,"b":2}},' +
        '"z":[null,null,null,null,0,1e+21,3,"s",null],"\\ud800":"\\udfff"}',
    );
    // Array-index keys first, as in the first version's output (fingerprints in a store outlive a deploy).
    expect(canonicalJson({ b: 1, '10': 1, a: 1, '2': 1, '01': 1 })).toBe('{"2":1,"10":1,"01":1,"a":1,"b":1}');
    expect(canonicalJson(() => 1)).toBe('undefined');
    expect(() => canonicalJson({ a: 1n })).toThrow(TypeError);
  });

  it('canonicalJson unwraps boxed primitives by their internal slot, as JSON.stringify does', () => {
    const values: unknown[] = [
      [new Number(1), new String('s'), new Boolean(false), Object(1n) as unknown],
      { date: new Date(0), fake: Object.create(Number.prototype) },
    ];
    // JSON.stringify throws for the boxed BigInt as for a BigInt; compare without it.
    expect(() => canonicalJson(values)).toThrow(TypeError);
    const writable = [values[0] as unknown[], values[1]].map((v) => (Array.isArray(v) ? v.slice(0, 3) : v));
    expect(canonicalJson(writable)).toBe(JSON.stringify(writable));
  });

  it('canonicalJson throws a TypeError for a cycle, as JSON.stringify does', () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = { cycle };
    expect(() => canonicalJson(cycle)).toThrow(TypeError);
  });

  it('property: canonicalJson is JSON.stringify of a key-sorted copy; the hash is that of the whole text', () => {
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: 'binary' }), (body) => {
        expect(canonicalJson(body)).toBe(JSON.stringify(sortedCopy(body)));
        // A string body is raw text, not JSON: in an array it is JSON.
        expect(requestFingerprint({ method: 'POST', url: '/x', body: [body] })).toBe(
          referenceFingerprint('/x', [body]),
        );
      }),
    );
  });

  it('hashes a large body in pieces exactly as its whole text (surrogate pairs never split)', () => {
    // About 900 KB of text: dozens of 16 KB pieces, each ending somewhere in a run of astral characters.
    const body = Array.from({ length: 20_000 }, (_, i) => ({
      [`k\u{1F600}${i}`]: `\u{1F680}${'é'.repeat(i % 7)}`,
      n: i,
    }));
    expect(requestFingerprint({ method: 'POST', url: '/x', body })).toBe(referenceFingerprint('/x', body));
  });

  it('writes an array of primitives with one JSON.stringify call, not one per element', () => {
    // A 1 MiB body of `0,` is half a million elements: written one by one it held the event loop for
    // about half a second per idempotent request (JSON.stringify: a few milliseconds).
    const body = JSON.parse(`[${'0,'.repeat(500_000)}"x",null,true]`) as unknown[];
    const expected = referenceFingerprint('/x', body);
    const stringify = vi.spyOn(JSON, 'stringify');
    expect(requestFingerprint({ method: 'POST', url: '/x', body })).toBe(expected);
    expect(stringify.mock.calls.length).toBeLessThan(5);
    stringify.mockClear();
    expect(requestFingerprint({ method: 'POST', url: '/x', body: { list: body, n: 1 } })).toBe(
      referenceFingerprint('/x', { list: body, n: 1 }),
    );
    expect(stringify.mock.calls.length).toBeLessThan(10);
  });

  it('hashes an ArrayBuffer byte for byte, as the Buffer of the same bytes (as JSON every one was `{}`)', () => {
    const input = { method: 'POST', url: '/upload' };
    const bytes = (text: string) => new TextEncoder().encode(text).buffer as ArrayBuffer;
    expect(requestFingerprint({ ...input, body: bytes('one') })).not.toBe(
      requestFingerprint({ ...input, body: bytes('two') }),
    );
    expect(requestFingerprint({ ...input, body: bytes('one') })).toBe(
      requestFingerprint({ ...input, body: Buffer.from('one') }),
    );
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
