/**
 * The fuzz app (packages/http/test/fuzz.ts) the Express way, answering over a real socket (fuzz.ts's
 * `socketClient` sends each `FuzzRequest` exactly as generated).
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express5, { type NextFunction, type Request, type Response } from 'express';
import {
  type FuzzClient,
  type FuzzControls,
  type FuzzOptions,
  outcomeOf,
  socketClient,
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
    client: socketClient(port),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await limiter.close();
      await idempotent.close();
    },
  };
}
