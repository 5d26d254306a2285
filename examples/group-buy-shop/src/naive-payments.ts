import { randomUUID } from 'node:crypto';
import type { BankAnswer, Payments, PaymentsContext, PaymentsStatus, PayOutcome } from './payments.js';
import { failOrdersLeftPaying, postPayment } from './payments.js';

/** How many times the naive shop tries the bank for one click (the first try included). */
const TRIES = 3;

/**
 * The shop as it is often first written: a plain fetch to the bank, no limiter, no breaker, and when a
 * request fails it is sent again with a fresh idempotency key (the bank requires one; a new one per
 * request is what a handler that calls `randomUUID()` next to its fetch does).
 */
export class NaivePayments implements Payments {
  readonly name = 'naive' as const;
  readonly #context: PaymentsContext;
  #active = 0;

  constructor(context: PaymentsContext) {
    this.#context = context;
  }

  async pay(intent: Parameters<Payments['pay']>[0]): Promise<PayOutcome> {
    const { db, meter, bankUrl } = this.#context;
    let last = 'the bank did not answer';
    for (let attempt = 1; attempt <= TRIES; attempt++) {
      const key = randomUUID();
      const handle = db.recordAttempt(intent.orderId, intent.checkoutId, key);
      meter.mark('bank');
      this.#active++;
      let answer: BankAnswer;
      try {
        answer = await postPayment(bankUrl, key, intent);
      } catch (error) {
        db.finishAttempt(handle, 'unknown', null);
        last = `the bank did not answer (${(error as Error).message})`;
        continue;
      } finally {
        this.#active--;
      }
      if (answer.statusCode === 201 || answer.statusCode === 200) {
        db.finishAttempt(handle, 'succeeded', answer.statusCode);
        return { status: 'paid', paymentId: answer.body?.id ?? key };
      }
      if (answer.statusCode === 402) {
        db.finishAttempt(handle, 'declined', 402);
        return { status: 'declined', reason: answer.body?.reason ?? 'declined' };
      }
      db.finishAttempt(
        handle,
        answer.statusCode === 429 || answer.statusCode === 503 ? 'throttled' : 'error',
        answer.statusCode,
      );
      last = `the bank answered ${answer.statusCode}`;
    }
    return { status: 'failed', message: `Payment failed: ${last}. Please try again.` };
  }

  /** After a restart: the orders the last process left `paying` are `failed` (see {@link failOrdersLeftPaying}). */
  async syncOrders(): Promise<number> {
    return failOrdersLeftPaying(this.#context.db);
  }

  status(): PaymentsStatus {
    return { breaker: 'none', queued: 0, active: this.#active, bankRate: 0 };
  }

  async close(): Promise<void> {}
}
