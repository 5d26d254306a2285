/**
 * Property-based fuzzing of both adapters through their public surface. Each adapter's `fuzz.test.ts`
 * builds the same app (`fuzzOptions`; Express on a real socket, Fastify through inject() and on a real
 * socket, both sockets reached by `socketClient`): a checkout route guarded like the shop's (a rate
 * limit of several policies keyed by user, API key, bearer token and address; idempotency, coalescing or
 * 409; load shedding behind a breaker), then `runScenario` sends it generated hostile requests and checks every answer
 * against what the READMEs document for that input. `fuzz-drift.test.ts` sends the same scenarios to
 * Express and Fastify and compares the answers.
 *
 * Runs are reproducible: a fixed seed by default. `FLOODGATE_FUZZ_SEED=random` (or a number) and
 * `FLOODGATE_FUZZ_RUNS=<n>` explore further, e.g.
 * `FLOODGATE_FUZZ_SEED=random FLOODGATE_FUZZ_RUNS=2000 npx vitest run packages/express/test/fuzz.test.ts`;
 * fast-check prints the seed and path of a failure to replay it.
 */
import { request as httpRequest } from 'node:http';
import {
  byApiKey,
  byUser,
  type IdempotencyOptions,
  type IdempotencyStore,
  type LoadShedderOptions,
  MemoryIdempotencyStore,
  type RateLimitOptions,
} from '@floodgate/http';
import fc from 'fast-check';
import { expect } from 'vitest';
import type { CaseRequest } from './conformance.js';

// ---------------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------------

/** How a JSON body parser (express.json(), Fastify's) takes a body. */
export type BodyVerdict =
  /** An object or array: parsed by both. */
  | 'json'
  /** Not JSON at all: 400 from both parsers. */
  | 'invalid'
  /** Over the app's body limit: 413 from both. */
  | 'too-large'
  /**
   * The parsers differ by design: Express's is strict (objects and arrays only; an empty body reads as
   * `{}`), Fastify's takes any JSON value but refuses an empty body and `__proto__`/`constructor` keys
   * (its prototype-poisoning guard). 400 from one, parsed by the other.
   */
  | 'framework';

export interface FuzzBody {
  readonly text: string;
  /** `latin1` sends `text` byte for byte (invalid UTF-8). */
  readonly encoding: 'utf8' | 'latin1';
  readonly verdict: BodyVerdict;
}

/** One request as it goes on the wire. */
export interface FuzzRequest {
  /** Upper case, as Node's parser requires (inject upper-cases, a socket client does not). */
  readonly method: string;
  /** The request target: path and query string, ASCII only. */
  readonly path: string;
  /**
   * Lower-case names, in order; a name repeats for a field sent several times (Node joins the values
   * with `, `, or keeps the first for `authorization`; light-my-request's inject does the same).
   * Values carry no leading or trailing SP/HTAB: Node strips them on a socket, inject does not.
   */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** Sent as `application/json`. */
  readonly body?: FuzzBody | undefined;
  /**
   * Why Express and Fastify route this request differently by design (a path, OPTIONS), or undefined.
   * The drift property sends only requests without one, with no `framework` body, and whose body no
   * 404 handler reads (see {@link portableRequest}).
   */
  readonly routing?: string | undefined;
}

/** The largest body both apps parse (express.json({ limit }), Fastify's `bodyLimit`). */
export const BODY_LIMIT = 65_536;

/** Bytes a body field of `text` takes (a `.length` that is not one for non-ASCII UTF-8). */
export function bodyBytes(body: FuzzBody): Buffer {
  return Buffer.from(body.text, body.encoding);
}

/** ASCII only, so a counterexample shows a no-break space or a latin1 byte for what it is. */
const escaped = (text: string) =>
  JSON.stringify(text).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

// fast-check prints counterexamples; a 60 KB body prints as its shape instead.
function describedBody(text: string, verdict: BodyVerdict, encoding: 'utf8' | 'latin1' = 'utf8'): FuzzBody {
  const body = { text, encoding, verdict };
  const shown =
    text.length <= 160
      ? escaped(text)
      : `${escaped(text.slice(0, 40))}...${escaped(text.slice(-20))} (${text.length} chars)`;
  return Object.assign(body, { [fc.toStringMethod]: () => `body(${verdict}, ${encoding}: ${shown})` });
}

const ows = /^[ \t]+|[ \t]+$/g;
/** A field value as Node hands it to the app: no leading or trailing SP/HTAB. */
const wire = (value: string) => value.replace(ows, '');

/** Characters a socket carries in a field value: HTAB, visible ASCII, SP and obs-text (latin1). */
const fieldChar = fc
  .oneof(
    { weight: 8, arbitrary: fc.integer({ min: 0x21, max: 0x7e }) },
    { weight: 1, arbitrary: fc.constantFrom(0x20, 0x09) },
    { weight: 2, arbitrary: fc.integer({ min: 0x80, max: 0xff }) },
  )
  .map((code) => String.fromCharCode(code));
const fieldValue = (maxLength: number) => fc.string({ unit: fieldChar, maxLength }).map(wire);
const tokenChar = fc.constantFrom(
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~:/".split(''),
);
const token = (minLength: number, maxLength: number) => fc.string({ unit: tokenChar, minLength, maxLength });
/** Characters of an RFC 8941 sf-string, escapes included. */
const sfStringContent = (maxLength: number) =>
  fc
    .array(
      fc.oneof(
        { weight: 10, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) },
        { weight: 1, arbitrary: fc.constantFrom('\\"', '\\\\', '\\n', '\\', '"', '\u00e9', '\t') },
      ),
      { maxLength },
    )
    .map((parts) => parts.join(''));

/** A few keys many requests share, so replays, 409s and 422s happen: `"order-1"` and `order-1` are one key. */
const KEY_POOL = ['"order-1"', 'order-1', '"order-2"', 'order-2', '"a\\\\b"', '"a\\"b"'];

