import { createHash } from 'node:crypto';
import { type ConnectionOf, openWithoutAddress, UnknownAddressWarning } from './client-key-unknown.js';
import { errorReporter } from './error-reporter.js';
import { IdempotencyKeyError, InvalidScopeError } from './errors.js';
import { requestFingerprint } from './fingerprint.js';
import { parseIdempotencyKey } from './idempotency-key.js';
import type { IdempotencyStore, StoredResponse } from './idempotency-store.js';
import { MemoryIdempotencyStore } from './memory-idempotency-store.js';
import { type HttpAnswer, problemAnswer } from './problem.js';
import { type ClosableResponse, responseClosed } from './response-closed.js';
import {
  checkBoolean,
  checkFunction,
  checkInteger,
  checkObject,
  checkOneOf,
  fail,
  rejectUnknownKeys,
  TOKEN,
} from './validate.js';

/** Options shared by the idempotency middleware of every adapter. */
export interface IdempotencyOptions {
  /**
   * Where keys, leases and stored responses live.
   * @default a new bounded MemoryIdempotencyStore (one process only)
   */
  readonly store?: IdempotencyStore;
  /**
   * Request header carrying the key.
   * @default 'idempotency-key'
   */
  readonly header?: string;
  /**
   * Answer 400 when a request of one of `methods` comes without a key.
   * @default true
   */
  readonly required?: boolean;
  /**
   * Methods the middleware applies to; others pass through untouched (GET, PUT and DELETE are idempotent
   * by definition).
   * @default ['POST', 'PATCH']
   */
  readonly methods?: readonly string[];
  /**
   * A duplicate that arrives while the first request is still being processed:
   * `'conflict'` answers 409 with `Retry-After` (what the draft recommends); `'coalesce'` waits for the
   * first outcome (at most `coalesceTimeoutMs`) and answers the same.
   * @default 'conflict'
   */
  readonly inFlight?: 'conflict' | 'coalesce';
  /**
   * How long a coalesced duplicate waits before it is answered 409.
   * @default 30000
   */
  readonly coalesceTimeoutMs?: number;
  /**
   * Status for a key reused with another payload (Stripe answers 400), from 400 to 499.
   * @default 422
   */
  readonly mismatchStatus?: number;
  /**
   * How long a request holds its key while in flight. A crashed or hung request frees the key after
   * this; the handler must itself be idempotent towards the bank (send the same key) because a takeover
   * runs it again.
   * @default 60000
   */
  readonly leaseMs?: number;
  /**
   * How long a stored response is replayed (Stripe keeps keys at least 24 h).
   * @default 86400000 (24 h)
   */
  readonly ttlMs?: number;
  /**
   * Which outcomes are stored and replayed. The others free the key so the client may retry.
   * @default 2xx, 3xx and 4xx except 408, 409, 425 and 429 (5xx, timeouts and throttling stay retryable)
   */
  readonly shouldStore?: (status: number) => boolean;
  /**
   * Response headers kept with a stored response and replayed. Hop-by-hop fields (`Connection`,
   * `Transfer-Encoding`, `Keep-Alive`, `TE`, `Trailer`, `Upgrade`, `Proxy-Connection`) and `Set-Cookie`
   * are refused: they belong to the first answer's connection or session.
   * @default ['content-type', 'location']
   */
  readonly replayHeaders?: readonly string[];
  /**
   * Larger responses are sent but not stored (the key is freed).
   * @default 1048576 (1 MiB)
   */
  readonly maxBodyBytes?: number;
  /**
   * `Retry-After` sent with a 409 for a key still in flight, and with a 503 when the store fails.
   * @default 1000
   */
  readonly retryAfterMs?: number;
  /**
   * A keyed request with a body nothing read before the middleware (no body parser for its content type):
   * `'refuse'` answers 415 `ERR_IDEMPOTENCY_BODY_UNREAD`, since the fingerprint could not tell one payload
   * from another; `'accept'` is for an endpoint that reads its body itself (a streamed upload): the
   * fingerprint then covers the method, URL and scope only, so a key reused with another payload is
   * replayed the first answer instead of getting `mismatchStatus`.
   * @default 'refuse'
   */
  readonly unreadBody?: 'refuse' | 'accept';
  /**
   * Called with errors the middleware handled itself (a store that failed, a `shouldStore` that threw):
   * they never reach the client as a 500 nor become unhandled rejections. An `onError` that throws is
   * ignored: reporting must not change the answer.
   * @default () => {}
   */
  readonly onError?: (error: unknown) => void;
}

