import express, { type Request, type Response } from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { rateLimit } from './index.js';

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
