import { randomUUID } from 'node:crypto';
import { ClosedError, InvalidOptionError, StoreUnavailableError } from '@floodgate/token-bucket';
import { Redis, type RedisOptions } from 'ioredis';
import { disconnectClient } from './disconnect.js';
import { checkConnection, integerOption, isPlainObject, type RedisClient } from './options.js';
import { scriptSha } from './script.js';

// The shapes below are those of @floodgate/http's `IdempotencyStore`, written out here so that the
// published types of @floodgate/redis do not depend on a package its users may not have installed.
// A type test (redis-idempotency-store.test-d.ts) proves the store fits @floodgate/http's interface.

/** A response as the idempotency middleware stores and replays it (stored in Redis as JSON). */
export interface StoredResponse {
  /** HTTP status of the stored response. */
  readonly status: number;
  /** Allow-listed response headers, lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  /** The body, in `encoding`. */
  readonly body: string;
  /** How `body` is encoded: `base64` for a binary body. */
  readonly encoding: 'utf8' | 'base64';
}

/** What the store holds for a key that is taken. */
export type IdempotencyRecord =
  | {
      readonly state: 'in-flight';
      /** The fingerprint of the request that holds the key; a duplicate must match it. */
      readonly fingerprint: string;
      /** Milliseconds until the lease expires (Redis `PTTL`) and another request may take the key over. */
      readonly leaseRemainingMs: number;
    }
  | {
      readonly state: 'completed';
      /** The fingerprint of the request whose response is stored. */
      readonly fingerprint: string;
      /** The response a duplicate with the same fingerprint is answered with. */
      readonly response: StoredResponse;
    };

/** Outcome of {@link RedisIdempotencyStore.begin}. */
export type BeginResult =
  | {
      /** The key was free and is now leased to the caller. */
      readonly acquired: true;
      /** Proof of ownership for complete/release. */
      readonly lease: string;
    }
  | {
      /** The key is taken. */
      readonly acquired: false;
      /** What the store holds for it. */
      readonly record: IdempotencyRecord;
    };

/** Options of {@link redisIdempotencyStore}. Exactly one of `client` and `url` is required. */
export interface RedisIdempotencyStoreOptions {
  /**
   * An ioredis client (standalone or Cluster) the store uses but does not own: `close()` leaves it open.
   * For `waitForChange` the store makes one subscriber connection of its own with `client.duplicate()`
   * and closes that one on `close()`.
   */
  readonly client?: RedisClient;
  /**
   * A `redis://` or `rediss://` URL; the store creates (and on `close()` quits) its own client with safe
   * settings: no offline queue, one retry per request, auto-pipelining, capped reconnect backoff.
   */
  readonly url?: string;
  /** Extra ioredis options for the clients created from `url` (TLS, username...). Merged over the safe defaults. */
  readonly redisOptions?: RedisOptions;
  /**
   * Prepended to every key; the store's keys are `<prefix>idem:{<key>}`, so it may share a prefix with a
   * rate-limit `redisStore`. Must not contain `{` or `}`.
   * @default 'floodgate:'
   */
  readonly prefix?: string;
  /**
   * Longest one call waits for Redis, from the call through any wait for the connection to the reply.
   * Past it the call rejects with `StoreUnavailableError`.
   * @default 250
   */
  readonly timeoutMs?: number;
  /**
   * Longest one `waitForChange` waits without news before it resolves and the caller looks again: the
   * safety net for a notification lost to a reconnect, and the whole mechanism when `pubsub` is false.
   * A lease that expires wakes the waiter on time regardless.
   * @default 1_000
   */
  readonly pollIntervalMs?: number;
  /**
   * Wake waiters by Redis pub/sub (one lazily made subscriber connection shared by every waiter) rather
   * than by polling every `pollIntervalMs`. Turn it off where pub/sub is not available (some proxies).
   * @default true
   */
  readonly pubsub?: boolean;
}

const KNOWN = ['client', 'url', 'redisOptions', 'prefix', 'timeoutMs', 'pollIntervalMs', 'pubsub'] as const;
/** Client states in which a connection is still being made: worth waiting for, within the timeout. */
const CONNECTING = new Set(['wait', 'connecting', 'connect']);
const STORE_NAME = 'RedisIdempotencyStore';

