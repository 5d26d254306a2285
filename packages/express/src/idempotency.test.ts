import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { InvalidOptionError, idempotency } from './index.js';

function app(
  handler: (req: Request, res: Response) => void,
  options: Parameters<typeof idempotency>[0] = {},
): Express {
  const a = express();
  a.post('/pay', express.json(), idempotency(options), handler);
  a.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
    res.status(500).json({ error: error.message });
  });
  return a;
}

describe('idempotency (express)', () => {
  it('is a named middleware validated at set-up', () => {
    expect(idempotency().name).toBe('floodgateIdempotency');
    expect(() => idempotency({ ttl: 5 } as never)).toThrow(InvalidOptionError);
    expect(() => idempotency({ scope: 'user' as never })).toThrow(/`scope`/);
    expect(() => idempotency({ inFlight: 'queue' as never })).toThrow(/inFlight/);
  });

  it('replays bytes bodies sent with res.send(Buffer) and res.write chunks', async () => {
    let runs = 0;
    const a = app((_req, res) => {
      runs += 1;
      res.status(201).type('application/octet-stream');
      res.write(Buffer.from([1, 2]));
      res.end(Buffer.from([3]));
    });
    const first = await request(a).post('/pay').set('Idempotency-Key', 'b1').send({ x: 1 });
    const replay = await request(a).post('/pay').set('Idempotency-Key', 'b1').send({ x: 1 });
    expect(replay.status).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(Buffer.compare(replay.body as Buffer, first.body as Buffer)).toBe(0);
    expect([...(replay.body as Buffer)]).toEqual([1, 2, 3]);
    expect(runs).toBe(1);
  });

  it('does not store a response above maxBodyBytes', async () => {
    let runs = 0;
    const a = app(
      (_req, res) => {
        runs += 1;
        res.status(200).send('x'.repeat(100));
      },
      { maxBodyBytes: 10 },
    );
    await request(a).post('/pay').set('Idempotency-Key', 'big').send({});
    const again = await request(a).post('/pay').set('Idempotency-Key', 'big').send({});
    expect(again.headers['idempotent-replayed']).toBeUndefined();
    expect(runs).toBe(2);
  });

  it('a throwing scope function reaches the error handler', async () => {
    const a = app(
      (_req, res) => {
        res.end();
      },
      {
        scope: () => {
          throw new Error('no user');
        },
      },
    );
    const res = await request(a).post('/pay').set('Idempotency-Key', 'k').send({});
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'no user' });
  });

  it('keeps a writeHead wrapper mounted after it (on-headers: response-time, express-session)', async () => {
    const a = express();
    a.post(
      '/pay',
      express.json(),
      idempotency({ scope: () => 'u' }),
      (_req, res, next) => {
        // What on-headers does: wrap writeHead to set a field just before the header goes out.
        const inner = res.writeHead;
        res.writeHead = function (this: typeof res, ...args: unknown[]) {
          this.setHeader('x-response-time', '1ms');
          return (inner as (...a: unknown[]) => typeof res).apply(this, args);
        } as typeof res.writeHead;
        next();
      },
      (_req, res) => {
        res.status(201).json({ ok: true });
      },
    );
    const first = await request(a).post('/pay').set('Idempotency-Key', 'k').send({});
    expect(first.status).toBe(201);
    expect(first.headers['x-response-time']).toBe('1ms');
  });

  it('replays Content-Type and Location a handler gave res.writeHead (object and flat list)', async () => {
    let runs = 0;
    const a = express();
    // With no field set before, Node sends writeHead's fields without keeping them in res.getHeaders().
    a.disable('x-powered-by');
    const idem = idempotency({ scope: () => 'u' });
    a.post('/object', express.json(), idem, (_req, res) => {
      runs += 1;
      res.writeHead(201, { 'Content-Type': 'text/csv', Location: '/r/1' });
      res.end('a,b');
    });
    a.post('/list', express.json(), idem, (_req, res) => {
      runs += 1;
      res.writeHead(202, 'Accepted', ['Content-Type', 'text/plain', 'Location', '/r/2']);
      res.end('queued');
    });
    for (const [path, status, type, location, body] of [
      ['/object', 201, 'text/csv', '/r/1', 'a,b'],
      ['/list', 202, 'text/plain', '/r/2', 'queued'],
    ] as const) {
      await request(a).post(path).set('Idempotency-Key', path).send({});
      const replay = await request(a).post(path).set('Idempotency-Key', path).send({});
      expect(replay.status).toBe(status);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.headers['content-type']).toBe(type);
      expect(replay.headers.location).toBe(location);
      expect(replay.text).toBe(body);
    }
    expect(runs).toBe(2);
  });

  it('replays a stored 304 without a Content-Length of its own (RFC 9110 15.4.5)', async () => {
    let runs = 0;
    const a = app((_req, res) => {
      runs += 1;
      res.status(304).set('ETag', '"v1"').end();
    });
    const first = await request(a).post('/pay').set('Idempotency-Key', 'nm').send({});
    const replay = await request(a).post('/pay').set('Idempotency-Key', 'nm').send({});
    expect(first.headers['content-length']).toBeUndefined();
    expect(replay.status).toBe(304);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    // `0` would tell a cache the 200's body is empty.
    expect(replay.headers['content-length']).toBeUndefined();
    expect(runs).toBe(1);
  });

  it('validation messages name the option and the value', () => {
    expect(() => idempotency({ scope: 'user' as never })).toThrow(/`scope` to be a function, got `"user"`/);
    expect(() => idempotency(null as never)).toThrow(/`options` to be an object, got `null`/);
  });

  it('leaves GET and other methods alone', async () => {
    const a = express();
    a.use(idempotency());
    a.get('/', (_req, res) => {
      res.send('ok');
    });
    expect((await request(a).get('/').set('Idempotency-Key', '')).status).toBe(200);
  });
});
