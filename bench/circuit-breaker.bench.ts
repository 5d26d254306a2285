// Question: what does a circuit breaker cost per call, closed and open, and does its heap stay bounded?
// @floodgate/circuit-breaker against a direct call, raw opossum 9 (default options) and cockatiel 3's
// breaker, in the same run; mitata measures each, ratios are printed against opossum.
//
//   cd packages/circuit-breaker && npx tsup && cd ../../bench
//   node --expose-gc --import tsx circuit-breaker.bench.ts
import { CircuitBreaker as FloodgateBreaker } from '@floodgate/circuit-breaker';
import { ConsecutiveBreaker, circuitBreaker as cockatielBreaker, handleAll } from 'cockatiel';
import { measure } from 'mitata';
import Opossum from 'opossum';

const HEAP_CALLS = Number(process.env.HEAP_CALLS ?? 2_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const action = async (): Promise<number> => 1;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) console.warn('run with --expose-gc for the heap figures');

interface Contender {
  readonly name: string;
  /** One call through the breaker in the closed state. */
  readonly closed: () => Promise<unknown>;
  /** One call refused by the open breaker (undefined: not applicable). */
  readonly open?: () => Promise<unknown>;
  readonly close: () => void;
}

function contenders(): Contender[] {
  const fg = new FloodgateBreaker(action, { name: 'bench' });
  const fgOpen = new FloodgateBreaker(action, { name: 'bench-open' });
  fgOpen.trip(2_000_000_000);
  const fgExec = new FloodgateBreaker({ name: 'bench-execute' });

  const op = new Opossum(action); // default options, as users get it
  const opOpen = new Opossum(action);
  opOpen.open();

  const ck = cockatielBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
  const ckOpen = cockatielBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
  const isolation = ckOpen.isolate();

  const swallow = (): undefined => undefined;
  return [
    { name: 'direct call (no breaker)', closed: () => action(), close: () => {} },
    {
      name: '@floodgate/circuit-breaker fire()',
      closed: () => fg.fire(),
      open: () => fgOpen.fire().catch(swallow),
      close: () => {
        fg.close();
        fgOpen.close();
      },
    },
    {
      name: '@floodgate/circuit-breaker execute()',
      closed: () => fgExec.execute(action),
      close: () => fgExec.close(),
    },
    {
      name: 'opossum 9 (default options)',
      closed: () => op.fire(),
      open: () => opOpen.fire().catch(swallow),
      close: () => {
        op.shutdown();
        opOpen.shutdown();
      },
    },
    {
      name: 'cockatiel 3 circuitBreaker',
      closed: () => ck.execute(action),
      open: () => ckOpen.execute(action).catch(swallow),
      close: () => isolation.dispose(),
    },
  ];
}

// Each mitata sample awaits BATCH calls in a row, so what is measured is the breaker, not the cost of
// one async benchmark iteration.
const BATCH = 1000;
async function perSecond(fn: () => Promise<unknown>): Promise<number> {
  const stats = await measure(async () => {
    for (let i = 0; i < BATCH; i++) await fn();
  });
  return (BATCH * 1e9) / stats.avg;
}

async function heapGrowth(make: () => { call: () => Promise<unknown>; close: () => void }): Promise<number> {
  gc?.();
  gc?.();
  const { call, close } = make();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < HEAP_CALLS; i++) await call();
  gc?.();
  gc?.();
  const after = process.memoryUsage().heapUsed;
  close();
  return (after - before) / 1024 / 1024;
}

function rate(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M/s` : `${(n / 1e3).toFixed(0)}k/s`;
}

async function main(): Promise<void> {
  const all = contenders();
  const closed = new Map<string, number>();
  const open = new Map<string, number>();
  // Rounds interleave the contenders and keep each one's best: on a shared machine the noise only slows.
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of all) closed.set(c.name, Math.max(closed.get(c.name) ?? 0, await perSecond(c.closed)));
    for (const c of all)
      if (c.open) open.set(c.name, Math.max(open.get(c.name) ?? 0, await perSecond(c.open)));
  }
  for (const c of all) c.close();

  const heap = new Map<string, number>();
  heap.set(
    '@floodgate/circuit-breaker fire()',
    await heapGrowth(() => {
      const b = new FloodgateBreaker(action, { name: 'heap' });
      return { call: () => b.fire(), close: () => b.close() };
    }),
  );
  heap.set(
    'opossum 9 (default options)',
    await heapGrowth(() => {
      const b = new Opossum(action);
      return { call: () => b.fire(), close: () => b.shutdown() };
    }),
  );
  heap.set(
    'cockatiel 3 circuitBreaker',
    await heapGrowth(() => {
      const b = cockatielBreaker(handleAll, { halfOpenAfter: 30_000, breaker: new ConsecutiveBreaker(5) });
      return { call: () => b.execute(action), close: () => {} };
    }),
  );

  const opClosed = closed.get('opossum 9 (default options)') as number;
  const opOpen = open.get('opossum 9 (default options)') as number;
  console.log(
    `\nNode ${process.version}, best of ${ROUNDS} rounds, ${HEAP_CALLS.toLocaleString('en')} calls for the heap column\n`,
  );
  console.log('| | closed calls/s | × opossum | open rejections/s | × opossum | heap growth |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const c of all) {
    const cl = closed.get(c.name) as number;
    const op = open.get(c.name);
    const h = heap.get(c.name);
    console.log(
      `| ${c.name} | ${rate(cl)} | ${(cl / opClosed).toFixed(2)} | ${op === undefined ? '–' : rate(op)} | ${
        op === undefined ? '–' : (op / opOpen).toFixed(2)
      } | ${h === undefined ? '–' : `${h.toFixed(1)} MB`} |`,
    );
  }
}

await main();
