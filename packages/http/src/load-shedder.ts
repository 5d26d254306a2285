import { InvalidOptionError } from './errors.js';
import { type HttpAnswer, problemAnswer } from './problem.js';
import {
  checkFunction,
  checkInteger,
  checkNumber,
  checkObject,
  fail,
  rejectUnknownKeys,
} from './validate.js';

/** Why a request was shed. */
export type ShedReason = 'overloaded' | 'queue-full' | 'wait-too-long' | 'breaker-open' | 'custom';

/** A shedding verdict of a custom check. */
export interface ShedVerdict {
  /** Why the request is shed. */
  readonly reason: ShedReason;
  /** When to come back; the shedder's `retryAfterMs` when absent. */
  readonly retryAfterMs?: number;
}

/**
 * What the shedder reads of a @floodgate/token-bucket `Gate` (structural, so any gate-like object fits):
 * whether a call of this cost would be shed right now, and optionally how long it would wait.
 */
export interface GateLike {
  /** Whether a call of `cost` would be shed now; the object form adds when to retry and the wait, in ms. */
  wouldShed(
    cost?: number,
  ): boolean | { readonly shed: boolean; readonly retryAfterMs?: number; readonly waitMs?: number };
  /** How long a call of `cost` would wait for its turn now, in ms. */
  estimatedWaitMs?(cost?: number): number;
}

/** What the shedder reads of a @floodgate/circuit-breaker `CircuitBreaker`. */
export interface BreakerLike {
  /** The breaker's state: requests are shed while it is `open`. */
  readonly state: string;
  /** When present: ms until the breaker will try again (half-open). */
  readonly retryAfterMs?: number;
}

/** Options of {@link LoadShedder}. */
export interface LoadShedderOptions {
  /**
   * Most requests in flight through this shedder at once; the share a priority class may use is
   * `maxConcurrent × its share`.
   * @default Infinity (only the gate and breaker decide)
   */
  readonly maxConcurrent?: number;
  /** Shed when this gate's queue is full, or when the wait it estimates exceeds `maxWaitMs × share`. */
  readonly gate?: GateLike;
  /** Shed every class while this breaker is open. */
  readonly breaker?: BreakerLike;
  /**
   * Longest acceptable wait in the gate for the most important class.
   * @default undefined (no wait check)
   */
  readonly maxWaitMs?: number;
  /**
   * Priority classes and the share of capacity (0 < share <= 1) each may fill: cheap traffic gets a small
   * share so it is shed first, while checkout can still use the whole.
   * @default { critical: 1, normal: 0.8, low: 0.5 }
   */
  readonly priorities?: Readonly<Record<string, number>>;
  /**
   * Class of requests that name none.
   * @default 'normal'
   */
  readonly defaultPriority?: string;
  /**
   * `Retry-After` sent when the overloaded source does not say when to come back.
   * @default 1000
   */
  readonly retryAfterMs?: number;
  /** A further check: return a verdict to shed, `undefined` to admit. */
  readonly check?: (context: {
    readonly priority: string;
    readonly share: number;
    readonly cost: number;
  }) => ShedVerdict | undefined;
}

const KNOWN = [
  'maxConcurrent',
  'gate',
  'breaker',
  'maxWaitMs',
  'priorities',
  'defaultPriority',
  'retryAfterMs',
  'check',
] as const;

/** The option names of {@link LoadShedder}: what the adapters pass through to `loadShedder()`. */
export const LOAD_SHEDDER_OPTION_NAMES: readonly string[] = KNOWN;

/** Admission of one request. `release()` must run when it ends (idempotent). */
export interface Admission {
  /** The request may proceed. */
  readonly admitted: true;
  /** Ends the request's admission; call it once the request ends (more calls do nothing). */
  release(): void;
}

/** Refusal of one request, with the 503 to send. */
export interface Refusal {
  /** The request was shed. */
  readonly admitted: false;
  /** Why it was shed. */
  readonly reason: ShedReason;
  /** When the client may come back, in ms (sent as `Retry-After`, rounded up to seconds). */
  readonly retryAfterMs: number;
  /** The 503 problem+json answer to send. */
  readonly answer: HttpAnswer;
}

