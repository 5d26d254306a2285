import { get as httpGet, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type BucketSpec,
  type ConsumeOptions,
  type LimiterStore,
  MemoryStore,
  type RefundOptions,
  type StoreDecision,
} from '@floodgate/token-bucket';
import express5, {
  type Express,
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
} from 'express';
import express4 from 'express4';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type ExpressRateLimitOptions,
  InvalidOptionError,
  type RateLimitMiddleware,
  rateLimit,
} from './index.js';

/** A memory store (so decisions stay synchronous) that counts the tokens it holds spent, net of refunds. */
class CountingStore extends MemoryStore {
  spent = 0;

  constructor() {
    // A clock that stands still: nothing refills during a test, so every token is accounted for.
    super({ clock: () => 0 });
  }

  override consume(key: string, cost: number, spec: BucketSpec, options?: ConsumeOptions): StoreDecision {
    const decision = super.consume(key, cost, spec, options);
    if (decision.allowed) this.spent += cost;
    return decision;
  }

  override refund(key: string, cost: number, spec: BucketSpec, options?: RefundOptions): void {
    super.refund(key, cost, spec, options);
    this.spent -= cost;
  }
}

/** The same store answering with promises, a turn later, as a store across the network does. */
function asyncStore(store: CountingStore): LimiterStore {
  return {
    consume: async (key, cost, spec) => {
      await null;
      return store.consume(key, cost, spec);
    },
    refund: async (key, cost, spec) => {
      await null;
      store.refund(key, cost, spec);
    },
    close: () => {},
  };
}

interface Stores {
  readonly a: CountingStore;
  readonly b: CountingStore;
}

interface Row {
  readonly name: string;
  /** The limiter's options; `{ limit: 10, store: a }` unless given. */
  readonly limiter?: (stores: Stores) => ExpressRateLimitOptions;
  /** Whether `app.use(limiter)` runs in front of every route. */
  readonly inFront?: false;
  /** What `GET /r` runs before its handler. */
  readonly route: (limiter: RateLimitMiddleware, stores: Stores) => RequestHandler[];
  /** `GET /plain` requests (behind the limiter alone) sent first, to take tokens. */
  readonly before?: number;
  /** The status the handler of `GET /r` answers. */
  readonly handlerStatus?: number;
  readonly status: number;
  /** Tokens `GET /r` left spent in each store, net of everything given back. */
  readonly spent: { readonly a: number; readonly b?: number };
  /** The `RateLimit` field of the answer (`undefined`: none). */
  readonly ratelimit?: string | undefined;
  /** Anything else to check on the answer. */
  readonly check?: (res: request.Response) => void;
}