interface Script {
  readonly lua: string;
  readonly sha: string;
}

function script(lua: string): Script {
  return { lua, sha: scriptSha(lua) };
}

// One hash per key: `fp` (fingerprint), `lease` (while in flight), `res` (the response as JSON, once
// completed) and `w` (someone waits: publish on change). The key's own expiry is the lease while in
// flight (PX leaseMs, so a crashed request frees the key) and the response's TTL once completed: the
// short lock and the long record never share a deadline. One key per call: one Cluster slot.

/**
 * KEYS: record. ARGV: fingerprint, lease, leaseMs. A lease token is made for one `begin`, so finding it
 * in the record means this very call ran already: ioredis sends a command again after a reconnect when
 * the connection dropped before its reply came (CLIENT KILL, a network blip), and that run must answer
 * `acquired` as the first did, not report the caller's own lease as someone else's request in flight.
 */
const BEGIN = script(`local v = redis.call('HMGET', KEYS[1], 'fp', 'lease', 'res')
if v[3] then return {'completed', v[1] or '', v[3]} end
if v[2] == ARGV[2] then return {'acquired'} end
if v[2] then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then ttl = 0 end
  return {'in-flight', v[1] or '', ttl}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'lease', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'acquired'}`);

/** KEYS: record. ARGV: lease, response JSON, ttlMs, channel. Answers 1 when the lease still owned the key. */
const COMPLETE = script(`if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end
local watched = redis.call('HEXISTS', KEYS[1], 'w')
redis.call('HDEL', KEYS[1], 'lease', 'w')
redis.call('HSET', KEYS[1], 'res', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if watched == 1 then redis.call('PUBLISH', ARGV[4], 'completed') end
return 1`);

/** KEYS: record. ARGV: lease, channel. Answers 1 when the lease still owned the key. */
const RELEASE = script(`if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end
local watched = redis.call('HEXISTS', KEYS[1], 'w')
redis.call('DEL', KEYS[1])
if watched == 1 then redis.call('PUBLISH', ARGV[2], 'released') end
return 1`);

/**
 * KEYS: record. ARGV: '1' to ask for a notification. Answers the lease's remaining ms, or -1 when the key
 * is not in flight. Marking the record in the same step as reading it leaves no gap in which a change
 * could go unannounced.
 */
const WATCH = script(`if redis.call('HEXISTS', KEYS[1], 'lease') == 0 then return -1 end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'w', '1') end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then ttl = 0 end
return ttl`);

interface Connection {
  readonly client: RedisClient;
  readonly owned: boolean;
  /** Calls waiting for a connection being made (one listener on the client serves them all). */
  readonly readyWaiters: Set<() => void>;
  readonly onReady: () => void;
  readonly onClose: () => void;
}

type Waiter = (error?: Error) => void;

interface Watch {
  readonly channel: string;
  readonly waiters: Set<Waiter>;
  /** Resolves true once SUBSCRIBE is confirmed, false when it failed (the waiters then only poll). */
  subscribed: Promise<boolean> | undefined;
}

interface Resolved {
  readonly client: RedisClient | undefined;
  readonly url: string | undefined;
  readonly redisOptions: RedisOptions;
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly pollIntervalMs: number;
  readonly pubsub: boolean;
}

function resolveOptions(options: unknown): Resolved {
  if (!isPlainObject(options)) {
    throw new InvalidOptionError('options', 'an object with `client` or `url`', options);
  }
  for (const key of Object.keys(options)) {
    if (!(KNOWN as readonly string[]).includes(key)) {
      throw new InvalidOptionError(
        key,
        `one of the options of redisIdempotencyStore (${KNOWN.join(', ')})`,
        key,
      );
    }
  }
  const { client, url, redisOptions, prefix, pubsub } = options;
  checkConnection({ client, url, redisOptions, prefix }, ['evalsha', 'duplicate']);
  if (pubsub !== undefined && typeof pubsub !== 'boolean') {
    throw new InvalidOptionError('pubsub', 'a boolean', pubsub);
  }
  return {
    client: client as RedisClient | undefined,
    url: url as string | undefined,
    redisOptions: (redisOptions ?? {}) as RedisOptions,
    prefix: (prefix as string | undefined) ?? 'floodgate:',
    timeoutMs: integerOption('timeoutMs', options.timeoutMs, 250, 1, 60_000),
    pollIntervalMs: integerOption('pollIntervalMs', options.pollIntervalMs, 1_000, 1, 3_600_000),
    pubsub: (pubsub as boolean | undefined) ?? true,
  };
}

