import { InvalidOptionError } from './errors.js';

/** A window during which the gateway is down, measured from the moment the faults were set. */
export interface OutageWindow {
  /** When the outage starts, in ms after `startBankSim()` / `setFaults()` (0 = at once). */
  readonly startMs: number;
  /** How long it lasts, in ms. */
  readonly durationMs: number;
}

/**
 * The faults the gateway injects. Probabilities are drawn from the seeded generator, so a run is
 * reproducible: the same seed and the same order of requests give the same faults.
 */
export interface Faults {
  /**
   * Probability that a payment fails with a transient 5xx (`errorStatus`) after its latency and
   * **before** any charge: safe to retry, nothing stored under the key.
   * @default 0
   */
  readonly errorRate: number;
  /**
   * The status of those transient errors (500-599).
   * @default 500
   */
  readonly errorStatus: number;
  /**
   * Probability that a payment is charged and then the connection is dropped with no answer: the
   * ambiguous case. The answer is stored, so a retry with the same key replays it; a retry with a
   * fresh key charges again.
   * @default 0
   */
  readonly dropAfterChargeRate: number;
  /**
   * Probability that a payment is charged and then answered only after `slowAnswerMs`, longer than
   * any sane client timeout. The answer is stored at once (a retry with the same key replays it).
   * @default 0
   */
  readonly slowAfterChargeRate: number;
  /**
   * How late a slow answer comes, in ms.
   * @default 30000
   */
  readonly slowAnswerMs: number;
  /**
   * Probability that a payment request is read and its connection reset (TCP RST) before any
   * processing: nothing charged, nothing stored.
   * @default 0
   */
  readonly resetRate: number;
  /**
   * Probability that a new connection is reset as it is accepted, before a byte is read.
   * @default 0
   */
  readonly refuseConnectionRate: number;
  /**
   * Outage windows (down for `durationMs`, then back), measured from when the faults were set.
   * @default []
   */
  readonly outages: readonly OutageWindow[];
  /**
   * What an outage looks like: `'refuse'` stops listening (new connections get ECONNREFUSED, idle
   * keep-alive ones are closed, requests in flight still get their answer), `'reset'` resets payment and
   * status requests (`/_stats` and `/_faults` stay up), `'status'` answers `503` with a `Retry-After` of the
   * time left.
   * @default 'refuse'
   */
  readonly outageMode: 'refuse' | 'reset' | 'status';
  /**
   * After each outage, the flow limit refills at `recoveryRateFactor` × `rate` for this many ms
   * (a gateway that comes back slowly).
   * @default 0
   */
  readonly recoveryMs: number;
  /**
   * The fraction of `rate` during recovery, in (0, 1].
   * @default 0.25
   */
  readonly recoveryRateFactor: number;
}

