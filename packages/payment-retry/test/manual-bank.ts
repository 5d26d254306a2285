import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { PaymentLedger } from '../src/ledger.js';
import { MemoryLedger } from '../src/memory-ledger.js';

/** One request the test has not answered yet. */
export interface ManualRequest {
  readonly method: string;
  readonly path: string;
  /** Header names in lower case. */
  readonly headers: Record<string, string>;
  readonly body: string;
  /** Whether the request's signal aborted it (it then rejected with the signal's reason). */
  readonly aborted: boolean;
  /** Answers it with `status`, a JSON `body` and, when given, more response headers (lower-case names). */
  answer(status: number, body?: unknown, headers?: Record<string, string>): void;
  /** Fails it as undici would, e.g. with `code: 'UND_ERR_HEADERS_TIMEOUT'` for a lost answer. */
  fail(error: unknown): void;
}

/**
 * A bank the test answers by hand, passed to the client as its `dispatcher`: no socket and no timer, so
 * a test decides exactly when each request is answered, fails or is still open. Honours the request's
 * `signal` as undici does (an abort rejects it with the signal's reason).
 */
export class ManualBank {
  readonly requests: ManualRequest[] = [];

  readonly dispatcher = {
    request: (options: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData> =>
      new Promise((resolve, reject) => {
        const signal = options.signal as AbortSignal | undefined;
        let aborted = false;
        const request: ManualRequest = {
          method: options.method,
          path: options.path,
          headers: Object.fromEntries(
            Object.entries((options.headers ?? {}) as Record<string, string>).map(([name, value]) => [
              name.toLowerCase(),
              value,
            ]),
          ),
          body: String(options.body ?? ''),
          get aborted() {
            return aborted;
          },
          answer: (statusCode, body, headers) =>
            resolve({
              statusCode,
              headers: { 'content-type': 'application/json', ...headers },
              // A stream, as undici's is: the client reads it chunk by chunk to bound its size.
              body: Readable.from(body === undefined ? [] : [Buffer.from(JSON.stringify(body))]),
            } as unknown as Dispatcher.ResponseData),
          fail: reject,
        };
        this.requests.push(request);
        if (signal === undefined) return;
        const onAbort = () => {
          aborted = true;
          reject(signal.reason);
        };
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }),
  } as unknown as Dispatcher;

  /** Charges (POSTs) received so far. */
  get charges(): ManualRequest[] {
    return this.requests.filter((request) => request.method === 'POST');
  }

  /** Waits (a few event-loop turns at a time, never a timer) until `count` requests have arrived. */
  async until(count: number): Promise<ManualRequest> {
    for (let turn = 0; this.requests.length < count; turn++) {
      if (turn > 1000) throw new Error(`expected ${count} requests, got ${this.requests.length}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    return this.requests[count - 1] as ManualRequest;
  }
}

/** Lets the event loop run `count` turns: ledgers and promises settle, no timer fires early. */
export async function turns(count = 20): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * A {@link MemoryLedger} that answers on a later turn of the event loop, as a networked ledger (Postgres)
 * would: between a call and its answer, other calls run.
 */
export function laterLedger(inner = new MemoryLedger()): PaymentLedger & { readonly inner: MemoryLedger } {
  const later = <T>(answer: () => T): Promise<T> =>
    new Promise((resolve, reject) =>
      setImmediate(() => {
        try {
          resolve(answer());
        } catch (error) {
          reject(error);
        }
      }),
    );
  return {
    inner,
    latest: (scope) => later(() => inner.latest(scope)),
    get: (key) => later(() => inner.get(key)),
    create: (record) => later(() => inner.create(record)),
    createSending: (record) => later(() => inner.createSending(record)),
    transition: (key, to, patch) => later(() => inner.transition(key, to, patch)),
    recordAttempt: (attempt) => later(() => inner.recordAttempt(attempt)),
    attempts: (key) => later(() => inner.attempts(key)),
    unresolved: (limit) => later(() => inner.unresolved(limit)),
    close: () => later(() => inner.close()),
  };
}
