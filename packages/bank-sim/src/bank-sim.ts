import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { BankSimError, InvalidOptionError } from './errors.js';
import { FaultPlan } from './fault-plan.js';
import { FlowLimit } from './flow-limit.js';
import { parseIdempotencyKey } from './idempotency-key.js';
import { type IdempotencyRecord, IdempotencyStore } from './idempotency-store.js';
import { type BankSimOptions, type Faults, type ResolvedOptions, resolveOptions } from './options.js';
import { Prng, streamSeed } from './prng.js';
import { type BankStats, StatsRecorder } from './stats.js';
import { type TellerJob, Tellers } from './tellers.js';

const JSON_TYPE = 'application/json';
const PROBLEM_TYPE = 'application/problem+json';
const DECLINE_PREFIX = 'tok_decline_';
const CURRENCY = /^[A-Za-z]{3}$/;
const MAX_FIELD_LENGTH = 255;

/** An RFC 9457 problem body with a stable machine-readable `code`. */
function problem(status: number, code: string, title: string, detail?: string): string {
  return JSON.stringify({ type: `urn:floodgate:bank-sim:${code}`, title, status, code, detail });
}

// Answers that never vary are serialized once.
const BODY_CONFLICT = problem(
  409,
  'idempotency_key_in_use',
  'A request with this Idempotency-Key is still being processed',
  'Retry after the Retry-After delay; the first request will answer, then this key replays its outcome.',
);
const BODY_OVERLOADED = problem(
  503,
  'overloaded',
  'The gateway is overloaded',
  'Too many payments are queued.',
);
const BODY_OUTAGE = problem(503, 'outage', 'The gateway is down');
const BODY_KEY_MISSING = problem(
  400,
  'idempotency_key_missing',
  'Missing Idempotency-Key header',
  'POST /payments requires an Idempotency-Key header.',
);
const BODY_NOT_FOUND = JSON.stringify({ status: 'not_found' });

/**
 * A payment waiting for or at a teller; `serve()` processes it. Its random decisions were drawn when it
 * arrived, so they do not depend on when it (or any other payment) reaches or leaves a teller.
 */
class PaymentJob implements TellerJob {
  constructor(
    readonly processor: (job: PaymentJob) => void,
    readonly res: ServerResponse,
    readonly record: IdempotencyRecord,
    readonly key: string,
    readonly orderId: string,
    readonly amount: number,
    readonly currency: string,
    readonly source: string,
    readonly jitter: number,
    readonly error: boolean,
    readonly drop: boolean,
    readonly slow: boolean,
  ) {}

  serve(): void {
    this.processor(this);
  }
}

interface PaymentRequest {
  readonly orderId: string;
  readonly amount: number;
  readonly currency: string;
  readonly source: string;
  readonly fingerprint: string;
}

/**
 * A bank gateway that behaves like the real one during a shopping festival: a global flow limit,
 * latency that grows with load, idempotency keys as the IETF draft says, and reproducible faults (the
 * ambiguous "charged, then no answer" among them), with ground truth counted per order id.
 *
 * Use {@link startBankSim}; `new BankSim()` + `listen()` is the same in two steps.
 *
 * @example
 * ```ts
 * const bank = await startBankSim({ rate: 300, faults: { dropAfterChargeRate: 0.05 }, seed: 42 });
 * // ... drive bank.url ...
 * console.log(bank.stats().ordersChargedMoreThanOnce);
 * await bank.close();
 * ```
 */
export class BankSim {
  /** The options in force, defaults filled in. */
  readonly options: ResolvedOptions;
  readonly #clock: () => number;
  readonly #server: Server;
  readonly #limit: FlowLimit;
  readonly #store: IdempotencyStore;
  readonly #tellers: Tellers;
  readonly #plan: FaultPlan;
  readonly #stats: StatsRecorder;
  readonly #throttledBody: string;
  // Slow answers and re-listen retries: cleared by close().
  readonly #slowTimers = new Set<NodeJS.Timeout>();
  #port = 0;
  #listening = false;
  #closed = false;
  #paymentSeq = 0;
  // Payments are numbered as they arrive; payment n draws every decision from stream n of the seed
  // (reseeding this one generator), so overlapping requests cannot shift each other's faults.
  #arrivals = 0;
  readonly #requestRandom = new Prng(0);
  #closing: Promise<void> | undefined;
  // The server.listen() in progress. Node drops one that a server.close() overtakes without emitting
  // 'listening' or 'error', so its listeners are removed (and a pending listen() rejected) here.
  #pendingListen: { readonly cancel: () => void } | undefined;