/** Idempotency-Key field values: the pool, and every shape a hostile client could send. */
export const idempotencyKeyValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 30, arbitrary: fc.constantFrom(...KEY_POOL) },
  { weight: 2, arbitrary: token(1, 40) },
  { weight: 2, arbitrary: sfStringContent(40).map((s) => `"${s}"`) },
  { weight: 2, arbitrary: fieldValue(60) },
  { weight: 1, arbitrary: fc.constantFrom('', '""', '"', '"\\"', '\\', '"a"b"', '"a" ', 'a b', '"a", "b"') },
  // Lists, inner lists, parameters: valid Structured Fields, but not a single string.
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom(...KEY_POOL), token(1, 8), fc.constantFrom(...KEY_POOL))
      .chain(([a, b, c]) =>
        fc.constantFrom(
          `${a}, ${c}`,
          `(${a} ${c})`,
          `${a};${b.replace(/[^a-z]/g, 'p') || 'p'}=1`,
          `${a};a;b=?0`,
          `(${a});q=${c}`,
          `${a},`,
          `@${b}`,
          `:${Buffer.from(b).toString('base64')}:`,
        ),
      ),
  },
  // Around the 255-character limit, and far beyond it (quoted, bare, escaped).
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.integer({ min: 250, max: 3000 }), fc.constantFrom('bare', 'quoted', 'escaped'))
      .map(([n, shape]) =>
        shape === 'bare' ? 'k'.repeat(n) : shape === 'quoted' ? `"${'k'.repeat(n)}"` : `"${'\\"'.repeat(n)}"`,
      ),
  },
  // obs-text (latin1 bytes) and non-breaking spaces around an otherwise valid key.
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom(...KEY_POOL), fc.constantFrom('\u00a0', '\u0085', '\u00e9', '\u00ff'))
      .chain(([key, extra]) => fc.constantFrom(`${key}${extra}`, `${extra}${key}`, `"${extra}"`)),
  },
);

const octet = fc.integer({ min: 0, max: 255 });
const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
const hextet = fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16));
const ipv6 = fc.oneof(
  fc.array(hextet, { minLength: 8, maxLength: 8 }).map((g) => g.join(':')),
  fc.tuple(hextet, hextet).map(([a, b]) => `2001:db8:${a}::${b}`),
  ipv4.map((v4) => `::ffff:${v4}`),
  fc.constantFrom('::1', '::', 'fe80::1%eth0', '::ffff:zzz', '2001:db8::1'),
);
const address = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('198.51.100.1', '198.51.100.2', '2001:db8:1:100::1') },
  { weight: 2, arbitrary: ipv4 },
  { weight: 2, arbitrary: ipv6 },
);

/** X-Forwarded-For values: addresses, hop lists, and what no proxy sends. */
const forwardedForValue = fc.oneof(
  { weight: 4, arbitrary: address },
  { weight: 2, arbitrary: fc.array(address, { minLength: 2, maxLength: 60 }).map((hops) => hops.join(', ')) },
  { weight: 2, arbitrary: fieldValue(200) },
  { weight: 1, arbitrary: fc.constantFrom('', ' , , ', 'unknown', ',', '[2001:db8::1]:443', '1.2.3.4:80') },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 4000 }).map((n) => 'x'.repeat(n)) },
);

/** Forwarded (RFC 7239): neither framework reads it; it must change nothing. */
const forwardedValue = fc.oneof(
  address.map((a) => (a.includes(':') ? `for="[${a}]"` : `for=${a}`)),
  fc.tuple(address, address).map(([a, b]) => `for=${a};proto=https, for="${b}"`),
  fieldValue(100),
);

/** Authorization: bearer tokens (a rate-limit key and the default idempotency scope), odd shapes, sizes. */
const authorizationValue = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('Bearer t1', 'Bearer t2', 'bearer t1', 'Basic dXNlcjpwYXNz') },
  { weight: 2, arbitrary: token(0, 40).map((t) => `Bearer ${t}`) },
  { weight: 2, arbitrary: fieldValue(80) },
  { weight: 1, arbitrary: fc.constantFrom('', 'Bearer', 'Bearer ', 'Bearer  \t x', 'Negotiate', 'bearer:x') },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 4000, max: 5000 })
      .chain((n) => fc.constantFrom(`Bearer ${'a'.repeat(n)}`, 'b'.repeat(n))),
  },
);

/** X-Api-Key: a rate-limit key (byApiKey), hashed; longer than 4096 falls back to the address. */
const apiKeyValue = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('k1', 'k2') },
  { weight: 2, arbitrary: fieldValue(80) },
  { weight: 1, arbitrary: fc.integer({ min: 4090, max: 4200 }).map((n) => 'k'.repeat(n)) },
);

/** X-User: the shop's student id, the per-user key and the idempotency scope. */
const userValue = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('alice', 'bob') },
  { weight: 1, arbitrary: fieldValue(40) },
);

/** Several values of one field: none most often, one, or the field repeated. */
function repeated(value: fc.Arbitrary<string>, none: number, one: number, several: number) {
  return fc.oneof(
    { weight: none, arbitrary: fc.constant<string[]>([]) },
    { weight: one, arbitrary: value.map((v) => [v]) },
    { weight: several, arbitrary: fc.array(value, { minLength: 2, maxLength: 3 }) },
  );
}

const headerFields = fc.record({
  'idempotency-key': repeated(idempotencyKeyValue, 1, 10, 1),
  'x-user': repeated(userValue, 3, 6, 1),
  'x-api-key': repeated(apiKeyValue, 6, 3, 1),
  authorization: repeated(authorizationValue, 5, 4, 1),
  'x-forwarded-for': repeated(forwardedForValue, 3, 5, 1),
  forwarded: repeated(forwardedValue, 8, 1, 1),
  /** The handler answers 402 (a declined card: stored and replayed like a 201). */
  'x-outcome': repeated(fc.constant('402'), 8, 1, 0),
});

/** Node answers 431 itself past 16 KB of request line and fields; stay under it (the README says so). */
const MAX_HEAD_BYTES = 14_000;

// No `'`, and no empty query or `//` path above: inject would rewrite them (see sentAsIs).
const queryChar = fc.constantFrom(
  ...'abcxyzABC0189-._~!$&()*+,;=:@/?%[]'.split(''),
  '%20',
  '%00',
  '%E2%82%AC',
  '%ZZ',
  '%C3',
);
const query = (maxLength: number) => fc.array(queryChar, { maxLength }).map((parts) => parts.join(''));

const portablePath = fc.oneof(
  { weight: 12, arbitrary: fc.constant('/checkout') },
  { weight: 3, arbitrary: fc.constantFrom('/checkout?ref=1', '/checkout?ref=2') },
  { weight: 2, arbitrary: query(40).map((q) => `/checkout?${q}`) },
  { weight: 1, arbitrary: fc.integer({ min: 500, max: 2000 }).map((n) => `/checkout?pad=${'p'.repeat(n)}`) },
  // Not the route on either framework.
  {
    weight: 1,
    arbitrary: fc.constantFrom('/', '/checkout/x', '/checkoutx', '/orders/1', '/checkout;a=1'),
  },
);

