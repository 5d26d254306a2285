/**
 * What a shopper asks to pay. `orderId` is the business identity: a repeated click, a retry after a
 * crash, a second tab all carry the same one, and so all map to the same idempotency key.
 */
export interface PaymentIntent {
  /** The order's id in the shop (not a request id). */
  readonly orderId: string;
  /** Integer amount in minor units (cents), > 0. */
  readonly amount: number;
  /** ISO 4217 code, three letters (upper-cased). */
  readonly currency: string;
  /** The payment source: card token, account id... */
  readonly payer: string;
  /** Extra gateway fields (description, customer, 3-D Secure data...), passed to the adapter. */
  readonly fields?: Readonly<Record<string, unknown>>;
  /** Overrides the client's `merchant` for this payment. */
  readonly merchant?: string;
  /**
   * Use this key instead of the derived one (it must satisfy the gateway's length limit). The caller then
   * owns its stability: a new key for the same order is a new payment.
   */
  readonly idempotencyKey?: string;
}

/** Options of one `pay()` call. */
export interface PayOptions {
  /**
   * Stop waiting: `pay()` resolves `pending` and the reconciler carries on. Never cancels a charge. A call
   * that joined a payment already in flight stops waiting alone; the payment goes on.
   */
  readonly signal?: AbortSignal;
  /** Overrides `timeouts.paymentMs` for this call (also when it joins a payment already in flight). */
  readonly deadlineMs?: number;
}

/** Why a payment is still pending. */
export type PendingReason =
  /** The payment's deadline passed with the outcome still open. */
  | 'deadline'
  /** `retry.maxAttempts` requests were made. */
  | 'max_attempts'
  /** The gateway's retry budget is spent: the bank is struggling, the reconciler will retry slowly. */
  | 'retry_budget'
  /** The caller's signal aborted the wait. */
  | 'aborted'
  /** The client was closed. */
  | 'closed'
  /** The gateway may have forgotten the key (older than `keyRetentionMs`) and has no status endpoint. */
  | 'key_expired'
  /**
   * The ledger threw (a locked or full disk) after the payment was recorded: the bank may have acted, the
   * ledger may not say so yet. The reconciler goes on from what the ledger holds; `reconcileFailed` carries
   * the error.
   */
  | 'ledger_error';

interface OutcomeBase {
  /** The order's id in the shop. */
  readonly orderId: string;
  /** The merchant the payment was for. */
  readonly merchant: string;
  /** The key the payment was sent with. */
  readonly idempotencyKey: string;
  /**
   * Tries made by this call: requests to the bank (charges and status queries) and refusals by the local
   * gate or breaker; 0 when answered from the ledger.
   */
  readonly attempts: number;
}

/** The bank charged the payment. */
export interface PaidOutcome extends OutcomeBase {
  readonly status: 'paid';
  /** The bank's reference of the charge. */
  readonly reference: string;
}

/** The bank refused the payment for good (card declined, invalid request). Nothing was charged. */
export interface DeclinedOutcome extends OutcomeBase {
  readonly status: 'declined';
  /** The bank's reason, e.g. `insufficient_funds`, or `http_400`. */
  readonly reason: string;
}

/**
 * The outcome is not known yet: the bank may have charged. Never show this as "failed". Reconciliation
 * goes on in the background (and in `recover()` after a restart) with the same key.
 */
export interface PendingOutcome extends OutcomeBase {
  readonly status: 'pending';
  /** Why the outcome is not known yet. */
  readonly reason: PendingReason;
}

/** What `pay()` resolves to. */
export type PaymentOutcome = PaidOutcome | DeclinedOutcome | PendingOutcome;

/** Emitted for every request to the bank. */
export interface AttemptEvent {
  /** The order's id in the shop. */
  readonly orderId: string;
  /** The key the request carried. */
  readonly idempotencyKey: string;
  /** A charge or a status query. */
  readonly kind: 'charge' | 'status';
  /** `not_sent`, `unknown` (sent, no response) or `responded`. */
  readonly outcome: 'not_sent' | 'unknown' | 'responded';
  /** The HTTP status the bank answered; undefined without a response. */
  readonly statusCode: number | undefined;
  /** Error code when there was no response (`ECONNREFUSED`, `UND_ERR_HEADERS_TIMEOUT`, `ERR_CIRCUIT_OPEN`...). */
  readonly code: string | undefined;
  /** How long the request took, in ms. */
  readonly durationMs: number;
}

/** Emitted before each wait between two requests of one payment. */
export interface RetryEvent {
  /** The order's id in the shop. */
  readonly orderId: string;
  /** The key the retry will carry (the same as before). */
  readonly idempotencyKey: string;
  /** The wait before the next request, in ms. */
  readonly delayMs: number;
  /** What the previous request met: `conflict`, `throttled`, `server_error`, `timeout`, `not_sent`, `unknown`, `processing`... */
  readonly reason: string;
  /** Budget tokens left after paying for this retry (undefined without a budget). */
  readonly budgetRemaining: number | undefined;
}

