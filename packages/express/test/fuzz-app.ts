/**
 * The fuzz app (packages/http/test/fuzz.ts) the Express way, and a socket client that sends a
 * `FuzzRequest` exactly: method, target, repeated fields and body bytes as generated.
 */
import { request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express5, { type NextFunction, type Request, type Response } from 'express';
import {
  bodyBytes,
  type FuzzClient,
  type FuzzControls,
  type FuzzOptions,
  type FuzzRequest,
  type FuzzResponse,
  outcomeOf,
} from '../../http/test/fuzz.js';
import { idempotency, loadShedding, rateLimit } from '../src/index.js';

export interface RunningApp {
  readonly client: FuzzClient;
  close(): Promise<void>;
}

/**
 * The checkout route as the shop guards it, in the order Fastify's hooks run: the rate limit (onRequest
 * there) before the body parser, then idempotency, then load shedding (the shop's order: a re-click of
 * an order being paid is answered from its key, not shed).
 */
export async function startExpressApp(
  options: FuzzOptions,
  controls: FuzzControls,
  express: typeof express5 = express5,
): Promise<RunningApp> {
  const app = express();
  app.set('trust proxy', options.trustProxy);
  const limiter = rateLimit(options.rateLimit);
  const idempotent = idempotency(options.idempotency);
  const shed = loadShedding({ ...options.shedding, priority: options.priority });
  const chain = [
    limiter,
    express.json({ limit: options.bodyLimit }),
    idempotent,
    shed,
    async (req: Request, res: Response, next: NextFunction) => {
      try {
        const order = await controls.checkout();
        res.status(outcomeOf(req.headers)).location(`/orders/${order}`).json({ order });
      } catch (error) {
        next(error);
      }
    },
  ];
  app
    .route('/checkout')
    .post(...chain)
    .patch(...chain);
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    client: { request: (request) => send(port, request) },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await limiter.close();
      await idempotent.close();
    },
  };
}

/** One request on its own connection, fields as a raw list so a repeated field goes out repeated. */
function send(port: number, request: FuzzRequest): Promise<FuzzResponse> {
  return new Promise((resolve, reject) => {
    const fields: string[] = ['host', `127.0.0.1:${port}`];
    for (const [name, value] of request.headers) fields.push(name, value);
    const body = request.body === undefined ? undefined : bodyBytes(request.body);
    if (body !== undefined)
      fields.push('content-type', 'application/json', 'content-length', String(body.length));
    const outgoing = httpRequest(
      { host: '127.0.0.1', port, method: request.method, path: request.path, headers: fields, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const headers: Record<string, string> = {};
          for (const [name, value] of Object.entries(res.headers)) {
            if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
          }
          resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString('utf8') });
        });
      },
    );
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}