/**
 * An idempotency store on Redis, for `idempotency({ store })` of `@floodgate/express` and
 * `@floodgate/fastify` (any `IdempotencyStore` of `@floodgate/http`): every shop instance using the same
 * Redis and `prefix` sees the same keys, so a duplicate that reaches another instance is replayed, answered
 * 409 or coalesced instead of being processed twice.
 *
 * `begin`, `complete` and `release` are each one atomic Lua script on one hash-tagged key. The in-flight
 * lease expires by itself (`PX leaseMs`); a request whose lease expired and was taken over cannot
 * overwrite the new owner's outcome (its lease token no longer matches). `waitForChange` sleeps on Redis
 * pub/sub, not by polling.
 *
 * @example
 * ```ts
 * import { idempotency } from '@floodgate/express';
 * import { redisIdempotencyStore } from '@floodgate/redis';
 *
 * const store = redisIdempotencyStore({ url: 'redis://127.0.0.1:6379', prefix: 'shop:' });
 * app.post('/checkout', idempotency({ store, inFlight: 'coalesce' }), checkout);
 * ```
 */
export class RedisIdempotencyStore {
  readonly #main: Connection;
  #sub: Connection | undefined;
  readonly #url: string | undefined;
  readonly #redisOptions: RedisOptions;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #pollIntervalMs: number;
  readonly #pubsub: boolean;
  readonly #watches = new Map<string, Watch>();
  /** Channels left while the subscriber was disconnected: ioredis may resubscribe them on reconnect. */
  readonly #stale = new Set<string>();
  #subscriberWasReady = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #outstanding = 0;
  #drained: (() => void) | undefined;

  /**
   * @throws {InvalidOptionError} `ERR_INVALID_OPTION` for a missing, unknown or bad option (the message
   *   names it).
   */
  constructor(options: RedisIdempotencyStoreOptions) {
    const resolved = resolveOptions(options);
    this.#url = resolved.url;
    this.#redisOptions = resolved.redisOptions;
    this.#prefix = resolved.prefix;
    this.#timeoutMs = resolved.timeoutMs;
    this.#pollIntervalMs = resolved.pollIntervalMs;
    this.#pubsub = resolved.pubsub;
    this.#main =
      resolved.client === undefined
        ? this.#connection(this.#ownClient(), true, () => {})
        : this.#connection(resolved.client, false, () => {});
  }

  /** The ioredis client the store sends its scripts to (yours if you passed `client`). */
  get client(): RedisClient {
    return this.#main.client;
  }

