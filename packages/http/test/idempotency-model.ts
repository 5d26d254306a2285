/**
 * The idempotency store contract, written plainly from the TSDoc of `IdempotencyStore`
 * (src/idempotency-store.ts), `MemoryIdempotencyStoreOptions.maxKeys` and the README ("a late `complete`
 * by the old owner is ignored"), and the fast-check commands that hold a store to it. The memory store's
 * test and @floodgate/redis's test both run these commands, so the two stores are held to one model.
 *
 * The contract as modelled:
 * - A key is free when never seen, released, its lease expired, or its stored response expired. `begin`
 *   on a free key leases it (a lease token no other `begin` has answered); on a taken key it answers what
 *   is there: the in-flight fingerprint and the lease's remaining time, or the completed fingerprint and
 *   response. The store does not compare fingerprints (`Idempotency` does).
 * - A lease owns its key from `begin` until it is completed, released or expires: a lease at or past its
 *   end frees the key, and a `complete` or `release` by a lease that does not own the key changes nothing
 *   (whether the key was taken over or not).
 * - `complete` by the owner stores the response for `ttlMs` (from the time of `complete`) under the
 *   fingerprint of the `begin` that leased it; the key answers it until the TTL ends.
 * - Bounded stores (`maxKeys`): a `begin` that leases a key when the store holds `maxKeys` live keys
 *   makes room by dropping the oldest stored responses (in order of completion), never a live lease;
 *   expired entries go first, so no live response is dropped while an expired one is kept. When every
 *   key held is a live lease, the store grows past `maxKeys` (leases are bounded by requests in flight).
 * - `waitForChange` resolves once the lease that was in flight when it was called has been completed or
 *   released by its owner, or has expired (within 1 ms: the memory store wakes 1 ms after the end, so
 *   the waiter finds the key free), and soon when the key was not in flight. Spurious wake-ups are allowed.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import type { BeginResult, IdempotencyRecord, IdempotencyStore, StoredResponse } from '../src/index.js';

/** The store operations the model checks (a Redis store fits too: it has the same shapes). */
export type StoreUnderTest = Pick<IdempotencyStore, 'begin' | 'complete' | 'release' | 'waitForChange'>;

interface Entry {
  readonly fingerprint: string;
  /** The lease while in flight. */
  lease: number | undefined;
  response: StoredResponse | undefined;
  /** End of the lease while in flight, of the stored response once completed. */
  expiresAt: number;
  /** Order of completion: the oldest completed entry is evicted first. */
  completedSeq: number;
}

interface LeaseInfo {
  readonly key: string;
  readonly expiresAt: number;
  /** Completed or released by its owner while it owned the key. */
  ended: boolean;
}

export type ModelBegin =
  | { readonly acquired: true; readonly lease: number }
  | { readonly acquired: false; readonly record: IdempotencyRecord };

/** The reference model: time is a number the test advances; leases are numbered 1, 2, ... */
export class IdempotencyModel {
  now = 0;
  readonly maxKeys: number;
  readonly #entries = new Map<string, Entry>();
  readonly #leases = new Map<number, LeaseInfo>();
  /** Every lease issued per key, in order: stale owners are picked from here. */
  readonly #issued = new Map<string, number[]>();
  #seq = 0;
  /** How often the interesting cases came up, so a test can show they were exercised. */
  readonly seen = { takeovers: 0, staleIgnored: 0, evictions: 0, completed: 0, released: 0 };

  constructor(maxKeys = Number.POSITIVE_INFINITY) {
    this.maxKeys = maxKeys;
  }