const rows: readonly Row[] = [
  {
    name: 'a variant of cost 5 behind the limiter spends 5, not 6, and the fields are its own',
    route: (limiter) => [limiter.with({ cost: 5 })],
    status: 200,
    spent: { a: 5 },
    ratelimit: '"10-in-60s";r=5;t=30',
  },
  {
    name: 'a variant cheaper than the limiter: the difference goes back',
    limiter: ({ a }) => ({ limit: 10, store: a, cost: 2 }),
    route: (limiter) => [limiter.with({ cost: 1 })],
    status: 200,
    spent: { a: 1 },
    ratelimit: '"10-in-60s";r=9;t=6',
  },
  {
    name: 'a variant that skips: what the limiter took goes back, and no fields',
    route: (limiter) => [limiter.with({ skip: () => true })],
    status: 200,
    spent: { a: 0 },
    ratelimit: undefined,
  },
  {
    name: 'a variant with an allow list: what the limiter took goes back, and no fields',
    route: (limiter) => [limiter.with({ allowList: () => true })],
    status: 200,
    spent: { a: 0 },
    ratelimit: undefined,
  },
  {
    name: 'a variant that refuses: what the limiter took goes back, the refusal is the variant',
    before: 7,
    route: (limiter) => [limiter.with({ cost: 5, detail: 'search is dear' })],
    status: 429,
    spent: { a: 0 },
    ratelimit: '"10-in-60s";r=3;t=42',
    check: (res) => {
      expect(res.headers['retry-after']).toBe('12');
      expect(res.body).toMatchObject({ code: 'ERR_RATE_LIMITED', detail: 'search is dear' });
    },
  },
  {
    name: 'a dry-run variant over the limit: served, and spends what it would have (nothing)',
    before: 7,
    route: (limiter) => [limiter.with({ cost: 5, dryRun: true })],
    status: 200,
    spent: { a: 0 },
    ratelimit: '"10-in-60s";r=3;t=42',
  },
  {
    name: 'dry run on both: counted once, at the variant cost',
    limiter: ({ a }) => ({ limit: 10, store: a, dryRun: true }),
    route: (limiter) => [limiter.with({ cost: 5 })],
    status: 200,
    spent: { a: 5 },
    ratelimit: '"10-in-60s";r=5;t=30',
  },
  {
    name: 'dry run on the limiter alone: the variant enforces, and the limiter keeps nothing',
    limiter: ({ a }) => ({ limit: 10, store: a, dryRun: true }),
    before: 7,
    route: (limiter) => [limiter.with({ cost: 5, dryRun: false })],
    status: 429,
    spent: { a: 0 },
    ratelimit: '"10-in-60s";r=3;t=42',
  },
  {
    name: 'a cost function',
    route: (limiter) => [limiter.with({ cost: () => 4 })],
    status: 200,
    spent: { a: 4 },
    ratelimit: '"10-in-60s";r=6;t=24',
  },
  {
    name: 'a cost function that throws: the error handler, and nothing spent',
    route: (limiter) => [
      limiter.with({
        cost: () => {
          throw new Error('no cost');
        },
      }),
    ],
    status: 500,
    spent: { a: 0 },
    check: (res) => expect(res.body).toEqual({ error: 'no cost' }),
  },
  {
    name: 'an async store: counted once, at the variant cost',
    limiter: ({ a }) => ({ limit: 10, store: asyncStore(a) }),
    route: (limiter) => [limiter.with({ cost: 5 })],
    status: 200,
    spent: { a: 5 },
    ratelimit: '"10-in-60s";r=5;t=30',
  },
  {
    name: 'an async store, the variant refuses: nothing spent',
    limiter: ({ a }) => ({ limit: 10, store: asyncStore(a) }),
    before: 7,
    route: (limiter) => [limiter.with({ cost: 5 })],
    status: 429,
    spent: { a: 0 },
  },
  {
    name: 'several policies: each counts the request once, at the variant cost',
    limiter: ({ a, b }) => ({
      policies: [
        { name: 'client', limit: 10, store: a },
        { name: 'all', limit: 20, key: () => 'all', store: b },
      ],
    }),
    route: (limiter) => [limiter.with({ cost: 5 })],
    status: 200,
    spent: { a: 5, b: 5 },
    ratelimit: '"client";r=5;t=30, "all";r=15;t=15',
  },
  {
    name: 'several policies, the second refuses the variant: neither keeps anything',
    limiter: ({ a, b }) => ({
      policies: [
        { name: 'client', limit: 10, store: a },
        { name: 'all', limit: 8, key: () => 'all', store: b },
      ],
    }),
    before: 5,
    route: (limiter) => [limiter.with({ cost: 5 })],
    status: 429,
    spent: { a: 0, b: 0 },
  },
  {
    name: 'a variant of a variant: the last one reached counts the request',
    route: (limiter) => {
      const search = limiter.with({ cost: 3 });
      return [search, search.with({ cost: 5 })];
    },
    status: 200,
    spent: { a: 5 },
    ratelimit: '"10-in-60s";r=5;t=30',
  },
  {
    name: 'the limiter reached after its variant lets the request by',
    inFront: false,
    route: (limiter) => [limiter.with({ cost: 5 }), limiter],
    status: 200,
    spent: { a: 5 },
    ratelimit: '"10-in-60s";r=5;t=30',
  },
  {
    name: 'a variant with buckets of its own adds to the limiter (two limits stacked)',
    route: (limiter, { b }) => [limiter.with({ name: 'strict', limit: 3, store: b })],
    status: 200,
    spent: { a: 1, b: 1 },
    ratelimit: '"strict";r=2;t=20',
  },
  {
    name: 'a variant with a key of its own adds to the limiter',
    route: (limiter) => [limiter.with({ key: () => 'search' })],
    status: 200,
    spent: { a: 2 },
  },
  {
    name: 'the limiter reached again (mounted twice) lets the request by: the variant counts it once',
    route: (limiter) => [limiter, limiter.with({ cost: 5 })],
    status: 200,
    spent: { a: 5 },
    ratelimit: '"10-in-60s";r=5;t=30',
  },
  {
    name: 'the limiter mounted twice, skipFailedRequests, no variant on the route: a failure gives back all',
    limiter: ({ a }) => ({ limit: 10, store: a, skipFailedRequests: true }),
    route: (limiter) => {
      limiter.with({ cost: 5 });
      return [limiter];
    },
    handlerStatus: 500,
    status: 500,
    spent: { a: 0 },
  },
  {
    name: "a variant that skips leaves another limiter's fields on the answer",
    route: (limiter, { b }) => [
      rateLimit({ name: 'other', limit: 20, store: b, legacyHeaders: true }),
      limiter.with({ skip: () => true }),
    ],
    status: 200,
    spent: { a: 0, b: 1 },
    ratelimit: '"other";r=19;t=3',
    check: (res) => {
      expect(res.headers['ratelimit-policy']).toBe('"other";q=20;w=60');
      expect(res.headers['x-ratelimit-remaining']).toBe('19');
    },
  },
  {
    name: 'two limiters, each with a variant on the route: each family counts the request once',
    route: (limiter, { b }) => {
      const other = rateLimit({ name: 'other', limit: 20, store: b });
      return [other, limiter.with({ cost: 5 }), other.with({ cost: 3 })];
    },
    status: 200,
    spent: { a: 5, b: 3 },
    // The last limiter reached writes the field, as two limiters without variants do.
    ratelimit: '"other";r=17;t=9',
  },
  {
    name: 'a refusal carries none of the draft-6 and legacy fields the limiter in front set',
    limiter: ({ a }) => ({ limit: 10, store: a, standardHeaders: 'draft-6', legacyHeaders: true }),
    before: 7,
    route: (limiter) => [limiter.with({ cost: 5, standardHeaders: 'draft-8', legacyHeaders: false })],
    status: 429,
    spent: { a: 0 },
    ratelimit: '"10-in-60s";r=3;t=42',
    check: (res) => {
      const fields = Object.keys(res.headers).filter((name) => name.includes('ratelimit'));
      expect(fields.sort()).toEqual(['ratelimit', 'ratelimit-policy']);
      expect(res.headers['retry-after']).toBe('12');
    },
  },
  {
    name: 'the limiter alone, on a route without a variant, in a family that has one',
    route: (limiter) => {
      limiter.with({ cost: 5 });
      return [];
    },
    status: 200,
    spent: { a: 1 },
    ratelimit: '"10-in-60s";r=9;t=6',
  },
  {
    name: 'legacy fields the limiter set come off when the variant sends none',
    limiter: ({ a }) => ({ limit: 10, store: a, legacyHeaders: true }),
    route: (limiter) => [limiter.with({ cost: 5, legacyHeaders: false })],
    status: 200,
    spent: { a: 5 },
    ratelimit: '"10-in-60s";r=5;t=30',
    check: (res) => expect(res.headers['x-ratelimit-limit']).toBeUndefined(),
  },
  {
    name: 'skipFailedRequests: a successful answer keeps the variant count',
    limiter: ({ a }) => ({ limit: 10, store: a, skipFailedRequests: true }),
    route: (limiter) => [limiter.with({ cost: 5 })],
    status: 200,
    spent: { a: 5 },
  },
  {
    name: 'skipFailedRequests: a failed answer gives back the variant count once, nothing more',
    limiter: ({ a }) => ({ limit: 10, store: a, skipFailedRequests: true }),
    route: (limiter) => [limiter.with({ cost: 5 })],
    handlerStatus: 500,
    status: 500,
    spent: { a: 0 },
  },
  {
    name: 'skipFailedRequests on an async store: a failed answer gives back once',
    limiter: ({ a }) => ({ limit: 10, store: asyncStore(a), skipFailedRequests: true }),
    route: (limiter) => [limiter.with({ cost: 5 })],
    handlerStatus: 500,
    status: 500,
    spent: { a: 0 },
  },
  {
    name: 'skipSuccessfulRequests set on the variant alone settles the variant count',
    route: (limiter) => [limiter.with({ cost: 5, skipSuccessfulRequests: true })],
    status: 200,
    spent: { a: 0 },
  },
];

