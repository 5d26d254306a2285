// One OS process of the multi-process test: connects, says "ready", waits for "go" on stdin, then keeps
// `concurrency` consumes in flight on one key for `durationMs` and prints what it was granted as JSON.
import { createInterface } from 'node:readline';
import { redisStore } from '../src/index.js';

const { REDIS_URL, PREFIX, KEY, CAPACITY, REFILL_PER_MS, DURATION_MS, CONCURRENCY } = process.env;
const spec = { capacity: Number(CAPACITY), refillPerMs: Number(REFILL_PER_MS) };
const store = redisStore({
  url: REDIS_URL ?? 'redis://127.0.0.1:6379',
  prefix: PREFIX ?? '',
  timeoutMs: 2_000,
});

let granted = 0;
let denied = 0;
let failed = 0;
let firstSentAt = 0;
let lastAnsweredAt = 0;

async function worker(until: number): Promise<void> {
  while (performance.timeOrigin + performance.now() < until) {
    try {
      const decision = await store.consume(KEY ?? 'k', 1, spec);
      if (decision.allowed) granted += 1;
      else denied += 1;
    } catch {
      failed += 1;
    }
    lastAnsweredAt = performance.timeOrigin + performance.now();
  }
}

// Warm the connection and the script cache on a throwaway key before the clock starts.
await store.consume(`${KEY}:warm:${process.pid}`, 1, spec);
process.stdout.write('ready\n');
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() !== 'go') continue;
  firstSentAt = performance.timeOrigin + performance.now();
  const until = firstSentAt + Number(DURATION_MS);
  await Promise.all(Array.from({ length: Number(CONCURRENCY) }, () => worker(until)));
  break;
}
lines.close();
await store.close();
process.stdout.write(`${JSON.stringify({ granted, denied, failed, firstSentAt, lastAnsweredAt })}\n`);
