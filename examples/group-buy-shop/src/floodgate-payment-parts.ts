// The floodgate shop's way to the bank, whatever serves its HTTP: the Express wiring (floodgate-shop.ts)
// and the Fastify app both build on it. Kept apart from the Express wiring so a Fastify shop restarted
// after a crash does not load @floodgate/express (about 50 ms of its restart).
import { type CircuitBreaker, circuitBreaker } from '@floodgate/circuit-breaker';
import { createPaymentClient, ietfGateway, sqliteLedger } from '@floodgate/payment-retry';
import type { RedisStore } from '@floodgate/redis';
import { type Gate, gate } from '@floodgate/token-bucket';
import { CheckoutShedder } from './checkout-shedder.js';
import { FloodgatePayments } from './floodgate-payments.js';
import type { PaymentsContext } from './payments.js';

/** How long a checkout may wait for its turn at the bank before the shop answers 503 at once. */
const MAX_WAIT_MS = 4000;

/** What the floodgate shop pays with, whatever serves its HTTP: the Express wiring and the Fastify example. */
export interface FloodgatePaymentParts {
  readonly payments: FloodgatePayments;
  /** The gate in front of the bank (for load shedding). */
  readonly gate: Gate;
  readonly breaker: CircuitBreaker;
  /** How long a checkout may wait for its turn at the bank before it is shed. */
  readonly maxWaitMs: number;
  /**
   * The load shedding in front of checkout (reads the gate and the breaker, `maxWaitMs`); each checkout
   * it turns away counts as `shed` on the dashboard.
   */
  readonly shedder: CheckoutShedder;
  close(): Promise<void>;
}

export interface FloodgatePartsOptions extends PaymentsContext {
  /**
   * Where the gate takes the bank's tokens when several shop processes share its limit (see
   * {@link sharedBankBucket}); the parts close it. @default undefined (a bucket in this process)
   */
  readonly store?: RedisStore | undefined;
}

/**
 * The bank's bucket in Redis, shared by every shop process. fail-closed: without Redis no shop process
 * can know the fleet's rate, so none sends. The timeout is generous because the festival runs every
 * process on one small machine. `@floodgate/redis` (and ioredis) is loaded only here: about a fifth of a
 * second with tsx on 2 cores, which a shop without Redis, restarted after a crash, need not wait for.
 */
export async function sharedBankBucket(redisUrl: string): Promise<RedisStore> {
  const { redisStore } = await import('@floodgate/redis');
  return redisStore({ url: redisUrl, prefix: 'group-buy-shop:', failMode: 'fail-closed', timeoutMs: 1000 });
}

/**
 * The floodgate shop's way to the bank: a gate at (just under) the bank's flow limit, shared through
 * `store` when given; a breaker; and a payment client whose ledger lives in the shop's database.
 */
export function floodgatePaymentParts(context: FloodgatePartsOptions): FloodgatePaymentParts {
  const { store } = context;
  // The bank's flow limit is stated once, in the shop's config (`bankRate`); the gate runs just under it
  // and the load shedding reads its waits from the gate.
  const bank = gate({
    // Under the bank's limit: a request the gate lets go is on the wire a few ms later, and a pause of the
    // event loop (GC, a large write) can bunch a few of them at the bank. The local bucket lets at most
    // 20 ms of a stall's waiters catch up together (maxCatchUpMs), so 3% is margin enough; a shared store
    // has no such bound and several processes' releases bunch independently: they keep 7%.
    rate: context.bankRate * (store ? 0.93 : 0.97),
    // Two tokens (or 2% of a second's worth) let a timer that fires late catch up instead of losing its
    // token (a bucket of one drops whatever refills past it); the bank still sees at most rate + burst.
    burst: Math.max(2, Math.floor(context.bankRate * 0.02)),
    concurrency: 64,
    maxQueue: Math.ceil((context.bankRate * MAX_WAIT_MS) / 1000),
    maxWaitMs: MAX_WAIT_MS,
    ...(store ? { store, key: 'bank-gateway' } : {}),
  });
  const breaker = circuitBreaker({
    name: 'bank',
    timeoutMs: false,
    volumeThreshold: 20,
    windowMs: 5000,
    resetTimeoutMs: 2000,
    maxResetTimeoutMs: 10_000,
  });
  const client = createPaymentClient({
    gateway: ietfGateway({ origin: context.bankUrl }),
    ledger: sqliteLedger({ database: context.db.connection }),
    merchant: 'group-buy-shop',
    limiter: bank,
    breaker,
    pool: { connections: 64 },
    timeouts: { connectMs: 1000, headersMs: 3000, bodyMs: 3000, paymentMs: 8000 },
    // Recovery after a restart drives every unresolved payment at once, as fast as the gate allows.
    reconcile: { intervalMs: 500, maxIntervalMs: 2000, concurrency: 64, deadlineMs: 3000 },
  });
  const payments = new FloodgatePayments(context, { client, gate: bank, breaker });
  const shedder = new CheckoutShedder({ gate: bank, breaker, maxWaitMs: MAX_WAIT_MS }, context.meter);

  return {
    payments,
    gate: bank,
    breaker,
    maxWaitMs: MAX_WAIT_MS,
    shedder,
    async close() {
      await payments.close();
      bank.close();
      breaker.close();
      await store?.close();
    },
  };
}
