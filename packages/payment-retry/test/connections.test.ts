import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Agent, type Dispatcher, MockAgent } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPaymentClient, type PaymentClient, type PaymentClientOptions } from '../src/client.js';
import type { GatewayAdapter } from '../src/gateway.js';
import { ietfGateway } from '../src/ietf-gateway.js';
import { MemoryLedger } from '../src/memory-ledger.js';
import type { AttemptEvent, PaymentIntent, PaymentOutcome } from '../src/types.js';

/*
 * The client's use of undici against a real bank on loopback, through each of its two paths: its own Pool
 * (dispatch() with TextExchange) and a dispatcher passed in (request()). Each gets ONE connection, so a
 * single answer whose body is left unread, or a request stuck in the queue, would stall every payment
 * after it. Waits are bounded by the payments' own deadlines and `within()`, never by sleeping.
 */

/** What the bank does with one request: the test's handler, given the parsed charge and the raw objects. */
type Handle = (request: BankRequest, req: IncomingMessage, res: ServerResponse) => void;

interface BankRequest {
  readonly method: string;
  readonly url: string;
  readonly key: string;
  readonly orderId: string;
}

/** A node:http bank on 127.0.0.1:0 that counts its connections and answers as the test says. */
class LoopbackBank {
  readonly requests: BankRequest[] = [];
  readonly sockets = new Set<Socket>();
  connections = 0;
  handle: Handle = (_request, _req, res) => paid(res);
  readonly #server: Server;

  constructor() {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        const request: BankRequest = {
          method: req.method ?? '',
          url: req.url ?? '',
          key: String(req.headers['idempotency-key'] ?? '').replaceAll('"', ''),
          orderId: text === '' ? '' : String((JSON.parse(text) as { orderId?: unknown }).orderId),
        };
        this.requests.push(request);
        this.handle(request, req, res);
      });
    });
    this.#server.on('connection', (socket: Socket) => {
      this.connections++;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async start(): Promise<this> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    return this;
  }

  get origin(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  get charges(): BankRequest[] {
    return this.requests.filter((request) => request.method === 'POST');
  }

  /** Resolves once no connection is open on the bank's side (every socket the client had is gone). */
  async idle(): Promise<void> {
    await Promise.all([...this.sockets].map((socket) => (socket.closed ? undefined : once(socket, 'close'))));
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    this.#server.close();
    await once(this.#server, 'close');
  }
}

function paid(res: ServerResponse, id = 'pay_1'): void {
  res.writeHead(201, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ id, status: 'succeeded' }));
}

/** Writes the status line and `part` of a body announced as longer, and resolves once it is on the wire. */
function halfAnswer(res: ServerResponse, part = '{"id":"pay_1",'): Promise<void> {
  res.writeHead(201, { 'content-type': 'application/json', 'content-length': '200' });
  return new Promise((resolve) => res.write(part, () => resolve()));
}

/** `promise`, or a rejection once `ms` pass: a test-level bound on a wait, so a stall fails instead of hanging. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`still waiting after ${ms} ms`)), ms);
  });
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer));
}

/** Lets the event loop turn (never a timer) until `done()` holds. */
async function turnsUntil(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((resolve) => setImmediate(resolve));
}

const order = (orderId: string): PaymentIntent => ({
  orderId,
  amount: 1250,
  currency: 'EUR',
  payer: 'tok_ok',
});

interface Mode {
  readonly name: string;
  /** A dispatcher to pass in, or undefined for the client's own Pool. */
  readonly dispatcher: () => Dispatcher | undefined;
  /** The own Pool knows whether a request ever reached a socket; request() does not say. */
  readonly ownPool: boolean;
}

const MODES: readonly Mode[] = [
  { name: 'its own Pool', dispatcher: () => undefined, ownPool: true },
  { name: 'an Agent passed in', dispatcher: () => new Agent({ connections: 1 }), ownPool: false },
];

let bank: LoopbackBank;
let client: PaymentClient | undefined;
let dispatcher: Dispatcher | undefined;

beforeEach(async () => {
  bank = await new LoopbackBank().start();
});