/** Paths the two routers take differently: Express matches case-insensitively and ignores a trailing
 * slash; Fastify decodes percent-encoded characters before matching. */
const routingPath = fc.constantFrom(
  { path: '/CHECKOUT', why: 'Express routes case-insensitively, Fastify does not' },
  { path: '/Checkout?x=1', why: 'Express routes case-insensitively, Fastify does not' },
  { path: '/checkout/', why: 'Express ignores a trailing slash, Fastify does not' },
  { path: '/%63heckout', why: 'Fastify decodes the path before routing, Express does not' },
  { path: '/check%6Fut?a=%', why: 'Fastify decodes the path before routing, Express does not' },
);

const portableMethod = fc.oneof(
  { weight: 12, arbitrary: fc.constant('POST') },
  { weight: 2, arbitrary: fc.constant('PATCH') },
  // Not the route. (Not QUERY: Fastify refuses it without a body with 400, Express answers 404.)
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'GET',
      'HEAD',
      'PUT',
      'DELETE',
      'PURGE',
      'TRACE',
      'PROPFIND',
      'SEARCH',
      'LOCK',
    ),
  },
);

/** A JSON value whose text the test knows, for objects and arrays. */
const jsonContainer = fc.oneof(
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 }),
  fc.array(fc.jsonValue({ maxDepth: 3 }), { maxLength: 5 }),
);

const BODY_POOL = [
  '{"amount":1}',
  '{"amount":2}',
  '{"amount":1,"currency":"EUR"}',
  '{"currency":"EUR","amount":1}',
  '[1,2]',
  '{}',
];

/** A body nested `depth` levels deep: arrays, objects, or both in turn. */
function nested(depth: number, shape: 'array' | 'object' | 'mixed'): string {
  const open = shape === 'array' ? '[' : shape === 'object' ? '{"a":' : '[{"a":';
  const close = shape === 'array' ? ']' : shape === 'object' ? '}' : '}]';
  const inner = shape === 'array' ? '' : '1';
  return `${open.repeat(depth)}${inner}${close.repeat(depth)}`;
}

const portableBody: fc.Arbitrary<FuzzBody | undefined> = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 10, arbitrary: fc.constantFrom(...BODY_POOL).map((text) => describedBody(text, 'json')) },
  {
    weight: 3,
    arbitrary: jsonContainer
      .map((value) => JSON.stringify(value))
      .filter((text) => verdictOf(text) === 'json')
      .map((text) => describedBody(text, 'json')),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.integer({ min: 1, max: 8000 }),
        fc.constantFrom('array', 'object', 'mixed') as fc.Arbitrary<'array' | 'object' | 'mixed'>,
      )
      .map(([depth, shape]) => {
        // Both parsers take 64 KB: keep the deepest objects under it.
        const levels = shape === 'array' ? depth : Math.min(depth, shape === 'object' ? 8000 : 5000);
        return describedBody(nested(levels, shape), 'json');
      }),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 1000, max: BODY_LIMIT - 100 })
      .map((n) => describedBody(`{"amount":1,"note":"${'n'.repeat(n)}"}`, 'json')),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: BODY_LIMIT + 1, max: BODY_LIMIT + 10_000 })
      .map((n) => describedBody(`{"note":"${'n'.repeat(n)}"}`, 'too-large')),
  },
  {
    weight: 2,
    arbitrary: fc
      .oneof(
        fc.constantFrom('{"amount":1', '{amount:1}', "{'a':1}", '[1,]', 'NaN', '   ', '{"a":1}}', '\u0000{}'),
        fc.string({ maxLength: 30 }),
      )
      // Scalars and the empty body are the parsers' difference (frameworkBody), not portable.
      .filter((text) => verdictOf(text) !== 'framework')
      .map((text) => describedBody(text, verdictOf(text))),
  },
  // Invalid UTF-8 inside a JSON string: both parsers read it as U+FFFD.
  {
    weight: 1,
    arbitrary: fc
      .array(fc.integer({ min: 0x80, max: 0xff }), { minLength: 1, maxLength: 8 })
      .map((bytes) => describedBody(`{"a":"${String.fromCharCode(...bytes)}"}`, 'json', 'latin1')),
  },
);

/** Bodies the two parsers take differently by design (see BodyVerdict 'framework'). */
const frameworkBody: fc.Arbitrary<FuzzBody> = fc.oneof(
  fc.constantFrom('', 'null', '1', '"x"', 'true').map((text) => describedBody(text, 'framework')),
  fc
    .tuple(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom('__proto__', 'constructor'))
    .map(([value, name]) =>
      describedBody(
        name === '__proto__'
          ? `{"__proto__":${JSON.stringify(value) ?? 'null'},"amount":1}`
          : `{"constructor":{"prototype":${JSON.stringify(value) ?? 'null'}},"amount":1}`,
        'framework',
      ),
    ),
);

/** What a strict parser makes of `text`: JSON.parse decides, as in both frameworks. */
function verdictOf(text: string): BodyVerdict {
  if (text === '') return 'framework';
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === 'object' && value !== null && !/"(__proto__|constructor)"\s*:/.test(text))
      return 'json';
    return 'framework';
  } catch {
    return 'invalid';
  }
}

interface RequestShape {
  readonly method: fc.Arbitrary<string>;
  readonly path: fc.Arbitrary<{ path: string; why?: string | undefined }>;
  readonly body: fc.Arbitrary<FuzzBody | undefined>;
}

function requestOf(shape: RequestShape, portable: boolean): fc.Arbitrary<FuzzRequest> {
  return fc
    .record({ method: shape.method, path: shape.path, fields: headerFields, body: shape.body })
    .map(({ method, path, fields, body }): FuzzRequest => {
      const headers: Array<readonly [string, string]> = [];
      for (const [name, values] of Object.entries(fields)) {
        for (const value of values) {
          // With trust proxy, the frameworks' forwarded-for parsers differ on whitespace other than SP:
          // Express's proxy-addr trims only SP around a member (`a\t, b` is `a\t`; a no-break space
          // stays), Fastify's trims HTAB and, around the whole field, U+00A0 (String.prototype.trim).
          // The client address, so its bucket, differs. Not floodgate's to decide: left out here.
          const sent = portable && name === 'x-forwarded-for' ? value.replace(/[\t\u00a0]/g, ' ') : value;
          headers.push([name, wire(sent)]);
        }
      }
      const request: FuzzRequest = {
        method,
        path: path.path,
        headers,
        body,
        routing:
          path.why ??
          (method === 'OPTIONS'
            ? 'Express answers OPTIONS itself (200 + Allow), Fastify has no such route'
            : undefined),
      };
      return Object.assign(request, { [fc.toStringMethod]: () => describeRequest(request) });
    })
    .filter((request) => headBytes(request) <= MAX_HEAD_BYTES && sentAsIs(request.path));
}

