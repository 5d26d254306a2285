import type { PaymentRecord } from '../src/ledger.js';

/**
 * A payment's record as the client first writes it (`created`, nothing sent), for tests that seed a
 * ledger: order `o-1` of merchant `shop`, 12.50 EUR, unless `overrides` say otherwise. The scope follows
 * the merchant and order given, as the client derives it.
 */
export function newPaymentRecord(overrides: Partial<PaymentRecord> = {}): PaymentRecord {
  const merchant = overrides.merchant ?? 'shop';
  const orderId = overrides.orderId ?? 'o-1';
  return {
    idempotencyKey: 'key-1',
    scope: JSON.stringify([merchant, orderId]),
    merchant,
    orderId,
    generation: 0,
    amount: 1250,
    currency: 'EUR',
    payer: 'tok_ok',
    fields: '{}',
    state: 'created',
    attempts: 0,
    reference: null,
    declineReason: null,
    createdAt: 1,
    updatedAt: 1,
    firstSentAt: null,
    unknownSince: null,
    ...overrides,
  };
}
