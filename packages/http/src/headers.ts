import { createHmac, randomBytes } from 'node:crypto';
import { retryAfterSeconds } from './problem.js';
import { checkObject, fail, rejectUnknownKeys } from './validate.js';

/**
 * Which standard RateLimit fields to send (draft-ietf-httpapi-ratelimit-headers):
 * - `'draft-8'`: Structured Fields with named policies, several at once - the form of draft-8 and every
 *   later draft (current: -10): `RateLimit-Policy: "per-user";q=100;w=60` and `RateLimit: "per-user";r=42;t=17`.
 * - `'draft-7'`: `RateLimit: limit=100, remaining=42, reset=17` and `RateLimit-Policy: 100;w=60`.
 * - `'draft-6'`: `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`, `RateLimit-Policy`.
 * - `false`: none.
 */
export type StandardHeaders = 'draft-8' | 'draft-7' | 'draft-6' | false;

/** The fields of a limiter decision the headers are made of (a `Decision` of @floodgate/token-bucket). */
export interface DecisionLike {
  /** Whether the request was let through. */
  readonly allowed: boolean;
  /** The bucket capacity (burst), for the quota fields. */
  readonly limit: number;
  /** Tokens left after this request. */
  readonly remaining: number;
  /** Ms until the request could be let through; 0 when it was. */
  readonly retryAfterMs: number;
  /** Ms until the bucket is full again. */
  readonly resetAfterMs: number;
}

/** A quota policy as the headers describe it. */
export interface QuotaPolicy {
  /** Policy name, sent as a Structured Field string (`"per-user"`). */
  readonly name: string;
  /** Quota: the bucket capacity (burst). */
  readonly limit: number;
  /** Window: the time an empty bucket takes to fill (capacity / refill rate), in milliseconds. */
  readonly windowMs: number;
}

/** One policy's outcome for one request. */
export interface PolicyOutcome {
  /** Index of the policy in the rate limit's `policies`. */
  readonly policy: number;
  /** The policy's limiter decision for this request. */
  readonly decision: DecisionLike;
  /** The bucket key; only ever sent as a keyed hash (`pk`), never raw. */
  readonly key: string;
}

/** Options of {@link RateLimitHeaders}. */
export interface RateLimitHeadersOptions {
  /**
   * Standard RateLimit fields to send.
   * @default 'draft-8'
   */
  readonly standardHeaders?: StandardHeaders;
  /**
   * Also send `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix time in seconds,
   * as GitHub and express-rate-limit send it): what most existing clients still read.
   * @default false
   */
  readonly legacyHeaders?: boolean;
  /**
   * Send the partition key (`pk`) in draft-8 fields, as a short keyed hash (HMAC-SHA-256, 8 bytes) of the
   * bucket key: a plain hash of an IPv4 address could be reversed by trying all 2^32. `true` uses a
   * random secret per process; pass a string to share the secret across a fleet.
   * @default false
   */
  readonly partitionKey?: boolean | string;
}

const KNOWN = ['standardHeaders', 'legacyHeaders', 'partitionKey'] as const;

const STANDARD: readonly StandardHeaders[] = ['draft-8', 'draft-7', 'draft-6', false];

/**
 * The secret of `partitionKey: true`, made on first use and kept for the life of the process: every
 * formatter hashes a key to the same `pk`, so a route's variant of a rate limit (`.with()`, a route's
 * `config`), which counts in the same buckets, tells a client the same partition. Not state: it never
 * changes once made.
 */
let processSecret: Buffer | undefined;

/**
 * Seconds for a window or a reset field: rounded up, so a client never comes back too early. One
 * millisecond of slack: stores round their float clock arithmetic up to whole milliseconds, and a
 * 30 000.0000001 ms wait must read 30 s, not 31.
 */
export function fieldSeconds(ms: number): number {
  return ms > 1 ? Math.ceil((ms - 1) / 1000) : 0;
}

/** The legacy `X-RateLimit-Reset`: the Unix second at which the bucket is full again, rounded up. */
export function resetSecond(nowMs: number, resetAfterMs: number): number {
  return Math.ceil((nowMs + resetAfterMs) / 1000);
}

/**
 * What a decision's legacy `X-RateLimit-Reset` reads, for comparing answers: {@link resetSecond}, or 0
 * when the field is not sent (the rate limit passes `nowMs` 0 then).
 */
export function wallResetSecond(decision: DecisionLike, nowMs: number): number {
  return nowMs === 0 ? 0 : resetSecond(nowMs, decision.resetAfterMs);
}

/** A Structured Field string: printable ASCII with `"` and `\` escaped. */
export function sfString(value: string): string {
  return `"${value.replace(/[\\"]/g, '\\$&')}"`;
}

/**
 * Formats the RateLimit header fields of one or several policies. Everything that does not change per
 * request (policy fields) is formatted once, in the constructor.
 *
 * @throws {InvalidOptionError} on an unknown option, a bad header mode, or a policy name that is not
 *   printable ASCII.
 * @example
 * const headers = new RateLimitHeaders([{ name: 'per-user', limit: 100, windowMs: 60_000 }]);
 * headers.format([{ policy: 0, key: 'user:7', decision }], Date.now());
 * // [['ratelimit-policy', '"per-user";q=100;w=60'], ['ratelimit', '"per-user";r=42;t=17']]
 */
export class RateLimitHeaders {
  /** The standard RateLimit fields it sends (`false`: none). */
  readonly standardHeaders: StandardHeaders;
  /** Whether it also sends the `X-RateLimit-*` fields. */
  readonly legacyHeaders: boolean;
  readonly #policies: readonly QuotaPolicy[];
  readonly #policyItems: readonly string[];
  readonly #names: readonly string[];
  readonly #singlePolicy: readonly string[];
  readonly #secret: Buffer | undefined;
  readonly #allPolicies: string;