const versions = [
  { name: 'Express 5', express: express5 },
  { name: 'Express 4', express: express4 },
] as const;

function build(row: Row, stores: Stores, express: typeof express5): Express {
  const limiter = rateLimit(row.limiter?.(stores) ?? { limit: 10, store: stores.a });
  const app = express();
  if (row.inFront !== false) app.use(limiter);
  app.get('/plain', (_req: Request, res: Response) => {
    res.json({ ok: true });
  });
  app.get('/r', ...row.route(limiter, stores), (_req: Request, res: Response) => {
    res.status(row.handlerStatus ?? 200).json({ ok: true });
  });
  app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json({ error: error.message });
  });
  return app;
}

/** Lets refunds an async store was asked for (after the answer, on `close`) land. */
async function settled(): Promise<void> {
  for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

for (const version of versions) {
  describe(`rateLimit variants on ${version.name}: a request is counted once per family of buckets`, () => {
    for (const row of rows) {
      it(row.name, async () => {
        const stores = { a: new CountingStore(), b: new CountingStore() };
        const app = build(row, stores, version.express);
        for (let i = 0; i < (row.before ?? 0); i += 1) {
          expect((await request(app).get('/plain')).status).toBe(200);
        }
        await settled();
        const before = { a: stores.a.spent, b: stores.b.spent };
        const res = await request(app).get('/r');
        await settled();
        expect(res.status).toBe(row.status);
        expect({ a: stores.a.spent - before.a, b: stores.b.spent - before.b }).toEqual({
          b: 0,
          ...row.spent,
        });
        if ('ratelimit' in row) expect(res.headers.ratelimit).toBe(row.ratelimit);
        row.check?.(res);
      });
    }
  });
}

for (const version of versions) {
  it(`rateLimit variants on ${version.name}: nested routers, the limiter on the app and a router, count once`, async () => {
    const a = new CountingStore();
    const limiter = rateLimit({ limit: 10, store: a, skipFailedRequests: true });
    const search = limiter.with({ cost: 3 });
    const app = version.express();
    const api = version.express.Router();
    const inner = version.express.Router();
    app.use(limiter);
    api.use(limiter);
    // The variant on the inner router and on its route: the request meets it twice.
    inner.use(search);
    inner.get('/search', search, (_req: Request, res: Response) => {
      res.json({ ok: true });
    });
    inner.get('/broken', search, () => {
      throw new Error('broken');
    });
    api.use('/v1', inner);
    app.use('/api', api);
    app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).json({ error: error.message });
    });
    const found = await request(app).get('/api/v1/search');
    await settled();
    expect(found.status).toBe(200);
    expect(found.headers.ratelimit).toBe('"10-in-60s";r=7;t=18');
    expect(a.spent).toBe(3);
    // The handler throws: skipFailedRequests gives the one count back, once.
    const broken = await request(app).get('/api/v1/broken');
    await settled();
    expect(broken.status).toBe(500);
    expect(a.spent).toBe(3);
  });
}

