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
  /** Stop waiting: `pay()` resolves `pending` and the reconciler carries on. Never cancels a charge. */
  readonly signal?: AbortSignal;
  /** Overrides `timeouts.paymentMs` for this call. */
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
  | 'key_expired';

interface OutcomeBase {
  readonly orderId: string;
  readonly merchant: string;
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
  readonly reason: PendingReason;
}

/** What `pay()` resolves to. */
export type PaymentOutcome = PaidOutcome | DeclinedOutcome | PendingOutcome;

/** Emitted for every request to the bank. */
export interface AttemptEvent {
  readonly orderId: string;
  readonly idempotencyKey: string;
  readonly kind: 'charge' | 'status';
  /** `not_sent`, `unknown` (sent, no response) or `responded`. */
  readonly outcome: 'not_sent' | 'unknown' | 'responded';
  readonly statusCode: number | undefined;
  /** Error code when there was no response (`ECONNREFUSED`, `UND_ERR_HEADERS_TIMEOUT`, `ERR_CIRCUIT_OPEN`...). */
  readonly code: string | undefined;
  readonly durationMs: number;
}

/** Emitted before each wait between two requests of one payment. */
export interface RetryEvent {
  readonly orderId: string;
  readonly idempotencyKey: string;
  readonly delayMs: number;
  /** What the previous request met: `conflict`, `throttled`, `server_error`, `timeout`, `not_sent`, `unknown`, `processing`... */
  readonly reason: string;
  /** Budget tokens left after paying for this retry (undefined without a budget). */
  readonly budgetRemaining: number | undefined;
}

/** Emitted when a payment that had been pending is settled. */
export interface ReconciledEvent {
  readonly outcome: PaidOutcome | DeclinedOutcome;
  /** ms from the moment the outcome became unknown to the bank's answer (wall clock). */
  readonly latencyMs: number;
}

/**
 * Emitted when reconciling one pending payment failed by no fault of the bank (the ledger threw: a locked
 * or full disk). The payment stays pending and is tried again after its back-off.
 */
export interface ReconcileFailedEvent {
  readonly idempotencyKey: string;
  readonly error: unknown;
}

/** Events of a PaymentClient. */
export interface PaymentClientEvents {
  attempt: [event: AttemptEvent];
  retry: [event: RetryEvent];
  outcome: [outcome: PaymentOutcome];
  reconciled: [event: ReconciledEvent];
  reconcileFailed: [event: ReconcileFailedEvent];
}

/** Counters since the client started (`client.metrics()`). */
export interface PaymentClientMetrics {
  /** Requests to the bank by class. */
  readonly attempts: {
    readonly notSent: number;
    readonly sentNoResponse: number;
    readonly responded: number;
  };
  readonly retries: number;
  readonly outcomes: { readonly paid: number; readonly declined: number; readonly pending: number };
  /** `pay()` calls that joined a payment already in flight for the same order. */
  readonly coalesced: number;
  /** Payments whose outcome is unknown right now and that this client is reconciling. */
  readonly outcomeUnknown: number;
  /** Retry budget tokens left, as of the last retry decision (undefined without a budget). */
  readonly retryBudgetRemaining: number | undefined;
  readonly reconciliation: {
    readonly resolved: number;
    readonly latencyMsTotal: number;
    readonly latencyMsMax: number;
  };
}

/** What `recover()` found and did. */
export interface RecoverySummary {
  /** Unresolved payments found in the ledger. */
  readonly found: number;
  readonly paid: number;
  readonly declined: number;
  /** Still unknown: handed to the background reconciler. */
  readonly pending: number;
}
