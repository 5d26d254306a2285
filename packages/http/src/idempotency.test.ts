import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { InvalidOptionError, InvalidScopeError, StoreUnavailableError } from './errors.js';
import {
  type CapturedResponse,
  defaultIdempotencyScope,
  Idempotency,
  isStorableStatus,
  resolveIdempotencyScope,
} from './idempotency.js';
import type { IdempotencyStore } from './idempotency-store.js';
import { MemoryIdempotencyStore } from './memory-idempotency-store.js';

// Counts the memory stores made, so a test can tell that a bad option threw before the default one was.
const made = vi.hoisted(() => ({ stores: 0 }));
vi.mock('./memory-idempotency-store.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('./memory-idempotency-store.js')>();
  class CountedStore extends actual.MemoryIdempotencyStore {
    constructor(...args: ConstructorParameters<typeof actual.MemoryIdempotencyStore>) {
      super(...args);
      made.stores += 1;
    }
  }
  return { ...actual, MemoryIdempotencyStore: CountedStore };
});

const created: CapturedResponse = {
  status: 201,
  headers: { 'content-type': 'application/json', location: '/orders/1', 'set-cookie': ['a=b'] },
  body: '{"id":1}',
};

function request(overrides: Partial<Parameters<Idempotency['start']>[0]> = {}) {
  return {
    method: 'POST',
    url: '/checkout',
    keyHeader: '"k1"',
    body: { amount: 10, currency: 'EUR' },
    scope: 'user:1',
    ...overrides,
  };
}

