import type { LimiterStore } from '@floodgate/token-bucket';
import {
  addressKey,
  boundedKey,
  type KeyableRequest,
  type KeyGenerator,
  presentAddressKey,
} from './client-key.js';
import { openWithoutAddress, UNKNOWN_ADDRESS_KEY, UnknownAddressWarning } from './client-key-unknown.js';
import { errorReporter } from './error-reporter.js';
import { InvalidCostError, InvalidKeyError } from './errors.js';
import {
  type DecisionLike,
  type PolicyOutcome,
  type QuotaPolicy,
  RateLimitHeaders,
  type StandardHeaders,
} from './headers.js';
import { LastRefusal, type Refusal } from './last-refusal.js';
import { createKeyedLimiter, type KeyedLimiterLike } from './limiter.js';
import { PEER_RATE_LIMIT_OPTIONS } from './peer-options.js';
import { type HttpAnswer, PROBLEM_CONTENT_TYPE, problemAnswer, retryAfterSeconds } from './problem.js';
import { RecentFields } from './recent-fields.js';
import { type ClosableResponse, responseClosed } from './response-closed.js';
import {
  checkBoolean,
  checkFunction,
  checkInteger,
  checkNumber,
  checkObject,
  fail,
  rejectUnknownKeys,
} from './validate.js';

/** The part of Node's `ServerResponse` {@link RateLimit.settleOnClose} reads. */
export interface ClosingResponse extends ClosableResponse {
  /** Listens once for the response's `close`. */
  once(event: 'close', listener: () => void): unknown;
  /** True once the response was ended (its status is then final). */
  readonly writableEnded: boolean;
  /** The response status, read when the response has ended. */
  readonly statusCode: number;
}

/** One quota: a token bucket per key. */
export interface RateLimitPolicy<Req> {
  /**
   * Name sent in the draft-8 `RateLimit` fields (`"per-user"`): 1 to 64 printable ASCII characters, unique
   * among the policies.
   * @default `${limit}-in-${window}s`, as express-rate-limit's `identifier`
   */
  readonly name?: string;
  /**
   * Requests a client may burst: the bucket capacity, an integer from 1 to 999999999999999 (the largest
   * Structured Field integer). Required unless `limiter` is given.
   */
  readonly limit?: number;
  /**
   * Time an empty bucket takes to refill completely: on average `limit` requests per `windowMs`. From 1 ms
   * to 999999999999999 s.
   * @default 60000
   */
  readonly windowMs?: number;
  /**
   * The bucket key of a request; `undefined` falls back to the client address. Use a constant
   * (`() => 'global'`) for one bucket shared by all. A finite number keys the bucket of its decimal
   * string (a user id); anything else makes `check` reject with `InvalidKeyError`. A key longer than 256
   * characters reaches the store as a hash of it (`long:` + 22 characters), so memory per key is bounded.
   * @default the client address as the framework sees it (trust-proxy applied), IPv6 grouped by `ipv6Subnet`
   */
  readonly key?: KeyGenerator<Req>;
  /**
   * Where the buckets live (any @floodgate/token-bucket `LimiterStore`: memory or @floodgate/redis).
   * @default an in-process memory store
   */
  readonly store?: LimiterStore;
  /** A ready keyed limiter (shared between routes, say) instead of `limit`/`windowMs`/`store`. */
  readonly limiter?: KeyedLimiterLike;
}

