/** A unit of work a teller serves; `serve()` runs when its service time has passed. */
export interface TellerJob {
  serve(): void;
  /**
   * This job's jitter draw in [0, 1), made when it arrived; without one, `random()` is drawn when its
   * service starts (which depends on when other jobs finish).
   */
  readonly jitter?: number;
}

/** Options of {@link Tellers}. */
export interface TellersOptions {
  /** How many requests are served at the same time. */
  readonly tellers: number;
  /** How many requests may wait for a free teller; one more is refused. */
  readonly maxQueued: number;
  /** Service time of one request, in ms. */
  readonly latencyMs: number;
  /** Up to this many ms are added to each service time (uniformly, from `random`). */
  readonly latencyJitterMs: number;
  /** Source of the jitter, in [0, 1), for jobs without their own `jitter` draw. */
  readonly random: () => number;
}

/**
 * The latency model of an overloaded gateway: `tellers` requests are served at once, each taking
 * `latencyMs` (+ jitter); the rest wait in a FIFO queue. So latency is flat until the tellers are all
 * busy, then grows with every request that arrives (an M/D/c queue): pushing harder makes every payment
 * slower. Past `maxQueued` waiting requests, `enter()` answers false and the caller refuses.
 *
 * @example
 * ```ts
 * const tellers = new Tellers({ tellers: 4, maxQueued: 100, latencyMs: 20, latencyJitterMs: 0, random: Math.random });
 * tellers.enter({ serve: () => console.log('served') });
 * ```
 */
export class Tellers {
  readonly #options: TellersOptions;
  #busy = 0;
  // A ring buffer: O(1) enqueue/dequeue without shifting an array under load.
  #queue: Array<TellerJob | undefined>;
  #head = 0;
  #length = 0;
  readonly #timers = new Set<NodeJS.Timeout>();
  #closed = false;
  #peakQueued = 0;

  constructor(options: TellersOptions) {
    this.#options = options;
    this.#queue = new Array(Math.min(Math.max(options.maxQueued, 1), 1024));
  }

  /** Requests being served now. */
  get busy(): number {
    return this.#busy;
  }

  /** Requests waiting for a teller now. */
  get queued(): number {
    return this.#length;
  }

  /** The most requests that waited at once since the last `resetPeak()`. */
  get peakQueued(): number {
    return this.#peakQueued;
  }

  resetPeak(): void {
    this.#peakQueued = this.#length;
  }

  /** Queues `job`; false when the queue is full (the job will not run). */
  enter(job: TellerJob): boolean {
    if (this.#closed) return false;
    if (this.#busy < this.#options.tellers) {
      this.#start(job);
      return true;
    }
    if (this.#length >= this.#options.maxQueued) return false;
    if (this.#length === this.#queue.length) this.#grow();
    this.#queue[(this.#head + this.#length) % this.#queue.length] = job;
    this.#length++;
    if (this.#length > this.#peakQueued) this.#peakQueued = this.#length;
    return true;
  }

  /** Drops every waiting job and cancels every service in progress. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#queue.fill(undefined);
    this.#length = 0;
    this.#busy = 0;
  }

  #start(job: TellerJob): void {
    this.#busy++;
    const { latencyMs, latencyJitterMs, random } = this.#options;
    const ms = latencyJitterMs > 0 ? latencyMs + (job.jitter ?? random()) * latencyJitterMs : latencyMs;
    const timer = setTimeout(this.#finish, ms, job);
    timer.unref();
    this.#timers.add(timer);
    // Timers are keyed by themselves so #finish can forget them without a closure per request.
    (job as TimedJob)[TIMER] = timer;
  }

  readonly #finish = (job: TellerJob): void => {
    const timer = (job as TimedJob)[TIMER];
    if (timer !== undefined) this.#timers.delete(timer);
    if (this.#closed) return;
    this.#busy--;
    try {
      job.serve();
    } finally {
      this.#next();
    }
  };

  #next(): void {
    while (this.#length > 0 && this.#busy < this.#options.tellers) {
      const job = this.#queue[this.#head] as TellerJob;
      this.#queue[this.#head] = undefined;
      this.#head = (this.#head + 1) % this.#queue.length;
      this.#length--;
      this.#start(job);
    }
  }

  #grow(): void {
    const size = this.#queue.length;
    const next = new Array<TellerJob | undefined>(size * 2);
    for (let i = 0; i < this.#length; i++) next[i] = this.#queue[(this.#head + i) % size];
    this.#queue = next;
    this.#head = 0;
  }
}

const TIMER = Symbol('tellerTimer');
interface TimedJob extends TellerJob {
  [TIMER]?: NodeJS.Timeout;
}
