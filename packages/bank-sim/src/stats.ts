/** What happened in one second of the run (deltas, not totals). */
export interface BankStatsSecond {
  /** Seconds since the start (or the last `resetStats()`); 0 is the first second. */
  readonly second: number;
  /** `POST /payments` requests received. */
  readonly requests: number;
  /** Requests that took a flow-limit token. */
  readonly admitted: number;
  /** Requests refused by the flow limit. */
  readonly throttled: number;
  /** Charges, duplicates included. */
  readonly charges: number;
  /** 402 declines. */
  readonly declines: number;
  /** Stored answers replayed for a repeated key. */
  readonly replays: number;
  /** 409s: the same key while its first request was processing. */
  readonly conflicts: number;
  /** The same key with a different payload (422, or 400 by `mismatchStatus`). */
  readonly mismatches: number;
  /** Injected faults of every kind. */
  readonly faults: number;
  /** Requests refused because the teller queue (or the key store) was full. */
  readonly overloaded: number;
}

/**
 * Ground truth of a run, as `GET /_stats` and `bank.stats()` report it. Counts since the start or the
 * last `resetStats()`.
 */
export interface BankStats {
  /** Milliseconds covered (since start or the last reset). */
  readonly uptimeMs: number;
  /** `POST /payments` requests received (whatever became of them). */
  readonly requests: number;
  /** Requests that took a flow-limit token (payments, and status checks when they are limited). */
  readonly admitted: number;
  /** Requests refused by the flow limit (503/429 + Retry-After). */
  readonly throttled: number;
  /** Stored answers replayed for a repeated key (`Idempotent-Replayed: true`). */
  readonly replays: number;
  /** 409: same key while the first request was still processing. */
  readonly conflicts: number;
  /** 422 (or 400 by `mismatchStatus`): same key, different payload. */
  readonly mismatches: number;
  /** 400/413 answers: missing or malformed key, bad JSON, bad fields, body too large. */
  readonly badRequests: number;
  /** Money moved: every charge, duplicates included. */
  readonly charges: number;
  /** 402 declines (no money moved). */
  readonly declines: number;
  /**
   * Distinct tracked order ids charged at least once (exact). Orders past `maxTrackedOrders` are not in
   * it: their charges are in `untrackedCharges`, so the distinct orders charged are between
   * `ordersCharged` and `ordersCharged + untrackedCharges`.
   */
  readonly ordersCharged: number;
  /** Distinct order ids charged two times or more: the number that must stay 0. */
  readonly ordersChargedMoreThanOnce: number;
  /** Charges beyond the first per order id. */
  readonly extraCharges: number;
  /**
   * Charges of orders past `maxTrackedOrders`: counted in `charges`, not in `ordersCharged`, and not
   * checked for duplicates (an upper bound on the orders they were for).
   */
  readonly untrackedCharges: number;
  /** Injected 5xx before charging. */
  readonly transientErrors: number;
  /** Charged, then the connection dropped without an answer. */
  readonly droppedAfterCharge: number;
  /** Charged, then answered after `slowAnswerMs`. */
  readonly slowAnswers: number;
  /** Requests whose connection was reset before processing. */
  readonly resets: number;
  /** Connections reset as they were accepted (`refuseConnectionRate`, outage mode `reset`). */
  readonly refusedConnections: number;
  /** Requests answered 503 or reset because of an outage window. */
  readonly outageRejections: number;
  /** Requests refused because the teller queue (or the key store) was full. */
  readonly overloaded: number;
  /**
   * `'error'` events of the HTTP server after it listened, such as a failed accept (`EMFILE` when the
   * process is out of file descriptors): the simulator keeps serving. Not an injected fault.
   */
  readonly serverErrors: number;
  /** The message of the last of those (e.g. `accept EMFILE`), or `null`. */
  readonly lastServerError: string | null;
  /** `GET /payments/{key}` requests. */
  readonly statusChecks: number;
  /** Payments at a teller now. */
  readonly inFlight: number;
  /** Payments waiting for a teller now. */
  readonly queued: number;
  /** The most payments waiting at once. */
  readonly peakQueued: number;
  /** The most requests admitted in any sliding 1 s window. */
  readonly peakAdmittedPerSecond: number;
  /** Whether an outage window is open now. */
  readonly down: boolean;
  /** The flow limit: rate (per second) and burst. */
  readonly rate: number;
  /** The flow limit's bucket size: requests that may arrive back to back. */
  readonly burst: number;
  /** One entry per second, oldest first (at most `seriesSeconds`); the last one is the current, partial second. */
  readonly series: readonly BankStatsSecond[];
}

