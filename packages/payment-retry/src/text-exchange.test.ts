import { getEventListeners, once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errors, Pool } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ExchangeCanceller, TextExchange } from './text-exchange.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

let server: Server;
let pool: Pool;
let handle: Handler;
/** Requests the server saw (a request undici never wrote is not one). */
let requests = 0;
/** Answers the server holds back; released before the pool closes so nothing waits on them. */
let releases: Array<() => void> = [];

const GET = { path: '/', method: 'GET' } as const;

beforeEach(async () => {
  requests = 0;
  releases = [];
  handle = (_req, res) => {
    res.end('ok');
  };
  server = createServer((req, res) => {
    requests += 1;
    Promise.resolve(handle(req, res)).catch((error: unknown) => res.destroy(error as Error));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  pool = new Pool(`http://127.0.0.1:${port}`);
});

afterEach(async () => {
  for (const release of releases) release();
  await pool.close();
  server.closeAllConnections();
  server.close();
  await once(server, 'close');
});

/** A deferred promise, to sequence the server and the client without sleeping. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/**
 * Lets the test wait until the exchange has been handed `n` body bytes, so the server writes its next chunk
 * only after the client has the previous one: the chunks then reach the handler as separate calls instead of
 * being coalesced by TCP.
 */
function watchBody(exchange: TextExchange): { bytes(n: number): Promise<void>; calls(): number } {
  const original = exchange.onResponseData.bind(exchange);
  let received = 0;
  let calls = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  exchange.onResponseData = (controller, chunk) => {
    original(controller, chunk);
    received += chunk.length;
    calls += 1;
    for (const waiter of waiters.filter((w) => received >= w.n)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };
  return {
    bytes(n) {
      if (received >= n) return Promise.resolve();
      const { promise, resolve } = deferred();
      waiters.push({ n, resolve });
      return promise;
    },
    calls: () => calls,
  };
}

/** The server takes the request and answers only when the test releases it. */
function holdAnswer(): { arrived: Promise<void> } {
  const arrived = deferred();
  handle = async (req, res) => {
    const released = deferred();
    releases.push(released.resolve);
    arrived.resolve();
    await released.promise;
    if (!req.socket.destroyed) res.end('late');
  };
  return { arrived: arrived.promise };
}

function writeChunk(res: ServerResponse, chunk: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => {
    res.write(chunk, (error) => (error ? reject(error) : resolve()));
  });
}

function cancelToken(): ExchangeCanceller {
  return { aborted: false, reason: undefined, exchange: undefined };
}

describe('TextExchange: the response', () => {
  it('answers the status, the headers and a body sent in several chunks as one string', async () => {
    const exchange = new TextExchange();
    const body = watchBody(exchange);
    handle = async (_req, res) => {
      res.writeHead(201, { 'x-trace': 'abc', 'set-cookie': ['a=1', 'b=2'] });
      await writeChunk(res, 'one,');
      await body.bytes(4);
      await writeChunk(res, 'two,');
      await body.bytes(8);
      res.end('three');
    };

    const answer = await exchange.send(pool, GET, undefined);

    expect(answer.statusCode).toBe(201);
    expect(answer.headers['x-trace']).toBe('abc');
    expect(answer.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(answer.body).toBe('one,two,three');
    expect(body.calls()).toBeGreaterThanOrEqual(3);
    expect(exchange.responded).toBe(true);
  });

  it('decodes UTF-8 characters split across chunk boundaries', async () => {
    const text = 'a€b😀c'; // € is 3 bytes, 😀 is 4 bytes
    const bytes = Buffer.from(text, 'utf8');
    // Cut inside € (bytes 1..3) and inside 😀 (bytes 5..8).
    const cuts = [0, 2, 7, bytes.length];
    const exchange = new TextExchange();
    const body = watchBody(exchange);
    handle = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      for (let i = 0; i < cuts.length - 1; i += 1) {
        await writeChunk(res, bytes.subarray(cuts[i], cuts[i + 1]));
        await body.bytes(cuts[i + 1] as number);
      }
      res.end();
    };

    const answer = await exchange.send(pool, GET, undefined);

    expect(body.calls()).toBeGreaterThanOrEqual(3);
    expect(answer.body).toBe(text);
  });

  it('drops a leading UTF-8 byte order mark, even when it comes in pieces', async () => {
    const exchange = new TextExchange();
    const body = watchBody(exchange);
    handle = async (_req, res) => {
      await writeChunk(res, Buffer.from([0xef, 0xbb]));
      await body.bytes(2);
      res.end(Buffer.concat([Buffer.from([0xbf]), Buffer.from('{"ok":true}\uFEFF')]));
    };

    const answer = await exchange.send(pool, GET, undefined);

    // Only the leading mark goes; one inside the text is content.
    expect(answer.body).toBe('{"ok":true}\uFEFF');
  });

  it('answers a body that is only a byte order mark as the empty string', async () => {
    handle = (_req, res) => {
      res.end(Buffer.from([0xef, 0xbb, 0xbf]));
    };

    const answer = await new TextExchange().send(pool, GET, undefined);

    expect(answer.body).toBe('');
  });

  it('answers an empty body as the empty string', async () => {
    handle = (_req, res) => {
      res.writeHead(204);
      res.end();
    };

    const answer = await new TextExchange().send(pool, GET, undefined);

    expect(answer).toEqual({ statusCode: 204, headers: expect.any(Object), body: '' });
  });

  it('sends the request body and method it is given', async () => {
    let seen = '';
    handle = async (req, res) => {
      req.setEncoding('utf8');
      for await (const chunk of req) seen += chunk;
      res.end(`${req.method} ${req.url}`);
    };

    const answer = await new TextExchange().send(
      pool,
      { path: '/charges?x=1', method: 'POST', body: '{"amount":1250}' },
      undefined,
    );

    expect(seen).toBe('{"amount":1250}');
    expect(answer.body).toBe('POST /charges?x=1');
  });
});

describe('TextExchange: transport failures', () => {
  it("rejects with undici's error and has not responded when the connection drops before the answer", async () => {
    handle = (req) => {
      req.socket.destroy();
    };
    const exchange = new TextExchange();

    const failure = await exchange.send(pool, GET, undefined).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(errors.SocketError);
    expect((failure as errors.SocketError).code).toBe('UND_ERR_SOCKET');
    expect(exchange.responded).toBe(false);
  });

  it('rejects and has responded when the connection drops while the body is read', async () => {
    const exchange = new TextExchange();
    const body = watchBody(exchange);
    handle = async (req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      await writeChunk(res, 'partial');
      await body.bytes(7);
      req.socket.destroy();
    };

    const failure = await exchange.send(pool, GET, undefined).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(errors.UndiciError);
    expect(exchange.responded).toBe(true);
  });
});

describe('TextExchange: cancelled by an AbortSignal', () => {
  it("rejects with an aborted signal's reason and never sends the request", async () => {
    const reason = new Error('cancelled before start');
    const signal = AbortSignal.abort(reason);

    await expect(new TextExchange().send(pool, GET, signal)).rejects.toBe(reason);

    // A full exchange on the same pool afterwards: had the first request been written, the server
    // would have seen it by now.
    await expect(new TextExchange().send(pool, GET, undefined)).resolves.toMatchObject({ body: 'ok' });
    expect(requests).toBe(1);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });

  it('rejects with the reason when the signal aborts while the answer is awaited', async () => {
    const { arrived } = holdAnswer();
    const controller = new AbortController();
    const exchange = new TextExchange();
    const answer = exchange.send(pool, GET, controller.signal);
    await arrived;
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);

    const reason = new Error('deadline');
    controller.abort(reason);

    // The server still holds its answer (released only in afterEach): the rejection cannot come from it.
    await expect(answer).rejects.toBe(reason);
    expect(exchange.responded).toBe(false);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('leaves no abort listener on the signal once the answer came', async () => {
    const controller = new AbortController();

    await expect(new TextExchange().send(pool, GET, controller.signal)).resolves.toMatchObject({
      body: 'ok',
    });

    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    // Aborting afterwards changes nothing (and throws nothing).
    controller.abort(new Error('too late'));
  });

  it('leaves no abort listener on the signal once the exchange failed', async () => {
    handle = (req) => {
      req.socket.destroy();
    };
    const controller = new AbortController();

    await expect(new TextExchange().send(pool, GET, controller.signal)).rejects.toBeInstanceOf(
      errors.SocketError,
    );

    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });
});

describe('TextExchange: cancelled while queued for a connection', () => {
  it('rejects at once, never starts, and the connection serves the next request unbroken', async () => {
    const { port } = server.address() as AddressInfo;
    const single = new Pool(`http://127.0.0.1:${port}`, { connections: 1 });
    let connections = 0;
    const onConnection = () => connections++;
    server.on('connection', onConnection);
    try {
      const { arrived } = holdAnswer();
      const held = new TextExchange().send(single, GET, undefined);
      await arrived;
      const token = cancelToken();
      const queued = new TextExchange();
      const answer = queued.send(single, GET, token);

      const reason = new Error('deadline');
      let failure: unknown;
      answer.catch((error: unknown) => {
        failure = error;
      });
      token.exchange?.abort(reason);

      // The only connection still holds the first answer: the rejection must not wait for it.
      for (let turn = 0; turn < 20 && failure === undefined; turn++) {
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(failure).toBe(reason);
      expect(queued.started).toBe(false);
      // Already cancelled when sent (a gate's wait outlived the deadline): not even queued.
      let early: unknown;
      new TextExchange()
        .send(single, GET, { aborted: true, reason, exchange: undefined })
        .catch((error: unknown) => {
          early = error;
        });
      for (let turn = 0; turn < 20 && early === undefined; turn++) {
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(early).toBe(reason);
      for (const release of releases) release();
      await expect(held).resolves.toMatchObject({ body: 'late' });
      handle = (_req, res) => {
        res.end('ok');
      };
      await expect(new TextExchange().send(single, GET, undefined)).resolves.toMatchObject({ body: 'ok' });
      // The given-up request was refused when its turn came, without a byte written or the socket lost.
      expect(requests).toBe(2);
      expect(connections).toBe(1);
    } finally {
      server.off('connection', onConnection);
      await single.destroy();
    }
  });
});

describe('TextExchange: cancelled by a cancel token', () => {
  it('sits on the token while in flight and leaves it when the answer came', async () => {
    const { arrived } = holdAnswer();
    const token = cancelToken();
    const exchange = new TextExchange();
    const answer = exchange.send(pool, GET, token);
    await arrived;

    expect(token.exchange).toBe(exchange);
    for (const release of releases) release();

    await expect(answer).resolves.toMatchObject({ statusCode: 200, body: 'late' });
    expect(token.exchange).toBeUndefined();
  });

  it("rejects with the reason given to the token's exchange, as the client cancels", async () => {
    const { arrived } = holdAnswer();
    const token = cancelToken();
    const exchange = new TextExchange();
    const answer = exchange.send(pool, GET, token);
    await arrived;

    const reason = new Error('payment cancelled');
    token.exchange?.abort(reason);

    await expect(answer).rejects.toBe(reason);
    expect(exchange.responded).toBe(false);
    expect(token.exchange).toBeUndefined();
  });

  it('never sends the request when the token is already cancelled', async () => {
    const reason = new Error('closed');
    const token: ExchangeCanceller = { aborted: true, reason, exchange: undefined };

    await expect(new TextExchange().send(pool, GET, token)).rejects.toBe(reason);

    await expect(new TextExchange().send(pool, GET, undefined)).resolves.toMatchObject({ body: 'ok' });
    expect(requests).toBe(1);
    expect(token.exchange).toBeUndefined();
  });

  it('ignores abort() after the answer came: the result stays resolved', async () => {
    const token = cancelToken();
    const exchange = new TextExchange();
    const answer = exchange.send(pool, GET, token);
    const first = await answer;

    expect(() => exchange.abort(new Error('too late'))).not.toThrow();

    expect(await answer).toBe(first);
    expect(first).toMatchObject({ statusCode: 200, body: 'ok' });
    expect(exchange.responded).toBe(true);
    expect(token.exchange).toBeUndefined();
    expect(requests).toBe(1);
  });
});