  /**
   * @throws {InvalidOptionError} when an option is unknown or out of range.
   */
  constructor(options: BankSimOptions = {}) {
    const o = resolveOptions(options);
    this.options = o;
    this.#clock = o.clock;
    // Connection refusals draw from the seed's own stream, in the order connections are accepted.
    const random = new Prng(o.seed);
    this.#limit = new FlowLimit({ rate: o.rate, burst: o.burst });
    this.#store = new IdempotencyStore({ maxKeys: o.maxKeys, ttlMs: o.keyTtlMs });
    this.#tellers = new Tellers({
      tellers: o.tellers,
      maxQueued: o.maxQueued,
      latencyMs: o.latencyMs,
      latencyJitterMs: o.latencyJitterMs,
      random: () => random.next(), // unused: every payment brings its own jitter draw
    });
    this.#stats = new StatsRecorder({
      maxTrackedOrders: o.maxTrackedOrders,
      seriesSeconds: o.seriesSeconds,
      now: this.#clock(),
    });
    this.#throttledBody = problem(
      o.throttleStatus,
      'rate_limited',
      'Over the gateway flow limit',
      `At most ${o.rate} requests per second (burst ${o.burst}); retry after the Retry-After delay.`,
    );
    this.#server = createServer({ keepAliveTimeout: 5000 }, this.#onRequest);
    this.#server.on('connection', this.#onConnection);
    this.#server.on('error', this.#onServerError);
    this.#plan = new FaultPlan({ faults: o.faults, random, clock: this.#clock, onChange: this.#onOutage });
  }

  /**
   * Starts listening on `options.port` / `options.host`. Resolves once the address is known.
   * @throws {BankSimError} `ERR_CLOSED` (rejects) when `close()` was called before or while it listens.
   */
  listen(): Promise<this> {
    if (this.#closed) return Promise.reject(new BankSimError('ERR_CLOSED', 'The bank simulator is closed'));
    return new Promise((resolve, reject) => {
      this.#listen(
        this.options.port,
        () => {
          this.#port = (this.#server.address() as AddressInfo).port;
          this.#listening = true;
          // An outage that started before we listened (startMs 0) must refuse from the first connection.
          if (this.#plan.down && this.#plan.faults.outageMode === 'refuse') this.#stopListening();
          resolve(this);
        },
        reject,
        () => reject(new BankSimError('ERR_CLOSED', 'The bank simulator was closed before it listened')),
      );
    });
  }

  /** The port it listens on (0 before `listen()`). */
  get port(): number {
    return this.#port;
  }

  /** Base URL, e.g. `http://127.0.0.1:43121` (IPv6 hosts are bracketed). */
  get url(): string {
    const host = this.options.host.includes(':') ? `[${this.options.host}]` : this.options.host;
    return `http://${host}:${this.#port}`;
  }

  /** The faults in force. */
  get faults(): Faults {
    return this.#plan.faults;
  }

  /** Ground truth since the start or the last `resetStats()` (same as `GET /_stats`). */
  stats(): BankStats {
    return this.#stats.snapshot(this.#clock(), {
      inFlight: this.#tellers.busy,
      queued: this.#tellers.queued,
      peakQueued: this.#tellers.peakQueued,
      down: this.#plan.down,
      rate: this.#limit.rate,
      burst: this.#limit.burst,
    });
  }

  /** Starts the counters, the series and the peaks afresh. Idempotency records are kept. */
  resetStats(): void {
    this.#stats.reset(this.#clock());
    this.#tellers.resetPeak();
  }

  /**
   * Changes the faults at run time (same as `POST /_faults`): `partial` is merged over the faults in
   * force. Setting `outages` ends any open outage and schedules the new windows from now.
   * @returns the faults now in force.
   * @throws {InvalidOptionError} on an unknown key or a bad value (nothing changes then).
   * @example
   * ```ts
   * bank.setFaults({ outages: [{ startMs: 0, durationMs: 5000 }], recoveryMs: 10_000 });
   * ```
   */
  setFaults(partial: Partial<Faults>): Faults {
    return this.#plan.set(partial);
  }

  /** Stops listening, ends every connection, timer and queued payment. Safe to call twice. */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closed = true;
    this.#pendingListen?.cancel();
    this.#plan.close();
    this.#tellers.close();
    for (const timer of this.#slowTimers) clearTimeout(timer);
    this.#slowTimers.clear();
    this.#closing = new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    return this.#closing;
  }

  // --- outages -----------------------------------------------------------------------------------

  readonly #onOutage = (down: boolean): void => {
    // Called during construction too (a window at 0), before #plan is assigned: listen() handles that.
    if (!down && this.#plan.faults.recoveryMs > 0) {
      const now = this.#clock();
      this.#limit.recover(now, this.#plan.rateFactor(now), this.#plan.rateFactorUntil(now));
    }
    if (!this.#listening || this.#closed) return;
    if (!down) this.#relisten(0);
    else if (this.#plan.faults.outageMode === 'refuse') this.#stopListening();
  };

  // Back on the same port. Another process may have grabbed it meanwhile: retry a while, then give up
  // (the simulator stays down; `stats().down` is false but connections are refused).
  #relisten(attempt: number): void {
    if (this.#closed || this.#plan.down || this.#server.listening || this.#pendingListen) return;
    const onError = () => {
      if (attempt >= 50) return;
      const timer = setTimeout(() => {
        this.#slowTimers.delete(timer);
        this.#relisten(attempt + 1);
      }, 20);
      timer.unref();
      this.#slowTimers.add(timer);
    };
    this.#listen(this.#port, noop, onError, noop);
  }

  /** `server.listen()` with listeners that go away however it ends: listening, error, or overtaken. */
  #listen(
    port: number,
    onListening: () => void,
    onError: (error: Error) => void,
    onCancel: () => void,
  ): void {
    const server = this.#server;
    const forget = () => {
      server.off('listening', listening);
      server.off('error', failed);
      if (this.#pendingListen === pending) this.#pendingListen = undefined;
    };
    const listening = () => {
      forget();
      onListening();
    };
    const failed = (error: Error) => {
      forget();
      onError(error);
    };
    const pending = {
      cancel: () => {
        forget();
        onCancel();
      },
    };
    this.#pendingListen = pending;
    server.once('listening', listening);
    server.once('error', failed);
    try {
      server.listen(port, this.options.host);
    } catch (error) {
      forget(); // e.g. ERR_SERVER_ALREADY_LISTEN, thrown at once
      throw error;
    }
  }

  #stopListening(): void {
    // A listen again still in progress is dropped by the close below: forget its listeners.
    this.#pendingListen?.cancel();
    // Idle keep-alive sockets go too; requests in flight still get their answer.
    this.#server.close();
    this.#server.closeIdleConnections();
  }

  // Once listening, the server emits 'error' when an accept fails: EMFILE or ENFILE when the process is
  // out of file descriptors, which a benchmark that opens connections as fast as it can may well cause.
  // Node has already dropped that connection and the next accept may succeed. With no listener the
  // event would throw and end the process running the test or the benchmark, losing the ground truth
  // the run was for; a real gateway's trouble reaches its clients as a refused connection, never as a
  // crash of theirs. So the simulator keeps serving and counts the error where a run's other
  // surprises are read (`stats().serverErrors`, `lastServerError`).
  readonly #onServerError = (error: Error): void => {
    // A listen in progress has its own listener: listen() rejects, a listen again after an outage retries.
    if (this.#pendingListen !== undefined) return;
    this.#stats.serverError(error);
  };

  readonly #onConnection = (socket: Socket): void => {
    if (this.#plan.down && this.#plan.faults.outageMode === 'refuse') {
      this.#stats.counters.refusedConnections++;
      this.#stats.counters.faults++;
      socket.resetAndDestroy();
    } else if (this.#plan.chance(this.#plan.faults.refuseConnectionRate)) {
      this.#stats.tick(this.#clock());
      this.#stats.counters.refusedConnections++;
      this.#stats.counters.faults++;
      socket.resetAndDestroy();
    }
  };

  // --- routing -----------------------------------------------------------------------------------

  readonly #onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    const method = req.method;
    if (path === '/payments') {
      if (method === 'POST') this.#createPayment(req, res);
      else this.#methodNotAllowed(res, 'POST');
    } else if (path.startsWith('/payments/')) {
      if (method === 'GET' || method === 'HEAD') this.#paymentStatus(req, res, path.slice(10));
      else this.#methodNotAllowed(res, 'GET, HEAD');
    } else if (path === '/_stats') {
      if (method === 'GET' || method === 'HEAD') send(res, 200, JSON.stringify(this.stats()), JSON_TYPE);
      else this.#methodNotAllowed(res, 'GET, HEAD');
    } else if (path === '/_stats/reset') {
      if (method === 'POST') {
        this.resetStats();
        res.writeHead(204).end();
      } else this.#methodNotAllowed(res, 'POST');
    } else if (path === '/_faults') {
      if (method === 'GET' || method === 'HEAD') send(res, 200, JSON.stringify(this.faults), JSON_TYPE);
      else if (method === 'POST') this.#postFaults(req, res);
      else this.#methodNotAllowed(res, 'GET, HEAD, POST');
    } else {
      send(res, 404, problem(404, 'route_not_found', 'No such route', `${method} ${path}`), PROBLEM_TYPE);
    }
  };

  #methodNotAllowed(res: ServerResponse, allow: string): void {
    res.setHeader('allow', allow);
    send(
      res,
      405,
      problem(405, 'method_not_allowed', 'Method not allowed', `Allowed: ${allow}`),
      PROBLEM_TYPE,
    );
  }

  // --- POST /payments ------------------------------------------------------------------------------

  #createPayment(req: IncomingMessage, res: ServerResponse): void {
    const now = this.#clock();
    const stats = this.#stats;
    stats.tick(now);
    stats.counters.requests++;
    if (this.#plan.down && this.#rejectForOutage(req, res, now)) return;
    if (!this.#admit(res, now)) return;

    const header = req.headers['idempotency-key'];
    if (header === undefined) {
      stats.counters.badRequests++;
      send(res, 400, BODY_KEY_MISSING, PROBLEM_TYPE);
      return;
    }
    const rawKey =
      typeof header === 'string' ? parseIdempotencyKey(header, this.options.maxKeyLength) : undefined;
    if (rawKey === undefined) {
      stats.counters.badRequests++;
      const detail = `Expected one Structured Field string ("key") or token of 1 to ${this.options.maxKeyLength} characters.`;
      send(
        res,
        400,
        problem(400, 'idempotency_key_invalid', 'Malformed Idempotency-Key header', detail),
        PROBLEM_TYPE,
      );
      return;
    }
    const auth = req.headers.authorization;
    // Keys are scoped by the client: one merchant's key never replays another's answer.
    const key = auth === undefined ? rawKey : `${auth}\n${rawKey}`;
    readBody(req, res, this.options.maxBodyBytes, (body) => {
      if (body === undefined) {
        stats.counters.badRequests++;
        return;
      }
      const payment = parsePayment(body);
      if (typeof payment === 'string') {
        stats.counters.badRequests++;
        send(res, 400, payment, PROBLEM_TYPE);
        return;
      }
      this.#handlePayment(req, res, key, rawKey, payment);
    });
  }

  #handlePayment(
    req: IncomingMessage,
    res: ServerResponse,
    key: string,
    rawKey: string,
    payment: PaymentRequest,
  ): void {
    const now = this.#clock();
    const stats = this.#stats;
    stats.tick(now);
    const faults = this.#plan.faults;
    // Fixed draw positions (reset, jitter, error, drop, slow), each drawn whatever its probability, so
    // one fault's setting never shifts another's draw. `next() < p` is never true for p = 0, always for 1.
    const random = this.#requestRandom;
    random.reseed(streamSeed(this.options.seed, ++this.#arrivals));
    if (random.next() < faults.resetRate) {
      stats.counters.resets++;
      stats.counters.faults++;
      req.socket.resetAndDestroy();
      return;
    }
    const existing = this.#store.get(key, now);
    if (existing !== undefined) {
      if (existing.fingerprint !== payment.fingerprint) {
        stats.counters.mismatches++;
        const status = this.options.mismatchStatus;
        const body = problem(
          status,
          'idempotency_key_reused',
          'Idempotency-Key reused with a different payload',
          'This key was first used with another request body; use a new key for a new payment.',
        );
        send(res, status, body, PROBLEM_TYPE);
      } else if (existing.state === 'processing') {
        stats.counters.conflicts++;
        res.setHeader('retry-after', '1');
        send(res, 409, BODY_CONFLICT, PROBLEM_TYPE);
      } else {
        stats.counters.replays++;
        res.setHeader('idempotent-replayed', 'true');
        if (existing.status === 201) res.setHeader('location', `/payments/${encodeURIComponent(rawKey)}`);
        send(res, existing.status, existing.body, JSON_TYPE);
      }
      return;
    }
    const { orderId, amount, currency, source } = payment;
    const record = this.#store.begin(
      key,
      payment.fingerprint,
      { idempotencyKey: rawKey, orderId, amount, currency },
      now,
    );
    if (record === undefined) {
      this.#overloaded(req, res);
      return;
    }
    const job = new PaymentJob(
      this.#process,
      res,
      record,
      rawKey,
      orderId,
      amount,
      currency,
      source,
      random.next(),
      random.next() < faults.errorRate,
      random.next() < faults.dropAfterChargeRate,
      random.next() < faults.slowAfterChargeRate,
    );
    if (!this.#tellers.enter(job)) {
      this.#store.abandon(record);
      this.#overloaded(req, res);
    }
  }

  // A teller is done with the payment: inject a fault before charging, or decline, or charge.
  // The client may have gone away meanwhile; like a real bank we process it all the same.
  readonly #process = (job: PaymentJob): void => {
    const stats = this.#stats;
    const now = this.#clock();
    stats.tick(now);
    const faults = this.#plan.faults;
    const { res, record } = job;
    if (job.error) {
      stats.counters.transientErrors++;
      stats.counters.faults++;
      this.#store.abandon(record);
      const body = problem(
        faults.errorStatus,
        'transient_error',
        'Transient gateway error',
        'Nothing was charged; retry with the same Idempotency-Key.',
      );
      send(res, faults.errorStatus, body, PROBLEM_TYPE);
      return;
    }
    const id = `pay_${(++this.#paymentSeq).toString(36).padStart(8, '0')}`;
    if (job.source.startsWith(DECLINE_PREFIX)) {
      stats.counters.declines++;
      const reason = job.source.slice(DECLINE_PREFIX.length) || 'generic_decline';
      const payment = {
        id,
        reason,
        orderId: job.orderId,
        amount: job.amount,
        currency: job.currency,
        idempotencyKey: job.key,
      };
      const body = JSON.stringify({ status: 'declined', ...payment });
      this.#store.complete(record, 'declined', 402, body, payment, now);
      send(res, 402, body, JSON_TYPE);
      return;
    }
    stats.charge(job.orderId);
    const payment = {
      id,
      orderId: job.orderId,
      amount: job.amount,
      currency: job.currency,
      idempotencyKey: job.key,
    };
    const body = JSON.stringify({ status: 'succeeded', ...payment });
    this.#store.complete(record, 'succeeded', 201, body, payment, now);
    if (job.drop) {
      stats.counters.droppedAfterCharge++;
      stats.counters.faults++;
      res.socket?.destroy();
      return;
    }
    res.setHeader('location', `/payments/${encodeURIComponent(job.key)}`);
    if (job.slow) {
      stats.counters.slowAnswers++;
      stats.counters.faults++;
      const timer = setTimeout(() => {
        this.#slowTimers.delete(timer);
        send(res, 201, body, JSON_TYPE);
      }, faults.slowAnswerMs);
      timer.unref();
      this.#slowTimers.add(timer);
      return;
    }
    send(res, 201, body, JSON_TYPE);
  };

  // --- GET /payments/{key} ---------------------------------------------------------------------------

  #paymentStatus(req: IncomingMessage, res: ServerResponse, encodedKey: string): void {
    const now = this.#clock();
    const stats = this.#stats;
    stats.tick(now);
    stats.counters.statusChecks++;
    if (this.#plan.down && this.#rejectForOutage(req, res, now)) return;
    if (this.options.limitStatusChecks && !this.#admit(res, now)) return;
    let rawKey: string;
    try {
      rawKey = decodeURIComponent(encodedKey);
    } catch {
      rawKey = '';
    }
    if (rawKey.length === 0 || rawKey.length > this.options.maxKeyLength) {
      stats.counters.badRequests++;
      send(
        res,
        400,
        problem(400, 'idempotency_key_invalid', 'Malformed idempotency key in the path'),
        PROBLEM_TYPE,
      );
      return;
    }
    const auth = req.headers.authorization;
    const record = this.#store.get(auth === undefined ? rawKey : `${auth}\n${rawKey}`, now);
    if (record === undefined) {
      send(res, 404, BODY_NOT_FOUND, JSON_TYPE);
      return;
    }
    send(res, 200, JSON.stringify({ status: record.state, ...record.payment }), JSON_TYPE);
  }

  // --- shared ----------------------------------------------------------------------------------------

  /** Takes a flow-limit token, or answers throttled. */
  #admit(res: ServerResponse, now: number): boolean {
    const limit = this.#limit;
    const plan = this.#plan;
    const allowed = limit.tryTake(now, plan.rateFactor(now), plan.rateFactorUntil(now));
    const headers = this.options.rateLimitHeaders;
    if (headers !== false) {
      const reset = Math.ceil(limit.resetAfterMs() / 1000);
      const window = Math.max(1, Math.ceil(limit.burst / limit.rate));
      if (headers === 'draft-7') {
        res.setHeader('ratelimit', `limit=${limit.burst}, remaining=${limit.remaining}, reset=${reset}`);
        res.setHeader('ratelimit-policy', `${limit.burst};w=${window}`);
      } else {
        res.setHeader('ratelimit', `"bank";r=${limit.remaining};t=${reset}`);
        res.setHeader('ratelimit-policy', `"bank";q=${limit.burst};w=${window}`);
      }
    }
    if (allowed) {
      this.#stats.admit(now);
      return true;
    }
    this.#stats.counters.throttled++;
    res.setHeader('retry-after', String(Math.max(1, Math.ceil(limit.retryAfterMs() / 1000))));
    send(res, this.options.throttleStatus, this.#throttledBody, PROBLEM_TYPE);
    return false;
  }

  /** Answers (or resets) a request that arrives while an outage window is open. */
  #rejectForOutage(req: IncomingMessage, res: ServerResponse, now: number): boolean {
    const counters = this.#stats.counters;
    counters.outageRejections++;
    counters.faults++;
    if (this.#plan.faults.outageMode === 'status') {
      res.setHeader('retry-after', String(Math.max(1, Math.ceil(this.#plan.downForMs(now) / 1000))));
      send(res, 503, BODY_OUTAGE, PROBLEM_TYPE);
    } else {
      req.socket.resetAndDestroy();
    }
    return true;
  }

  #overloaded(req: IncomingMessage, res: ServerResponse): void {
    this.#stats.counters.overloaded++;
    if (this.options.overloadMode === 'reset') {
      req.socket.resetAndDestroy();
      return;
    }
    res.setHeader('retry-after', '1');
    send(res, 503, BODY_OVERLOADED, PROBLEM_TYPE);
  }

  #postFaults(req: IncomingMessage, res: ServerResponse): void {
    readBody(req, res, this.options.maxBodyBytes, (body) => {
      if (body === undefined) return;
      let partial: unknown;
      try {
        partial = body.length === 0 ? {} : JSON.parse(body);
      } catch {
        send(res, 400, problem(400, 'invalid_json', 'The body is not valid JSON'), PROBLEM_TYPE);
        return;
      }
      try {
        send(res, 200, JSON.stringify(this.setFaults(partial as Partial<Faults>)), JSON_TYPE);
      } catch (error) {
        if (!(error instanceof InvalidOptionError)) throw error;
        send(res, 400, problem(400, 'invalid_faults', 'Invalid faults', error.message), PROBLEM_TYPE);
      }
    });
  }
}

/**
 * Starts a bank simulator and resolves once it listens.
 *
 * @example
 * ```ts
 * import { startBankSim } from '@floodgate/bank-sim';
 *
 * const bank = await startBankSim({ rate: 300, burst: 30, seed: 7 });
 * const res = await fetch(`${bank.url}/payments`, {
 *   method: 'POST',
 *   headers: { 'content-type': 'application/json', 'idempotency-key': '"order-1"' },
 *   body: JSON.stringify({ orderId: 'order-1', amount: 1999, currency: 'EUR', source: 'tok_ok' }),
 * });
 * console.log(res.status, bank.stats().charges); // 201 1
 * await bank.close();
 * ```
 * @throws {InvalidOptionError} when an option is unknown or out of range.
 */
export async function startBankSim(options?: BankSimOptions): Promise<BankSim> {
  return new BankSim(options).listen();
}

function noop(): void {}

function send(res: ServerResponse, status: number, body: string, type: string): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Reads the body as a string; answers 413 (and calls back undefined) past `max` bytes. */
function readBody(
  req: IncomingMessage,
  res: ServerResponse,
  max: number,
  done: (body: string | undefined) => void,
): void {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > max) {
    tooLarge(res, max);
    done(undefined);
    return;
  }
  let size = 0;
  let first: Buffer | undefined;
  let chunks: Buffer[] | undefined;
  let failed = false;
  req.on('data', (chunk: Buffer) => {
    if (failed) return;
    size += chunk.length;
    if (size > max) {
      failed = true;
      tooLarge(res, max);
      done(undefined);
      return;
    }
    if (first === undefined) first = chunk;
    else if (chunks === undefined) chunks = [first, chunk];
    else chunks.push(chunk);
  });
  req.on('end', () => {
    if (failed) return;
    done(chunks !== undefined ? Buffer.concat(chunks).toString('utf8') : (first?.toString('utf8') ?? ''));
  });
}