type SeriesKey = Exclude<keyof BankStatsSecond, 'second'>;
const SERIES_KEYS: readonly SeriesKey[] = [
  'requests',
  'admitted',
  'throttled',
  'charges',
  'declines',
  'replays',
  'conflicts',
  'mismatches',
  'faults',
  'overloaded',
];

/** The counters the server increments directly (plain fields: the hot path only does `++`). */
export class Counters {
  requests = 0;
  admitted = 0;
  throttled = 0;
  replays = 0;
  conflicts = 0;
  mismatches = 0;
  badRequests = 0;
  charges = 0;
  declines = 0;
  untrackedCharges = 0;
  transientErrors = 0;
  droppedAfterCharge = 0;
  slowAnswers = 0;
  resets = 0;
  refusedConnections = 0;
  outageRejections = 0;
  overloaded = 0;
  statusChecks = 0;
  serverErrors = 0;
  /** Every injected fault, for the series. */
  faults = 0;
}

/** The live state `snapshot()` reads from the server. */
export interface LiveState {
  readonly inFlight: number;
  readonly queued: number;
  readonly peakQueued: number;
  readonly down: boolean;
  readonly rate: number;
  readonly burst: number;
}

/**
 * Records the run's ground truth: counters, charges per order id (for double charges), the peak of
 * admitted requests in any sliding 1 s window and a per-second series. Memory is bounded by
 * `maxTrackedOrders` and `seriesSeconds`; the sliding window holds one timestamp per request admitted
 * in the last second.
 */
export class StatsRecorder {
  counters = new Counters();
  readonly #maxTrackedOrders: number;
  readonly #seriesSeconds: number;
  #chargesPerOrder = new Map<string, number>();
  #ordersChargedMoreThanOnce = 0;
  #extraCharges = 0;
  #startedAt: number;
  // Sliding 1 s window of admission times, as a ring buffer.
  #window = new Float64Array(1024);
  #windowHead = 0;
  #windowLength = 0;
  #peakAdmitted = 0;
  // Series: the totals at the start of the current second, and the closed seconds.
  #second = 0;
  #secondEndsAt: number;
  #mark = new Counters();
  #series: BankStatsSecond[] = [];
  #lastServerError: string | null = null;

  constructor(options: { maxTrackedOrders: number; seriesSeconds: number; now: number }) {
    this.#maxTrackedOrders = options.maxTrackedOrders;
    this.#seriesSeconds = options.seriesSeconds;
    this.#startedAt = options.now;
    this.#secondEndsAt = options.now + 1000;
  }

