import type { CircuitBreaker } from '@floodgate/circuit-breaker';
import type { AttemptEvent, PaymentClient, PaymentOutcome } from '@floodgate/payment-retry';
import type { Gate } from '@floodgate/token-bucket';
import type { PaymentIntent, Payments, PaymentsContext, PaymentsStatus, PayOutcome } from './payments.js';

/** Error codes of a call refused before it left for the bank (nothing can have been charged). */
const REFUSED_LOCALLY = new Set(['ERR_QUEUE_FULL', 'ERR_RATE_LIMITED', 'ERR_CIRCUIT_OPEN']);

function toPayOutcome(outcome: PaymentOutcome): PayOutcome {
  switch (outcome.status) {
    case 'paid':
      return { status: 'paid', paymentId: outcome.reference };
    case 'declined':
      return { status: 'declined', reason: outcome.reason };
    case 'pending':
      return { status: 'pending' };
  }
}

/**
 * The floodgate shop's payments: @floodgate/payment-retry with a durable SQLite ledger (in the shop's own
 * database), a key derived from the order (so a re-click, a retry or a restart reuses it), the bank's flow
 * limit as a token-bucket gate and a circuit breaker in front of the bank.
 */
export class FloodgatePayments implements Payments {
  readonly name = 'floodgate' as const;
  readonly #context: PaymentsContext;
  readonly #client: PaymentClient;
  readonly #gate: Gate;
  readonly #breaker: CircuitBreaker;

  constructor(
    context: PaymentsContext,
    parts: { client: PaymentClient; gate: Gate; breaker: CircuitBreaker },
  ) {
    this.#context = context;
    this.#client = parts.client;
    this.#gate = parts.gate;
    this.#breaker = parts.breaker;
    this.#client.on('attempt', (event) => this.#recordAttempt(event));
    // Settled in the background (reconciler, recovery): the order follows.
    this.#client.on('outcome', (outcome) => {
      if (outcome.status !== 'pending') context.onSettled?.(outcome.orderId, toPayOutcome(outcome));
    });
  }

  #recordAttempt(event: AttemptEvent): void {
    // Status queries are not payments; a request refused locally never reached the bank.
    if (event.kind !== 'charge' || event.outcome === 'not_sent') return;
    const { db, meter } = this.#context;
    meter.mark('bank');
    const code = event.statusCode;
    const now = Date.now();
    db.recordFinishedAttempt({
      orderId: event.orderId,
      checkoutId: 'payment-client',
      idempotencyKey: event.idempotencyKey,
      status:
        event.outcome === 'unknown'
          ? 'unknown'
          : code !== undefined && code >= 200 && code < 300
            ? 'succeeded'
            : code === 402
              ? 'declined'
              : code === 429 || code === 503
                ? 'throttled'
                : 'error',
      httpStatus: code ?? null,
      startedAt: now - event.durationMs,
      finishedAt: now,
    });
  }

  async pay(intent: PaymentIntent, signal?: AbortSignal): Promise<PayOutcome> {
    try {
      const outcome = await this.#client.pay(
        { orderId: intent.orderId, amount: intent.amount, currency: intent.currency, payer: intent.source },
        signal ? { signal } : {},
      );
      return toPayOutcome(outcome);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code && REFUSED_LOCALLY.has(code)) {
        return { status: 'busy', retryAfterMs: (error as { retryAfterMs?: number }).retryAfterMs ?? 1000 };
      }
      throw error;
    }
  }

  status(): PaymentsStatus {
    const gate = this.#gate.stats();
    return {
      breaker: this.#breaker.state,
      queued: gate.queued,
      active: gate.active,
      bankRate: this.#context.bankRate,
    };
  }

  /**
   * After a restart: drives every payment the ledger left unresolved to paid or declined (same keys),
   * then brings the shop's orders in line with the ledger.
   */
  async recover(): Promise<number> {
    const summary = await this.#client.recover();
    const { db, onSettled } = this.#context;
    for (const order of [...db.orders('paying'), ...db.orders('pending')]) {
      const record = await this.#client.lookup(order.id);
      if (record?.state === 'paid')
        onSettled?.(order.id, { status: 'paid', paymentId: record.reference ?? '' });
      else if (record?.state === 'declined') {
        onSettled?.(order.id, { status: 'declined', reason: record.declineReason ?? 'declined' });
      } else if (record) db.setOrderStatus(order.id, 'pending');
      // No record: the crash came before the ledger saw it, so nothing was sent. The student pays again.
      else db.setOrderStatus(order.id, 'created');
    }
    return summary.found;
  }

  async close(): Promise<void> {
    await this.#client.close();
  }
}