/** Options of `startBankSim()`. Every field is optional. */
export interface BankSimOptions {
  /**
   * Port to listen on; 0 picks a free one (read it from `bank.port` / `bank.url`).
   * @default 0
   */
  readonly port?: number;
  /**
   * Address to listen on.
   * @default '127.0.0.1'
   */
  readonly host?: string;
  /**
   * The flow limit: payment requests admitted per second (token bucket refill). `Infinity` = no limit.
   * @default 300
   */
  readonly rate?: number;
  /**
   * The flow limit's bucket size: how many requests may arrive back to back.
   * So at most `burst + rate × t` requests are admitted in any span of t seconds.
   * @default rate, at least 1 (1000 when rate is Infinity)
   */
  readonly burst?: number;
  /**
   * Status of a request over the flow limit (with `Retry-After`, whole seconds, rounded up).
   * @default 503
   */
  readonly throttleStatus?: 429 | 503;
  /**
   * Also send IETF RateLimit fields on payment answers: draft-7 (`RateLimit: limit=…, remaining=…,
   * reset=…` + `RateLimit-Policy`) or draft-8+ (`RateLimit: "bank";r=…;t=…` + `RateLimit-Policy`).
   * @default false
   */
  readonly rateLimitHeaders?: false | 'draft-7' | 'draft-8';
  /**
   * Whether `GET /payments/{key}` status checks take flow-limit tokens too. Off by default so
   * reconciliation keeps working while payments are throttled.
   * @default false
   */
  readonly limitStatusChecks?: boolean;
  /**
   * Service time of one payment at a teller, in ms.
   * @default 20
   */
  readonly latencyMs?: number;
  /**
   * Up to this many ms (seeded, uniform) are added to each service time.
   * @default 0
   */
  readonly latencyJitterMs?: number;
  /**
   * Payments processed at the same time; past it they queue, so latency grows with load.
   * @default 64
   */
  readonly tellers?: number;
  /**
   * The most payments waiting for a teller; past it the gateway is overloaded (see `overloadMode`).
   * @default 1024
   */
  readonly maxQueued?: number;
  /**
   * What an overloaded gateway does: answer `503` with `Retry-After: 1` or reset the connection.
   * @default 'status'
   */
  readonly overloadMode?: 'status' | 'reset';
  /**
   * The most idempotency keys remembered; past it the oldest completed one is forgotten.
   * @default 100000
   */
  readonly maxKeys?: number;
  /**
   * How long a completed idempotency record is kept, in ms, counted from its answer (a record still
   * processing never expires).
   * @default 86400000 (24 h)
   */
  readonly keyTtlMs?: number;
  /**
   * Longest accepted idempotency key, in characters.
   * @default 255
   */
  readonly maxKeyLength?: number;
  /**
   * Status for the same key with a different payload (the draft says 422; Stripe answers 400).
   * @default 422
   */
  readonly mismatchStatus?: 422 | 400;
  /**
   * Largest accepted request body, in bytes; larger → 413.
   * @default 16384
   */
  readonly maxBodyBytes?: number;
  /**
   * How many distinct order ids the ground truth tracks for double charges; past it new orders are
   * still counted in `charges` and in `stats().untrackedCharges`, but not in `ordersCharged` and not
   * checked for duplicates.
   * @default 1000000
   */
  readonly maxTrackedOrders?: number;
  /**
   * How many seconds of per-second series `stats()` keeps (oldest dropped).
   * @default 3600
   */
  readonly seriesSeconds?: number;
  /**
   * Seed of every random draw (faults, jitter): same seed, same order of requests → same run.
   * @default 1
   */
  readonly seed?: number;
  /**
   * The faults injected from the start (see {@link Faults}); change them later with `setFaults()`.
   * @default {} (no faults)
   */
  readonly faults?: Partial<Faults>;
  /**
   * Monotonic clock in ms, for the flow limit, the stats windows and the series.
   * Outage windows, latency and slow answers use timers.
   * @default performance.now
   */
  readonly clock?: () => number;
}

/** Options with every default filled in. */
export interface ResolvedOptions {
  /** Port it listens on; 0 picks a free one. */
  readonly port: number;
  /** Address it listens on. */
  readonly host: string;
  /** Payment requests admitted per second; `Infinity` is no limit. */
  readonly rate: number;
  /** The flow limit's bucket size. */
  readonly burst: number;
  /** Status of a request over the flow limit. */
  readonly throttleStatus: 429 | 503;
  /** Which IETF RateLimit fields payment answers carry, if any. */
  readonly rateLimitHeaders: false | 'draft-7' | 'draft-8';
  /** Whether status checks take flow-limit tokens too. */
  readonly limitStatusChecks: boolean;
  /** Service time of one payment at a teller, in ms. */
  readonly latencyMs: number;
  /** Up to this many ms (seeded, uniform) added to each service time. */
  readonly latencyJitterMs: number;
  /** Payments processed at the same time. */
  readonly tellers: number;
  /** The most payments waiting for a teller. */
  readonly maxQueued: number;
  /** What an overloaded gateway does: answer 503 or reset the connection. */
  readonly overloadMode: 'status' | 'reset';
  /** The most idempotency keys remembered. */
  readonly maxKeys: number;
  /** How long a completed idempotency record is kept, in ms. */
  readonly keyTtlMs: number;
  /** Longest accepted idempotency key, in characters. */
  readonly maxKeyLength: number;
  /** Status for the same key with a different payload. */
  readonly mismatchStatus: 422 | 400;
  /** Largest accepted request body, in bytes. */
  readonly maxBodyBytes: number;
  /** How many distinct order ids are checked for double charges. */
  readonly maxTrackedOrders: number;
  /** How many seconds of per-second series `stats()` keeps. */
  readonly seriesSeconds: number;
  /** Seed of every random draw (faults, jitter). */
  readonly seed: number;
  /** The faults injected from the start, every field filled in. */
  readonly faults: Faults;
  /** Monotonic clock in ms, for the flow limit, the stats windows and the series. */
  readonly clock: () => number;
}

