import type { CircuitBreaker } from '@floodgate/circuit-breaker';
import type { AttemptEvent, PaymentClient, PaymentOutcome } from '@floodgate/payment-retry';
import type { Gate } from '@floodgate/token-bucket';
import type { PaymentIntent, Payments, PaymentsContext, PaymentsStatus, PayOutcome } from './payments.js';

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
    // Every settlement the client reports (a checkout's own, the reconciler's, recovery's): the order
    // follows. A checkout that waited for its payment records the same outcome again; the order's status
    // changes once, and the meter counts that change (checkout.ts), not the reports.
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

  /**
   * Never `busy`: the client never rejects with its gate's or breaker's refusals (`ERR_QUEUE_FULL`,
   * `ERR_RATE_LIMITED`, `ERR_CIRCUIT_OPEN`); a call refused locally stays retryable and ends `pending` at
   * worst. The shop turns checkouts away before they get here (load shedding, 503). It rejects with the
   * client's `PaymentMismatchError` (`ERR_PAYMENT_MISMATCH`) and `InvalidOptionError`
   * (`ERR_INVALID_OPTION`), which the checkout answers 409 and 400.
   */
  async pay(intent: PaymentIntent, signal?: AbortSignal): Promise<PayOutcome> {
    const outcome = await this.#client.pay(
      { orderId: intent.orderId, amount: intent.amount, currency: intent.currency, payer: intent.source },
      signal ? { signal } : {},
    );
    return toPayOutcome(outcome);
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
   * After a restart, before taking checkouts: each order the last process left `paying` or `pending`
   * follows its payment in the ledger: paid or declined there, the same here; still unresolved, `pending`
   * (`recover()` settles it); no payment at all, `created` again (the crash came before the ledger saw it,
   * so nothing was sent and the student pays again). Ledger reads only: a few milliseconds, so the shop
   * can do it before it listens and no checkout races it.
   */
  async syncOrders(): Promise<number> {
    const { db, onSettled } = this.#context;
    const orders = [...db.orders('paying'), ...db.orders('pending')];
    for (const order of orders) {
      const record = await this.#client.lookup(order.id);
      if (record?.state === 'paid')
        onSettled?.(order.id, { status: 'paid', paymentId: record.reference ?? '' });
      else if (record?.state === 'declined') {
        onSettled?.(order.id, { status: 'declined', reason: record.declineReason ?? 'declined' });
      } else if (record) db.setOrderStatus(order.id, 'pending');
      else db.setOrderStatus(order.id, 'created');
    }
    return orders.length;
  }

  /**
   * After a restart, while the shop takes checkouts: drives every payment the ledger left unresolved to
   * paid or declined with its original key (the client's `recover()`); each settlement reaches its order
   * through the client's `outcome` event, like any background settlement. A checkout of an order being
   * recovered cannot charge it again: the client shares one call per order between `pay()` and
   * `recover()`, a `pay()` that comes first re-drives the ledger's unresolved record with its key, and a
   * new key is only ever made after the bank declined.
   */
  async recover(): Promise<number> {
    const summary = await this.#client.recover();
    return summary.found;
  }

  async close(): Promise<void> {
    await this.#client.close();
  }
}