  /**
   * Atomically: when `key` is free (never seen, released, its lease or its stored response expired),
   * leases it for `leaseMs` and answers `{ acquired: true, lease }`; otherwise answers what is there.
   *
   * @throws {InvalidOptionError} `ERR_INVALID_OPTION` for a bad argument (rejected promise).
   * @throws {StoreUnavailableError} `ERR_STORE_UNAVAILABLE` when Redis does not answer within `timeoutMs`
   *   or fails (rejected promise; `cause` is the Redis error or timeout).
   * @throws {ClosedError} `ERR_CLOSED` after {@link close}.
   */
  async begin(key: string, fingerprint: string, leaseMs: number): Promise<BeginResult> {
    checkKey(key);
    checkString('fingerprint', fingerprint);
    checkDuration('leaseMs', leaseMs);
    const lease = randomUUID();
    const recordKey = this.#recordKey(key);
    let sent: Promise<unknown> | undefined;
    let reply: unknown;
    try {
      reply = await this.#call(this.#main, (client) => {
        sent = runScript(client, BEGIN, recordKey, [fingerprint, lease, leaseMs]);
        return sent;
      });
    } catch (error) {
      // Given up on (timeout, lost connection) after it was sent, the script may still run and take the
      // key under a lease nobody else knows: every retry would get 409 until `leaseMs` ran out.
      if (sent !== undefined) this.#abandon(recordKey, lease, sent);
      throw error;
    }
    try {
      return decodeBegin(reply, lease);
    } catch (error) {
      throw unavailable(error);
    }
  }

  /**
   * Frees whatever a BEGIN we gave up on takes, fire and forget: a RELEASE of its lease at once, on the
   * same connection, so Redis runs it after that BEGIN (and it cannot free a newer holder: the lease is
   * ours alone). A BEGIN that met NOSCRIPT is sent again as EVAL only when that reply comes, possibly after
   * the RELEASE: if its late reply says it acquired, the RELEASE is sent once more. Failures are ignored
   * (the lease then expires by itself); each RELEASE is an ordinary call, bounded and awaited by `close()`.
   */
  #abandon(recordKey: string, lease: string, begin: Promise<unknown>): void {
    const release = (): void => {
      this.#script(RELEASE, recordKey, [lease, channelOf(recordKey)]).catch(ignore);
    };
    release();
    begin.then((late) => {
      if (Array.isArray(late) && late[0] === 'acquired') release();
    }, ignore);
  }

  /**
   * Stores `response` (as JSON) for `ttlMs` and ends the lease, if `lease` still owns `key`; otherwise does
   * nothing, so a request whose lease expired and was taken over cannot overwrite the new owner's outcome.
   * Wakes the waiters of `key`.
   *
   * @throws {InvalidOptionError} `ERR_INVALID_OPTION` for a bad argument (rejected promise).
   * @throws {StoreUnavailableError} `ERR_STORE_UNAVAILABLE` when Redis does not answer (rejected promise).
   * @throws {ClosedError} `ERR_CLOSED` after {@link close}.
   */
  async complete(key: string, lease: string, response: StoredResponse, ttlMs: number): Promise<void> {
    checkKey(key);
    checkString('lease', lease);
    const json = encodeResponse(response);
    checkDuration('ttlMs', ttlMs);
    const recordKey = this.#recordKey(key);
    await this.#script(COMPLETE, recordKey, [lease, json, ttlMs, channelOf(recordKey)]);
  }

  /**
   * Ends the lease without storing anything (a retryable outcome: 5xx, 429, aborted), if `lease` still
   * owns `key`. Wakes the waiters of `key`.
   *
   * @throws {InvalidOptionError} `ERR_INVALID_OPTION` for a bad argument (rejected promise).
   * @throws {StoreUnavailableError} `ERR_STORE_UNAVAILABLE` when Redis does not answer (rejected promise).
   * @throws {ClosedError} `ERR_CLOSED` after {@link close}.
   */
  async release(key: string, lease: string): Promise<void> {
    checkKey(key);
    checkString('lease', lease);
    const recordKey = this.#recordKey(key);
    await this.#script(RELEASE, recordKey, [lease, channelOf(recordKey)]);
  }

  /**
   * Resolves when `key` may have left the in-flight state: completed or released (announced by pub/sub
   * from whichever instance did it), its lease expired (a timer at the lease's `PTTL`), or after
   * `pollIntervalMs` at the latest (the caller then asks `begin` again). Resolves at once when the key is
   * not in flight, and when `signal` aborts or the store closes. One subscriber connection, made on first
   * use, serves every waiter; a channel is unsubscribed when its last waiter leaves.
   *
   * @throws {StoreUnavailableError} `ERR_STORE_UNAVAILABLE` when Redis cannot be asked (rejected promise).
   */
  waitForChange(key: string, signal: AbortSignal): Promise<void> {
    try {
      checkKey(key);
      if (
        signal === null ||
        typeof signal !== 'object' ||
        typeof signal.aborted !== 'boolean' ||
        typeof signal.addEventListener !== 'function'
      ) {
        throw new InvalidOptionError('signal', 'an AbortSignal', signal);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#closed || signal.aborted) return Promise.resolve();
    const recordKey = this.#recordKey(key);
    const channel = channelOf(recordKey);
    return new Promise<void>((resolve, reject) => {
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      let watch: Watch | undefined;
      const wake: Waiter = (error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (watch !== undefined) this.#leave(watch, wake);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onAbort = (): void => wake();
      signal.addEventListener('abort', onAbort, { once: true });
      // One bound for the subscription and the check together: a Redis that does not answer fails the
      // wait within `timeoutMs`, as it fails any other call.
      const deadline = performance.now() + this.#timeoutMs;
      let subscribed: Promise<boolean> = Promise.resolve(false);
      if (this.#pubsub) {
        watch = this.#join(channel, wake);
        subscribed = watch.subscribed ?? subscribed;
      }
      subscribed
        .then((notified) => (done ? -1 : this.#script(WATCH, recordKey, [notified ? '1' : '0'], deadline)))
        .then(
          (reply) => {
            if (done) return;
            const remaining = Number(reply);
            if (!(remaining >= 0)) {
              wake();
              return;
            }
            // +1: PTTL is rounded down, and waking a hair early would find the lease still there.
            timer = setTimeout(wake, Math.min(remaining + 1, this.#pollIntervalMs));
            timer.unref();
          },
          (error: unknown) => wake(error instanceof Error ? error : unavailable(error)),
        );
    });
  }

  /**
   * Wakes every waiter, lets calls in flight settle (each is bounded by `timeoutMs`), closes the
   * subscriber connection and the client the store created from `url`. A client you passed stays open.
   * Later `begin`/`complete`/`release` calls reject with `ClosedError`. Idempotent: every call resolves
   * when the store is closed.
   */
  close(): Promise<void> {
    // One close for every caller: a second call must not resolve while the first still drains.
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    for (const watch of [...this.#watches.values()]) for (const wake of [...watch.waiters]) wake();
    this.#watches.clear();
    this.#stale.clear();
    if (this.#outstanding > 0) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
      });
    }
    const connections = this.#sub === undefined ? [this.#main] : [this.#main, this.#sub];
    await Promise.all(connections.map((connection) => this.#disconnect(connection)));
  }

  #recordKey(key: string): string {
    return `${this.#prefix}idem:{${key}}`;
  }

  #ownClient(): Redis {
    return new Redis(this.#url as string, {
      // Bounded everything: a call never queues while disconnected, is retried once at most, and
      // reconnects back off up to 2 s so a down Redis is not hammered. Unlike the limiter's, a call in
      // flight when the connection drops is sent again after the reconnect: each script may run twice
      // (a lease token makes a second BEGIN answer as the first did), and a late BEGIN's reply is what
      // lets `#abandon` free the key it leased.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2_000,
      enableAutoPipelining: true,
      retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
      ...this.#redisOptions,
    });
  }

  #connection(client: RedisClient, owned: boolean, afterReady: () => void): Connection {
    const readyWaiters = new Set<() => void>();
    // Each waiting call looks at the status again: sends once ready, fails once the attempt failed.
    const onClose = (): void => {
      const waiters = [...readyWaiters];
      readyWaiters.clear();
      for (const waiter of waiters) waiter();
    };
    const onReady = (): void => {
      onClose();
      afterReady();
    };
    client.on('ready', onReady);
    // A refused or dropped attempt: the calls waiting for it fail now, not when their timeout runs out.
    client.on('close', onClose);
    // Connection errors of our own clients surface as failed calls; the listener only keeps ioredis
    // from printing "Unhandled error event" on every reconnect attempt.
    if (owned) client.on('error', ignore);
    return { client, owned, readyWaiters, onReady, onClose };
  }

  /** The subscriber connection, made on first use: its own client from `url`, or a duplicate of yours. */
  #subscriber(): Connection {
    if (this.#sub === undefined) {
      const client = this.#url === undefined ? this.#main.client.duplicate() : this.#ownClient();
      client.on('message', this.#onMessage);
      this.#sub = this.#connection(client, true, this.#onSubscriberReady);
    }
    return this.#sub;
  }

  readonly #onMessage = (channel: string): void => {
    const watch = this.#watches.get(channel);
    if (watch === undefined) return;
    for (const wake of [...watch.waiters]) wake();
  };

  readonly #onSubscriberReady = (): void => {
    const sub = this.#sub;
    if (sub === undefined) return;
    for (const channel of this.#stale) {
      if (!this.#watches.has(channel)) sub.client.unsubscribe(channel).catch(ignore);
    }
    this.#stale.clear();
    // After a reconnect, messages sent while the connection was down are lost: every waiter looks again.
    if (this.#subscriberWasReady) {
      for (const watch of [...this.#watches.values()]) for (const wake of [...watch.waiters]) wake();
    }
    this.#subscriberWasReady = true;
  };

  #join(channel: string, wake: Waiter): Watch {
    let watch = this.#watches.get(channel);
    if (watch === undefined) {
      watch = { channel, waiters: new Set(), subscribed: undefined };
      this.#watches.set(channel, watch);
    }
    watch.waiters.add(wake);
    // The first waiter subscribes; a failed subscription is tried again by the next waiter to arrive.
    if (watch.subscribed === undefined) {
      const current = watch;
      current.subscribed = this.#call(this.#subscriber(), (client) => client.subscribe(channel)).then(
        () => true,
        () => {
          current.subscribed = undefined;
          return false;
        },
      );
    }
    return watch;
  }

  #leave(watch: Watch, wake: Waiter): void {
    watch.waiters.delete(wake);
    if (watch.waiters.size > 0 || this.#watches.get(watch.channel) !== watch) return;
    this.#watches.delete(watch.channel);
    if (this.#closed || this.#sub === undefined) return;
    if (this.#sub.client.status === 'ready') {
      this.#sub.client.unsubscribe(watch.channel).catch(ignore);
    } else {
      this.#stale.add(watch.channel);
    }
  }

  /** A script on the main connection, by {@link runScript}, bounded by {@link #call}. */
  #script(code: Script, key: string, args: (string | number)[], deadline?: number): Promise<unknown> {
    return this.#call(this.#main, (client) => runScript(client, code, key, args), deadline);
  }

  /**
   * Sends when the connection is ready, waits (within the timeout) while a connection is being made,
   * refuses at once otherwise: nothing queues while Redis is away, and nothing waits past `timeoutMs`,
   * or past `deadline` (a `performance.now()` time) for a call that shares the bound of one before it.
   */
  #call<T>(connection: Connection, send: (client: RedisClient) => Promise<T>, deadline?: number): Promise<T> {
    if (this.#closed) return Promise.reject(new ClosedError(STORE_NAME));
    this.#outstanding += 1;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const settle = (error: Error | undefined, value?: T): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        connection.readyWaiters.delete(go);
        this.#settledOne();
        if (error === undefined) resolve(value as T);
        else reject(unavailable(error));
      };
      const go = (): void => {
        if (settled) return;
        const status = connection.client.status;
        if (status === 'ready') {
          send(connection.client).then(
            (value) => settle(undefined, value),
            (error: unknown) => settle(error instanceof Error ? error : new Error(String(error))),
          );
        } else if (CONNECTING.has(status)) {
          connection.readyWaiters.add(go);
        } else {
          settle(new Error(`Redis connection is not ready (status: ${status})`));
        }
      };
      const timedOut = (): void => {
        settle(new Error(`Redis did not answer within ${this.#timeoutMs} ms (timeoutMs)`));
      };
      const delay = deadline === undefined ? this.#timeoutMs : deadline - performance.now();
      const timer = setTimeout(timedOut, Math.max(0, delay));
      timer.unref();
      if (delay <= 0) {
        timedOut(); // nothing left of the bound: not sent at all
        return;
      }
      if (connection.client.status === 'wait') connection.client.connect().catch(ignore);
      go();
    });
  }

  #settledOne(): void {
    this.#outstanding -= 1;
    if (this.#outstanding === 0 && this.#drained !== undefined) {
      const drained = this.#drained;
      this.#drained = undefined;
      drained();
    }
  }

  /** Detaches from a connection; ours are disconnected and awaited (bounded) until their socket is gone. */
  async #disconnect(connection: Connection): Promise<void> {
    const { client } = connection;
    client.off('ready', connection.onReady);
    client.off('close', connection.onClose);
    connection.readyWaiters.clear();
    if (!connection.owned) return;
    client.off('message', this.#onMessage);
    await disconnectClient(client, this.#timeoutMs);
    client.off('error', ignore);
  }
}

