import type { Classifier } from './classify.js';
import { classifyGatewayOutcome } from './classify.js';
import { InvalidOptionError } from './errors.js';

// setTimeout fires after 1 ms (with a warning) for any delay above this, so no duration may exceed it.
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Options of {@link CircuitBreaker}. Names follow opossum's where the concept is the same
 * (`errorThresholdPercentage`, `volumeThreshold`, `resetTimeout` → `resetTimeoutMs`, ...), with the unit
 * in the name.
 */
export interface CircuitBreakerOptions<TArgs extends unknown[] = unknown[], TResult = unknown> {
  /**
   * Name reported in events, stats and errors (`CircuitOpenError.circuit`).
   * @default the action's name, else `'circuit'`
   */
  readonly name?: string;
  /**
   * Ms a call may take before it is rejected with `CircuitTimeoutError`, its `ctx.signal` aborted and a
   * failure counted. The timer is unref'd: a call that never settles does not keep the process alive.
   * `false` disables it (then a hung half-open probe keeps the breaker half-open).
   * @default 10_000
   */
  readonly timeoutMs?: number | false;
  /**
   * The breaker opens when more than this percentage of the counted calls in the window failed (`failure`
   * and `throttled` outcomes, timeouts included). 0 opens on the first failure once the volume is reached.
   * @default 50
   */
  readonly errorThresholdPercentage?: number;
  /**
   * Ms above which a call counts as slow (whatever its outcome). Infinity turns the slow-call rule off.
   * A call whose caller aborts it after this long (measured to the abort) is classified like any rejection instead of ignored,
   * so set it below callers' deadlines that are shorter than `timeoutMs`, or a hung gateway is never
   * counted against.
   * @default Infinity
   */
  readonly slowCallDurationMs?: number;
  /**
   * The breaker opens when more than this percentage of the counted calls in the window were slow.
   * @default 50
   */
  readonly slowCallThresholdPercentage?: number;
  /**
   * No rule opens the breaker before the window holds this many counted calls (opossum's default 0
   * opens on the very first failure).
   * @default 10
   */
  readonly volumeThreshold?: number;
  /**
   * Length of the rolling window the rates are computed over, in ms (opossum's `rollingCountTimeout`).
   * @default 10_000
   */
  readonly windowMs?: number;
  /**
   * Number of buckets the window is divided into (opossum's `rollingCountBuckets`); the window slides
   * one bucket at a time.
   * @default 10
   */
  readonly windowBuckets?: number;
  /**
   * Ms the breaker stays open the first time it opens, before it lets probes through (half-open).
   * @default 30_000
   */
  readonly resetTimeoutMs?: number;
  /**
   * Each time a half-open breaker opens again without having closed, its open time is multiplied by this.
   * @default 2
   */
  readonly resetBackoffFactor?: number;
  /**
   * Cap on any open time: the backoff, and a `Retry-After` the gateway asked for. At least
   * `resetTimeoutMs`.
   * @default max(300_000, resetTimeoutMs)
   */
  readonly maxResetTimeoutMs?: number;
  /**
   * Spread of the open time, so a fleet of instances that opened together does not probe in the same
   * millisecond: the backoff time `d` becomes `d * (1 - resetJitter * random())`, and a `Retry-After` hold
   * `r` becomes `r * (1 + resetJitter * random())` (never shorter than asked). 0 turns jitter off.
   * @default 0.2
   */
  readonly resetJitter?: number;
  /**
   * How many calls a half-open breaker lets through as probes (calls beyond that are refused with
   * `CircuitOpenError` until the probes have answered).
   * @default 3
   */
  readonly halfOpenMaxCalls?: number;
  /**
   * How many probes must succeed (and not be slow) to close the breaker; it opens again as soon as that
   * can no longer happen. An `ignored` probe counts neither way and frees its slot. At most
   * `halfOpenMaxCalls`.
   * @default min(2, halfOpenMaxCalls)
   */
  readonly halfOpenSuccessThreshold?: number;
  /**
   * Decides what each outcome says about the gateway's health: it must return `'success'`, `'failure'`,
   * `'throttled'` or `'ignored'`. When it throws or returns anything else (a typo such as `'sucess'`,
   * `undefined` from a missing `return`, a boolean), the call counts as a failure and its caller still
   * gets the call's own answer; the bug is reported with an `InvalidClassificationError` (`option:
   * 'classify'`, the returned `value`, or what it threw as `cause`) emitted as a process warning
   * (`process.emitWarning`), never thrown. Each distinct bug is warned of once per breaker (at most 8).
   * @example
   * ```ts
   * classify: (value, failed) => (isMyNotFound(value) ? 'success' : classifyGatewayOutcome(value, failed))
   * ```
   * @default classifyGatewayOutcome
   */
  readonly classify?: Classifier;
  /**
   * Called instead of failing when `fire()` is refused (open), times out, or fails with a `failure` or
   * `throttled` outcome; its value (or rejection) is the call's. Not called for `success` and `ignored`
   * outcomes: a declined card must reach the caller. `execute()` takes its own `fallback`.
   */
  readonly fallback?: (error: unknown, ...args: TArgs) => TResult | PromiseLike<TResult>;
  /**
   * Keep a windowed latency histogram and report percentiles in `stats().latency`. Off by default: the
   * closed-state hot path then records counters only.
   * @default false
   */
  readonly latencyPercentiles?: boolean;
  /**
   * Monotonic clock in ms.
   * @default () => performance.now()
   */
  readonly clock?: () => number;
  /**
   * Source of randomness in [0, 1) for the jitter (inject one to make tests deterministic).
   * @default Math.random
   */
  readonly random?: () => number;
}

