import { type CircuitBreaker, circuitBreaker } from '@floodgate/circuit-breaker';
import { type Gate, gate } from '@floodgate/token-bucket';
import { afterEach, describe, expect, it } from 'vitest';
import { createPaymentClient, type PaymentClient } from '../src/client.js';
import { ietfGateway } from '../src/ietf-gateway.js';
import { MemoryLedger } from '../src/memory-ledger.js';
import { StubBank } from './stub-bank.js';

let bank: StubBank | undefined;
let client: PaymentClient | undefined;
let breaker: CircuitBreaker<[], never> | undefined;
let limiter: Gate | undefined;

afterEach(async () => {
  await client?.close();
  breaker?.close();
  await limiter?.close();
  await bank?.close();
  client = bank = breaker = limiter = undefined;
});

describe('with floodgate gate and circuit breaker', () => {
  it('an open breaker stops calls to a sick bank; the payment goes through once it heals, charged once', async () => {
    let sick = 3;
    bank = await StubBank.start((request) =>
      sick-- > 0
        ? { status: 500 }
        : { status: 201, body: { id: `pay_${request.headers['idempotency-key']}` } },
    );
    breaker = circuitBreaker({
      volumeThreshold: 2,
      errorThresholdPercentage: 50,
      resetTimeoutMs: 20,
      timeoutMs: false,
    });
    limiter = gate({ rate: 1000, concurrency: 4, maxQueue: 100, maxWaitMs: 1000 });
    const ledger = new MemoryLedger();
    client = createPaymentClient({
      gateway: ietfGateway({ origin: bank.url }),
      ledger,
      breaker,
      limiter,
      retry: { baseDelayMs: 5, maxDelayMs: 10, maxAttempts: 50 },
      timeouts: { paymentMs: 5000 },
      reconcile: false,
    });
    const opened: string[] = [];
    breaker.on('stateChange', (change: { to: string }) => opened.push(change.to));
    const outcome = await client.pay({ orderId: 'o-1', amount: 100, currency: 'EUR', payer: 'tok_ok' });
    expect(outcome).toMatchObject({ status: 'paid' });
    expect(opened).toContain('open');
    // Rejections by the open breaker were never sent: the bank saw only the failing calls and the last.
    expect(client.metrics().attempts.notSent).toBeGreaterThan(0);
    expect(bank.charges.length).toBeLessThan(outcome.attempts);
    expect(new Set(bank.charges.map((r) => r.headers['idempotency-key'])).size).toBe(1);
  });
});