function tooLarge(res: ServerResponse, max: number): void {
  // The rest of the body is not worth reading: close the connection after answering.
  res.setHeader('connection', 'close');
  send(
    res,
    413,
    problem(413, 'payload_too_large', 'Request body too large', `At most ${max} bytes.`),
    PROBLEM_TYPE,
  );
}

/** Validates a payment body; a string is the 400 problem body. */
function parsePayment(text: string): PaymentRequest | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return problem(400, 'invalid_json', 'The body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return invalid('body', 'a JSON object');
  }
  const { orderId, amount, currency, source } = value as Record<string, unknown>;
  if (typeof orderId !== 'string' || orderId.length === 0 || orderId.length > MAX_FIELD_LENGTH) {
    return invalid('orderId', `a string of 1 to ${MAX_FIELD_LENGTH} characters`);
  }
  if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount <= 0) {
    return invalid('amount', 'an integer > 0 (minor units)');
  }
  if (typeof currency !== 'string' || !CURRENCY.test(currency)) {
    return invalid('currency', 'a 3-letter ISO 4217 code such as "EUR"');
  }
  if (typeof source !== 'string' || source.length === 0 || source.length > MAX_FIELD_LENGTH) {
    return invalid('source', `a string of 1 to ${MAX_FIELD_LENGTH} characters`);
  }
  const upper = currency.toUpperCase();
  let fingerprint = `${orderId}\u0000${amount}\u0000${upper}\u0000${source}`;
  // Extra fields count in the fingerprint too, in an order-independent form.
  const keys = Object.keys(value);
  if (keys.length > 4) fingerprint += `\u0000${canonicalJson(value)}`;
  return { orderId, amount, currency: upper, source, fingerprint };
}

function invalid(field: string, expectation: string): string {
  return problem(
    400,
    'invalid_request',
    `Invalid \`${field}\``,
    `Expected \`${field}\` to be ${expectation}.`,
  );
}

/** JSON with object keys sorted at every level, so `{a,b}` and `{b,a}` fingerprint alike. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const record = value as Record<string, unknown>;
    return `{${Object.keys(record)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