/** Options of every adapter's rate-limit entry point. */
export interface RateLimitOptions<Req> extends RateLimitPolicy<Req> {
  /** Several quotas checked together (e.g. per user and global); replaces the single-policy fields. */
  readonly policies?: readonly RateLimitPolicy<Req>[];
  /**
   * Tokens a request costs, or a function of the request (expensive routes cost more): a number above 0
   * and at most the smallest policy's `limit` (a function answering another makes `check` reject with
   * `InvalidCostError`).
   * @default 1
   */
  readonly cost?: number | ((request: Req) => number);
  /**
   * Requests for which this returns true are not counted and get no headers.
   * @default undefined
   */
  readonly skip?: (request: Req) => boolean | Promise<boolean>;
  /**
   * Client addresses (exact `req.ip` or its grouped key) never limited, or a function of the request and
   * its address key (the name @fastify/rate-limit uses).
   * @default []
   */
  readonly allowList?: readonly string[] | ((request: Req, key: string) => boolean);
  /**
   * Count and send headers but never block; `onLimit` still fires. For rolling out a limit safely: a
   * failing store lets the request through too (reported to `onError`), whatever `passOnStoreError` says.
   * With several policies every one is asked for every request, also after one refused (the request is
   * served, so each counts it), and the result's `outcomes` tell what each would have done, whatever
   * their order. The fields are those the enforced limit would send, describing the first policy that
   * refused, without `Retry-After`.
   * @default false
   */
  readonly dryRun?: boolean;
  /**
   * Standard RateLimit fields: draft-8 (named policies, the form of the current draft), draft-7,
   * draft-6, or false.
   * @default 'draft-8'
   */
  readonly standardHeaders?: StandardHeaders;
  /**
   * Also send the legacy `X-RateLimit-*` fields.
   * @default false
   */
  readonly legacyHeaders?: boolean;
  /**
   * Send `pk` (a keyed hash of the bucket key, never the key) in draft-8 fields; a string is the secret.
   * @default false
   */
  readonly partitionKey?: boolean | string;
  /**
   * Prefix length IPv6 clients are grouped by in the default key (1 to 128), or false.
   * @default 56
   */
  readonly ipv6Subnet?: number | false;
  /**
   * Status of a refused request, from 400 to 599.
   * @default 429
   */
  readonly statusCode?: number;
  /**
   * The human-readable text of a refusal: the `detail` member of its problem+json body, which keeps its
   * `code`, `policy` and `retryAfter` (express-rate-limit's `message`, the message @fastify/rate-limit's
   * `errorResponseBuilder` writes). Set once: every refusal of this limit (or of a route's `.with()` /
   * `config.floodgate.rateLimit` override) carries it. A store failure's 503 keeps its own.
   * @default 'Too many requests; retry after the time given in Retry-After'
   * @example rateLimit({ name: 'login', limit: 5, windowMs: 900_000, detail: 'Too many sign-in attempts; try again later' })
   */
  readonly detail?: string;
  /**
   * When a store fails: `true` lets the request through (fail open); `false` answers 503 + `Retry-After`.
   * A store may also decide itself (a Redis store in fail-open mode answers instead of throwing).
   * @default false
   */
  readonly passOnStoreError?: boolean;
  /**
   * Gives a request's tokens back once its response counts as failed (`requestWasSuccessful` answers
   * false, or the connection closed before the response ended): only successful requests are counted.
   * express-rate-limit's option of the same name.
   * @default false
   */
  readonly skipFailedRequests?: boolean;
  /**
   * Gives a request's tokens back once its response counts as successful: only failures are counted, as
   * for a login limit that counts wrong passwords. express-rate-limit's option of the same name.
   * @default false
   */
  readonly skipSuccessfulRequests?: boolean;
  /**
   * Whether a finished response counts as successful, for `skipFailedRequests`/`skipSuccessfulRequests`.
   * What it throws goes to `onError`, and the request stays counted.
   * @default (request, statusCode) => statusCode < 400
   */
  readonly requestWasSuccessful?: (request: Req, statusCode: number) => boolean;
  /**
   * Called once for every request over a limit (also in dry-run), e.g. for metrics; `result.outcomes`
   * tells which policies refused (in dry run every policy's decision). What it throws goes to `onError`.
   */
  readonly onLimit?: (request: Req, result: RateLimitResult) => void;
  /**
   * Called with store errors (they never reach the client as a 500). An `onError` that throws is ignored:
   * reporting must not change the answer.
   */
  readonly onError?: (error: unknown) => void;
  /**
   * For the default memory stores: the most keys each policy tracks at once. A policy with its own
   * `store` or `limiter` is bounded there and ignores it (a bad value throws all the same).
   * @default 100000
   */
  readonly maxKeys?: number;
  /**
   * For the default memory stores: a monotonic clock in milliseconds (tests inject one). A policy with its
   * own `store` or `limiter` keeps that one's clock.
   * @default performance.now
   */
  readonly clock?: () => number;
}

const POLICY_KEYS = ['name', 'limit', 'windowMs', 'key', 'store', 'limiter'] as const;
const KNOWN = [
  ...POLICY_KEYS,
  'policies',
  'cost',
  'skip',
  'allowList',
  'dryRun',
  'standardHeaders',
  'legacyHeaders',
  'partitionKey',
  'ipv6Subnet',
  'statusCode',
  'detail',
  'passOnStoreError',
  'skipFailedRequests',
  'skipSuccessfulRequests',
  'requestWasSuccessful',
  'onLimit',
  'onError',
  'maxKeys',
  'clock',
] as const;

/** The option names every adapter's rate-limit entry point accepts from the core. */
export const RATE_LIMIT_OPTION_NAMES: readonly string[] = KNOWN;

/** What every outcome of one request has. */
interface RateLimitOutcome {
  /** True when a policy refused, also in dry-run. */
  readonly limited: boolean;
  /**
   * Header fields to add to the response (lower-case names). With one policy and no partition key the
   * list may be shared with other answers that read the same (frozen; copy before changing).
   */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /**
   * Each consulted policy's decision: up to the first that refused, or in dry run every policy's (a
   * refusal does not stop the check there).
   */
  readonly outcomes: readonly PolicyOutcome[];
}

/** Let through and counted (in dry run also when `limited`). */
export interface RateLimitAllowed extends RateLimitOutcome {
  readonly action: 'allow';
  /** Nothing to answer: the request goes on. */
  readonly answer?: undefined;
  /** What the request cost each policy (what `skipFailedRequests` gives back). */
  readonly cost: number;
}

