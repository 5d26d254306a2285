import { InvalidOptionError } from './errors.js';
import type {
  ChargeInput,
  ChargeResult,
  GatewayAdapter,
  GatewayRequest,
  GatewayResponse,
  StatusResult,
} from './gateway.js';
import { booleanOption, checkOptions } from './options.js';
import { parseRetryAfter } from './retry-after.js';

/** Options of {@link ietfGateway}. */
export interface IetfGatewayOptions {
  /** `scheme://host[:port]` of the gateway, e.g. `https://api.bank.example`. Required. */
  readonly origin: string;
  /** Name for events and logs. @default 'ietf' */
  readonly name?: string;
  /** Path of the charge endpoint (POST). @default '/payments' */
  readonly chargePath?: string;
  /**
   * Path of the status endpoint (GET) for a key, or `false` when the gateway has none.
   * @default (key) => `/payments/${encodeURIComponent(key)}`
   */
  readonly statusPath?: ((idempotencyKey: string) => string) | false;
  /** Name of the idempotency header. @default 'Idempotency-Key' */
  readonly header?: string;
  /**
   * Send the key as a Structured Field string (`"abc"`), as draft-ietf-httpapi-idempotency-key-header
   * says; `false` sends the bare token, which older gateways expect. @default true
   */
  readonly quoteKey?: boolean;
  /** Longest key the gateway accepts. @default 255 */
  readonly maxKeyLength?: number;
  /** How long the gateway keeps keys, when documented (Stripe: 24 h). @default undefined (unknown) */
  readonly keyRetentionMs?: number;
  /** Headers sent with every request (authentication, API version...). @default {} */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * Builds the JSON body of a charge. With the default body, an answer that echoes another `orderId`,
   * `amount` or `currency` than the payment's (the bank holds the key for another payload) settles
   * nothing: it reads as `unknown`. A body of your own may name them otherwise, so it is not checked.
   * @default ({ orderId, amount, currency, payer, fields }) => ({ ...fields, orderId, amount, currency, source: payer })
   */
  readonly body?: (input: ChargeInput) => unknown;
  /**
   * A response header by which the gateway overrides the client's retry rule (`true` / `false`), such
   * as Stripe's `Stripe-Should-Retry`. @default undefined (none)
   */
  readonly shouldRetryHeader?: string;
}

const OPTION_KEYS = [
  'origin',
  'name',
  'chargePath',
  'statusPath',
  'header',
  'quoteKey',
  'maxKeyLength',
  'keyRetentionMs',
  'headers',
  'body',
  'shouldRetryHeader',
] as const;

const defaultBody = (input: ChargeInput): unknown => ({
  ...input.fields,
  orderId: input.orderId,
  amount: input.amount,
  currency: input.currency,
  source: input.payer,
});

/**
 * Gateway adapter for APIs that follow the IETF `Idempotency-Key` draft (and @floodgate/bank-sim):
 * `POST {chargePath}` with the key in a header, JSON in and out, `201`/`200` with an `id` (and a
 * `status` of `succeeded` or `paid`, or none) = charged,
 * `402` = declined, `409` = the key is still being processed, `422` (or a 4xx whose problem body names
 * idempotency, as Stripe's 400 `idempotency_error`) = the key was used for another payload, other 4xx =
 * this request rejected, `429`/`503` + `Retry-After` = throttled, `GET {statusPath(key)}` = what happened
 * to a key.
 *
 * @example
 * const gateway = ietfGateway({ origin: 'https://bank.example', headers: { authorization: `Bearer ${token}` } });
 * @throws {InvalidOptionError} for a malformed option.
 */
export class IetfGateway implements GatewayAdapter {
  readonly name: string;
  readonly origin: string;
  readonly maxKeyLength: number;
  readonly keyRetentionMs?: number;
  readonly statusRequest?: (input: ChargeInput) => GatewayRequest;
  readonly parseStatus?: (response: GatewayResponse, input: ChargeInput) => StatusResult;
  readonly #chargePath: string;
  readonly #header: string;
  readonly #quote: boolean;
  /** The charge's headers but the key: set up once, each default one unless the caller's replaces it. */
  readonly #chargeHeaders: Readonly<Record<string, string>>;
  readonly #body: (input: ChargeInput) => unknown;
  readonly #shouldRetryHeader: string | undefined;
  /** Whether answers are checked against the payment (only with the default body: see the option). */
  readonly #checkEcho: boolean;