describe('rateLimit variants: a client that leaves', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  for (const version of versions) {
    for (const skipFailedRequests of [true, false]) {
      it(`${version.name}, gone while the handler runs, skipFailedRequests ${skipFailedRequests}: the variant's count is settled once`, async () => {
        const counting = new CountingStore();
        const limiter = rateLimit({ limit: 10, store: asyncStore(counting), skipFailedRequests });
        const app = version.express();
        app.use(limiter);
        let reached!: () => void;
        const handled = new Promise<void>((resolve) => {
          reached = resolve;
        });
        let gone!: () => void;
        const closed = new Promise<void>((resolve) => {
          gone = resolve;
        });
        // The handler never answers: the client leaves first.
        app.get('/r', limiter.with({ cost: 5 }), (_req: Request, res: Response) => {
          res.once('close', gone);
          reached();
        });
        const server = app.listen(0, '127.0.0.1');
        servers.push(server);
        await new Promise((resolve) => server.once('listening', resolve));
        const client = httpGet(`http://127.0.0.1:${(server.address() as AddressInfo).port}/r`);
        client.on('error', () => {});
        await handled;
        client.destroy();
        await closed;
        await settled();
        // A connection that closed before the answer ended is a failure: given back once (0, never -5),
        // or kept at the variant's cost alone without skipFailedRequests.
        expect(counting.spent).toBe(skipFailedRequests ? 0 : 5);
      });
    }
  }

  it('gone before the variant runs: the count in front is settled once, never given back twice', async () => {
    const counting = new CountingStore();
    let asked!: () => void;
    const consumeAsked = new Promise<void>((resolve) => {
      asked = resolve;
    });
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let first = true;
    const store: LimiterStore = {
      consume: async (key, cost, spec) => {
        if (first) {
          // The limiter in front waits on its store while the client goes away.
          first = false;
          asked();
          await held;
        }
        return counting.consume(key, cost, spec);
      },
      refund: async (key, cost, spec) => counting.refund(key, cost, spec),
      close: () => {},
    };
    const limiter = rateLimit({ limit: 10, store, skipFailedRequests: true });
    const app = express5();
    let gone!: () => void;
    const closed = new Promise<void>((resolve) => {
      gone = resolve;
    });
    app.use((_req: Request, res: Response, next: NextFunction) => {
      res.once('close', gone);
      next();
    });
    app.use(limiter);
    let reached!: () => void;
    const handled = new Promise<void>((resolve) => {
      reached = resolve;
    });
    app.get('/r', limiter.with({ cost: 5 }), (_req: Request, res: Response) => {
      reached();
      res.end();
    });
    const server = app.listen(0, '127.0.0.1');
    servers.push(server);
    await new Promise((resolve) => server.once('listening', resolve));
    const client = httpGet(`http://127.0.0.1:${(server.address() as AddressInfo).port}/r`);
    client.on('error', () => {});
    await consumeAsked;
    client.destroy();
    await closed;
    release();
    await handled;
    await settled();
    // The limiter in front gave its token back when the connection closed (a failure); the variant
    // found the response closed and left the count as it was.
    expect(counting.spent).toBe(0);
  });
});

