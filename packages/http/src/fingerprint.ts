import { createHash } from 'node:crypto';
import { isBigIntObject, isBooleanObject, isNumberObject, isStringObject } from 'node:util/types';

/** What a request fingerprint is made of. */
export interface FingerprintInput {
  /** The request method, e.g. `POST`: the same key and body sent with another method is another payload. */
  readonly method: string;
  /** Path and query string: the same key sent to another endpoint is another payload. */
  readonly url: string;
  /**
   * The parsed body (any JSON value), or the raw body as a string or bytes (a Uint8Array or an
   * ArrayBuffer), or `undefined`.
   */
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

/**
 * A value as JSON.stringify sees it: after `toJSON(key)`, primitive wrappers unwrapped. `key` is the member
 * name, or an array index, made a string only for a `toJSON` to read.
 */
function jsonValueOf(value: unknown, key: string | number): unknown {
  let v = value;
  if ((typeof v === 'object' && v !== null) || typeof v === 'bigint') {
    const toJSON = (v as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') v = toJSON.call(v, String(key));
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
  // What a body parser makes, asked first: each slot check below is a call into C++.
  const proto = Object.getPrototypeOf(v);
  if (proto === Object.prototype || proto === null) return v;
  // By internal slot, as JSON.stringify tells them: an object that only inherits from Number.prototype is
  // an object. ToNumber/ToString for the first two, the slot's own value for the others (ES2024 25.5.2.2).
  if (isNumberObject(v)) return Number(v);
  if (isStringObject(v)) return String(v);
  if (isBooleanObject(v)) return Boolean.prototype.valueOf.call(v);
  if (isBigIntObject(v)) return BigInt.prototype.valueOf.call(v);
  return v;
}

/** A primitive as JSON.stringify writes it (it throws for a BigInt); unwritable ones are `null` here. */
function primitiveJson(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      // Number::toString, as JSON.stringify writes a finite number (-0 included: "0").
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return JSON.stringify(value);
    default:
      return 'null';
  }
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

/**
 * Where canonical JSON goes, in pieces of about 16 KB. Appending every token to one string made a rope
 * that lived until the end, and a large body's text then cost more in garbage collection than in writing
 * (two thirds of the time for a 1 MiB body of `[]`); a piece handed on is garbage at once. Tokens are
 * never split, so a surrogate pair never straddles two pieces (hashing them apart would change the bytes).
 */
class JsonSink {
  #text = '';
  readonly #take: (piece: string) => void;

  constructor(take: (piece: string) => void) {
    this.#take = take;
  }

  add(token: string): void {
    this.#text += token;
    if (this.#text.length >= 16_384) {
      this.#take(this.#text);
      this.#text = '';
    }
  }

  end(): void {
    if (this.#text !== '') this.#take(this.#text);
    this.#text = '';
  }
}

/** Nesting written by recursion; deeper containers go to {@link writeDeep}, which has a stack of its own. */
const RECURSION_DEPTH = 512;

/**
 * Whether JSON.stringify writes `array` exactly as {@link canonicalJson} would: every element is a
 * primitive (nothing to sort, no `toJSON` to call) and the array has no `toJSON` of its own.
 */
function isFlatArray(array: readonly unknown[]): boolean {
  if ((array as { toJSON?: unknown }).toJSON !== undefined) return false;
  for (let i = 0; i < array.length; i += 1) {
    const element = array[i];
    if (typeof element === 'object' && element !== null) return false;
  }
  return true;
}

/** A writable value (after {@link jsonValueOf}) as canonical JSON; by recursion while `depth` allows. */
function write(value: unknown, depth: number, sink: JsonSink): void {
  if (typeof value !== 'object' || value === null) {
    sink.add(primitiveJson(value));
  } else if (depth >= RECURSION_DEPTH) {
    // A cycle nests without end, so it gets here, and writeDeep's stack tells it.
    writeDeep(value, sink);
  } else if (Array.isArray(value)) {
    // One native call for an array of numbers or strings, the cheapest body to send and the dearest to
    // write one element at a time (a 1 MiB `[0,0,...]` took 185 ms that way; JSON.stringify: 3 ms).
    if (isFlatArray(value)) {
      sink.add(value.length === 0 ? '[]' : JSON.stringify(value));
      return;
    }
    sink.add('[');
    for (let i = 0; i < value.length; i += 1) {
      if (i > 0) sink.add(',');
      const member = jsonValueOf(value[i], i);
      write(isUnwritable(member) ? null : member, depth + 1, sink);
    }
    sink.add(']');
  } else {
    let names = Object.keys(value);
    if (names.length === 0) {
      sink.add('{}');
      return;
    }
    if (isPlainObject(value)) names = sortedNames(names);
    sink.add('{');
    let wrote = false;
    for (let i = 0; i < names.length; i += 1) {
      const name = names[i] as string;
      const member = jsonValueOf((value as Record<string, unknown>)[name], name);
      if (isUnwritable(member)) continue;
      sink.add(`${wrote ? ',' : ''}${JSON.stringify(name)}:`);
      wrote = true;
      write(member, depth + 1, sink);
    }
    sink.add('}');
  }
}

/** A container being written by {@link writeDeep}; its members are read one at a time, as JSON.stringify does. */
interface Frame {
  readonly container: object;
  /** An object's member names in canonical order; `undefined` for an array. */
  readonly names: readonly string[] | undefined;
  readonly length: number;
  index: number;
  /** Whether an object member was written yet: unwritable members are skipped, commas go between. */
  wrote: boolean;
}

/** No value is waiting to be written. */
const NOTHING = Symbol('nothing');

/**
 * {@link write} below {@link RECURSION_DEPTH}: with a stack of its own (a frame per open container), so
 * a body thousands of levels deep (6 KB of `[`, which JSON parsers take) cannot overflow the call stack,
 * and the set of open containers, to throw for a cycle as JSON.stringify does.
 */
function writeDeep(value: object, sink: JsonSink): void {
  let next: unknown = value;
  const open = new Set<object>();
  const frames: Frame[] = [];
  for (;;) {
    if (next !== NOTHING) {
      const v = next;
      next = NOTHING;
      if (typeof v !== 'object' || v === null) sink.add(primitiveJson(v));
      else {
        if (open.has(v)) throw new TypeError('Converting circular structure to JSON');
        open.add(v);
        if (Array.isArray(v)) {
          sink.add('[');
          frames.push({ container: v, names: undefined, length: v.length, index: 0, wrote: false });
        } else {
          let names = Object.keys(v);
          if (isPlainObject(v)) names = sortedNames(names);
          sink.add('{');
          frames.push({ container: v, names, length: names.length, index: 0, wrote: false });
        }
      }
    }
    const frame = frames[frames.length - 1];
    if (frame === undefined) return;
    const { container, names } = frame;
    if (names === undefined) {
      if (frame.index < frame.length) {
        const i = frame.index;
        frame.index = i + 1;
        if (i > 0) sink.add(',');
        const member = jsonValueOf((container as unknown[])[i], i);
        next = isUnwritable(member) ? null : member;
        continue;
      }
      sink.add(']');
    } else {
      while (frame.index < frame.length) {
        const name = names[frame.index] as string;
        frame.index += 1;
        const member = jsonValueOf((container as Record<string, unknown>)[name], name);
        if (isUnwritable(member)) continue;
        sink.add(`${frame.wrote ? ',' : ''}${JSON.stringify(name)}:`);
        frame.wrote = true;
        next = member;
        break;
      }
      if (next !== NOTHING) continue;
      sink.add('}');
    }
    open.delete(container);
    frames.pop();
  }
}

/** {@link canonicalJson} of `value`, into `sink`. */
function writeCanonical(value: unknown, sink: JsonSink): void {
  const top = jsonValueOf(value, '');
  if (isUnwritable(top)) sink.add('undefined');
  else write(top, 0, sink);
  sink.end();
}

/**
 * JSON with object keys sorted at every depth, so `{"a":1,"b":2}` and `{"b":2,"a":1}` are the same
 * payload. Array order is kept: it is meaningful. Otherwise what JSON.stringify writes (`toJSON`, skipped
 * members, `null` for NaN; a TypeError for a BigInt or a cycle).
 *
 * Not JSON.stringify with a replacer: that recursed once per level, and a request body a few thousand
 * levels deep (6 KB of `[`, which JSON parsers take) overflowed the call stack, a 500 on every idempotent
 * route. Recursion goes 512 levels deep, then a writer with a stack of its own takes over. Members are
 * written by reading them, never copied into a new object, where a parsed `__proto__` key would have set
 * the copy's prototype and vanished from the payload. An array of primitives is written by JSON.stringify
 * itself, which reads its elements a second time (only a getter on an element could tell).
 */
export function canonicalJson(value: unknown): string {
  const pieces: string[] = [];
  writeCanonical(
    value,
    new JsonSink((piece) => {
      pieces.push(piece);
    }),
  );
  return pieces.length === 1 ? (pieces[0] as string) : pieces.join('');
}

/**
 * A SHA-256 fingerprint (base64url) of a request: method, URL and body, independent of JSON key order.
 * Raw bodies (a string, a Buffer or another Uint8Array, an ArrayBuffer) are hashed byte for byte, never
 * written as JSON; a Buffer and an ArrayBuffer of the same bytes are the same payload. A string is hashed
 * as UTF-8: a text parser that decoded invalid bytes has already made them U+FFFD, so send bytes
 * (`express.raw()`, a Buffer parser) where they matter.
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
  // As JSON it was `{}`, whatever its bytes: two payloads read as one.
  else if (body instanceof ArrayBuffer) hash.update('b').update(new Uint8Array(body));
  else {
    hash.update('j');
    // Hashed piece by piece: the text of a large body is never held whole.
    writeCanonical(
      body,
      new JsonSink((piece) => {
        hash.update(piece);
      }),
    );
  }
  return hash.digest('base64url');
}