/** Emitted when a payment that had been pending is settled. */
export interface ReconciledEvent {
  /** The settled outcome. */
  readonly outcome: PaidOutcome | DeclinedOutcome;
  /** ms from the moment the outcome became unknown to the bank's answer (wall clock). */
  readonly latencyMs: number;
}

/**
 * Emitted when driving a payment the ledger holds failed by no fault of the bank (the ledger threw: a locked
 * or full disk), in `pay()` (which then resolves `pending`, `ledger_error`), `recover()` or the reconciler.
 * The payment stays pending and is tried again after its back-off.
 */
export interface ReconcileFailedEvent {
  /** The key of the payment that stays pending. */
  readonly idempotencyKey: string;
  /** What the ledger threw. */
  readonly error: unknown;
}

/**
 * Events of a PaymentClient (`client.on(name, listener)`). A listener observes payments and can never
 * change one's course: a listener that throws leaves the payment going on exactly as if it had returned
 * (`pay()` and `recover()` answer the same, the ledger holds the same, a pending payment is still
 * reconciled, nothing is charged twice). Its error is then thrown again on the next tick, where it surfaces
 * as an `uncaughtException` (as a throwing listener's does outside a promise chain), never swallowed and
 * never a rejection of `pay()`. As with any EventEmitter, the listeners after it miss that one event.
 *
 * @example
 * client.on('outcome', (outcome) => metrics.count(outcome.status));
 */
export interface PaymentClientEvents {
  /** After every request to the bank. */
  attempt: [event: AttemptEvent];
  /** Before each wait between two requests of one payment. */
  retry: [event: RetryEvent];
  /**
   * Once for each count of `metrics().outcomes`: when a payment goes pending with this client (a
   * `pay()`, `recover()` or ledger error hands it to the reconciler), and when this client settles a
   * payment (`pay()`, `recover()` or the reconciler got the bank's answer). Not again while a payment
   * stays pending (a reconciler pass, another `pay()` of it that ends pending), nor for a `pay()` answered
   * from a ledger that already holds the payment settled.
   */
  outcome: [outcome: PaymentOutcome];
  /** When a pending payment is settled. */
  reconciled: [event: ReconciledEvent];
  /** When driving a payment failed on the ledger (it stays pending). */
  reconcileFailed: [event: ReconcileFailedEvent];
}

/** Counters since the client started (`client.metrics()`). */
export interface PaymentClientMetrics {
  /** Requests to the bank by class. */
  readonly attempts: {
    /** Requests that cannot have reached the bank (`not_sent`). */
    readonly notSent: number;
    /** Requests sent that got no answer (`unknown`): the bank may have acted on them. */
    readonly sentNoResponse: number;
    /** Requests the bank answered. */
    readonly responded: number;
  };
  /** Waits between two requests of one payment (`retry` events). */
  readonly retries: number;
  /**
   * Payments by what this client reported them (each count an `outcome` event). Each payment counts at
   * most once in each: a payment that went pending and was later settled counts in `pending` and in
   * `paid` or `declined`, so `paid + declined` is payments settled and `pending` is payments whose
   * outcome was, at some point, unknown; `outcomeUnknown` is how many are so now.
   */
  readonly outcomes: {
    /** Payments this client settled as paid (in `pay()`, `recover()` or the reconciler). */
    readonly paid: number;
    /** Payments this client settled as declined (in `pay()`, `recover()` or the reconciler). */
    readonly declined: number;
    /**
     * Payments that went pending: counted when handed to the reconciler, not again for each try that
     * leaves them pending (a pass, another `pay()` of the order).
     */
    readonly pending: number;
  };
  /** `pay()` calls that joined a payment already in flight for the same order. */
  readonly coalesced: number;
  /** Payments whose outcome is unknown right now and that this client is reconciling. */
  readonly outcomeUnknown: number;
  /** Retry budget tokens left, as of the last retry decision (undefined without a budget). */
  readonly retryBudgetRemaining: number | undefined;
  /** The background reconciler's work on pending payments. */
  readonly reconciliation: {
    /** Pending payments it settled (paid or declined). */
    readonly resolved: number;
    /** Sum of their reconciliation latencies (unknown since → bank's answer), in ms: divide by `resolved`. */
    readonly latencyMsTotal: number;
    /** The longest of those latencies, in ms. */
    readonly latencyMsMax: number;
  };
}

/** What `recover()` found and did. */
export interface RecoverySummary {
  /** Unresolved payments found in the ledger. */
  readonly found: number;
  /** Payments the bank had charged. */
  readonly paid: number;
  /** Payments the bank had declined. */
  readonly declined: number;
  /**
   * Still unknown: handed to the background reconciler. Also those `close()` kept from starting (they stay
   * in the ledger as they were, for the next `recover()`).
   */
  readonly pending: number;
}
