// A shop process paying a batch of orders; the crash test kills it with SIGKILL half-way.
// Usage: node --import tsx crash-child.ts <bank origin> <ledger path> <orders>
import { createPaymentClient } from '../src/client.js';
import { ietfGateway } from '../src/ietf-gateway.js';
import { SqliteLedger } from '../src/sqlite-ledger.js';
import { CLIENT_TIMEOUTS, festivalOrder, mapLimit } from './scenario.js';

const [origin, path, count] = process.argv.slice(2);
const client = createPaymentClient({
  gateway: ietfGateway({ origin: origin as string }),
  ledger: new SqliteLedger({ path: path as string }),
  retry: { baseDelayMs: 5, maxDelayMs: 50, maxRetryAfterMs: 50 },
  timeouts: CLIENT_TIMEOUTS,
});
const orders = Array.from({ length: Number(count) }, (_, i) => festivalOrder(i));
await mapLimit(orders, 32, async (order) => {
  const outcome = await client.pay(order);
  process.stdout.write(`${outcome.status} ${outcome.orderId}\n`);
});
process.stdout.write('done\n');
await client.close();