const KNOWN = [
  'store',
  'header',
  'required',
  'methods',
  'inFlight',
  'coalesceTimeoutMs',
  'mismatchStatus',
  'leaseMs',
  'ttlMs',
  'shouldStore',
  'replayHeaders',
  'maxBodyBytes',
  'retryAfterMs',
  'unreadBody',
  'onError',
] as const;

/** The option names every adapter's idempotency entry point accepts from the core. */
export const IDEMPOTENCY_OPTION_NAMES: readonly string[] = KNOWN;

const RETRYABLE_4XX = new Set([408, 409, 425, 429]);

/**
 * The default scope of a request with neither an `Authorization` header nor a client address, whose
 * connection is gone (or unknown): Node forgets the peer of a closed socket.
 */
const ADDRESSLESS_SCOPE = 'ip:unknown';

/**
 * The default scope of a request with neither an `Authorization` header nor a client address on an open
 * connection: the server cannot see its clients (a Unix socket, an untrusted proxy). Not a scope at all:
 * {@link Idempotency.start} refuses it. No address, credential or user id can spell it (those scopes
 * start `ip:`, `auth:` and `user:`), where `ip:unknown` is what trust proxy reads of `X-Forwarded-For: unknown`.
 */
const UNSEEN_ADDRESS_SCOPE = 'unseen-address';

/**
 * Fields no replay may repeat. The hop-by-hop ones (RFC 9110 7.6.1) describe the first answer's connection:
 * a stored `Transfer-Encoding: chunked` goes out beside the replay's `Content-Length` (a message a client
 * must refuse, a smuggling vector behind a proxy) and `Connection: close` would close the retry's
 * connection. `Set-Cookie` may not be joined into one field (RFC 9110 5.3), as a stored field is, and
 * would put a session in the store and hand it out for `ttlMs`.
 */
const NOT_REPLAYED: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'set-cookie',
]);

const STORE_METHODS = ['begin', 'complete', 'release', 'close'] as const;

/** The default of `shouldStore`: 2xx, 3xx and deterministic 4xx. */
export function isStorableStatus(status: number): boolean {
  return status >= 200 && status < 500 && !RETRYABLE_4XX.has(status);
}

/** The request fields the idempotency state machine reads. */
export interface IdempotencyRequest {
  /** The request method; only `methods` are made idempotent. */
  readonly method: string;
  /** Path and query string. */
  readonly url: string;
  /** The raw `Idempotency-Key` field value(s) as the framework gives them. */
  readonly keyHeader: unknown;
  /** The parsed (or raw) body. */
  readonly body?: unknown;
  /**
   * True when the request carries a body nothing has read (no body parser for its content type ran before
   * the middleware). Its fingerprint could not tell one payload from another, so a request with a key is
   * answered 415 `ERR_IDEMPOTENCY_BODY_UNREAD` rather than replayed for a payload it never saw.
   * @default false
   */
  readonly bodyUnread?: boolean;
  /**
   * Who the key belongs to (user or tenant id). One scope's key never replays another scope's response.
   */
  readonly scope: string;
  /**
   * Aborts a coalescing wait, e.g. when the client disconnects. Aborted already, with the default scope of
   * a request without an address, the request is not processed (see {@link Idempotency.start}).
   */
  readonly signal?: AbortSignal;
}

/** What emits `close` when the client goes away: a Node `ServerResponse` (Express `res`, Fastify `reply.raw`). */
export interface ClosingConnection extends ClosableResponse {
  /** Listens once for the connection's `close`. */
  once(event: 'close', listener: () => void): unknown;
  /** Stops listening for `close`. */
  off(event: 'close', listener: () => void): unknown;
}

