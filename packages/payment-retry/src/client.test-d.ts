import { circuitBreaker } from '@floodgate/circuit-breaker';
import { gate, tokenBucket } from '@floodgate/token-bucket';
import { describe, expectTypeOf, it } from 'vitest';
import type { Breaker, Limiter, PaymentClient, RetryBudget } from './client.js';
import type { PaymentOutcome } from './types.js';

describe('public types', () => {
  it("floodgate's gate, circuit breaker and token bucket fit the client's composition points", () => {
    expectTypeOf(gate({ rate: 10, concurrency: 1, maxQueue: 1, maxWaitMs: 1 })).toMatchTypeOf<Limiter>();
    expectTypeOf(circuitBreaker()).toMatchTypeOf<Breaker>();
    expectTypeOf(tokenBucket({ capacity: 500, refillRate: 1 })).toMatchTypeOf<RetryBudget>();
  });

  it('narrows an outcome by status', () => {
    const outcome = {} as PaymentOutcome;
    if (outcome.status === 'paid') expectTypeOf(outcome.reference).toEqualTypeOf<string>();
    if (outcome.status === 'declined') expectTypeOf(outcome.reason).toEqualTypeOf<string>();
    if (outcome.status === 'pending') {
      expectTypeOf(outcome.reason).toEqualTypeOf<
        'deadline' | 'max_attempts' | 'retry_budget' | 'aborted' | 'closed' | 'key_expired' | 'ledger_error'
      >();
    }
    expectTypeOf<PaymentClient['pay']>().returns.toEqualTypeOf<Promise<PaymentOutcome>>();
  });
});