/**
 * Creates a {@link RedisIdempotencyStore}: idempotency keys, leases and stored responses in Redis, shared
 * by every instance of your app using the same Redis and `prefix`.
 *
 * @example
 * ```ts
 * import express from 'express';
 * import { idempotency } from '@floodgate/express';
 * import { redisIdempotencyStore } from '@floodgate/redis';
 *
 * const store = redisIdempotencyStore({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' });
 * const app = express().use(express.json());
 * app.post('/checkout', idempotency({ store, inFlight: 'coalesce' }), (req, res) => {
 *   res.status(201).json({ order: req.body.order, paid: true });
 * });
 * ```
 * @throws {InvalidOptionError} `ERR_INVALID_OPTION` for a missing, unknown or bad option.
 */
export function redisIdempotencyStore(options: RedisIdempotencyStoreOptions): RedisIdempotencyStore {
  return new RedisIdempotencyStore(options);
}

function ignore(): void {}

/** EVALSHA; on NOSCRIPT (restarted server, failover, SCRIPT FLUSH) the same call once as EVAL. */
function runScript(
  client: RedisClient,
  code: Script,
  key: string,
  args: (string | number)[],
): Promise<unknown> {
  return client.evalsha(code.sha, 1, key, ...args).catch((error: unknown) => {
    // EVAL runs and caches the script on the node that owns the key (SCRIPT LOAD would go to an
    // arbitrary node of a Cluster).
    if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
      return client.eval(code.lua, 1, key, ...args);
    }
    throw error;
  });
}