  constructor(options: IetfGatewayOptions) {
    checkOptions('options', options, OPTION_KEYS);
    let url: URL;
    try {
      url = new URL(options.origin);
    } catch {
      throw new InvalidOptionError('origin', 'an absolute http(s) URL', options.origin);
    }
    if (
      (url.protocol !== 'http:' && url.protocol !== 'https:') ||
      (url.pathname !== '/' && url.pathname !== '')
    ) {
      throw new InvalidOptionError('origin', 'an http(s) origin without a path', options.origin);
    }
    this.origin = url.origin;
    this.name = options.name ?? 'ietf';
    if (typeof this.name !== 'string' || this.name === '') {
      throw new InvalidOptionError('name', 'a non-empty string', options.name);
    }
    this.#chargePath = options.chargePath ?? '/payments';
    if (typeof this.#chargePath !== 'string' || !this.#chargePath.startsWith('/')) {
      throw new InvalidOptionError('chargePath', "a path starting with '/'", options.chargePath);
    }
    this.#header = options.header ?? 'Idempotency-Key';
    if (!isHeaderName(this.#header)) {
      throw new InvalidOptionError('header', 'an HTTP header name', options.header);
    }
    this.#quote = booleanOption('quoteKey', options.quoteKey, true);
    this.maxKeyLength = options.maxKeyLength ?? 255;
    if (!Number.isInteger(this.maxKeyLength) || this.maxKeyLength < 16) {
      throw new InvalidOptionError('maxKeyLength', 'an integer >= 16', options.maxKeyLength);
    }
    if (options.keyRetentionMs !== undefined) {
      if (!(Number.isFinite(options.keyRetentionMs) && options.keyRetentionMs > 0)) {
        throw new InvalidOptionError('keyRetentionMs', 'a finite number > 0', options.keyRetentionMs);
      }
      this.keyRetentionMs = options.keyRetentionMs;
    }
    const headers = headersOption(options.headers);
    // Header names are case-insensitive: `Accept` and the default `accept` would both be sent (two fields),
    // and a key in `headers` would ride next to the payment's own on every charge.
    const given = new Set(Object.keys(headers).map((name) => name.toLowerCase()));
    for (const name of Object.keys(headers)) {
      if (name.toLowerCase() === this.#header.toLowerCase()) {
        throw new InvalidOptionError(
          `headers.${name}`,
          `absent: the adapter sends the payment's key in \`${this.#header}\` on every charge`,
          headers[name],
        );
      }
    }
    const accept = given.has('accept') ? {} : { accept: 'application/json' };
    this.#chargeHeaders = Object.freeze({
      ...headers,
      ...(given.has('content-type') ? {} : { 'content-type': 'application/json' }),
      ...accept,
    });
    const statusHeaders = Object.freeze({ ...headers, ...accept });
    this.#body = options.body ?? defaultBody;
    this.#checkEcho = this.#body === defaultBody;
    if (typeof this.#body !== 'function') {
      throw new InvalidOptionError('body', 'a function (input) => JSON body', options.body);
    }
    if (options.shouldRetryHeader !== undefined && !isHeaderName(options.shouldRetryHeader)) {
      throw new InvalidOptionError('shouldRetryHeader', 'an HTTP header name', options.shouldRetryHeader);
    }
    this.#shouldRetryHeader = options.shouldRetryHeader?.toLowerCase();
    const statusPath =
      options.statusPath === undefined
        ? (key: string) => `${this.#chargePath}/${encodeURIComponent(key)}`
        : options.statusPath;
    if (statusPath !== false) {
      if (typeof statusPath !== 'function') {
        throw new InvalidOptionError('statusPath', 'a function or false', statusPath);
      }
      this.statusRequest = (input) => ({
        method: 'GET',
        path: statusPath(input.idempotencyKey),
        headers: statusHeaders,
      });
      this.parseStatus = (response, input) => parseIetfStatus(response, this.#checkEcho ? input : undefined);
    }
  }