/**
 * Whether inject() delivers `target` as a socket does. light-my-request rebuilds the target through
 * WHATWG URL parsing (an empty `?` dropped, `'` in a query percent-encoded, dot segments resolved); Node's
 * parser, under Express or Fastify on a socket, hands it over as sent, and the fingerprint covers it.
 */
function sentAsIs(target: string): boolean {
  const url = new URL(target, 'http://localhost');
  return `${url.pathname}${url.search}` === target;
}

/**
 * Whether a 404 may come late: Fastify's 404 handler is a route, so it parses the body of a request it has
 * no route for first (400, 413 for a bad one, but GET and HEAD); Express answers 404 without reading it.
 */
function bodyBefore404(request: FuzzRequest): boolean {
  const { method, body } = request;
  return body !== undefined && body.verdict !== 'json' && method !== 'GET' && method !== 'HEAD';
}

/** How fast-check prints a request in a counterexample. */
export function describeRequest(request: FuzzRequest): string {
  const cut = (text: string) => (text.length > 120 ? `${text.slice(0, 100)}...(${text.length} chars)` : text);
  const headers = request.headers.map(([name, value]) => `${name}: ${escaped(cut(value))}`).join(', ');
  const body = request.body === undefined ? 'no body' : fc.stringify(request.body);
  const routing = request.routing === undefined ? '' : ` (${request.routing})`;
  return `{${request.method} ${escaped(cut(request.path))} [${headers}] ${body}${routing}}`;
}

function headBytes(request: FuzzRequest): number {
  let bytes = request.method.length + request.path.length + 100;
  for (const [name, value] of request.headers) bytes += name.length + value.length + 4;
  return bytes;
}

/** Requests both frameworks must answer alike. */
export const portableRequest: fc.Arbitrary<FuzzRequest> = requestOf(
  {
    method: portableMethod,
    path: portablePath.map((path) => ({ path })),
    body: portableBody,
  },
  true,
).filter(
  (request) => request.routing === undefined && (routeOf(request) === 'checkout' || !bodyBefore404(request)),
);

/** Every hostile request: the portable ones, plus routing and body parsing that differ by design. */
export const hostileRequest: fc.Arbitrary<FuzzRequest> = fc.oneof(
  {
    weight: 6,
    arbitrary: requestOf(
      { method: portableMethod, path: portablePath.map((path) => ({ path })), body: portableBody },
      false,
    ),
  },
  {
    weight: 1,
    arbitrary: requestOf(
      {
        method: fc.oneof(portableMethod, fc.constant('OPTIONS')),
        path: fc.oneof(
          portablePath.map((path) => ({ path })),
          routingPath,
        ),
        body: fc.oneof(portableBody, frameworkBody),
      },
      false,
    ),
  },
);

// ---------------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------------

export type Step =
  | { readonly kind: 'send'; readonly request: FuzzRequest }
  /** The request sent `back` requests ago, again, byte for byte (a client's retry). */
  | { readonly kind: 'retry'; readonly back: number }
  /** The request sent `back` requests ago with another JSON body: the same key for another payload. */
  | { readonly kind: 'reuse'; readonly back: number; readonly body: FuzzBody }
  /**
   * `first` is held in the handler while `others` are sent one after the other (each answered or waiting
   * in a coalesce before the next goes); `'duplicate'` is `first` again.
   */
  | {
      readonly kind: 'overlap';
      readonly first: FuzzRequest;
      readonly others: ReadonlyArray<FuzzRequest | 'duplicate'>;
    }
  /** The rate limit's clock moves on (buckets refill). */
  | { readonly kind: 'advance'; readonly ms: number }
  /** The breaker in front of the bank opens or closes: every checkout is shed while it is open. */
  | { readonly kind: 'breaker'; readonly open: boolean };

export interface Variant {
  readonly trustProxy: boolean;
  readonly inFlight: 'conflict' | 'coalesce';
  readonly maxConcurrent: 1 | 2;
  readonly partitionKey: boolean;
}

export interface Scenario {
  readonly variant: Variant;
  readonly steps: readonly Step[];
}

const variant: fc.Arbitrary<Variant> = fc.record({
  trustProxy: fc.boolean(),
  inFlight: fc.constantFrom('conflict', 'coalesce') as fc.Arbitrary<'conflict' | 'coalesce'>,
  maxConcurrent: fc.constantFrom(1, 2) as fc.Arbitrary<1 | 2>,
  partitionKey: fc.boolean(),
});

/** Bodies a `reuse` step sends: payloads that must all be told apart, whatever their key order. */
const REUSE_BODIES: readonly FuzzBody[] = [...BODY_POOL, '{"amount":3}'].map((text) =>
  describedBody(text, 'json'),
);

/** Payloads that differ only under `__proto__` (Express parses them, Fastify refuses them). */
const PROTO_BODIES: readonly FuzzBody[] = [
  '{"__proto__":{"amount":1},"amount":1}',
  '{"__proto__":{"amount":2},"amount":1}',
  '{"__proto__":1,"amount":1}',
].map((text) => describedBody(text, 'framework'));

