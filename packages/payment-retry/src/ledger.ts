/**
 * Payment states: `created -> sending -> paid | declined | unknown`, `unknown -> reconciling ->
 * paid | declined | unknown`. `paid` and `declined` are final. Only the bank's answer moves a payment
 * out of `unknown`; no timeout of ours ever turns it into `declined`.
 */
export type PaymentState = 'created' | 'sending' | 'paid' | 'declined' | 'unknown' | 'reconciling';

/** States in which the outcome is not settled: `recover()` drives these. */
export const UNRESOLVED_STATES: readonly PaymentState[] = ['created', 'sending', 'unknown', 'reconciling'];

const TRANSITIONS: Readonly<Record<PaymentState, readonly PaymentState[]>> = {
  created: ['sending'],
  sending: ['paid', 'declined', 'unknown'],
  unknown: ['reconciling'],
  reconciling: ['paid', 'declined', 'unknown'],
  paid: [],
  declined: [],
};

/** Whether a ledger may move a payment from `from` to `to`. */
export function canTransition(from: PaymentState, to: PaymentState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** One payment (one generation of one order), as the ledger keeps it. */
export interface PaymentRecord {
  /** The idempotency key, sent on every attempt. Unique in the ledger. */
  readonly idempotencyKey: string;
  /** `merchant` and `orderId` together; unique with `generation`. */
  readonly scope: string;
  /** The merchant the payment is for. */
  readonly merchant: string;
  /** The order's id in the shop. */
  readonly orderId: string;
  /** 0 for the first payment of an order; +1 after each definitive decline. */
  readonly generation: number;
  /** Integer, minor units. */
  readonly amount: number;
  /** Upper-case ISO 4217 code. */
  readonly currency: string;
  /** The payment source (card token, account id...). */
  readonly payer: string;
  /** Canonical JSON of the caller's gateway fields (so a restart can rebuild the exact request). */
  readonly fields: string;
  /** Where the payment stands; moves only as {@link canTransition} allows. */
  readonly state: PaymentState;
  /** Requests sent (or tried) to the bank for this payment: charges and status queries. */
  readonly attempts: number;
  /** The bank's reference, once `paid`. */
  readonly reference: string | null;
  /** The bank's reason, once `declined`. */
  readonly declineReason: string | null;
  /** Wall-clock ms. */
  readonly createdAt: number;
  /** Wall-clock ms of the last change. */
  readonly updatedAt: number;
  /** Wall-clock ms of the first send: key retention counts from here. */
  readonly firstSentAt: number | null;
  /** Wall-clock ms at which the outcome became unknown (for reconciliation latency). */
  readonly unknownSince: number | null;
}

/** The fields a transition may set besides the state. */
export interface RecordPatch {
  /** The bank's reference, when the payment is `paid`. */
  readonly reference?: string;
  /** The bank's reason, when the payment is `declined`. */
  readonly declineReason?: string;
  /** Wall-clock ms of the first send. */
  readonly firstSentAt?: number;
  /** Wall-clock ms at which the outcome became unknown. */
  readonly unknownSince?: number;
  /**
   * An attempt to append (and count) in the same atomic write. It is recorded even when the move is not
   * allowed: it happened either way.
   */
  readonly attempt?: AttemptRecord;
}

/** One request to the bank, as recorded. */
export interface AttemptRecord {
  /** The key of the payment the request was for. */
  readonly idempotencyKey: string;
  /** 'charge' or 'status' (a status query). */
  readonly kind: 'charge' | 'status';
  /** `not_sent`, `unknown` (sent, no response) or `responded`. */
  readonly outcome: 'not_sent' | 'unknown' | 'responded';
  /** The HTTP status the bank answered; null without a response. */
  readonly statusCode: number | null;
  /** Node/undici/floodgate error code when the attempt failed without a response. */
  readonly errorCode: string | null;
  /** Wall-clock ms. */
  readonly startedAt: number;
  /** How long the request took, in ms. */
  readonly durationMs: number;
}

/** A value or a promise of it: the built-in ledgers answer synchronously, a networked one need not. */
export type Awaitable<T> = T | Promise<T>;

/**
 * Durable memory of payments. Implement it to keep payments in another database; every method may
 * answer synchronously or with a promise.
 */
export interface PaymentLedger {
  /**
   * True when the ledger may forget paid payments (`memoryLedger({ maxPaid })`). The client then refuses
   * a caller's own `intent.idempotencyKey`: an order forgotten after it was paid under such a key would be
   * charged again under the caller's next key, while a key derived from the order is derived again and
   * the bank replays its answer.
   */
  readonly forgetsPaid?: boolean;
  /** The latest generation recorded for a scope, or undefined. */
  latest(scope: string): Awaitable<PaymentRecord | undefined>;
  /** The payment with this key, or undefined. */
  get(idempotencyKey: string): Awaitable<PaymentRecord | undefined>;
  /**
   * Inserts a new payment (state `created`; no attempts, reference, decline reason, `firstSentAt` or
   * `unknownSince`, whatever the record says). Atomic: answers false, inserting nothing, when a record
   * with the same key exists, or one of the same scope with the same or a later generation (another
   * caller or process won the race: a newer generation is never joined by a second live one).
   */
  create(record: PaymentRecord): Awaitable<boolean>;
  /**
   * Optional: {@link PaymentLedger.create} and `transition(key, 'sending', { firstSentAt })` as one
   * atomic write, so a new payment costs one commit less before its first request. Inserts the payment
   * directly in state `sending` with `record.firstSentAt`; refuses (answers false, writing nothing) exactly
   * when `create` would. A ledger without it gets the two calls, in that order.
   *
   * @example
   * if (await ledger.createSending({ ...record, state: 'sending', firstSentAt: Date.now() })) send(record);
   */
  createSending?(record: PaymentRecord): Awaitable<boolean>;
  /**
   * Moves a payment to `to` when {@link canTransition} allows it from its current state, and applies the
   * patch. Answers the updated record, or undefined when the payment is missing or the move is not allowed
   * (someone else settled it first: read it again).
   */
  transition(
    idempotencyKey: string,
    to: PaymentState,
    patch?: RecordPatch,
  ): Awaitable<PaymentRecord | undefined>;
  /** Appends an attempt and counts it in the payment's `attempts`. */
  recordAttempt(attempt: AttemptRecord): Awaitable<void>;
  /** The attempts recorded for a payment, oldest first. */
  attempts(idempotencyKey: string): Awaitable<readonly AttemptRecord[]>;
  /**
   * Every payment in an unresolved state (created, sending, unknown, reconciling), oldest first: by
   * `createdAt`, ties in the order they were inserted. At most `limit` of them (all when omitted or
   * `Infinity`, none for 0).
   * @throws {InvalidOptionError} (`ERR_INVALID_OPTION`, `option: 'limit'`) when `limit` is not an integer
   * >= 0 or `Infinity` (a `-1` or a `1.5`), in both built-in ledgers; a custom ledger should do the same.
   */
  unresolved(limit?: number): Awaitable<readonly PaymentRecord[]>;
  /** Releases the ledger (closes its database); the client calls it only on a ledger it made. */
  close(): Awaitable<void>;
}