/** A response as the adapter captured it. */
export interface CapturedResponse {
  /** HTTP status the handler answered. */
  readonly status: number;
  /** Response headers as the handler set them; only the allow-listed `replayHeaders` are stored. */
  readonly headers: Readonly<Record<string, string | number | readonly string[] | undefined>>;
  /** The response body; `undefined` when there was none. */
  readonly body: string | Uint8Array | undefined;
}

/** What to do with a request. */
export type IdempotencyStart =
  /** Not concerned (method, or no key and not required): handle it normally, store nothing. */
  | { readonly kind: 'pass' }
  /** Answer this at once (replay, 400, 409, 415, 422, 503); `replayed` is true for a replay. */
  | {
      readonly kind: 'answer';
      /** The answer to send. */
      readonly answer: HttpAnswer;
      /** Whether it replays a stored response (`Idempotent-Replayed: true`). */
      readonly replayed: boolean;
    }
  /** Handle the request, then hand its response to `ticket.finish()` (or `ticket.abandon()`). */
  | {
      readonly kind: 'proceed';
      /** The key's ownership while the request runs. */
      readonly ticket: IdempotencyTicket;
    };

/**
 * Ownership of a key while its request runs. Exactly one of `finish`/`abandon` takes effect; neither
 * throws nor rejects.
 */
export class IdempotencyTicket {
  /** The idempotency key this ticket holds. */
  readonly key: string;
  readonly #owner: Idempotency;
  readonly #lease: string;
  #settled = false;

  /** @internal */
  constructor(owner: Idempotency, key: string, lease: string) {
    this.#owner = owner;
    this.key = key;
    this.#lease = lease;
  }

  /** True once finish or abandon ran. */
  get settled(): boolean {
    return this.#settled;
  }

  /** Stores the response when it is storable, otherwise frees the key. */
  async finish(response: CapturedResponse): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    await this.#owner._finish(this.key, this.#lease, response);
  }

  /** Frees the key without storing (the request failed or was aborted before an answer). */
  async abandon(): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    await this.#owner._release(this.key, this.#lease);
  }
}

/**
 * The idempotent-endpoint state machine of draft-ietf-httpapi-idempotency-key-header, shared by the
 * Express and Fastify adapters so they cannot drift: first request proceeds and its response is stored;
 * a duplicate with the same payload is replayed with `Idempotent-Replayed: true`; another payload gets
 * 422; a duplicate in flight gets 409 + `Retry-After` or waits for the first outcome ('coalesce').
 *
 * @throws {InvalidOptionError} at construction on an unknown or invalid option.
 */
export class Idempotency {
  /** Where keys, leases and stored responses live (the `store` option, or the memory store it made). */
  readonly store: IdempotencyStore;
  /** Request header carrying the key, lower case. @default 'idempotency-key' */
  readonly header: string;
  /** Whether a request of one of `methods` without a key is answered 400. @default true */
  readonly required: boolean;
  /** What a duplicate of a request in flight gets: 409 (`conflict`) or the first outcome (`coalesce`). */
  readonly inFlight: 'conflict' | 'coalesce';
  readonly #methods: ReadonlySet<string>;
  readonly #coalesceTimeoutMs: number;
  readonly #mismatchStatus: number;
  readonly #leaseMs: number;
  readonly #ttlMs: number;
  readonly #shouldStore: (status: number) => boolean;
  readonly #replayHeaders: readonly string[];
  readonly #maxBodyBytes: number;
  readonly #retryAfterMs: number;
  readonly #refuseUnreadBody: boolean;
  readonly #onError: (error: unknown) => void;
  readonly #ownsStore: boolean;
  readonly #unknownAddress = new UnknownAddressWarning('idempotency');