  constructor(policies: readonly QuotaPolicy[], options: RateLimitHeadersOptions = {}) {
    checkObject('options', options);
    rejectUnknownKeys(options, KNOWN, 'RateLimit headers');
    const standard = options.standardHeaders ?? 'draft-8';
    if (!STANDARD.includes(standard)) {
      fail('standardHeaders', "one of 'draft-8', 'draft-7', 'draft-6', false", standard);
    }
    const legacy = options.legacyHeaders ?? false;
    if (typeof legacy !== 'boolean') fail('legacyHeaders', 'a boolean', legacy);
    const pk = options.partitionKey ?? false;
    if (typeof pk !== 'boolean' && (typeof pk !== 'string' || pk === '')) {
      fail('partitionKey', 'a boolean or a non-empty secret string', pk);
    }
    for (const policy of policies) {
      if (!/^[\x20-\x7e]{1,64}$/.test(policy.name)) {
        fail('name', 'a policy name of 1 to 64 printable ASCII characters', policy.name);
      }
    }
    this.standardHeaders = standard;
    this.legacyHeaders = legacy;
    this.#policies = policies;
    this.#names = policies.map((p) => sfString(p.name));
    this.#policyItems = policies.map(
      (p, i) => `${this.#names[i]};q=${p.limit};w=${Math.max(1, fieldSeconds(p.windowMs))}`,
    );
    this.#singlePolicy = policies.map((p) => `${p.limit};w=${Math.max(1, fieldSeconds(p.windowMs))}`);
    if (pk === true) processSecret ??= randomBytes(32);
    this.#secret = pk === false ? undefined : pk === true ? processSecret : Buffer.from(pk);
    this.#allPolicies = this.#policyItems.join(', ');
  }

  #joined(outcomes: readonly PolicyOutcome[]): string {
    return outcomes.map((o) => this.#policyItems[o.policy]).join(', ');
  }

  /** The `pk` parameter value of a bucket key: an 8-byte keyed hash as an SF byte sequence. */
  partitionKey(key: string): string | undefined {
    if (this.#secret === undefined) return undefined;
    return `:${createHmac('sha256', this.#secret).update(key).digest().subarray(0, 8).toString('base64')}:`;
  }

  /**
   * Header fields (lower-case names) for the outcomes of one request, plus `Retry-After` when one of them
   * denied. Single-policy formats (draft-6/7, legacy) describe the policy that denied, else the one with
   * the fewest requests left.
   *
   * @param nowMs Wall-clock time, only used for the legacy `X-RateLimit-Reset` (a Unix time).
   */
  format(outcomes: readonly PolicyOutcome[], nowMs: number): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    if (outcomes.length === 0) return out;
    let pick = outcomes[0] as PolicyOutcome;
    let denied: PolicyOutcome | undefined;
    for (const o of outcomes) {
      if (!o.decision.allowed) {
        if (denied === undefined || o.decision.retryAfterMs > denied.decision.retryAfterMs) denied = o;
      } else if (o.decision.remaining < pick.decision.remaining) pick = o;
    }
    if (denied !== undefined) pick = denied;
    const d = pick.decision;
    switch (this.standardHeaders) {
      case 'draft-8': {
        let policy = '';
        let state = '';
        const secret = this.#secret !== undefined;
        for (let i = 0; i < outcomes.length; i += 1) {
          const o = outcomes[i] as PolicyOutcome;
          const suffix = secret ? `;pk=${this.partitionKey(o.key)}` : '';
          const sep = i === 0 ? '' : ', ';
          if (secret) policy += `${sep}${this.#policyItems[o.policy]}${suffix}`;
          state += `${sep}${this.#names[o.policy]};r=${o.decision.remaining};t=${fieldSeconds(o.decision.resetAfterMs)}${suffix}`;
        }
        // Without partition keys the policy field is the same on every answer that consulted every policy.
        if (!secret)
          policy = outcomes.length === this.#policies.length ? this.#allPolicies : this.#joined(outcomes);
        out.push(['ratelimit-policy', policy], ['ratelimit', state]);
        break;
      }
      case 'draft-7':
        out.push(
          ['ratelimit-policy', this.#singlePolicy[pick.policy] as string],
          ['ratelimit', `limit=${d.limit}, remaining=${d.remaining}, reset=${fieldSeconds(d.resetAfterMs)}`],
        );
        break;
      case 'draft-6':
        out.push(
          ['ratelimit-policy', this.#singlePolicy[pick.policy] as string],
          ['ratelimit-limit', String(d.limit)],
          ['ratelimit-remaining', String(d.remaining)],
          ['ratelimit-reset', String(fieldSeconds(d.resetAfterMs))],
        );
        break;
      default:
        break;
    }
    if (this.legacyHeaders) {
      out.push(
        ['x-ratelimit-limit', String(d.limit)],
        ['x-ratelimit-remaining', String(d.remaining)],
        ['x-ratelimit-reset', String(resetSecond(nowMs, d.resetAfterMs))],
      );
    }
    if (denied !== undefined)
      out.push(['retry-after', String(retryAfterSeconds(denied.decision.retryAfterMs))]);
    return out;
  }

  /** Whether the fields carry a partition key (`pk`), so they differ from one bucket key to another. */
  get partitioned(): boolean {
    return this.#secret !== undefined;
  }

  /** The policies this formatter describes. */
  get policies(): readonly QuotaPolicy[] {
    return this.#policies;
  }
}
