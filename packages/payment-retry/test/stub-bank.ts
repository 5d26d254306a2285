import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** What the stub does with one request: answer, or drop the connection after the bank "acted". */
export type StubAction =
  | { readonly status: number; readonly body?: unknown; readonly headers?: Record<string, string> }
  | { readonly drop: true }
  | { readonly hang: true };

export interface StubRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

/**
 * A tiny programmable HTTP bank on 127.0.0.1:0 for unit tests: `handle` decides each answer and the
 * stub records every request. Real sockets, so undici's error codes are the real ones.
 */
export class StubBank {
  readonly requests: StubRequest[] = [];
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #hanging = new Set<ServerResponse>();
  handle: (request: StubRequest) => StubAction;

  private constructor(handle: (request: StubRequest) => StubAction) {
    this.handle = handle;
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const request = {
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString(),
        };
        this.requests.push(request);
        const action = this.handle(request);
        if ('drop' in action) {
          req.socket.destroy();
          return;
        }
        if ('hang' in action) {
          this.#hanging.add(res);
          return;
        }
        res.writeHead(action.status, { 'content-type': 'application/json', ...action.headers });
        res.end(action.body === undefined ? '' : JSON.stringify(action.body));
      });
    });
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(handle: (request: StubRequest) => StubAction): Promise<StubBank> {
    const bank = new StubBank(handle);
    bank.#server.listen(0, '127.0.0.1');
    await once(bank.#server, 'listening');
    return bank;
  }

  get url(): string {
    const { port } = this.#server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  /** Charges (POSTs) received so far. */
  get charges(): StubRequest[] {
    return this.requests.filter((request) => request.method === 'POST');
  }

  async close(): Promise<void> {
    for (const res of this.#hanging) res.destroy();
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
