import { createHash } from 'node:crypto';
import { isBigIntObject, isBooleanObject, isNumberObject, isStringObject } from 'node:util/types';

/** What a request fingerprint is made of. */
export interface FingerprintInput {
  /** The request method, e.g. `POST`: the same key and body sent with another method is another payload. */
  readonly method: string;
  /** Path and query string: the same key sent to another endpoint is another payload. */
  readonly url: string;
  /** The parsed body (any JSON value), or the raw body as a string or bytes, or `undefined`. */
  readonly body?: unknown;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** What JSON.stringify skips in an object and writes as `null` in an array. */
function isUnwritable(value: unknown): boolean {
  return value === undefined || typeof value === 'function' || typeof value === 'symbol';
}

/** A value as JSON.stringify sees it: after `toJSON(key)`, primitive wrappers unwrapped. */
function jsonValueOf(value: unknown, key: string): unknown {
  let v = value;
  if ((typeof v === 'object' && v !== null) || typeof v === 'bigint') {
    const toJSON = (v as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') v = toJSON.call(v, key);
  }
  // By internal slot, as JSON.stringify tells them: an object that only inherits from Number.prototype is
  // an object. ToNumber/ToString for the first two, the slot's own value for the others (ES2024 25.5.2.2).
  if (typeof v !== 'object' || v === null) return v;
  if (isNumberObject(v)) return Number(v);
  if (isStringObject(v)) return String(v);
  if (isBooleanObject(v)) return Boolean.prototype.valueOf.call(v);
  if (isBigIntObject(v)) return BigInt.prototype.valueOf.call(v);
  return v;
}

/** Whether `name` is an array index ("0" to "4294967294"): JavaScript orders such keys first. */
function isArrayIndex(name: string): boolean {
  const index = Number(name) >>> 0;
  return index !== 4_294_967_295 && String(index) === name;
}

/**
 * The canonical member order: the order of a plain object whose keys were inserted sorted, which is what
 * the first version wrote (and what stores hold fingerprints of): array indices first, ascending (where
 * `Object.keys` already has them), then the other names sorted.
 */
function sortedNames(names: string[]): string[] {
  let indices = 0;
  while (indices < names.length && isArrayIndex(names[indices] as string)) indices += 1;
  if (indices === 0) return names.sort();
  return names.slice(0, indices).concat(names.slice(indices).sort());
}

/** Still to write: a value, literal text, or the end of a container (which leaves the cycle check). */
type Pending = { readonly value: unknown } | string | { readonly close: object; readonly text: string };

/**
 * JSON with object keys sorted at every depth, so `{"a":1,"b":2}` and `{"b":2,"a":1}` are the same
 * payload. Array order is kept: it is meaningful. Otherwise what JSON.stringify writes (`toJSON`, skipped
 * members, `null` for NaN; a TypeError for a BigInt or a cycle).
 *
 * Written with a stack of its own, not JSON.stringify and a replacer: that recursed once per level, and a
 * request body a few thousand levels deep (6 KB of `[`, which JSON parsers take) overflowed the call
 * stack, a 500 on every idempotent route. Members are written by reading them, never copied into a new
 * object, where a parsed `__proto__` key would have set the copy's prototype and vanished from the payload.
 * One difference from JSON.stringify is left, visible only to a `toJSON` with side effects: the members
 * of a container are read (their `toJSON` called) when it is opened, not one by one as they are written.
 */
export function canonicalJson(value: unknown): string {
  const top = jsonValueOf(value, '');
  if (isUnwritable(top)) return 'undefined';
  let out = '';
  const open = new Set<object>();
  const stack: Pending[] = [{ value: top }];
  while (stack.length > 0) {
    const pending = stack.pop() as Pending;
    if (typeof pending === 'string') {
      out += pending;
      continue;
    }
    if ('close' in pending) {
      open.delete(pending.close);
      out += pending.text;
      continue;
    }
    const v = pending.value;
    if (typeof v !== 'object' || v === null) {
      // Primitives as JSON.stringify writes them (it throws for a BigInt); unwritable ones in an array.
      out += isUnwritable(v) ? 'null' : (JSON.stringify(v) as string);
      continue;
    }
    if (open.has(v)) throw new TypeError('Converting circular structure to JSON');
    open.add(v);
    if (Array.isArray(v)) {
      out += '[';
      stack.push({ close: v, text: ']' });
      for (let i = v.length - 1; i >= 0; i -= 1) {
        stack.push({ value: jsonValueOf(v[i], String(i)) });
        if (i > 0) stack.push(',');
      }
      continue;
    }
    let names = Object.keys(v);
    if (isPlainObject(v)) names = sortedNames(names);
    const members: Array<readonly [string, unknown]> = [];
    for (const name of names) {
      const member = jsonValueOf((v as Record<string, unknown>)[name], name);
      if (!isUnwritable(member)) members.push([name, member]);
    }
    out += '{';
    stack.push({ close: v, text: '}' });
    for (let i = members.length - 1; i >= 0; i -= 1) {
      const [name, member] = members[i] as readonly [string, unknown];
      stack.push({ value: member }, `${i > 0 ? ',' : ''}${JSON.stringify(name)}:`);
    }
  }
  return out;
}

/**
 * A SHA-256 fingerprint (base64url) of a request: method, URL and body, independent of JSON key order.
 * Raw bodies (string, Buffer, Uint8Array) are hashed byte for byte.
 *
 * @example
 * requestFingerprint({ method: 'POST', url: '/checkout', body: { a: 1, b: 2 } }) ===
 *   requestFingerprint({ method: 'POST', url: '/checkout', body: { b: 2, a: 1 } }) // true
 */
export function requestFingerprint(input: FingerprintInput): string {
  const hash = createHash('sha256');
  hash.update(input.method.toUpperCase()).update('\n').update(input.url).update('\n');
  const { body } = input;
  if (body === undefined) hash.update('u');
  else if (typeof body === 'string') hash.update('s').update(body);
  else if (body instanceof Uint8Array) hash.update('b').update(body);
  else hash.update('j').update(canonicalJson(body));
  return hash.digest('base64url');
}
