/**
 * The table of HTTP cases both adapters must pass, so @floodgate/express and @floodgate/fastify cannot
 * drift. Each adapter's test builds the same app (see `AppSpec`) in its own framework and runs every
 * case through `Client`: Express over a real socket, Fastify through inject() and a real socket.
 */
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  byApiKey,
  byUser,
  ClientAddressUnknownError,
  type IdempotencyOptions,
  type IdempotencyStore,
  type KeyGenerator,
  type LoadShedderOptions,
  MemoryIdempotencyStore,
  type RateLimitOptions,
} from '@floodgate/http';
import { type LimiterStore, memoryStore } from '@floodgate/token-bucket';
import { expect, vi } from 'vitest';

/** What the cases read of a request in their key and scope functions (both frameworks have these). */
export interface CaseRequest {
  readonly ip?: string | undefined;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** Per-route settings: the idiomatic per-route override of each framework implements them. */
export interface RouteSpec {
  /** `false`: not limited; options: the route's override (cost, headers, or its own policy). */
  readonly rateLimit?: false | Partial<RateLimitOptions<CaseRequest>>;
  /** Priority class for load shedding. */
  readonly priority?: string;
}

/** The app every adapter builds. Routes:
 * - `GET /`, `GET /search`, `GET /health`: 200 `{"ok":true}`
 * - `GET /browse?hold=name`: waits for `holds.release(name)`, then 200
 * - `POST /checkout` (JSON body): counts, waits for `holds.release(body.hold)` if set, answers
 *   `body.status ?? 201` with `{"order":n,"amount":body.amount}` and `Location: /orders/n`; an `error`
 *   field makes the handler throw (the framework's error handler answers 500). An
 *   `application/octet-stream` body is left unread for the handler (Express: `express.json()` skips it;
 *   Fastify: a content-type parser that hands the payload on unread, as for a streamed upload).
 * Order: rate limit, then load shedding, then idempotency, then the handler (`order` changes the last two).
 * Every app counts an arrival at `gone` (see `Holds`) when a response closes before it was ended: the
 * client went away.
 */
export interface AppSpec {
  readonly trustProxy?: boolean;
  readonly rateLimit?: RateLimitOptions<CaseRequest>;
  /** A rate-limit store made for each app over the case's holds (one whose answers the case times). */
  readonly rateLimitStore?: (holds: Holds) => LimiterStore;
  /** A rate-limit `key` made for each app over the case's holds (one that awaits); replaces `rateLimit.key`. */
  readonly rateLimitKey?: (holds: Holds) => KeyGenerator<CaseRequest>;
  readonly idempotency?: IdempotencyOptions & { readonly scope?: (req: CaseRequest) => string | undefined };
  /** A store made for each app, so a stateful one (on the case's clock, `holds.now`) is never shared. */
  readonly idempotencyStore?: (holds: Holds) => IdempotencyStore;
  /**
   * A scope function made for each app, over the case's holds (a scope that awaits, as one reading a user
   * from a database does); it replaces `idempotency.scope`.
   */
  readonly idempotencyScope?: (holds: Holds) => (req: CaseRequest) => Promise<string | undefined>;
  /**
   * `'shedding-first'`: rate limit, load shedding, idempotency (the table's default). `'idempotency-first'`:
   * rate limit, idempotency, load shedding, the shop's order (Fastify: shedding in `preHandler`, after
   * idempotency), so a replay is answered before shedding can refuse it.
   * @default 'shedding-first'
   */
  readonly order?: 'shedding-first' | 'idempotency-first';
  readonly shedding?: LoadShedderOptions;
  readonly routes?: Readonly<Record<string, RouteSpec>>;
}

export interface CaseResponse {
  readonly status: number;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly body: string;
}

export interface CaseRequestInit {
  readonly method?: string;
  readonly path: string;
  /** An array sends the field once per value (Node, and inject alike, join them with `, `). */
  readonly headers?: Readonly<Record<string, string | readonly string[]>>;
  readonly json?: unknown;
  /** A body sent as it is (instead of `json`), of the `content-type` named in `headers`. */
  readonly body?: string;
  /**
   * Aborting it drops the connection (the client goes away); the request then rejects. Socket clients
   * only: inject cannot drop a connection once the body was read (see `Case.needsSocket`).
   */
  readonly signal?: AbortSignal;
}

/** The fields a socket client sends for `init`: repeated fields for an array. */
export function requestHeaders(init: CaseRequestInit): Headers {
  const headers = new Headers(init.json === undefined ? {} : { 'content-type': 'application/json' });
  for (const [name, value] of Object.entries(init.headers ?? {})) {
    if (typeof value === 'string') headers.set(name, value);
    else for (const item of value) headers.append(name, item);
  }
  return headers;
}

/** The body a client sends for `init`: `body` as it is, else `json` written, else none. */
export function requestBody(init: CaseRequestInit): string | undefined {
  if (init.body !== undefined) return init.body;
  return init.json === undefined ? undefined : JSON.stringify(init.json);
}

export interface Client {
  request(init: CaseRequestInit): Promise<CaseResponse>;
}

/** Lets a case hold handlers open (to make requests overlap) and count handler runs. */
export class Holds {
  readonly #waiting = new Map<string, { promise: Promise<void>; resolve: () => void; arrived: number }>();
  #arrivedWaiters: Array<() => void> = [];
  /** Handler runs of POST /checkout. */
  checkouts = 0;
  /** A manual clock (ms) for the stores a case makes (`idempotencyStore`): time moves only when set. */
  now = 0;
  /** The `ClientAddressUnknownError` warnings emitted while the case ran (see `watchAddressWarnings`). */
  readonly addressWarnings: ClientAddressUnknownError[] = [];