async function proceed(idem: Idempotency, req = request()) {
  const start = await idem.start(req);
  if (start.kind !== 'proceed') throw new Error(`expected proceed, got ${start.kind}`);
  return start.ticket;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('Idempotency', () => {
  it('processes the first request and replays its stored response with Idempotent-Replayed', async () => {
    const idem = new Idempotency();
    const ticket = await proceed(idem);
    await ticket.finish(created);
    const replay = await idem.start(request({ body: { currency: 'EUR', amount: 10 } }));
    expect(replay).toEqual({
      kind: 'answer',
      replayed: true,
      answer: {
        status: 201,
        headers: { 'content-type': 'application/json', location: '/orders/1', 'idempotent-replayed': 'true' },
        body: '{"id":1}',
      },
    });
    await idem.close();
  });

  it('answers 422 (configurable) when the key comes back with another payload', async () => {
    const idem = new Idempotency();
    await (await proceed(idem)).finish(created);
    const other = await idem.start(request({ body: { amount: 11, currency: 'EUR' } }));
    expect(other.kind === 'answer' && other.answer.status).toBe(422);
    expect(other.kind === 'answer' && JSON.parse(other.answer.body as string).code).toBe(
      'ERR_IDEMPOTENCY_KEY_REUSED',
    );
    const stripe = new Idempotency({ mismatchStatus: 400 });
    await (await proceed(stripe)).finish(created);
    const again = await stripe.start(request({ url: '/elsewhere' }));
    expect(again.kind === 'answer' && again.answer.status).toBe(400);
  });

  it('answers 409 + Retry-After to a duplicate while the first is in flight', async () => {
    const idem = new Idempotency({ retryAfterMs: 1500 });
    const ticket = await proceed(idem);
    const dup = await idem.start(request());
    expect(dup.kind).toBe('answer');
    if (dup.kind !== 'answer') return;
    expect(dup.answer.status).toBe(409);
    expect(dup.answer.headers['retry-after']).toBe('2');
    await ticket.finish(created);
  });

  it('coalesces: duplicates wait for the first outcome and get the same answer', async () => {
    const idem = new Idempotency({ inFlight: 'coalesce' });
    const ticket = await proceed(idem);
    const dups = [idem.start(request()), idem.start(request())];
    await ticket.finish(created);
    for (const dup of await Promise.all(dups)) {
      expect(dup.kind === 'answer' && dup.replayed && dup.answer.status).toBe(201);
    }
  });

  it('startWhileConnected: a duplicate whose client leaves stops waiting, and no listener is left', async () => {
    const idem = new Idempotency({ inFlight: 'coalesce' });
    const ticket = await proceed(idem);
    const connection = new EventEmitter();
    const waiting = idem.startWhileConnected(request(), connection);
    expect(connection.listenerCount('close')).toBe(1);
    connection.emit('close');
    const dup = await waiting;
    expect(dup.kind === 'answer' && dup.answer.status).toBe(409);
    expect(connection.listenerCount('close')).toBe(0);
    await ticket.finish(created);
  });

  it('startWhileConnected: a duplicate whose connection closed before the call never waits (409 at once)', async () => {
    const store = new MemoryIdempotencyStore();
    const waitForChange = vi.spyOn(store, 'waitForChange');
    const idem = new Idempotency({ inFlight: 'coalesce', store });
    const ticket = await proceed(idem);
    // Its `close` was emitted while the adapter awaited the scope function: nothing will emit it again.
    const connection = Object.assign(new EventEmitter(), { closed: true });
    const waiting = idem.startWhileConnected(request(), connection);
    await ticket.finish(created);
    const dup = await waiting;
    expect(dup.kind === 'answer' && !dup.replayed && dup.answer.status).toBe(409);
    expect(waitForChange).not.toHaveBeenCalled();
    expect(connection.listenerCount('close')).toBe(0);
    await store.close();
  });

  it('coalesces: when the first fails (5xx, not stored), one waiter takes the key over', async () => {
    const idem = new Idempotency({ inFlight: 'coalesce' });
    const ticket = await proceed(idem);
    const dup = idem.start(request());
    await ticket.finish({ status: 502, headers: {}, body: 'bad gateway' });
    const next = await dup;
    expect(next.kind).toBe('proceed');
  });

  it('coalesces with a polling store, and gives up with 409 after coalesceTimeoutMs', async () => {
    vi.useFakeTimers();
    const memory = new MemoryIdempotencyStore();
    const polling: IdempotencyStore = {
      begin: (...args) => memory.begin(...args),
      complete: (...args) => memory.complete(...args),
      release: (...args) => memory.release(...args),
      close: () => memory.close(),
    };
    const idem = new Idempotency({ store: polling, inFlight: 'coalesce', coalesceTimeoutMs: 1000 });
    const ticket = await proceed(idem);
    const dup = idem.start(request());
    await vi.advanceTimersByTimeAsync(100);
    await ticket.finish(created);
    await vi.advanceTimersByTimeAsync(300);
    const replay = await dup;
    expect(replay.kind === 'answer' && replay.replayed).toBe(true);

    const second = await proceed(idem, request({ keyHeader: 'k2' }));
    const late = idem.start(request({ keyHeader: 'k2' }));
    await vi.advanceTimersByTimeAsync(1100);
    const conflict = await late;
    expect(conflict.kind === 'answer' && conflict.answer.status).toBe(409);
    await second.abandon();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a coalescing wait ends with 409 when the client goes away', async () => {
    const idem = new Idempotency({ inFlight: 'coalesce' });
    const ticket = await proceed(idem);
    const controller = new AbortController();
    const dup = idem.start(request({ signal: controller.signal }));
    controller.abort();
    const answer = await dup;
    expect(answer.kind === 'answer' && answer.answer.status).toBe(409);
    await ticket.abandon();
  });

  it('takes a body nested 10 000 levels deep (valid JSON, 60 KB) and replays it; start never rejected', async () => {
    // Fingerprinting such a body overflowed the call stack: start() rejected, a 500 from both adapters.
    const deep = () => JSON.parse(`${'['.repeat(10_000)}1${']'.repeat(10_000)}`) as unknown;
    const idem = new Idempotency();
    const ticket = await proceed(idem, request({ body: deep() }));
    await ticket.finish(created);
    expect(await idem.start(request({ body: deep() }))).toMatchObject({ kind: 'answer', replayed: true });
    await idem.close();
  });

  it('answers 422 for the same key with a payload that differs only under a parsed `__proto__` key', async () => {
    // express.json() keeps `__proto__` as an own key; it used to vanish from the fingerprint, so the
    // second payload was replayed the first one's answer.
    const idem = new Idempotency();
    const ticket = await proceed(idem, request({ body: JSON.parse('{"__proto__":{"amount":1},"a":1}') }));
    await ticket.finish(created);
    const other = await idem.start(request({ body: JSON.parse('{"__proto__":{"amount":2},"a":1}') }));
    expect(other).toMatchObject({ kind: 'answer', replayed: false, answer: { status: 422 } });
    await idem.close();
  });

  it('scopes keys: another user reusing the key is processed as a new request, never replayed', async () => {
    const idem = new Idempotency();
    await (await proceed(idem)).finish(created);
    const other = await idem.start(request({ scope: 'user:2' }));
    expect(other.kind).toBe('proceed');
  });

  it('does not store 5xx or 429 (retryable), and frees the key', async () => {
    const idem = new Idempotency();
    for (const status of [500, 503, 429, 409, 408]) {
      const req = request({ keyHeader: `k-${status}` });
      await (await proceed(idem, req)).finish({ status, headers: {}, body: '' });
      const retry = await idem.start(req);
      expect(retry.kind).toBe('proceed');
    }
  });

  it('stores deterministic 4xx and bytes bodies (base64) by default', async () => {
    const idem = new Idempotency();
    await (await proceed(idem)).finish({
      status: 402,
      headers: { 'content-type': 'application/json' },
      body: Buffer.from('{"declined":true}'),
    });
    const replay = await idem.start(request());
    expect(replay.kind === 'answer' && replay.answer.status).toBe(402);
    expect(replay.kind === 'answer' && Buffer.from(replay.answer.body as Uint8Array).toString()).toBe(
      '{"declined":true}',
    );
    expect(isStorableStatus(402)).toBe(true);
    expect(isStorableStatus(422)).toBe(true);
    expect(isStorableStatus(500)).toBe(false);
  });

  it('does not store bodies above maxBodyBytes', async () => {
    const idem = new Idempotency({ maxBodyBytes: 4 });
    await (await proceed(idem)).finish(created);
    expect((await idem.start(request())).kind).toBe('proceed');
  });

  it('abandon frees the key; finish and abandon act once', async () => {
    const idem = new Idempotency();
    const ticket = await proceed(idem);
    await ticket.abandon();
    await ticket.finish(created);
    expect(ticket.settled).toBe(true);
    expect((await idem.start(request())).kind).toBe('proceed');
  });

  it('answers 400 problem+json for a missing key (when required) and malformed ones', async () => {
    const idem = new Idempotency();
    const missing = await idem.start(request({ keyHeader: undefined }));
    expect(missing.kind === 'answer' && missing.answer.status).toBe(400);
    expect(missing.kind === 'answer' && JSON.parse(missing.answer.body as string)).toMatchObject({
      code: 'ERR_IDEMPOTENCY_KEY_MISSING',
      header: 'Idempotency-Key',
    });
    for (const bad of ['', 'x'.repeat(256), ['a', 'b'], 7]) {
      const start = await idem.start(request({ keyHeader: bad }));
      expect(start.kind === 'answer' && start.answer.status).toBe(400);
      expect(start.kind === 'answer' && start.answer.headers['content-type']).toBe(
        'application/problem+json',
      );
    }
    expect((await new Idempotency({ required: false }).start(request({ keyHeader: undefined }))).kind).toBe(
      'pass',
    );
  });

  it('passes methods it does not apply to', async () => {
    const idem = new Idempotency();
    expect(await idem.start(request({ method: 'GET', keyHeader: '' }))).toEqual({ kind: 'pass' });
    expect(new Idempotency({ methods: ['put'] }).appliesTo('PUT')).toBe(true);
  });

  it('a failing store answers 503 + Retry-After and reports the error, never rejects', async () => {
    const onError = vi.fn();
    const broken: IdempotencyStore = {
      begin: () => Promise.reject(new Error('down')),
      complete: () => {
        throw new Error('down');
      },
      release: () => Promise.reject(new Error('down')),
      close: () => {},
    };
    const idem = new Idempotency({ store: broken, onError });
    const start = await idem.start(request());
    expect(start.kind === 'answer' && start.answer.status).toBe(503);
    expect(start.kind === 'answer' && start.answer.headers['retry-after']).toBe('1');
    expect(onError).toHaveBeenCalledTimes(1);
  });

  it('finish/abandon swallow store failures into onError', async () => {
    const onError = vi.fn();
    const memory = new MemoryIdempotencyStore();
    const flaky: IdempotencyStore = {
      begin: (...args) => memory.begin(...args),
      complete: () => {
        throw new Error('down');
      },
      release: () => Promise.reject(new Error('down')),
      close: () => {},
    };
    const idem = new Idempotency({ store: flaky, onError });
    await expect((await proceed(idem)).finish(created)).resolves.toBeUndefined();
    await expect((await proceed(idem, request({ keyHeader: 'k9' }))).abandon()).resolves.toBeUndefined();
    // complete, the best-effort release after it, and abandon's release.
    expect(onError).toHaveBeenCalledTimes(3);
  });

  it('validates options at construction', () => {
    expect(() => new Idempotency({ inFlight: 'wait' as never })).toThrow(InvalidOptionError);
    expect(() => new Idempotency({ leaseMs: 0 })).toThrow(/Expected `leaseMs`/);
    expect(() => new Idempotency({ mismatchStatus: 500 })).toThrow(/mismatchStatus/);
    expect(() => new Idempotency({ store: {} as never })).toThrow(/`store`/);
    expect(() => new Idempotency({ header: 'bad header' })).toThrow(/`header`/);
    expect(() => new Idempotency({ ttl: 1 } as never)).toThrow(/Unknown option `ttl`/);
  });

  it('validates every option before it makes its default store: a bad one throws with nothing built', () => {
    const before = made.stores;
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ header: 'bad header' }, 'header'],
      [{ methods: [] }, 'methods'],
      [{ inFlight: 'wait' }, 'inFlight'],
      [{ mismatchStatus: 200 }, 'mismatchStatus'],
      [{ retryAfterMs: -1 }, 'retryAfterMs'],
      [{ onError: 'log' }, 'onError'],
    ];
    for (const [options, option] of cases) {
      expect(() => new Idempotency(options as never)).toThrow(expect.objectContaining({ option }));
      expect(made.stores - before, `stores made before \`${option}\` threw`).toBe(0);
    }
    new Idempotency();
    expect(made.stores).toBe(before + 1);
  });

  it('coalescing never spins on a store whose waitForChange settles at once: it backs off on a timer', async () => {
    vi.useFakeTimers();
    const memory = new MemoryIdempotencyStore();
    let begins = 0;
    const spurious: IdempotencyStore = {
      begin: (...args) => {
        begins += 1;
        // Without a back-off the loop would run forever in microtasks: stop it to fail, not hang.
        if (begins > 1000) throw new Error('spinning');
        return memory.begin(...args);
      },
      complete: (...args) => memory.complete(...args),
      release: (...args) => memory.release(...args),
      waitForChange: () => Promise.resolve(),
      close: () => memory.close(),
    };
    const idem = new Idempotency({ store: spurious, inFlight: 'coalesce', coalesceTimeoutMs: 5000 });
    const ticket = await proceed(idem);
    const dup = idem.start(request());
    await vi.advanceTimersByTimeAsync(100);
    // 10 + 20 + 40 ms of back-off fit in 100 ms: a handful of begins, not thousands.
    expect(begins).toBeLessThan(12);
    await ticket.finish(created);
    await vi.advanceTimersByTimeAsync(300);
    const replay = await dup;
    expect(replay.kind === 'answer' && replay.replayed).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a closed memory store answers 503 (store failure), never lets a request through unlocked', async () => {
    const onError = vi.fn();
    const store = new MemoryIdempotencyStore();
    const idem = new Idempotency({ store, inFlight: 'coalesce', onError });
    store.close();
    const start = await idem.start(request());
    expect(start.kind === 'answer' && start.answer.status).toBe(503);
    expect(onError).toHaveBeenCalledWith(expect.any(StoreUnavailableError));
  });

  it('a store whose waitForChange rejects on abort: the coalescing timeout is a 409, not a store failure', async () => {
    vi.useFakeTimers();
    const memory = new MemoryIdempotencyStore();
    const onError = vi.fn();
    const rejecting: IdempotencyStore = {
      begin: (...args) => memory.begin(...args),
      complete: (...args) => memory.complete(...args),
      release: (...args) => memory.release(...args),
      waitForChange: (_key, signal) =>
        new Promise<void>((_resolve, reject) => {
          signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        }),
      close: () => memory.close(),
    };
    const idem = new Idempotency({ store: rejecting, inFlight: 'coalesce', coalesceTimeoutMs: 50, onError });
    const ticket = await proceed(idem);
    const dup = idem.start(request());
    await vi.advanceTimersByTimeAsync(60);
    const answer = await dup;
    expect(answer.kind === 'answer' && answer.answer.status).toBe(409);
    expect(onError).not.toHaveBeenCalled();
    await ticket.abandon();
  });

  it('frees the key when shouldStore throws or the store cannot complete: the retry runs, no 409', async () => {
    const onError = vi.fn();
    const throwing = new Idempotency({
      onError,
      shouldStore: () => {
        throw new Error('boom');
      },
    });
    await (await proceed(throwing)).finish(created);
    expect((await throwing.start(request())).kind).toBe('proceed');
    expect(onError).toHaveBeenCalledOnce();

    const memory = new MemoryIdempotencyStore();
    const failing: IdempotencyStore = {
      begin: (...args) => memory.begin(...args),
      complete: () => Promise.reject(new Error('redis down')),
      release: (...args) => memory.release(...args),
      close: () => memory.close(),
    };
    const idem = new Idempotency({ store: failing, onError });
    await (await proceed(idem)).finish(created);
    expect((await idem.start(request())).kind).toBe('proceed');
  });

  it('an onError that throws: finish and abandon still resolve, start still answers 503', async () => {
    const unhandled = vi.fn();
    process.on('unhandledRejection', unhandled);
    try {
      const memory = new MemoryIdempotencyStore();
      const failing: IdempotencyStore = {
        begin: (...args) => memory.begin(...args),
        complete: () => Promise.reject(new Error('complete failed')),
        release: () => Promise.reject(new Error('release failed')),
        close: () => memory.close(),
      };
      const onError = () => {
        throw new Error('logger broke');
      };
      const idem = new Idempotency({ store: failing, onError });
      await expect((await proceed(idem)).finish(created)).resolves.toBeUndefined();
      await expect((await proceed(idem, request({ keyHeader: 'k2' }))).abandon()).resolves.toBeUndefined();
      const down = new Idempotency({
        onError,
        store: { ...failing, begin: () => Promise.reject(new Error('begin failed')) },
      });
      const start = await down.start(request());
      expect(start.kind === 'answer' && start.answer.status).toBe(503);
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });

  it('validates the store (every method it needs), replayHeaders and methods, naming the value', () => {
    const memory = new MemoryIdempotencyStore();
    const noComplete = { begin: () => memory.begin('k', 'f', 1), release: () => {}, close: () => {} };
    expect(() => new Idempotency({ store: noComplete as never })).toThrow(/`store`/);
    expect(
      () => new Idempotency({ store: { ...noComplete, complete: () => {}, waitForChange: 5 } as never }),
    ).toThrow(/`store`/);
    expect(() => new Idempotency({ replayHeaders: ['bad header'] })).toThrow(
      /`replayHeaders`.*got `\["bad header"\]` \(array\)/,
    );
    expect(() => new Idempotency({ replayHeaders: [5] as never })).toThrow(/`replayHeaders`/);
    expect(() => new Idempotency({ methods: ['PO ST'] })).toThrow(/`methods`.*got `\["PO ST"\]`/);
    expect(() => new Idempotency({ methods: [''] })).toThrow(/`methods`/);
    expect(() => new Idempotency({ methods: [] })).toThrow(/`methods`/);
    expect(new Idempotency({ methods: ['put'], replayHeaders: ['ETag'] }).appliesTo('PUT')).toBe(true);
  });

  it('refuses replayHeaders a replay must not repeat: hop-by-hop fields and Set-Cookie, in any case', () => {
    // A stored `Transfer-Encoding: chunked` went out beside the replay's Content-Length (Node's client
    // refuses that message), and several Set-Cookie fields were stored joined into one broken cookie.
    for (const name of [
      'Transfer-Encoding',
      'connection',
      'Keep-Alive',
      'te',
      'trailer',
      'upgrade',
      'set-cookie',
    ]) {
      expect(() => new Idempotency({ replayHeaders: ['content-type', name] })).toThrow(InvalidOptionError);
    }
    expect(() => new Idempotency({ replayHeaders: ['Set-Cookie'] })).toThrow(
      /`replayHeaders` to be field names a replay may repeat: not connection, .*set-cookie .*got `\["Set-Cookie"\]`/,
    );
    expect(new Idempotency({ replayHeaders: ['content-type', 'etag', 'content-language'] })).toBeInstanceOf(
      Idempotency,
    );
  });

  it('replays no hop-by-hop field or Set-Cookie a stored record holds (written before replayHeaders refused them)', async () => {
    const store: IdempotencyStore = {
      begin: async (_key, fingerprint) => ({
        acquired: false,
        record: {
          state: 'completed',
          fingerprint,
          response: {
            status: 201,
            headers: {
              'content-type': 'application/json',
              'transfer-encoding': 'chunked',
              Connection: 'close',
              'keep-alive': 'timeout=5',
              'set-cookie': 'session=abc',
              location: '/orders/1',
            },
            body: '{"id":1}',
            encoding: 'utf8',
          },
        },
      }),
      complete: async () => {},
      release: async () => {},
      close: async () => {},
    };
    const replay = await new Idempotency({ store }).start(request());
    expect(replay.kind === 'answer' && replay.answer.headers).toEqual({
      'content-type': 'application/json',
      location: '/orders/1',
      'idempotent-replayed': 'true',
    });
  });

  it('a keyed request whose body nothing read is 415, never fingerprinted as no body; its key stays free', async () => {
    const idem = new Idempotency();
    const unread = await idem.start(request({ body: undefined, bodyUnread: true }));
    expect(unread.kind === 'answer' && unread.answer.status).toBe(415);
    expect(unread.kind === 'answer' && unread.answer.headers['content-type']).toBe(
      'application/problem+json',
    );
    expect(unread.kind === 'answer' && JSON.parse(unread.answer.body as string).code).toBe(
      'ERR_IDEMPOTENCY_BODY_UNREAD',
    );
    await (await proceed(idem, request({ body: 'read' }))).abandon();
    // The key is looked at first: a request without one is 400 (required) or passes (not required).
    const missing = await idem.start(request({ keyHeader: undefined, bodyUnread: true }));
    expect(missing.kind === 'answer' && missing.answer.status).toBe(400);
    const optional = new Idempotency({ required: false });
    expect((await optional.start(request({ keyHeader: undefined, bodyUnread: true }))).kind).toBe('pass');
    await Promise.all([idem.close(), optional.close()]);
  });

  it("unreadBody: 'accept' processes a keyed request whose body the handler reads itself; the option is checked", async () => {
    const idem = new Idempotency({ unreadBody: 'accept' });
    const upload = await proceed(idem, request({ body: undefined, bodyUnread: true }));
    await upload.finish({
      status: 201,
      headers: { 'content-type': 'application/json' },
      body: '{"ok":true}',
    });
    // The fingerprint cannot see the stream: the same key is the same upload, replayed.
    const again = await idem.start(request({ body: undefined, bodyUnread: true }));
    expect(again.kind === 'answer' && again.replayed).toBe(true);
    expect(() => new Idempotency({ unreadBody: 'ignore' as 'accept' })).toThrow(/`unreadBody`/);
    await idem.close();
  });

  it('a client gone before its scope was read, with no address for it, is not processed; with one it is', async () => {
    const idem = new Idempotency();
    const gone = { once: () => undefined, off: () => undefined, closed: true };
    const noAddress = defaultIdempotencyScope({ headers: {} });
    const left = await idem.startWhileConnected(request({ scope: noAddress }), gone);
    expect(left.kind === 'answer' && left.answer.status).toBe(400);
    expect(left.kind === 'answer' && JSON.parse(left.answer.body as string).code).toBe(
      'ERR_IDEMPOTENCY_SCOPE_UNKNOWN',
    );
    // Its key was not taken; a client still there, or one whose address was read, proceeds as before.
    await (await proceed(idem, request({ scope: noAddress }))).abandon();
    const scoped = await idem.startWhileConnected(request({ scope: 'ip:203.0.113.5' }), gone);
    expect(scoped.kind).toBe('proceed');
    await idem.close();
  });

  it('the same key on another route is 422, never that route run again nor the first route replayed', async () => {
    const idem = new Idempotency();
    const ticket = await proceed(idem);
    await ticket.finish(created);
    const other = await idem.start(request({ url: '/refunds' }));
    expect(other.kind === 'answer' && other.answer.status).toBe(422);
    expect(other.kind === 'answer' && JSON.parse(other.answer.body as string).code).toBe(
      'ERR_IDEMPOTENCY_KEY_REUSED',
    );
  });

  it('a store never sees the scope: it is hashed into the store key (an Authorization header is a credential)', async () => {
    const memory = new MemoryIdempotencyStore();
    const keys: string[] = [];
    const store: IdempotencyStore = {
      begin: (key, ...rest) => {
        keys.push(key);
        return memory.begin(key, ...rest);
      },
      complete: (...args) => memory.complete(...args),
      release: (...args) => memory.release(...args),
      close: () => memory.close(),
    };
    const idem = new Idempotency({ store });
    const scope = defaultIdempotencyScope({ ip: '1.2.3.4', headers: { authorization: 'Bearer s3cret' } });
    await (await proceed(idem, request({ scope }))).abandon();
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatch(/^[\w-]{22}:k1$/);
    expect(keys[0]).not.toContain('s3cret');
  });

  it('a body JSON cannot write (a cycle, a BigInt) rejects start with its TypeError before the key is leased', async () => {
    const idem = new Idempotency();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await expect(idem.start(request({ body: cyclic }))).rejects.toThrow(TypeError);
    await expect(idem.start(request({ body: { amount: 10n } }))).rejects.toThrow(TypeError);
    // Nothing holds the key: the next request with it runs.
    expect((await idem.start(request())).kind).toBe('proceed');
  });

  it("a coalescing duplicate's timers (its own and the memory store's) are unref'd and cleared", async () => {
    vi.useFakeTimers();
    const fakeSetTimeout = globalThis.setTimeout;
    const timers: NodeJS.Timeout[] = [];
    const spy = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((
      ...args: Parameters<typeof setTimeout>
    ) => {
      const timer = fakeSetTimeout(...args);
      timers.push(timer);
      return timer;
    }) as typeof setTimeout);
    try {
      const idem = new Idempotency({ inFlight: 'coalesce' });
      const ticket = await proceed(idem);
      const dup = idem.start(request());
      await vi.advanceTimersByTimeAsync(1);
      // The wait's deadline and the memory store's lease-expiry wake-up: a waiting duplicate holds no process.
      expect(timers).toHaveLength(2);
      expect(timers.map((timer) => timer.hasRef())).toEqual([false, false]);
      await ticket.finish(created);
      expect(await dup).toMatchObject({ kind: 'answer', replayed: true });
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      // Before afterEach puts the real timers back, so the spy never restores a fake.
      spy.mockRestore();
    }
  });

  it('close() closes the store it made, never one passed in', async () => {
    const own = new Idempotency();
    await own.close();
    // Its memory store is closed: begin fails, answered 503.
    expect(await own.start(request())).toMatchObject({ kind: 'answer', answer: { status: 503 } });
    const store = new MemoryIdempotencyStore();
    const close = vi.spyOn(store, 'close');
    await new Idempotency({ store }).close();
    expect(close).not.toHaveBeenCalled();
  });

  it('resolveIdempotencyScope: no user (undefined, null, empty) falls back to the default, never one constant', () => {
    const anonymous = { ip: '198.51.100.1', headers: {} };
    const other = { ip: '198.51.100.2', headers: {} };
    for (const none of [undefined, null, '']) {
      expect(resolveIdempotencyScope(none, anonymous)).toBe('ip:198.51.100.1');
      expect(resolveIdempotencyScope(none, other)).not.toBe(resolveIdempotencyScope(none, anonymous));
    }
    expect(resolveIdempotencyScope('alice', anonymous)).toBe('user:alice');
    expect(resolveIdempotencyScope(42, anonymous)).toBe('user:42');
    // A user id that spells a default scope stays apart from it.
    expect(resolveIdempotencyScope('ip:198.51.100.1', anonymous)).not.toBe(
      defaultIdempotencyScope(anonymous),
    );
  });

  it('resolveIdempotencyScope: an answer that is no user id throws InvalidScopeError, never one shared scope', () => {
    const anonymous = { ip: '198.51.100.1', headers: {} };
    // Written as text each of these is one scope for many users (`[object Object]`; `['a']` reads `a`).
    for (const wrong of [{ id: 'alice' }, { id: 'bob' }, ['alice'], true, Number.NaN, Infinity, 10n]) {
      expect(() => resolveIdempotencyScope(wrong, anonymous)).toThrow(InvalidScopeError);
    }
    expect(() => resolveIdempotencyScope({ id: 'alice' }, anonymous)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_SCOPE', scope: { id: 'alice' } }),
    );
    expect(() => resolveIdempotencyScope(true, anonymous)).toThrow(/got `true` \(boolean\)/);
  });

  it('defaultIdempotencyScope: the Authorization header, else the address', () => {
    expect(defaultIdempotencyScope({ ip: '1.2.3.4', headers: { authorization: 'Bearer a' } })).toBe(
      'auth:Bearer a',
    );
    expect(defaultIdempotencyScope({ ip: '1.2.3.4', headers: {} })).toBe('ip:1.2.3.4');
  });
});
