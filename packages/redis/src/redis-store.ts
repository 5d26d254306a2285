import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  type BucketSpec,
  ClosedError,
  type ConsumeOptions,
  InvalidOptionError,
  type LimiterStore,
  type RefundOptions,
  type StoreDecision,
  StoreUnavailableError,
} from '@floodgate/token-bucket';
import { Redis } from 'ioredis';
import { disconnectClient } from './disconnect.js';
import { LocalBuckets } from './local-buckets.js';
import { LocalGrants } from './local-grants.js';
import { type FailMode, type RedisClient, type RedisStoreOptions, resolveOptions } from './options.js';
import {
  BUCKET_SCRIPT,
  type BucketOperation,
  decodeDecision,
  encodeBatch,
  HEARTBEAT_SCRIPT,
  scriptSha,
} from './script.js';

const BUCKET_SHA = scriptSha(BUCKET_SCRIPT);
const HEARTBEAT_SHA = scriptSha(HEARTBEAT_SCRIPT);
/** Stands in for an unbounded `maxWaitMs` in the script's arguments (Lua parses it as a plain number). */
const FOREVER_MS = 1e300;
/**
 * Script calls in flight per key when coalescing. Two keep the connection busy (one batch travels while
 * the next fills) without splitting a burst into many small calls; see bench/redis.bench.ts.
 */
const MAX_IN_FLIGHT_PER_KEY = 2;
/**
 * A call's timeout timer this late means the event loop was stalled (a GC pause, synchronous work), not
 * that Redis was slow: ordinary timer lateness is a few ms.
 */
const STALL_MS = 20;
/** After such a stall, how long a reply still gets to be read before the call counts as failed. */
const STALL_GRACE_MS = 50;
/** Client states in which a first connection is still being made: worth waiting for, within the timeout. */
const CONNECTING = new Set(['wait', 'connecting', 'connect']);

/** Payload of the `degraded` event. */
export interface DegradedEvent {
  /** Why the store gave up on Redis (a timeout, a refused connection, a Redis error). */
  readonly error: Error;
  /** The fail mode now answering decisions. */
  readonly failMode: FailMode;
}

/** Payload of the `recovered` event. */
export interface RecoveredEvent {
  /** How long the store was degraded. */
  readonly downtimeMs: number;
  /** Decisions the fail mode answered meanwhile. */
  readonly fallbackDecisions: number;
}

/** The events a {@link RedisStore} emits. */
export interface RedisStoreEvents {
  /** Redis stopped answering within `timeoutMs`: the fail mode answers from now on. */
  degraded: [event: DegradedEvent];
  /** A call answered by Redis again: decisions are shared again. */
  recovered: [event: RecoveredEvent];
}

/** Counters of a {@link RedisStore}, cumulative since it was created. */
export interface RedisStoreStats {
  /** True while Redis is not answering and the fail mode decides. */
  readonly degraded: boolean;
  /** How decisions are answered while Redis is not (the `failMode` option). */
  readonly failMode: FailMode;
  /** Decisions (consumes and refunds) Redis answered. */
  readonly redisDecisions: number;
  /**
   * Decisions the fail mode answered (denied, allowed or local, depending on the mode), and refunds of
   * grants made without Redis (`'local-fallback'`, `'fail-open'`) kept from Redis.
   */
  readonly fallbackDecisions: number;
  /** Script calls (round trips) sent; fewer than decisions when concurrent decisions were coalesced. */
  readonly scriptCalls: number;
  /** Script calls that failed or timed out. */
  readonly failures: number;
  /** Store instances sharing this prefix, from heartbeats (`'local-fallback'` only; otherwise 1). */
  readonly liveInstances: number;
}

interface Pending {
  readonly key: string;
  readonly operation: BucketOperation;
  readonly spec: BucketSpec;
  readonly enqueuedAt: number;
  readonly probe: boolean;
  readonly resolve: (value: StoreDecision | undefined) => void;
  readonly reject: (error: Error) => void;
}