function stepOf(request: fc.Arbitrary<FuzzRequest>, reuseBodies: readonly FuzzBody[]): fc.Arbitrary<Step> {
  return fc.oneof(
    { weight: 10, arbitrary: request.map((r): Step => ({ kind: 'send', request: r })) },
    { weight: 4, arbitrary: fc.nat({ max: 5 }).map((back): Step => ({ kind: 'retry', back })) },
    {
      weight: 2,
      arbitrary: fc
        .record({ back: fc.nat({ max: 5 }), body: fc.constantFrom(...reuseBodies) })
        .map(({ back, body }): Step => ({ kind: 'reuse', back, body })),
    },
    {
      weight: 2,
      arbitrary: fc
        .record({
          first: request,
          others: fc.array(
            fc.oneof(
              { weight: 3, arbitrary: fc.constant('duplicate' as const) },
              { weight: 2, arbitrary: request },
            ),
            { minLength: 1, maxLength: 3 },
          ),
        })
        .map((o): Step => ({ kind: 'overlap', ...o })),
    },
    { weight: 1, arbitrary: fc.constantFrom(1000, 10_000).map((ms): Step => ({ kind: 'advance', ms })) },
    { weight: 1, arbitrary: fc.boolean().map((open): Step => ({ kind: 'breaker', open })) },
  );
}

/** Scenarios of any hostile request, for one adapter. */
export const hostileScenario: fc.Arbitrary<Scenario> = fc.record({
  variant,
  steps: fc.array(stepOf(hostileRequest, [...REUSE_BODIES, ...PROTO_BODIES]), {
    minLength: 1,
    maxLength: 14,
  }),
});

/** Scenarios both adapters must answer alike, request for request. */
export const portableScenario: fc.Arbitrary<Scenario> = fc.record({
  variant,
  steps: fc.array(stepOf(portableRequest, REUSE_BODIES), { minLength: 1, maxLength: 14 }),
});

// ---------------------------------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------------------------------

const single = (value: string | string[] | undefined) => (typeof value === 'string' ? value : undefined);
/** The shop's student id: `x-user`, as Node hands it over (repeated fields joined). */
export const userOf = (req: CaseRequest): string | undefined => single(req.headers['x-user']);

/** What each adapter mounts, in the shop's order: rate limit, body parser, idempotency, load shedding. */
export interface FuzzOptions {
  readonly trustProxy: boolean;
  readonly bodyLimit: number;
  readonly rateLimit: RateLimitOptions<CaseRequest>;
  readonly idempotency: IdempotencyOptions & { readonly scope: (req: CaseRequest) => string | undefined };
  readonly shedding: LoadShedderOptions;
  /** The class the checkout route sheds as (its whole share of `maxConcurrent`). */
  readonly priority: 'critical';
}

export function fuzzOptions(controls: FuzzControls, v: Variant): FuzzOptions {
  return {
    trustProxy: v.trustProxy,
    bodyLimit: BODY_LIMIT,
    rateLimit: {
      policies: [
        { name: 'per-user', limit: 6, windowMs: 10_000, key: byUser(userOf) },
        { name: 'per-api-key', limit: 6, windowMs: 10_000, key: byApiKey() },
        { name: 'per-token', limit: 6, windowMs: 10_000, key: byApiKey({ header: 'authorization' }) },
        { name: 'per-address', limit: 12, windowMs: 10_000 },
      ],
      clock: () => controls.now,
      ...(v.partitionKey ? { partitionKey: 'fuzz-secret' } : {}),
    },
    idempotency: {
      scope: userOf,
      inFlight: v.inFlight,
      coalesceTimeoutMs: 15_000,
      store: controls.store,
    },
    shedding: { maxConcurrent: v.maxConcurrent, breaker: controls.breaker },
    priority: 'critical',
  };
}

/** What the handler answers: 402 when the request asks for it (a declined card), else 201. */
export function outcomeOf(headers: Readonly<Record<string, string | string[] | undefined>>): 201 | 402 {
  return headers['x-outcome'] === '402' ? 402 : 201;
}

interface Hold {
  readonly arrived: Promise<void>;
  readonly release: () => void;
}

/**
 * The scenario's hand on the app: the rate limit's clock, the breaker, handler runs, a hold on the next
 * handler run, and the idempotency store (a memory store that reports coalescing waits).
 */
export class FuzzControls {
  /** The rate limit's clock (ms): moves only on an `advance` step. */
  now = 0;
  readonly breaker: { state: 'open' | 'closed' } = { state: 'closed' };
  /** Handler runs: each answer of the handler carries its number (`{"order":n}`). */
  checkouts = 0;
  readonly store: IdempotencyStore;
  readonly #inner = new MemoryIdempotencyStore();
  #armed: { arrive: () => void; released: Promise<void> } | undefined;
  #parkWaiters: Array<() => void> = [];
  readonly #holds = new Set<() => void>();