  chargeRequest(input: ChargeInput): GatewayRequest {
    return {
      method: 'POST',
      path: this.#chargePath,
      headers: {
        ...this.#chargeHeaders,
        [this.#header]: this.#quote ? `"${input.idempotencyKey}"` : input.idempotencyKey,
      },
      body: JSON.stringify(this.#body(input)),
    };
  }

  parseCharge(response: GatewayResponse, input: ChargeInput): ChargeResult {
    const result = parseIetfCharge(response, this.#checkEcho ? input : undefined);
    const hint =
      this.#shouldRetryHeader === undefined ? undefined : response.headers[this.#shouldRetryHeader];
    // The server's hint wins over the status-code rule (idempotency.md, "Stripe-Should-Retry").
    if (
      hint === 'true' &&
      (result.kind === 'rejected' || (result.kind === 'declined' && response.statusCode !== 402))
    ) {
      return { kind: 'retry', reason: 'server_error', retryAfterMs: retryAfter(response) };
    }
    if (hint === 'false' && result.kind === 'retry') {
      return { kind: 'unknown', reason: `http_${response.statusCode}_no_retry` };
    }
    return result;
  }
}

/** An RFC 9110 field name (a token). */
function isHeaderName(value: unknown): value is string {
  return typeof value === 'string' && /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(value);
}

/** `headers`: a plain object of field name -> string value (no CR, LF or NUL, which undici refuses late). */
function headersOption(value: unknown): Readonly<Record<string, string>> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError('headers', 'an object of header name -> string value', value);
  }
  const headers: Record<string, string> = {};
  for (const [name, field] of Object.entries(value)) {
    if (!isHeaderName(name)) throw new InvalidOptionError('headers', 'HTTP header names as keys', name);
    if (typeof field !== 'string' || /[\r\n\0]/.test(field)) {
      throw new InvalidOptionError(`headers.${name}`, 'a string without CR, LF or NUL', field);
    }
    headers[name] = field;
  }
  return headers;
}

/**
 * Creates an {@link IetfGateway}.
 * @example
 * const gateway = ietfGateway({ origin: bank.url });
 */
export function ietfGateway(options: IetfGatewayOptions): IetfGateway {
  return new IetfGateway(options);
}

function json(body: string): Record<string, unknown> | undefined {
  if (body === '') return undefined;
  try {
    const value: unknown = JSON.parse(body);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function retryAfter(response: GatewayResponse): number | undefined {
  return parseRetryAfter(response.headers['retry-after']);
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function declineReason(data: Record<string, unknown> | undefined, statusCode: number): string {
  return (
    str(data?.reason) ??
    str(data?.decline_code) ??
    str(data?.code) ??
    str(data?.error) ??
    `http_${statusCode}`
  );
}

/**
 * What a problem body says about the idempotency key: `reused` (with another payload: Stripe's 400
 * `idempotency_error`, bank-sim's `idempotency_key_reused`), `invalid` (the bank could not take the key
 * itself: `idempotency_key_invalid`, `_missing`), or nothing.
 */
function idempotencyProblem(data: Record<string, unknown> | undefined): 'reused' | 'invalid' | undefined {
  if (data === undefined) return undefined;
  const nested =
    typeof data.error === 'object' && data.error !== null ? (data.error as Record<string, unknown>) : {};
  for (const value of [data.code, data.type, data.error, nested.type, nested.code]) {
    if (typeof value === 'string' && /idempotenc/i.test(value)) {
      return /invalid|missing|malformed|required|too_long/i.test(value) ? 'invalid' : 'reused';
    }
  }
  return undefined;
}

/**
 * Whether an answer names another payment than `input`: the bank echoes the payment it holds for the
 * key (bank-sim and most gateways echo orderId, amount, currency). A key reused for another payload (a
 * caller's key given to two orders, a ledger that forgot) is asked about after its 422, and that other
 * payment's outcome must not settle this one. Only the fields the bank sent are compared.
 */
function aboutAnother(data: Record<string, unknown> | undefined, input: ChargeInput | undefined): boolean {
  if (data === undefined || input === undefined) return false;
  const { orderId, amount, currency } = data;
  return (
    (typeof orderId === 'string' && orderId !== input.orderId) ||
    (typeof amount === 'number' && amount !== input.amount) ||
    (typeof currency === 'string' && currency.toUpperCase() !== input.currency)
  );
}

function parseIetfCharge(response: GatewayResponse, input: ChargeInput | undefined): ChargeResult {
  const { statusCode } = response;
  if (statusCode >= 200 && statusCode < 300) {
    const data = json(response.body);
    if (aboutAnother(data, input)) return { kind: 'unknown', reason: 'another_payment' };
    const status = str(data?.status);
    if (status === 'declined' || status === 'failed') {
      return { kind: 'declined', reason: declineReason(data, statusCode) };
    }
    if (statusCode === 202 || status === 'processing' || status === 'pending') {
      return { kind: 'unknown', reason: 'processing', retryAfterMs: retryAfter(response) };
    }
    // A status other than a charge's (`canceled`, `requires_action`...) is no proof of payment either: the
    // status endpoint, which reads the same words, is asked.
    if (status !== undefined && status !== 'succeeded' && status !== 'paid') {
      return { kind: 'unknown', reason: `status_${status}` };
    }
    const reference = str(data?.id) ?? str(data?.reference);
    // A 2xx without a reference is not proof of payment we could show anyone: ask again.
    if (reference === undefined) return { kind: 'unknown', reason: 'no_reference' };
    return { kind: 'paid', reference };
  }
  if (statusCode === 402) {
    const data = json(response.body);
    if (aboutAnother(data, input)) return { kind: 'unknown', reason: 'another_payment' };
    return { kind: 'declined', reason: declineReason(data, statusCode) };
  }
  if (statusCode === 408) return { kind: 'retry', reason: 'timeout', retryAfterMs: retryAfter(response) };
  if (statusCode === 409) return { kind: 'retry', reason: 'conflict', retryAfterMs: retryAfter(response) };
  // Same key, other payload: the key belongs to a payment we cannot see from here. Ask, never decide.
  if (statusCode === 422) return { kind: 'unknown', reason: 'idempotency_key_reused' };
  if (statusCode === 429) return { kind: 'retry', reason: 'throttled', retryAfterMs: retryAfter(response) };
  if (statusCode === 503) {
    const ms = retryAfter(response);
    return { kind: 'retry', reason: ms === undefined ? 'server_error' : 'throttled', retryAfterMs: ms };
  }
  if (statusCode >= 500) return { kind: 'retry', reason: 'server_error', retryAfterMs: retryAfter(response) };
  if (statusCode >= 400 && statusCode < 500) {
    const data = json(response.body);
    const keyProblem = idempotencyProblem(data);
    // Stripe answers a reused key with 400 `idempotency_error`, bank-sim can too: ask, as for 422.
    if (keyProblem === 'reused') return { kind: 'unknown', reason: 'idempotency_key_reused' };
    // A key the bank could not take holds no charge (and its status cannot be asked either).
    if (keyProblem === 'invalid') return { kind: 'declined', reason: declineReason(data, statusCode) };
    // Validation and other 4xx: this request was refused, which proves nothing about the key's payment.
    return { kind: 'rejected', reason: declineReason(data, statusCode) };
  }
  return { kind: 'unknown', reason: `http_${statusCode}` };
}

function parseIetfStatus(response: GatewayResponse, input: ChargeInput | undefined): StatusResult {
  const { statusCode } = response;
  if (statusCode === 404) return { kind: 'not_found' };
  if (statusCode >= 200 && statusCode < 300) {
    const data = json(response.body);
    if (aboutAnother(data, input)) return { kind: 'unknown' };
    const status = str(data?.status);
    if (status === 'succeeded' || status === 'paid') {
      const reference = str(data?.id) ?? str(data?.reference);
      if (reference !== undefined) return { kind: 'paid', reference };
      return { kind: 'unknown' };
    }
    if (status === 'declined' || status === 'failed') {
      return { kind: 'declined', reason: declineReason(data, statusCode) };
    }
    if (status === 'processing' || status === 'pending') {
      return { kind: 'processing', retryAfterMs: retryAfter(response) };
    }
    if (status === 'not_found') return { kind: 'not_found' };
  }
  return { kind: 'unknown', retryAfterMs: retryAfter(response) };
}