/** Refused: send {@link RateLimitDenied.answer} (429, or 503 when the store failed). */
export interface RateLimitDenied extends RateLimitOutcome {
  readonly action: 'deny';
  /**
   * The refusal to send. While refusals read the same (same policy, numbers and seconds), one frozen
   * answer and its fields are handed out again, so a flood of refused requests formats them once; copy
   * before changing.
   */
  readonly answer: HttpAnswer;
}

/** Not counted: `skip`, the allow list, or a store error passed on (`passOnStoreError`, dry run). */
export interface RateLimitSkipped extends RateLimitOutcome {
  readonly action: 'skip';
  /** Nothing to answer: the request goes on. */
  readonly answer?: undefined;
}

/**
 * The outcome of one request, told apart by `action`: after `result.action === 'deny'`, TypeScript knows
 * `result.answer` is there.
 */
export type RateLimitResult = RateLimitAllowed | RateLimitDenied | RateLimitSkipped;

interface Policy<Req> {
  readonly limiter: KeyedLimiterLike;
  readonly key: KeyGenerator<Req> | undefined;
  readonly owned: boolean;
}

const SKIP: RateLimitSkipped = Object.freeze({ action: 'skip', limited: false, headers: [], outcomes: [] });

type MaybePromise<T> = T | Promise<T>;

function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as Promise<T> | undefined)?.then === 'function';
}

const DEFAULT_DETAIL = 'Too many requests; retry after the time given in Retry-After';

/** The largest Structured Field integer (RFC 9651 §3.3.1): `q`, `r`, `w` and `t` must not exceed it. */
const MAX_SF_INTEGER = 999_999_999_999_999;

/** Checks a `store` as the rate limit names its options, before `keyedLimiter` would with its own error. */
function checkStore(option: string, store: unknown): void {
  const given = store as Partial<Record<keyof LimiterStore, unknown>> | null;
  if (
    typeof given !== 'object' ||
    given === null ||
    typeof given.consume !== 'function' ||
    typeof given.refund !== 'function'
  ) {
    fail(option, 'a LimiterStore (consume, refund, close)', store);
  }
}

/** `60s` for a default policy name; the window is capacity / refill rate, so float noise is shaved off. */
function windowLabel(windowMs: number): string {
  return `${Math.max(1, Math.ceil((windowMs - 1) / 1000))}s`;
}

/** What a framework adapter tells the core about its requests. */
export interface RateLimitAdapter<Req> {
  /**
   * The client address as the framework sees it, trust-proxy setting applied: what `request.ip` says.
   * An adapter gives its own when the framework's `ip` is costly to read (Express parses
   * `X-Forwarded-For` on every read of `req.ip`, even with `trust proxy` off).
   * @default (request) => request.ip
   */
  readonly clientAddress?: (request: Req) => string | undefined;
}

const requestIp = (request: KeyableRequest): string | undefined => request.ip;

/**
 * Framework-agnostic rate limiting with one or several token-bucket policies. Answers synchronously with
 * a synchronous store (the memory default), so the adapters add no promise per request on that path.
 *
 * @throws {InvalidOptionError} at construction on an unknown or invalid option, before any limiter is
 *   built.
 */
export class RateLimit<Req extends KeyableRequest> {
  /** Writes the RateLimit fields of the `standardHeaders` and `legacyHeaders` options. */
  readonly headers: RateLimitHeaders;
  /** Whether it counts and sends headers but never blocks (the `dryRun` option). */
  readonly dryRun: boolean;
  /**
   * True with `skipFailedRequests` or `skipSuccessfulRequests`: the adapter must call {@link settle} once
   * the response of an allowed request has ended or its connection closed.
   */
  readonly settlesResponses: boolean;
  readonly #policies: readonly Policy<Req>[];
  readonly #cost: number | ((request: Req) => number);
  readonly #skip: ((request: Req) => boolean | Promise<boolean>) | undefined;
  readonly #allowSet: ReadonlySet<string> | undefined;
  readonly #allowFn: ((request: Req, key: string) => boolean) | undefined;
  readonly #subnet: number | false;
  readonly #statusCode: number;
  readonly #passOnStoreError: boolean;
  readonly #skipFailed: boolean;
  readonly #skipSuccessful: boolean;
  readonly #wasSuccessful: ((request: Req, statusCode: number) => boolean) | undefined;
  readonly #onLimit: ((request: Req, result: RateLimitResult) => void) | undefined;
  readonly #onError: (error: unknown) => void;
  readonly #options: RateLimitOptions<Req>;
  /** The smallest capacity: a request may not cost more than a bucket can ever hold. */
  readonly #maxCost: number;
  readonly #denyPrefix: readonly string[];
  readonly #shared: readonly RateLimitPolicy<Req>[];
  readonly #adapter: RateLimitAdapter<Req>;
  /** Set when the limit is one policy keyed by address at a fixed cost, with no skip or allow list. */
  readonly #simple: KeyedLimiterLike | undefined;
  readonly #clientAddress: (request: Req) => string | undefined;
  /** Shared with every limit {@link derive}d from this one: one middleware, one warning. */
  #unknownAddress = new UnknownAddressWarning('rate-limit');
  readonly #lastRefusal = new LastRefusal();
  readonly #recentFields = new RecentFields();