  constructor(options: IdempotencyOptions = {}) {
    checkObject('options', options);
    rejectUnknownKeys(options, KNOWN, 'idempotency()');
    const store = options.store;
    if (store !== undefined) {
      const given = store as Partial<Record<keyof IdempotencyStore, unknown>> | null;
      if (
        typeof given !== 'object' ||
        given === null ||
        STORE_METHODS.some((name) => typeof given[name] !== 'function') ||
        (given.waitForChange !== undefined && typeof given.waitForChange !== 'function')
      ) {
        fail('store', 'an IdempotencyStore (begin, complete, release, close, optional waitForChange)', store);
      }
    }
    const header = options.header ?? 'idempotency-key';
    if (typeof header !== 'string' || !TOKEN.test(header)) {
      fail('header', 'a header name', header);
    }
    this.header = header.toLowerCase();
    this.required = options.required === undefined ? true : checkBoolean('required', options.required);
    const methods = options.methods ?? ['POST', 'PATCH'];
    if (
      !Array.isArray(methods) ||
      methods.length === 0 ||
      methods.some((m) => typeof m !== 'string' || !TOKEN.test(m))
    ) {
      fail('methods', 'a non-empty array of method names (HTTP tokens)', methods);
    }
    this.#methods = new Set(methods.map((m) => m.toUpperCase()));
    this.inFlight = checkOneOf('inFlight', options.inFlight ?? 'conflict', ['conflict', 'coalesce'] as const);
    this.#coalesceTimeoutMs = checkInteger('coalesceTimeoutMs', options.coalesceTimeoutMs ?? 30_000, 1);
    this.#mismatchStatus = checkInteger('mismatchStatus', options.mismatchStatus ?? 422, 400, 499);
    this.#leaseMs = checkInteger('leaseMs', options.leaseMs ?? 60_000, 1);
    this.#ttlMs = checkInteger('ttlMs', options.ttlMs ?? 86_400_000, 1);
    this.#shouldStore =
      options.shouldStore === undefined
        ? isStorableStatus
        : checkFunction('shouldStore', options.shouldStore);
    const replay = options.replayHeaders ?? ['content-type', 'location'];
    if (!Array.isArray(replay) || replay.some((h) => typeof h !== 'string' || !TOKEN.test(h))) {
      fail('replayHeaders', 'an array of header field names (HTTP tokens)', replay);
    }
    if (replay.some((h) => NOT_REPLAYED.has(h.toLowerCase()))) {
      fail(
        'replayHeaders',
        `field names a replay may repeat: not ${[...NOT_REPLAYED].join(', ')} (they belong to one connection or one session)`,
        replay,
      );
    }
    this.#replayHeaders = replay.map((h) => h.toLowerCase());
    this.#maxBodyBytes = checkInteger('maxBodyBytes', options.maxBodyBytes ?? 1_048_576, 0);
    this.#retryAfterMs = checkInteger('retryAfterMs', options.retryAfterMs ?? 1000, 0);
    this.#refuseUnreadBody =
      checkOneOf('unreadBody', options.unreadBody ?? 'refuse', ['refuse', 'accept'] as const) === 'refuse';
    this.#onError = errorReporter(options.onError);
    // Made last, once every option is known to be good: a bad one throws with nothing built.
    this.#ownsStore = store === undefined;
    this.store = store ?? new MemoryIdempotencyStore();
  }

  /** Whether requests with this method are concerned at all (cheap; no store access). */
  appliesTo(method: string): boolean {
    return this.#methods.has(method.toUpperCase());
  }

  /**
   * {@link start} for a request whose client may go away: a `close` of `connection` (the Node response
   * the framework writes to) aborts a coalescing wait, so a duplicate whose client left stops waiting;
   * one whose connection is closed already never starts to wait. Both adapters start requests this way.
   */
  async startWhileConnected(
    request: Omit<IdempotencyRequest, 'signal'>,
    connection: ClosingConnection,
  ): Promise<IdempotencyStart> {
    // Its `close` came before this call: no listener would ever hear it.
    // A client that left before `start` (while a `scope` function or an earlier middleware ran) sent its
    // `close` already.
    if (responseClosed(connection)) return this.start({ ...request, signal: AbortSignal.abort() });
    const controller = new AbortController();
    const onClose = () => controller.abort();
    connection.once('close', onClose);
    try {
      return await this.start({ ...request, signal: controller.signal });
    } finally {
      connection.off('close', onClose);
    }
  }

