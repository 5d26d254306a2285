import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { tokenBucket } from '@floodgate/token-bucket';
import type { Dispatcher } from 'undici';
import { Pool } from 'undici';
import { equalJitter, fullJitter, serverDelay } from './backoff.js';
import { classifyError, errorCode, errorRetryAfterMs, LOCAL_REJECTION_CODES } from './classify.js';
import {
  AttemptError,
  ClientClosedError,
  InvalidOptionError,
  PaymentMismatchError,
  PaymentRetryError,
} from './errors.js';
import type {
  ChargeInput,
  ChargeResult,
  GatewayAdapter,
  GatewayRequest,
  GatewayResponse,
  StatusResult,
} from './gateway.js';
import { assertIdempotencyKey, deriveIdempotencyKey, MIN_DERIVED_KEY_LENGTH } from './idempotency-key.js';
import type {
  AttemptRecord,
  Awaitable,
  PaymentLedger,
  PaymentRecord,
  PaymentState,
  RecordPatch,
} from './ledger.js';
import { checkOptions, delayMs, finiteAtLeast, integerAtLeast, MAX_DELAY_MS } from './options.js';
import { RequestExchange } from './request-exchange.js';
import { SqliteLedger } from './sqlite-ledger.js';
import { type ExchangeCanceller, TextExchange } from './text-exchange.js';
import type {
  DeclinedOutcome,
  PaidOutcome,
  PaymentClientEvents,
  PaymentClientMetrics,
  PaymentIntent,
  PaymentOutcome,
  PayOptions,
  PendingOutcome,
  PendingReason,
  RecoverySummary,
} from './types.js';

/**
 * A UTF-16 surrogate not part of a pair. SQLite stores text as UTF-8 and gives such a string back with
 * U+FFFD in its place, so the next click would no longer match the ledger's record (and `recover()` would
 * send the damaged fields under the same key): refused up front instead.
 */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Anything that admits calls to the bank, like @floodgate/token-bucket's `Gate`: runs `fn` when it may
 * go, or rejects with a `code` of `ERR_QUEUE_FULL` / `ERR_RATE_LIMITED` (and `retryAfterMs`) without
 * running it.
 */
export interface Limiter {
  /** Runs `fn` when the bank may take the call; aborting `options.signal` gives up waiting. */
  run<T>(fn: (signal: AbortSignal) => Promise<T>, options?: { signal?: AbortSignal }): Promise<T>;
}

/**
 * Anything that fails fast when the bank is sick, like @floodgate/circuit-breaker's `CircuitBreaker`:
 * rejects with `code: 'ERR_CIRCUIT_OPEN'` (and `retryAfterMs`) without running `fn` while open.
 */
export interface Breaker {
  /** Runs `fn` unless the breaker is open; `fn`'s outcome counts for or against the bank. */
  execute<T>(
    fn: (context: { signal: AbortSignal }) => Promise<T>,
    options?: { signal?: AbortSignal },
  ): Promise<T>;
}

/**
 * Tokens that retries spend, like @floodgate/token-bucket's `TokenBucket` (its `tryTake`/`refund`).
 */
export interface RetryBudget {
  /** Takes `cost` tokens if the budget holds them, without waiting: no tokens, no retry. */
  tryTake(cost: number): { readonly allowed: boolean; readonly remaining: number };
  /** Gives `amount` tokens back (a payment settled). */
  refund(amount: number): void;
}

/** Retry policy. */
export interface RetryOptions {
  /**
   * Most tries within one `pay()`: requests to the bank (charges and status queries) and refusals by the
   * local gate or breaker (a payment they kept from being sent ends pending; the reconciler sends it).
   * @default 10
   */
  readonly maxAttempts?: number;
  /** Full-jitter base: the first retry waits up to this long, each next one up to twice as long. @default 50 */
  readonly baseDelayMs?: number;
  /** Full-jitter cap. @default 2000 */
  readonly maxDelayMs?: number;
  /** The longest wait a `Retry-After` can impose; a longer ask is cut to this. @default 30000 */
  readonly maxRetryAfterMs?: number;
  /**
   * The gateway's retry budget (AWS SDK "standard" style): each retry costs `retryCost`, a retry after
   * a timeout or a lost answer `timeoutRetryCost`; a payment settled on its first request gives back
   * `successReward`, one settled after retries gives back its last retry's cost; no tokens, no retry
   * (the payment stays `pending` and the reconciler retries slowly). Retries after a local refusal
   * (open breaker, full gate) cost nothing: those never reached the bank. `false` disables it.
   * @default tokenBucket({ capacity: 500, refillRate: 1 }) from @floodgate/token-bucket
   */
  readonly budget?: RetryBudget | false;
  /**
   * Budget tokens a retry costs; at most the budget's `capacity` when it has one (a `TokenBucket`).
   * @default 5
   */
  readonly retryCost?: number;
  /**
   * Budget tokens a retry after a timeout or a lost answer costs; at most the budget's `capacity` when it
   * has one (a `TokenBucket`). @default 10
   */
  readonly timeoutRetryCost?: number;
  /** Budget tokens a payment settled on its first request gives back. @default 1 */
  readonly successReward?: number;
}

/** Timeouts, in ms. */
export interface TimeoutOptions {
  /** TCP (and TLS) connect. @default 3000 */
  readonly connectMs?: number;
  /** From the request's end to the response headers. @default 10000 */
  readonly headersMs?: number;
  /** Between two chunks of the response body. @default 10000 */
  readonly bodyMs?: number;
  /** The whole `pay()`: past it the payment is `pending`. @default 30000 */
  readonly paymentMs?: number;
}

/** The undici Pool the client keeps for the gateway's origin. */
export interface PoolOptions {
  /** Most sockets to the gateway. @default 64 */
  readonly connections?: number;
  /** Idle keep-alive sockets are closed after this long (server hints may shorten it). @default 10000 */
  readonly keepAliveTimeoutMs?: number;
  /**
   * Largest answer body read from the gateway (undici's `maxResponseSize` for the own Pool; the client
   * bounds the read itself through a `dispatcher` passed in, which does not know this option): a payment
   * answer is a few hundred bytes, and a misbehaving gateway or proxy must not make the client buffer
   * without bound. A larger answer is dropped unread and the attempt counts as sent with no response: the
   * bank may have acted, so the payment is asked about (or re-sent with the same key), never declined.
   * @default 1048576 (1 MiB)
   */
  readonly maxResponseBytes?: number;
}

/** Background reconciliation of pending payments. */
export interface ReconcileOptions {
  /**
   * Base of the back-off between a pending payment's tries: the n-th wait is equal-jittered,
   * `t/2 + random(0, t/2)` with `t = min(maxIntervalMs, intervalMs * 2^n)`, so the first try comes
   * `[intervalMs/2, intervalMs)` after the payment went pending. @default 1000
   */
  readonly intervalMs?: number;
  /** The cap: the back-off's `t` doubles up to this, and every wait is shorter. @default 60000 */
  readonly maxIntervalMs?: number;
  /** Payments reconciled at the same time. @default 8 */
  readonly concurrency?: number;
  /** Deadline of one reconciliation try. @default 10000 */
  readonly deadlineMs?: number;
}

/** Options of {@link createPaymentClient}. */
export interface PaymentClientOptions {
  /** The bank: an adapter such as `ietfGateway({ origin })`. Required. */
  readonly gateway: GatewayAdapter;
  /**
   * Where payments are recorded before anything is sent: a {@link PaymentLedger}, or a file path for a
   * SQLite ledger that the client opens and closes. Required.
   */
  readonly ledger: PaymentLedger | string;
  /** Scopes derived keys and order ids. @default 'default' */
  readonly merchant?: string;
  /** Admission before a request leaves (flow limit, concurrency), e.g. a token-bucket `gate()`. @default none */
  readonly limiter?: Limiter;
  /** Fails fast while the bank is sick, e.g. a `circuitBreaker()`. @default none */
  readonly breaker?: Breaker;
  /** Retry policy: attempts, backoff, retry budget. @default see RetryOptions */
  readonly retry?: RetryOptions;
  /** Per-request and per-payment time limits. @default see TimeoutOptions */
  readonly timeouts?: TimeoutOptions;
  /** The HTTP connection pool to the gateway. @default see PoolOptions */
  readonly pool?: PoolOptions;
  /**
   * Send through this undici dispatcher (an Agent, a MockAgent, a proxy) instead of an own Pool. The
   * client does not close it. @default an own Pool per `pool`
   */
  readonly dispatcher?: Dispatcher;
  /** `false` turns the background reconciler off (`reconcileNow()` still works). @default see ReconcileOptions */
  readonly reconcile?: ReconcileOptions | false;
  /** Monotonic ms clock, for deadlines. @default performance.now */
  readonly clock?: () => number;
  /** Uniform [0, 1), for jitter. @default Math.random */
  readonly random?: () => number;
}

const OPTION_KEYS = [
  'gateway',
  'ledger',
  'merchant',
  'limiter',
  'breaker',
  'retry',
  'timeouts',
  'pool',
  'dispatcher',
  'reconcile',
  'clock',
  'random',
] as const;
const RETRY_KEYS = [
  'maxAttempts',
  'baseDelayMs',
  'maxDelayMs',
  'maxRetryAfterMs',
  'budget',
  'retryCost',
  'timeoutRetryCost',
  'successReward',
] as const;
const TIMEOUT_KEYS = ['connectMs', 'headersMs', 'bodyMs', 'paymentMs'] as const;
const POOL_KEYS = ['connections', 'keepAliveTimeoutMs', 'maxResponseBytes'] as const;
const RECONCILE_KEYS = ['intervalMs', 'maxIntervalMs', 'concurrency', 'deadlineMs'] as const;