  /** Moves the series to the second of `now`; call before counting an event. */
  tick(now: number): void {
    if (now >= this.#secondEndsAt) this.#roll(now);
  }

  /** Counts one admitted request at `now` in the sliding window. */
  admit(now: number): void {
    this.counters.admitted++;
    const horizon = now - 1000;
    while (this.#windowLength > 0 && (this.#window[this.#windowHead] as number) <= horizon) {
      this.#windowHead = (this.#windowHead + 1) % this.#window.length;
      this.#windowLength--;
    }
    if (this.#windowLength === this.#window.length) this.#grow();
    this.#window[(this.#windowHead + this.#windowLength) % this.#window.length] = now;
    this.#windowLength++;
    if (this.#windowLength > this.#peakAdmitted) this.#peakAdmitted = this.#windowLength;
  }

  /** Counts a charge of `orderId` (the per-order ground truth). */
  charge(orderId: string): void {
    this.counters.charges++;
    const before = this.#chargesPerOrder.get(orderId);
    if (before === undefined) {
      if (this.#chargesPerOrder.size >= this.#maxTrackedOrders) {
        this.counters.untrackedCharges++;
        return;
      }
      this.#chargesPerOrder.set(orderId, 1);
      return;
    }
    this.#chargesPerOrder.set(orderId, before + 1);
    if (before === 1) this.#ordersChargedMoreThanOnce++;
    this.#extraCharges++;
  }

  /** Counts an `'error'` event of the server that it survived, keeping its message for `lastServerError`. */
  serverError(error: unknown): void {
    this.counters.serverErrors++;
    const message = error instanceof Error ? error.message : String(error);
    // A message is as long as whoever built the error made it; /_stats stays small.
    this.#lastServerError = message.length > 200 ? `${message.slice(0, 197)}...` : message;
  }

  /** Starts counting afresh at `now`. */
  reset(now: number): void {
    this.counters = new Counters();
    this.#mark = new Counters();
    this.#chargesPerOrder = new Map();
    this.#ordersChargedMoreThanOnce = 0;
    this.#extraCharges = 0;
    this.#startedAt = now;
    this.#windowHead = 0;
    this.#windowLength = 0;
    this.#peakAdmitted = 0;
    this.#second = 0;
    this.#secondEndsAt = now + 1000;
    this.#series = [];
    this.#lastServerError = null;
  }

  snapshot(now: number, live: LiveState): BankStats {
    this.tick(now);
    const c = this.counters;
    return {
      uptimeMs: now - this.#startedAt,
      requests: c.requests,
      admitted: c.admitted,
      throttled: c.throttled,
      replays: c.replays,
      conflicts: c.conflicts,
      mismatches: c.mismatches,
      badRequests: c.badRequests,
      charges: c.charges,
      declines: c.declines,
      ordersCharged: this.#chargesPerOrder.size,
      ordersChargedMoreThanOnce: this.#ordersChargedMoreThanOnce,
      extraCharges: this.#extraCharges,
      untrackedCharges: c.untrackedCharges,
      transientErrors: c.transientErrors,
      droppedAfterCharge: c.droppedAfterCharge,
      slowAnswers: c.slowAnswers,
      resets: c.resets,
      refusedConnections: c.refusedConnections,
      outageRejections: c.outageRejections,
      overloaded: c.overloaded,
      serverErrors: c.serverErrors,
      lastServerError: this.#lastServerError,
      statusChecks: c.statusChecks,
      inFlight: live.inFlight,
      queued: live.queued,
      peakQueued: live.peakQueued,
      peakAdmittedPerSecond: this.#peakAdmitted,
      down: live.down,
      rate: live.rate,
      burst: live.burst,
      series: [...this.#series, this.#entry(this.#second)],
    };
  }

  #roll(now: number): void {
    this.#push(this.#entry(this.#second));
    this.#mark = Object.assign(new Counters(), this.counters);
    const target = Math.floor((now - this.#startedAt) / 1000);
    // Quiet seconds get zero entries, but never more than the series keeps.
    for (let s = Math.max(this.#second + 1, target - this.#seriesSeconds); s < target; s++) {
      this.#push(this.#entry(s));
    }
    this.#second = target;
    this.#secondEndsAt = this.#startedAt + (target + 1) * 1000;
  }

  #entry(second: number): BankStatsSecond {
    const entry: Record<string, number> = { second };
    for (const key of SERIES_KEYS) entry[key] = this.counters[key] - this.#mark[key];
    return entry as unknown as BankStatsSecond;
  }

  #push(entry: BankStatsSecond): void {
    this.#series.push(entry);
    // The current second is appended by snapshot(), so keep one slot for it.
    if (this.#series.length > this.#seriesSeconds - 1) this.#series.shift();
  }

  #grow(): void {
    const size = this.#window.length;
    const next = new Float64Array(size * 2);
    for (let i = 0; i < this.#windowLength; i++)
      next[i] = this.#window[(this.#windowHead + i) % size] as number;
    this.#window = next;
    this.#windowHead = 0;
  }
}