export const defaultFaults: Faults = Object.freeze({
  errorRate: 0,
  errorStatus: 500,
  dropAfterChargeRate: 0,
  slowAfterChargeRate: 0,
  slowAnswerMs: 30_000,
  resetRate: 0,
  refuseConnectionRate: 0,
  outages: Object.freeze([]) as readonly OutageWindow[],
  outageMode: 'refuse',
  recoveryMs: 0,
  recoveryRateFactor: 0.25,
});

const OPTION_KEYS = new Set<string>([
  'port',
  'host',
  'rate',
  'burst',
  'throttleStatus',
  'rateLimitHeaders',
  'limitStatusChecks',
  'latencyMs',
  'latencyJitterMs',
  'tellers',
  'maxQueued',
  'overloadMode',
  'maxKeys',
  'keyTtlMs',
  'maxKeyLength',
  'mismatchStatus',
  'maxBodyBytes',
  'maxTrackedOrders',
  'seriesSeconds',
  'seed',
  'faults',
  'clock',
]);
const FAULT_KEYS = new Set<string>(Object.keys(defaultFaults));

// 2^31 - 1: Node's setTimeout limit; longer delays would fire at once.
const MAX_DELAY_MS = 2_147_483_647;

/**
 * Merges `options` over the defaults and validates every field.
 * @throws {InvalidOptionError} on an unknown key or a bad value.
 */
export function resolveOptions(options: BankSimOptions = {}): ResolvedOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionError('options', 'an object', options);
  }
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key)) throw new InvalidOptionError(key, 'a known option', key);
  }
  const o = options;
  const rate = orDefault(o.rate, 300);
  if (
    !(typeof rate === 'number' && rate > 0 && (Number.isFinite(rate) || rate === Number.POSITIVE_INFINITY))
  ) {
    throw new InvalidOptionError('rate', 'a number > 0 (or Infinity)', rate);
  }
  const burst = orDefault(o.burst, Number.isFinite(rate) ? Math.max(1, rate) : 1000);
  const resolved: ResolvedOptions = {
    port: integer('port', orDefault(o.port, 0), 0, 65_535),
    host: nonEmptyString('host', orDefault(o.host, '127.0.0.1')),
    rate,
    burst: finite('burst', burst, 1),
    throttleStatus: oneOf('throttleStatus', orDefault(o.throttleStatus, 503), [429, 503] as const),
    rateLimitHeaders: oneOf('rateLimitHeaders', orDefault(o.rateLimitHeaders, false), [
      false,
      'draft-7',
      'draft-8',
    ] as const),
    limitStatusChecks: boolean('limitStatusChecks', orDefault(o.limitStatusChecks, false)),
    latencyMs: finite('latencyMs', orDefault(o.latencyMs, 20), 0, MAX_DELAY_MS),
    latencyJitterMs: finite('latencyJitterMs', orDefault(o.latencyJitterMs, 0), 0, MAX_DELAY_MS),
    tellers: integer('tellers', orDefault(o.tellers, 64), 1),
    maxQueued: integer('maxQueued', orDefault(o.maxQueued, 1024), 0),
    overloadMode: oneOf('overloadMode', orDefault(o.overloadMode, 'status'), ['status', 'reset'] as const),
    maxKeys: integer('maxKeys', orDefault(o.maxKeys, 100_000), 1),
    keyTtlMs: finite('keyTtlMs', orDefault(o.keyTtlMs, 86_400_000), 1),
    maxKeyLength: integer('maxKeyLength', orDefault(o.maxKeyLength, 255), 1, 8192),
    mismatchStatus: oneOf('mismatchStatus', orDefault(o.mismatchStatus, 422), [422, 400] as const),
    maxBodyBytes: integer('maxBodyBytes', orDefault(o.maxBodyBytes, 16_384), 64),
    maxTrackedOrders: integer('maxTrackedOrders', orDefault(o.maxTrackedOrders, 1_000_000), 0),
    seriesSeconds: integer('seriesSeconds', orDefault(o.seriesSeconds, 3600), 1),
    seed: integer('seed', orDefault(o.seed, 1), 0),
    faults: resolveFaults(orDefault(o.faults, {}), defaultFaults),
    clock: orDefault(o.clock, defaultClock),
  };
  if (typeof resolved.clock !== 'function') throw new InvalidOptionError('clock', 'a function', o.clock);
  return resolved;
}

function defaultClock(): number {
  return performance.now();
}