  #entry(name: string) {
    let entry = this.#waiting.get(name);
    if (entry === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => {
        resolve = r;
      });
      entry = { promise, resolve, arrived: 0 };
      this.#waiting.set(name, entry);
    }
    return entry;
  }

  /** Called by the app's handlers. */
  wait(name: string): Promise<void> {
    const entry = this.#entry(name);
    entry.arrived += 1;
    for (const wake of this.#arrivedWaiters.splice(0)) wake();
    return entry.promise;
  }

  /** Counts an arrival at `name` without waiting (a store telling the case a duplicate parked). */
  arrive(name: string): void {
    this.#entry(name).arrived += 1;
    for (const wake of this.#arrivedWaiters.splice(0)) wake();
  }

  /** Arrivals at `name` so far. */
  count(name: string): number {
    return this.#entry(name).arrived;
  }

  /** Resolves once `count` handlers wait on `name`. */
  async arrived(name: string, count = 1): Promise<void> {
    while (this.#entry(name).arrived < count) {
      await new Promise<void>((resolve) => this.#arrivedWaiters.push(resolve));
    }
  }

  release(name: string): void {
    this.#entry(name).resolve();
  }

  releaseAll(): void {
    for (const entry of this.#waiting.values()) entry.resolve();
  }
}

export interface Case {
  readonly name: string;
  readonly app: AppSpec;
  /** The client drops a connection (`signal`): run over real sockets only. */
  readonly needsSocket?: true;
  /**
   * Run only on a server listening on a Unix socket (through `unixSocketClient`), where the server sees
   * no client address; no other case runs there.
   */
  readonly unixSocket?: true;
  /**
   * How many `ClientAddressUnknownError` warnings the case ends with: the runners check it after every
   * case, so none of the others may warn (no false alarm over TCP, inject or HTTP/2, nor for a client that
   * has gone).
   * @default 0
   */
  readonly addressWarnings?: number;
  run(client: Client, holds: Holds): Promise<void>;
}

/**
 * Records the `ClientAddressUnknownError` warnings the process emits into `holds.addressWarnings` (and
 * keeps them off stderr); other warnings go out as before. Returns the undo, for the runner's clean-up.
 */
export function watchAddressWarnings(holds: Holds): () => void {
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  const spy = vi.spyOn(process, 'emitWarning').mockImplementation(((warning: unknown, ...rest: unknown[]) => {
    if (warning instanceof ClientAddressUnknownError) holds.addressWarnings.push(warning);
    else emit(warning, ...rest);
  }) as typeof process.emitWarning);
  return () => spy.mockRestore();
}

let sockets = 0;

/** A fresh Unix socket path in the OS temporary directory (the server removes the file when it closes). */
export function unixSocketPath(): string {
  sockets += 1;
  return join(tmpdir(), `floodgate-${process.pid}-${sockets}.sock`);
}

/** A client of a server listening on the Unix socket `socketPath` (node:http, one connection a request). */
export function unixSocketClient(socketPath: string): Client {
  return {
    request(init) {
      return new Promise((resolve, reject) => {
        const fields: Record<string, string | string[]> = {};
        requestHeaders(init).forEach((value, name) => {
          const given = init.headers?.[name];
          fields[name] = Array.isArray(given) ? [...given] : value;
        });
        const outgoing = httpRequest(
          {
            socketPath,
            agent: false,
            method: init.method ?? 'GET',
            path: init.path,
            headers: fields,
            ...(init.signal === undefined ? {} : { signal: init.signal }),
          },
          (incoming) => {
            let body = '';
            incoming.setEncoding('utf8');
            incoming.on('data', (chunk: string) => {
              body += chunk;
            });
            incoming.on('error', reject);
            incoming.on('end', () => {
              const headers: Record<string, string> = {};
              for (const [name, value] of Object.entries(incoming.headers)) {
                if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
              }
              resolve({ status: incoming.statusCode ?? 0, headers, body });
            });
          },
        );
        outgoing.on('error', reject);
        outgoing.end(requestBody(init));
      });
    },
  };
}

const xff = (address: string) => ({ 'x-forwarded-for': address });
const json = (response: CaseResponse) => JSON.parse(response.body) as Record<string, unknown>;

function expectProblem(response: CaseResponse, status: number, code?: string): void {
  expect(response.status).toBe(status);
  // Exactly: Fastify would add `; charset=utf-8` to a string payload, and the adapters must not differ.
  expect(response.headers['content-type']).toBe('application/problem+json');
  const body = json(response);
  expect(body).toMatchObject({ type: 'about:blank', status });
  if (code !== undefined) expect(body.code).toBe(code);
}

async function burst(client: Client, n: number, init: CaseRequestInit): Promise<CaseResponse[]> {
  const out: CaseResponse[] = [];
  for (let i = 0; i < n; i += 1) out.push(await client.request(init));
  return out;
}

const checkout = (
  key: string | undefined,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
) => ({
  method: 'POST',
  path: '/checkout',
  headers: { ...(key === undefined ? {} : { 'idempotency-key': key }), ...headers },
  json: body,
});

const byUserHeader = (req: CaseRequest) => {
  const user = req.headers['x-user'];
  return typeof user === 'string' ? user : undefined;
};

/**
 * A memory store that tells the case what happens, so no sleep has to guess it: an arrival at `begin` for
 * each lookup of a key, at `parked` for each duplicate that waits behind the first.
 */
function telling(holds: Holds): IdempotencyStore {
  const inner = new MemoryIdempotencyStore();
  return {
    begin: (key, fingerprint, leaseMs) => {
      holds.arrive('begin');
      return inner.begin(key, fingerprint, leaseMs);
    },
    complete: (key, lease, response, ttlMs) => inner.complete(key, lease, response, ttlMs),
    release: (key, lease) => inner.release(key, lease),
    waitForChange: (key, signal) => {
      const change = inner.waitForChange(key, signal);
      holds.arrive('parked');
      return change;
    },
    close: () => inner.close(),
  };
}

/**
 * A memory store whose stored answers also hold fields `replayHeaders` refuses today, as a record written
 * by an earlier version, or by other code sharing the store, may.
 */
function olderRecords(): IdempotencyStore {
  const inner = new MemoryIdempotencyStore();
  const connectionFields = {
    'transfer-encoding': 'chunked',
    connection: 'close',
    'keep-alive': 'timeout=5',
    'set-cookie': 'session=alice',
  };
  return {
    begin: (key, fingerprint, leaseMs) => inner.begin(key, fingerprint, leaseMs),
    complete: (key, lease, response, ttlMs) =>
      inner.complete(
        key,
        lease,
        { ...response, headers: { ...response.headers, ...connectionFields } },
        ttlMs,
      ),
    release: (key, lease) => inner.release(key, lease),
    close: () => inner.close(),
  };
}

/** The user's scope, after waiting on the hold `scope` for a request with `x-slow: 1` (a slow user lookup). */
const slowScope = (holds: Holds) => async (req: CaseRequest) => {
  if (req.headers['x-slow'] === '1') await holds.wait('scope');
  return byUserHeader(req);
};

/**
 * Sends `init` on a connection the case can drop: `leave()` aborts it and resolves once the server saw the
 * response close (an arrival at `gone`).
 */
function leaving(client: Client, holds: Holds, init: CaseRequestInit) {
  const controller = new AbortController();
  const response = client.request({ ...init, signal: controller.signal }).then(
    () => 'answered' as const,
    () => 'aborted' as const,
  );
  return {
    async leave(): Promise<void> {
      const gone = holds.count('gone');
      controller.abort();
      expect(await response).toBe('aborted');
      await holds.arrived('gone', gone + 1);
    },
  };
}

/** One slot in all, so a single request in flight makes the next one shed. */
const oneSlot: LoadShedderOptions = { maxConcurrent: 1, priorities: { only: 1 }, defaultPriority: 'only' };

const storeDown = () => Promise.reject(new Error('store down'));
/** Stateless, so one object serves every app of the table. */
const downLimiterStore: LimiterStore = { consume: storeDown, refund: () => {}, close: () => {} };
const downIdempotencyStore: IdempotencyStore = {
  begin: storeDown,
  complete: storeDown,
  release: storeDown,
  close: () => {},
};

/** X-Forwarded-For values no proxy sends: 15 KB of garbage, 600 hops, empty hops, a bad mapped IPv6. */
const absurdForwardedFor = [
  'x'.repeat(15_000),
  Array.from({ length: 600 }, (_, i) => `10.${i >> 8}.${i & 255}.1`).join(', '),
  ' , , ',
  '::ffff:zzz',
];

export const cases: readonly Case[] = [
  // ---- rate limit: header conformance per header mode ----
  {
    name: 'rate limit: draft-8 headers on every answer, 429 problem+json with Retry-After past the burst',
    app: { rateLimit: { name: 'per-ip', limit: 2, windowMs: 60_000 } },
    async run(client) {
      const [first, second, third] = await burst(client, 3, { path: '/' });
      expect(first?.status).toBe(200);
      expect(first?.headers['ratelimit-policy']).toBe('"per-ip";q=2;w=60');
      expect(first?.headers.ratelimit).toBe('"per-ip";r=1;t=30');
      expect(second?.headers.ratelimit).toBe('"per-ip";r=0;t=60');
      expectProblem(third as CaseResponse, 429, 'ERR_RATE_LIMITED');
      expect(third?.headers['retry-after']).toBe('30');
      expect(third?.headers.ratelimit).toBe('"per-ip";r=0;t=60');
      expect(first?.headers['x-ratelimit-limit']).toBeUndefined();
    },
  },
  {
    name: 'rate limit: draft-7 combined field',
    app: { rateLimit: { limit: 2, windowMs: 10_000, standardHeaders: 'draft-7' } },
    async run(client) {
      const response = await client.request({ path: '/' });
      expect(response.headers['ratelimit-policy']).toBe('2;w=10');
      expect(response.headers.ratelimit).toBe('limit=2, remaining=1, reset=5');
    },
  },
  {
    name: 'rate limit: draft-6 separate fields',
    app: { rateLimit: { limit: 2, windowMs: 10_000, standardHeaders: 'draft-6' } },
    async run(client) {
      const response = await client.request({ path: '/' });
      expect(response.headers['ratelimit-policy']).toBe('2;w=10');
      expect(response.headers['ratelimit-limit']).toBe('2');
      expect(response.headers['ratelimit-remaining']).toBe('1');
      expect(response.headers['ratelimit-reset']).toBe('5');
      expect(response.headers.ratelimit).toBeUndefined();
    },
  },
  {
    name: 'rate limit: legacy X-RateLimit-* only, reset as a Unix time',
    app: { rateLimit: { limit: 1, windowMs: 10_000, standardHeaders: false, legacyHeaders: true } },
    async run(client) {
      const before = Math.floor(Date.now() / 1000);
      const [ok, denied] = await burst(client, 2, { path: '/' });
      expect(ok?.headers['x-ratelimit-limit']).toBe('1');
      expect(ok?.headers['x-ratelimit-remaining']).toBe('0');
      const reset = Number(ok?.headers['x-ratelimit-reset']);
      expect(reset).toBeGreaterThanOrEqual(before + 9);
      expect(reset).toBeLessThanOrEqual(before + 12);
      expect(ok?.headers.ratelimit).toBeUndefined();
      expect(denied?.status).toBe(429);
      expect(denied?.headers['retry-after']).toBe('10');
    },
  },
  {
    name: 'rate limit: several policies at once (per user and global), partition keys hashed',
    app: {
      trustProxy: true,
      rateLimit: {
        partitionKey: 'test-secret',
        policies: [
          { name: 'per-user', limit: 2, windowMs: 60_000, key: byUserHeader },
          { name: 'global', limit: 3, windowMs: 60_000, key: () => 'global' },
        ],
      },
    },
    async run(client) {
      const alice = { 'x-user': 'alice', ...xff('203.0.113.1') };
      const first = await client.request({ path: '/', headers: alice });
      expect(first.headers.ratelimit).toMatch(
        /^"per-user";r=1;t=30;pk=:[^:]+:, "global";r=2;t=20;pk=:[^:]+:$/,
      );
      expect(first.headers.ratelimit).not.toContain('alice');
      expect(first.headers['ratelimit-policy']).toMatch(
        /^"per-user";q=2;w=60;pk=:[^:]+:, "global";q=3;w=60;pk=/,
      );
      await client.request({ path: '/', headers: alice });
      const aliceDenied = await client.request({ path: '/', headers: alice });
      expectProblem(aliceDenied, 429);
      expect(json(aliceDenied).policy).toBe('per-user');
      // alice's refused request did not spend the global quota: bob gets the last global token.
      expect((await client.request({ path: '/', headers: { 'x-user': 'bob' } })).status).toBe(200);
      const bobDenied = await client.request({ path: '/', headers: { 'x-user': 'bob' } });
      expect(bobDenied.status).toBe(429);
      expect(json(bobDenied).policy).toBe('global');
    },
  },
  {
    name: 'rate limit: `detail` is the text of a 429 problem+json (code, policy, retryAfter kept), also per route',
    app: {
      rateLimit: {
        name: 'per-ip',
        limit: 1,
        windowMs: 60_000,
        detail: 'Too many requests from you; slow down',
      },
      // A detail-only override spends from the same bucket.
      routes: { '/search': { rateLimit: { detail: 'Searching too fast, "really"' } } },
    },
    async run(client) {
      expect((await client.request({ path: '/' })).status).toBe(200);
      const refused = await client.request({ path: '/' });
      expectProblem(refused, 429, 'ERR_RATE_LIMITED');
      expect(json(refused)).toEqual({
        type: 'about:blank',
        title: 'Too Many Requests',
        status: 429,
        detail: 'Too many requests from you; slow down',
        code: 'ERR_RATE_LIMITED',
        policy: 'per-ip',
        retryAfter: 60,
      });
      const search = await client.request({ path: '/search' });
      expectProblem(search, 429, 'ERR_RATE_LIMITED');
      expect(json(search).detail).toBe('Searching too fast, "really"');
      expect(search.headers['retry-after']).toBe('60');
    },
  },
  {
    name: 'rate limit: skipFailedRequests gives back what a 4xx, 5xx or a throwing handler took',
    app: { rateLimit: { name: 'ok-only', limit: 2, windowMs: 60_000, skipFailedRequests: true } },
    async run(client) {
      expect((await client.request(checkout(undefined, { status: 400 }))).status).toBe(400);
      expect((await client.request(checkout(undefined, { status: 503 }))).status).toBe(503);
      expect((await client.request(checkout(undefined, { error: true }))).status).toBe(500);
      const [first, second, third] = await burst(client, 3, checkout(undefined, {}));
      expect(first?.status).toBe(201);
      // Each answer shows the bucket as the request found it; the failures before were given back.
      expect(first?.headers.ratelimit).toBe('"ok-only";r=1;t=30');
      expect(second?.status).toBe(201);
      expectProblem(third as CaseResponse, 429, 'ERR_RATE_LIMITED');
    },
  },
  {
    name: 'rate limit: skipSuccessfulRequests counts only failures; requestWasSuccessful decides which',
    app: {
      rateLimit: {
        name: 'failures',
        limit: 2,
        windowMs: 60_000,
        skipSuccessfulRequests: true,
        // A 402 (the card declined) is the failure counted here, not other 4xx.
        requestWasSuccessful: (_req, statusCode) => statusCode !== 402,
      },
    },
    async run(client) {
      for (const status of [201, 400, 201, 422]) {
        expect((await client.request(checkout(undefined, { status }))).status).toBe(status);
      }
      expect((await client.request(checkout(undefined, { status: 402 }))).headers.ratelimit).toBe(
        '"failures";r=1;t=30',
      );
      expect((await client.request(checkout(undefined, { status: 402 }))).status).toBe(402);
      expectProblem(await client.request(checkout(undefined, { status: 201 })), 429, 'ERR_RATE_LIMITED');
    },
  },
  {
    name: 'rate limit: per-route cost and opt-out share one quota',
    app: {
      rateLimit: { limit: 10, windowMs: 60_000 },
      routes: { '/search': { rateLimit: { cost: 4 } }, '/health': { rateLimit: false } },
    },
    async run(client) {
      expect((await client.request({ path: '/search' })).headers.ratelimit).toContain('r=6;');
      expect((await client.request({ path: '/' })).headers.ratelimit).toContain('r=5;');
      const health = await client.request({ path: '/health' });
      expect(health.status).toBe(200);
      expect(health.headers.ratelimit).toBeUndefined();
      expect((await client.request({ path: '/search' })).headers.ratelimit).toContain('r=1;');
      expect((await client.request({ path: '/search' })).status).toBe(429);
      expect((await client.request({ path: '/' })).status).toBe(200);
    },
  },
  // ---- client keys: IPv6 grouping, trust proxy ----
  {
    name: 'client key: IPv6 clients of one /56 share a bucket, the next /56 does not',
    app: { trustProxy: true, rateLimit: { limit: 1, windowMs: 60_000 } },
    async run(client) {
      expect((await client.request({ path: '/', headers: xff('2001:db8:1:100::1') })).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('2001:db8:1:1ff:ffff::2') })).status).toBe(429);
      expect((await client.request({ path: '/', headers: xff('2001:db8:1:200::1') })).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('::ffff:198.51.100.7') })).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('198.51.100.7') })).status).toBe(429);
    },
  },
  {
    name: 'client key: with trust proxy on, X-Forwarded-For picks the bucket',
    app: { trustProxy: true, rateLimit: { limit: 1, windowMs: 60_000 } },
    async run(client) {
      expect((await client.request({ path: '/', headers: xff('198.51.100.1') })).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('198.51.100.2') })).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('198.51.100.1') })).status).toBe(429);
    },
  },
  {
    name: 'client key: with trust proxy off, a spoofed X-Forwarded-For changes nothing (and is no 500)',
    app: { trustProxy: false, rateLimit: { limit: 1, windowMs: 60_000 } },
    async run(client) {
      expect((await client.request({ path: '/', headers: xff('198.51.100.1') })).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('198.51.100.2') })).status).toBe(429);
      expect((await client.request({ path: '/', headers: xff('not an address, at all') })).status).toBe(429);
    },
  },
  {
    name: 'client key: byUser buckets per user; a request without a user falls back to its address',
    app: { trustProxy: true, rateLimit: { limit: 1, windowMs: 60_000, key: byUser(byUserHeader) } },
    async run(client) {
      // One address for all: only the user tells alice's and bob's buckets apart.
      const as = (user: string) => ({ path: '/', headers: { 'x-user': user, ...xff('198.51.100.1') } });
      expect((await client.request(as('alice'))).status).toBe(200);
      expect((await client.request(as('alice'))).status).toBe(429);
      expect((await client.request(as('bob'))).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('198.51.100.1') })).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('198.51.100.1') })).status).toBe(429);
      expect((await client.request({ path: '/', headers: xff('198.51.100.2') })).status).toBe(200);
    },
  },
  {
    name: 'client key: byApiKey buckets per API key; a request without a key falls back to its address',
    app: { trustProxy: true, rateLimit: { limit: 1, windowMs: 60_000, key: byApiKey() } },
    async run(client) {
      const withKey = (key: string) => ({ path: '/', headers: { 'x-api-key': key, ...xff('198.51.100.1') } });
      expect((await client.request(withKey('k1'))).status).toBe(200);
      expect((await client.request(withKey('k1'))).status).toBe(429);
      expect((await client.request(withKey('k2'))).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('198.51.100.1') })).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('198.51.100.1') })).status).toBe(429);
      expect((await client.request({ path: '/', headers: xff('198.51.100.2') })).status).toBe(200);
    },
  },
  {
    name: 'client key: byApiKey trims only SP and HTAB, so a key ending in a no-break space (0xA0) is another key',
    app: { trustProxy: true, rateLimit: { limit: 1, windowMs: 60_000, key: byApiKey() } },
    async run(client) {
      const withKey = (key: string) => ({ path: '/', headers: { 'x-api-key': key, ...xff('198.51.100.1') } });
      expect((await client.request(withKey('k1'))).status).toBe(200);
      // The byte 0xA0 on the wire; Node hands it over as U+00A0, which String.prototype.trim() removes.
      expect((await client.request(withKey('k1\u00a0'))).status).toBe(200);
      expect((await client.request(withKey('\u00a0k1'))).status).toBe(200);
      expect((await client.request(withKey('k1\u00a0'))).status).toBe(429);
    },
  },
  {
    name: 'client key: a key answering a number (a user id, as @fastify/rate-limit allows) buckets per user; one naming no bucket goes to the error handler, not a 503',
    app: {
      trustProxy: true,
      rateLimit: {
        limit: 1,
        windowMs: 60_000,
        key: (req) => {
          const user = byUserHeader(req);
          if (user === 'broken') return { user } as never;
          return user === undefined ? undefined : Number(user);
        },
      },
    },
    async run(client) {
      const as = (user: string, address: string) => ({
        path: '/',
        headers: { 'x-user': user, ...xff(address) },
      });
      expect((await client.request(as('7', '198.51.100.1'))).status).toBe(200);
      expect((await client.request(as('7', '198.51.100.2'))).status).toBe(429);
      expect((await client.request(as('8', '198.51.100.1'))).status).toBe(200);
      // The framework's own 500 (the app's mistake), never 503 ERR_STORE_UNAVAILABLE for everyone.
      const broken = await client.request(as('broken', '198.51.100.3'));
      expect(broken.status).toBe(500);
      expect(broken.body).not.toContain('ERR_STORE_UNAVAILABLE');
      expect((await client.request({ path: '/', headers: xff('198.51.100.3') })).status).toBe(200);
    },
  },
  // ---- skip / allow lists, dry run ----
  {
    name: 'allow list and skip: never counted, no headers',
    app: {
      trustProxy: true,
      rateLimit: {
        limit: 1,
        windowMs: 60_000,
        allowList: ['10.0.0.7'],
        skip: (req) => req.headers['x-internal'] === 'yes',
      },
    },
    async run(client) {
      for (let i = 0; i < 3; i += 1) {
        const allowed = await client.request({ path: '/', headers: xff('10.0.0.7') });
        expect(allowed.status).toBe(200);
        expect(allowed.headers.ratelimit).toBeUndefined();
        expect(
          (await client.request({ path: '/', headers: { 'x-internal': 'yes', ...xff('10.0.0.8') } })).status,
        ).toBe(200);
      }
      expect((await client.request({ path: '/', headers: xff('10.0.0.8') })).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('10.0.0.8') })).status).toBe(429);
    },
  },
  {
    name: 'dry run: counts and sends headers, never refuses',
    app: { rateLimit: { limit: 1, windowMs: 60_000, dryRun: true } },
    async run(client) {
      const responses = await burst(client, 3, { path: '/' });
      expect(responses.map((r) => r.status)).toEqual([200, 200, 200]);
      expect(responses[2]?.headers.ratelimit).toContain('r=0;');
      expect(responses[2]?.headers['retry-after']).toBeUndefined();
    },
  },
  {
    name: 'dry run, several policies: a refusal does not stop the later policies counting; fields as the enforced limit would send',
    app: {
      rateLimit: {
        dryRun: true,
        policies: [
          { name: 'per-user', limit: 1, windowMs: 60_000, key: byUserHeader },
          { name: 'global', limit: 3, windowMs: 60_000, key: () => 'global' },
        ],
      },
    },
    async run(client) {
      const alice = { path: '/', headers: { 'x-user': 'alice' } };
      const [first, second] = await burst(client, 2, alice);
      expect(first?.headers.ratelimit).toBe('"per-user";r=0;t=60, "global";r=2;t=20');
      // Served though per-user would refuse it, and described as the enforced 429 would be: per-user only.
      expect(second?.status).toBe(200);
      expect(second?.headers['ratelimit-policy']).toBe('"per-user";q=1;w=60');
      expect(second?.headers.ratelimit).toBe('"per-user";r=0;t=60');
      expect(second?.headers['retry-after']).toBeUndefined();
      // global counted alice's second request too: bob takes its last token.
      const bob = await client.request({ path: '/', headers: { 'x-user': 'bob' } });
      expect(bob.headers.ratelimit).toBe('"per-user";r=0;t=60, "global";r=0;t=60');
      const carol = await client.request({ path: '/', headers: { 'x-user': 'carol' } });
      expect(carol.status).toBe(200);
      expect(carol.headers.ratelimit).toBe('"per-user";r=0;t=60, "global";r=0;t=60');
      expect(carol.headers['retry-after']).toBeUndefined();
    },
  },
  // ---- idempotency ----
  {
    name: 'idempotency: first request runs, the retry is replayed with Idempotent-Replayed (any JSON key order)',
    app: { idempotency: { scope: byUserHeader } },
    async run(client, holds) {
      const first = await client.request(
        checkout('"order-1"', { amount: 100, currency: 'EUR' }, { 'x-user': 'alice' }),
      );
      expect(first.status).toBe(201);
      expect(first.headers['idempotent-replayed']).toBeUndefined();
      const replay = await client.request(
        checkout('order-1', { currency: 'EUR', amount: 100 }, { 'x-user': 'alice' }),
      );
      expect(replay.status).toBe(201);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.headers.location).toBe(first.headers.location);
      expect(replay.headers['content-type']).toBe(first.headers['content-type']);
      expect(replay.body).toBe(first.body);
      expect(holds.checkouts).toBe(1);
    },
  },
  {
    name: 'idempotency: same key with another payload is 422',
    app: { idempotency: { scope: byUserHeader } },
    async run(client, holds) {
      await client.request(checkout('k', { amount: 100 }, { 'x-user': 'alice' }));
      const other = await client.request(checkout('k', { amount: 999 }, { 'x-user': 'alice' }));
      expectProblem(other, 422, 'ERR_IDEMPOTENCY_KEY_REUSED');
      expect(holds.checkouts).toBe(1);
    },
  },
  {
    name: "idempotency: another user reusing a key is processed on its own, never given the other's answer",
    app: { idempotency: { scope: byUserHeader } },
    async run(client, holds) {
      const alice = await client.request(checkout('shared', { amount: 100 }, { 'x-user': 'alice' }));
      const mallory = await client.request(checkout('shared', { amount: 100 }, { 'x-user': 'mallory' }));
      expect(mallory.status).toBe(201);
      expect(mallory.headers['idempotent-replayed']).toBeUndefined();
      expect(json(mallory).order).not.toBe(json(alice).order);
      expect(holds.checkouts).toBe(2);
    },
  },
  {
    name: 'idempotency: a scope that knows no user falls back to the client address, never one shared scope',
    app: { trustProxy: true, idempotency: { scope: byUserHeader } },
    async run(client, holds) {
      const anonymous = (address: string) => checkout('"order-1"', { amount: 1 }, xff(address));
      const first = await client.request(anonymous('198.51.100.1'));
      const other = await client.request(anonymous('198.51.100.2'));
      expect(other.status).toBe(201);
      expect(other.headers['idempotent-replayed']).toBeUndefined();
      expect(json(other).order).not.toBe(json(first).order);
      const again = await client.request(anonymous('198.51.100.1'));
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.body).toBe(first.body);
      expect(holds.checkouts).toBe(2);
    },
  },
  {
    name: 'idempotency: concurrent duplicates while in flight get 409 + Retry-After; the handler runs once',
    app: { idempotency: { scope: byUserHeader } },
    async run(client, holds) {
      const first = client.request(checkout('dup', { amount: 5, hold: 'first' }, { 'x-user': 'a' }));
      await holds.arrived('first');
      const duplicates = await Promise.all(
        [1, 2, 3].map(() => client.request(checkout('dup', { amount: 5, hold: 'first' }, { 'x-user': 'a' }))),
      );
      for (const duplicate of duplicates) {
        expectProblem(duplicate, 409, 'ERR_IDEMPOTENCY_KEY_IN_FLIGHT');
        expect(duplicate.headers['retry-after']).toBe('1');
      }
      holds.release('first');
      expect((await first).status).toBe(201);
      expect(holds.checkouts).toBe(1);
    },
  },
  {
    name: 'idempotency: coalescing duplicates wait and all get the first answer; the handler runs once',
    app: {
      idempotency: { scope: byUserHeader, inFlight: 'coalesce' },
      idempotencyStore: telling,
    },
    async run(client, holds) {
      const body = { amount: 5, hold: 'c' };
      const first = client.request(checkout('co', body, { 'x-user': 'a' }));
      await holds.arrived('c');
      const duplicates = [1, 2, 3].map(() => client.request(checkout('co', body, { 'x-user': 'a' })));
      await holds.arrived('parked', 3);
      holds.release('c');
      const original = await first;
      for (const duplicate of await Promise.all(duplicates)) {
        expect(duplicate.status).toBe(201);
        expect(duplicate.headers['idempotent-replayed']).toBe('true');
        expect(duplicate.body).toBe(original.body);
      }
      expect(holds.checkouts).toBe(1);
    },
  },
  {
    name: 'idempotency: coalescing duplicates of a first that answers 5xx each run in turn (not stored), none hangs or gets 409',
    app: { idempotency: { scope: byUserHeader, inFlight: 'coalesce' }, idempotencyStore: telling },
    async run(client, holds) {
      const body = { amount: 5, hold: 'down', status: 503 };
      const first = client.request(checkout('5xx', body, { 'x-user': 'a' }));
      await holds.arrived('down');
      const duplicates = [1, 2].map(() => client.request(checkout('5xx', body, { 'x-user': 'a' })));
      await holds.arrived('parked', 2);
      holds.release('down');
      // The first's 503 frees the key: a waiter takes it over and runs, the other waits for that one.
      for (const response of [await first, ...(await Promise.all(duplicates))]) {
        expect(response.status).toBe(503);
        expect(response.headers['idempotent-replayed']).toBeUndefined();
      }
      expect(holds.checkouts).toBe(3);
    },
  },
  {
    name: 'idempotency: a crashed request holds its key only for leaseMs, then the retry takes it over and runs',
    app: {
      idempotency: { scope: byUserHeader, leaseMs: 200 },
      idempotencyStore: (holds) => new MemoryIdempotencyStore({ clock: () => holds.now }),
    },
    async run(client, holds) {
      // The hold is never released while the lease runs: the handler hangs, as in a crashed request.
      const request = () => client.request(checkout('lease', { amount: 5, hold: 'hung' }, { 'x-user': 'a' }));
      const crashed = request();
      await holds.arrived('hung');
      holds.now = 199;
      expectProblem(await request(), 409, 'ERR_IDEMPOTENCY_KEY_IN_FLIGHT');
      holds.now = 200;
      const takeover = request();
      await holds.arrived('hung', 2);
      expect(holds.checkouts).toBe(2);
      holds.release('hung');
      const [late, retried] = await Promise.all([crashed, takeover]);
      expect(retried.status).toBe(201);
      expect(retried.headers['idempotent-replayed']).toBeUndefined();
      expect(json(retried).order).toBe(2);
      // The crashed request lost its lease: its late answer is not the one stored.
      expect(json(late).order).toBe(1);
      const replay = await request();
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.body).toBe(retried.body);
      expect(holds.checkouts).toBe(2);
    },
  },
  {
    name: 'idempotency: 5xx and thrown errors are not stored, the retry runs again; 4xx are replayed',
    app: { idempotency: { scope: byUserHeader } },
    async run(client, holds) {
      expect((await client.request(checkout('five', { status: 503 }, { 'x-user': 'a' }))).status).toBe(503);
      expect(
        (await client.request(checkout('five', { status: 503 }, { 'x-user': 'a' }))).headers[
          'idempotent-replayed'
        ],
      ).toBeUndefined();
      expect((await client.request(checkout('boom', { error: true }, { 'x-user': 'a' }))).status).toBe(500);
      expect((await client.request(checkout('boom', { error: true }, { 'x-user': 'a' }))).status).toBe(500);
      expect(holds.checkouts).toBe(4);
      expect((await client.request(checkout('declined', { status: 402 }, { 'x-user': 'a' }))).status).toBe(
        402,
      );
      const replay = await client.request(checkout('declined', { status: 402 }, { 'x-user': 'a' }));
      expect(replay.status).toBe(402);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(holds.checkouts).toBe(5);
    },
  },
  {
    name: 'idempotency: missing and malformed keys are 400 problem+json, never a 500',
    app: { idempotency: {} },
    async run(client, holds) {
      const missing = await client.request(checkout(undefined, { amount: 1 }));
      expectProblem(missing, 400, 'ERR_IDEMPOTENCY_KEY_MISSING');
      for (const bad of [
        '""',
        `"${'x'.repeat(256)}"`,
        'x'.repeat(256),
        '"a", "b"',
        'two words',
        '"unterminated',
        'x'.repeat(8000),
      ]) {
        expectProblem(await client.request(checkout(bad, { amount: 1 })), 400, 'ERR_IDEMPOTENCY_KEY_INVALID');
      }
      expect(holds.checkouts).toBe(0);
      expect((await client.request(checkout(`"${'k'.repeat(255)}"`, { amount: 1 }))).status).toBe(201);
      expect((await client.request({ path: '/' })).status).toBe(200);
    },
  },
  {
    name: 'idempotency: a 204 is replayed as a 204 with its Location, without Content-Length, Content-Type or body',
    app: { idempotency: { scope: byUserHeader } },
    async run(client, holds) {
      const first = await client.request(checkout('none', { status: 204 }, { 'x-user': 'a' }));
      const replay = await client.request(checkout('none', { status: 204 }, { 'x-user': 'a' }));
      for (const response of [first, replay]) {
        expect(response.status).toBe(204);
        // RFC 9110 8.6: a server MUST NOT send Content-Length in a 204.
        expect(response.headers['content-length']).toBeUndefined();
        expect(response.headers['content-type']).toBeUndefined();
        expect(response.headers.location).toBe('/orders/1');
        expect(response.body).toBe('');
      }
      expect(first.headers['idempotent-replayed']).toBeUndefined();
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(holds.checkouts).toBe(1);
    },
  },
  {
    name: 'idempotency: a duplicate whose client left before its key was looked up does not wait for the first (coalesce)',
    needsSocket: true,
    app: {
      idempotency: { inFlight: 'coalesce' },
      idempotencyScope: slowScope,
      idempotencyStore: telling,
    },
    async run(client, holds) {
      const body = { amount: 5, hold: 'first' };
      const first = client.request(checkout('left', body, { 'x-user': 'a' }));
      await holds.arrived('first');
      const duplicate = leaving(client, holds, checkout('left', body, { 'x-user': 'a', 'x-slow': '1' }));
      await holds.arrived('scope');
      await duplicate.leave();
      holds.release('scope');
      await holds.arrived('begin', 2);
      // A round trip: the duplicate has answered or parked by the time it returns.
      expect((await client.request({ path: '/' })).status).toBe(200);
      // Nobody is there to answer: waiting would hold the duplicate for up to coalesceTimeoutMs.
      expect(holds.count('parked')).toBe(0);
      holds.release('first');
      expect((await first).status).toBe(201);
      expect(holds.checkouts).toBe(1);
    },
  },
  {
    name: 'idempotency: a keyed body the route does not read is 415 problem+json, never run, nor replayed for another payload',
    app: { idempotency: { scope: byUserHeader } },
    async run(client, holds) {
      const unread = (body: string) => ({
        method: 'POST',
        path: '/checkout',
        headers: { 'idempotency-key': 'raw', 'content-type': 'application/octet-stream', 'x-user': 'a' },
        body,
      });
      // Fingerprinted as no body, the second payload was replayed the first one's answer.
      for (const payload of ['one', 'two']) {
        const response = await client.request(unread(payload));
        expectProblem(response, 415, 'ERR_IDEMPOTENCY_BODY_UNREAD');
        expect(response.headers['idempotent-replayed']).toBeUndefined();
      }
      expect(holds.checkouts).toBe(0);
      // The key was never taken: a body the route reads runs with it.
      expect((await client.request(checkout('raw', { amount: 1 }, { 'x-user': 'a' }))).status).toBe(201);
    },
  },
  {
    name: 'idempotency: a stored record holding hop-by-hop fields or Set-Cookie (written before replayHeaders refused them) replays without them',
    app: { idempotency: { scope: byUserHeader }, idempotencyStore: () => olderRecords() },
    async run(client, holds) {
      const first = await client.request(checkout('old', { amount: 3 }, { 'x-user': 'a' }));
      expect(first.status).toBe(201);
      // Over HTTP/2 a connection-specific field made Node throw: the replay never answered.
      const replay = await client.request(checkout('old', { amount: 3 }, { 'x-user': 'a' }));
      expect(replay.status).toBe(201);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.headers['transfer-encoding']).toBeUndefined();
      expect(replay.headers['set-cookie']).toBeUndefined();
      expect(replay.headers.location).toBe('/orders/1');
      expect(replay.body).toBe(first.body);
      expect(holds.checkouts).toBe(1);
    },
  },
  {
    name: 'idempotency: an anonymous client that leaves before its key is looked up is not run under an unknown address; its retry runs once',
    needsSocket: true,
    app: { idempotency: {}, idempotencyScope: slowScope },
    async run(client, holds) {
      const body = { amount: 1, hold: 'pay' };
      // No user: scoped by its address, which Node no longer knows once the client has gone.
      const left = leaving(client, holds, checkout('anon', body, { 'x-slow': '1' }));
      await holds.arrived('scope');
      await left.leave();
      holds.release('scope');
      // A round trip: the request that was left has been decided by the time it returns.
      expect((await client.request({ path: '/' })).status).toBe(200);
      // Run, its answer would have been stored under a scope its retry never looks in.
      expect(holds.count('pay')).toBe(0);
      const retry = client.request(checkout('anon', body));
      await holds.arrived('pay');
      holds.release('pay');
      const answered = await retry;
      expect(answered.status).toBe(201);
      expect(answered.headers['idempotent-replayed']).toBeUndefined();
      expect(holds.checkouts).toBe(1);
    },
  },
  // ---- load shedding ----
  {
    name: 'load shedding: cheap traffic is shed first with 503 + Retry-After, checkout still admitted',
    app: {
      shedding: {
        maxConcurrent: 4,
        priorities: { critical: 1, low: 0.5 },
        defaultPriority: 'low',
        retryAfterMs: 2000,
      },
      routes: { '/browse': { priority: 'low' }, '/checkout': { priority: 'critical' } },
    },
    async run(client, holds) {
      const browsing = [1, 2].map(() => client.request({ path: '/browse?hold=b' }));
      await holds.arrived('b', 2);
      const shed = await client.request({ path: '/browse?hold=b' });
      expectProblem(shed, 503, 'ERR_LOAD_SHED');
      expect(shed.headers['retry-after']).toBe('2');
      expect(json(shed).reason).toBe('overloaded');
      const checkouts = [1, 2].map(() => client.request(checkout(undefined, { amount: 1, hold: 'c' })));
      await holds.arrived('c', 2);
      expectProblem(await client.request(checkout(undefined, { amount: 1 })), 503);
      holds.releaseAll();
      expect((await Promise.all([...browsing, ...checkouts])).map((r) => r.status)).toEqual([
        200, 200, 201, 201,
      ]);
      // Slots are freed when responses end.
      expect((await client.request({ path: '/browse' })).status).toBe(200);
    },
  },
  {
    name: 'load shedding: an open breaker sheds every class at once',
    app: { shedding: { breaker: { state: 'open', retryAfterMs: 4500 } } },
    async run(client, holds) {
      const response = await client.request(checkout(undefined, { amount: 1 }));
      expectProblem(response, 503, 'ERR_LOAD_SHED');
      expect(response.headers['retry-after']).toBe('5');
      expect(json(response).reason).toBe('breaker-open');
      expect(holds.checkouts).toBe(0);
    },
  },
  {
    name: "load shedding: a gate whose queue is full sheds at once, 503 'queue-full' + Retry-After; nothing runs",
    app: { shedding: { gate: { wouldShed: () => true, estimatedWaitMs: () => 3000 } } },
    async run(client, holds) {
      const response = await client.request(checkout(undefined, { amount: 1 }));
      expectProblem(response, 503, 'ERR_LOAD_SHED');
      expect(json(response).reason).toBe('queue-full');
      expect(response.headers['retry-after']).toBe('3');
      expect(holds.checkouts).toBe(0);
    },
  },
  {
    name: "load shedding: a gate wait too long for the low class sheds it, 503 'wait-too-long'; critical is admitted",
    app: {
      shedding: {
        gate: { wouldShed: () => ({ shed: false, waitMs: 20_000 }) },
        maxWaitMs: 30_000,
        priorities: { critical: 1, low: 0.5 },
        defaultPriority: 'low',
      },
      routes: { '/browse': { priority: 'low' }, '/checkout': { priority: 'critical' } },
    },
    async run(client, holds) {
      const shed = await client.request({ path: '/browse' });
      expectProblem(shed, 503, 'ERR_LOAD_SHED');
      expect(json(shed).reason).toBe('wait-too-long');
      expect(shed.headers['retry-after']).toBe('20');
      expect((await client.request(checkout(undefined, { amount: 1 }))).status).toBe(201);
      expect(holds.checkouts).toBe(1);
    },
  },
  {
    name: 'load shedding: a client that leaves before its answer frees its slot at once (also a POST whose body was read), and only once',
    needsSocket: true,
    app: { shedding: oneSlot },
    async run(client, holds) {
      const left = leaving(client, holds, checkout(undefined, { amount: 1, hold: 'slow' }));
      await holds.arrived('slow');
      expectProblem(await client.request({ path: '/' }), 503, 'ERR_LOAD_SHED');
      await left.leave();
      // Its handler still runs, for nobody: the slot is the next request's.
      expect((await client.request(checkout(undefined, { amount: 2 }))).status).toBe(201);
      holds.release('slow');
      expect((await client.request({ path: '/' })).status).toBe(200);
      // Its late answer freed nothing more: one request in flight still fills the one slot.
      const busy = client.request({ path: '/browse?hold=b' });
      await holds.arrived('b');
      expectProblem(await client.request({ path: '/' }), 503, 'ERR_LOAD_SHED');
      holds.release('b');
      expect((await busy).status).toBe(200);
      expect(holds.checkouts).toBe(2);
    },
  },
  {
    name: "idempotency then load shedding (the shop's order): a replay is served while shedding; a shed request is not stored",
    app: { order: 'idempotency-first', shedding: oneSlot, idempotency: { scope: byUserHeader } },
    async run(client, holds) {
      const paid = await client.request(checkout('paid', { amount: 1 }, { 'x-user': 'a' }));
      expect(paid.status).toBe(201);
      const busy = client.request({ path: '/browse?hold=b' });
      await holds.arrived('b');
      // "Replay duplicate checkouts" before "shed excess load": a replay costs the upstream nothing, and
      // telling a student who has paid "busy, nothing was charged" would be false.
      const replay = await client.request(checkout('paid', { amount: 1 }, { 'x-user': 'a' }));
      expect(replay.status).toBe(201);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.body).toBe(paid.body);
      expectProblem(
        await client.request(checkout('new', { amount: 2 }, { 'x-user': 'a' })),
        503,
        'ERR_LOAD_SHED',
      );
      holds.release('b');
      expect((await busy).status).toBe(200);
      const retried = await client.request(checkout('new', { amount: 2 }, { 'x-user': 'a' }));
      expect(retried.status).toBe(201);
      expect(retried.headers['idempotent-replayed']).toBeUndefined();
      expect(holds.checkouts).toBe(2);
    },
  },
  {
    name: "idempotency then load shedding (the shop's order): a client that leaves while its key is looked up frees its slot",
    needsSocket: true,
    app: {
      order: 'idempotency-first',
      shedding: oneSlot,
      idempotency: {},
      idempotencyScope: slowScope,
    },
    async run(client, holds) {
      const body = { amount: 1, hold: 'pay' };
      const left = leaving(client, holds, checkout('k', body, { 'x-user': 'a', 'x-slow': '1' }));
      await holds.arrived('scope');
      await left.leave();
      holds.release('scope');
      // Its key is leased, so it goes on through shedding to the handler: the answer is stored for a retry.
      await holds.arrived('pay');
      expect((await client.request(checkout('other', { amount: 2 }, { 'x-user': 'b' }))).status).toBe(201);
      holds.release('pay');
      const retry = await client.request(checkout('k', body, { 'x-user': 'a' }));
      expect(retry.status).toBe(201);
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(holds.checkouts).toBe(2);
    },
  },
  {
    name: 'rate limit: a client that leaves while an async store decides gets nothing written and no error; skipFailedRequests gives its token back',
    needsSocket: true,
    app: {
      rateLimit: { name: 'ok-only', limit: 1, windowMs: 60_000, skipFailedRequests: true },
      // Every decision waits for the hold `decide` (released once, then they pass at once).
      rateLimitStore: (holds) => {
        const inner = memoryStore();
        return {
          consume: (key, cost, spec) => holds.wait('decide').then(() => inner.consume(key, cost, spec)),
          refund: (key, cost, spec) => inner.refund(key, cost, spec),
          close: () => inner.close(),
        };
      },
    },
    async run(client, holds) {
      const left = leaving(client, holds, { path: '/' });
      await holds.arrived('decide');
      await left.leave();
      holds.release('decide');
      // Its token was taken after it left and given back: the bucket of 1 is full again.
      const next = await client.request({ path: '/' });
      expect(next.status).toBe(200);
      expect(next.headers.ratelimit).toBe('"ok-only";r=0;t=60');
    },
  },
  // ---- a server that cannot see its clients: a Unix socket behind a proxy (the runners listen on one) ----
  {
    name: 'client key: on a Unix socket without trust proxy, every client counts in one bucket and the limiter warns once, route variants included',
    unixSocket: true,
    addressWarnings: 1,
    app: {
      rateLimit: { name: 'per-ip', limit: 3, windowMs: 60_000 },
      routes: { '/search': { rateLimit: { cost: 1, detail: 'Slow down' } } },
    },
    async run(client, holds) {
      // Three clients, told apart by their proxy's X-Forwarded-For, which nothing trusts here.
      const first = await client.request({ path: '/', headers: xff('198.51.100.1') });
      expect(first.status).toBe(200);
      expect(holds.addressWarnings).toHaveLength(1);
      const [warning] = holds.addressWarnings;
      expect(warning).toBeInstanceOf(ClientAddressUnknownError);
      expect(warning).toMatchObject({ code: 'ERR_CLIENT_ADDRESS_UNKNOWN', feature: 'rate-limit' });
      // It says what to set.
      expect(warning?.message).toMatch(/trust proxy/);
      expect(warning?.message).toMatch(/trustProxy: true/);
      expect((await client.request({ path: '/search', headers: xff('198.51.100.2') })).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('198.51.100.3') })).status).toBe(200);
      // The one shared bucket is empty: a fourth client is refused (a limit that still bounds the total).
      const fourth = await client.request({ path: '/', headers: xff('198.51.100.4') });
      expectProblem(fourth, 429, 'ERR_RATE_LIMITED');
      expect(fourth.headers.ratelimit).toMatch(/^"per-ip";r=0;/);
      expect(holds.addressWarnings).toHaveLength(1);
    },
  },
  {
    name: 'client key: on a Unix socket with trust proxy, X-Forwarded-For tells clients apart again, without a warning',
    unixSocket: true,
    app: { trustProxy: true, rateLimit: { name: 'per-ip', limit: 1, windowMs: 60_000 } },
    async run(client) {
      expect((await client.request({ path: '/', headers: xff('198.51.100.1') })).status).toBe(200);
      expect((await client.request({ path: '/', headers: xff('198.51.100.2') })).status).toBe(200);
      expectProblem(
        await client.request({ path: '/', headers: xff('198.51.100.1') }),
        429,
        'ERR_RATE_LIMITED',
      );
    },
  },
  {
    name: "idempotency: on a Unix socket without trust proxy, an anonymous keyed request is 500 ERR_CLIENT_ADDRESS_UNKNOWN, never run nor replayed another client's answer; warned once",
    unixSocket: true,
    addressWarnings: 1,
    app: { idempotency: {} },
    async run(client, holds) {
      const body = { amount: 1 };
      const alice = await client.request(checkout('"order-1"', body, xff('198.51.100.1')));
      expectProblem(alice, 500, 'ERR_CLIENT_ADDRESS_UNKNOWN');
      expect(alice.headers['idempotent-replayed']).toBeUndefined();
      expect(holds.addressWarnings).toHaveLength(1);
      expect(holds.addressWarnings[0]).toMatchObject({ feature: 'idempotency' });
      expect(holds.addressWarnings[0]?.message).toMatch(/`scope`/);
      // Another client with the same (predictable) key and payload: under one shared scope it would have
      // been replayed the first one's answer.
      const bob = await client.request(checkout('"order-1"', body, xff('198.51.100.2')));
      expectProblem(bob, 500, 'ERR_CLIENT_ADDRESS_UNKNOWN');
      expect(holds.checkouts).toBe(0);
      // A client the server can tell apart (its Authorization) is scoped by it, as everywhere.
      const signedIn = { authorization: 'Bearer alice' };
      const first = await client.request(checkout('"order-1"', body, signedIn));
      expect(first.status).toBe(201);
      const again = await client.request(checkout('"order-1"', body, signedIn));
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.body).toBe(first.body);
      // A request without a key is refused for its key first, as anywhere.
      expectProblem(await client.request(checkout(undefined, body)), 400, 'ERR_IDEMPOTENCY_KEY_MISSING');
      expect(holds.checkouts).toBe(1);
      expect(holds.addressWarnings).toHaveLength(1);
    },
  },
  {
    name: 'idempotency: on a Unix socket without trust proxy, a scope that knows the user runs; one that knows none falls back to the unseen address and is refused',
    unixSocket: true,
    addressWarnings: 1,
    app: { idempotency: { scope: byUserHeader } },
    async run(client, holds) {
      const body = { amount: 1 };
      const alice = await client.request(checkout('"order-1"', body, { 'x-user': 'alice' }));
      expect(alice.status).toBe(201);
      expect(holds.addressWarnings).toHaveLength(0);
      const bob = await client.request(checkout('"order-1"', body, { 'x-user': 'bob' }));
      expect(bob.status).toBe(201);
      expect(json(bob).order).not.toBe(json(alice).order);
      const anonymous = await client.request(checkout('"order-1"', body));
      expectProblem(anonymous, 500, 'ERR_CLIENT_ADDRESS_UNKNOWN');
      expectProblem(await client.request(checkout('"order-2"', body)), 500, 'ERR_CLIENT_ADDRESS_UNKNOWN');
      expect(holds.checkouts).toBe(2);
    },
  },
  {
    name: "idempotency: on a Unix socket with trust proxy, clients are scoped by X-Forwarded-For again: another client's same key runs on its own",
    unixSocket: true,
    app: { trustProxy: true, idempotency: {} },
    async run(client, holds) {
      const body = { amount: 1 };
      const alice = await client.request(checkout('"order-1"', body, xff('198.51.100.1')));
      expect(alice.status).toBe(201);
      const bob = await client.request(checkout('"order-1"', body, xff('198.51.100.2')));
      expect(bob.status).toBe(201);
      expect(bob.headers['idempotent-replayed']).toBeUndefined();
      expect(json(bob).order).not.toBe(json(alice).order);
      const again = await client.request(checkout('"order-1"', body, xff('198.51.100.1')));
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.body).toBe(alice.body);
      expect(holds.checkouts).toBe(2);
    },
  },
  {
    name: 'client key: a client gone before the limiter read its address is no misconfiguration: no warning',
    needsSocket: true,
    app: {
      rateLimit: { name: 'per-ip', limit: 5, windowMs: 60_000 },
      // No key for anyone (the default address key is read after it answers), after the hold `key` for a
      // request with `x-slow: 1`.
      rateLimitKey: (holds) => async (req) => {
        if (req.headers['x-slow'] === '1') await holds.wait('key');
        return undefined;
      },
    },
    async run(client, holds) {
      const left = leaving(client, holds, { path: '/', headers: { 'x-slow': '1' } });
      await holds.arrived('key');
      await left.leave();
      holds.release('key');
      // A round trip: the request that was left has been decided by the time it returns.
      const next = await client.request({ path: '/' });
      expect(next.status).toBe(200);
      expect(holds.addressWarnings).toHaveLength(0);
    },
  },
  // ---- store failures (a rejection the adapters leave unhandled fails the run: vitest reports it) ----
  {
    name: 'store failure: a rate-limit store that rejects answers 503 ERR_STORE_UNAVAILABLE + Retry-After',
    app: { rateLimit: { limit: 5, windowMs: 60_000, store: downLimiterStore } },
    async run(client, holds) {
      const response = await client.request({ path: '/' });
      expectProblem(response, 503, 'ERR_STORE_UNAVAILABLE');
      expect(response.headers['retry-after']).toBe('1');
      expectProblem(await client.request(checkout(undefined, { amount: 1 })), 503, 'ERR_STORE_UNAVAILABLE');
      expect(holds.checkouts).toBe(0);
    },
  },
  {
    name: 'store failure: with passOnStoreError a rate-limit store that rejects lets requests through',
    app: { rateLimit: { limit: 5, windowMs: 60_000, store: downLimiterStore, passOnStoreError: true } },
    async run(client, holds) {
      expect((await client.request({ path: '/' })).status).toBe(200);
      expect((await client.request(checkout(undefined, { amount: 1 }))).status).toBe(201);
      expect(holds.checkouts).toBe(1);
    },
  },
  {
    name: 'store failure: an idempotency store whose begin rejects answers 503 + Retry-After; nothing runs',
    app: { idempotency: { store: downIdempotencyStore } },
    async run(client, holds) {
      const response = await client.request(checkout('k', { amount: 1 }));
      expectProblem(response, 503, 'ERR_STORE_UNAVAILABLE');
      expect(response.headers['retry-after']).toBe('1');
      expect(holds.checkouts).toBe(0);
    },
  },
  // ---- bad input ----
  ...[true, false].map(
    (trustProxy): Case => ({
      name: `bad input: absurd X-Forwarded-For and a 15 KB Authorization, trust proxy ${trustProxy ? 'on' : 'off'}: served, never a 500`,
      app: { trustProxy, rateLimit: { limit: 100, windowMs: 60_000 }, idempotency: {} },
      async run(client, holds) {
        for (const forwarded of absurdForwardedFor) {
          expect((await client.request({ path: '/', headers: xff(forwarded) })).status).toBe(200);
        }
        const authorization = `Bearer ${'a'.repeat(15_000)}`;
        expect((await client.request(checkout('big', { amount: 1 }, { authorization }))).status).toBe(201);
        expect(holds.checkouts).toBe(1);
      },
    }),
  ),
  {
    name: 'bad input: an Idempotency-Key field sent twice is 400 ERR_IDEMPOTENCY_KEY_INVALID, never a 500',
    app: { idempotency: {} },
    async run(client, holds) {
      const twice = await client.request({
        ...checkout(undefined, { amount: 1 }),
        headers: { 'idempotency-key': ['"a"', '"a"'] },
      });
      expectProblem(twice, 400, 'ERR_IDEMPOTENCY_KEY_INVALID');
      expect(holds.checkouts).toBe(0);
    },
  },
];

