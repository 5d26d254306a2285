import type { Server } from 'node:http';
import express, { type Request, type Response } from 'express';
// Express 4 (the peer range allows it), installed under an alias (types: ../test/express4.d.ts).
import express4 from 'express4';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import { unixSocketClient, unixSocketPath } from '../../http/test/conformance.js';
import { ClientAddressUnknownError, rateLimit } from './index.js';

/** An app whose one route is limited to one request per client and minute. */
function keyed(configure: (app: express.Express) => void, limiter = rateLimit({ limit: 1 })) {
  const app = express();
  configure(app);
  app.get('/', limiter, (_req: Request, res: Response) => {
    res.json({ ok: true });
  });
  return { app, limiter };
}

describe('the client address the Express limiter keys on', () => {
  it('with trust proxy off (the default) is the socket peer, whatever X-Forwarded-For says', async () => {
    const { app } = keyed(() => {});
    expect((await request(app).get('/').set('X-Forwarded-For', '203.0.113.1')).status).toBe(200);
    // A different spoofed address is still the same client.
    expect((await request(app).get('/').set('X-Forwarded-For', '203.0.113.2')).status).toBe(429);
  });

  it('with trust proxy on follows X-Forwarded-For, as req.ip does', async () => {
    const { app } = keyed((a) => a.set('trust proxy', true));
    expect((await request(app).get('/').set('X-Forwarded-For', '203.0.113.1')).status).toBe(200);
    expect((await request(app).get('/').set('X-Forwarded-For', '203.0.113.2')).status).toBe(200);
    expect((await request(app).get('/').set('X-Forwarded-For', '203.0.113.1')).status).toBe(429);
  });

  it('honours an ip an earlier middleware set on the request, even with trust proxy off', async () => {
    const { app } = keyed((a) =>
      a.use((req, _res, next) => {
        Object.defineProperty(req, 'ip', { value: String(req.headers['x-client']), enumerable: true });
        next();
      }),
    );
    expect((await request(app).get('/').set('X-Client', 'alice')).status).toBe(200);
    expect((await request(app).get('/').set('X-Client', 'bob')).status).toBe(200);
    expect((await request(app).get('/').set('X-Client', 'alice')).status).toBe(429);
  });

  it("a sub-app mounted in a parent that trusts proxies inherits the parent's setting", async () => {
    const parent = express();
    parent.set('trust proxy', true);
    const { app: child } = keyed(() => {});
    parent.use('/shop', child);
    expect((await request(parent).get('/shop/').set('X-Forwarded-For', '203.0.113.1')).status).toBe(200);
    expect((await request(parent).get('/shop/').set('X-Forwarded-For', '203.0.113.2')).status).toBe(200);
  });
});

/** The Express majors the middleware supports. */
const versions = [
  { name: 'Express 5', express },
  { name: 'Express 4', express: express4 },
] as const;

for (const version of versions) {
  describe(`${version.name} listening on a Unix socket, as behind nginx`, () => {
    let warnings: MockInstance<typeof process.emitWarning>;
    let close: (() => Promise<void>) | undefined;
    beforeEach(() => {
      warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    });
    afterEach(async () => {
      await close?.();
      close = undefined;
      warnings.mockRestore();
    });

    const addressWarnings = () =>
      warnings.mock.calls.filter(([warning]) => warning instanceof ClientAddressUnknownError).length;

    /** Serves a one-request-per-client app with `trust proxy` set so, on a fresh Unix socket. */
    async function serve(trustProxy: unknown) {
      const app = version.express();
      app.set('trust proxy', trustProxy);
      app.get('/', rateLimit({ limit: 1 }), (_req: Request, res: Response) => {
        res.json({ ok: true });
      });
      const path = unixSocketPath();
      const server = await new Promise<Server>((resolve) => {
        const s = app.listen(path, () => resolve(s));
      });
      close = () => new Promise<void>((resolve) => server.close(() => resolve()));
      const client = unixSocketClient(path);
      return (address: string) =>
        client.request({ path: '/', headers: { 'x-forwarded-for': address } }).then((r) => r.status);
    }

    it('without trust proxy all clients are one, and the limiter says so once', async () => {
      const get = await serve(false);
      expect(await get('203.0.113.1')).toBe(200);
      expect(await get('203.0.113.2')).toBe(429);
      expect(await get('203.0.113.3')).toBe(429);
      expect(addressWarnings()).toBe(1);
    });

    for (const setting of [1, true]) {
      it(`trust proxy ${String(setting)} (what the warning advises) tells clients apart, with no warning`, async () => {
        const get = await serve(setting);
        expect(await get('203.0.113.1')).toBe(200);
        expect(await get('203.0.113.2')).toBe(200);
        expect(await get('203.0.113.1')).toBe(429);
        expect(addressWarnings()).toBe(0);
      });
    }

    it("trust proxy 'loopback' trusts nothing there (the proxy has no address): warned, as the warning says", async () => {
      const get = await serve('loopback');
      expect(await get('203.0.113.1')).toBe(200);
      expect(await get('203.0.113.2')).toBe(429);
      expect(addressWarnings()).toBe(1);
    });
  });
}
