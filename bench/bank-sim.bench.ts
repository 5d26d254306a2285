// Question: can the bank simulator ever be the bottleneck of a benchmark? Requests per second of
// `POST /payments` (every request a new key, so a real charge with its idempotency record), of a replayed
// key and of a throttled request, against a bare node:http server that answers the same JSON without any
// work (the ceiling of one Node process on this machine). autocannon, same run, ratios against the ceiling.
//
//   cd packages/bank-sim && npx tsup && cd ../../bench
//   node --expose-gc --import tsx bank-sim.bench.ts
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { startBankSim } from '@floodgate/bank-sim';

// autocannon ships no types; this is the slice of its API used here.
interface CannonRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  setupRequest?: (request: CannonRequest) => CannonRequest;
}
interface CannonResult {
  requests: { average: number };
  latency: { p99: number };
  non2xx: number;
}
type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
  requests: CannonRequest[];
}) => Promise<CannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const DURATION_S = Number(process.env.DURATION_S ?? 5);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 50);
const body = JSON.stringify({
  status: 'succeeded',
  id: 'pay_1',
  orderId: 'o',
  amount: 1999,
  currency: 'EUR',
});

async function load(url: string, fresh: boolean): Promise<{ rps: number; p99: number; non2xx: number }> {
  let seq = 0;
  const result = await autocannon({
    url: `${url}/payments`,
    connections: CONNECTIONS,
    duration: DURATION_S,
    requests: [
      {
        method: 'POST',
        setupRequest: (request: CannonRequest) => {
          seq++;
          const key = fresh ? `k${seq}` : 'same';
          const orderId = fresh ? `o${seq}` : 'o';
          return {
            ...request,
            headers: { 'content-type': 'application/json', 'idempotency-key': `"${key}"` },
            body: JSON.stringify({ orderId, amount: 1999, currency: 'EUR', source: 'tok_ok' }),
          };
        },
      },
    ],
  });
  return { rps: result.requests.average, p99: result.latency.p99, non2xx: result.non2xx };
}

const bare = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(201, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}`;

// Warm up the JIT of both sides (and autocannon) before anything is measured.
await load(bareUrl, true);
const rows: Array<[string, { rps: number; p99: number; non2xx: number }]> = [];
rows.push(['bare node:http (ceiling)', await load(bareUrl, true)]);

const open = await startBankSim({ rate: Number.POSITIVE_INFINITY, latencyMs: 0, maxKeys: 10_000_000 });
rows.push(['bank-sim: new key, charge', await load(open.url, true)]);
rows.push(['bank-sim: replayed key', await load(open.url, false)]);
const charged = open.stats();
await open.close();

const limited = await startBankSim({ rate: 1, burst: 1, latencyMs: 0 });
rows.push(['bank-sim: throttled (503)', await load(limited.url, true)]);
await limited.close();
bare.close();
bare.closeAllConnections();

const ceiling = rows[0]?.[1].rps ?? 1;
console.log(`${CONNECTIONS} connections, ${DURATION_S} s each, Node ${process.version}`);
console.log('| case | req/s | ratio to bare | p99 ms | non-2xx |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const [name, r] of rows) {
  console.log(
    `| ${name} | ${Math.round(r.rps)} | ${(r.rps / ceiling).toFixed(2)} | ${r.p99} | ${r.non2xx} |`,
  );
}
console.log(`charges ${charged.charges}, double-charged orders ${charged.ordersChargedMoreThanOnce}`);
