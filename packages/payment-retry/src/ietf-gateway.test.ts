import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from './errors.js';
import type { ChargeInput, GatewayResponse } from './gateway.js';
import { type IetfGatewayOptions, ietfGateway } from './ietf-gateway.js';

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
    [answer(400, { title: 'bad' }), { kind: 'rejected', reason: 'http_400' }],
    [answer(401, { code: 'token_expired' }), { kind: 'rejected', reason: 'token_expired' }],
    // A reused key answered with 400 (Stripe, bank-sim's mismatchStatus: 400) is asked about, like 422.
    [
      answer(400, { error: { type: 'idempotency_error', message: 'Keys for idempotent requests...' } }),
      { kind: 'unknown', reason: 'idempotency_key_reused' },
    ],
    [
      answer(400, { type: 'urn:floodgate:bank-sim:idempotency_key_reused', code: 'idempotency_key_reused' }),
      { kind: 'unknown', reason: 'idempotency_key_reused' },
    ],
    // A key the bank could not take (too long for it, say) holds no charge: declined, not asked about.
    [
      answer(400, {
        type: 'urn:floodgate:bank-sim:idempotency_key_invalid',
        code: 'idempotency_key_invalid',
      }),
      { kind: 'declined', reason: 'idempotency_key_invalid' },
    ],
    [
      answer(400, { code: 'idempotency_key_missing' }),
      { kind: 'declined', reason: 'idempotency_key_missing' },
    ],
    [answer(408), { kind: 'retry', reason: 'timeout' }],
    [answer(409, {}, { 'retry-after': '1' }), { kind: 'retry', reason: 'conflict', retryAfterMs: 1000 }],
    [answer(422), { kind: 'unknown', reason: 'idempotency_key_reused' }],
    [answer(429, {}, { 'retry-after': '2' }), { kind: 'retry', reason: 'throttled', retryAfterMs: 2000 }],
    [answer(503, {}, { 'retry-after': '2' }), { kind: 'retry', reason: 'throttled', retryAfterMs: 2000 }],
    [answer(503), { kind: 'retry', reason: 'server_error' }],
    [answer(500), { kind: 'retry', reason: 'server_error' }],
    [answer(302), { kind: 'unknown', reason: 'http_302' }],
  ])('reads a charge answer %#', (response, expected) => {
    expect(gateway.parseCharge(response, input)).toMatchObject(expected);
  });

  it('asks for a key status and reads the answer', () => {
    expect(gateway.statusRequest?.({ ...input, idempotencyKey: 'a b' })).toMatchObject({
      method: 'GET',
      path: '/payments/a%20b',
    });
    const parse = (response: GatewayResponse) => gateway.parseStatus?.(response, input);
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

  it('settles nothing with an answer that echoes another payment than the one asked about', () => {
    // The bank holds the key for another payload (a caller's key given to two orders): its outcome is
    // that payment's, not this one's.
    const other = { status: 'succeeded', id: 'pay_other', orderId: 'o-9', amount: 1250, currency: 'EUR' };
    const status = (body: unknown) => gateway.parseStatus?.(answer(200, body), input);
    expect(status(other)).toEqual({ kind: 'unknown' });
    expect(status({ ...other, orderId: 'o-1', amount: 9999 })).toEqual({ kind: 'unknown' });
    expect(status({ ...other, orderId: 'o-1', currency: 'USD' })).toEqual({ kind: 'unknown' });
    expect(status({ ...other, status: 'declined', reason: 'stolen_card' })).toEqual({ kind: 'unknown' });
    expect(gateway.parseCharge(answer(201, other), input)).toEqual({
      kind: 'unknown',
      reason: 'another_payment',
    });
    expect(gateway.parseCharge(answer(402, { ...other, status: 'declined' }), input)).toEqual({
      kind: 'unknown',
      reason: 'another_payment',
    });
    // Its own payment (currency in any case), or an answer that names none of the fields, settles.
    expect(status({ ...other, orderId: 'o-1', currency: 'eur' })).toEqual({
      kind: 'paid',
      reference: 'pay_other',
    });
    expect(status({ status: 'succeeded', id: 'pay_1' })).toEqual({ kind: 'paid', reference: 'pay_1' });
    expect(gateway.parseCharge(answer(201, { ...other, orderId: 'o-1' }), input)).toEqual({
      kind: 'paid',
      reference: 'pay_other',
    });
    // A body of the caller's own may name the fields otherwise (units, ids): not compared.
    const shaped = ietfGateway({
      origin: 'http://127.0.0.1:9',
      body: ({ amount }) => ({ value: amount / 100 }),
    });
    expect(shaped.parseStatus?.(answer(200, { ...other, amount: 12.5 }), input)).toEqual({
      kind: 'paid',
      reference: 'pay_other',
    });
    expect(shaped.parseCharge(answer(201, { ...other, amount: 12.5 }), input)).toMatchObject({
      kind: 'paid',
    });
  });

  it.each(['canceled', 'requires_action', 'requires_payment_method', 'reversed'])(
    'never reads a 2xx whose status is %s as paid: it asks',
    (status) => {
      expect(gateway.parseCharge(answer(201, { id: 'pay_1', status }), input)).toEqual({
        kind: 'unknown',
        reason: `status_${status}`,
      });
      expect(gateway.parseStatus?.(answer(200, { id: 'pay_1', status }), input)).toEqual({ kind: 'unknown' });
    },
  );

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
    expect(stripeLike.parseCharge(answer(400, {}, { 'stripe-should-retry': 'true' }), input)).toMatchObject({
      kind: 'retry',
    });
    expect(stripeLike.parseCharge(answer(500, {}, { 'stripe-should-retry': 'false' }), input)).toMatchObject({
      kind: 'unknown',
    });
    expect(stripeLike.parseCharge(answer(402, {}, { 'stripe-should-retry': 'true' }), input)).toMatchObject({
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

  it.each<[string, Record<string, unknown>, string, string]>([
    [
      'body',
      { body: 'x' },
      'body',
      'Expected `body` to be a function (input) => JSON body, got `x` (string)',
    ],
    ['headers', { headers: 'abc' }, 'headers', 'Expected `headers` to be an object of header name'],
    ['headers (array)', { headers: [['a', 'b']] }, 'headers', 'Expected `headers` to be an object'],
    ['a header value', { headers: { authorization: 42 } }, 'headers.authorization', 'got `42` (number)'],
    ['a header value with CR LF', { headers: { 'x-a': 'a\r\nx-b: b' } }, 'headers.x-a', 'without CR'],
    ['a header name', { headers: { 'bad name': 'x' } }, 'headers', 'got `bad name` (string)'],
    ['quoteKey', { quoteKey: 'no' }, 'quoteKey', 'Expected `quoteKey` to be `true` or `false`, got `no`'],
    ['name', { name: 42 }, 'name', 'Expected `name` to be a non-empty string, got `42` (number)'],
    ['name (empty)', { name: '' }, 'name', 'Expected `name` to be a non-empty string'],
    ['chargePath', { chargePath: 42 }, 'chargePath', "Expected `chargePath` to be a path starting with '/'"],
    ['header', { header: 42 }, 'header', 'Expected `header` to be an HTTP header name, got `42` (number)'],
    ['shouldRetryHeader', { shouldRetryHeader: 5 }, 'shouldRetryHeader', 'got `5` (number)'],
    ['shouldRetryHeader (bad name)', { shouldRetryHeader: 'a b' }, 'shouldRetryHeader', 'HTTP header name'],
  ])('rejects a bad %s at construction, naming option and value', (_label, bad, option, message) => {
    const make = () => ietfGateway({ origin: 'http://bank', ...bad } as IetfGatewayOptions);
    expect(make).toThrow(InvalidOptionError);
    expect(make).toThrow(message);
    expect(make).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', option }));
  });

  it('sends each header once: an Accept or Content-Type of the caller replaces the default, in any case', () => {
    const versioned = ietfGateway({
      origin: 'http://bank',
      headers: { Accept: 'application/vnd.bank.v2+json', 'Content-Type': 'application/json; charset=utf-8' },
    });
    const names = (headers: Readonly<Record<string, string>>) =>
      Object.keys(headers).map((n) => n.toLowerCase());
    const charge = versioned.chargeRequest(input);
    expect(names(charge.headers)).toEqual([...new Set(names(charge.headers))]);
    expect(charge.headers).toMatchObject({
      Accept: 'application/vnd.bank.v2+json',
      'Content-Type': 'application/json; charset=utf-8',
      'Idempotency-Key': '"k-1"',
    });
    const status = versioned.statusRequest?.(input);
    expect(names(status?.headers ?? {})).toEqual(['accept', 'content-type']);
    expect(status?.headers).toMatchObject({ Accept: 'application/vnd.bank.v2+json' });
    // Without them, the defaults.
    expect(gateway.chargeRequest(input).headers).toMatchObject({
      accept: 'application/json',
      'content-type': 'application/json',
    });
    expect(gateway.statusRequest?.(input).headers).toEqual({
      authorization: 'Bearer t',
      accept: 'application/json',
    });
  });

  it.each(['Idempotency-Key', 'idempotency-key', 'IDEMPOTENCY-KEY'])(
    'refuses the idempotency header (%s) in headers: a charge would carry two keys',
    (name) => {
      const make = () => ietfGateway({ origin: 'http://bank', headers: { [name]: 'fixed' } });
      expect(make).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_OPTION', option: `headers.${name}` }),
      );
      expect(() =>
        ietfGateway({
          origin: 'http://bank',
          header: 'PayPal-Request-Id',
          headers: { 'paypal-request-id': 'x' },
        }),
      ).toThrow(expect.objectContaining({ option: 'headers.paypal-request-id' }));
    },
  );

  it('takes well-formed headers, quoteKey, name, body and shouldRetryHeader', () => {
    const gateway = ietfGateway({
      origin: 'http://bank',
      name: 'acme',
      headers: { authorization: 'Bearer t' },
      quoteKey: false,
      body: () => ({ x: 1 }),
      shouldRetryHeader: 'Stripe-Should-Retry',
    });
    expect(gateway.name).toBe('acme');
    const request = gateway.chargeRequest(input);
    expect(request.headers).toMatchObject({
      authorization: 'Bearer t',
      'Idempotency-Key': input.idempotencyKey,
    });
    expect(request.body).toBe('{"x":1}');
  });
});