/**
 * Merges a partial fault set over `base` and validates it.
 * @throws {InvalidOptionError} on an unknown key or a bad value.
 */
export function resolveFaults(partial: unknown, base: Faults): Faults {
  if (typeof partial !== 'object' || partial === null || Array.isArray(partial)) {
    throw new InvalidOptionError('faults', 'an object', partial);
  }
  for (const key of Object.keys(partial)) {
    if (!FAULT_KEYS.has(key)) throw new InvalidOptionError(`faults.${key}`, 'a known fault', key);
  }
  const p = partial as Partial<Record<keyof Faults, unknown>>;
  const faults: Faults = {
    errorRate: probability('faults.errorRate', orDefault(p.errorRate, base.errorRate)),
    errorStatus: integer('faults.errorStatus', orDefault(p.errorStatus, base.errorStatus), 500, 599),
    dropAfterChargeRate: probability(
      'faults.dropAfterChargeRate',
      orDefault(p.dropAfterChargeRate, base.dropAfterChargeRate),
    ),
    slowAfterChargeRate: probability(
      'faults.slowAfterChargeRate',
      orDefault(p.slowAfterChargeRate, base.slowAfterChargeRate),
    ),
    slowAnswerMs: finite(
      'faults.slowAnswerMs',
      orDefault(p.slowAnswerMs, base.slowAnswerMs),
      0,
      MAX_DELAY_MS,
    ),
    resetRate: probability('faults.resetRate', orDefault(p.resetRate, base.resetRate)),
    refuseConnectionRate: probability(
      'faults.refuseConnectionRate',
      orDefault(p.refuseConnectionRate, base.refuseConnectionRate),
    ),
    outages: outages(orDefault(p.outages, base.outages)),
    outageMode: oneOf('faults.outageMode', orDefault(p.outageMode, base.outageMode), [
      'refuse',
      'reset',
      'status',
    ] as const),
    recoveryMs: finite('faults.recoveryMs', orDefault(p.recoveryMs, base.recoveryMs), 0, MAX_DELAY_MS),
    recoveryRateFactor: finite(
      'faults.recoveryRateFactor',
      orDefault(p.recoveryRateFactor, base.recoveryRateFactor),
      0,
      1,
    ),
  };
  if (faults.recoveryRateFactor === 0) {
    throw new InvalidOptionError('faults.recoveryRateFactor', 'a number in (0, 1]', 0);
  }
  return Object.freeze(faults);
}

function outages(value: unknown): readonly OutageWindow[] {
  if (!Array.isArray(value)) throw new InvalidOptionError('faults.outages', 'an array of windows', value);
  return Object.freeze(
    value.map((window: unknown, index) => {
      const name = `faults.outages[${index}]`;
      if (typeof window !== 'object' || window === null) {
        throw new InvalidOptionError(name, 'an object { startMs, durationMs }', window);
      }
      for (const key of Object.keys(window)) {
        if (key !== 'startMs' && key !== 'durationMs')
          throw new InvalidOptionError(`${name}.${key}`, 'a known key', key);
      }
      const w = window as { startMs?: unknown; durationMs?: unknown };
      return Object.freeze({
        startMs: finite(`${name}.startMs`, orDefault(w.startMs, 0), 0, MAX_DELAY_MS),
        durationMs: finite(`${name}.durationMs`, w.durationMs, 1, MAX_DELAY_MS),
      });
    }),
  );
}

/** Only `undefined` means "not given": `null` is a value, and the validator that follows rejects it. */
function orDefault<T>(value: T | undefined, fallback: T): T {
  return value === undefined ? fallback : value;
}

function finite(name: string, value: unknown, min: number, max = Number.MAX_VALUE): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    const range = max === Number.MAX_VALUE ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new InvalidOptionError(name, `a finite number ${range}`, value);
  }
  return value;
}

function integer(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new InvalidOptionError(name, `an integer ${range}`, value);
  }
  return value;
}

function probability(name: string, value: unknown): number {
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw new InvalidOptionError(name, 'a probability in [0, 1]', value);
  }
  return value;
}

function boolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new InvalidOptionError(name, 'a boolean', value);
  return value;
}

function nonEmptyString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0)
    throw new InvalidOptionError(name, 'a non-empty string', value);
  return value;
}

function oneOf<const T extends readonly unknown[]>(name: string, value: unknown, allowed: T): T[number] {
  if (!allowed.includes(value)) {
    throw new InvalidOptionError(name, `one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`, value);
  }
  return value as T[number];
}
