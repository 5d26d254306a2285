import { request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type BankSim, startBankSim } from '@floodgate/bank-sim';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type ApiCase,
  type AppName,
  BANK_RATE,
  CardPayments,
  type CaseRequest,
  type CaseResponse,
  type CaseShop,
  type Client,
  cases,
  type Expected,
  INSTANCE,
} from '../test/api-cases.js';
import { createShopApp } from './app.js';
import { CheckoutShedder } from './checkout-shedder.js';
import { ShopDb } from './db.js';
import { createFastifyShop } from './fastify-app.js';
import { floodgateWiring } from './floodgate-shop.js';
import { Meter } from './meter.js';
import type { MeterName } from './payments.js';
import { appPartsOf } from './shops.js';

// One table of API cases (test/api-cases.ts), run against the Express shop over a real socket and the
// Fastify shop through inject(): both as the floodgate shop, with the same guards in front of checkout.

/** The wall clock the dashboard's seconds start from: on a second's boundary, so 1000 ms is one second. */
const WALL_CLOCK_START = 1_700_000_000_000;
/** Fields the transport sets, not the app: not compared. */
const TRANSPORT = new Set(['date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding']);

function flatten(headers: Record<string, string | string[] | number | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  return out;
}

const lengthOf = (request: CaseRequest) =>
  request.body === undefined ? {} : { 'content-length': String(Buffer.byteLength(request.body)) };

/** A client on a fresh connection per request (closed after it), sending exactly the case's fields. */
function socketClient(port: number): Client {
  return {
    request: (request) =>
      new Promise<CaseResponse>((resolve, reject) => {
        const outgoing = httpRequest(
          {
            host: '127.0.0.1',
            port,
            method: request.method ?? 'GET',
            path: request.path,
            agent: false,
            headers: { ...request.headers, ...lengthOf(request) },
          },
          (response) => {
            const chunks: Buffer[] = [];
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.on('end', () =>
              resolve({
                status: response.statusCode ?? 0,
                headers: flatten(response.headers),
                body: Buffer.concat(chunks).toString('utf8'),
              }),
            );
            response.on('error', reject);
          },
        );
        outgoing.on('error', reject);
        outgoing.end(request.body);
      }),
  };
}

interface Built {
  readonly shop: CaseShop;
  close(): Promise<void>;
}

/** Builds `app` as the floodgate shop for one case: its own database, bank, shedder and clock. */
async function build(app: AppName, testCase: ApiCase): Promise<Built> {
  let now = 0;
  const clock = () => now;
  const db = new ShopDb(':memory:');
  const meter = new Meter<MeterName>(120, () => WALL_CLOCK_START + now);
  const payments = new CardPayments();
  const breaker: CaseShop['breaker'] = { state: 'closed', retryAfterMs: 3000 };
  const shedder = new CheckoutShedder({ breaker }, meter);
  let bank: BankSim | undefined;
  if (testCase.shop?.bank === 'bank-sim') bank = await startBankSim({ rate: BANK_RATE, latencyMs: 0 });
  const bankUrl = bank?.url ?? (testCase.shop?.bank === 'unreachable' ? 'http://127.0.0.1:1' : undefined);
  const common = { db, meter, payments, clock, bankUrl, instance: INSTANCE };
  const advance = (ms: number) => {
    now += ms;
  };
  const closeRest = async () => {
    db.close();
    await bank?.close();
  };

  if (app === 'express') {
    const wiring = floodgateWiring({ payments, shedder, close: async () => {} }, { clock });
    const server: Server = createShopApp({ ...common, ...appPartsOf(wiring) }).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const client = socketClient((server.address() as AddressInfo).port);
    return {
      shop: { app, client, db, meter, payments, breaker, advance },
      async close() {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await wiring.close();
        await closeRest();
      },
    };
  }
  const fastify = await createFastifyShop({ ...common, shedder });
  const client: Client = {
    async request(request) {
      const response = await fastify.inject({
        method: (request.method ?? 'GET') as 'GET',
        url: request.path,
        headers: { ...request.headers, ...lengthOf(request) },
        ...(request.body === undefined ? {} : { payload: request.body }),
      });
      return { status: response.statusCode, headers: flatten(response.headers), body: response.body };
    },
  };
  return {
    shop: { app, client, db, meter, payments, breaker, advance },
    async close() {
      await fastify.close();
      await closeRest();
    },
  };
}

function expectAnswer(response: CaseResponse, expected: Expected): void {
  const { 'content-type': contentType, ...rest } = response.headers;
  const fields = Object.fromEntries(Object.entries(rest).filter(([name]) => !TRANSPORT.has(name)));
  expect({ status: response.status, contentType, fields }).toEqual({
    status: expected.status,
    contentType: expected.contentType,
    fields: expected.headers ?? {},
  });
  const json = /json/.test(expected.contentType) && response.body !== '';
  expect(json ? JSON.parse(response.body) : response.body).toEqual(expected.body);
}

for (const app of ['express', 'fastify'] as const) {
  describe(`the shop's API table (${app})`, () => {
    let built: Built | undefined;
    afterEach(async () => {
      await built?.close();
      built = undefined;
    });

    for (const testCase of cases) {
      it(testCase.name, async () => {
        built = await build(app, testCase);
        const { shop } = built;
        const errorLog = vi.spyOn(console, 'error').mockImplementation(() => {});
        const given = (await testCase.given?.(shop)) ?? {};
        const response = await shop.client.request(testCase.request(given));
        const expected = { ...testCase.expect(given), ...testCase.differs?.[app] };
        expectAnswer(response, expected);
        if (expected.logged) expect(errorLog).toHaveBeenCalledTimes(1);
        else expect(errorLog).not.toHaveBeenCalled();
        await testCase.after?.(shop, given, response);
      });
    }
  });
}

describe("the shop's API table", () => {
  it('names each case once; a difference it records is one, and says why', () => {
    const names = cases.map((testCase) => testCase.name);
    expect(new Set(names).size).toBe(names.length);
    for (const { differs } of cases) {
      if (differs === undefined) continue;
      expect(differs.why).not.toBe('');
      expect(differs.express).not.toEqual(differs.fastify);
    }
  });
});