/** @internal */
export interface ResolvedOptions {
  readonly name: string;
  readonly timeoutMs: number;
  readonly errorThresholdPercentage: number;
  readonly slowCallDurationMs: number;
  readonly slowCallThresholdPercentage: number;
  readonly volumeThreshold: number;
  readonly windowMs: number;
  readonly windowBuckets: number;
  readonly resetTimeoutMs: number;
  readonly resetBackoffFactor: number;
  readonly maxResetTimeoutMs: number;
  readonly resetJitter: number;
  readonly halfOpenMaxCalls: number;
  readonly halfOpenSuccessThreshold: number;
  readonly classify: Classifier;
  readonly fallback: ((error: unknown, ...args: never[]) => unknown) | undefined;
  readonly latencyPercentiles: boolean;
  readonly clock: () => number;
  readonly random: () => number;
}

const KEYS: ReadonlySet<string> = new Set([
  'name',
  'timeoutMs',
  'errorThresholdPercentage',
  'slowCallDurationMs',
  'slowCallThresholdPercentage',
  'volumeThreshold',
  'windowMs',
  'windowBuckets',
  'resetTimeoutMs',
  'resetBackoffFactor',
  'maxResetTimeoutMs',
  'resetJitter',
  'halfOpenMaxCalls',
  'halfOpenSuccessThreshold',
  'classify',
  'fallback',
  'latencyPercentiles',
  'clock',
  'random',
]);

const defaultClock = (): number => performance.now();

/**
 * Merges the defaults once and validates every option, so a bad configuration throws at construction.
 * @internal
 */
