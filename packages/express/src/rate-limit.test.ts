import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runInNewContext } from 'node:vm';
import type { LimiterStore, StoreDecision } from '@floodgate/token-bucket';
import { memoryStore } from '@floodgate/token-bucket';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { InvalidOptionError, rateLimit } from './index.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

function appWith(...middleware: express.RequestHandler[]): Express {
  const app = express();
  app.get('/', ...middleware, (_req: Request, res: Response) => {
    res.json({ ok: true });
  });
  // A JSON error handler, so the tests see what reached Express's error path.
  app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json({ error: error.message });
  });
  return app;
}

describe('rateLimit (express)', () => {
  it('is a named middleware with its core, validated at set-up', () => {
    const limiter = rateLimit({ limit: 5 });
    expect(limiter.name).toBe('floodgateRateLimit');
    expect(limiter.core.headers.standardHeaders).toBe('draft-8');
    expect(() => rateLimit({ limit: 5, windowMS: 1 } as never)).toThrow(InvalidOptionError);
    expect(() => rateLimit({} as never)).toThrow(/Expected `limit`/);
  });

  it('a throwing key generator reaches the error handler (no hang, no unhandled rejection)', async () => {
    const sync = rateLimit({
      limit: 5,
      key: () => {
        throw new Error('sync key failure');
      },
    });
    const res = await request(appWith(sync)).get('/');
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'sync key failure' });
    const async = rateLimit({ limit: 5, key: async () => Promise.reject(new Error('async key failure')) });
    const res2 = await request(appWith(async)).get('/');
    expect(res2.body).toEqual({ error: 'async key failure' });
  });

  it('an unavailable async store answers 503 problem+json with Retry-After, or passes with passOnStoreError', async () => {
    const failing: LimiterStore = {
      consume: (): Promise<StoreDecision> => Promise.reject(new Error('redis down')),
      refund: () => {},
      close: () => {},
    };
    const onError = vi.fn();
    const res = await request(appWith(rateLimit({ limit: 5, store: failing, onError }))).get('/');
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toBe('application/problem+json');
    expect(res.headers['retry-after']).toBe('1');
    expect(res.body.code).toBe('ERR_STORE_UNAVAILABLE');
    expect(onError).toHaveBeenCalledOnce();
    const open = await request(appWith(rateLimit({ limit: 5, store: failing, passOnStoreError: true }))).get(
      '/',
    );
    expect(open.status).toBe(200);
    expect(open.headers.ratelimit).toBeUndefined();
  });

  it('with(): a route override with its own policy counts in its own buckets', async () => {
    const limiter = rateLimit({ limit: 5 });
    const strict = limiter.with({ name: 'strict', limit: 1 });
    const app = appWith(limiter);
    app.get('/strict', strict, (_req: Request, res: Response) => {
      res.end('ok');
    });
    const server = app.listen(0, '127.0.0.1');
    servers.push(server);
    await new Promise((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    expect((await fetch(`${base}/strict`)).status).toBe(200);
    const refused = await fetch(`${base}/strict`);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('ratelimit')).toBe('"strict";r=0;t=60');
    expect((await fetch(base)).headers.get('ratelimit')).toBe('"5-in-60s";r=4;t=12');
    await limiter.close();
    await strict.close();
  });

  it('an error writing the answer of an async decision reaches the error handler (no hang, no unhandled rejection)', async () => {
    const unhandled = vi.fn();
    process.on('unhandledRejection', unhandled);
    try {
      const memory = memoryStore();
      const store: LimiterStore = {
        consume: async (key, cost, spec) => memory.consume(key, cost, spec),
        refund: async () => {},
        close: () => {},
      };
      const app = express();
      app.use((_req: Request, res: Response, next: NextFunction) => {
        // Something earlier broke the response (a faulty wrapper, say): setting a field throws.
        res.setHeader = () => {
          throw new Error('cannot set fields');
        };
        next();
      });
      app.get('/', rateLimit({ limit: 5, store }), (_req: Request, res: Response) => {
        res.end('ok');
      });
      app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
        res.statusCode = 500;
        res.end(error.message);
      });
      const res = await request(app).get('/');
      expect(res.status).toBe(500);
      expect(res.text).toBe('cannot set fields');
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });

  it('takes a promise of another realm (a thenable) as a promise, as the core does', async () => {
    // The core answers `skipped.then(...)`: a promise of the realm the skip function's promise came from.
    const skip = () => runInNewContext('Promise.resolve(false)') as Promise<boolean>;
    const res = await request(appWith(rateLimit({ limit: 5, skip }))).get('/');
    expect(res.status).toBe(200);
    expect(res.headers.ratelimit).toBe('"5-in-60s";r=4;t=12');
  });

  it('exposes the decision to onLimit, also in dry-run', async () => {
    const onLimit = vi.fn();
    const app = appWith(rateLimit({ limit: 1, dryRun: true, onLimit }));
    await request(app).get('/');
    const res = await request(app).get('/');
    expect(res.status).toBe(200);
    expect(onLimit).toHaveBeenCalledOnce();
    expect(onLimit.mock.calls[0]?.[1]).toMatchObject({ action: 'allow', limited: true });
  });
});