function channelOf(recordKey: string): string {
  return `${recordKey}:changed`;
}

function unavailable(error: unknown): Error {
  if (error instanceof ClosedError || error instanceof StoreUnavailableError) return error;
  const cause = error instanceof Error ? error : new Error(String(error));
  return new StoreUnavailableError(`Redis idempotency store unavailable: ${cause.message}`, { cause });
}

function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidOptionError('key', 'a non-empty string', key);
  }
}

function checkString(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') throw new InvalidOptionError(name, 'a string', value);
}

function checkDuration(name: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new InvalidOptionError(name, 'an integer number of milliseconds >= 1', value);
  }
}

/** Only the four fields are stored, so nothing else a caller's object carries ends up in Redis. */
function encodeResponse(response: unknown): string {
  if (!isPlainObject(response)) {
    throw new InvalidOptionError('response', 'an object { status, headers, body, encoding }', response);
  }
  const { status, headers, body, encoding } = response;
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 999) {
    throw new InvalidOptionError('response.status', 'an HTTP status code', status);
  }
  if (!isPlainObject(headers) || Object.values(headers).some((value) => typeof value !== 'string')) {
    throw new InvalidOptionError('response.headers', 'an object of string values', headers);
  }
  checkString('response.body', body);
  if (encoding !== 'utf8' && encoding !== 'base64') {
    throw new InvalidOptionError('response.encoding', "'utf8' or 'base64'", encoding);
  }
  return JSON.stringify({ status, headers, body, encoding });
}