describe('rateLimit variants: concurrent requests on a store that answers out of order', () => {
  it('counts each request once, at the variant cost, whatever order the decisions come back in', async () => {
    const counting = new CountingStore();
    const held: Array<() => void> = [];
    const store: LimiterStore = {
      // Every decision waits until the test lets the whole round go, last asked first answered.
      consume: (key, cost, spec) =>
        new Promise((resolve) => held.push(() => resolve(counting.consume(key, cost, spec)))),
      refund: async (key, cost, spec) => counting.refund(key, cost, spec),
      close: () => {},
    };
    const limiter = rateLimit({ limit: 10, store });
    const app = express5();
    app.use(limiter);
    app.get('/r', limiter.with({ cost: 2 }), (_req: Request, res: Response) => {
      res.json({ ok: true });
    });
    // `then` sends each request now (supertest sends on the first `then`).
    const answers = Array.from({ length: 6 }, () =>
      request(app)
        .get('/r')
        .then((res) => res.status),
    );
    // Two rounds: the limiter in front for all six, then the variant for all six.
    for (let round = 0; round < 2; round += 1) {
      while (held.length < 6) await new Promise((resolve) => setImmediate(resolve));
      await settled();
      for (const release of held.splice(0).reverse()) release();
    }
    const statuses = await Promise.all(answers);
    await settled();
    // 10 tokens at 2 a request: five served, one refused, and the limiter in front kept nothing.
    expect(statuses.filter((status) => status === 200)).toHaveLength(5);
    expect(statuses.filter((status) => status === 429)).toHaveLength(1);
    expect(counting.spent).toBe(10);
  });
});