const DETAIL: Record<ShedReason, string> = {
  overloaded: 'The server is at capacity for this kind of request',
  'queue-full': 'The upstream queue is full',
  'wait-too-long': 'The upstream wait would be too long',
  'breaker-open': 'The upstream is failing; its circuit breaker is open',
  custom: 'The server is shedding load',
};

/**
 * Load-shedding decisions: answer 503 + `Retry-After` at once, instead of letting requests pile up, when
 * the gate's queue is full, its wait would be too long, the breaker is open or too many requests are in
 * flight. Priority classes make the cheap traffic go first.
 *
 * @throws {InvalidOptionError} at construction on an unknown or invalid option.
 * @example
 * const shedder = new LoadShedder({ maxConcurrent: 200, breaker: bankBreaker });
 * const admission = shedder.admit('low');
 * if (!admission.admitted) return send(admission.answer);
 * try { await handle(); } finally { admission.release(); }
 */
export class LoadShedder {
  /** Most requests in flight through this shedder at once. @default Infinity */
  readonly maxConcurrent: number;
  /** Priority class of requests that name none. @default 'normal' */
  readonly defaultPriority: string;
  readonly #gate: GateLike | undefined;
  readonly #breaker: BreakerLike | undefined;
  readonly #maxWaitMs: number | undefined;
  readonly #shares: ReadonlyMap<string, number>;
  readonly #limits: ReadonlyMap<string, number>;
  readonly #retryAfterMs: number;
  readonly #check: LoadShedderOptions['check'];
  #inFlight = 0;

  constructor(options: LoadShedderOptions = {}) {
    checkObject('options', options);
    rejectUnknownKeys(options, KNOWN, 'loadShedding()');
    this.maxConcurrent =
      options.maxConcurrent === undefined || options.maxConcurrent === Number.POSITIVE_INFINITY
        ? Number.POSITIVE_INFINITY
        : checkInteger('maxConcurrent', options.maxConcurrent, 1);
    if (options.gate !== undefined && typeof options.gate?.wouldShed !== 'function') {
      fail('gate', 'a gate with a wouldShed() method', options.gate);
    }
    if (options.breaker !== undefined && typeof options.breaker?.state !== 'string') {
      fail('breaker', 'a circuit breaker with a `state`', options.breaker);
    }
    this.#gate = options.gate;
    this.#breaker = options.breaker;
    this.#maxWaitMs =
      options.maxWaitMs === undefined ? undefined : checkNumber('maxWaitMs', options.maxWaitMs, 0);
    const priorities = options.priorities ?? { critical: 1, normal: 0.8, low: 0.5 };
    checkObject('priorities', priorities);
    if (Object.keys(priorities).length === 0) {
      fail('priorities', 'at least one priority class (`{ name: share }`)', priorities);
    }
    const shares = new Map<string, number>();
    const limits = new Map<string, number>();
    for (const [name, share] of Object.entries(priorities)) {
      if (typeof share !== 'number' || !(share > 0 && share <= 1))
        fail(`priorities.${name}`, 'a share in (0, 1]', share);
      shares.set(name, share);
      limits.set(name, Math.max(1, Math.floor(this.maxConcurrent * share)));
    }
    this.#shares = shares;
    this.#limits = limits;
    this.defaultPriority = options.defaultPriority ?? 'normal';
    if (!shares.has(this.defaultPriority)) {
      fail(
        'defaultPriority',
        `one of the priorities (${[...shares.keys()].join(', ')})`,
        this.defaultPriority,
      );
    }
    this.#retryAfterMs = checkInteger('retryAfterMs', options.retryAfterMs ?? 1000, 0);
    this.#check = options.check === undefined ? undefined : checkFunction('check', options.check);
  }

  /** Requests admitted and not yet released. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Whether `priority` names a configured class. */
  hasPriority(priority: string): boolean {
    return this.#shares.has(priority);
  }

