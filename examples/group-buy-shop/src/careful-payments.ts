import { randomUUID } from 'node:crypto';
import Bottleneck from 'bottleneck';
import CircuitBreaker from 'opossum';
import pRetry from 'p-retry';
import type {
  BankAnswer,
  PaymentIntent,
  Payments,
  PaymentsContext,
  PaymentsStatus,
  PayOutcome,
} from './payments.js';
import { failOrdersLeftPaying, postPayment } from './payments.js';

/** A bank answer the careful shop treats as a failure (so p-retry retries it and opossum counts it). */
class BankError extends Error {
  readonly statusCode: number | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(message: string, statusCode?: number, retryAfterMs?: number, cause?: unknown) {
    super(message, { cause });
    this.name = 'BankError';
    this.statusCode = statusCode;
    this.retryAfterMs = retryAfterMs;
  }
}

/** How long one request to the bank may take before the shop gives up on it. */
const REQUEST_TIMEOUT_MS = 8000;

/**
 * The shop a competent engineer assembles today from the libraries everyone uses:
 * - bottleneck spaces requests to the bank's flow limit (`minTime = 1000 / rate`) with a concurrency cap;
 * - opossum opens when the bank keeps failing, with a timeout per request;
 * - p-retry retries transient failures with exponential backoff and jitter;
 * - an idempotency key made per call, as stripe-node does: a fresh key for each `pay()`, reused only across
 *   that call's own retries;
 * - the order is locked in the database while a checkout holds it (see the app), and
 *   express-rate-limit sits in front of the checkout route.
 * Its gap is the one stripe-node documents: when a call gives up without knowing whether the bank charged,
 * the shop says "failed", and the student's next click makes a new call with a new key.
 */
export class CarefulPayments implements Payments {
  readonly name = 'careful' as const;
  readonly #context: PaymentsContext;
  readonly #limiter: Bottleneck;
  readonly #breaker: CircuitBreaker<[string, PaymentIntent], BankAnswer>;
  #active = 0;

  constructor(context: PaymentsContext) {
    this.#context = context;
    this.#limiter = new Bottleneck({ minTime: 1000 / context.bankRate, maxConcurrent: 64 });
    this.#breaker = new CircuitBreaker((key: string, intent: PaymentIntent) => this.#send(key, intent), {
      timeout: REQUEST_TIMEOUT_MS,
      errorThresholdPercentage: 50,
      volumeThreshold: 20,
      resetTimeout: 5000,
      // A decline or a validation error is the bank working correctly: not a reason to open.
      errorFilter: (error) => {
        const status = (error as BankError).statusCode;
        return status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429;
      },
    });
  }

  async #send(key: string, intent: PaymentIntent): Promise<BankAnswer> {
    const { db, meter, bankUrl } = this.#context;
    const handle = db.recordAttempt(intent.orderId, intent.checkoutId, key);
    meter.mark('bank');
    this.#active++;
    try {
      const answer = await postPayment(bankUrl, key, intent, AbortSignal.timeout(REQUEST_TIMEOUT_MS));
      const ok = answer.statusCode === 200 || answer.statusCode === 201;
      const throttled = answer.statusCode === 429 || answer.statusCode === 503;
      db.finishAttempt(
        handle,
        ok ? 'succeeded' : answer.statusCode === 402 ? 'declined' : throttled ? 'throttled' : 'error',
        answer.statusCode,
      );
      if (ok || answer.statusCode === 402) return answer;
      throw new BankError(`The bank answered ${answer.statusCode}`, answer.statusCode, answer.retryAfterMs);
    } catch (error) {
      if (error instanceof BankError) throw error;
      db.finishAttempt(handle, 'unknown', null);
      throw new BankError('The bank did not answer', undefined, undefined, error);
    } finally {
      this.#active--;
    }
  }

  async pay(intent: PaymentIntent): Promise<PayOutcome> {
    const key = randomUUID();
    try {
      const answer = await pRetry(() => this.#limiter.schedule(() => this.#breaker.fire(key, intent)), {
        retries: 3,
        minTimeout: 250,
        maxTimeout: 2000,
        randomize: true,
        unref: true,
        shouldRetry: ({ error }) => {
          const status = (error as BankError).statusCode;
          // Retry network errors, 5xx, 409 (still processing), 429; never other 4xx.
          return status === undefined || status >= 500 || status === 409 || status === 429;
        },
      });
      if (answer.statusCode === 402) return { status: 'declined', reason: answer.body?.reason ?? 'declined' };
      return { status: 'paid', paymentId: answer.body?.id ?? key };
    } catch (error) {
      const breakerOpen = (error as { code?: string }).code === 'EOPENBREAKER';
      return {
        status: 'failed',
        message: breakerOpen
          ? 'The bank is unavailable right now. Please try again in a moment.'
          : `Payment failed: ${(error as Error).message}. Please try again.`,
      };
    }
  }

  /** After a restart: the orders the last process left `paying` are `failed` (see {@link failOrdersLeftPaying}). */
  async syncOrders(): Promise<number> {
    return failOrdersLeftPaying(this.#context.db);
  }

  status(): PaymentsStatus {
    const counts = this.#limiter.counts();
    return {
      breaker: this.#breaker.opened ? 'open' : this.#breaker.halfOpen ? 'half-open' : 'closed',
      queued: counts.QUEUED + counts.RECEIVED,
      active: this.#active,
      bankRate: this.#context.bankRate,
    };
  }

  async close(): Promise<void> {
    this.#breaker.shutdown();
    await this.#limiter.stop({ dropWaitingJobs: true }).catch(() => {});
  }
}
