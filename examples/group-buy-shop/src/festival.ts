import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { FRAMEWORKS, flagsOf, parseFramework, SHOP_KINDS, type ShopKind } from './config.js';
import { findings, formatTable, machineLine } from './festival/report.js';
import { runFestival } from './festival/run-festival.js';

/**
 * The festival's default bank limit. Each shop process needs about 3-4 ms of CPU per checkout on a small
 * sandboxed 2-core machine (measured: 170-270 checkouts/s at best, with the students and the bank on the
 * same two cores), so at 300/s the shops, not the bank, would be the bottleneck and the festival would
 * measure the machine. At 150/s the bank is what limits, as at a real festival.
 */
const FESTIVAL_BANK_RATE = 150;

const USAGE = `Usage: pnpm festival [options]

Runs the same shopping-festival surge against a naive shop, a shop built carefully from today's
libraries and the floodgate shop, all paying through one flow-limited, faulty bank (bank-sim), then
prints a side-by-side table and writes report.json + report.html.

  --students N        students in the surge                     (default 1000)
  --arrival S         they arrive within S seconds              (default 2)
  --bank-rate R       the bank's flow limit, payments/s         (default ${FESTIVAL_BANK_RATE})
  --faults on|off     realistic bank faults                     (default on)
  --seed N            same seed, same students and faults       (default 1)
  --shops a,b,c       which shops, in order                     (default ${SHOP_KINDS.join(',')})
  --framework NAME    the floodgate shop's app: ${FRAMEWORKS.join('|')}  (default $SHOP_FRAMEWORK or express;
                      the naive and careful shops are Express apps either way)
  --crash on|off      also SIGKILL the floodgate shop mid-surge (default on)
  --instances N       floodgate shop processes sharing the limit through Redis (default 1)
  --redis URL         Redis for --instances > 1                 (default $REDIS_URL)
  --out DIR           report folder                     (default festival-report-<timestamp>)
  -h, --help
`;

function fail(message: string): never {
  process.stderr.write(`festival: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function number(name: string, value: string, min: number, integer = true): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    fail(`Expected \`--${name}\` to be ${integer ? 'an integer' : 'a number'} >= ${min}, got \`${value}\``);
  }
  return n;
}

function onOff(name: string, value: string): boolean {
  if (value !== 'on' && value !== 'off')
    fail(`Expected \`--${name}\` to be \`on\` or \`off\`, got \`${value}\``);
  return value === 'on';
}

let parsed: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    args: flagsOf(process.argv.slice(2)),
    strict: true,
    options: {
      students: { type: 'string', default: '1000' },
      arrival: { type: 'string', default: '2' },
      'bank-rate': { type: 'string', default: String(FESTIVAL_BANK_RATE) },
      faults: { type: 'string', default: 'on' },
      seed: { type: 'string', default: '1' },
      shops: { type: 'string', default: SHOP_KINDS.join(',') },
      framework: { type: 'string', default: process.env.SHOP_FRAMEWORK ?? 'express' },
      crash: { type: 'string', default: 'on' },
      instances: { type: 'string', default: '1' },
      redis: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
}
try {
  parsed = parse();
} catch (error) {
  fail((error as Error).message);
}
const { values } = parsed;
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

const shops = values.shops.split(',').map((s) => s.trim()) as ShopKind[];
for (const shop of shops) {
  if (!SHOP_KINDS.includes(shop))
    fail(`Expected \`--shops\` to list ${SHOP_KINDS.join(', ')}, got \`${shop}\``);
}
let framework: ReturnType<typeof parseFramework>;
try {
  framework = parseFramework(values.framework);
} catch (error) {
  fail((error as Error).message);
}
if (framework !== 'express' && !shops.includes('floodgate'))
  fail(`\`--framework ${framework}\` serves the floodgate shop only, but \`--shops\` is \`${values.shops}\``);
const instances = number('instances', values.instances, 1);
const redisUrl = values.redis ?? (instances > 1 ? process.env.REDIS_URL : undefined);
if (instances > 1 && !redisUrl)
  fail('`--instances` above 1 needs `--redis URL` (or REDIS_URL): the shops share the limit there');
const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace('Z', '');
// `pnpm --filter group-buy-shop festival` runs in this package's folder; pnpm keeps the caller's in INIT_CWD.
const outDir = resolve(process.env.INIT_CWD ?? process.cwd(), values.out ?? `festival-report-${stamp}`);

const report = await runFestival({
  students: number('students', values.students, 1),
  arrivalMs: number('arrival', values.arrival, 0, false) * 1000,
  bankRate: number('bank-rate', values['bank-rate'], 1, false),
  faults: onOff('faults', values.faults),
  seed: number('seed', values.seed, 0),
  shops,
  framework,
  crash: onOff('crash', values.crash),
  instances,
  redisUrl,
  drainTimeoutMs: 10_000,
  outDir,
  progress: process.stderr,
});

process.stdout.write(`\n${formatTable(report)}\n\n`);
for (const run of report.runs) process.stdout.write(`- ${findings(run)}\n`);
process.stdout.write(`\n${machineLine(report)}\n`);
process.stdout.write(
  `\nReport: ${outDir}/report.html (and report.json), in ${(report.durationMs / 1000).toFixed(1)} s\n`,
);