  /**
   * Admits or refuses one request of `priority` (unknown classes count as `defaultPriority`).
   */
  admit(priority: string = this.defaultPriority, cost = 1): Admission | Refusal {
    let share = this.#shares.get(priority);
    let limit = this.#limits.get(priority);
    if (share === undefined || limit === undefined) {
      priority = this.defaultPriority;
      share = this.#shares.get(priority) as number;
      limit = this.#limits.get(priority) as number;
    }
    const verdict = this.#verdict(priority, share, limit, cost);
    if (verdict !== undefined) {
      const retryAfterMs = verdict.retryAfterMs ?? this.#retryAfterMs;
      return {
        admitted: false,
        reason: verdict.reason,
        retryAfterMs,
        answer: problemAnswer(503, {
          code: 'ERR_LOAD_SHED',
          detail: DETAIL[verdict.reason],
          retryAfterMs,
          extensions: { reason: verdict.reason },
        }),
      };
    }
    this.#inFlight += 1;
    let released = false;
    return {
      admitted: true,
      release: () => {
        if (released) return;
        released = true;
        this.#inFlight -= 1;
      },
    };
  }

  #verdict(priority: string, share: number, limit: number, cost: number): ShedVerdict | undefined {
    const breaker = this.#breaker;
    if (breaker !== undefined && breaker.state === 'open') {
      const retry = breaker.retryAfterMs;
      return typeof retry === 'number' && retry > 0
        ? { reason: 'breaker-open', retryAfterMs: retry }
        : { reason: 'breaker-open' };
    }
    if (this.#inFlight >= limit) return { reason: 'overloaded' };
    const gate = this.#gate;
    if (gate !== undefined) {
      const answer = gate.wouldShed(cost);
      if (answer === true) {
        // The gate's own estimate makes a better Retry-After than a constant.
        const estimate = gate.estimatedWaitMs?.(cost);
        return estimate !== undefined && estimate > this.#retryAfterMs
          ? { reason: 'queue-full', retryAfterMs: estimate }
          : { reason: 'queue-full' };
      }
      let waitMs: number | undefined;
      if (typeof answer === 'object' && answer !== null) {
        if (answer.shed) {
          return answer.retryAfterMs === undefined
            ? { reason: 'queue-full' }
            : { reason: 'queue-full', retryAfterMs: answer.retryAfterMs };
        }
        waitMs = answer.waitMs;
      }
      if (this.#maxWaitMs !== undefined) {
        waitMs ??= gate.estimatedWaitMs?.(cost);
        if (waitMs !== undefined && waitMs > this.#maxWaitMs * share) {
          return { reason: 'wait-too-long', retryAfterMs: Math.max(this.#retryAfterMs, waitMs) };
        }
      }
    }
    return this.#check?.({ priority, share, cost });
  }
}

/**
 * For the adapters: the shedder to use: `given` (then no shedder option may come with it: they would be silently ignored),
 * or a new one from `shedderOptions`. Unknown options fail either way, as typos.
 * @throws {InvalidOptionError} naming the option and the value.
 */
export function shedderFromOptions(
  given: unknown,
  shedderOptions: Readonly<Record<string, unknown>>,
  where: string,
  own: readonly string[],
): LoadShedder {
  for (const name of Object.keys(shedderOptions)) {
    if (!(KNOWN as readonly string[]).includes(name)) {
      const known = [...own, ...KNOWN].map((k) => `\`${k}\``).join(', ');
      throw new InvalidOptionError(name, `Unknown option \`${name}\` for ${where}; expected one of ${known}`);
    }
  }
  if (given === undefined) return new LoadShedder(shedderOptions as LoadShedderOptions);
  if (typeof (given as Partial<LoadShedder> | null)?.admit !== 'function') {
    fail('shedder', 'a LoadShedder (loadShedder(...))', given);
  }
  for (const name of Object.keys(shedderOptions)) {
    if (shedderOptions[name] !== undefined) {
      fail(name, 'absent when `shedder` is given (set it on the shared shedder)', shedderOptions[name]);
    }
  }
  return given as LoadShedder;
}

/** Creates a {@link LoadShedder}. */
export function loadShedder(options: LoadShedderOptions = {}): LoadShedder {
  return new LoadShedder(options);
}