export function resolveOptions(options: unknown, defaultName: string): ResolvedOptions {
  if (options === undefined) options = {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionError('options', 'an object', options);
  }
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!KEYS.has(key))
      throw new InvalidOptionError(key, `a known option (one of ${[...KEYS].join(', ')})`, o[key]);
  }

  const name = orDefault(o.name, defaultName);
  if (typeof name !== 'string' || name.length === 0)
    throw new InvalidOptionError('name', 'a non-empty string', name);

  let timeoutMs = orDefault(o.timeoutMs, 10_000);
  if (timeoutMs === false) timeoutMs = Number.POSITIVE_INFINITY;
  else checkNumber('timeoutMs', timeoutMs, 1, MAX_TIMER_MS, '`false` or a number between 1 and 2147483647');

  const errorThresholdPercentage = percentage('errorThresholdPercentage', o.errorThresholdPercentage, 50);
  const slowCallThresholdPercentage = percentage(
    'slowCallThresholdPercentage',
    o.slowCallThresholdPercentage,
    50,
  );
  const slowCallDurationMs = orDefault(o.slowCallDurationMs, Number.POSITIVE_INFINITY);
  if (typeof slowCallDurationMs !== 'number' || Number.isNaN(slowCallDurationMs) || slowCallDurationMs < 0) {
    throw new InvalidOptionError(
      'slowCallDurationMs',
      'a number >= 0 (Infinity turns the rule off)',
      slowCallDurationMs,
    );
  }
  const volumeThreshold = integer('volumeThreshold', o.volumeThreshold, 10, 0);
  const windowMs = orDefault(o.windowMs, 10_000);
  checkNumber('windowMs', windowMs, 1, MAX_TIMER_MS, 'a finite number between 1 and 2147483647');
  const windowBuckets = integer('windowBuckets', o.windowBuckets, 10, 1);
  if (windowBuckets > 1000)
    throw new InvalidOptionError('windowBuckets', 'an integer between 1 and 1000', windowBuckets);

  const resetTimeoutMs = orDefault(o.resetTimeoutMs, 30_000);
  checkNumber('resetTimeoutMs', resetTimeoutMs, 1, MAX_TIMER_MS, 'a finite number between 1 and 2147483647');
  const maxResetTimeoutMs = orDefault(o.maxResetTimeoutMs, Math.max(300_000, resetTimeoutMs as number));
  checkNumber(
    'maxResetTimeoutMs',
    maxResetTimeoutMs,
    1,
    MAX_TIMER_MS,
    'a finite number between 1 and 2147483647',
  );
  if ((maxResetTimeoutMs as number) < (resetTimeoutMs as number)) {
    throw new InvalidOptionError(
      'maxResetTimeoutMs',
      `a number >= resetTimeoutMs (${resetTimeoutMs})`,
      maxResetTimeoutMs,
    );
  }
  const resetBackoffFactor = orDefault(o.resetBackoffFactor, 2);
  checkNumber('resetBackoffFactor', resetBackoffFactor, 1, 1000, 'a finite number between 1 and 1000');
  const resetJitter = orDefault(o.resetJitter, 0.2);
  checkNumber('resetJitter', resetJitter, 0, 1, 'a number between 0 and 1');

  const halfOpenMaxCalls = integer('halfOpenMaxCalls', o.halfOpenMaxCalls, 3, 1);
  const halfOpenSuccessThreshold = integer(
    'halfOpenSuccessThreshold',
    o.halfOpenSuccessThreshold,
    Math.min(2, halfOpenMaxCalls),
    1,
  );
  if (halfOpenSuccessThreshold > halfOpenMaxCalls) {
    throw new InvalidOptionError(
      'halfOpenSuccessThreshold',
      `an integer between 1 and halfOpenMaxCalls (${halfOpenMaxCalls})`,
      halfOpenSuccessThreshold,
    );
  }

  const classify = orDefault(o.classify, classifyGatewayOutcome);
  if (typeof classify !== 'function') throw new InvalidOptionError('classify', 'a function', classify);
  const fallback = o.fallback;
  if (fallback !== undefined && typeof fallback !== 'function') {
    throw new InvalidOptionError('fallback', 'a function', fallback);
  }
  const latencyPercentiles = orDefault(o.latencyPercentiles, false);
  if (typeof latencyPercentiles !== 'boolean') {
    throw new InvalidOptionError('latencyPercentiles', 'a boolean', latencyPercentiles);
  }
  const clock = orDefault(o.clock, defaultClock);
  if (typeof clock !== 'function') throw new InvalidOptionError('clock', 'a function', clock);
  const random = orDefault(o.random, Math.random);
  if (typeof random !== 'function') throw new InvalidOptionError('random', 'a function', random);

  return {
    name,
    timeoutMs: timeoutMs as number,
    errorThresholdPercentage,
    slowCallDurationMs,
    slowCallThresholdPercentage,
    volumeThreshold,
    windowMs: windowMs as number,
    windowBuckets,
    resetTimeoutMs: resetTimeoutMs as number,
    resetBackoffFactor: resetBackoffFactor as number,
    maxResetTimeoutMs: maxResetTimeoutMs as number,
    resetJitter: resetJitter as number,
    halfOpenMaxCalls,
    halfOpenSuccessThreshold,
    classify: classify as Classifier,
    fallback: fallback as ResolvedOptions['fallback'],
    latencyPercentiles,
    clock: clock as () => number,
    random: random as () => number,
  };
}

/** Only `undefined` means "not given": `null` is a value, and the check that follows rejects it. */
function orDefault(value: unknown, fallback: unknown): unknown {
  return value === undefined ? fallback : value;
}

function checkNumber(option: string, value: unknown, min: number, max: number, expected: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new InvalidOptionError(option, expected, value);
  }
}

function percentage(option: string, value: unknown, fallback: number): number {
  const v = orDefault(value, fallback);
  checkNumber(option, v, 0, 100, 'a number between 0 and 100');
  return v as number;
}

function integer(option: string, value: unknown, fallback: number, min: number): number {
  const v = orDefault(value, fallback);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new InvalidOptionError(option, `an integer >= ${min}`, v);
  }
  return v;
}