  constructor() {
    const inner = this.#inner;
    this.store = {
      begin: (key, fingerprint, leaseMs) => inner.begin(key, fingerprint, leaseMs),
      complete: (key, lease, response, ttlMs) => inner.complete(key, lease, response, ttlMs),
      release: (key, lease) => inner.release(key, lease),
      waitForChange: (key, signal) => {
        for (const wake of this.#parkWaiters.splice(0)) wake();
        return inner.waitForChange(key, signal);
      },
      close: () => inner.close(),
    };
  }

  /** The handler: its order number, once the hold armed for it (if any) is released. */
  async checkout(): Promise<number> {
    this.checkouts += 1;
    const order = this.checkouts;
    const armed = this.#armed;
    this.#armed = undefined;
    if (armed !== undefined) {
      armed.arrive();
      await armed.released;
    }
    return order;
  }

  /** Holds the next handler run until `release()`; `arrived` resolves when it starts. */
  arm(): Hold {
    let arrive!: () => void;
    let release!: () => void;
    const arrived = new Promise<void>((resolve) => {
      arrive = resolve;
    });
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.#armed = { arrive, released };
    this.#holds.add(release);
    return { arrived, release };
  }

  /** Resolves at the next coalescing wait on the store (a duplicate parked behind a request in flight). */
  nextPark(): Promise<void> {
    return new Promise((resolve) => this.#parkWaiters.push(resolve));
  }

  disarm(): void {
    this.#armed = undefined;
  }

  /** Lets every held handler go and closes the store (after a run, also a failed one). */
  close(): void {
    this.#armed = undefined;
    for (const release of this.#holds) release();
    this.#holds.clear();
    this.#inner.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// Running and checking
// ---------------------------------------------------------------------------------------------------

export interface FuzzResponse {
  readonly status: number;
  /** Lower-case names; repeated fields joined with `, `. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly body: string;
}

export interface FuzzClient {
  request(request: FuzzRequest): Promise<FuzzResponse>;
}

/**
 * A client for an app listening on 127.0.0.1:`port` that sends a `FuzzRequest` exactly: method, target,
 * repeated fields and body bytes as generated, each request on its own connection (`agent: false`, so
 * nothing is left open between scenarios). Fields go as a raw list so a repeated field goes out
 * repeated, and Node writes them as latin1, so a generated obs-text byte reaches the server as that byte.
 */
export function socketClient(port: number): FuzzClient {
  return {
    request: (request) =>
      new Promise((resolve, reject) => {
        const fields: string[] = ['host', `127.0.0.1:${port}`];
        for (const [name, value] of request.headers) fields.push(name, value);
        const body = request.body === undefined ? undefined : bodyBytes(request.body);
        if (body !== undefined)
          fields.push('content-type', 'application/json', 'content-length', String(body.length));
        // Without a length Node frames a POST, PATCH, PURGE... as chunked: an empty body, but a body,
        // and Fastify answers one without Content-Type with its own 415 (Express ignores it). A request
        // without a body says `Content-Length: 0`, as RFC 9110 §8.6 has user agents do for a POST.
        else if (request.method !== 'GET' && request.method !== 'HEAD') fields.push('content-length', '0');
        const outgoing = httpRequest(
          {
            host: '127.0.0.1',
            port,
            method: request.method,
            path: request.path,
            headers: fields,
            agent: false,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('error', reject);
            res.on('end', () => {
              const headers: Record<string, string> = {};
              for (const [name, value] of Object.entries(res.headers)) {
                if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
              }
              resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString('utf8') });
            });
          },
        );
        outgoing.on('error', reject);
        outgoing.end(body);
      }),
  };
}

/** What a request came to, as the checks and the drift comparison read it. */
export interface Observation {
  readonly request: FuzzRequest;
  readonly response: FuzzResponse;
  /** `201`, `404`, `400:parser`, or `status:code` for a problem+json answer (`429:ERR_RATE_LIMITED`). */
  readonly label: string;
  readonly replayed: boolean;
}

/** Long enough for a loaded machine, short enough to fail a hang within vitest's 20 s. */
const ANSWER_WITHIN_MS = 5000;

/** The problem `code` of a problem+json answer, or what else the answer is. */
export function labelOf(response: FuzzResponse): string {
  if ((response.headers['content-type'] ?? '').startsWith('application/problem+json')) {
    let code: unknown;
    try {
      code = (JSON.parse(response.body) as { code?: unknown }).code;
    } catch {
      code = 'unparsable';
    }
    return `${response.status}:${String(code)}`;
  }
  if (response.status === 400) return '400:parser';
  return String(response.status);
}

/** Where a request goes, per the README and the two routers: the checkout route or a 404. */
function routeOf(request: FuzzRequest): 'checkout' | 'none' | 'either' {
  if (request.routing !== undefined) return 'either';
  const pathname = request.path.split('?')[0];
  return pathname === '/checkout' && (request.method === 'POST' || request.method === 'PATCH')
    ? 'checkout'
    : 'none';
}

export type KeyVerdict =
  | { readonly kind: 'missing' }
  | { readonly kind: 'invalid' }
  | { readonly kind: 'valid'; readonly key: string };

/**
 * The README's rule for an Idempotency-Key field, written out independently of `parseIdempotencyKey`: one
 * RFC 8941 sf-string (printable ASCII, `\"` and `\\` escapes, nothing after the closing quote) or a bare
 * token; 1 to 255 characters. Fields sent several times arrive joined with `, ` (and are malformed).
 * HTTP's whitespace around a field value is SP and HTAB only (RFC 9110 §5.5): anything else is the value.
 */
export function keyVerdict(request: FuzzRequest): KeyVerdict {
  const values = request.headers.filter(([name]) => name === 'idempotency-key').map(([, value]) => value);
  if (values.length === 0) return { kind: 'missing' };
  const field = wire(values.join(', '));
  let key = '';
  if (field.startsWith('"')) {
    let closed = false;
    for (let i = 1; i < field.length; i += 1) {
      const char = field[i] as string;
      if (char === '\\') {
        const next = field[i + 1];
        if (next !== '"' && next !== '\\') return { kind: 'invalid' };
        key += next;
        i += 1;
      } else if (char === '"') {
        if (i !== field.length - 1) return { kind: 'invalid' };
        closed = true;
      } else if (char >= ' ' && char <= '~') {
        key += char;
      } else {
        return { kind: 'invalid' };
      }
    }
    if (!closed) return { kind: 'invalid' };
  } else {
    if (!/^[A-Za-z0-9!#$%&'*+\-.^_`|~:/]+$/.test(field)) return { kind: 'invalid' };
    key = field;
  }
  return key.length >= 1 && key.length <= 255 ? { kind: 'valid', key } : { kind: 'invalid' };
}

/**
 * How the app's body parser reads a request without a body: as no body (Express 5, Fastify), or as `{}`
 * (Express 4's body-parser 1.x sets `req.body = {}` whatever comes).
 */
export type BodyParser = 'standard' | 'bodyless-is-empty-object';

/**
 * The body's JSON value in a canonical text (keys sorted at every depth, `__proto__` an ordinary key),
 * or `undefined` without a body: what "the same payload" means. Iterative, so a body nested 8000 deep is
 * no problem for the test itself. Express reads an empty body as `{}` (Fastify refuses it).
 */
export function payloadOf(request: FuzzRequest, parser: BodyParser = 'standard'): string | undefined {
  const body =
    request.body ?? (parser === 'bodyless-is-empty-object' ? describedBody('{}', 'json') : undefined);
  if (body === undefined) return undefined;
  const text = bodyBytes(body).toString('utf8');
  let value: unknown;
  try {
    value = text === '' ? {} : JSON.parse(text);
  } catch {
    return `invalid:${text}`;
  }
  // Positional, so it needs no separators: `O(` key value key value `)`, `A(` value ... `)`.
  const out: string[] = [];
  const CLOSE = Symbol('close');
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const item = stack.pop();
    if (item === CLOSE) out.push(')');
    else if (Array.isArray(item)) {
      out.push('A(');
      stack.push(CLOSE);
      for (let i = item.length - 1; i >= 0; i -= 1) stack.push(item[i]);
    } else if (typeof item === 'object' && item !== null) {
      out.push('O(');
      stack.push(CLOSE);
      const entries = Object.entries(item).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      for (let i = entries.length - 1; i >= 0; i -= 1) {
        const [name, inner] = entries[i] as [string, unknown];
        stack.push(inner, name);
      }
    } else out.push(JSON.stringify(item) ?? 'undefined');
  }
  return out.join('');
}

/** Same method, URL and payload: what a replay must share with its original (a 422 must not). */
function samePayload(a: FuzzRequest, b: FuzzRequest, parser: BodyParser): boolean {
  return a.method === b.method && a.path === b.path && payloadOf(a, parser) === payloadOf(b, parser);
}

interface Context {
  readonly variant: Variant;
  readonly parser: BodyParser;
  /** The breaker's state when the request was sent. */
  readonly breakerOpen: boolean;
  /** Sent while another request was held in the handler. */
  readonly overlapping: boolean;
  /** Requests sent earlier whose answers are stored or still being made (for replays and 422s). */
  readonly earlier: readonly Observation[];
  readonly inFlight: readonly FuzzRequest[];
}

/** The answers the READMEs document for a request, as labels (see {@link labelOf}). */
export function documentedLabels(request: FuzzRequest, context: Context): Set<string> {
  const route = routeOf(request);
  const labels = new Set<string>();
  const body = request.body;
  if (route !== 'checkout') {
    labels.add('404');
    // Express answers OPTIONS for a path it routes with 200 and Allow.
    if (request.method === 'OPTIONS') labels.add('200');
    if (bodyBefore404(request)) {
      if (body?.verdict === 'too-large') labels.add('413');
      else labels.add('400:parser');
    }
    if (route === 'none') return labels;
  }
  // The rate limit comes first and may refuse anything on the route.
  labels.add('429:ERR_RATE_LIMITED');
  if (body?.verdict === 'invalid') return labels.add('400:parser');
  if (body?.verdict === 'too-large') return labels.add('413');
  if (body?.verdict === 'framework') labels.add('400:parser');
  const key = keyVerdict(request);
  if (key.kind === 'missing') return labels.add('400:ERR_IDEMPOTENCY_KEY_MISSING');
  if (key.kind === 'invalid') return labels.add('400:ERR_IDEMPOTENCY_KEY_INVALID');
  labels.add('201').add('402');
  const sameKey = (r: FuzzRequest) => {
    const other = keyVerdict(r);
    return other.kind === 'valid' && other.key === key.key;
  };
  if (
    context.earlier.some((o) => sameKey(o.request) && !samePayload(o.request, request, context.parser)) ||
    context.inFlight.some((r) => sameKey(r) && !samePayload(r, request, context.parser))
  ) {
    labels.add('422:ERR_IDEMPOTENCY_KEY_REUSED');
  }
  if (context.overlapping && context.variant.inFlight === 'conflict' && context.inFlight.some(sameKey)) {
    labels.add('409:ERR_IDEMPOTENCY_KEY_IN_FLIGHT');
  }
  // Shedding comes after idempotency: only a request that got its key is shed, and only while the
  // breaker is open or another request fills the route's share.
  if (context.breakerOpen || context.overlapping) labels.add('503:ERR_LOAD_SHED');
  return labels;
}

function checkAnswer(observation: Observation, context: Context): void {
  const { request, response, label } = observation;
  const what = `${request.method} ${request.path.slice(0, 80)} answered ${label}`;
  expect(response.status < 500 || label === '503:ERR_LOAD_SHED', `${what}: a 5xx`).toBe(true);
  expect([...documentedLabels(request, context)], `${what}: not documented for this input`).toContain(label);
  if (routeOf(request) === 'checkout') {
    // "Every answer carries RateLimit-Policy and RateLimit": the rate limit runs first on the route.
    expect(response.headers['ratelimit-policy'], `${what}: RateLimit-Policy`).toMatch(/^"per-user";q=6;w=10/);
    expect(response.headers.ratelimit, `${what}: RateLimit`).toMatch(/^"per-user";r=\d+;t=\d+/);
  }
  if (label === '429:ERR_RATE_LIMITED' || label.startsWith('503:') || label.startsWith('409:')) {
    expect(response.headers['retry-after'], `${what}: Retry-After`).toMatch(/^[1-9]\d*$/);
  }
  if (label === '503:ERR_LOAD_SHED') {
    const reason = (JSON.parse(response.body) as { reason?: unknown }).reason;
    expect(reason, what).toBe(context.breakerOpen ? 'breaker-open' : 'overloaded');
  }
  if (!observation.replayed) return;
  // A replay is the stored answer of an earlier request with the same key and payload, byte for byte:
  // the handler numbers its answers, so the body names the original.
  const original = context.earlier.find(
    (o) => !o.replayed && (o.label === '201' || o.label === '402') && o.response.body === response.body,
  );
  expect(original, `${what}: a replay of no earlier answer (${response.body.slice(0, 80)})`).toBeDefined();
  if (original === undefined) return;
  expect(keyVerdict(original.request), `${what}: replayed another key's answer`).toEqual(keyVerdict(request));
  expect(
    samePayload(original.request, request, context.parser),
    `${what}: replayed the answer of another payload`,
  ).toBe(true);
  expect(response.status).toBe(original.response.status);
  expect(response.headers['content-type']).toBe(original.response.headers['content-type']);
  expect(response.headers.location).toBe(original.response.headers.location);
  const user = (r: FuzzRequest) => r.headers.filter(([name]) => name === 'x-user').map(([, v]) => v);
  if (user(request).join(', ') !== '' && user(original.request).join(', ') !== '') {
    expect(user(request), `${what}: replayed another user's answer`).toEqual(user(original.request));
  }
}

async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${ANSWER_WITHIN_MS} ms: ${what}`)),
          ANSWER_WITHIN_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Sends a scenario's requests, checks each answer (documented status, no stray 5xx, replays true to their
 * original) and answers the observations in the order the requests were sent.
 */
export async function runScenario(
  client: FuzzClient,
  controls: FuzzControls,
  scenario: Scenario,
  parser: BodyParser = 'standard',
): Promise<Observation[]> {
  const observed: Observation[] = [];
  const sent: FuzzRequest[] = [];
  /** One request and its answer, with the breaker's state when it went. */
  const exchange = async (request: FuzzRequest) => {
    sent.push(request);
    const breakerOpen = controls.breaker.state === 'open';
    const response = await within(client.request(request), `${request.method} ${request.path.slice(0, 80)}`);
    const observation: Observation = {
      request,
      response,
      label: labelOf(response),
      replayed: response.headers['idempotent-replayed'] === 'true',
    };
    return { observation, breakerOpen };
  };
  /** Checks an answer against what came before it, then records it. */
  const record = (
    { observation, breakerOpen }: Awaited<ReturnType<typeof exchange>>,
    context: Omit<Context, 'earlier' | 'breakerOpen'>,
  ) => {
    checkAnswer(observation, { ...context, breakerOpen, earlier: observed.slice() });
    observed.push(observation);
    return observation;
  };
  const alone = { variant: scenario.variant, parser, overlapping: false, inFlight: [] };
  for (const step of scenario.steps) {
    switch (step.kind) {
      case 'advance':
        controls.now += step.ms;
        break;
      case 'breaker':
        controls.breaker.state = step.open ? 'open' : 'closed';
        break;
      case 'send':
        record(await exchange(step.request), alone);
        break;
      case 'retry': {
        const request = sent[sent.length - 1 - (step.back % Math.max(1, sent.length))];
        if (request === undefined) break;
        const before = observed.filter((o) => o.request === request).at(-1);
        const again = record(await exchange(request), alone);
        // A retry of a stored answer is that answer again, whatever came between: only the rate limit
        // (before idempotency) may refuse it first.
        if (before !== undefined && (before.label === '201' || before.label === '402')) {
          if (again.label !== '429:ERR_RATE_LIMITED') {
            expect(again.replayed, `retry of a stored ${before.label} not replayed: ${again.label}`).toBe(
              true,
            );
            expect(again.response.body).toBe(before.response.body);
          }
        }
        break;
      }
      case 'reuse': {
        const earlier = sent[sent.length - 1 - (step.back % Math.max(1, sent.length))];
        if (earlier === undefined) break;
        const before = observed.filter((o) => o.request === earlier).at(-1);
        const request: FuzzRequest = { ...earlier, body: step.body };
        const reused = record(await exchange(request), alone);
        // The key has a stored answer for another payload: 422, unless the rate limit refused first.
        if (before !== undefined && (before.label === '201' || before.label === '402')) {
          const parsed = reused.label !== '400:parser';
          const other = payloadOf(request, parser) !== payloadOf(earlier, parser);
          if (parsed && other && reused.label !== '429:ERR_RATE_LIMITED') {
            expect(reused.label, 'same key, another payload').toBe('422:ERR_IDEMPOTENCY_KEY_REUSED');
          }
        }
        break;
      }
      case 'overlap': {
        const hold = controls.arm();
        const firstAnswer = exchange(step.first);
        // Held in the handler, or answered before it (refused, replayed): then nothing overlaps.
        const held = await within(
          Promise.race([hold.arrived.then(() => true), firstAnswer.then(() => false)]),
          'first request of an overlap',
        );
        if (!held) {
          controls.disarm();
          hold.release();
          record(await firstAnswer, alone);
          break;
        }
        const answers: Array<ReturnType<typeof exchange>> = [];
        for (const other of step.others) {
          const parked = controls.nextPark();
          const answer = exchange(other === 'duplicate' ? step.first : other);
          answers.push(answer);
          // The next one goes once this one is answered or waits behind the first (coalescing).
          await within(
            Promise.race([answer, parked]).then(() => undefined),
            'overlapping request',
          );
        }
        hold.release();
        const first = record(await firstAnswer, alone);
        // Checked once the first's answer is known: a coalesced duplicate is answered with it.
        const overlapping = { variant: scenario.variant, parser, overlapping: true, inFlight: [step.first] };
        for (const answer of await Promise.all(answers)) {
          const o = record(answer, overlapping);
          // Only the rate limit (before idempotency) may answer a duplicate of a request in flight first.
          if (o.request !== step.first || o.label === '429:ERR_RATE_LIMITED') continue;
          if (scenario.variant.inFlight === 'conflict') {
            expect(o.label, 'duplicate of a request in flight').toBe('409:ERR_IDEMPOTENCY_KEY_IN_FLIGHT');
          } else if (first.label === '201' || first.label === '402') {
            expect(o.replayed, `coalesced duplicate answered ${o.label}`).toBe(true);
            expect(o.response.body).toBe(first.response.body);
          }
        }
        break;
      }
    }
  }
  return observed;
}

// ---------------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------------

/** Timers that keep the process alive and TCP handles (servers, sockets): what a run must not leave. */
function heldResources(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((type) => type === 'Timeout' || type.startsWith('TCP'))
    .sort();
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * While installed, collects unhandled rejections. {@link around} runs one scenario (app started and
 * closed inside) and checks that it left no unhandled rejection, no timer keeping the process alive and no
 * TCP handle beyond those held when it began.
 */
export class LeakWatch {
  readonly #rejections: unknown[] = [];
  readonly #listener = (reason: unknown) => {
    this.#rejections.push(reason);
  };

  install(): void {
    process.on('unhandledRejection', this.#listener);
  }

  uninstall(): void {
    process.off('unhandledRejection', this.#listener);
  }

  async around(run: () => Promise<void>): Promise<void> {
    const before = heldResources();
    this.#rejections.length = 0;
    await run();
    // Node reports a rejection once the microtask queue drains, and a closed socket lets go of its handle
    // a turn or two later: a bounded number of event-loop turns, no sleep.
    let added = addedResources(before);
    for (let i = 0; i < 100 && added.length > 0; i += 1) {
      await turn();
      added = addedResources(before);
    }
    await turn();
    expect(this.#rejections.splice(0), 'unhandled rejections').toEqual([]);
    expect(added, 'timers and sockets left behind').toEqual([]);
  }
}

/** What is held now beyond `before` (one held then may have gone: that is no leak). */
function addedResources(before: readonly string[]): string[] {
  const left = [...before];
  return heldResources().filter((type) => {
    const at = left.indexOf(type);
    if (at === -1) return true;
    left.splice(at, 1);
    return false;
  });
}

/** A fixed seed so CI does not flake; see the file's header for running with random seeds. */
const FIXED_SEED = 20_240_617;

/** fast-check parameters: the fixed seed (or FLOODGATE_FUZZ_SEED) and `numRuns` (or FLOODGATE_FUZZ_RUNS). */
export function fuzzParameters(numRuns: number): fc.Parameters<[Scenario]> {
  const seedText = process.env.FLOODGATE_FUZZ_SEED;
  const runs = Number(process.env.FLOODGATE_FUZZ_RUNS ?? numRuns);
  if (seedText === 'random') return { numRuns: runs };
  const seed = seedText === undefined ? FIXED_SEED : Number(seedText);
  return { numRuns: runs, seed };
}
