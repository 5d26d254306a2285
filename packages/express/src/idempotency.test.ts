import express, {
  type Express,
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
} from 'express';
// Express 4 (the peer range allows it), installed under an alias (types: ../test/express4.d.ts).
import express4 from 'express4';
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

  it('a scope that answers no user id (req.user for req.user.id) reaches the error handler; nothing runs', async () => {
    let runs = 0;
    const a = app(
      (_req, res) => {
        runs += 1;
        res.status(201).json({ charged: runs });
      },
      { scope: ((req: Request) => ({ id: req.get('x-user') })) as never },
    );
    // Before: both users were `user:[object Object]`, and bob was replayed alice's charge.
    for (const user of ['alice', 'bob']) {
      const res = await request(a).post('/pay').set('x-user', user).set('Idempotency-Key', 'k').send({});
      expect(res.status).toBe(500);
      expect(res.body.error).toMatch(/Expected `scope` to return a string/);
    }
    expect(runs).toBe(0);
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

  for (const [version, framework] of [
    ['Express 5', express],
    ['Express 4', express4],
  ] as const) {
    it(`${version}: bodies of every parser: another payload is 422, the same one (any key order) replayed, never a 500`, async () => {
      let runs = 0;
      const a = framework();
      const idem = idempotency({ scope: () => 'u' });
      const routes: Record<string, RequestHandler> = {
        raw: framework.raw({ type: '*/*', limit: '2mb' }),
        text: framework.text({ type: '*/*' }),
        // Express 4's simple parser (querystring) makes objects with a null prototype.
        form: framework.urlencoded({ extended: false }),
        json: framework.json({ strict: false, limit: '2mb' }),
      };
      for (const [path, parser] of Object.entries(routes)) {
        a.post(`/${path}`, parser, idem, (_req, res) => {
          runs += 1;
          res.status(201).json({ run: runs });
        });
      }
      const big = 'x'.repeat(1_048_576);
      const table: Array<readonly [path: string, type: string, first: string, same: string, other: string]> =
        [
          ['/raw', 'application/octet-stream', 'AAA', 'AAA', 'AAB'],
          ['/raw', 'application/octet-stream', `${big}0`, `${big}0`, `${big}1`],
          ['/text', 'text/plain', 'AAA', 'AAA', 'AAB'],
          ['/form', 'application/x-www-form-urlencoded', 'a=1&b=2', 'b=2&a=1', 'a=1&b=3'],
          ['/json', 'application/json', '{"a":1,"b":[1,2]}', '{"b":[1,2],"a":1}', '{"a":1,"b":[2,1]}'],
          ['/json', 'application/json', '[1,{"x":1,"y":2}]', '[1,{"y":2,"x":1}]', '[1,{"x":1,"y":3}]'],
          ['/json', 'application/json', '7', '7', '8'],
          ['/json', 'application/json', 'null', 'null', '0'],
          ['/json', 'application/json', `["${big}"]`, `["${big}"]`, `["${big}!"]`],
        ];
      for (const [index, [path, type, first, same, other]] of table.entries()) {
        const send = (body: string) =>
          request(a).post(path).set('Idempotency-Key', `k${index}`).set('Content-Type', type).send(body);
        const original = await send(first);
        expect(original.status, `${path} ${first.slice(0, 20)}`).toBe(201);
        const replay = await send(same);
        expect(replay.headers['idempotent-replayed'], `${path} ${same.slice(0, 20)}`).toBe('true');
        expect(replay.body).toEqual(original.body);
        expect((await send(other)).status, `${path} ${other.slice(0, 20)}`).toBe(422);
      }
      // An empty body (Content-Length: 0) is one payload, whatever the parser left in req.body.
      const empty = () =>
        request(a).post('/json').set('Idempotency-Key', 'empty').set('Content-Type', 'text/plain');
      expect((await empty()).status).toBe(201);
      expect((await empty()).headers['idempotent-replayed']).toBe('true');
      expect(runs).toBe(table.length + 1);
    });

    it(`${version}: a keyed body no parser read is 415 (no parser, or one for another type), never replayed for another payload`, async () => {
      let runs = 0;
      const a = framework();
      const handler = (_req: Request, res: Response) => {
        runs += 1;
        res.status(201).json({ run: runs });
      };
      // Express 5 leaves req.body undefined here, Express 4's json parser sets `{}`: both were one payload.
      a.post('/none', idempotency({ scope: () => 'u' }), handler);
      a.post('/json-only', framework.json(), idempotency({ scope: () => 'u' }), handler);
      for (const [path, type] of [
        ['/none', 'application/json'],
        ['/json-only', 'text/plain'],
        ['/json-only', 'application/octet-stream'],
      ] as const) {
        for (const body of ['{"a":1}', '{"a":2}']) {
          const answer = await request(a)
            .post(path)
            .set('Idempotency-Key', `${path.slice(1)}-${type.length}`)
            .set('Content-Type', type)
            .send(body);
          expect(answer.status, `${path} ${type}`).toBe(415);
          expect(answer.headers['content-type']).toBe('application/problem+json');
          expect(answer.body.code).toBe('ERR_IDEMPOTENCY_BODY_UNREAD');
        }
      }
      // Without a body there is nothing to read: it runs, and its retry is replayed.
      const bare = () => request(a).post('/none').set('Idempotency-Key', 'bare');
      expect((await bare()).status).toBe(201);
      expect((await bare()).headers['idempotent-replayed']).toBe('true');
      expect(runs).toBe(1);
    });
  }

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
