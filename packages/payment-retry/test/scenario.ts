import { randomUUID } from 'node:crypto';
import type { BankSimOptions, Faults } from '@floodgate/bank-sim';
import { Pool } from 'undici';

/**
 * The festival scenario the acceptance tests, the crash test and the 10,000-payment script share: ~30% of
 * attempts hit by faults — charged-then-dropped answers, answers slower than the client's timeout, 503s,
 * resets, refused connections — plus a 503 outage window with Retry-After.
 */
export const FESTIVAL_FAULTS: Partial<Faults> = {
  errorRate: 0.08,
  errorStatus: 503,
  dropAfterChargeRate: 0.08,
  slowAfterChargeRate: 0.06,
  // Far past the client's headers timeout (CLIENT_TIMEOUTS): the answer is lost to it.
  slowAnswerMs: 3000,
  resetRate: 0.06,
  refuseConnectionRate: 0.04,
  outages: [{ startMs: 100, durationMs: 300 }],
  outageMode: 'status',
};

export const FESTIVAL_BANK: BankSimOptions = {
  rate: Number.POSITIVE_INFINITY,
  latencyMs: 2,
  // A few answers come after the client's timeout while still processing: retries meet 409s.
  latencyJitterMs: 450,
  tellers: 256,
  seed: 7,
};

/**
 * Timeouts generous enough for a loaded 2-core CI machine, still far below the slow answers.
 * (The test asserts correctness, never speed.)
 */
export const CLIENT_TIMEOUTS = { connectMs: 1000, headersMs: 400, bodyMs: 400, paymentMs: 2000 } as const;

/** Order i: one in ten is paid with a card the bank declines. */
export function festivalOrder(i: number): {
  orderId: string;
  amount: number;
  currency: string;
  payer: string;
} {
  return {
    orderId: `order-${i}`,
    amount: 1000 + (i % 50),
    currency: 'EUR',
    payer: i % 10 === 9 ? 'tok_decline_insufficient_funds' : 'tok_ok',
  };
}

/** Runs `fn` over `items` with at most `limit` at once. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * The client every festival student met: on any failure it retries up to `maxAttempts` times, and each
 * try carries a fresh idempotency key (stripe-node's default). Kept so the difference stays visible.
 */
export class NaiveClient {
  readonly #pool: Pool;

  constructor(origin: string) {
    this.#pool = new Pool(origin, {
      connections: 64,
      headersTimeout: CLIENT_TIMEOUTS.headersMs,
      bodyTimeout: CLIENT_TIMEOUTS.bodyMs,
    });
  }

  async pay(
    order: ReturnType<typeof festivalOrder>,
    maxAttempts = 5,
  ): Promise<'paid' | 'declined' | 'failed'> {
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      try {
        const response = await this.#pool.request({
          path: '/payments',
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': `"${randomUUID()}"` },
          body: JSON.stringify({ ...order, source: order.payer }),
        });
        await response.body.text();
        if (response.statusCode === 201) return 'paid';
        if (response.statusCode === 402) return 'declined';
      } catch {
        // A timeout or a reset: "it failed", so try again.
      }
    }
    return 'failed';
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}
