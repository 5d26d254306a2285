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
 * How soon the page may ask again about an order whose payment is being recovered: it watches a pending
 * order once a second (`src/public/shop.js`), as the festival's students do.
 */
const RECOVERING_RETRY_AFTER_MS = 1000;
const RECOVERING: PayOutcome = { status: 'pending', retryAfterMs: RECOVERING_RETRY_AFTER_MS };

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
  /**
   * The orders whose payment the killed process left in flight (found by `syncOrders()`), until the bank
   * settled it, with the card it is paid with.
   */
  readonly #recovering = new Map<string, string>();

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
      if (outcome.status === 'pending') return;
      this.#recovering.delete(outcome.orderId);
      context.onSettled?.(outcome.orderId, toPayOutcome(outcome));
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
   *
   * An order whose payment is being recovered (see {@link recovering}) is answered `pending` at once, with
   * no request: recovery drives that payment with its original key, and a click that waited for it held
   * the student for as long as the bank's queue after a restart (seconds: the status query, then the
   * charge re-sent, each behind everything else waiting at the gate). Paying it with another card still
   * goes to the client, which rejects it at once (`ERR_PAYMENT_MISMATCH`).
   */
  async pay(intent: PaymentIntent, signal?: AbortSignal): Promise<PayOutcome> {
    if (this.#recovering.get(intent.orderId) === intent.source) return RECOVERING;
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
   * and {@link recovering} until the bank settles it (`recover()` drives it); no payment at all, `created`
   * again (the crash came before the ledger saw it, so nothing was sent and the student pays again).
   * Ledger reads only: a few milliseconds, so the shop can do it before it listens and no checkout races
   * it.
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
      } else if (record) {
        db.setOrderStatus(order.id, 'pending');
        this.#recovering.set(order.id, record.payer);
      } else db.setOrderStatus(order.id, 'created');
    }
    return orders.length;
  }

  /**
   * After a restart, while the shop takes checkouts: drives every payment the ledger left unresolved to
   * paid or declined with its original key (the client's `recover()`; what is still unknown at its
   * deadline goes on in the client's reconciler); each settlement reaches its order through the client's
   * `outcome` event, like any background settlement. A checkout of an order being recovered cannot charge
   * it again: it is answered `pending` without reaching the client (see {@link pay}), and the client would
   * in any case share one call per order and make a new key only after the bank declined.
   */
  async recover(): Promise<number> {
    const summary = await this.#client.recover();
    return summary.found;
  }

  /**
   * Whether the order's payment is being recovered: `syncOrders()` found it unresolved in the ledger and
   * the bank has not settled it since (recovery, then the client's reconciler, drive it).
   */
  recovering(orderId: string): boolean {
    return this.#recovering.has(orderId);
  }

  async close(): Promise<void> {
    await this.#client.close();
  }
}