  /** The key's live entry (in flight or stored), dropping an expired one. */
  #live(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt > this.now) return entry;
    this.#entries.delete(key);
    return undefined;
  }

  begin(key: string, fingerprint: string, leaseMs: number): ModelBegin {
    const entry = this.#live(key);
    if (entry !== undefined) {
      return {
        acquired: false,
        record:
          entry.response !== undefined
            ? { state: 'completed', fingerprint: entry.fingerprint, response: entry.response }
            : {
                state: 'in-flight',
                fingerprint: entry.fingerprint,
                leaseRemainingMs: entry.expiresAt - this.now,
              },
      };
    }
    this.#makeRoom();
    if (this.#issued.has(key) && this.#leases.get(this.#issued.get(key)?.at(-1) ?? 0)?.ended === false)
      this.seen.takeovers += 1;
    const lease = this.#leases.size + 1;
    const expiresAt = this.now + leaseMs;
    this.#leases.set(lease, { key, expiresAt, ended: false });
    this.#issued.set(key, [...(this.#issued.get(key) ?? []), lease]);
    this.#entries.set(key, { fingerprint, lease, response: undefined, expiresAt, completedSeq: 0 });
    return { acquired: true, lease };
  }

  #makeRoom(): void {
    for (const key of [...this.#entries.keys()]) this.#live(key);
    while (this.#entries.size >= this.maxKeys) {
      let oldest: [string, Entry] | undefined;
      for (const pair of this.#entries) {
        if (
          pair[1].response !== undefined &&
          (oldest === undefined || pair[1].completedSeq < oldest[1].completedSeq)
        )
          oldest = pair;
      }
      if (oldest === undefined) return;
      this.#entries.delete(oldest[0]);
      this.seen.evictions += 1;
    }
  }

  /** Answers whether the response was stored. */
  complete(key: string, lease: number, response: StoredResponse, ttlMs: number): boolean {
    const entry = this.#live(key);
    if (entry === undefined || entry.lease !== lease) return this.#ignored(lease);
    this.seen.completed += 1;
    entry.lease = undefined;
    entry.response = response;
    entry.expiresAt = this.now + ttlMs;
    this.#seq += 1;
    entry.completedSeq = this.#seq;
    this.#end(lease);
    return true;
  }

  /** Answers whether the key was freed. */
  release(key: string, lease: number): boolean {
    const entry = this.#live(key);
    if (entry === undefined || entry.lease !== lease) return this.#ignored(lease);
    this.seen.released += 1;
    this.#entries.delete(key);
    this.#end(lease);
    return true;
  }

  /** A lease that lost its key to expiry (a takeover or not) and presents itself anyway. */
  #ignored(lease: number): false {
    const info = this.#leases.get(lease);
    if (info !== undefined && !info.ended) this.seen.staleIgnored += 1;
    return false;
  }

  #end(lease: number): void {
    const info = this.#leases.get(lease);
    if (info !== undefined) info.ended = true;
  }

  advance(ms: number): void {
    this.now += ms;
  }

  /** Whether `begin` would lease `key` now. */
  isFree(key: string): boolean {
    return this.#live(key) === undefined;
  }

  /** The live lease of `key`, if it is in flight. */
  inFlight(key: string): number | undefined {
    return this.#live(key)?.lease;
  }

  /** Live leases held, over all keys. */
  leasesInFlight(): number {
    let count = 0;
    for (const key of [...this.#entries.keys()]) if (this.inFlight(key) !== undefined) count += 1;
    return count;
  }

  issued(key: string): readonly number[] {
    return this.#issued.get(key) ?? [];
  }

  lease(lease: number): LeaseInfo | undefined {
    return this.#leases.get(lease);
  }
}

/** What a test gives the commands: the store(s) under test and how to move their time. */
export interface StoreDriver {
  /** Two clients of the same keys: two store instances on their own connections (Redis), or one store. */
  readonly clients: readonly [StoreUnderTest, StoreUnderTest];
  /** The store's key for a model key (Redis: unique to the run). */
  key(modelKey: string): string;
  /** Moves the store's time forward by `ms` (an injected clock, or shifted TTLs in Redis). */
  advance(ms: number): Promise<void>;
  /** How far below the model's a `leaseRemainingMs` may read (Redis: real time passes as the test runs). */
  leaseSlackMs(): number;
  /** Resolves once `done()` holds after the store had its chance to act (fails the test otherwise). */
  settle(done: () => boolean): Promise<void>;
  /** Resolves once a `waitForChange` just called is registered with the store. */
  registered(key: string, waiting: () => boolean): Promise<void>;
  /** Whether a lease that expires in model time wakes its waiters (memory: fake timers follow the clock). */
  readonly wakesOnExpiry: boolean;
  /** Keys held, for bounded stores. */
  size?(): number;
}

interface Watcher {
  readonly key: string;
  readonly lease: number | undefined;
  readonly registeredAt: number;
  readonly controller: AbortController;
  readonly promise: Promise<void>;
  done: boolean;
}

/** The real side of a run: the driver, the tokens of the model's leases, the open waits. */
export class Real {
  readonly tokens = new Map<number, string>();
  readonly watchers: Watcher[] = [];
  constructor(readonly driver: StoreDriver) {}

  /** Aborts every wait and waits for each to settle: nothing is left behind. */
  async cleanUp(): Promise<void> {
    for (const watcher of this.watchers) watcher.controller.abort();
    await Promise.all(this.watchers.map((watcher) => watcher.promise));
    this.watchers.length = 0;
  }
}

type Cmd = fc.AsyncCommand<IdempotencyModel, Real>;

/** Responses that differ in every field, so a replay of the wrong one shows. */
export const RESPONSES: readonly StoredResponse[] = [
  {
    status: 201,
    headers: { 'content-type': 'application/json', location: '/orders/1' },
    body: '{"order":1}',
    encoding: 'utf8',
  },
  { status: 422, headers: {}, body: '', encoding: 'utf8' },
  {
    status: 200,
    headers: { 'content-type': 'application/octet-stream' },
    body: 'AAEC/w==',
    encoding: 'base64',
  },
];

/** Which lease a `complete`/`release` presents. */
type LeasePick =
  | { readonly kind: 'current' }
  | { readonly kind: 'issued'; readonly index: number }
  | { readonly kind: 'forged' };

const FORGED = -1;

function resolveLease(model: IdempotencyModel, real: Real, key: string, pick: LeasePick): [number, string] {
  const issued = model.issued(key);
  let lease: number | undefined;
  if (pick.kind === 'current') lease = model.inFlight(key) ?? issued.at(-1);
  else if (pick.kind === 'issued' && issued.length > 0) lease = issued[pick.index % issued.length];
  if (lease === undefined) return [FORGED, 'not-a-lease-of-this-store'];
  const token = real.tokens.get(lease);
  if (token === undefined) throw new Error(`no token for model lease ${lease}`);
  return [lease, token];
}

function describePick(pick: LeasePick): string {
  return pick.kind === 'issued' ? `issued[${pick.index}]` : pick.kind;
}

/** Compares a store's begin with the model's, and records a new lease's token. */
function expectBegin(actual: BeginResult, expected: ModelBegin, real: Real): void {
  if (expected.acquired) {
    expect(actual, 'the key is free: begin must lease it').toMatchObject({ acquired: true });
    if (!actual.acquired) return;
    expect(typeof actual.lease === 'string' && actual.lease.length > 0).toBe(true);
    expect([...real.tokens.values()], 'a lease token is never answered twice').not.toContain(actual.lease);
    real.tokens.set(expected.lease, actual.lease);
    return;
  }
  expect(actual.acquired, `the key is taken: begin must answer ${JSON.stringify(expected.record)}`).toBe(
    false,
  );
  if (actual.acquired) return;
  expectRecord(actual.record, expected.record, real.driver.leaseSlackMs());
}

function expectRecord(actual: IdempotencyRecord, expected: IdempotencyRecord, slackMs: number): void {
  if (expected.state === 'completed') {
    expect(actual).toEqual(expected);
    return;
  }
  expect(actual).toMatchObject({ state: 'in-flight', fingerprint: expected.fingerprint });
  if (actual.state !== 'in-flight') return;
  expect(actual.leaseRemainingMs).toBeLessThanOrEqual(expected.leaseRemainingMs);
  expect(actual.leaseRemainingMs).toBeGreaterThanOrEqual(expected.leaseRemainingMs - slackMs);
}

/** Every open wait that the contract says must have resolved by now, has. */
async function checkWatchers(model: IdempotencyModel, real: Real): Promise<void> {
  const due = real.watchers.filter((watcher) => {
    if (watcher.done) return false;
    if (watcher.lease === undefined) return !real.driver.wakesOnExpiry || model.now > watcher.registeredAt;
    const info = model.lease(watcher.lease);
    if (info === undefined) throw new Error(`unknown lease ${watcher.lease}`);
    return info.ended || (real.driver.wakesOnExpiry && model.now > info.expiresAt);
  });
  if (due.length > 0) await real.driver.settle(() => due.every((watcher) => watcher.done));
  for (const watcher of due) {
    expect(
      watcher.done,
      `waitForChange(${watcher.key}) under lease ${watcher.lease} must have resolved`,
    ).toBe(true);
  }
}

/**
 * Right after a `begin` that leased, a bounded store holds at most `maxKeys` keys, or only live leases
 * (other moments may exceed it: leases taken while full that completed since are dropped at the next
 * `begin` that leases).
 */
function checkSize(model: IdempotencyModel, real: Real): void {
  const size = real.driver.size?.();
  if (size === undefined) return;
  expect(size, 'the store stays within maxKeys unless every key is a live lease').toBeLessThanOrEqual(
    Math.max(model.maxKeys, model.leasesInFlight()),
  );
}

class Begin implements Cmd {
  constructor(
    readonly client: 0 | 1,
    readonly key: string,
    readonly fingerprint: string,
    readonly leaseMs: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(model: IdempotencyModel, real: Real): Promise<void> {
    const actual = await real.driver.clients[this.client].begin(
      real.driver.key(this.key),
      this.fingerprint,
      this.leaseMs,
    );
    const expected = model.begin(this.key, this.fingerprint, this.leaseMs);
    expectBegin(actual, expected, real);
    if (expected.acquired) checkSize(model, real);
  }
  toString(): string {
    return `begin#${this.client}(${this.key}, ${this.fingerprint}, ${this.leaseMs})`;
  }
}

/**
 * Both clients begin the same key at once: exactly one may lease a free key, the other sees it in flight
 * under the winner's fingerprint (Redis: two connections racing; the synchronous memory store runs them
 * one after the other).
 */
class BeginBoth implements Cmd {
  constructor(
    readonly key: string,
    readonly fingerprints: readonly [string, string],
    readonly leaseMs: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(model: IdempotencyModel, real: Real): Promise<void> {
    const key = real.driver.key(this.key);
    const answers = await Promise.all(
      real.driver.clients.map((store, i) => store.begin(key, this.fingerprints[i] as string, this.leaseMs)),
    );
    if (!model.isFree(this.key)) {
      for (const answer of answers) expectBegin(answer, model.begin(this.key, 'unused', this.leaseMs), real);
      return;
    }
    const winners = answers.flatMap((answer, i) => (answer.acquired ? [i] : []));
    expect(winners, 'of two concurrent begins on a free key exactly one leases it').toHaveLength(1);
    const winner = winners[0] as number;
    const fingerprint = this.fingerprints[winner] as string;
    expectBegin(answers[winner] as BeginResult, model.begin(this.key, fingerprint, this.leaseMs), real);
    expectBegin(answers[1 - winner] as BeginResult, model.begin(this.key, 'loser', this.leaseMs), real);
    checkSize(model, real);
  }
  toString(): string {
    return `beginBoth(${this.key}, ${this.fingerprints.join('|')}, ${this.leaseMs})`;
  }
}

class Complete implements Cmd {
  constructor(
    readonly client: 0 | 1,
    readonly key: string,
    readonly pick: LeasePick,
    readonly response: number,
    readonly ttlMs: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(model: IdempotencyModel, real: Real): Promise<void> {
    const [lease, token] = resolveLease(model, real, this.key, this.pick);
    const response = RESPONSES[this.response] as StoredResponse;
    await real.driver.clients[this.client].complete(real.driver.key(this.key), token, response, this.ttlMs);
    model.complete(this.key, lease, response, this.ttlMs);
    await checkWatchers(model, real);
  }
  toString(): string {
    return `complete#${this.client}(${this.key}, ${describePick(this.pick)}, res${this.response}, ${this.ttlMs})`;
  }
}

class Release implements Cmd {
  constructor(
    readonly client: 0 | 1,
    readonly key: string,
    readonly pick: LeasePick,
  ) {}
  check(): boolean {
    return true;
  }
  async run(model: IdempotencyModel, real: Real): Promise<void> {
    const [lease, token] = resolveLease(model, real, this.key, this.pick);
    await real.driver.clients[this.client].release(real.driver.key(this.key), token);
    model.release(this.key, lease);
    await checkWatchers(model, real);
  }
  toString(): string {
    return `release#${this.client}(${this.key}, ${describePick(this.pick)})`;
  }
}

class Advance implements Cmd {
  constructor(readonly ms: number) {}
  check(): boolean {
    return true;
  }
  async run(model: IdempotencyModel, real: Real): Promise<void> {
    await real.driver.advance(this.ms);
    model.advance(this.ms);
    await checkWatchers(model, real);
  }
  toString(): string {
    return `advance(${this.ms})`;
  }
}

class Watch implements Cmd {
  constructor(
    readonly client: 0 | 1,
    readonly key: string,
  ) {}
  check(): boolean {
    return true;
  }
  async run(model: IdempotencyModel, real: Real): Promise<void> {
    const store = real.driver.clients[this.client];
    if (store.waitForChange === undefined) return;
    const controller = new AbortController();
    const key = real.driver.key(this.key);
    const watcher: Watcher = {
      key: this.key,
      lease: model.inFlight(this.key),
      registeredAt: model.now,
      controller,
      done: false,
      promise: store.waitForChange(key, controller.signal).then(() => {
        watcher.done = true;
      }),
    };
    real.watchers.push(watcher);
    if (watcher.lease !== undefined) await real.driver.registered(key, () => watcher.done);
    await checkWatchers(model, real);
  }
  toString(): string {
    return `watch#${this.client}(${this.key})`;
  }
}

/** Shapes of the generated sequences. Durations are whole `unitMs`, plus single ms when `fineMs`. */
export interface CommandOptions {
  readonly keys: readonly string[];
  readonly unitMs: number;
  /** Also advance by 1 ms (exact clocks only: Redis's real clock moves meanwhile). */
  readonly fineMs: boolean;
  readonly maxCommands: number;
}

export function idempotencyCommands(options: CommandOptions): fc.Arbitrary<Iterable<Cmd>> {
  const { keys, unitMs, fineMs, maxCommands } = options;
  const client = fc.constantFrom<0 | 1>(0, 1);
  const key = fc.constantFrom(...keys);
  const fingerprint = fc.constantFrom('fp-a', 'fp-b');
  const leaseMs = fc.integer({ min: 1, max: 4 }).map((units) => units * unitMs);
  const ttlMs = fc.integer({ min: 1, max: 8 }).map((units) => units * unitMs);
  const advanceMs = fineMs
    ? fc.oneof(
        fc.integer({ min: 1, max: 5 }).map((units) => units * unitMs),
        fc.constant(1),
        fc.constant(unitMs - 1),
      )
    : fc.integer({ min: 1, max: 5 }).map((units) => units * unitMs);
  const pick: fc.Arbitrary<LeasePick> = fc.oneof(
    { weight: 4, arbitrary: fc.constant({ kind: 'current' } as const) },
    { weight: 3, arbitrary: fc.nat(7).map((index) => ({ kind: 'issued', index }) as const) },
    { weight: 1, arbitrary: fc.constant({ kind: 'forged' } as const) },
  );
  const begin = fc.tuple(client, key, fingerprint, leaseMs).map(([c, k, f, l]) => new Begin(c, k, f, l));
  const complete = fc
    .tuple(client, key, pick, fc.nat(RESPONSES.length - 1), ttlMs)
    .map(([c, k, p, r, t]) => new Complete(c, k, p, r, t));
  const advance = advanceMs.map((ms) => new Advance(ms));
  // Repeated entries weigh the mix towards what fills a store and moves its time.
  return fc.commands<IdempotencyModel, Real, false>(
    [
      begin,
      begin,
      begin,
      fc.tuple(key, fingerprint, fingerprint, leaseMs).map(([k, f, g, l]) => new BeginBoth(k, [f, g], l)),
      complete,
      complete,
      fc.tuple(client, key, pick).map(([c, k, p]) => new Release(c, k, p)),
      advance,
      advance,
      fc.tuple(client, key).map(([c, k]) => new Watch(c, k)),
    ],
    { maxCommands, size: 'max' },
  );
}