  /**
   * @param options What to limit and how to answer (see {@link RateLimitOptions}).
   * @param adapter Set by the framework adapters, not by users.
   */
  constructor(options: RateLimitOptions<Req>, adapter: RateLimitAdapter<Req> = {}) {
    this.#options = options;
    this.#adapter = adapter;
    this.#clientAddress = adapter.clientAddress ?? requestIp;
    checkObject('options', options);
    rejectUnknownKeys(options, KNOWN, 'rateLimit()', PEER_RATE_LIMIT_OPTIONS);
    // Every option is checked before a limiter is built: a bad one throws with nothing allocated.
    // maxKeys and clock are checked whether or not a policy uses them (every policy may bring its own
    // store or limiter): a bad value is a mistake all the same, and it would start to matter the day a
    // policy drops its store.
    const maxKeys = options.maxKeys === undefined ? undefined : checkInteger('maxKeys', options.maxKeys, 1);
    const detail = options.detail ?? DEFAULT_DETAIL;
    if (typeof detail !== 'string' || detail === '') fail('detail', 'a non-empty string', detail);
    const clock =
      options.clock === undefined ? undefined : checkFunction<() => number>('clock', options.clock);
    let specs: readonly RateLimitPolicy<Req>[];
    if (options.policies !== undefined) {
      if (!Array.isArray(options.policies) || options.policies.length === 0) {
        fail('policies', 'a non-empty array of policies', options.policies);
      }
      for (const name of POLICY_KEYS) {
        if (options[name] !== undefined)
          fail(name, 'absent when `policies` is given (set it on a policy)', options[name]);
      }
      specs = options.policies;
    } else {
      specs = [options];
    }
    const quotas: QuotaPolicy[] = [];
    const names = new Set<string>();
    for (const [index, spec] of specs.entries()) {
      const where = options.policies === undefined ? '' : `policies[${index}].`;
      checkObject(`${where || 'options'}`, spec);
      if (options.policies !== undefined)
        rejectUnknownKeys(spec, POLICY_KEYS, `policies[${index}]`, PEER_RATE_LIMIT_OPTIONS);
      let bucket: KeyedLimiterLike['spec'];
      if (spec.limiter !== undefined) {
        const given = spec.limiter as Partial<KeyedLimiterLike> | null;
        if (typeof given?.tryTake !== 'function' || typeof given.spec !== 'object') {
          fail(`${where}limiter`, 'a keyed limiter (tryTake, refund, spec)', spec.limiter);
        }
        for (const name of ['limit', 'windowMs', 'store'] as const) {
          if (spec[name] !== undefined)
            fail(`${where}${name}`, 'absent when `limiter` is given (the limiter has its own)', spec[name]);
        }
        bucket = spec.limiter.spec;
      } else {
        // Both reach the RateLimit fields as Structured Field integers (`q`, `r`; `w`, `t` in seconds).
        if (spec.limit === undefined)
          fail(
            `${where}limit`,
            `an integer between 1 and ${MAX_SF_INTEGER} (the burst a client may send)`,
            undefined,
          );
        const limit = checkInteger(`${where}limit`, spec.limit, 1, MAX_SF_INTEGER);
        const windowMs = checkNumber(`${where}windowMs`, spec.windowMs ?? 60_000, 1, MAX_SF_INTEGER * 1000);
        if (spec.store !== undefined) checkStore(`${where}store`, spec.store);
        // The spec keyedLimiter makes of `{ tokens: limit, perMs: windowMs }`, read before it is built.
        bucket = { capacity: limit, refillPerMs: limit / windowMs };
      }
      if (spec.key !== undefined) checkFunction(`${where}key`, spec.key);
      const { capacity, refillPerMs } = bucket;
      const windowMs = capacity / refillPerMs;
      const name = spec.name ?? `${capacity}-in-${windowLabel(windowMs)}`;
      if (typeof name !== 'string') fail(`${where}name`, 'a string', name);
      if (names.has(name)) fail(`${where}name`, 'a name no other policy has', name);
      names.add(name);
      quotas.push({ name, limit: capacity, windowMs });
    }
    // Checks the header options and every policy name (printable ASCII) too.
    const headers = new RateLimitHeaders(quotas, {
      ...(options.standardHeaders === undefined ? {} : { standardHeaders: options.standardHeaders }),
      ...(options.legacyHeaders === undefined ? {} : { legacyHeaders: options.legacyHeaders }),
      ...(options.partitionKey === undefined ? {} : { partitionKey: options.partitionKey }),
    });
    const maxCost = Math.min(...quotas.map((q) => q.limit));
    const cost = options.cost ?? 1;
    if (typeof cost === 'number') checkNumber('cost', cost, Number.MIN_VALUE, maxCost);
    else checkFunction('cost', cost);
    const skip =
      options.skip === undefined
        ? undefined
        : checkFunction<RateLimitOptions<Req>['skip']>('skip', options.skip);
    const allow = options.allowList;
    if (allow !== undefined && typeof allow !== 'function') {
      if (!Array.isArray(allow) || allow.some((a) => typeof a !== 'string')) {
        fail('allowList', 'an array of addresses or a function', allow);
      }
    }
    const subnet =
      options.ipv6Subnet === undefined || options.ipv6Subnet === false
        ? (options.ipv6Subnet ?? 56)
        : checkInteger('ipv6Subnet', options.ipv6Subnet, 1, 128);
    const dryRun = options.dryRun === undefined ? false : checkBoolean('dryRun', options.dryRun);
    const statusCode = checkInteger('statusCode', options.statusCode ?? 429, 400, 599);
    const passOnStoreError =
      options.passOnStoreError === undefined
        ? false
        : checkBoolean('passOnStoreError', options.passOnStoreError);
    const skipFailed =
      options.skipFailedRequests === undefined
        ? false
        : checkBoolean('skipFailedRequests', options.skipFailedRequests);
    const skipSuccessful =
      options.skipSuccessfulRequests === undefined
        ? false
        : checkBoolean('skipSuccessfulRequests', options.skipSuccessfulRequests);
    const wasSuccessful =
      options.requestWasSuccessful === undefined
        ? undefined
        : checkFunction<RateLimitOptions<Req>['requestWasSuccessful']>(
            'requestWasSuccessful',
            options.requestWasSuccessful,
          );
    const onLimit =
      options.onLimit === undefined
        ? undefined
        : checkFunction<RateLimitOptions<Req>['onLimit']>('onLimit', options.onLimit);
    const onError = errorReporter(options.onError);

    // Everything is valid: build the limiters.
    const policies: Policy<Req>[] = [];
    const shared: RateLimitPolicy<Req>[] = [];
    for (const [index, spec] of specs.entries()) {
      const { name, limit } = quotas[index] as QuotaPolicy;
      const limiter =
        spec.limiter ??
        createKeyedLimiter({
          capacity: limit,
          windowMs: spec.windowMs ?? 60_000,
          store: spec.store,
          // They configure the memory stores made here; a store passed in is configured on its own.
          maxKeys: spec.store === undefined ? maxKeys : undefined,
          clock: spec.store === undefined ? clock : undefined,
        });
      policies.push({ limiter, key: spec.key, owned: spec.limiter === undefined });
      shared.push(spec.key === undefined ? { name, limiter } : { name, limiter, key: spec.key });
    }
    this.#shared = shared;
    this.headers = headers;
    this.#policies = policies;
    this.#denyPrefix = quotas.map((quota) => {
      const { body } = problemAnswer(statusCode, {
        code: 'ERR_RATE_LIMITED',
        detail,
        extensions: { policy: quota.name },
      });
      return `${(body as string).slice(0, -1)},"retryAfter":`;
    });
    this.#maxCost = maxCost;
    this.#cost = cost;
    this.#skip = skip;
    this.#allowSet = Array.isArray(allow) && allow.length > 0 ? new Set(allow) : undefined;
    this.#allowFn =
      typeof allow === 'function' ? (allow as (request: Req, key: string) => boolean) : undefined;
    this.#subnet = subnet;
    this.dryRun = dryRun;
    this.#statusCode = statusCode;
    this.#passOnStoreError = passOnStoreError;
    this.#skipFailed = skipFailed;
    this.#skipSuccessful = skipSuccessful;
    this.#wasSuccessful = wasSuccessful;
    this.settlesResponses = skipFailed || skipSuccessful;
    this.#onLimit = onLimit;
    this.#onError = onError;
    const only = policies.length === 1 ? (policies[0] as Policy<Req>) : undefined;
    this.#simple =
      only !== undefined &&
      only.key === undefined &&
      typeof cost === 'number' &&
      skip === undefined &&
      this.#allowSet === undefined &&
      this.#allowFn === undefined
        ? only.limiter
        : undefined;
  }

  /**
   * Decides one request: counts it against every policy (a refusal gives back the tokens the other
   * policies took; in dry run the request is served, so every policy counts it) and formats the headers.
   * Synchronous with synchronous stores and key generators. Never throws or rejects for a store failure:
   * that becomes a 503 answer or, with `passOnStoreError` or in dry run, a skip. Never throws at all: what a
   * `key`, `skip`, `cost` or `allowList` function throws (or an `InvalidCostError` for a bad cost, an
   * `InvalidKeyError` for a bad key) rejects, after what other policies took is given back.
   */
  check(request: Req): MaybePromise<RateLimitResult> {
    if (this.#simple !== undefined) return this.#checkSimple(request, this.#simple);
    if (this.#skip !== undefined) {
      let skipped: MaybePromise<boolean>;
      try {
        skipped = this.#skip(request);
      } catch (error) {
        return Promise.reject(error);
      }
      if (isPromise(skipped)) return skipped.then((s) => (s ? SKIP : this.#afterSkip(request)));
      if (skipped) return SKIP;
    }
    return this.#afterSkip(request);
  }

  /**
   * The common case (one policy keyed by client address, fixed cost, nothing skipped) in one step: the
   * same decision as the general path, with four fewer calls per request. On Fastify, whose bare route
   * costs a few tens of µs, each call on the way is a visible share of the limiter's cost.
   */
  #checkSimple(request: Req, limiter: KeyedLimiterLike): MaybePromise<RateLimitResult> {
    const address = this.#clientAddress(request);
    // The one `undefined` test addressKey made, made here: a missing address costs nothing more to notice.
    const key =
      address === undefined
        ? this.#unknownAddressKey(request)
        : boundedKey(presentAddressKey(address, this.#subnet));
    let decision: MaybePromise<DecisionLike>;
    try {
      decision = limiter.tryTake(key, this.#cost as number);
    } catch (error) {
      return this.#storeFailed(error);
    }
    if (isPromise(decision)) {
      return decision.then(
        (settled) => this.#result(request, [{ policy: 0, decision: settled, key }], this.#cost as number),
        (error: unknown) => this.#storeFailed(error),
      );
    }
    return this.#result(request, [{ policy: 0, decision, key }], this.#cost as number);
  }

  #afterSkip(request: Req): MaybePromise<RateLimitResult> {
    let address: string | undefined;
    if (this.#allowSet !== undefined || this.#allowFn !== undefined) {
      const ip = this.#clientAddress(request);
      const ipKey = addressKey(ip, this.#subnet);
      if (this.#allowSet?.has(ip ?? '') || this.#allowSet?.has(ipKey)) return SKIP;
      if (this.#allowFn !== undefined) {
        let allowed: boolean;
        try {
          allowed = this.#allowFn(request, ipKey);
        } catch (error) {
          return Promise.reject(error);
        }
        if (allowed) return SKIP;
      }
      // A missing address is looked up again where it keys a bucket, and reported there: a policy whose
      // own key answers never shares the `unknown` bucket.
      if (ip !== undefined) address = ipKey;
    }
    let cost = this.#cost;
    if (typeof cost !== 'number') {
      try {
        cost = cost(request);
      } catch (error) {
        return Promise.reject(error);
      }
      if (!(typeof cost === 'number' && cost > 0 && cost <= this.#maxCost)) {
        return Promise.reject(new InvalidCostError(cost, this.#maxCost));
      }
    }
    return this.#from(request, cost, 0, [], address);
  }

  /** Walks the policies from `index`, staying synchronous until a key generator or store answers a promise. */
  #from(
    request: Req,
    cost: number,
    index: number,
    outcomes: PolicyOutcome[],
    address: string | undefined,
  ): MaybePromise<RateLimitResult> {
    for (let i = index; i < this.#policies.length; i += 1) {
      const policy = this.#policies[i] as Policy<Req>;
      let key: MaybePromise<string | number | undefined>;
      if (policy.key === undefined) key = undefined;
      else {
        try {
          key = policy.key(request);
        } catch (error) {
          // As for a key that rejects: the earlier policies' tokens go back, and the check rejects.
          this.#refund(outcomes, cost);
          return Promise.reject(error);
        }
      }
      if (isPromise(key)) {
        return key.then(
          (k) =>
            this.#take(request, cost, i, outcomes, address, k) ??
            this.#from(request, cost, i + 1, outcomes, address),
          (error: unknown) => {
            this.#refund(outcomes, cost);
            throw error;
          },
        );
      }
      const taken = this.#take(request, cost, i, outcomes, address, key);
      if (taken !== undefined) return taken;
    }
    return this.#result(request, outcomes, cost);
  }

  /** Takes from policy `i`; answers undefined to continue synchronously with the next policy. */
  #take(
    request: Req,
    cost: number,
    i: number,
    outcomes: PolicyOutcome[],
    address: string | undefined,
    answered: string | number | undefined,
  ): MaybePromise<RateLimitResult> | undefined {
    const policy = this.#policies[i] as Policy<Req>;
    let generated = answered;
    if (typeof generated !== 'string' && generated !== undefined) {
      // Anything else would reach the store, which refuses it: that reads as a store failure (503 for
      // every client) when it is the app's mistake.
      if (typeof generated === 'number' && Number.isFinite(generated)) generated = String(generated);
      else {
        this.#refund(outcomes, cost);
        return Promise.reject(new InvalidKeyError(generated));
      }
    }
    const key = boundedKey(generated ?? address ?? this.#defaultKey(request));
    let decision: MaybePromise<DecisionLike>;
    try {
      decision = policy.limiter.tryTake(key, cost);
    } catch (error) {
      return this.#storeFailed(error, outcomes, cost);
    }
    if (isPromise(decision)) {
      return decision.then(
        (d) => this.#record(request, cost, i, outcomes, address, key, d),
        (error) => this.#storeFailed(error, outcomes, cost),
      );
    }
    // The length test first: a single policy decides without reading more.
    if (i + 1 < this.#policies.length && (decision.allowed || this.dryRun)) {
      outcomes.push({ policy: i, decision, key });
      return undefined;
    }
    return this.#record(request, cost, i, outcomes, address, key, decision);
  }

  /** The bucket key of a request no key generator named: its client address. */
  #defaultKey(request: Req): string {
    const address = this.#clientAddress(request);
    return address === undefined
      ? this.#unknownAddressKey(request)
      : presentAddressKey(address, this.#subnet);
  }

  /**
   * The key of a request without a client address. All such requests share one bucket: the limit still
   * bounds what they cost together, which is what it protects, and nothing crosses from one client to
   * another but the quota. Refusing them (a 5xx for every client) or letting them through unlimited (no
   * limit at all, unseen) would each be worse, and a misconfiguration fails loudly instead: on an open
   * connection the server cannot see its clients (a Unix socket, an untrusted proxy), which this limit
   * reports once. A client that has gone has merely had its address forgotten (Node drops it with the
   * socket), and is counted there without a word.
   */
  #unknownAddressKey(request: Req): string {
    if (openWithoutAddress(request)) this.#unknownAddress.warn();
    return UNKNOWN_ADDRESS_KEY;
  }

  #record(
    request: Req,
    cost: number,
    i: number,
    outcomes: PolicyOutcome[],
    address: string | undefined,
    key: string,
    decision: DecisionLike,
  ): MaybePromise<RateLimitResult> {
    outcomes.push({ policy: i, decision, key });
    if (!decision.allowed && !this.dryRun) {
      this.#refund(outcomes, cost);
      return this.#result(request, outcomes, cost);
    }
    // In dry run a refusal does not stop the check: the request is served all the same, so every policy
    // counts it, and what each would have done does not depend on the order of the policies.
    if (i + 1 < this.#policies.length) return this.#from(request, cost, i + 1, outcomes, address);
    return this.#result(request, outcomes, cost);
  }

  /**
   * A refused request gives back what the other policies took: it was not served. Also in dry run for a
   * key error or a store failure: the request was not counted whole, so no policy keeps a part of it.
   */
  #refund(outcomes: readonly PolicyOutcome[], cost: number): void {
    for (const o of outcomes) {
      if (!o.decision.allowed) continue;
      const policy = this.#policies[o.policy] as Policy<Req>;
      try {
        const done = policy.limiter.refund(o.key, cost);
        if (isPromise(done)) done.catch(this.#onError);
      } catch (error) {
        this.#onError(error);
      }
    }
  }

  #result(request: Req, outcomes: readonly PolicyOutcome[], cost: number): RateLimitResult {
    // Wall-clock time only feeds the legacy X-RateLimit-Reset; skip the call otherwise.
    const nowMs = this.headers.legacyHeaders ? Date.now() : 0;
    let denied: PolicyOutcome | undefined;
    for (let i = 0; i < outcomes.length && denied === undefined; i += 1) {
      const outcome = outcomes[i] as PolicyOutcome;
      if (!outcome.decision.allowed) denied = outcome;
    }
    if (denied === undefined) {
      return { action: 'allow', limited: false, headers: this.#allowed(outcomes, nowMs), outcomes, cost };
    }
    let result: RateLimitResult;
    if (this.dryRun) {
      // Every policy was asked, but the fields are those the enforced limit would send: the policies up to
      // the first that refused, which it describes. No Retry-After: the client is not told to back off.
      const shown =
        denied === outcomes[outcomes.length - 1] ? outcomes : outcomes.slice(0, outcomes.indexOf(denied) + 1);
      result = {
        action: 'allow',
        limited: true,
        headers: this.headers.format(shown, nowMs).filter(([name]) => name !== 'retry-after'),
        outcomes,
        cost,
      };
    } else {
      const refusal = this.#refusal(outcomes, denied, nowMs);
      result = { action: 'deny', limited: true, headers: refusal.headers, answer: refusal.answer, outcomes };
    }
    if (this.#onLimit !== undefined) {
      try {
        this.#onLimit(request, result);
      } catch (error) {
        this.#onError(error);
      }
    }
    return result;
  }

  /** The fields of an allowed answer: recent ones again when they read the same (see RecentFields). */
  #allowed(outcomes: readonly PolicyOutcome[], nowMs: number): ReadonlyArray<readonly [string, string]> {
    if (outcomes.length !== 1 || this.headers.partitioned) return this.headers.format(outcomes, nowMs);
    const { policy, decision } = outcomes[0] as PolicyOutcome;
    return (
      this.#recentFields.find(policy, decision, nowMs) ??
      this.#recentFields.keep(policy, decision, nowMs, this.headers.format(outcomes, nowMs))
    );
  }

  /** The fields and answer of a refusal: the last one again when it reads the same (see LastRefusal). */
  #refusal(outcomes: readonly PolicyOutcome[], denied: PolicyOutcome, nowMs: number): Refusal {
    const reusable = outcomes.length === 1 && !this.headers.partitioned;
    if (reusable) {
      const kept = this.#lastRefusal.find(denied.policy, denied.decision, nowMs);
      if (kept !== undefined) return kept;
    }
    const seconds = retryAfterSeconds(denied.decision.retryAfterMs);
    const refusal: Refusal = {
      headers: this.headers.format(outcomes, nowMs),
      answer: {
        status: this.#statusCode,
        headers: { 'content-type': PROBLEM_CONTENT_TYPE, 'retry-after': String(seconds) },
        // The body is the same per policy but for retryAfter: its JSON prefix is made once, at set-up.
        body: `${this.#denyPrefix[denied.policy]}${seconds}}`,
      },
    };
    return reusable ? this.#lastRefusal.keep(denied.policy, denied.decision, nowMs, refusal) : refusal;
  }

  #storeFailed(error: unknown, outcomes: readonly PolicyOutcome[] = [], cost = 0): RateLimitResult {
    this.#onError(error);
    this.#refund(outcomes, cost);
    // Dry run never refuses, also not for a store it cannot reach.
    if (this.#passOnStoreError || this.dryRun) return SKIP;
    const retryAfterMs =
      typeof (error as { retryAfterMs?: unknown } | null)?.retryAfterMs === 'number'
        ? (error as { retryAfterMs: number }).retryAfterMs
        : 1000;
    return {
      action: 'deny',
      limited: false,
      headers: [],
      outcomes,
      answer: problemAnswer(503, {
        code: 'ERR_STORE_UNAVAILABLE',
        detail: 'The rate-limit store is unavailable',
        retryAfterMs,
      }),
    };
  }

  /**
   * Gives back what an allowed request took from every policy that counted it, as if it had not been
   * counted: for an adapter whose route-level limit replaces one that already counted the request
   * (Express's same-bucket `.with()` variants). Nothing for a skip or a refusal (they hold nothing);
   * call it at most once per result. It never throws: a store failure goes to `onError`.
   */
  refund(result: RateLimitResult): void {
    if (result.action === 'allow') this.#refund(result.outcomes, result.cost);
  }

  /**
   * Settles an allowed request once its response is over, for `skipFailedRequests` and
   * `skipSuccessfulRequests`: gives back what it took when its outcome is one not to count. `statusCode`
   * is the status of a response that ended, `undefined` when the connection closed first (a failure).
   * Adapters call it once per request when {@link settlesResponses} is true; it never throws.
   */
  settle(request: Req, result: RateLimitResult, statusCode: number | undefined): void {
    if (result.action !== 'allow' || !this.settlesResponses) return;
    let successful = false;
    if (statusCode !== undefined) {
      try {
        successful =
          this.#wasSuccessful === undefined
            ? statusCode < 400
            : this.#wasSuccessful(request, statusCode) === true;
      } catch (error) {
        this.#onError(error);
        return;
      }
    }
    if (successful ? this.#skipSuccessful : this.#skipFailed) this.#refund(result.outcomes, result.cost);
  }

  /**
   * For adapters on Node's `http` (Express, Fastify): {@link settle}s an allowed request when its response
   * closes, with its status if the response ended and as a failure if the connection closed first. Does
   * nothing unless {@link settlesResponses}.
   */
  settleOnClose(request: Req, result: RateLimitResult, response: ClosingResponse): void {
    if (!this.settlesResponses || result.action !== 'allow') return;
    const settle = () =>
      this.settle(request, result, response.writableEnded ? response.statusCode : undefined);
    if (responseClosed(response)) settle();
    else response.once('close', settle);
  }

  /**
   * A rate limit with some options changed (a route's override). Unless the override names policies
   * (`limit`, `windowMs`, `key`, `store`, `limiter`, `name` or `policies`), the new one counts against the
   * same buckets: a route that costs 5 spends from the same quota as the others.
   *
   * @throws {InvalidOptionError} on an invalid override.
   */
  derive(overrides: Partial<RateLimitOptions<Req>>): RateLimit<Req> {
    checkObject('overrides', overrides);
    const base: Record<string, unknown> = { ...this.#options };
    const has = (name: string) =>
      name in overrides && (overrides as Record<string, unknown>)[name] !== undefined;
    const ownPolicy = [...POLICY_KEYS, 'policies'].some(has);
    if (!ownPolicy) {
      for (const name of POLICY_KEYS) delete base[name];
      base.policies = this.#shared;
    } else if (has('policies')) {
      for (const name of POLICY_KEYS) delete base[name];
    } else {
      // A single-policy override merges with the base policy: `{ limit: 5 }` keeps the base key and window.
      delete base.policies;
      if (has('limiter')) for (const name of ['limit', 'windowMs', 'store']) delete base[name];
      if (has('limit') || has('windowMs') || has('store')) delete base.limiter;
    }
    const derived = new RateLimit<Req>({ ...base, ...overrides } as RateLimitOptions<Req>, this.#adapter);
    derived.#unknownAddress = this.#unknownAddress;
    return derived;
  }

  /** Closes the limiters this instance created (not the ones passed in as `limiter`). */
  async close(): Promise<void> {
    await Promise.all(this.#policies.filter((p) => p.owned).map((p) => p.limiter.close?.()));
  }
}