afterEach(async () => {
  await client?.close();
  // A MockAgent has no destroy().
  await (dispatcher instanceof MockAgent ? dispatcher.close() : dispatcher?.destroy());
  await bank.close();
  client = undefined;
  dispatcher = undefined;
});

function connect(
  mode: Mode,
  options: Partial<PaymentClientOptions> & { statusPath?: false } = {},
): PaymentClient {
  dispatcher = mode.dispatcher();
  const { statusPath, ...rest } = options;
  client = createPaymentClient({
    gateway: ietfGateway(
      statusPath === false ? { origin: bank.origin, statusPath } : { origin: bank.origin },
    ),
    ledger: new MemoryLedger(),
    reconcile: false,
    random: () => 0.5,
    pool: { connections: 1 },
    ...(dispatcher === undefined ? {} : { dispatcher }),
    ...rest,
    retry: { baseDelayMs: 1, maxDelayMs: 5, ...rest.retry },
    timeouts: { headersMs: 5000, bodyMs: 5000, paymentMs: 5000, ...rest.timeouts },
  });
  return client;
}

/** Attempts as `kind:outcome`, in order. */
function recordAttempts(paying: PaymentClient): string[] {
  const attempts: string[] = [];
  paying.on('attempt', (event: AttemptEvent) => attempts.push(`${event.kind}:${event.outcome}`));
  return attempts;
}

/**
 * Bad answers, each given to two payments (one attempt each; the pool has one connection) before a good one. `expected` is the
 * bad payments' status: never `paid`, and never `declined` unless the bank declined.
 */
const BAD_ANSWERS: ReadonlyArray<{
  readonly name: string;
  readonly handle: Handle;
  readonly expected: PaymentOutcome['status'];
  /** The bank's answer is read by an adapter that throws. */
  readonly throwingAdapter?: boolean;
  /** The payment's signal is aborted once the bank has started answering. */
  readonly abortMidBody?: boolean;
}> = [
  {
    name: 'decline with a 402 problem body',
    handle: (_r, _req, res) => {
      res.writeHead(402, { 'content-type': 'application/problem+json' });
      res.end(JSON.stringify({ type: 'card_declined', detail: 'x'.repeat(2000) }));
    },
    expected: 'declined',
  },
  {
    name: 'fail with a 500 and a long HTML body in chunks',
    handle: (_r, _req, res) => {
      res.writeHead(500, { 'content-type': 'text/html' });
      for (let i = 0; i < 10; i++) res.write(`<p>${'e'.repeat(1000)}</p>`);
      res.end();
    },
    expected: 'pending',
  },
  {
    name: 'answer 201 with JSON that does not parse',
    handle: (_r, _req, res) => {
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end('{"id": "pay_1", "status": ');
    },
    expected: 'pending',
  },
  {
    name: 'answer a body larger than pool.maxResponseBytes',
    handle: (_r, _req, res) => {
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'x'.repeat(64 * 1024), status: 'succeeded' }));
    },
    expected: 'pending',
  },
  {
    name: 'stop half-way through the body until timeouts.bodyMs passes',
    handle: (_r, _req, res) => {
      void halfAnswer(res);
    },
    expected: 'pending',
  },
  {
    name: "send the status line, then nothing until the caller's signal aborts",
    handle: (_r, _req, res) => {
      void halfAnswer(res, '');
    },
    expected: 'pending',
    abortMidBody: true,
  },
  {
    name: 'drop the connection after the status line',
    handle: (_r, req, res) => {
      void halfAnswer(res, '').then(() => req.socket.destroy());
    },
    expected: 'pending',
  },
  {
    name: 'drop the connection after half the body',
    handle: (_r, req, res) => {
      void halfAnswer(res).then(() => req.socket.destroy());
    },
    expected: 'pending',
  },
  {
    name: 'answer 201 to an adapter whose parseCharge throws',
    handle: (_r, _req, res) => paid(res),
    expected: 'pending',
    throwingAdapter: true,
  },
];

