import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/**
 * How long the answers made at the end of the grace period may take to go out before the connections
 * still open are closed (a request nothing answers, a client that does not read its answer).
 */
const FLUSH_MS = 1000;

/** How {@link ServerDrain.close} ends its server. */
export interface DrainOptions {
  /** How long the requests in flight may run on after `close()`, in ms. */
  readonly graceMs: number;
  /**
   * Called once when requests are still in flight at the end of the grace period, to make them answer:
   * the shop closes its payments, and the floodgate payment client ends each payment waiting for the bank
   * as `pending` (kept in the ledger for the next start), which its checkout answers 202 + `Location`.
   */
  readonly answerInFlight: () => Promise<void>;
}

/** What {@link ServerDrain.close} did. */
export interface DrainResult {
  /** Requests still in flight at the end of the grace period (0: all of them finished within it). */
  readonly inFlightAtGraceEnd: number;
  /** Connections closed with a request still unanswered after `answerInFlight` and the flush. */
  readonly dropped: number;
}

/**
 * A graceful close for a Node HTTP server, as a rolling deploy needs it: stop accepting connections, close
 * the idle keep-alive ones at once, let the requests in flight finish for a grace period, then have them
 * answered (`answerInFlight`) rather than dropped. Built before the server listens: it counts requests as
 * they come.
 */
export class ServerDrain {
  readonly #server: Server;
  readonly #inFlight = new Set<ServerResponse>();
  #closing = false;
  #onIdle: (() => void) | undefined;

  constructor(server: Server) {
    this.#server = server;
    server.on('request', (_request: IncomingMessage, response: ServerResponse) => {
      this.#inFlight.add(response);
      response.once('close', () => this.#finished(response));
    });
  }

  /** Requests being answered now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  #finished(response: ServerResponse): void {
    this.#inFlight.delete(response);
    if (!this.#closing) return;
    // After `server.close()` Node keeps a keep-alive connection open once its answer went out, until its
    // keep-alive timeout (30 s in main.ts): it is idle now, so it goes now.
    this.#server.closeIdleConnections();
    if (this.#inFlight.size === 0) this.#onIdle?.();
  }

  /**
   * Stops accepting connections, closes the idle ones, waits up to `graceMs` for the requests in flight,
   * calls `answerInFlight` for those still running, then closes every connection left once their answers
   * went out (at most a second later). Resolves when no connection is open.
   */
  async close(options: DrainOptions): Promise<DrainResult> {
    this.#closing = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    let inFlightAtGraceEnd = 0;
    if (!(await this.#idleWithin(options.graceMs))) {
      inFlightAtGraceEnd = this.#inFlight.size;
      await options.answerInFlight();
      await this.#idleWithin(FLUSH_MS);
    }
    const dropped = this.#inFlight.size;
    this.#server.closeAllConnections();
    await closed;
    return { inFlightAtGraceEnd, dropped };
  }

  /** Whether every request in flight finished within `ms`. */
  #idleWithin(ms: number): Promise<boolean> {
    if (this.#inFlight.size === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      // Not unref()'d: a stopping process must live to answer and close its database, even when the
      // sockets it waits on are the only other thing keeping it alive.
      const timer = setTimeout(() => {
        this.#onIdle = undefined;
        resolve(false);
      }, ms);
      this.#onIdle = () => {
        clearTimeout(timer);
        this.#onIdle = undefined;
        resolve(true);
      };
    });
  }
}

/** A {@link ServerDrain} for `server`; create it before the server listens. */
export function serverDrain(server: Server): ServerDrain {
  return new ServerDrain(server);
}