function decodeResponse(json: string): StoredResponse {
  const value: unknown = JSON.parse(json);
  if (
    !isPlainObject(value) ||
    typeof value.status !== 'number' ||
    !isPlainObject(value.headers) ||
    typeof value.body !== 'string' ||
    (value.encoding !== 'utf8' && value.encoding !== 'base64')
  ) {
    throw new Error('A stored response in Redis is not of the expected shape');
  }
  return {
    status: value.status,
    headers: value.headers as Record<string, string>,
    body: value.body,
    encoding: value.encoding,
  };
}

function decodeBegin(reply: unknown, lease: string): BeginResult {
  if (Array.isArray(reply)) {
    const [state, fingerprint, detail] = reply as unknown[];
    if (state === 'acquired') return { acquired: true, lease };
    if (state === 'completed' && typeof fingerprint === 'string' && typeof detail === 'string') {
      return {
        acquired: false,
        record: { state: 'completed', fingerprint, response: decodeResponse(detail) },
      };
    }
    // Number(): a client created with ioredis's `stringNumbers` answers the lease time left as a string.
    const leaseRemainingMs =
      typeof detail === 'number' || typeof detail === 'string' ? Number(detail) : Number.NaN;
    if (state === 'in-flight' && typeof fingerprint === 'string' && Number.isFinite(leaseRemainingMs)) {
      return { acquired: false, record: { state: 'in-flight', fingerprint, leaseRemainingMs } };
    }
  }
  throw new Error('Unexpected reply from the idempotency script');
}