/** What one request to the bank came to. */
type Step =
  | { readonly type: 'charge'; readonly result: ChargeResult; readonly statusCode: number }
  | { readonly type: 'status'; readonly result: StatusResult; readonly statusCode: number }
  | {
      readonly type: 'error';
      readonly outcome: 'not_sent' | 'unknown';
      readonly code: string | undefined;
      readonly retryAfterMs: number | undefined;
      readonly local: boolean;
    };

/** The one call driving an order's payment in this process, which concurrent calls for the order join. */
interface InFlight {
  readonly fingerprint: string;
  promise: Promise<PaymentOutcome>;
  /**
   * The key of the payment the call drives, once it knows it: a new payment's key is derived only after
   * the ledger has said which generation the order is at.
   */
  key: string | undefined;
  /**
   * Calls waiting for {@link InFlight.key} (to name it in a mismatch, or to compare a caller's key with
   * it), told `undefined` when the call ended without driving a payment (refused, or the ledger threw).
   */
  waiters: ((key: string | undefined) => void)[] | undefined;
}

interface NormalizedIntent {
  readonly orderId: string;
  readonly amount: number;
  readonly currency: string;
  readonly payer: string;
  /** Canonical JSON. */
  readonly fields: string;
  readonly merchant: string;
  readonly idempotencyKey: string | undefined;
  readonly scope: string;
  readonly fingerprint: string;
}

interface PendingEntry {
  idempotencyKey: string;
  scope: string;
  fingerprint: string;
  nextAt: number;
  /** Reconciler tries that left it pending: the exponent of its back-off. */
  tries: number;
  /** A reconciliation pass is driving it now (the pass backs it off when the try ends). */
  trying: boolean;
}

const NO_PAY_OPTIONS: PayOptions = Object.freeze({});
const INTENT_KEYS = [
  'orderId',
  'amount',
  'currency',
  'payer',
  'fields',
  'merchant',
  'idempotencyKey',
] as const satisfies readonly (keyof PaymentIntent)[];
const PAY_OPTION_KEYS = ['signal', 'deadlineMs'] as const;
/** The longest `retry.maxRetryAfterMs` whose 10% stretch (serverDelay) still fits a timer. */
const MAX_RETRY_AFTER_MS = Math.floor(MAX_DELAY_MS / 1.1);

const EMPTY_FIELDS: Readonly<Record<string, unknown>> = Object.freeze({});

const scopeOf = (merchant: string, orderId: string): string => JSON.stringify([merchant, orderId]);

/** JSON with object keys sorted at every level, so equal fields always compare equal. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) => {
    if (inner === null || typeof inner !== 'object' || Array.isArray(inner)) return inner;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(inner).sort()) sorted[key] = (inner as Record<string, unknown>)[key];
    return sorted;
  });
}

const fingerprintOf = (amount: number, currency: string, payer: string, fields: string): string =>
  `${amount}\u0000${currency}\u0000${payer}\u0000${fields}`;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `scheme://host[:port]` with an http(s) scheme (a trailing `/` allowed), as undici's Pool takes it. */
function isHttpOrigin(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  return (
    (url.protocol === 'http:' || url.protocol === 'https:') &&
    (url.pathname === '/' || url.pathname === '') &&
    url.search === '' &&
    url.hash === ''
  );
}

function functionOption(name: string, value: unknown, method: string): void {
  if (value !== undefined && (!isObject(value) || typeof value[method] !== 'function')) {
    throw new InvalidOptionError(name, `an object with a ${method}() method`, value);
  }
}

/**
 * An HTTP client for money-moving calls that charges every payment exactly once: a durable idempotency
 * key per order, written to the ledger before the first request and sent on every retry; attempts
 * classified as not sent / sent without answer / answered; full-jitter backoff under a retry budget;
 * `pending` (never "failed") while the bank's answer is unknown, and reconciliation until it is known.
 *
 * @example
 * const client = createPaymentClient({ gateway: ietfGateway({ origin: bank.url }), ledger: 'payments.db' });
 * const outcome = await client.pay({ orderId: 'o-42', amount: 1250, currency: 'EUR', payer: 'tok_ok' });
 * if (outcome.status === 'paid') console.log(outcome.reference);
 * await client.close();
 */
