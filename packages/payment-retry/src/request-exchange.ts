import { type Dispatcher, errors } from 'undici';
import type { GatewayResponse } from './gateway.js';
import { bodyText } from './text-exchange.js';

const noop = (): void => {};

/**
 * One HTTP exchange through a dispatcher the user passed in (an Agent, a MockAgent, a composed
 * interceptor chain), by its `request()`, the body read as text up to `maxBytes`. What a bare
 * `request()` + `body.text()` lacks, and a payment needs:
 *
 * - The signal wins at once. undici's `request()` honours an abort only once the request has a socket,
 *   so a payment queued behind a hung answer would outlive its deadline by the other payment's timeout.
 * - The body is bounded (`pool.maxResponseBytes`, which undici applies only in a Pool it was given it
 *   to): a larger body is destroyed unread, and so is the body of an answer that comes after the signal
 *   aborted, so neither holds its connection.
 *
 * Errors are the dispatcher's; an abort rejects with the signal's reason, a body over `maxBytes` with
 * undici's `ResponseExceededMaxSizeError` (`UND_ERR_RES_EXCEEDED_MAX_SIZE`), as an own Pool would.
 * {@link RequestExchange.responded} tells a failure before the status line from one while reading the body.
 */
export class RequestExchange {
  /** The status line and headers came. */
  responded = false;

  async send(
    dispatcher: Dispatcher,
    options: Dispatcher.RequestOptions,
    signal: AbortSignal,
    maxBytes: number,
  ): Promise<GatewayResponse> {
    signal.throwIfAborted();
    const requested = dispatcher.request({ ...options, signal });
    let onAbort = noop;
    const aborted = new Promise<never>((_resolve, reject) => {
      onAbort = () => reject(signal.reason);
    });
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const response = await Promise.race([requested, aborted]);
      this.responded = true;
      const body = await Promise.race([readText(response.body, maxBytes), aborted]);
      return { statusCode: response.statusCode, headers: response.headers, body };
    } catch (error) {
      // Whatever answer is left unread (one that came after the abort, or is still streaming) is
      // destroyed: unread, it would keep its connection from the next payment.
      requested.then((response) => destroyBody(response.body), noop);
      throw error;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

async function readText(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  // Leaving the loop by the throw destroys the stream, and with it the connection's unread rest.
  for await (const chunk of body as AsyncIterable<Buffer | string>) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    length += buffer.length;
    if (length > maxBytes) throw new errors.ResponseExceededMaxSizeError();
    chunks.push(buffer);
  }
  return bodyText(chunks, length);
}

function destroyBody(body: Dispatcher.ResponseData['body']): void {
  if (typeof body?.destroy === 'function' && !body.destroyed) body.destroy();
}
