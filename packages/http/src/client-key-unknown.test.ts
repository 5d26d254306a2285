import { afterEach, beforeEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import { addressKey, byAddress, byUser, type KeyableRequest } from './client-key.js';
import { ClientAddressUnknownError } from './client-key-unknown.js';
import { FloodgateHttpError } from './errors.js';
import { defaultIdempotencyScope, Idempotency, resolveIdempotencyScope } from './idempotency.js';
import { RateLimit } from './rate-limit.js';

interface Req extends KeyableRequest {
  readonly path?: string;
}

/** A request on an open connection that the server cannot see the address of (a Unix socket). */
const unseen = (headers: Record<string, string> = {}): Req => ({ headers, socket: { destroyed: false } });
/** A request whose client has gone: Node forgot its peer along with the socket. */
const gone = (): Req => ({ headers: {}, socket: { destroyed: true } });
const seen = (ip: string): Req => ({ ip, headers: {}, socket: { destroyed: false } });
const userOf = (req: Req) => {
  const user = req.headers['x-user'];
  return typeof user === 'string' ? user : undefined;
};

let warnings: MockInstance<typeof process.emitWarning>;
beforeEach(() => {
  warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
});
afterEach(() => {
  warnings.mockRestore();
});

/** The ClientAddressUnknownErrors emitted so far. */
const emitted = () =>
  warnings.mock.calls.map(([warning]) => warning).filter((w) => w instanceof ClientAddressUnknownError);

const decide = (limit: RateLimit<Req>, request: Req) =>
  limit.check(request) as Exclude<ReturnType<RateLimit<Req>['check']>, Promise<unknown>>;

describe('ClientAddressUnknownError', () => {
  it('is a FloodgateHttpError with a stable code, naming the feature and how to fix it', () => {
    const error = new ClientAddressUnknownError('rate-limit');
    expect(error).toBeInstanceOf(FloodgateHttpError);
    expect(error).toMatchObject({
      name: 'ClientAddressUnknownError',
      code: 'ERR_CLIENT_ADDRESS_UNKNOWN',
      feature: 'rate-limit',
    });
    expect(error.message).toMatch(/Unix socket/);
    expect(error.message).toMatch(/app\.set\('trust proxy', 1\)/);
    expect(error.message).toMatch(/`key`/);
    expect(new ClientAddressUnknownError('idempotency').message).toMatch(/`scope`/);
  });
});

describe('the rate limit without a client address', () => {
  it('warns once per limiter, the first time a request on an open connection has none; all share one bucket', () => {
    const limit = new RateLimit<Req>({ limit: 2 });
    expect(decide(limit, seen('203.0.113.1')).action).toBe('allow');
    expect(emitted()).toHaveLength(0);
    expect(decide(limit, unseen()).action).toBe('allow');
    expect(emitted()).toHaveLength(1);
    expect(emitted()[0]).toMatchObject({ code: 'ERR_CLIENT_ADDRESS_UNKNOWN', feature: 'rate-limit' });
    expect(decide(limit, unseen()).action).toBe('allow');
    // A third unseen client finds the bucket the other two emptied.
    const third = decide(limit, unseen());
    expect(third.action).toBe('deny');
    expect(third.outcomes[0]?.key).toBe('unknown');
    expect(emitted()).toHaveLength(1);
    // Another limiter warns of its own.
    decide(new RateLimit<Req>({ limit: 2 }), unseen());
    expect(emitted()).toHaveLength(2);
  });

  it('a limit derived from it (a route override) shares its one warning', () => {
    const limit = new RateLimit<Req>({ limit: 5 });
    decide(limit, unseen());
    decide(limit.derive({ cost: 2 }), unseen());
    decide(limit.derive({ name: 'own', limit: 3 }), unseen());
    expect(emitted()).toHaveLength(1);
  });

  it('says nothing of a client that has gone, nor of a request that tells nothing of its connection', () => {
    const limit = new RateLimit<Req>({ limit: 2 });
    expect(decide(limit, gone()).outcomes[0]?.key).toBe('unknown');
    expect(decide(limit, { headers: {} }).outcomes[0]?.key).toBe('unknown');
    // An empty address is what a client wrote into X-Forwarded-For, not a server that cannot see.
    expect(decide(limit, { ip: '', headers: {}, socket: { destroyed: false } }).outcomes[0]?.key).toBe(
      'unknown',
    );
    expect(emitted()).toHaveLength(0);
  });

  it('warns on the general path too where the address keys the bucket (a key generator that answers nothing)', async () => {
    const limit = new RateLimit<Req>({
      limit: 5,
      key: byUser(userOf),
      skip: async (req) => req.path === '/health',
    });
    await limit.check(unseen({ 'x-user': 'alice' }));
    expect(emitted()).toHaveLength(0);
    const anonymous = await limit.check(unseen());
    expect(anonymous.outcomes[0]?.key).toBe('unknown');
    expect(emitted()).toHaveLength(1);
  });

  it('with an allow list, warns only once the address keys a bucket, not for a policy whose own key answered', () => {
    const limit = new RateLimit<Req>({
      policies: [{ name: 'per-user', limit: 5, key: userOf }],
      allowList: ['198.51.100.7'],
    });
    decide(limit, unseen({ 'x-user': 'alice' }));
    expect(emitted()).toHaveLength(0);
    expect(decide(limit, unseen()).outcomes[0]?.key).toBe('unknown');
    expect(emitted()).toHaveLength(1);
  });

  it('byAddress() keys `unknown` and warns once per generator, never for a gone client', () => {
    const key = byAddress();
    expect(key(gone())).toBe('unknown');
    expect(emitted()).toHaveLength(0);
    expect(key(unseen())).toBe('unknown');
    expect(key(unseen())).toBe('unknown');
    expect(emitted()).toHaveLength(1);
    expect(key(seen('::ffff:203.0.113.9'))).toBe('203.0.113.9');
    expect(byAddress({ ipv6Subnet: 64 })(seen('2001:db8:1:2:3::1'))).toBe('2001:db8:1:2::/64');
  });

  it('addressKey itself stays silent and keys a missing or empty address `unknown`', () => {
    expect(addressKey(undefined)).toBe('unknown');
    expect(addressKey('')).toBe('unknown');
    expect(emitted()).toHaveLength(0);
  });
});

describe('idempotency without a client address', () => {
  const keyed = (scope: string, signal?: AbortSignal) => ({
    method: 'POST',
    url: '/checkout',
    keyHeader: '"order-1"',
    body: { amount: 1 },
    scope,
    ...(signal === undefined ? {} : { signal }),
  });

  it('an open connection: 500 ERR_CLIENT_ADDRESS_UNKNOWN, the store never asked, warned once per instance', async () => {
    const idem = new Idempotency();
    const begin = vi.spyOn(idem.store, 'begin');
    const scope = defaultIdempotencyScope(unseen());
    for (const _ of [1, 2]) {
      const start = await idem.start(keyed(scope));
      expect(start.kind === 'answer' && start.answer.status).toBe(500);
      expect(start.kind === 'answer' && JSON.parse(start.answer.body as string).code).toBe(
        'ERR_CLIENT_ADDRESS_UNKNOWN',
      );
    }
    expect(begin).not.toHaveBeenCalled();
    expect(emitted()).toHaveLength(1);
    expect(emitted()[0]).toMatchObject({ feature: 'idempotency' });
    // A scope function that knows no user falls back to the same refusal.
    const fallback = await idem.start(keyed(resolveIdempotencyScope(undefined, unseen())));
    expect(fallback.kind === 'answer' && fallback.answer.status).toBe(500);
    expect(emitted()).toHaveLength(1);
    await new Idempotency().start(keyed(scope));
    expect(emitted()).toHaveLength(2);
    await idem.close();
  });

  it('a request without a key (not required) passes, with no warning: nothing would be stored', async () => {
    const idem = new Idempotency({ required: false });
    const start = await idem.start({ ...keyed(defaultIdempotencyScope(unseen())), keyHeader: undefined });
    expect(start.kind).toBe('pass');
    expect(emitted()).toHaveLength(0);
    await idem.close();
  });

  it('an Authorization header or a user scope tells the client, address or not', async () => {
    const idem = new Idempotency();
    const auth = await idem.start(keyed(defaultIdempotencyScope(unseen({ authorization: 'Bearer a' }))));
    expect(auth.kind).toBe('proceed');
    const user = await idem.start(keyed(resolveIdempotencyScope('alice', unseen())));
    expect(user.kind).toBe('proceed');
    expect(emitted()).toHaveLength(0);
    await idem.close();
  });

  it('a gone client keeps the scope it had (ip:unknown): not run once it left, no warning', async () => {
    const idem = new Idempotency();
    const scope = defaultIdempotencyScope(gone());
    expect(scope).toBe('ip:unknown');
    const left = await idem.start(keyed(scope, AbortSignal.abort()));
    expect(left.kind === 'answer' && left.answer.status).toBe(400);
    expect(emitted()).toHaveLength(0);
    await idem.close();
  });

  it('the unseen scope is no scope an address, a credential or a user can spell', () => {
    const scope = defaultIdempotencyScope(unseen());
    expect(scope).not.toMatch(/^(ip|auth|user):/);
    // trust proxy reads `X-Forwarded-For: unknown` as the address `unknown`: that is a scope, not this one.
    expect(defaultIdempotencyScope(seen('unknown'))).not.toBe(scope);
  });
});