export class PaymentClient extends EventEmitter<PaymentClientEvents> {
  /** The adapter that builds the bank's requests and reads its answers. */
  readonly gateway: GatewayAdapter;
  /** Where payments and their attempts are recorded: what `recover()` reads after a restart. */
  readonly ledger: PaymentLedger;
  readonly #merchant: string;
  readonly #limiter: Limiter | undefined;
  readonly #breaker: Breaker | undefined;
  readonly #budget: RetryBudget | undefined;
  readonly #ownsBudget: boolean;
  readonly #ownsLedger: boolean;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  /** `pool.maxResponseBytes`, which a dispatcher passed in does not know of. */
  readonly #maxResponseBytes: number;
  readonly #clock: () => number;
  readonly #random: () => number;
  readonly #retry: Required<Omit<RetryOptions, 'budget'>>;
  readonly #timeouts: Required<TimeoutOptions>;
  readonly #reconcile: Required<ReconcileOptions>;
  readonly #reconcileInBackground: boolean;
  readonly #inFlight = new Map<string, InFlight>();
  readonly #cancels = new Set<PaymentCancel>();
  readonly #pending = new Map<string, PendingEntry>();
  readonly #recoveries = new Set<Promise<RecoverySummary>>();
  /** Errors the ledger threw (see #ledgerFailed). */
  readonly #ledgerErrors = new WeakSet<object>();
  #reconcileTimer: NodeJS.Timeout | undefined;
  /** When the armed pass is due (the `clock`'s time). */
  #reconcileTimerAt = 0;
  #reconcileRunning: Promise<unknown> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #budgetRemaining: number | undefined;
  readonly #counters = {
    notSent: 0,
    sentNoResponse: 0,
    responded: 0,
    retries: 0,
    paid: 0,
    declined: 0,
    pending: 0,
    coalesced: 0,
    resolved: 0,
    latencyMsTotal: 0,
    latencyMsMax: 0,
  };

  /** @throws {InvalidOptionError} for a missing, malformed or unknown option. */
  constructor(options: PaymentClientOptions) {
    super();
    checkOptions('options', options, OPTION_KEYS);
    const { gateway } = options;
    if (
      !isObject(gateway) ||
      typeof gateway.chargeRequest !== 'function' ||
      typeof gateway.parseCharge !== 'function' ||
      typeof gateway.origin !== 'string'
    ) {
      throw new InvalidOptionError('gateway', 'a gateway adapter (e.g. ietfGateway({ origin }))', gateway);
    }
    if ((typeof gateway.statusRequest === 'function') !== (typeof gateway.parseStatus === 'function')) {
      throw new InvalidOptionError(
        'gateway',
        'an adapter with both statusRequest and parseStatus, or neither',
        gateway,
      );
    }
    // An adapter is the caller's own object (ietfGateway checks these itself): what undici would refuse at
    // every attempt, or deriveIdempotencyKey at every pay(), is refused here, once.
    if (!isHttpOrigin(gateway.origin)) {
      throw new InvalidOptionError(
        'gateway.origin',
        'an http(s) origin (scheme://host[:port])',
        gateway.origin,
      );
    }
    const { maxKeyLength, keyRetentionMs } = gateway as { maxKeyLength?: unknown; keyRetentionMs?: unknown };
    if (
      maxKeyLength !== undefined &&
      (typeof maxKeyLength !== 'number' ||
        !Number.isInteger(maxKeyLength) ||
        maxKeyLength < MIN_DERIVED_KEY_LENGTH)
    ) {
      throw new InvalidOptionError(
        'gateway.maxKeyLength',
        `an integer >= ${MIN_DERIVED_KEY_LENGTH}`,
        maxKeyLength,
      );
    }
    // A retention that is not a number compares false forever: a charge would be re-sent past it.
    if (
      keyRetentionMs !== undefined &&
      (typeof keyRetentionMs !== 'number' || !Number.isFinite(keyRetentionMs) || keyRetentionMs <= 0)
    ) {
      throw new InvalidOptionError('gateway.keyRetentionMs', 'a finite number > 0', keyRetentionMs);
    }
    this.gateway = gateway;

    const { ledger } = options;
    if (typeof ledger === 'string') {
      if (ledger === '')
        throw new InvalidOptionError('ledger', 'a PaymentLedger or a SQLite file path', ledger);
    } else {
      for (const method of [
        'latest',
        'get',
        'create',
        'transition',
        'recordAttempt',
        'unresolved',
      ] as const) {
        if (!isObject(ledger) || typeof ledger[method] !== 'function') {
          throw new InvalidOptionError('ledger', 'a PaymentLedger or a SQLite file path', ledger);
        }
      }
      // Looked for with typeof on every payment: anything else there would be ignored without a word.
      if (ledger.createSending !== undefined && typeof ledger.createSending !== 'function') {
        throw new InvalidOptionError('ledger.createSending', 'a function when present', ledger.createSending);
      }
    }

    // `null` is not "the default": a merchant read from a missing setting would scope every order wrong.
    this.#merchant = options.merchant === undefined ? 'default' : options.merchant;
    if (typeof this.#merchant !== 'string' || this.#merchant === '' || LONE_SURROGATE.test(this.#merchant)) {
      throw new InvalidOptionError('merchant', 'a non-empty well-formed string', options.merchant);
    }
    functionOption('limiter', options.limiter, 'run');
    functionOption('breaker', options.breaker, 'execute');
    this.#limiter = options.limiter;
    this.#breaker = options.breaker;

    const retry = options.retry === undefined ? {} : options.retry;
    checkOptions('retry', retry, RETRY_KEYS);
    // Every duration that reaches a timer is at most 2^31 - 1 ms: Node fires a longer one after 1 ms.
    this.#retry = {
      maxAttempts: integerAtLeast('retry.maxAttempts', retry.maxAttempts, 1, 10),
      baseDelayMs: delayMs('retry.baseDelayMs', retry.baseDelayMs, 0, 50),
      maxDelayMs: delayMs('retry.maxDelayMs', retry.maxDelayMs, 0, 2000),
      // A server's wait is stretched by up to 10% (serverDelay), and must still fit a timer.
      maxRetryAfterMs: delayMs('retry.maxRetryAfterMs', retry.maxRetryAfterMs, 0, 30_000, MAX_RETRY_AFTER_MS),
      retryCost: finiteAtLeast('retry.retryCost', retry.retryCost, 0, 5),
      timeoutRetryCost: finiteAtLeast('retry.timeoutRetryCost', retry.timeoutRetryCost, 0, 10),
      successReward: finiteAtLeast('retry.successReward', retry.successReward, 0, 1),
    };
    if (this.#retry.baseDelayMs > this.#retry.maxDelayMs) {
      throw new InvalidOptionError(
        'retry.baseDelayMs',
        `a number <= retry.maxDelayMs (${this.#retry.maxDelayMs})`,
        retry.baseDelayMs,
      );
    }
    if (retry.budget === false) {
      this.#budget = undefined;
      this.#ownsBudget = false;
    } else if (retry.budget === undefined) {
      this.#budget = tokenBucket({ capacity: 500, refillRate: 1 });
      this.#ownsBudget = true;
    } else {
      functionOption('retry.budget', retry.budget, 'tryTake');
      functionOption('retry.budget', retry.budget, 'refund');
      this.#budget = retry.budget;
      this.#ownsBudget = false;
    }
    // A TokenBucket throws for a take above its capacity: that would surface in the middle of a payment
    // whose charge may have been taken (a rejection of pay(), the payment left to nobody), so it is
    // refused here. A budget of another kind says nothing of its capacity and is not checked.
    const capacity = (this.#budget as { capacity?: unknown } | undefined)?.capacity;
    if (typeof capacity === 'number') {
      for (const option of ['retryCost', 'timeoutRetryCost'] as const) {
        if (this.#retry[option] > capacity) {
          throw new InvalidOptionError(
            `retry.${option}`,
            `a number <= the retry budget's capacity (${capacity})`,
            this.#retry[option],
          );
        }
      }
    }

    const timeouts = options.timeouts === undefined ? {} : options.timeouts;
    checkOptions('timeouts', timeouts, TIMEOUT_KEYS);
    this.#timeouts = {
      connectMs: delayMs('timeouts.connectMs', timeouts.connectMs, 1, 3000),
      headersMs: delayMs('timeouts.headersMs', timeouts.headersMs, 1, 10_000),
      bodyMs: delayMs('timeouts.bodyMs', timeouts.bodyMs, 1, 10_000),
      paymentMs: delayMs('timeouts.paymentMs', timeouts.paymentMs, 1, 30_000),
    };

    const reconcile = options.reconcile === false || options.reconcile === undefined ? {} : options.reconcile;
    if (!isObject(reconcile)) {
      throw new InvalidOptionError('reconcile', 'an object or `false`', options.reconcile);
    }
    checkOptions('reconcile', reconcile, RECONCILE_KEYS);
    this.#reconcileInBackground = options.reconcile !== false;
    this.#reconcile = {
      intervalMs: delayMs('reconcile.intervalMs', reconcile.intervalMs, 1, 1000),
      maxIntervalMs: delayMs('reconcile.maxIntervalMs', reconcile.maxIntervalMs, 1, 60_000),
      concurrency: integerAtLeast('reconcile.concurrency', reconcile.concurrency, 1, 8),
      deadlineMs: delayMs('reconcile.deadlineMs', reconcile.deadlineMs, 1, 10_000),
    };
    if (this.#reconcile.intervalMs > this.#reconcile.maxIntervalMs) {
      throw new InvalidOptionError(
        'reconcile.intervalMs',
        `a number <= reconcile.maxIntervalMs (${this.#reconcile.maxIntervalMs})`,
        reconcile.intervalMs,
      );
    }

    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw new InvalidOptionError('clock', 'a function', options.clock);
    }
    if (options.random !== undefined && typeof options.random !== 'function') {
      throw new InvalidOptionError('random', 'a function', options.random);
    }
    this.#clock = options.clock ?? (() => performance.now());
    this.#random = options.random ?? Math.random;

    const pool = options.pool === undefined ? {} : options.pool;
    checkOptions('pool', pool, POOL_KEYS);
    const connections = integerAtLeast('pool.connections', pool.connections, 1, 64);
    const keepAliveTimeout = delayMs('pool.keepAliveTimeoutMs', pool.keepAliveTimeoutMs, 1, 10_000);
    const maxResponseSize = integerAtLeast('pool.maxResponseBytes', pool.maxResponseBytes, 1, 1_048_576);
    this.#maxResponseBytes = maxResponseSize;
    if (options.dispatcher !== undefined) functionOption('dispatcher', options.dispatcher, 'request');

    // Opened once every option is known good: a bad option must not leave a database (and its
    // checkpoint worker) open that nobody can close.
    if (typeof ledger === 'string') {
      this.ledger = new SqliteLedger({ path: ledger });
      this.#ownsLedger = true;
    } else {
      this.ledger = ledger;
      this.#ownsLedger = false;
    }
    if (options.dispatcher !== undefined) {
      this.#dispatcher = options.dispatcher;
      this.#ownsDispatcher = false;
    } else {
      this.#dispatcher = new Pool(gateway.origin, {
        connections,
        keepAliveTimeout,
        connectTimeout: this.#timeouts.connectMs,
        headersTimeout: this.#timeouts.headersMs,
        bodyTimeout: this.#timeouts.bodyMs,
        maxResponseSize,
        pipelining: 1,
      });
      this.#ownsDispatcher = true;
    }
  }

  /**
   * Pays an order. Resolves `paid` (with the bank's reference), `declined` (with the reason) or
   * `pending` (the bank may have charged; reconciliation continues). Concurrent calls for the same order
   * share one bank call, each with its own deadline and signal. Paying an order already paid answers `paid`
   * without a request; paying an order whose last payment was declined starts a new one (a new generation,
   * a new key). Once the payment is recorded, a ledger that throws makes it `pending` (`ledger_error`), not
   * a rejection: the bank may have acted.
   *
   * @example
   * const outcome = await client.pay({ orderId: 'o-42', amount: 1250, currency: 'EUR', payer: 'tok_ok' });
   * @throws {InvalidOptionError} (as a rejection) for a malformed intent.
   * @throws {PaymentMismatchError} when the order is in flight or paid with another amount, currency, payer,
   * fields or caller-given key; `idempotencyKey` names that payment's key.
   * @throws the ledger's own error when it throws before the payment is recorded (nothing was sent).
   * @throws {IdempotencyKeyInvalidError} when a caller-given key breaks the gateway's limits.
   * @throws {ClientClosedError} after `close()`.
   */
  pay(intent: PaymentIntent, options: PayOptions = NO_PAY_OPTIONS): Promise<PaymentOutcome> {
    try {
      if (this.#closed) throw new ClientClosedError();
      const normalized = this.#normalize(intent);
      if (options !== NO_PAY_OPTIONS) {
        checkOptions('options', options, PAY_OPTION_KEYS);
        if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
          throw new InvalidOptionError('signal', 'an AbortSignal', options.signal);
        }
      }
      const deadlineMs = delayMs('deadlineMs', options.deadlineMs, 1, this.#timeouts.paymentMs);
      return this.#pay(normalized, deadlineMs, options.signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Starts the order's payment, or joins (or refuses) the call already driving it. */
  #pay(
    intent: NormalizedIntent,
    deadlineMs: number,
    signal: AbortSignal | undefined,
  ): Promise<PaymentOutcome> {
    if (this.#closed) throw new ClientClosedError();
    const existing = this.#inFlight.get(intent.scope);
    if (existing === undefined) {
      return this.#track(intent.scope, intent.fingerprint, undefined, (entry) =>
        this.#begin(intent, deadlineMs, signal, entry),
      );
    }
    const samePayload = existing.fingerprint === intent.fingerprint;
    if (samePayload && (intent.idempotencyKey === undefined || intent.idempotencyKey === existing.key)) {
      return this.#join(existing, intent, deadlineMs, signal);
    }
    if (existing.key !== undefined) throw this.#inFlightMismatch(intent, existing.key, samePayload);
    // The call in flight has not read the ledger yet: the key it comes to decides. If it comes to none
    // (its own payload was refused, the ledger threw), it was never this order's payment: start again.
    return new Promise<string | undefined>((resolve) => {
      existing.waiters ??= [];
      existing.waiters.push(resolve);
    }).then((key) => {
      if (key === undefined) return this.#pay(intent, deadlineMs, signal);
      if (samePayload && intent.idempotencyKey === key)
        return this.#join(existing, intent, deadlineMs, signal);
      throw this.#inFlightMismatch(intent, key, samePayload);
    });
  }

  #inFlightMismatch(intent: NormalizedIntent, key: string, samePayload: boolean): PaymentMismatchError {
    return new PaymentMismatchError(
      `Order ${JSON.stringify(intent.orderId)} is being paid ${
        samePayload
          ? `under another idempotency key (${JSON.stringify(key)})`
          : 'with another amount, currency, payer or fields'
      }`,
      intent.orderId,
      key,
    );
  }

  /**
   * A call for an order whose payment is in flight shares its outcome, but keeps its own deadline and
   * signal: past them it stops waiting (`pending`, no attempt of its own) while the payment goes on.
   */
  #join(
    entry: InFlight,
    intent: NormalizedIntent,
    deadlineMs: number,
    signal: AbortSignal | undefined,
  ): Promise<PaymentOutcome> {
    this.#counters.coalesced++;
    return new Promise<PaymentOutcome>((resolve, reject) => {
      let waiting = true;
      const done = () => {
        waiting = false;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const stop = (reason: PendingReason) => {
        if (!waiting) return;
        done();
        const answer = (key: string | undefined) => {
          // No payment came of the call joined (the ledger threw): its answer is this call's too.
          if (key === undefined) entry.promise.then(resolve, reject);
          else resolve(this.#stoppedWaiting(intent, key, reason));
        };
        if (entry.key !== undefined) answer(entry.key);
        else {
          entry.waiters ??= [];
          entry.waiters.push(answer);
        }
      };
      const onAbort = () => stop('aborted');
      const timer = setTimeout(stop, deadlineMs, 'deadline');
      // Like a payment's own deadline: what keeps the process alive is the request it waits for.
      timer.unref();
      if (signal !== undefined) {
        if (signal.aborted) stop('aborted');
        else signal.addEventListener('abort', onAbort, { once: true });
      }
      entry.promise.then(
        (outcome) => {
          if (!waiting) return;
          done();
          resolve(outcome);
        },
        (error: unknown) => {
          if (!waiting) return;
          done();
          reject(error);
        },
      );
    });
  }

  #stoppedWaiting(intent: NormalizedIntent, idempotencyKey: string, reason: PendingReason): PendingOutcome {
    const { orderId, merchant } = intent;
    return { status: 'pending', orderId, merchant, idempotencyKey, attempts: 0, reason };
  }

  /**
   * After a restart: finds every payment the ledger holds unresolved (created, sending, unknown,
   * reconciling) and drives each to `paid` or `declined` with its original key. Those whose outcome is
   * still unknown when their try ends are handed to the background reconciler.
   *
   * A script whose only work is `await client.recover()` and whose `limiter` is a `gate()` must create
   * the gate with `keepAlive: true`: a gate's wait timers are unref'd (a library never holds a process
   * open), so while every payment queues at the gate nothing keeps the event loop alive and Node exits
   * with the recovery unfinished (it resumes at the next start; nothing is lost). A server is not affected.
   *
   * @example
   * const summary = await client.recover(); // { found: 3, paid: 2, declined: 1, pending: 0 }
   * @throws {ClientClosedError} after `close()`.
   */
  async recover(): Promise<RecoverySummary> {
    if (this.#closed) throw new ClientClosedError();
    // close() waits for it before it closes the ledger (a ledger the client opened would be gone).
    const run = this.#recover();
    this.#recoveries.add(run);
    try {
      return await run;
    } finally {
      this.#recoveries.delete(run);
    }
  }

  async #recover(): Promise<RecoverySummary> {
    const records = await this.ledger.unresolved();
    const outcomes = await this.#mapLimit(records, this.#reconcile.concurrency, async (record) =>
      // After close() nothing more is started: the payment stays in the ledger for the next recover().
      this.#closed ? undefined : this.#resume(record, this.#reconcile.deadlineMs),
    );
    let paid = 0;
    let declined = 0;
    let pending = 0;
    for (const outcome of outcomes) {
      if (outcome?.status === 'paid') paid++;
      else if (outcome?.status === 'declined') declined++;
      else pending++;
    }
    return { found: records.length, paid, declined, pending };
  }

  /**
   * Runs one reconciliation pass now over every pending payment of this client (not only those due),
   * and answers how many were settled and how many remain pending.
   */
  async reconcileNow(): Promise<{ readonly resolved: number; readonly pending: number }> {
    return this.#reconcilePass(false);
  }

  /** Pending payments this client is reconciling. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** The ledger's view of an order's latest payment. */
  async lookup(orderId: string, merchant = this.#merchant): Promise<PaymentRecord | undefined> {
    return this.ledger.latest(scopeOf(merchant, orderId));
  }

  /** Counters since the client started. */
  metrics(): PaymentClientMetrics {
    const c = this.#counters;
    return {
      attempts: { notSent: c.notSent, sentNoResponse: c.sentNoResponse, responded: c.responded },
      retries: c.retries,
      outcomes: { paid: c.paid, declined: c.declined, pending: c.pending },
      coalesced: c.coalesced,
      outcomeUnknown: this.#pending.size,
      retryBudgetRemaining: this.#budgetRemaining,
      reconciliation: {
        resolved: c.resolved,
        latencyMsTotal: c.latencyMsTotal,
        latencyMsMax: c.latencyMsMax,
      },
    };
  }

  /**
   * Stops the reconciler, ends the calls in flight as `pending` (their payments stay in the ledger for
   * `recover()`), destroys the own Pool (a `dispatcher` passed in stays open), and closes the ledger and
   * budget when the client made them. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#reconcileTimer);
    this.#reconcileTimer = undefined;
    for (const cancel of this.#cancels) cancel.abort(new ClientClosedError());
    await Promise.allSettled([...this.#inFlight.values()].map((entry) => entry.promise));
    await Promise.allSettled(this.#recoveries);
    await this.#reconcileRunning;
    this.#pending.clear();
    // destroy(), not close(): every exchange of ours has ended by now, and what the Pool may still hold
    // are requests that gave up while queued for a connection. close() would wait to dispatch each (opening
    // a connection to the bank only to refuse them, or waiting out the connect timeout of one it cannot
    // reach); destroy() drops them and the idle sockets at once.
    if (this.#ownsDispatcher) await this.#dispatcher.destroy();
    if (this.#ownsLedger) await this.ledger.close();
    if (this.#ownsBudget) (this.#budget as { close?: () => void }).close?.();
  }

  #normalize(intent: PaymentIntent): NormalizedIntent {
    if (!isObject(intent)) throw new InvalidOptionError('intent', 'an object', intent);
    // A misspelt field (`idempotencykey`, `feilds`) would be dropped without a word and the payment sent
    // without it.
    for (const name in intent) {
      if (!INTENT_KEYS.includes(name as (typeof INTENT_KEYS)[number])) {
        throw new InvalidOptionError(
          `intent.${name}`,
          `a known field (one of ${INTENT_KEYS.join(', ')})`,
          intent[name as keyof PaymentIntent],
        );
      }
    }
    const { orderId, amount, currency, payer, fields, merchant = this.#merchant, idempotencyKey } = intent;
    if (
      typeof orderId !== 'string' ||
      orderId === '' ||
      orderId.length > 255 ||
      LONE_SURROGATE.test(orderId)
    ) {
      throw new InvalidOptionError('intent.orderId', 'a well-formed string of 1..255 characters', orderId);
    }
    if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount <= 0) {
      throw new InvalidOptionError('intent.amount', 'an integer > 0 (minor units)', amount);
    }
    if (typeof currency !== 'string' || !/^[A-Za-z]{3}$/.test(currency)) {
      throw new InvalidOptionError('intent.currency', 'a three-letter ISO 4217 code', currency);
    }
    if (typeof payer !== 'string' || payer === '' || LONE_SURROGATE.test(payer)) {
      throw new InvalidOptionError('intent.payer', 'a non-empty well-formed string', payer);
    }
    if (fields !== undefined && !isObject(fields)) {
      throw new InvalidOptionError('intent.fields', 'a plain object', fields);
    }
    if (typeof merchant !== 'string' || merchant === '' || LONE_SURROGATE.test(merchant)) {
      throw new InvalidOptionError('intent.merchant', 'a non-empty well-formed string', merchant);
    }
    if (idempotencyKey !== undefined) {
      assertIdempotencyKey(idempotencyKey, this.gateway.maxKeyLength);
      if (this.ledger.forgetsPaid === true) {
        throw new InvalidOptionError(
          'intent.idempotencyKey',
          'absent with a ledger that forgets paid payments (memoryLedger maxPaid): a forgotten order paid under a key of yours would be charged again under your next one',
          idempotencyKey,
        );
      }
    }
    const upper = currency.toUpperCase();
    let fieldsJson = '{}';
    if (fields !== undefined) {
      try {
        fieldsJson = canonicalJson(fields);
      } catch {
        // A BigInt, a cycle: the ledger keeps the fields as JSON, to send the same ones after a restart.
        throw new InvalidOptionError('intent.fields', 'a plain object that JSON can hold', fields);
      }
    }
    return {
      orderId,
      amount,
      currency: upper,
      payer,
      fields: fieldsJson,
      merchant,
      idempotencyKey,
      scope: scopeOf(merchant, orderId),
      fingerprint: fingerprintOf(amount, upper, payer, fieldsJson),
    };
  }

  #track(
    scope: string,
    fingerprint: string,
    key: string | undefined,
    run: (entry: InFlight) => Promise<PaymentOutcome>,
  ): Promise<PaymentOutcome> {
    const entry: { -readonly [K in keyof InFlight]: InFlight[K] | undefined } = {
      fingerprint,
      promise: undefined,
      key,
      waiters: undefined,
    };
    const promise = this.#untrackWhenDone(scope, entry as InFlight, run);
    entry.promise = promise;
    this.#inFlight.set(scope, entry as InFlight);
    return promise;
  }

  /** Runs `run` and then forgets its in-flight entry (an async function: two promises fewer than `.finally`). */
  async #untrackWhenDone(
    scope: string,
    entry: InFlight,
    run: (entry: InFlight) => Promise<PaymentOutcome>,
  ): Promise<PaymentOutcome> {
    try {
      return await run(entry);
    } finally {
      if (this.#inFlight.get(scope) === entry) this.#inFlight.delete(scope);
      // Those still waiting for a key learn that this call drove no payment of the order.
      this.#drives(entry, entry.key);
    }
  }

  /** Tells the calls waiting for `entry`'s key which payment it drives (`undefined`: none). */
  #drives(entry: InFlight, key: string | undefined): void {
    if (key !== undefined) entry.key = key;
    const { waiters } = entry;
    if (waiters === undefined) return;
    entry.waiters = undefined;
    for (const waiter of waiters) waiter(key);
  }

  async #begin(
    intent: NormalizedIntent,
    deadlineMs: number,
    signal: AbortSignal | undefined,
    entry: InFlight,
  ): Promise<PaymentOutcome> {
    // Up to three rounds: a lost race for the insert (another process created this generation) re-reads it.
    for (let round = 0; round < 3; round++) {
      // A ledger that answers synchronously (the memory ledger) is not awaited on the hot path: each await
      // of a plain value is a microtask turn, and together they were a measurable share of a payment.
      const pendingLatest = this.ledger.latest(intent.scope);
      const latest = pendingLatest instanceof Promise ? await pendingLatest : pendingLatest;
      if (latest !== undefined && latest.state !== 'declined') {
        const fingerprint = fingerprintOf(latest.amount, latest.currency, latest.payer, latest.fields);
        const keyDiffers =
          intent.idempotencyKey !== undefined && intent.idempotencyKey !== latest.idempotencyKey;
        if (fingerprint !== intent.fingerprint || keyDiffers) {
          throw new PaymentMismatchError(
            `Order ${JSON.stringify(intent.orderId)} is already ${latest.state === 'paid' ? 'paid' : 'in flight'} ` +
              'with another amount, currency, payer, fields or idempotency key',
            intent.orderId,
            latest.idempotencyKey,
          );
        }
        this.#drives(entry, latest.idempotencyKey);
        if (latest.state === 'paid') return this.#finished(latest, 0, false);
        return await this.#drive(latest, deadlineMs, signal);
      }
      const generation = latest === undefined ? 0 : latest.generation + 1;
      const idempotencyKey =
        intent.idempotencyKey ??
        deriveIdempotencyKey(
          {
            merchant: intent.merchant,
            orderId: intent.orderId,
            amount: intent.amount,
            currency: intent.currency,
            generation,
          },
          this.gateway.maxKeyLength,
        );
      const now = Date.now();
      // The key is durable before anything is sent either way; a ledger that can insert the payment
      // already `sending` saves a commit on every payment.
      const { ledger } = this;
      const sendingFirst = typeof ledger.createSending === 'function';
      const record: PaymentRecord = {
        idempotencyKey,
        scope: intent.scope,
        merchant: intent.merchant,
        orderId: intent.orderId,
        generation,
        amount: intent.amount,
        currency: intent.currency,
        payer: intent.payer,
        fields: intent.fields,
        state: sendingFirst ? 'sending' : 'created',
        attempts: 0,
        reference: null,
        declineReason: null,
        createdAt: now,
        updatedAt: now,
        firstSentAt: sendingFirst ? now : null,
        unknownSince: null,
      };
      if (typeof ledger.createSending === 'function') {
        const pendingCreated = ledger.createSending(record);
        const created = pendingCreated instanceof Promise ? await pendingCreated : pendingCreated;
        if (created) {
          this.#drives(entry, idempotencyKey);
          return await this.#drive(record, deadlineMs, signal, true);
        }
      } else if (await ledger.create(record)) {
        this.#drives(entry, idempotencyKey);
        return await this.#drive(record, deadlineMs, signal);
      }
      const holder = await this.ledger.get(idempotencyKey);
      if (holder !== undefined && holder.scope !== intent.scope) {
        throw new PaymentMismatchError(
          `Idempotency key ${JSON.stringify(idempotencyKey)} already belongs to order ${JSON.stringify(holder.orderId)}`,
          intent.orderId,
          idempotencyKey,
        );
      }
      if (holder !== undefined && holder.state === 'declined') {
        this.#drives(entry, idempotencyKey);
        return this.#finished(holder, 0, false);
      }
    }
    throw new PaymentRetryError(
      'ERR_LEDGER_CONFLICT',
      `Could not record order ${JSON.stringify(intent.orderId)}: the ledger kept refusing the new payment`,
    );
  }

  /** Re-drives a payment found in the ledger, joining a call already in flight for its order. */
  #resume(record: PaymentRecord, deadlineMs: number): Promise<PaymentOutcome> {
    const existing = this.#inFlight.get(record.scope);
    if (existing !== undefined) return existing.promise;
    return this.#track(
      record.scope,
      fingerprintOf(record.amount, record.currency, record.payer, record.fields),
      record.idempotencyKey,
      () => this.#drive(record, deadlineMs, undefined),
    );
  }

  /** The retry loop: one payment, until paid, declined, or pending. */
  async #drive(
    start: PaymentRecord,
    deadlineMs: number,
    signal: AbortSignal | undefined,
    /** The record was just created by this call directly in `sending`: nothing was sent yet. */
    created = false,
  ): Promise<PaymentOutcome> {
    const { gateway } = this;
    const hasStatus = gateway.statusRequest !== undefined;
    let record = start;
    let askStatus = false;
    // A payment that was not `created` may have been sent before (by us, a crashed process, or another
    // process right now): it is reconciled, starting with the status query when there is one.
    if (created) {
      // Fresh from createSending: the first request goes out as from `created`.
    } else if (record.state === 'paid' || record.state === 'declined') {
      return this.#finished(record, 0, false);
    } else {
      try {
        if (record.state === 'created') {
          const next = await this.#transition(record.idempotencyKey, 'sending', { firstSentAt: Date.now() });
          if (next === undefined) return await this.#reread(record, deadlineMs, signal);
          record = next;
        } else if (record.state === 'sending' || record.state === 'unknown') {
          if (record.state === 'sending') {
            await this.#transition(record.idempotencyKey, 'unknown', { unknownSince: Date.now() });
          }
          const next = await this.#transition(record.idempotencyKey, 'reconciling');
          if (next === undefined) return await this.#reread(record, deadlineMs, signal);
          record = next;
          askStatus = hasStatus;
        } else {
          askStatus = hasStatus;
        }
      } catch (error) {
        return this.#ledgerFailed(record, 0, error);
      }
    }

    const input: ChargeInput = {
      idempotencyKey: record.idempotencyKey,
      merchant: record.merchant,
      orderId: record.orderId,
      amount: record.amount,
      currency: record.currency,
      payer: record.payer,
      fields: record.fields === '{}' ? EMPTY_FIELDS : (JSON.parse(record.fields) as Record<string, unknown>),
    };
    const retention = gateway.keyRetentionMs;
    const keyExpired = () =>
      retention !== undefined && record.firstSentAt !== null && Date.now() - record.firstSentAt > retention;

    const cancel = new PaymentCancel();
    this.#cancels.add(cancel);
    // close() aborted the payments it could see; one whose ledger writes were still settling then is
    // registered only now, and must not start sending after close().
    if (this.#closed) cancel.abort(new ClientClosedError());
    const deadlineAt = this.#clock() + deadlineMs;
    const timer = setTimeout(() => cancel.abort(deadlineReason()), deadlineMs);
    timer.unref();
    const onAbort = () => cancel.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) cancel.abort(signal.reason);

    let attempts = 0;
    let retries = 0;
    let lastCost = 0;
    // Whether a charge with this key may have reached the bank unanswered: then only the bank's word about
    // the key (its status, a 402, a 2xx) settles the payment, never a refusal of one request.
    let mayHaveCharged = !created && start.state !== 'created';
    // Why the bank rejected our last charge, while we ask its status about the key before settling.
    let rejectedFor: string | undefined;
    try {
      for (;;) {
        if (cancel.aborted) return await this.#pendingOutcome(record, attempts, this.#abortReason(cancel));
        let kind: 'charge' | 'status' = askStatus ? 'status' : 'charge';
        if (kind === 'charge' && keyExpired()) {
          // Past the gateway's key retention a charge could be a second charge: only ask.
          if (!hasStatus) return await this.#pendingOutcome(record, attempts, 'key_expired');
          kind = 'status';
        }
        // Counted before it is made: a ledger that throws recording it leaves it counted all the same.
        attempts++;
        const { step, attempt } = await this.#attempt(kind, input, cancel);

        let delayMs: number;
        let cost = this.#retry.retryCost;
        let reason: string;
        let serverAskedMs: number | undefined;
        if (step.type === 'error') {
          reason = step.local ? (step.code ?? 'not_sent') : step.outcome;
          serverAskedMs = step.retryAfterMs;
          if (step.local) cost = 0;
          else if (step.outcome === 'unknown') cost = this.#retry.timeoutRetryCost;
          // Sent, no answer: the bank may have charged. Only the same key from now on; ask first.
          if (step.outcome === 'unknown') askStatus = hasStatus;
          else if (kind === 'status') askStatus = false;
        } else {
          const { result } = step;
          if (result.kind === 'paid' || result.kind === 'declined') {
            this.#reward(retries, lastCost);
            return await this.#settle(record, result, attempts, attempt);
          }
          if (result.kind === 'not_found' && rejectedFor !== undefined) {
            // Past the key's retention a 404 proves nothing (the bank may have forgotten a charge).
            if (keyExpired()) return await this.#pendingOutcome(record, attempts, 'key_expired');
            // Rejected, and the bank never saw the key: nothing was charged under it.
            return await this.#settle(record, { kind: 'declined', reason: rejectedFor }, attempts, undefined);
          }
          if (result.kind === 'rejected') {
            if (!hasStatus && !mayHaveCharged) {
              this.#reward(retries, lastCost);
              return await this.#settle(
                record,
                { kind: 'declined', reason: result.reason },
                attempts,
                undefined,
              );
            }
            // The key may hold a charge (ours, a crashed process's, one a lost ledger record forgot):
            // ask about it at once, or without a status endpoint keep re-sending the same key.
            rejectedFor = result.reason;
            askStatus = hasStatus;
            reason = 'rejected';
            cost = hasStatus ? 0 : cost;
          } else if (result.kind === 'not_found') {
            // The bank never saw the key: re-sending it is safe, and nothing to wait for.
            if (keyExpired()) return await this.#pendingOutcome(record, attempts, 'key_expired');
            askStatus = false;
            reason = 'not_found';
          } else if (result.kind === 'processing') {
            askStatus = true;
            reason = 'processing';
            serverAskedMs = result.retryAfterMs;
          } else if (result.kind === 'retry') {
            askStatus = false;
            reason = result.reason;
            serverAskedMs = result.retryAfterMs;
            if (result.reason === 'timeout') cost = this.#retry.timeoutRetryCost;
          } else {
            // Answered, outcome open (202, 422, a status query that failed): ask, or re-send the same key.
            askStatus = kind === 'charge' && hasStatus;
            reason = 'reason' in result ? result.reason : 'status_unknown';
            serverAskedMs = result.retryAfterMs;
          }
        }

        if (kind === 'charge' && reason !== 'rejected') {
          rejectedFor = undefined; // a later charge's answer replaces the rejection
          if (!(step.type === 'error' && step.outcome === 'not_sent')) mayHaveCharged = true;
        }
        if (attempts >= this.#retry.maxAttempts)
          return await this.#pendingOutcome(record, attempts, 'max_attempts');
        if (reason === 'not_found' || (reason === 'rejected' && hasStatus)) delayMs = 0;
        else if (serverAskedMs !== undefined)
          delayMs = serverDelay(serverAskedMs, this.#retry.maxRetryAfterMs, this.#random);
        else delayMs = fullJitter(retries, this.#retry.baseDelayMs, this.#retry.maxDelayMs, this.#random);
        // The wait goes with it to the reconciler: a bank that asked for 2 minutes is not asked in 1 s.
        if (this.#clock() + delayMs >= deadlineAt)
          return await this.#pendingOutcome(record, attempts, 'deadline', delayMs);

        let budgetRemaining: number | undefined;
        if (this.#budget !== undefined && cost > 0) {
          const decision = this.#budget.tryTake(cost);
          this.#budgetRemaining = decision.remaining;
          budgetRemaining = decision.remaining;
          if (!decision.allowed) return await this.#pendingOutcome(record, attempts, 'retry_budget');
        }
        lastCost = cost;
        retries++;
        this.#counters.retries++;
        if (this.listenerCount('retry') > 0) {
          this.#emit('retry', {
            orderId: record.orderId,
            idempotencyKey: record.idempotencyKey,
            delayMs,
            reason,
            budgetRemaining,
          });
        }
        if (delayMs > 0) await sleep(delayMs, cancel);
      }
    } catch (error) {
      return this.#ledgerFailed(record, attempts, error);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      this.#cancels.delete(cancel);
    }
  }

  async #reread(
    record: PaymentRecord,
    deadlineMs: number,
    signal: AbortSignal | undefined,
  ): Promise<PaymentOutcome> {
    // Someone else moved the payment between our read and our write: start again from what is there.
    const fresh = await this.#get(record.idempotencyKey);
    if (fresh === undefined)
      throw new PaymentRetryError('ERR_LEDGER_CONFLICT', 'The payment vanished from the ledger');
    if (fresh.state === 'paid' || fresh.state === 'declined') return this.#finished(fresh, 0, false);
    if (fresh.state === record.state) {
      throw new PaymentRetryError(
        'ERR_LEDGER_CONFLICT',
        `The ledger refused to move payment ${record.idempotencyKey}`,
      );
    }
    return this.#drive(fresh, deadlineMs, signal);
  }

  #reward(retries: number, lastCost: number): void {
    if (this.#budget === undefined) return;
    const amount = retries === 0 ? this.#retry.successReward : lastCost;
    if (amount > 0) this.#budget.refund(amount);
  }

  #abortReason(cancel: PaymentCancel): PendingReason {
    const { reason } = cancel;
    if (reason instanceof ClientClosedError) return 'closed';
    if (reason instanceof PaymentRetryError && reason.code === 'ERR_DEADLINE') return 'deadline';
    return 'aborted';
  }

  /** One request: through the limiter and the breaker, classified, recorded. Never throws for the bank's sake. */
  async #attempt(
    kind: 'charge' | 'status',
    input: ChargeInput,
    cancel: PaymentCancel,
  ): Promise<{ readonly step: Step; readonly attempt: AttemptRecord | undefined }> {
    const { gateway } = this;
    const request =
      kind === 'charge'
        ? gateway.chargeRequest(input)
        : (gateway.statusRequest as (input: ChargeInput) => GatewayRequest)(input);
    let started = false;
    const startedAt = Date.now();
    const t0 = this.#clock();
    let step: Step;
    try {
      if (this.#limiter === undefined && this.#breaker === undefined) {
        // Nothing to pass through: no closures for them on every attempt.
        started = true;
        step = await this.#send(kind, input, request, cancel);
      } else {
        step = await this.#viaLimiterAndBreaker(kind, input, request, cancel, () => {
          started = true;
        });
      }
    } catch (error) {
      step = this.#errorStep(error, started);
    }
    const durationMs = this.#clock() - t0;
    const outcome = step.type === 'error' ? step.outcome : 'responded';
    if (outcome === 'not_sent') this.#counters.notSent++;
    else if (outcome === 'unknown') this.#counters.sentNoResponse++;
    else this.#counters.responded++;
    const statusCode = step.type === 'error' ? undefined : step.statusCode;
    const code = step.type === 'error' ? step.code : undefined;
    const attempt: AttemptRecord = {
      idempotencyKey: input.idempotencyKey,
      kind,
      outcome,
      statusCode: statusCode ?? null,
      errorCode: code ?? null,
      startedAt,
      durationMs,
    };
    // An attempt that settles the payment is written with the settlement, in one ledger write.
    const settles = step.type !== 'error' && (step.result.kind === 'paid' || step.result.kind === 'declined');
    if (!settles) await this.#recordAttempt(attempt);
    if (this.listenerCount('attempt') > 0) {
      this.#emit('attempt', {
        orderId: input.orderId,
        idempotencyKey: input.idempotencyKey,
        kind,
        outcome,
        statusCode,
        code,
        durationMs,
      });
    }
    return { step, attempt: settles ? attempt : undefined };
  }

  /** An attempt through the limiter and the breaker; `onStart` runs when the request is about to leave. */
  #viaLimiterAndBreaker(
    kind: 'charge' | 'status',
    input: ChargeInput,
    request: GatewayRequest,
    cancel: PaymentCancel,
    onStart: () => void,
  ): Promise<Step> {
    const send = (extra: AbortSignal | undefined): Promise<Step> => {
      onStart();
      return this.#send(
        kind,
        input,
        request,
        extra === undefined ? cancel : AbortSignal.any([cancel.signal, extra]),
      );
    };
    const breaker = this.#breaker;
    const viaBreaker =
      breaker === undefined
        ? send
        : (extra: AbortSignal | undefined) =>
            breaker.execute(
              ({ signal: breakerSignal }) =>
                send(extra === undefined ? breakerSignal : AbortSignal.any([extra, breakerSignal])),
              { signal: cancel.signal },
            );
    return this.#limiter === undefined
      ? viaBreaker(undefined)
      : this.#limiter.run((gateSignal) => viaBreaker(gateSignal), { signal: cancel.signal });
  }

  #errorStep(error: unknown, started: boolean): Step {
    if (error instanceof StepError) return error.step;
    const code = errorCode(error);
    const local = code !== undefined && LOCAL_REJECTION_CODES.has(code);
    // Refused before our function ran (gate shed, breaker open, aborted while queued): nothing was sent.
    const outcome = local || !started ? 'not_sent' : classifyError(error);
    return { type: 'error', outcome, code, retryAfterMs: errorRetryAfterMs(error), local };
  }

  /**
   * The HTTP exchange. Answers that should count as a failure for a circuit breaker (5xx, 408, 409, 429,
   * transport errors) are thrown as {@link AttemptError} carrying the step, so the breaker sees them.
   */
  async #send(
    kind: 'charge' | 'status',
    input: ChargeInput,
    request: GatewayRequest,
    signal: AbortSignal | PaymentCancel,
  ): Promise<Step> {
    let answer: GatewayResponse;
    if (this.#ownsDispatcher) {
      // Our own Pool is bound to the origin and carries the timeouts: naming them again on every request
      // cost about 30 µs of CPU per payment (undici takes a slower path for a request with an `origin`;
      // measured with bench/payment-retry.bench.ts). dispatch() with a handler that collects the body
      // instead of request() + body.text(): see TextExchange.
      const exchange = new TextExchange();
      try {
        answer = await exchange.send(
          this.#dispatcher,
          {
            path: request.path,
            method: request.method,
            headers: request.headers,
            body: request.body ?? null,
          },
          signal,
        );
      } catch (error) {
        // After the status line a failure means the bank acted and we cannot read what it did; before
        // undici handed the request a socket (a deadline while it queued for one) nothing left.
        throw this.#transportError(
          error,
          exchange.responded ? 'unknown' : exchange.started ? undefined : 'not_sent',
        );
      }
    } else {
      // A dispatcher passed in (an Agent) needs the origin and the timeouts.
      const exchange = new RequestExchange();
      try {
        answer = await exchange.send(
          this.#dispatcher,
          {
            origin: this.gateway.origin,
            path: request.path,
            method: request.method,
            headers: request.headers,
            body: request.body ?? null,
            headersTimeout: this.#timeouts.headersMs,
            bodyTimeout: this.#timeouts.bodyMs,
          },
          signal instanceof AbortSignal ? signal : signal.signal,
          this.#maxResponseBytes,
        );
      } catch (error) {
        // The status line came, the body did not: the bank acted, we cannot read what it did.
        throw this.#transportError(error, exchange.responded ? 'unknown' : undefined);
      }
    }
    const { gateway } = this;
    let step: Step;
    if (kind === 'charge') {
      step = { type: 'charge', result: gateway.parseCharge(answer, input), statusCode: answer.statusCode };
    } else {
      // Called on the adapter, as parseCharge is: an adapter written as a class reads its fields via `this`.
      const parse = gateway.parseStatus as NonNullable<GatewayAdapter['parseStatus']>;
      step = { type: 'status', result: parse.call(gateway, answer, input), statusCode: answer.statusCode };
    }
    const { result } = step;
    if (result.kind === 'retry' || (result.kind === 'unknown' && answer.statusCode >= 500)) {
      throw new StepError(
        'ERR_GATEWAY_RESPONSE',
        `The gateway answered ${answer.statusCode}`,
        { outcome: 'responded', statusCode: answer.statusCode, retryAfterMs: result.retryAfterMs },
        step,
      );
    }
    return step;
  }

  #transportError(error: unknown, forced?: 'unknown' | 'not_sent'): StepError {
    const code = errorCode(error) ?? 'ERR_TRANSPORT';
    const outcome = forced ?? classifyError(error);
    const step: Step = { type: 'error', outcome, code, retryAfterMs: undefined, local: false };
    return new StepError(code, `The request to the gateway failed (${code})`, { outcome }, step, {
      cause: error,
    });
  }

  async #settle(
    record: PaymentRecord,
    result:
      | { readonly kind: 'paid'; readonly reference: string }
      | { readonly kind: 'declined'; readonly reason: string },
    attempts: number,
    attempt: AttemptRecord | undefined,
  ): Promise<PaymentOutcome> {
    const to = result.kind === 'paid' ? 'paid' : 'declined';
    const patch = result.kind === 'paid' ? { reference: result.reference } : { declineReason: result.reason };
    const pendingSettled = this.#transition(
      record.idempotencyKey,
      to,
      attempt === undefined ? patch : { ...patch, attempt },
    );
    let settled = pendingSettled instanceof Promise ? await pendingSettled : pendingSettled;
    if (settled === undefined) {
      const fresh = await this.#get(record.idempotencyKey);
      if (fresh?.state === 'unknown') {
        // Another driver gave up on it meanwhile; the bank's answer still goes in, by the allowed path.
        await this.#transition(record.idempotencyKey, 'reconciling');
        settled = await this.#transition(record.idempotencyKey, to, patch);
      }
      // Somebody (another process, the reconciler) settled it first: the ledger's answer is the truth.
      settled ??= (await this.#get(record.idempotencyKey)) ?? fresh;
    }
    if (settled === undefined)
      throw new PaymentRetryError('ERR_LEDGER_CONFLICT', 'The payment vanished from the ledger');
    return this.#finished(settled, attempts, true);
  }

  #finished(
    record: PaymentRecord,
    attempts: number,
    count: boolean,
  ): PaidOutcome | DeclinedOutcome | PendingOutcome {
    const { orderId, merchant, idempotencyKey } = record;
    let outcome: PaymentOutcome;
    if (record.state === 'paid') {
      const reference = record.reference ?? '';
      outcome = { status: 'paid', orderId, merchant, idempotencyKey, attempts, reference };
    } else if (record.state === 'declined') {
      const reason = record.declineReason ?? '';
      outcome = { status: 'declined', orderId, merchant, idempotencyKey, attempts, reason };
    } else {
      outcome = { status: 'pending', orderId, merchant, idempotencyKey, attempts, reason: 'deadline' };
    }
    if (count) {
      if (outcome.status === 'paid') this.#counters.paid++;
      else if (outcome.status === 'declined') this.#counters.declined++;
    }
    // A payment this client held pending and finds settled (by another process sharing the ledger) is
    // reconciled all the same: its `reconciled` event and metrics must not depend on who asked the bank.
    this.#settledPending(record, outcome);
    if (count && this.listenerCount('outcome') > 0) this.#emit('outcome', outcome);
    return outcome;
  }

  #settledPending(record: PaymentRecord, outcome: PaymentOutcome): void {
    if (outcome.status === 'pending' || !this.#pending.delete(record.idempotencyKey)) return;
    const latencyMs = record.unknownSince === null ? 0 : Math.max(0, record.updatedAt - record.unknownSince);
    this.#counters.resolved++;
    this.#counters.latencyMsTotal += latencyMs;
    this.#counters.latencyMsMax = Math.max(this.#counters.latencyMsMax, latencyMs);
    if (this.listenerCount('reconciled') > 0) this.#emit('reconciled', { outcome, latencyMs });
  }

  async #pendingOutcome(
    record: PaymentRecord,
    attempts: number,
    reason: PendingReason,
    waitMs = 0,
  ): Promise<PaymentOutcome> {
    const current = await this.#transition(record.idempotencyKey, 'unknown', {
      unknownSince: Date.now(),
    });
    if (current === undefined) {
      // Settled elsewhere meanwhile (another process): report that instead.
      const fresh = await this.#get(record.idempotencyKey);
      if (fresh !== undefined && (fresh.state === 'paid' || fresh.state === 'declined')) {
        return this.#finished(fresh, attempts, true);
      }
    }
    return this.#pendingFor(record, attempts, reason, waitMs);
  }

  /**
   * Reports `record` pending and hands it to the reconciler (which then owns it until it settles), to be
   * tried again after its back-off, and no sooner than `waitMs` (the wait the drive was about to make:
   * a server's `Retry-After`). Counted in `outcomes.pending`, with an `outcome` event, only when the
   * payment goes pending: not again while the reconciler holds it (its passes, a `pay()` or `recover()`
   * of it that ends pending too), so the counter counts payments, not tries.
   */
  #pendingFor(record: PaymentRecord, attempts: number, reason: PendingReason, waitMs = 0): PendingOutcome {
    const existing = this.#pending.get(record.idempotencyKey);
    const outcome: PendingOutcome = {
      status: 'pending',
      orderId: record.orderId,
      merchant: record.merchant,
      idempotencyKey: record.idempotencyKey,
      attempts,
      reason,
    };
    if (existing?.trying === true) {
      // The reconciler's own try: its pass backs the payment off when the try ends; a Retry-After stands.
      existing.nextAt = Math.max(existing.nextAt, this.#clock() + waitMs);
    } else if (!this.#closed) {
      const nextAt = this.#clock() + Math.max(this.#reconcileDelay(existing?.tries ?? 0), waitMs);
      if (existing !== undefined) existing.nextAt = nextAt;
      else {
        this.#pending.set(record.idempotencyKey, {
          idempotencyKey: record.idempotencyKey,
          scope: record.scope,
          fingerprint: fingerprintOf(record.amount, record.currency, record.payer, record.fields),
          nextAt,
          tries: 0,
          trying: false,
        });
      }
      this.#schedule(nextAt);
    }
    if (existing === undefined) {
      this.#counters.pending++;
      if (this.listenerCount('outcome') > 0) this.#emit('outcome', outcome);
    }
    return outcome;
  }

  /**
   * The wait before a pending payment's next try, after `tries` tries that left it pending. Equal jitter
   * (AWS Architecture blog, "Exponential Backoff And Jitter"), where `pay()`'s retries use full jitter:
   * un-jittered, the payments a bank outage left pending in the same second, in every process, would be
   * asked about again in lock-step; full jitter would spread them too, but with waits down to 0 a payment
   * could be asked about again right after a try that found it open. Equal jitter keeps half the wait:
   * always at least `intervalMs / 2`, and under `maxIntervalMs`.
   */
  #reconcileDelay(tries: number): number {
    const { intervalMs, maxIntervalMs } = this.#reconcile;
    return equalJitter(tries, intervalMs, maxIntervalMs, this.#random);
  }

  /**
   * Calls `name`'s listeners (callers check `listenerCount` first where the payload would cost an object).
   * A listener observes a payment and is never a party to it: one that throws leaves the payment going on
   * exactly as if it had returned (its `pay()` or `recover()` answers the same, the ledger holds the same,
   * a pending payment is still reconciled), and its error is thrown again on the next tick. There it
   * surfaces as an `uncaughtException`, as a throwing listener's error does outside a promise chain: never
   * swallowed, and never a rejection of the caller's promise. The listeners after it for that event are
   * skipped, as `emit` does.
   */
  #emit<K extends keyof PaymentClientEvents>(name: K, ...args: PaymentClientEvents[K]): void {
    try {
      // The generic K does not narrow EventEmitter's conditional parameter type; the signature above does.
      (this as EventEmitter).emit(name, ...args);
    } catch (error) {
      process.nextTick(rethrow, error);
    }
  }

  /**
   * The ledger threw while a payment it holds was being driven. The payment is recorded and may have
   * reached the bank (this call's request, or an earlier one's), so rejecting would read as "failed" and
   * leave it to nobody: it is pending, the reconciler drives it from what the ledger holds (status query
   * first), and the error is reported as a `reconcileFailed` event. Anything else is rethrown.
   */
  #ledgerFailed(record: PaymentRecord, attempts: number, error: unknown): PendingOutcome {
    if (typeof error !== 'object' || error === null || !this.#ledgerErrors.has(error)) throw error;
    if (this.listenerCount('reconcileFailed') > 0) {
      this.#emit('reconcileFailed', { idempotencyKey: record.idempotencyKey, error });
    }
    return this.#pendingFor(record, attempts, 'ledger_error');
  }

  /** Marks an error the ledger threw, for {@link PaymentClient.#ledgerFailed}; rethrows it. */
  readonly #ledgerError = (error: unknown): never => {
    if (typeof error === 'object' && error !== null) this.#ledgerErrors.add(error);
    throw error;
  };

  /**
   * Runs one ledger call of a payment's drive, marking what the ledger throws (at once or as a rejection)
   * as its own, for {@link PaymentClient.#ledgerFailed}.
   */
  #fromLedger<T>(call: () => Awaitable<T>): Awaitable<T> {
    try {
      const answer = call();
      return answer instanceof Promise ? answer.catch(this.#ledgerError) : answer;
    } catch (error) {
      return this.#ledgerError(error);
    }
  }

  #get(idempotencyKey: string): Awaitable<PaymentRecord | undefined> {
    return this.#fromLedger(() => this.ledger.get(idempotencyKey));
  }

  #transition(
    idempotencyKey: string,
    to: PaymentState,
    patch?: RecordPatch,
  ): Awaitable<PaymentRecord | undefined> {
    return this.#fromLedger(() => this.ledger.transition(idempotencyKey, to, patch));
  }

  #recordAttempt(attempt: AttemptRecord): Awaitable<void> {
    return this.#fromLedger(() => this.ledger.recordAttempt(attempt));
  }

  /**
   * Arms the timer of the next pass for the earliest pending payment. `dueAt` is when a payment that has
   * just gone pending is due: earlier than the pass already armed (others backed off towards
   * `maxIntervalMs`), it re-arms the timer, so a new pending payment is tried after its first back-off
   * (`[intervalMs/2, intervalMs)`), not at the others' pass.
   */
  #schedule(dueAt?: number): void {
    if (!this.#reconcileInBackground || this.#closed) return;
    if (this.#reconcileRunning !== undefined || this.#pending.size === 0) return;
    if (this.#reconcileTimer !== undefined) {
      if (dueAt === undefined || dueAt >= this.#reconcileTimerAt) return;
      clearTimeout(this.#reconcileTimer);
    }
    let earliest = Number.POSITIVE_INFINITY;
    for (const entry of this.#pending.values()) earliest = Math.min(earliest, entry.nextAt);
    const wait = Math.max(0, earliest - this.#clock());
    this.#reconcileTimerAt = earliest;
    this.#reconcileTimer = setTimeout(() => {
      this.#reconcileTimer = undefined;
      // A pass reports each payment's failure itself; nothing of it may become an unhandled rejection.
      this.#reconcilePass(true).catch(() => {});
    }, wait);
    // Reconciliation must not keep a process alive: what it has not settled, recover() will.
    this.#reconcileTimer.unref();
  }

  async #reconcilePass(dueOnly: boolean): Promise<{ readonly resolved: number; readonly pending: number }> {
    while (this.#reconcileRunning !== undefined) await this.#reconcileRunning;
    const now = this.#clock();
    const due = [...this.#pending.values()].filter((entry) => !dueOnly || entry.nextAt <= now);
    let resolved = 0;
    const run = this.#mapLimit(due, this.#reconcile.concurrency, async (entry) => {
      if (this.#closed) return;
      entry.trying = true;
      try {
        const record = await this.ledger.get(entry.idempotencyKey);
        if (record === undefined) {
          this.#pending.delete(entry.idempotencyKey);
          return;
        }
        const outcome = await this.#resume(record, this.#reconcile.deadlineMs);
        if (outcome.status !== 'pending') {
          resolved++;
          this.#pending.delete(entry.idempotencyKey);
          return;
        }
      } catch (error) {
        // The ledger failed (locked, disk full): this payment stays pending and backs off like one the
        // bank left open; the others in the pass go on.
        if (this.listenerCount('reconcileFailed') > 0) {
          this.#emit('reconcileFailed', { idempotencyKey: entry.idempotencyKey, error });
        }
      }
      entry.trying = false;
      // Still held (an entry is updated in place while held): it backs off one step further.
      if (this.#pending.get(entry.idempotencyKey) === entry) {
        entry.tries++;
        // A later time the try set (the bank's Retry-After) stands.
        entry.nextAt = Math.max(entry.nextAt, this.#clock() + this.#reconcileDelay(entry.tries));
      }
    });
    this.#reconcileRunning = run;
    try {
      await run;
    } finally {
      this.#reconcileRunning = undefined;
      // Armed before this pass (reconcileNow() runs besides the timer): payments that went pending during
      // it could not re-arm it then, and may be due before it. Armed again for the earliest.
      clearTimeout(this.#reconcileTimer);
      this.#reconcileTimer = undefined;
      this.#schedule();
    }
    return { resolved, pending: this.#pending.size };
  }

  async #mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
    const results: R[] = new Array(items.length);
    let next = 0;
    const worker = async () => {
      while (next < items.length) {
        const index = next++;
        results[index] = await fn(items[index] as T);
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
    return results;
  }
}

/** An AttemptError that also carries the classified step, for the client that threw it. */
class StepError extends AttemptError {
  readonly step: Step;

  constructor(
    code: string,
    message: string,
    fields: ConstructorParameters<typeof AttemptError>[2],
    step: Step,
    options?: { cause?: unknown },
  ) {
    super(code, message, fields, options);
    this.step = step;
  }
}

/** Throws `error`: a listener's, on the tick after the client went on without it (see `#emit`). */
function rethrow(error: unknown): never {
  throw error;
}

function deadlineReason(): PaymentRetryError {
  return new PaymentRetryError('ERR_DEADLINE', 'The payment deadline passed');
}

/**
 * Cancels one payment (deadline, caller's signal, close()). A plain object with a slot for the one
 * exchange and the one backoff sleep a payment has at a time: an AbortSignal's listeners were the
 * largest single cost of a fast payment, and an EventEmitter's construction and listener bookkeeping
 * showed in callgrind too. A real AbortSignal is made only when a limiter, a breaker or a dispatcher
 * passed in asks for one.
 */
class PaymentCancel implements ExchangeCanceller {
  aborted = false;
  reason: unknown = undefined;
  exchange: TextExchange | undefined = undefined;
  /** Wakes the backoff sleep in progress. */
  sleeper: (() => void) | undefined = undefined;
  #controller: AbortController | undefined;

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.exchange?.abort(reason);
    this.#controller?.abort(reason);
    this.sleeper?.();
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.aborted) this.#controller.abort(this.reason);
    }
    return this.#controller.signal;
  }
}

/** Waits `ms`, ending early (without throwing) when the payment is cancelled. */
function sleep(ms: number, cancel: PaymentCancel): Promise<void> {
  return new Promise((resolve) => {
    if (cancel.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      if (cancel.sleeper === done) cancel.sleeper = undefined;
      resolve();
    };
    // Not unref'd: the caller is awaiting this payment, like it would await a socket.
    const timer = setTimeout(done, ms);
    cancel.sleeper = done;
  });
}

/**
 * Creates a {@link PaymentClient}.
 *
 * @example
 * const client = createPaymentClient({
 *   gateway: ietfGateway({ origin: 'https://bank.example' }),
 *   ledger: sqliteLedger({ path: 'payments.db' }),
 *   limiter: gate({ rate: 300, concurrency: 64, maxQueue: 1000, maxWaitMs: 2000 }),
 *   breaker: circuitBreaker({ name: 'bank' }),
 * });
 * @throws {InvalidOptionError} for a missing, malformed or unknown option.
 */
export function createPaymentClient(options: PaymentClientOptions): PaymentClient {
  return new PaymentClient(options);
}
