import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A bank in front of the bank: holds each payment until the test lets it through. */
export interface HoldingBank {
  /** Where the shop sends its payments. */
  readonly url: string;
  /** How many payments (`POST`) have reached it, held or not. */
  readonly arrived: number;
  /** How many requests it is holding now. */
  readonly held: number;
  /** Resolves once it holds `count` requests at the same time. */
  holding(count: number): Promise<void>;
  /** Lets every held payment through to the bank, and the ones that come later too. */
  release(): void;
  close(): Promise<void>;
}

const FORWARDED_REQUEST = ['content-type', 'idempotency-key'];
const FORWARDED_RESPONSE = ['content-type', 'retry-after', 'location'];

async function bodyOf(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Forwards to `bankUrl`, holding every payment until `release()`: a test decides when the bank answers,
 * so a second click can be made while the first is in flight without any timing. Status queries pass,
 * unless `holdQueries` (then nothing the shop asks is answered before `release()`).
 */
export async function holdingBank(
  bankUrl: string,
  options: { readonly holdQueries?: boolean } = {},
): Promise<HoldingBank> {
  let arrived = 0;
  let held: Array<() => void> | undefined = [];
  const waiting: Array<{ count: number; resolve: () => void }> = [];
  const hold = () =>
    new Promise<void>((resolve) => {
      held?.push(resolve);
      const count = held?.length ?? 0;
      for (const waiter of waiting.filter((w) => count >= w.count)) {
        waiting.splice(waiting.indexOf(waiter), 1);
        waiter.resolve();
      }
    });
  const server = createServer(async (request, response) => {
    const body = await bodyOf(request);
    if (request.method === 'POST') arrived++;
    if (held && (request.method === 'POST' || options.holdQueries)) await hold();
    const headers: Record<string, string> = {};
    for (const name of FORWARDED_REQUEST) {
      const value = request.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    let answer: Response;
    try {
      answer = await fetch(`${bankUrl}${request.url}`, {
        method: request.method ?? 'GET',
        headers,
        ...(request.method === 'POST' ? { body } : {}),
      });
    } catch {
      // The bank is gone (a test closing it while a payment held until `close()` was on its way there):
      // the shop that sent it sees a dropped connection, as from a bank that went away.
      response.destroy();
      return;
    }
    const answerHeaders: Record<string, string> = {};
    for (const name of FORWARDED_RESPONSE) {
      const value = answer.headers.get(name);
      if (value !== null) answerHeaders[name] = value;
    }
    response.writeHead(answer.status, answerHeaders).end(await answer.text());
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const release = () => {
    const waiting = held ?? [];
    held = undefined;
    for (const resolve of waiting) resolve();
  };
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get arrived() {
      return arrived;
    },
    get held() {
      return held?.length ?? 0;
    },
    holding(count) {
      if ((held?.length ?? 0) >= count) return Promise.resolve();
      return new Promise<void>((resolve) => waiting.push({ count, resolve }));
    },
    release,
    async close() {
      release();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