describe('rateLimit variants: a store that fails', () => {
  /** A store that fails the consumes `fails` picks (by cost: 1 is the limiter in front, 5 the variant). */
  function flaky(fails: (cost: number) => boolean) {
    const counting = new CountingStore();
    const refunds: number[] = [];
    const store: LimiterStore = {
      consume: async (key, cost, spec) => {
        if (fails(cost)) throw new Error('store down');
        return counting.consume(key, cost, spec);
      },
      refund: async (key, cost, spec) => {
        refunds.push(cost);
        counting.refund(key, cost, spec);
      },
      close: () => {},
    };
    return { counting, refunds, store };
  }

  for (const version of versions) {
    for (const passOnStoreError of [false, true]) {
      it(`${version.name}, on the variant, passOnStoreError ${passOnStoreError}: the limiter's token goes back`, async () => {
        const { counting, refunds, store } = flaky((cost) => cost === 5);
        const errors: unknown[] = [];
        const limiter = rateLimit({ limit: 10, store, passOnStoreError, onError: (e) => errors.push(e) });
        const app = version.express();
        app.use(limiter);
        app.get('/r', limiter.with({ cost: 5 }), (_req: Request, res: Response) => {
          res.json({ ok: true });
        });
        const res = await request(app).get('/r');
        await settled();
        expect(res.status).toBe(passOnStoreError ? 200 : 503);
        expect(res.headers.ratelimit).toBeUndefined();
        expect({ spent: counting.spent, refunds, errors: errors.length }).toEqual({
          spent: 0,
          refunds: [1],
          errors: 1,
        });
      });

      it(`${version.name}, on the limiter in front, passOnStoreError ${passOnStoreError}: nothing is given back to it`, async () => {
        const { counting, refunds, store } = flaky((cost) => cost === 1);
        const limiter = rateLimit({ limit: 10, store, passOnStoreError, onError: () => {} });
        const app = version.express();
        app.use(limiter);
        app.get('/r', limiter.with({ cost: 5 }), (_req: Request, res: Response) => {
          res.json({ ok: true });
        });
        const res = await request(app).get('/r');
        await settled();
        // Failing closed, the limiter in front answers 503; passing, the variant counts the request.
        expect(res.status).toBe(passOnStoreError ? 200 : 503);
        expect({ spent: counting.spent, refunds }).toEqual({ spent: passOnStoreError ? 5 : 0, refunds: [] });
      });
    }
  }
});

describe('rateLimit variants: what a limiter without one pays', () => {
  /** Runs a middleware on a request of its own (synchronous: memory store); answers it and what `next` got. */
  function call(middleware: RequestHandler): { req: object; next: unknown[][] } {
    const req = { ip: '192.0.2.1', headers: {} } as unknown as IncomingMessage;
    const res = { headersSent: false, setHeader: () => res } as unknown as ServerResponse;
    // Plain functions, not vi.fn(): a spy keeps its own state in WeakMaps, which would blur the count.
    const next: unknown[][] = [];
    middleware(req as Request, res as Response, (...args: unknown[]) => next.push(args));
    return { req, next };
  }

  /** WeakMap reads and writes whose key is one of `requests`, while `run` runs. */
  function lookUps(run: () => object[]): number {
    const get = vi.spyOn(WeakMap.prototype, 'get');
    const set = vi.spyOn(WeakMap.prototype, 'set');
    const has = vi.spyOn(WeakMap.prototype, 'has');
    try {
      const requests = run();
      // Counted before the spies are restored, which clears what they saw.
      return [get, set, has].reduce(
        (sum, spy) => sum + spy.mock.calls.filter(([key]) => requests.includes(key as object)).length,
        0,
      );
    } finally {
      get.mockRestore();
      set.mockRestore();
      has.mockRestore();
    }
  }

  it('a limiter that never had a same-bucket variant never looks a request up', () => {
    const limiter = rateLimit({ limit: 10 });
    // Buckets of its own: a family of its own, which leaves the limiter's alone.
    const strict = limiter.with({ name: 'strict', limit: 2 });
    const plain = lookUps(() => {
      const first = call(limiter);
      const second = call(strict);
      expect([first.next, second.next]).toEqual([[[]], [[]]]);
      return [first.req, second.req];
    });
    expect(plain).toBe(0);
    // Once a variant spends from its buckets, the limiter keeps what it counted: the same spies see it.
    limiter.with({ cost: 2 });
    const shared = lookUps(() => {
      const third = call(limiter);
      expect(third.next).toEqual([[]]);
      return [third.req];
    });
    expect(shared).toBeGreaterThanOrEqual(2);
  });

  it('checks a variant override before the family changes: a bad one leaves the limiter on its plain path', () => {
    const limiter = rateLimit({ limit: 10 });
    expect(() => limiter.with({ cost: 0 })).toThrow(InvalidOptionError);
    expect(() => limiter.with({ cost: 0 })).toThrow(/`cost`/);
    expect(lookUps(() => [call(limiter).req])).toBe(0);
  });
});