  /**
   * Decides what to do with a request. Never rejects for a store failure: that answers 503 +
   * `Retry-After`. A keyed request with `bodyUnread` is answered 415 `ERR_IDEMPOTENCY_BODY_UNREAD` (unless `unreadBody: 'accept'`). A
   * request whose client has left (`signal` aborted) and whose default scope found no client address is
   * answered 400 `ERR_IDEMPOTENCY_SCOPE_UNKNOWN` and not processed: its retry, scoped by the address again,
   * would not find its answer and would run it a second time. A keyed request whose default scope found no
   * address on an open connection (the server cannot see its clients) is answered 500
   * `ERR_CLIENT_ADDRESS_UNKNOWN` and not processed, and the first one is reported as a process warning
   * (`ClientAddressUnknownError`, once per instance). A body JSON cannot write (a cycle, a BigInt:
   * never one a JSON parser made) rejects with JSON's `TypeError`, for the framework's error handler,
   * before the key is leased.
   */
  async start(request: IdempotencyRequest): Promise<IdempotencyStart> {
    if (!this.appliesTo(request.method)) return { kind: 'pass' };
    let key: string | undefined;
    try {
      key = parseIdempotencyKey(request.keyHeader);
    } catch (error) {
      if (!(error instanceof IdempotencyKeyError)) throw error;
      return {
        kind: 'answer',
        replayed: false,
        answer: problemAnswer(400, {
          code: error.code,
          detail: error.message,
          extensions: { reason: error.reason },
        }),
      };
    }
    if (key === undefined) {
      if (!this.required) return { kind: 'pass' };
      return {
        kind: 'answer',
        replayed: false,
        answer: problemAnswer(400, {
          code: 'ERR_IDEMPOTENCY_KEY_MISSING',
          detail: `This endpoint requires an ${canonicalName(this.header)} header`,
          extensions: { header: canonicalName(this.header) },
        }),
      };
    }
    if (request.bodyUnread === true && this.#refuseUnreadBody) {
      // Fingerprinted as no body at all, two payloads would be one: the second would be replayed the
      // first one's answer (and a parser that leaves a placeholder, Express 4's `{}`, does the same).
      return {
        kind: 'answer',
        replayed: false,
        answer: problemAnswer(415, {
          code: 'ERR_IDEMPOTENCY_BODY_UNREAD',
          detail:
            'This endpoint does not read a request body of this content type, ' +
            'so it cannot tell one payload from another under an Idempotency-Key',
        }),
      };
    }
    if (request.scope === UNSEEN_ADDRESS_SCOPE) {
      // Every client the server cannot see would share this one scope: a client reusing another's key
      // (an order id, a counter) with the same payload would be replayed that client's stored answer,
      // someone else's data and, for a payment, a "paid" for a charge never made for it. Running the
      // request without idempotency instead would let a retry charge twice. Only the operator can fix
      // this (trust proxy, or a `scope`), so the answer is a 5xx and the warning says how; a request
      // with a user scope or an `Authorization` header never gets here.
      this.#unknownAddress.warn();
      return {
        kind: 'answer',
        replayed: false,
        answer: problemAnswer(500, {
          code: 'ERR_CLIENT_ADDRESS_UNKNOWN',
          detail:
            'The server cannot tell this client from others, so it cannot keep its Idempotency-Key apart ' +
            'from theirs: the request was not processed',
        }),
      };
    }
    if (request.scope === ADDRESSLESS_SCOPE && request.signal?.aborted === true) {
      // A client that left before its scope was read has no address any more (Node forgets a closed
      // socket's peer, an HTTP/2 stream its session), so `request.ip` read `undefined`. Under the one scope
      // all such requests share, its answer would be stored where its retry never looks, and the retry
      // would run the handler a second time. Nobody is there to read this answer; not running the
      // request is what lets the retry run it once.
      return {
        kind: 'answer',
        replayed: false,
        answer: problemAnswer(400, {
          code: 'ERR_IDEMPOTENCY_SCOPE_UNKNOWN',
          detail: 'The client left before its address was read: the request was not processed',
        }),
      };
    }
    const storeKey = scopedKey(request.scope, key);
    const fingerprint = requestFingerprint(request);
    const deadline = performance.now() + this.#coalesceTimeoutMs;
    const notifying = this.store.waitForChange !== undefined;
    // A store's waitForChange may settle with the key still in flight (a closed store, a spurious wake-up,
    // another duplicate that took the key over first). Waiting on it again at once would spin in
    // microtasks and hold the event loop until the deadline, so the next round waits on a timer instead.
    let notified = false;
    let polls = 0;
    try {
      for (;;) {
        const begun = await this.store.begin(storeKey, fingerprint, this.#leaseMs);
        if (begun.acquired)
          return { kind: 'proceed', ticket: new IdempotencyTicket(this, storeKey, begun.lease) };
        const { record } = begun;
        if (record.fingerprint !== fingerprint) {
          return {
            kind: 'answer',
            replayed: false,
            answer: problemAnswer(this.#mismatchStatus, {
              code: 'ERR_IDEMPOTENCY_KEY_REUSED',
              detail: 'This Idempotency-Key was already used with another request payload',
            }),
          };
        }
        if (record.state === 'completed') {
          return { kind: 'answer', replayed: true, answer: replayAnswer(record.response) };
        }
        const remaining = deadline - performance.now();
        if (this.inFlight === 'conflict' || remaining <= 0 || request.signal?.aborted) {
          return { kind: 'answer', replayed: false, answer: this.#conflict() };
        }
        const poll: boolean = !notifying || notified;
        await this.#waitForChange(storeKey, remaining, poll ? polls++ : -1, request.signal);
        notified = !poll;
      }
    } catch (error) {
      this.#onError(error);
      return {
        kind: 'answer',
        replayed: false,
        answer: problemAnswer(503, {
          code: 'ERR_STORE_UNAVAILABLE',
          detail: 'The idempotency store is unavailable',
          retryAfterMs: this.#retryAfterMs,
        }),
      };
    }
  }

  /** Closes the store when this instance created it (the default memory store). */
  async close(): Promise<void> {
    if (this.#ownsStore) await this.store.close();
  }

  #conflict(): HttpAnswer {
    return problemAnswer(409, {
      code: 'ERR_IDEMPOTENCY_KEY_IN_FLIGHT',
      detail: 'A request with this Idempotency-Key is still being processed',
      retryAfterMs: this.#retryAfterMs,
    });
  }

  /**
   * Waits for the key to change: on the store's notification when `poll` is -1, else on a timer (the
   * `poll`-th of a capped backoff: 10, 20, 40 ... 250 ms), always within `budgetMs` and `signal`.
   */
  async #waitForChange(key: string, budgetMs: number, poll: number, signal?: AbortSignal): Promise<void> {
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const waitMs = poll < 0 ? budgetMs : Math.min(250, 10 * 2 ** poll);
    const timer = setTimeout(onAbort, Math.min(budgetMs, waitMs));
    timer.unref?.();
    try {
      if (poll < 0 && this.store.waitForChange !== undefined) {
        try {
          await this.store.waitForChange(key, controller.signal);
        } catch (error) {
          // Many stores reject a wait when its signal aborts: our own timeout or the client leaving is not
          // a store failure (the loop answers 409 for it).
          if (!controller.signal.aborted) throw error;
        }
      } else
        await new Promise<void>((resolve) =>
          controller.signal.addEventListener('abort', () => resolve(), { once: true }),
        );
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** @internal */
  async _finish(key: string, lease: string, response: CapturedResponse): Promise<void> {
    try {
      const body = response.body;
      const size =
        body === undefined ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
      if (!this.#shouldStore(response.status) || size > this.#maxBodyBytes) {
        await this.store.release(key, lease);
        return;
      }
      const headers: Record<string, string> = {};
      for (const name of this.#replayHeaders) {
        const value = response.headers[name];
        if (value === undefined) continue;
        headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
      }
      const stored: StoredResponse =
        body === undefined || typeof body === 'string'
          ? { status: response.status, headers, body: body ?? '', encoding: 'utf8' }
          : {
              status: response.status,
              headers,
              body: Buffer.from(body).toString('base64'),
              encoding: 'base64',
            };
      await this.store.complete(key, lease, stored, this.#ttlMs);
    } catch (error) {
      this.#onError(error);
      // Nothing was stored (or we cannot tell): free the key now rather than make every retry a 409
      // until the lease runs out. A lease that no longer owns the key (completed, taken over) frees nothing.
      try {
        await this.store.release(key, lease);
      } catch (releaseError) {
        this.#onError(releaseError);
      }
    }
  }

  /** @internal */
  async _release(key: string, lease: string): Promise<void> {
    try {
      await this.store.release(key, lease);
    } catch (error) {
      this.#onError(error);
    }
  }
}

/** Creates an {@link Idempotency} state machine. */
export function createIdempotency(options: IdempotencyOptions = {}): Idempotency {
  return new Idempotency(options);
}

function replayAnswer(response: StoredResponse): HttpAnswer {
  // Checked again here, not only in `replayHeaders`: a record written before that check existed, or by
  // other code sharing the store, may hold one, and over HTTP/2 a connection-specific field makes Node
  // throw: the replay never answered and its rejection went unhandled.
  const headers: Record<string, string> = {};
  for (const name in response.headers) {
    if (!NOT_REPLAYED.has(name.toLowerCase())) headers[name] = response.headers[name] as string;
  }
  headers['idempotent-replayed'] = 'true';
  return {
    status: response.status,
    headers,
    body: response.encoding === 'base64' ? Buffer.from(response.body, 'base64') : response.body,
  };
}

/** Scope and key in one store key; the scope is hashed so its length and content cannot collide. */
function scopedKey(scope: string, key: string): string {
  return `${createHash('sha256').update(scope).digest('base64url').slice(0, 22)}:${key}`;
}

function canonicalName(header: string): string {
  return header.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}

/**
 * The scope of a request from what a user's `scope` function answered: a string or finite number, as
 * `user:…` (anything else throws {@link InvalidScopeError});
 * `undefined`, `null` or `''` (no user known, e.g. `req.get('x-user-id')` without the header) fall back
 * to {@link defaultIdempotencyScope}, never to one constant: anonymous clients must not share one scope,
 * or one would be replayed another's stored response.
 */
export function resolveIdempotencyScope(
  scoped: unknown,
  request: Parameters<typeof defaultIdempotencyScope>[0],
): string {
  if (scoped === undefined || scoped === null || scoped === '') return defaultIdempotencyScope(request);
  // Text or a finite number only: anything else written as text would put many users in one scope
  // (every object is `[object Object]`, `['a']` is `a`).
  if (typeof scoped !== 'string' && !(typeof scoped === 'number' && Number.isFinite(scoped))) {
    throw new InvalidScopeError(scoped);
  }
  // Its own namespace: a user id that reads `ip:203.0.113.5` must not land in that address's scope.
  return `user:${scoped}`;
}

/**
 * The default idempotency scope of a request: `auth:` and its `Authorization` header when it has one,
 * else `ip:` and its client address. The state machine hashes the scope into the store key, so no
 * credential reaches a store. Pass your own (`(req) => req.user.id`) when users authenticate otherwise.
 * Without an address: `ip:unknown` for a client whose connection is gone (Node forgot its peer), and for
 * one on an open connection (the server cannot see its clients: a Unix socket, an untrusted proxy)
 * `unseen-address`, which {@link Idempotency.start} answers 500 `ERR_CLIENT_ADDRESS_UNKNOWN`.
 */
export function defaultIdempotencyScope(
  request: ConnectionOf & {
    readonly ip?: string | undefined;
    readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  },
): string {
  const auth = request.headers.authorization;
  if (typeof auth === 'string' && auth !== '') return `auth:${auth}`;
  if (request.ip !== undefined) return `ip:${request.ip}`;
  return openWithoutAddress(request) ? UNSEEN_ADDRESS_SCOPE : ADDRESSLESS_SCOPE;
}