/** ietfGateway, but parseCharge throws for orders named `bad-…` (a bug in an adapter of one's own). */
function throwingAdapter(origin: string): GatewayAdapter {
  const base = ietfGateway({ origin, statusPath: false });
  return {
    name: base.name,
    origin: base.origin,
    maxKeyLength: base.maxKeyLength,
    chargeRequest: (input) => base.chargeRequest(input),
    parseCharge: (response, input) => {
      if (input.orderId.startsWith('bad-')) throw new TypeError('adapter bug');
      return base.parseCharge(response, input);
    },
  };
}

describe.each(MODES)('the client with $name of one connection', (mode) => {
  it.each(BAD_ANSWERS)(
    'after two answers that $name, the next payment is paid on the same pool',
    async ({ handle, expected, throwingAdapter: throwing, abortMidBody }) => {
      const controllers = new Map<string, AbortController>();
      bank.handle = (request, req, res) => {
        if (!request.orderId.startsWith('bad-')) return paid(res);
        handle(request, req, res);
        // Aborted once the bank has begun its answer: the client has the status line or is about to.
        if (abortMidBody)
          setImmediate(() => controllers.get(request.orderId)?.abort(new Error('caller gave up')));
      };
      const paying = connect(mode, {
        statusPath: false,
        retry: { maxAttempts: 1 },
        timeouts: { bodyMs: 50 },
        pool: { connections: 1, maxResponseBytes: 16 * 1024 },
        ...(throwing ? { gateway: throwingAdapter(bank.origin) } : {}),
      });

      for (const orderId of ['bad-1', 'bad-2']) {
        const controller = new AbortController();
        controllers.set(orderId, controller);
        const outcome = await within(paying.pay(order(orderId), { signal: controller.signal }), 4000);
        expect(outcome.status).toBe(expected);
      }
      expect(bank.charges).toHaveLength(2);

      // Had any of those answers kept the one connection, this charge would queue behind it until its
      // deadline and end pending.
      const next = await within(paying.pay(order('good'), { deadlineMs: 2000 }), 4000);
      expect(next).toMatchObject({ status: 'paid', attempts: 1 });
    },
  );

  it("a payment queued behind a hung answer ends pending at its own deadline, not at that answer's", async () => {
    let release = (): void => {};
    bank.handle = (request, _req, res) => {
      if (request.orderId === 'hung') release = () => paid(res);
      else paid(res);
    };
    const paying = connect(mode);
    const attempts = recordAttempts(paying);
    let hungSettled = false;
    const hung = paying.pay(order('hung')).finally(() => {
      hungSettled = true;
    });
    await turnsUntil(() => bank.requests.length > 0);

    // The only connection is taken: this charge waits in undici's queue when its deadline passes.
    const queued = await within(paying.pay(order('queued'), { deadlineMs: 50 }), 2000);

    expect(queued).toMatchObject({ status: 'pending', reason: 'deadline' });
    expect(hungSettled).toBe(false);
    // Never handed a socket: provably not sent (request() cannot tell, and says "unknown").
    expect(attempts).toEqual([mode.ownPool ? 'charge:not_sent' : 'charge:unknown']);
    release();
    expect(await hung).toMatchObject({ status: 'paid' });
    expect(bank.charges.map((charge) => charge.orderId)).toEqual(['hung']);
  });

  it("the caller's deadline wins over headersMs, and the connection it gave up on is destroyed", async () => {
    bank.handle = () => {}; // never answers
    const paying = connect(mode, { timeouts: { headersMs: 10_000 } });
    const outcome = await within(paying.pay(order('slow'), { deadlineMs: 50 }), 2000);

    expect(outcome).toMatchObject({ status: 'pending', reason: 'deadline' });
    // undici closes the socket of a request it aborts: a late answer cannot arrive on a reused one.
    await within(bank.idle(), 2000);
    expect(bank.sockets.size).toBe(0);
  });

  it.each([
    ['after the status line', ''],
    ['after half the body', '{"id":"pay_1",'],
  ])(
    'the bank charges and drops the connection %s: asked about, never paid or failed on that answer',
    async (_when, part) => {
      const charged = new Set<string>();
      bank.handle = (request, req, res) => {
        if (request.method === 'GET') {
          if (!charged.has(decodeURIComponent(request.url.split('/').pop() ?? ''))) {
            res.writeHead(404).end();
          } else {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ id: 'pay_asked', status: 'succeeded' }));
          }
          return;
        }
        charged.add(request.key);
        void halfAnswer(res, part).then(() => req.socket.destroy());
      };
      const paying = connect(mode);
      const attempts = recordAttempts(paying);

      expect(await within(paying.pay(order('o-1')), 4000)).toMatchObject({
        status: 'paid',
        reference: 'pay_asked',
      });
      expect(attempts).toEqual(['charge:unknown', 'status:responded']);
      expect(bank.charges).toHaveLength(1);
    },
  );

  it('without a status endpoint, an answer dropped mid-body is re-sent with the same key', async () => {
    bank.handle = (request, req, res) => {
      if (bank.charges.length === 1) void halfAnswer(res).then(() => req.socket.destroy());
      else paid(res, `pay_${request.key}`);
    };
    const paying = connect(mode, { statusPath: false, retry: { maxAttempts: 1 } });

    const first = await within(paying.pay(order('o-1')), 4000);
    expect(first).toMatchObject({ status: 'pending', reason: 'max_attempts' });
    const second = await within(paying.pay(order('o-1')), 4000);

    expect(second).toMatchObject({ status: 'paid', reference: `pay_${first.idempotencyKey}` });
    expect(bank.charges.map((charge) => charge.key)).toEqual([first.idempotencyKey, first.idempotencyKey]);
  });

  it('a keep-alive connection the bank closed while idle: the next charge goes out once, on a new one', async () => {
    const paying = connect(mode);
    const attempts = recordAttempts(paying);
    expect(await paying.pay(order('o-1'))).toMatchObject({ status: 'paid' });
    expect(bank.connections).toBe(1);

    // The bank ends the idle keep-alive connection (its keepAliveTimeout, a deploy) before the next charge.
    for (const socket of bank.sockets) socket.end();
    await within(bank.idle(), 2000);

    expect(await within(paying.pay(order('o-2')), 4000)).toMatchObject({ status: 'paid', attempts: 1 });
    expect(attempts).toEqual(['charge:responded', 'charge:responded']);
    expect(bank.charges).toHaveLength(2);
    expect(bank.connections).toBe(2);
  });

  it('drops an answer larger than pool.maxResponseBytes unread: sent with no response, then asks', async () => {
    bank.handle = (request, _req, res) => {
      if (request.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'pay_small', status: 'succeeded' }));
      } else {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'x'.repeat(4096), status: 'succeeded' }));
      }
    };
    const paying = connect(mode, { pool: { connections: 1, maxResponseBytes: 1024 } });
    const attempts = recordAttempts(paying);

    expect(await within(paying.pay(order('o-1')), 4000)).toMatchObject({
      status: 'paid',
      reference: 'pay_small',
    });
    expect(attempts).toEqual(['charge:unknown', 'status:responded']);
    expect(bank.charges).toHaveLength(1);
  });
});

