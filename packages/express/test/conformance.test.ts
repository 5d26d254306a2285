import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express5, { type Express, type NextFunction, type Request, type Response } from 'express';
// Express 4 (the peer range allows it), installed under an alias (types: ./express4.d.ts).
import express4 from 'express4';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AppSpec,
  type CaseResponse,
  type Client,
  cases,
  Holds,
  requestBody,
  requestHeaders,
  setupCases,
  unixSocketClient,
  unixSocketPath,
  watchAddressWarnings,
} from '../../http/test/conformance.js';
import { InvalidOptionError, idempotency, loadShedder, loadShedding, rateLimit } from '../src/index.js';

/** The Express majors the middleware supports, each run through the whole table. */
const versions = [
  { name: 'Express 5', express: express5 },
  { name: 'Express 4', express: express4 },
] as const;

/** Builds the conformance app the idiomatic Express way: middleware per route, a shared shedder. */
export function buildApp(spec: AppSpec, holds: Holds, express: typeof express5 = express5): Express {
  const app = express();
  app.set('trust proxy', spec.trustProxy ?? false);
  app.use((_req: Request, res: Response, next: NextFunction) => {
    res.once('close', () => {
      if (!res.writableEnded) holds.arrive('gone');
    });
    next();
  });
  const limiter =
    spec.rateLimit === undefined
      ? undefined
      : rateLimit({
          ...spec.rateLimit,
          ...(spec.rateLimitStore === undefined ? {} : { store: spec.rateLimitStore(holds) }),
          ...(spec.rateLimitKey === undefined ? {} : { key: spec.rateLimitKey(holds) }),
        });
  const shedder = spec.shedding === undefined ? undefined : loadShedder(spec.shedding);
  const idem =
    spec.idempotency === undefined
      ? undefined
      : idempotency({
          ...spec.idempotency,
          ...(spec.idempotencyStore === undefined ? {} : { store: spec.idempotencyStore(holds) }),
          ...(spec.idempotencyScope === undefined ? {} : { scope: spec.idempotencyScope(holds) }),
        });
  const sheddingFirst = spec.order !== 'idempotency-first';
  const shedding = (path: string) =>
    shedder === undefined
      ? []
      : [loadShedding({ shedder, priority: spec.routes?.[path]?.priority ?? shedder.defaultPriority })];
  const guards = (path: string) => {
    const route = spec.routes?.[path];
    const chain = [];
    if (limiter !== undefined && route?.rateLimit !== false) {
      chain.push(route?.rateLimit === undefined ? limiter : limiter.with(route.rateLimit));
    }
    if (sheddingFirst || path !== '/checkout') chain.push(...shedding(path));
    return chain;
  };
  const ok = (_req: Request, res: Response) => {
    res.json({ ok: true });
  };
  app.get('/', ...guards('/'), ok);
  app.get('/search', ...guards('/search'), ok);
  app.get('/health', ...guards('/health'), ok);
  app.get('/browse', ...guards('/browse'), async (req: Request, res: Response) => {
    if (typeof req.query.hold === 'string') await holds.wait(req.query.hold);
    res.json({ ok: true });
  });
  app.post(
    '/checkout',
    ...guards('/checkout'),
    express.json(),
    ...(idem === undefined ? [] : [idem]),
    ...(sheddingFirst ? [] : shedding('/checkout')),
    async (req: Request, res: Response, next: NextFunction) => {
      try {
        holds.checkouts += 1;
        const order = holds.checkouts;
        const body = req.body as { hold?: string; status?: number; error?: boolean; amount?: number };
        if (body.hold !== undefined) await holds.wait(body.hold);
        if (body.error === true) throw new Error('handler failed');
        res
          .status(body.status ?? 201)
          .location(`/orders/${order}`)
          .json({ order, amount: body.amount });
      } catch (error) {
        next(error);
      }
    },
  );
  return app;
}

async function listen(
  spec: AppSpec,
  holds: Holds,
  express: typeof express5,
  unixSocket = false,
): Promise<{ client: Client; close: () => Promise<void> }> {
  const path = unixSocket ? unixSocketPath() : undefined;
  const server: Server = await new Promise((resolve) => {
    const app = buildApp(spec, holds, express);
    const s =
      path === undefined ? app.listen(0, '127.0.0.1', () => resolve(s)) : app.listen(path, () => resolve(s));
  });
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  if (path !== undefined) return { client: unixSocketClient(path), close };
  const { port } = server.address() as AddressInfo;
  const client: Client = {
    async request(init) {
      const body = requestBody(init);
      const response = await fetch(`http://127.0.0.1:${port}${init.path}`, {
        method: init.method ?? 'GET',
        headers: requestHeaders(init),
        ...(body === undefined ? {} : { body }),
        ...(init.signal === undefined ? {} : { signal: init.signal }),
      });
      const headers: Record<string, string> = {};
      response.headers.forEach((value, name) => {
        headers[name] = value;
      });
      return { status: response.status, headers, body: await response.text() } satisfies CaseResponse;
    },
  };
  return { client, close };
}

for (const version of versions) {
  for (const transport of ['socket', 'unix'] as const) {
    const over = transport === 'socket' ? 'real socket' : 'Unix socket';
    describe(`@floodgate/express conformance on ${version.name} (${over})`, () => {
      let cleanup: (() => Promise<void>) | undefined;
      afterEach(async () => {
        await cleanup?.();
        cleanup = undefined;
      });

      for (const testCase of cases) {
        // A Unix socket hides every client's address: only the cases written for that run there.
        if ((testCase.unixSocket === true) !== (transport === 'unix')) continue;
        it(testCase.name, async () => {
          const holds = new Holds();
          const unwatch = watchAddressWarnings(holds);
          const { client, close } = await listen(testCase.app, holds, version.express, transport === 'unix');
          cleanup = async () => {
            unwatch();
            holds.releaseAll();
            await close();
          };
          await testCase.run(client, holds);
          expect(holds.addressWarnings).toHaveLength(testCase.addressWarnings ?? 0);
        });
      }
    });
  }
}

for (const version of versions) {
  describe(`@floodgate/express conformance on ${version.name}: set-ups refused`, () => {
    for (const testCase of setupCases) {
      it(testCase.name, () => {
        let error: unknown;
        try {
          buildApp(testCase.app, new Holds(), version.express);
        } catch (thrown) {
          error = thrown;
        }
        expect(error).toBeInstanceOf(InvalidOptionError);
        expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option: testCase.error.option });
        expect((error as Error).message).toMatch(testCase.error.message);
      });
    }
  });
}
