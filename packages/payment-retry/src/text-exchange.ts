import type { IncomingHttpHeaders } from 'node:http';
import { type Dispatcher, errors } from 'undici';
import type { GatewayResponse } from './gateway.js';

/** What can stop an exchange: an AbortSignal, or a cancel token that holds the one exchange it may stop. */
export interface ExchangeCanceller {
  readonly aborted: boolean;
  readonly reason: unknown;
  /** The exchange in flight, which the token aborts when it is cancelled. */
  exchange: TextExchange | undefined;
}

/**
 * One HTTP exchange through undici's `dispatch()`, the whole body read as text: what
 * `dispatcher.request()` plus `body.text()` give, without the AsyncResource, the Readable stream and
 * its consume promise that `request()` makes for every response. Measured on the bench's path
 * (callgrind, instructions per payment with the memory ledger; see bench/README.md, Session 3).
 *
 * Errors are undici's, as `request()` would reject with them; an abort rejects with the canceller's
 * reason at once, even while the request waits in the pool's queue for a connection (where `request()`
 * would wait until undici hands it one: a payment's deadline must not wait for another payment's hung
 * answer). {@link TextExchange.started} tells a request that never reached a socket (not sent) from one
 * that did, and {@link TextExchange.responded} a failure before the status line (classify it) from one
 * while reading the body (the bank acted).
 */
export class TextExchange implements Dispatcher.DispatchHandler {
  /**
   * undici handed the request a socket and was about to write it. Until then not a byte of it can have
   * left, whatever the error.
   */
  started = false;
  /** The status line and headers came. */
  responded = false;
  #statusCode = 0;
  #headers: IncomingHttpHeaders = {};
  #chunks: Buffer[] = [];
  #length = 0;
  #controller: Dispatcher.DispatchController | undefined = undefined;
  #aborted = false;
  #reason: unknown = undefined;
  #settled = false;
  #resolve: ((response: GatewayResponse) => void) | undefined = undefined;
  #reject: ((error: unknown) => void) | undefined = undefined;
  #canceller: ExchangeCanceller | AbortSignal | undefined = undefined;
  #onSignalAbort: (() => void) | undefined = undefined;

  /** Dispatches `options` and answers the response with its body as text. */
  send(
    dispatcher: Dispatcher,
    options: Dispatcher.DispatchOptions,
    canceller: ExchangeCanceller | AbortSignal | undefined,
  ): Promise<GatewayResponse> {
    const answer = new Promise<GatewayResponse>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    if (canceller !== undefined) {
      if (canceller.aborted) {
        // Not dispatched at all: queued behind a hung answer, it would hold its caller until that one ended.
        this.#aborted = true;
        this.#settled = true;
        return Promise.reject(canceller.reason ?? new errors.RequestAbortedError());
      }
      if (canceller instanceof AbortSignal) {
        this.#onSignalAbort = () => this.abort(canceller.reason);
        canceller.addEventListener('abort', this.#onSignalAbort, { once: true });
        this.#canceller = canceller;
      } else {
        canceller.exchange = this;
        this.#canceller = canceller;
      }
    }
    dispatcher.dispatch(options, this);
    return answer;
  }

  /** Stops the exchange; it rejects with `reason`. */
  abort(reason: unknown): void {
    if (this.#aborted || this.#settled) return;
    this.#aborted = true;
    this.#reason = reason ?? new errors.RequestAbortedError();
    if (this.#controller !== undefined) {
      this.#controller.abort(this.#reason as Error);
      return;
    }
    // Not started: the request waits in the pool's queue, maybe behind a hung answer, and undici cannot
    // take it out of there. The caller is answered now; onRequestStart refuses the request in its turn.
    this.#finish();
    (this.#reject as (error: unknown) => void)(this.#reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.#aborted) {
      // Thrown, not controller.abort(): undici's abort destroys the socket it just handed over, so every
      // payment that gave up in the queue would cost the bank a connection (TCP and TLS handshakes) when
      // its turn came. A throw here fails the request before a byte is written and undici gives the same
      // socket to the next request (client-h1 writeH1: onConnect's error goes to errorRequest).
      throw this.#reason;
    }
    this.started = true;
    this.#controller = controller;
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ): void {
    // 1xx informational answers are not the response (request() skips them too).
    if (statusCode < 200) return;
    this.responded = true;
    this.#statusCode = statusCode;
    this.#headers = headers;
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  onResponseEnd(): void {
    if (this.#settled) return;
    this.#finish();
    (this.#resolve as (response: GatewayResponse) => void)({
      statusCode: this.#statusCode,
      headers: this.#headers,
      body: bodyText(this.#chunks, this.#length),
    });
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    if (this.#settled) return;
    this.#finish();
    (this.#reject as (error: unknown) => void)(this.#aborted ? this.#reason : error);
  }

  #finish(): void {
    this.#settled = true;
    const canceller = this.#canceller;
    if (canceller === undefined) return;
    this.#canceller = undefined;
    if (canceller instanceof AbortSignal) {
      canceller.removeEventListener('abort', this.#onSignalAbort as () => void);
    } else if (canceller.exchange === this) {
      canceller.exchange = undefined;
    }
  }
}

/** A body's chunks (`length` bytes in all) as UTF-8 text, without a leading byte order mark. */
export function bodyText(chunks: readonly Buffer[], length: number): string {
  if (chunks.length === 0 || length === 0) return '';
  const buffer = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, length);
  // Skip a UTF-8 byte order mark, as undici's body.text() does.
  const start = buffer.length > 2 && buffer[0] === 0xef && buffer[1] === 0xbb && buffer[2] === 0xbf ? 3 : 0;
  return buffer.toString('utf8', start);
}