describe("the client's own Pool", () => {
  const own = MODES[0] as Mode;

  it('payments that gave up in the queue cost no connection when their turn comes', async () => {
    let release = (): void => {};
    bank.handle = (request, _req, res) => {
      if (request.orderId === 'hung') release = () => paid(res);
      else paid(res);
    };
    const paying = connect(own);
    const hung = paying.pay(order('hung'));
    await turnsUntil(() => bank.requests.length > 0);
    const callers = ['q-1', 'q-2', 'q-3', 'q-4'].map(() => new AbortController());
    const queued = callers.map((caller, i) => paying.pay(order(`q-${i + 1}`), { signal: caller.signal }));

    // Every queued caller gives up, and only then does the one connection come free.
    for (const caller of callers) caller.abort(new Error('shopper left'));
    release();

    expect(await hung).toMatchObject({ status: 'paid' });
    const outcomes = await within(Promise.all(queued), 4000);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['pending', 'pending', 'pending', 'pending']);
    expect(await within(paying.pay(order('after')), 4000)).toMatchObject({ status: 'paid', attempts: 1 });
    // undici hands each given-up request the connection in turn: it is refused before a byte is written
    // and the connection goes on to the next one, instead of being destroyed and dialled again.
    expect(bank.charges.map((charge) => charge.orderId)).toEqual(['hung', 'after']);
    expect(bank.connections).toBe(1);
  });

  it('close() with payments in flight and queued ends them, opens nothing and leaves no socket or timer', async () => {
    bank.handle = () => {}; // never answers
    const resources = (): string[] =>
      process.getActiveResourcesInfo().filter((name) => name === 'TCPSocketWrap' || name === 'Timeout');
    // Sockets an earlier test destroyed are released on a later turn of the event loop: start from none.
    await within(
      turnsUntil(() => !resources().includes('TCPSocketWrap')),
      2000,
    );
    const before = resources();
    const paying = connect(own);
    const outcomes = ['o-1', 'o-2', 'o-3'].map((orderId) => paying.pay(order(orderId)));
    await turnsUntil(() => bank.requests.length > 0);

    await within(paying.close(), 2000);

    expect((await Promise.all(outcomes)).map((outcome) => outcome.status)).toEqual([
      'pending',
      'pending',
      'pending',
    ]);
    await within(bank.idle(), 2000);
    // The Pool is gone with its socket; it did not connect again to refuse the two queued requests.
    expect(bank.connections).toBe(1);
    expect(resources()).toEqual(before);
  });
});