interface Group {
  readonly id: string;
  readonly bucketKey: string;
  readonly spec: BucketSpec;
  readonly queue: Pending[];
  /** Script calls in flight for this group. */
  inFlight: number;
  /** A flush is scheduled (process.nextTick). */
  scheduled: boolean;
}

type Reply = readonly unknown[];

/**
 * A {@link LimiterStore} on Redis: one bucket per key shared by every process and machine using the same
 * Redis and prefix. Each decision is one atomic Lua script at the Redis server's clock, so the fleet
 * together never admits more than the bucket allows, whatever the clocks of the machines say.
 *
 * Create it with {@link redisStore}. It is an `EventEmitter` of {@link RedisStoreEvents}.
 *
 * @example
 * ```ts
 * import { keyedLimiter } from '@floodgate/token-bucket';
 * import { redisStore } from '@floodgate/redis';
 *
 * const store = redisStore({ url: 'redis://127.0.0.1:6379', prefix: 'shop:' });
 * const limiter = keyedLimiter({ capacity: 20, refillRate: 10, store });
 * const decision = await limiter.tryTake('bank');
 * ```
 */
export class RedisStore extends EventEmitter<RedisStoreEvents> implements LimiterStore {
  readonly #client: RedisClient;
  readonly #ownsClient: boolean;
  readonly #prefix: string;
  readonly #failMode: FailMode;
  readonly #timeoutMs: number;
  readonly #operationTtlMs: number;
  readonly #probeIntervalMs: number;
  readonly #coalesce: boolean;
  readonly #maxBatch: number;
  readonly #heartbeatIntervalMs: number;
  readonly #local: LocalBuckets | undefined;
  /**
   * `'local-fallback'` and `'fail-open'`: grants made without Redis and not given back, so their refunds
   * never reach Redis, which did not spend them.
   */
  readonly #localGrants: LocalGrants | undefined;
  readonly #instanceId = randomUUID();
  readonly #groups = new Map<string, Group>();
  readonly #readyWaiters = new Set<() => void>();
  readonly #onReady = (): void => {
    const waiters = [...this.#readyWaiters];
    this.#readyWaiters.clear();
    for (const waiter of waiters) waiter();
    // A reconnect is the best moment to find out whether Redis is back.
    if (this.#degraded) this.#nextProbeAt = 0;
    if (this.#local !== undefined) this.#beat();
  };
  readonly #onError = (): void => {
    // Our own client's connection errors surface as failed calls; the listener only keeps ioredis from
    // printing "Unhandled error event" for every reconnect attempt.
  };
  #heartbeat: NodeJS.Timeout | undefined;
  #degraded = false;
  #degradedSince = 0;
  /** Outages so far: the local buckets of one outage are not those of the next. */
  #outage = 0;
  #lastError: Error | undefined;
  #nextProbeAt = 0;
  #probeInFlight = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #outstanding = 0;
  #drained: (() => void) | undefined;
  #liveInstances = 1;
  #redisDecisions = 0;
  #fallbackDecisions = 0;
  #fallbackSinceDegraded = 0;
  #scriptCalls = 0;
  #failures = 0;

  /**
   * @throws {InvalidOptionError} `ERR_INVALID_OPTION` for a missing or bad option (the message names it).
   */
  constructor(options: RedisStoreOptions) {
    super();
    const resolved = resolveOptions(options);
    this.#prefix = resolved.prefix;
    this.#failMode = resolved.failMode;
    this.#timeoutMs = resolved.timeoutMs;
    this.#operationTtlMs = resolved.operationTtlMs;
    this.#probeIntervalMs = resolved.probeIntervalMs;
    this.#coalesce = resolved.coalesce;
    this.#maxBatch = resolved.maxBatch;
    this.#heartbeatIntervalMs = resolved.heartbeatIntervalMs;
    if (resolved.client !== undefined) {
      this.#client = resolved.client;
      this.#ownsClient = false;
    } else {
      this.#client = new Redis(resolved.url as string, {
        // Bounded everything: a call never queues while disconnected, and reconnects back off up to 2 s so
        // a down Redis is not hammered. A call in flight when the connection drops fails at once instead
        // of being sent again after the reconnect: its command may have run with only the reply lost, and
        // a script run twice spends twice or, for a refund, gives back twice (tokens nobody spent).
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        connectTimeout: 2_000,
        enableAutoPipelining: true,
        retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
        ...resolved.redisOptions,
      });
      this.#ownsClient = true;
      this.#client.on('error', this.#onError);
    }
    this.#client.on('ready', this.#onReady);
    if (this.#failMode !== 'fail-closed') {
      // Held as long as a named grant's record: a refund may come after the caller's work, not only
      // during its wait (an HTTP limiter that does not count failed requests refunds after the answer).
      // 'fail-closed' grants nothing without Redis, so every refund it sees is Redis's.
      this.#localGrants = new LocalGrants(resolved.maxLocalKeys, resolved.operationTtlMs);
    }
    if (this.#failMode === 'local-fallback') {
      this.#local = new LocalBuckets(resolved.maxLocalKeys);
      this.#beat();
      this.#heartbeat = setInterval(() => this.#beat(), this.#heartbeatIntervalMs);
      this.#heartbeat.unref();
    }
  }

  /** The ioredis client the store talks to (yours if you passed `client`). */
  get client(): RedisClient {
    return this.#client;
  }

  /** True while Redis is not answering and the fail mode decides. */
  get degraded(): boolean {
    return this.#degraded;
  }

  /** Counters for metrics: decisions by source, round trips, failures, degraded state. */
  stats(): RedisStoreStats {
    return {
      degraded: this.#degraded,
      failMode: this.#failMode,
      redisDecisions: this.#redisDecisions,
      fallbackDecisions: this.#fallbackDecisions,
      scriptCalls: this.#scriptCalls,
      failures: this.#failures,
      liveInstances: this.#liveInstances,
    };
  }

  /**
   * Takes `cost` tokens from the shared bucket of `key` (full when first used) in one atomic script.
   * With `maxWaitMs`, tokens that will be there within that wait are reserved now (the bucket goes into
   * debt, other instances see it) and the decision says how long to sleep (`waitMs`); give them back with
   * {@link refund} when the wait is abandoned. With `operationId`, a repeated call (a retry after a
   * timeout) returns the first decision, with the wait left, and spends nothing.
   *
   * @throws {InvalidOptionError} `ERR_INVALID_OPTION` for a bad key, cost, spec or option (rejected promise).
   * @throws {StoreUnavailableError} `ERR_STORE_UNAVAILABLE` when Redis cannot answer and the fail mode is
   *   `'fail-closed'` (rejected promise; `cause` is the Redis error or timeout).
   * @throws {ClosedError} `ERR_CLOSED` after {@link close}.
   */
  consume(key: string, cost: number, spec: BucketSpec, options?: ConsumeOptions): Promise<StoreDecision> {
    let operation: BucketOperation;
    try {
      if (this.#closed) throw new ClosedError('RedisStore');
      this.#checkCall(key, cost, spec);
      if (cost > spec.capacity) {
        // As the memory store: a bucket can never hold more than its capacity, so such a cost is the
        // caller's mistake, not a denial to retry after an infinite wait.
        throw new InvalidOptionError('cost', `a number between 0 and capacity (${spec.capacity})`, cost);
      }
      operation = this.#consumeOperation(key, cost, options);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#submit(key, operation, spec) as Promise<StoreDecision>;
  }

  /**
   * Gives back `cost` tokens taken or reserved and not used (the bucket never goes above capacity).
   * With `operationId`, the tokens go back (and the record is deleted, in the same script call) only if
   * the operation's record exists and was never replayed (see `RefundOptions`).
   * Refunds are best effort: while Redis is down they are dropped (counted in `fallbackDecisions`), and
   * one that names an operation keeps its record in Redis, so a retry after recovery is replayed. A
   * refund without `operationId` gives back first what the fail mode granted for `key` without Redis and
   * was not given back, and only the rest goes to Redis: with `'local-fallback'` that part is credited to
   * the local bucket during the outage that granted it and dropped after it; with `'fail-open'` it is
   * always dropped (nothing was spent for it). See the README's fail modes.
   * After {@link close} they do nothing; they reject only on bad arguments.
   *
   * @throws {InvalidOptionError} `ERR_INVALID_OPTION` for a bad key, cost or spec (rejected promise).
   */
  async refund(key: string, cost: number, spec: BucketSpec, options?: RefundOptions): Promise<void> {
    this.#checkCall(key, cost, spec);
    const operationId = options?.operationId;
    if (operationId !== undefined) this.#checkOperationId(operationId);
    if (this.#closed) return;
    // With an operationId the script deletes its record in the same call: the operation is then spent
    // at most once, and a retry after the refund is decided afresh instead of replayed for free.
    if (operationId !== undefined) {
      await this.#submit(key, { kind: 'refund', cost, opKey: this.#operationKey(key, operationId) }, spec);
      return;
    }
    const rest = this.#refundLocalGrants(key, cost, spec);
    if (rest > 0 || cost === 0) await this.#submit(key, { kind: 'refund', cost: rest }, spec);
  }

  /**
   * Takes a refund off the tokens the fail mode granted for `key` without Redis and were not given back,
   * and answers the rest, Redis's. With `'local-fallback'` the local part goes back to the local bucket
   * only in the outage that granted it; after that, that bucket is gone and the part is dropped: Redis
   * never spent it. With `'fail-open'` there is no bucket: the part is dropped, as it was spent nowhere.
   */
  #refundLocalGrants(key: string, cost: number, spec: BucketSpec): number {
    const grants = this.#localGrants;
    if (grants === undefined || grants.size === 0) return cost;
    const share = grants.take(key, cost, this.#degraded ? this.#outage : 0);
    if (share.local === 0) return cost;
    if (share.live > 0) this.#local?.refund(key, share.live, this.#localSpec(spec));
    const rest = cost - share.local;
    if (rest === 0) {
      // Answered by the fail mode's own bookkeeping, without Redis.
      this.#fallbackDecisions += 1;
      this.#fallbackSinceDegraded += 1;
    }
    return rest;
  }

  /**
   * Stops the heartbeat, lets calls in flight settle (each is bounded by `timeoutMs`), removes this
   * instance from the live count and disconnects the client the store created from `url`. A client you
   * passed stays open. Later `consume` calls reject with `ClosedError`. Idempotent: every call resolves
   * when the store is closed.
   */
  close(): Promise<void> {
    // One close for every caller: a second call must not resolve while the first still drains.
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    if (this.#outstanding > 0) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
      });
    }
    if (this.#failMode === 'local-fallback' && this.#client.status === 'ready') {
      await this.#withTimeout(this.#client.zrem(this.#instancesKey(), this.#instanceId)).catch(() => {});
    }
    this.#client.off('ready', this.#onReady);
    this.#readyWaiters.clear();
    this.#local?.clear();
    this.#localGrants?.clear();
    if (this.#ownsClient) await this.#disconnect();
  }

  /** Closes our own client and waits (bounded) for its socket to be gone, so nothing is left behind. */
  async #disconnect(): Promise<void> {
    const client = this.#client;
    await disconnectClient(client, this.#timeoutMs);
    client.off('error', this.#onError);
  }

  #checkCall(key: string, cost: number, spec: BucketSpec): void {
    if (typeof key !== 'string' || key.length === 0 || key.charCodeAt(0) === 0x7d) {
      // A key starting with `}` would make the hash tag `{}`, and Redis Cluster would then hash the
      // bucket and its operation records to different slots.
      throw new InvalidOptionError('key', 'a non-empty string not starting with `}`', key);
    }
    if (typeof cost !== 'number' || !Number.isFinite(cost) || cost < 0) {
      throw new InvalidOptionError('cost', 'a finite number >= 0', cost);
    }
    if (spec === null || typeof spec !== 'object') {
      throw new InvalidOptionError('spec', 'an object { capacity, refillPerMs }', spec);
    }
    const { capacity, refillPerMs } = spec;
    if (typeof capacity !== 'number' || !Number.isFinite(capacity) || capacity < 1) {
      throw new InvalidOptionError('spec.capacity', 'a finite number >= 1', capacity);
    }
    if (typeof refillPerMs !== 'number' || !Number.isFinite(refillPerMs) || refillPerMs <= 0) {
      throw new InvalidOptionError('spec.refillPerMs', 'a finite number > 0', refillPerMs);
    }
  }

  #consumeOperation(key: string, cost: number, options: ConsumeOptions | undefined): BucketOperation {
    if (options === undefined) return { kind: 'consume', cost, maxWaitMs: 0 };
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError('options', 'an object { maxWaitMs?, operationId? }', options);
    }
    for (const name of Object.keys(options)) {
      if (name !== 'maxWaitMs' && name !== 'operationId') {
        throw new InvalidOptionError(name, 'one of the consume options (maxWaitMs, operationId)', name);
      }
    }
    const { maxWaitMs = 0, operationId } = options;
    if (typeof maxWaitMs !== 'number' || Number.isNaN(maxWaitMs) || maxWaitMs < 0) {
      throw new InvalidOptionError('maxWaitMs', 'a number >= 0 (or Infinity)', maxWaitMs);
    }
    const wait = maxWaitMs === Number.POSITIVE_INFINITY ? FOREVER_MS : maxWaitMs;
    if (operationId === undefined) return { kind: 'consume', cost, maxWaitMs: wait };
    this.#checkOperationId(operationId);
    return { kind: 'consume', cost, maxWaitMs: wait, opKey: this.#operationKey(key, operationId) };
  }

  #checkOperationId(operationId: unknown): asserts operationId is string {
    if (typeof operationId !== 'string' || operationId.length === 0 || operationId.length > 1024) {
      throw new InvalidOptionError('operationId', 'a string of 1 to 1024 characters', operationId);
    }
  }

  #operationKey(key: string, operationId: string): string {
    return `${this.#bucketKey(key)}:op:${operationId}`;
  }

  #bucketKey(key: string): string {
    return `${this.#prefix}{${key}}`;
  }

  #instancesKey(): string {
    return `${this.#prefix}instances`;
  }

  #submit(key: string, operation: BucketOperation, spec: BucketSpec): Promise<StoreDecision | undefined> {
    let probe = false;
    if (this.#degraded) {
      if (this.#probeInFlight || performance.now() < this.#nextProbeAt) {
        return this.#fallbackNow(key, operation, spec);
      }
      this.#probeInFlight = true;
      probe = true;
    }
    return new Promise<StoreDecision | undefined>((resolve, reject) => {
      this.#outstanding += 1;
      const pending: Pending = {
        key,
        operation,
        spec,
        enqueuedAt: performance.now(),
        probe,
        resolve,
        reject,
      };
      if (!this.#coalesce || probe) {
        this.#send(undefined, this.#bucketKey(key), spec, [pending]);
        return;
      }
      const id = `${key}\n${spec.capacity}\n${spec.refillPerMs}`;
      let group = this.#groups.get(id);
      if (group === undefined) {
        // Nothing in flight for this key: send at once (no added latency for a lone caller); calls that
        // follow while it travels queue behind it and go together.
        group = { id, bucketKey: this.#bucketKey(key), spec, queue: [], inFlight: 1, scheduled: false };
        this.#groups.set(id, group);
        this.#send(group, group.bucketKey, spec, [pending]);
        return;
      }
      group.queue.push(pending);
      this.#schedule(group);
    });
  }

  /**
   * Flushes on the next tick rather than now: every call made in this tick (and in the promise
   * continuations of the batch that just settled) joins one script call instead of the first going alone.
   */
  #schedule(group: Group): void {
    if (group.scheduled || group.inFlight >= MAX_IN_FLIGHT_PER_KEY) return;
    group.scheduled = true;
    process.nextTick(this.#flushScheduled, group);
  }

  readonly #flushScheduled = (group: Group): void => {
    group.scheduled = false;
    this.#flush(group);
  };

  #flush(group: Group): void {
    if (group.queue.length === 0) {
      this.#release(group);
      return;
    }
    let batch: Pending[];
    if (group.queue.length <= this.#maxBatch) {
      batch = group.queue.splice(0);
    } else {
      batch = group.queue.splice(0, this.#maxBatch);
    }
    if (this.#degraded) {
      // Queued behind a call that failed: answer from the fail mode instead of sending into an outage.
      for (const pending of batch) this.#settleFallback(pending, this.#lastError);
      this.#flush(group);
      return;
    }
    group.inFlight += 1;
    this.#send(group, group.bucketKey, group.spec, batch);
    if (group.queue.length > 0) this.#schedule(group);
  }

  /** Forgets a group with nothing queued, in flight or scheduled (the map holds only busy keys). */
  #release(group: Group): void {
    if (
      group.queue.length === 0 &&
      group.inFlight === 0 &&
      !group.scheduled &&
      this.#groups.get(group.id) === group
    ) {
      this.#groups.delete(group.id);
    }
  }

  /** Sends one batch, bounded by the timeout measured from the oldest call in it. */
  #send(group: Group | undefined, bucketKey: string, spec: BucketSpec, batch: Pending[]): void {
    let settled = false;
    let consumes = 0;
    const operations = batch.map((pending) => {
      if (pending.operation.kind === 'consume') consumes += 1;
      return pending.operation;
    });
    const { keys, args } = encodeBatch(bucketKey, spec, this.#operationTtlMs, operations);
    const go = (): void => {
      if (settled) return;
      this.#scriptCalls += 1;
      this.#client.evalsha(BUCKET_SHA, keys.length, ...keys, ...args).then(
        (reply) => done(undefined, reply as Reply),
        (error: unknown) => {
          // NOSCRIPT (restart, failover, SCRIPT FLUSH): the same call once as EVAL; see #evalScript.
          if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
            this.#client.eval(BUCKET_SCRIPT, keys.length, ...keys, ...args).then(
              (reply) => done(undefined, reply as Reply),
              (retryError: unknown) => done(toError(retryError), undefined),
            );
          } else {
            done(toError(error), undefined);
          }
        },
      );
    };
    const done = (error: Error | undefined, reply: Reply | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.#readyWaiters.delete(go);
      if (group !== undefined) group.inFlight -= 1;
      // Five numbers per consume: anything else (a proxy or a client that rewrites replies) would be read
      // as decisions with missing fields, so it counts as a failure of the call.
      if (error === undefined && Array.isArray(reply) && reply.length === consumes * 5) {
        this.#settleBatch(batch, spec, reply);
      } else {
        this.#onFailure(batch, error ?? new Error('Unexpected reply from the Redis script'));
      }
      if (group !== undefined) {
        if (group.queue.length === 0) this.#release(group);
        else this.#schedule(group);
      }
    };
    const delay = Math.max(0, (batch[0] as Pending).enqueuedAt + this.#timeoutMs - performance.now());
    const dueAt = performance.now() + delay;
    let graced = false;
    const onTimeout = (): void => {
      // A timer far behind its time means our event loop was blocked (GC, synchronous work), not that
      // Redis was slow: timers run before the poll phase that reads the socket, so a reply that came in
      // during the stall is still unread. One short grace lets it be read before this counts as an outage
      // (which, failing closed, would refuse everything until a probe succeeds).
      if (!graced && performance.now() - dueAt >= STALL_MS) {
        graced = true;
        timer = setTimeout(onTimeout, Math.min(this.#timeoutMs, STALL_GRACE_MS));
        timer.unref();
        return;
      }
      done(new Error(`Redis did not answer within ${this.#timeoutMs} ms (timeoutMs)`), undefined);
    };
    let timer = setTimeout(onTimeout, delay);
    timer.unref();
    const status = this.#client.status;
    if (status === 'ready') {
      go();
    } else if (CONNECTING.has(status)) {
      this.#readyWaiters.add(go);
      if (status === 'wait') this.#client.connect().catch(() => {});
    } else {
      done(new Error(`Redis connection is not ready (status: ${status})`), undefined);
    }
  }

  /** EVALSHA; on NOSCRIPT (restarted server, failover, SCRIPT FLUSH) the same call once as EVAL. */
  #evalScript(sha: string, lua: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    return this.#client.evalsha(sha, keys.length, ...keys, ...args).catch((error: unknown) => {
      // EVAL both runs the script and caches it on the node that owns the key, so the next EVALSHA hits.
      // (SCRIPT LOAD would go to an arbitrary node of a Cluster.)
      if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
        return this.#client.eval(lua, keys.length, ...keys, ...args);
      }
      throw error;
    });
  }

  #settleBatch(batch: Pending[], spec: BucketSpec, reply: Reply): void {
    if (this.#degraded) this.#recover();
    let index = 0;
    for (const pending of batch) {
      if (pending.probe) this.#probeInFlight = false;
      this.#redisDecisions += 1;
      if (pending.operation.kind === 'refund') {
        pending.resolve(undefined);
      } else {
        pending.resolve(decodeDecision(reply, index, spec.capacity));
        index += 1;
      }
      this.#settledOne();
    }
  }

  #onFailure(batch: Pending[], error: Error): void {
    this.#failures += 1;
    this.#lastError = error;
    const now = performance.now();
    if (!this.#degraded) {
      this.#degraded = true;
      this.#outage += 1;
      this.#degradedSince = now;
      this.#fallbackSinceDegraded = 0;
      this.#nextProbeAt = now + this.#probeIntervalMs;
      const event: DegradedEvent = { error, failMode: this.#failMode };
      process.nextTick(() => this.emit('degraded', event));
    }
    for (const pending of batch) {
      if (pending.probe) {
        this.#probeInFlight = false;
        this.#nextProbeAt = now + this.#probeIntervalMs;
      }
      this.#settleFallback(pending, error);
    }
  }

  #recover(): void {
    this.#degraded = false;
    this.#local?.clear();
    const event: RecoveredEvent = {
      downtimeMs: performance.now() - this.#degradedSince,
      fallbackDecisions: this.#fallbackSinceDegraded,
    };
    process.nextTick(() => this.emit('recovered', event));
    // Refresh the live count at once: it decides the local share of the next outage.
    if (this.#local !== undefined) this.#beat();
  }

  #fallbackNow(
    key: string,
    operation: BucketOperation,
    spec: BucketSpec,
  ): Promise<StoreDecision | undefined> {
    this.#outstanding += 1;
    return new Promise((resolve, reject) => {
      this.#settleFallback(
        { key, operation, spec, enqueuedAt: 0, probe: false, resolve, reject },
        this.#lastError,
      );
    });
  }

  #settleFallback(pending: Pending, cause: Error | undefined): void {
    this.#fallbackDecisions += 1;
    this.#fallbackSinceDegraded += 1;
    const { operation, spec } = pending;
    if (operation.kind === 'refund') {
      // Dropped, never credited to a local bucket: what reaches the fail mode is Redis's part of a refund
      // (the part granted without Redis was taken off before it was sent), and crediting a local bucket with
      // tokens Redis spent lets this instance admit them twice. A refund naming an operation is always
      // Redis's (the local fallback remembers no operations); its record in Redis, if any, stays: a retry
      // after recovery is replayed, so the operation is spent once and used at most once. Queueing
      // refunds for recovery instead would need bounded state and a flush for little gain (the tokens
      // back late, or refused once a retry has replayed the record). A lost refund only makes it stricter.
      pending.resolve(undefined);
    } else if (this.#failMode === 'fail-open') {
      // Spent nowhere, so its refund must reach no bucket: sent to Redis after recovery (or as the probe
      // that finds it back) it would mint tokens in the fleet's bucket. Named grants need no note: their
      // refund names them, and Redis gives back only through a record it made.
      if (operation.opKey === undefined) this.#localGrants?.add(pending.key, operation.cost, this.#outage, 0);
      pending.resolve({
        allowed: true,
        limit: spec.capacity,
        remaining: Math.max(0, Math.floor(spec.capacity - operation.cost)),
        retryAfterMs: 0,
        resetAfterMs: 0,
        waitMs: 0,
      });
    } else if (this.#local !== undefined) {
      const decision = this.#local.consume(
        pending.key,
        operation.cost,
        this.#localSpec(spec),
        operation.maxWaitMs,
        spec.capacity,
      );
      // Only unnamed grants: a named grant's refund names it too, and is never taken off the local grants.
      if (decision.allowed && operation.opKey === undefined) {
        this.#localGrants?.add(pending.key, operation.cost, this.#outage, decision.waitMs);
      }
      pending.resolve(decision);
    } else {
      const reason = cause === undefined ? 'unknown error' : cause.message;
      pending.reject(
        new StoreUnavailableError(`Redis store unavailable (fail-closed): ${reason}`, { cause }),
      );
    }
    this.#settledOne();
  }

  /** This instance's share of the limit while Redis is away. */
  #localSpec(spec: BucketSpec): BucketSpec {
    const instances = this.#liveInstances;
    if (instances <= 1) return spec;
    return {
      capacity: Math.max(1, spec.capacity / instances),
      refillPerMs: spec.refillPerMs / instances,
    };
  }

  #settledOne(): void {
    this.#outstanding -= 1;
    if (this.#outstanding === 0 && this.#drained !== undefined) {
      const drained = this.#drained;
      this.#drained = undefined;
      drained();
    }
  }

  #beat(): void {
    if (this.#closed || this.#client.status !== 'ready') return;
    const ttl = this.#heartbeatIntervalMs * 3;
    this.#withTimeout(
      this.#evalScript(HEARTBEAT_SHA, HEARTBEAT_SCRIPT, [this.#instancesKey()], [this.#instanceId, ttl]),
    ).then(
      (reply) => {
        const count = Number(reply); // a string with ioredis's `stringNumbers`
        if (count >= 1) this.#liveInstances = count;
      },
      () => {
        // A missed beat keeps the last count; the decisions' own calls detect and report the outage.
      },
    );
  }

  #withTimeout<T>(promise: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timeout')), this.#timeoutMs);
      timer.unref();
      promise.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * Creates a {@link RedisStore}: token buckets in Redis, shared by every process using the same Redis and
 * `prefix`, for `keyedLimiter({ store })` and `gate({ store })` of `@floodgate/token-bucket`.
 *
 * @example
 * ```ts
 * const store = redisStore({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', failMode: 'local-fallback' });
 * store.on('degraded', ({ error }) => log.warn({ err: error }, 'rate limits are local while Redis is away'));
 * ```
 * @throws {InvalidOptionError} `ERR_INVALID_OPTION` for a missing or bad option (the message names it).
 */
export function redisStore(options: RedisStoreOptions): RedisStore {
  return new RedisStore(options);
}