/**
 * Set-ups both adapters must refuse alike: building the app fails (Express: the middleware factory
 * throws; Fastify: `register()`, or the route definition for a route's override) with this error.
 */
export interface SetupCase {
  readonly name: string;
  readonly app: AppSpec;
  /** What the `InvalidOptionError` carries. */
  readonly error: { readonly option: string; readonly message: RegExp };
}

export const setupCases: readonly SetupCase[] = [
  {
    name: 'set-up: replayHeaders naming a hop-by-hop field (Transfer-Encoding) fails: a replay would frame its body twice',
    app: { idempotency: { replayHeaders: ['content-type', 'Transfer-Encoding'] } },
    error: { option: 'replayHeaders', message: /field names a replay may repeat: not .*transfer-encoding/ },
  },
  {
    name: 'set-up: replayHeaders naming Set-Cookie fails: several cookies cannot be stored as one field',
    app: { idempotency: { replayHeaders: ['set-cookie'] } },
    error: { option: 'replayHeaders', message: /\(they belong to one connection or one session\)/ },
  },
  {
    name: "set-up: @fastify/rate-limit's and express-rate-limit's `max` fails naming floodgate's `limit`",
    app: { rateLimit: { max: 100, windowMs: 60_000 } as never },
    error: { option: 'max', message: /^Unknown option `max` for rateLimit\(\); it is `limit` here/ },
  },
  {
    name: "set-up: a route's `message` override fails naming floodgate's `detail`",
    app: {
      rateLimit: { limit: 10, windowMs: 60_000 },
      routes: { '/search': { rateLimit: { message: 'slow down' } as never } },
    },
    error: {
      option: 'message',
      message: /^Unknown option `message` for rateLimit\(\); the text of a refusal is `detail` here/,
    },
  },
];