describe('a dispatcher passed in', () => {
  it('is used and left open by close(): the user closes what the user made', async () => {
    const agent = new Agent({ connections: 1 });
    dispatcher = agent;
    const paying = createPaymentClient({
      gateway: ietfGateway({ origin: bank.origin }),
      ledger: new MemoryLedger(),
      reconcile: false,
      dispatcher: agent,
    });
    expect(await paying.pay(order('o-1'))).toMatchObject({ status: 'paid' });
    await paying.close();

    expect(agent.closed).toBe(false);
    expect(agent.destroyed).toBe(false);
    const response = await agent.request({
      origin: bank.origin,
      path: '/payments',
      method: 'POST',
      body: '{}',
    });
    await response.body.text();
    expect(response.statusCode).toBe(201);
  });

  it('a MockAgent answers the charge: no socket is opened', async () => {
    const mock = new MockAgent();
    mock.disableNetConnect();
    dispatcher = mock;
    mock
      .get('https://bank.test')
      .intercept({ path: '/payments', method: 'POST' })
      .reply(
        201,
        { id: 'pay_mocked', status: 'succeeded' },
        { headers: { 'content-type': 'application/json' } },
      );
    client = createPaymentClient({
      gateway: ietfGateway({ origin: 'https://bank.test' }),
      ledger: new MemoryLedger(),
      reconcile: false,
      dispatcher: mock,
    });

    expect(await client.pay(order('o-1'))).toMatchObject({ status: 'paid', reference: 'pay_mocked' });
    mock.assertNoPendingInterceptors();
  });

  it('an interceptor composed onto an Agent (a proxy or auth layer) sees every request, the key unchanged', async () => {
    const seen: string[] = [];
    const agent = new Agent({ connections: 1 });
    dispatcher = agent;
    const composed = agent.compose((dispatch) => (options, handler) => {
      seen.push(`${options.method} ${options.path}`);
      return dispatch(
        { ...options, headers: { ...(options.headers as Record<string, string>), 'x-proxy': 'yes' } },
        handler,
      );
    });
    const proxied: string[] = [];
    bank.handle = (request, req, res) => {
      proxied.push(`${req.headers['x-proxy']} ${request.key}`);
      paid(res);
    };
    client = createPaymentClient({
      gateway: ietfGateway({ origin: bank.origin }),
      ledger: new MemoryLedger(),
      reconcile: false,
      dispatcher: composed,
    });

    const outcome = await client.pay(order('o-1'));

    expect(outcome).toMatchObject({ status: 'paid' });
    expect(seen).toEqual(['POST /payments']);
    expect(proxied).toEqual([`yes ${outcome.idempotencyKey}`]);
  });
});
