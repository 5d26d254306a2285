import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from './errors.js';
import type { ChargeInput, GatewayResponse } from './gateway.js';
import { ietfGateway } from './ietf-gateway.js';

const input: ChargeInput = {
  idempotencyKey: 'k-1',
  merchant: 'shop',
  orderId: 'o-1',
  amount: 1250,
  currency: 'EUR',
  payer: 'tok_ok',
  fields: { description: 'ticket' },
};

const answer = (
  statusCode: number,
  body?: unknown,
  headers: Record<string, string> = {},
): GatewayResponse => ({
  statusCode,
  headers,
  body: body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body),
});

describe('ietfGateway', () => {
  const gateway = ietfGateway({ origin: 'http://127.0.0.1:9', headers: { authorization: 'Bearer t' } });

  it('builds the charge with the key as a Structured Field string', () => {
    const request = gateway.chargeRequest(input);
    expect(request).toMatchObject({
      method: 'POST',
      path: '/payments',
      headers: { 'Idempotency-Key': '"k-1"', authorization: 'Bearer t', 'content-type': 'application/json' },
    });
    expect(JSON.parse(request.body ?? '')).toEqual({
      description: 'ticket',
      orderId: 'o-1',
      amount: 1250,
      currency: 'EUR',
      source: 'tok_ok',
    });
  });

  it('can send a bare key under another header name and body shape', () => {
    const other = ietfGateway({
      origin: 'https://psp.example',
      header: 'PayPal-Request-Id',
      quoteKey: false,
      chargePath: '/v2/charges',
      body: ({ amount, currency }) => ({ value: amount, currency }),
    });
    const request = other.chargeRequest(input);
    expect(request.headers['PayPal-Request-Id']).toBe('k-1');
    expect(request.path).toBe('/v2/charges');
    expect(request.body).toBe('{"value":1250,"currency":"EUR"}');
  });

  it.each([
    [answer(201, { id: 'pay_1', status: 'succeeded' }), { kind: 'paid', reference: 'pay_1' }],
    [answer(200, { id: 'pay_1' }), { kind: 'paid', reference: 'pay_1' }],
    [answer(201, {}), { kind: 'unknown', reason: 'no_reference' }],
    [answer(202, { status: 'processing' }), { kind: 'unknown', reason: 'processing' }],
    [
      answer(402, { status: 'declined', reason: 'insufficient_funds' }),
      { kind: 'declined', reason: 'insufficient_funds' },
    ],
    [answer(402, 'not json'), { kind: 'declined', reason: 'http_402' }],
    [answer(400, { title: 'bad' }), { kind: 'declined', reason: 'http_400' }],
    [answer(408), { kind: 'retry', reason: 'timeout' }],
    [answer(409, {}, { 'retry-after': '1' }), { kind: 'retry', reason: 'conflict', retryAfterMs: 1000 }],
    [answer(422), { kind: 'unknown', reason: 'idempotency_key_reused' }],
    [answer(429, {}, { 'retry-after': '2' }), { kind: 'retry', reason: 'throttled', retryAfterMs: 2000 }],
    [answer(503, {}, { 'retry-after': '2' }), { kind: 'retry', reason: 'throttled', retryAfterMs: 2000 }],
    [answer(503), { kind: 'retry', reason: 'server_error' }],
    [answer(500), { kind: 'retry', reason: 'server_error' }],
    [answer(302), { kind: 'unknown', reason: 'http_302' }],
  ])('reads a charge answer %#', (response, expected) => {
    expect(gateway.parseCharge(response)).toMatchObject(expected);
  });

  it('asks for a key status and reads the answer', () => {
    expect(gateway.statusRequest?.({ ...input, idempotencyKey: 'a b' })).toMatchObject({
      method: 'GET',
      path: '/payments/a%20b',
    });
    const parse = gateway.parseStatus;
    expect(parse?.(answer(200, { status: 'succeeded', id: 'pay_1' }))).toEqual({
      kind: 'paid',
      reference: 'pay_1',
    });
    expect(parse?.(answer(200, { status: 'declined', reason: 'stolen_card' }))).toEqual({
      kind: 'declined',
      reason: 'stolen_card',
    });
    expect(parse?.(answer(200, { status: 'processing' }))).toMatchObject({ kind: 'processing' });
    expect(parse?.(answer(404, { status: 'not_found' }))).toEqual({ kind: 'not_found' });
    expect(parse?.(answer(503, {}, { 'retry-after': '1' }))).toEqual({ kind: 'unknown', retryAfterMs: 1000 });
    expect(parse?.(answer(200, { status: 'succeeded' }))).toEqual({ kind: 'unknown' });
  });

  it('has no status query when statusPath is false', () => {
    const blind = ietfGateway({ origin: 'http://127.0.0.1:9', statusPath: false });
    expect(blind.statusRequest).toBeUndefined();
    expect(blind.parseStatus).toBeUndefined();
  });

  it('honours a should-retry header over its own rule', () => {
    const stripeLike = ietfGateway({
      origin: 'http://127.0.0.1:9',
      shouldRetryHeader: 'Stripe-Should-Retry',
    });
    expect(stripeLike.parseCharge(answer(400, {}, { 'stripe-should-retry': 'true' }))).toMatchObject({
      kind: 'retry',
    });
    expect(stripeLike.parseCharge(answer(500, {}, { 'stripe-should-retry': 'false' }))).toMatchObject({
      kind: 'unknown',
    });
    expect(stripeLike.parseCharge(answer(402, {}, { 'stripe-should-retry': 'true' }))).toMatchObject({
      kind: 'declined',
    });
  });

  it('validates its options', () => {
    expect(() => ietfGateway({ origin: 'not a url' })).toThrow(
      'Expected `origin` to be an absolute http(s) URL, got `not a url` (string)',
    );
    expect(() => ietfGateway({ origin: 'http://bank/api' })).toThrow(InvalidOptionError);
    expect(() => ietfGateway({ origin: 'ftp://bank' })).toThrow(InvalidOptionError);
    expect(() => ietfGateway({ origin: 'http://bank', chargePath: 'payments' })).toThrow(InvalidOptionError);
    expect(() => ietfGateway({ origin: 'http://bank', header: 'bad header' })).toThrow(InvalidOptionError);
    expect(() => ietfGateway({ origin: 'http://bank', maxKeyLength: 8 })).toThrow(InvalidOptionError);
    expect(() => ietfGateway({ origin: 'http://bank', keyRetentionMs: 0 })).toThrow(InvalidOptionError);
    // @ts-expect-error testing an unknown option
    expect(() => ietfGateway({ origin: 'http://bank', retries: 3 })).toThrow(
      'Expected `retries` to be a known option',
    );
  });
});
