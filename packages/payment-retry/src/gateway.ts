/**
 * The contract between the payment client and one bank's HTTP API. The client owns retries, keys,
 * timeouts and the ledger; an adapter only knows how this bank spells a charge and its answers.
 */

/** What an adapter needs to build a request: the payment as the ledger recorded it. */
export interface ChargeInput {
  /** The idempotency key; the same on every attempt of this payment. */
  readonly idempotencyKey: string;
  /** The merchant the payment is for. */
  readonly merchant: string;
  /** The order's id in the shop. */
  readonly orderId: string;
  /** Integer, minor units. */
  readonly amount: number;
  /** Upper-case ISO 4217 code. */
  readonly currency: string;
  /** The payment source (card token, account id...). */
  readonly payer: string;
  /** Extra gateway fields the caller passed in the intent (description, customer, 3-D Secure data...). */
  readonly fields: Readonly<Record<string, unknown>>;
}

/** A request relative to the adapter's `origin`. */
export interface GatewayRequest {
  /** The HTTP method. */
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH';
  /** Path and query, starting with `/`. */
  readonly path: string;
  /** Request headers; the charge's carry the idempotency key. */
  readonly headers: Readonly<Record<string, string>>;
  /** The request body, already serialised (JSON, form...). */
  readonly body?: string;
}

/** What the gateway answered. The client reads the whole body (up to its size limit) before parsing. */
export interface GatewayResponse {
  /** The HTTP status. */
  readonly statusCode: number;
  /** Lower-case header names, as undici gives them. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** The whole body, as text. */
  readonly body: string;
}

/**
 * How the client must treat the answer to a charge.
 * - `paid` / `declined`: definitive; never retried. Answer `declined` only when the bank decided about the
 *   payment itself (a 402, or a 2xx saying declined).
 * - `rejected`: the bank refused this request as such (a validation or authorisation error: a 4xx other
 *   than a decline). That says nothing about an earlier request with the same key, which may have been
 *   charged (by a crashed process, or before a ledger lost its record): the client asks the status
 *   endpoint before settling it as declined, and without one settles it only when nothing with this key
 *   can have reached the bank before.
 * - `retry`: the bank did not decide (409 still processing, 429/503 throttled, other 5xx); retry with the
 *   same key, after `retryAfterMs` when the bank named a wait.
 * - `unknown`: the bank answered but the outcome is open (202 processing, 422 key used with another
 *   payload...): ask the status endpoint, or retry the same key when there is none.
 */
export type ChargeResult =
  | {
      readonly kind: 'paid';
      /** The bank's reference of the charge. */
      readonly reference: string;
    }
  | {
      readonly kind: 'declined';
      /** The bank's reason, e.g. `insufficient_funds`. */
      readonly reason: string;
    }
  | {
      readonly kind: 'rejected';
      /** Why the bank refused the request, for the ledger and logs. */
      readonly reason: string;
    }
  | {
      readonly kind: 'retry';
      /** Why the bank did not decide: still processing, throttled, a 5xx, a gateway timeout. */
      readonly reason: 'conflict' | 'throttled' | 'server_error' | 'timeout';
      /** The wait the bank asked for (`Retry-After`), in ms. */
      readonly retryAfterMs?: number | undefined;
    }
  | {
      readonly kind: 'unknown';
      /** What left the outcome open, for the ledger and logs. */
      readonly reason: string;
      /** The wait the bank asked for (`Retry-After`), in ms. */
      readonly retryAfterMs?: number | undefined;
    };

/** The bank's view of one idempotency key. */
export type StatusResult =
  | {
      readonly kind: 'paid';
      /** The bank's reference of the charge. */
      readonly reference: string;
    }
  | {
      readonly kind: 'declined';
      /** The bank's reason, e.g. `insufficient_funds`. */
      readonly reason: string;
    }
  | {
      readonly kind: 'processing';
      /** When to ask again (`Retry-After`), in ms. */
      readonly retryAfterMs?: number | undefined;
    }
  /** The bank never saw the key: re-sending the charge with the same key is safe. */
  | { readonly kind: 'not_found' }
  | {
      readonly kind: 'unknown';
      /** When to ask again (`Retry-After`), in ms. */
      readonly retryAfterMs?: number | undefined;
    };

/**
 * One bank. Implement it to connect the client to a gateway other than the IETF-draft one
 * (see the README: "Writing a gateway adapter").
 */
export interface GatewayAdapter {
  /** For logs and events, e.g. `bank-sim`. */
  readonly name: string;
  /** `scheme://host[:port]`; the client keeps one undici Pool per origin. */
  readonly origin: string;
  /** The longest key the gateway accepts (Adyen 64, Stripe 255). Derived keys are 36 characters. */
  readonly maxKeyLength: number;
  /**
   * How long the gateway remembers a key (Stripe >= 24 h). Past it, the client no longer re-sends a
   * charge whose outcome is unknown (the bank would charge it again); it only asks the status endpoint.
   * Omit when unknown: then the client always re-sends with the same key.
   */
  readonly keyRetentionMs?: number;
  /** Builds the charge; it must carry `input.idempotencyKey` in the gateway's idempotency header. */
  chargeRequest(input: ChargeInput): GatewayRequest;
  /**
   * Reads the answer to a charge: how the client must treat it (see {@link ChargeResult}). `input` is
   * the payment the charge was for: an answer about another payment (another amount, order...) must not
   * settle it.
   */
  parseCharge(response: GatewayResponse, input: ChargeInput): ChargeResult;
  /** Optional status query for an idempotency key (or the order). Both or neither with parseStatus. */
  statusRequest?(input: ChargeInput): GatewayRequest;
  /**
   * Reads the answer to a status query. Both or neither with statusRequest. `input` is the payment asked
   * about: a key the bank holds for another payment (another amount, order...) is not its answer.
   */
  parseStatus?(response: GatewayResponse, input: ChargeInput): StatusResult;
}
