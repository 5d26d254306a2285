import type { Framework } from '../config.js';
import type { FestivalSettings, RunReport } from './run.js';

/** The festival's result: the settings it ran with and one report per shop. */
export interface FestivalReport {
  readonly createdAt: string;
  readonly settings: Omit<FestivalSettings, 'onProgress' | 'outDir'> & {
    /** The floodgate shop's framework (the naive and careful shops are Express apps). */
    readonly framework: Framework;
    readonly instances: number;
    readonly redisUrl: string | undefined;
  };
  readonly durationMs: number;
  /**
   * The machine the festival ran on: the shops, the bank and the students share its cores, so other work
   * on it lowers goodput and raises latency. Load averages are the 1-minute figures at start and end.
   */
  readonly machine: { readonly cores: number; readonly loadAtStart: number; readonly loadAtEnd: number };
  readonly runs: readonly RunReport[];
}

/** One line on the machine, for the console: why the same festival can score differently. */
export function machineLine(report: FestivalReport): string {
  const { cores, loadAtStart, loadAtEnd } = report.machine;
  // The festival itself keeps about all the cores busy; more than that at the start means other work.
  const busy =
    loadAtStart > cores ? ' (other work was running: expect lower goodput and higher latency)' : '';
  return `machine: ${cores} cores, load average ${loadAtStart.toFixed(1)} at start, ${loadAtEnd.toFixed(1)} at end${busy}`;
}

const percent = (share: number) => `${Math.round(share * 100)}%`;
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const millis = (ms: number) => (ms >= 10_000 ? seconds(ms) : `${Math.round(ms)} ms`);

/** The table's rows: a label and one cell per run. */
export function tableRows(report: FestivalReport): Array<[string, ...string[]]> {
  const runs = report.runs;
  const row = (label: string, cell: (run: RunReport) => string): [string, ...string[]] => [
    label,
    ...runs.map(cell),
  ];
  return [
    row('orders paid', (r) => `${r.ordersPaid} / ${r.students}`),
    row('orders charged twice', (r) => String(r.ordersChargedTwice)),
    row('extra charges', (r) => String(r.extraCharges)),
    row('lost orders', (r) => String(r.lostOrders)),
    row(`bank peak admitted/s (limit ${report.settings.bankRate})`, (r) =>
      String(r.bankPeakAdmittedPerSecond),
    ),
    row('throttled by the bank', (r) => String(r.throttled)),
    row('checkout latency p50 / p99', (r) => {
      // Clicks never answered count with the time they had waited: a lower bound, hence "≥".
      const atLeast = r.unanswered > 0 ? '≥ ' : '';
      return `${atLeast}${millis(r.latencyMs.p50)} / ${atLeast}${millis(r.latencyMs.p99)}`;
    }),
    row('time to drain', (r) => seconds(r.timeToDrainMs)),
    row('goodput (share of bank capacity)', (r) => percent(r.goodputShare)),
    row('students told "failed" or gave up', (r) => String(gaveUp(r))),
  ];
}

function gaveUp(run: RunReport): number {
  const o = run.studentOutcomes;
  return o['gave-up-failed'] + o['gave-up-no-answer'] + o['no-order'];
}

/** `1 order`, `2 orders`: a count with its noun (plural by a final s). */
function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** One sentence per run: where its double charges came from, and what else went wrong. */
export function findings(run: RunReport): string {
  const parts: string[] = [];
  if (run.extraCharges === 0) parts.push('no double charges');
  else {
    const s = run.doubleChargeSources;
    const sources = [
      s.reClicks > 0 ? `${s.reClicks} from re-clicks paid with a new key` : '',
      s.retries > 0 ? `${s.retries} from retries with a fresh key` : '',
      s.crashes > 0 ? `${s.crashes} from the crash` : '',
    ].filter(Boolean);
    parts.push(
      `${count(run.extraCharges, 'extra charge')} on ${count(run.ordersChargedTwice, 'order')}${sources.length ? ` (${sources.join(', ')})` : ''}`,
    );
  }
  if (run.lost.chargedNotPaid > 0)
    parts.push(`${count(run.lost.chargedNotPaid, 'order')} charged but shown as not paid`);
  if (run.lost.unresolved > 0)
    parts.push(`${count(run.lost.unresolved, 'order')} still unresolved at the end`);
  if (run.bankPeakAdmittedPerSecond > run.bankRate * 1.05) {
    parts.push(`the bank saw up to ${run.bankPeakAdmittedPerSecond}/s against a limit of ${run.bankRate}/s`);
  }
  if (run.unanswered > 0) {
    parts.push(`${count(run.unanswered, 'click')} ${run.unanswered === 1 ? 'was' : 'were'} never answered`);
  }
  if (run.crash) parts.push(crashFinding(run));
  return `${run.label}: ${parts.join('; ')}.`;
}

/** The crash run's restart: when the shop took checkouts again, where the time went, the recovery. */
function crashFinding(run: RunReport): string {
  const killed = `shop SIGKILLed at ${seconds(run.crashedAtMs ?? 0)}`;
  const r = run.restart;
  if (!r) {
    return `${killed}, back after ${seconds(run.restartMs ?? 0)} with ${run.recovered ?? 0} payments recovered`;
  }
  const steps = [
    `new process running ${millis(r.processStartedMs)}`,
    `modules loaded ${millis(r.modulesLoadedMs)}`,
    `shop built ${millis(r.shopBuiltMs)}`,
    `orders synced ${millis(r.ordersSyncedMs)}`,
    `listening ${millis(r.listeningMs)}`,
    `recovered ${millis(r.recoveredMs)}`,
    `the killed one seen gone ${millis(r.exitedMs)}`,
  ];
  return (
    `${killed}, taking checkouts again after ${seconds(run.restartMs ?? r.listeningMs)}, ` +
    `${run.recovered ?? 0} payments recovered after ${seconds(r.recoveredMs)} ` +
    `(from the SIGKILL: ${steps.join(', ')})`
  );
}

/** The side-by-side table for a terminal. */
export function formatTable(report: FestivalReport): string {
  const header: [string, ...string[]] = ['', ...report.runs.map((r) => r.label)];
  const rows = [header, ...tableRows(report)];
  const widths = header.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  const rule = widths.map((w) => '─'.repeat(w)).join('  ');
  return [line(header), rule, ...rows.slice(1).map(line)].join('\n');
}

const COLORS = {
  limit: '#a3261b',
  admitted: '#2f6ea5',
  throttled: '#e0a030',
  useful: '#176b2c',
  p50: '#2f6ea5',
  p99: '#a3261b',
};

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

interface Line {
  readonly name: string;
  readonly color: string;
  readonly values: readonly number[];
  readonly dashed?: boolean;
}

/** A small inline SVG line chart, with axes labelled in whole seconds. */
export function lineChart(title: string, unit: string, lines: readonly Line[]): string {
  const width = 560;
  const height = 200;
  const left = 48;
  const bottom = 24;
  const top = 10;
  const length = Math.max(2, ...lines.map((l) => l.values.length));
  const max = Math.max(1, ...lines.flatMap((l) => l.values)) * 1.1;
  const x = (i: number) => left + (i / (length - 1)) * (width - left - 8);
  const y = (v: number) => top + (1 - v / max) * (height - top - bottom);
  const paths = lines
    .map((l) => {
      const points = l.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      return `<polyline fill="none" stroke="${l.color}" stroke-width="2"${l.dashed ? ' stroke-dasharray="6 4"' : ''} points="${points}"><title>${escapeHtml(l.name)}</title></polyline>`;
    })
    .join('');
  const ticks = [0, 0.5, 1]
    .map((f) => {
      const v = max * f;
      return `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${Math.round(v)}</text><line x1="${left}" x2="${width - 8}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e8eb"/>`;
    })
    .join('');
  const xTicks = Array.from({ length: Math.min(length, 8) }, (_, k) =>
    Math.round((k * (length - 1)) / Math.max(1, Math.min(length, 8) - 1)),
  )
    .map((i) => `<text x="${x(i)}" y="${height - 6}" text-anchor="middle">${i}s</text>`)
    .join('');
  const legend = lines
    .map((l) => `<span style="color:${l.color}">${l.dashed ? '╌' : '■'} ${escapeHtml(l.name)}</span>`)
    .join(' ');
  return `<figure><figcaption>${escapeHtml(title)} <small>(${escapeHtml(unit)})</small><br>${legend}</figcaption><svg viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(title)}">${ticks}${xTicks}${paths}</svg></figure>`;
}

/** Horizontal stacked bars: what the students were finally told, per run. */
export function outcomesChart(runs: readonly RunReport[]): string {
  const kinds = [
    ['paid', (r: RunReport) => r.studentOutcomes.paid + r.studentOutcomes['pending-then-paid'], '#176b2c'],
    [
      'declined',
      (r: RunReport) => r.studentOutcomes.declined + r.studentOutcomes['pending-then-declined'],
      '#7d8790',
    ],
    ['pending', (r: RunReport) => r.studentOutcomes.pending, '#e0a030'],
    ['told failed / gave up', gaveUp, '#a3261b'],
  ] as const;
  const width = 560;
  const rowHeight = 26;
  const left = 150;
  const rows = runs
    .map((run, i) => {
      let at = left;
      const segments = kinds
        .map(([name, count, color]) => {
          const n = count(run);
          const w = (n / Math.max(1, run.students)) * (width - left - 10);
          const rect = `<rect x="${at.toFixed(1)}" y="${i * rowHeight + 4}" width="${w.toFixed(1)}" height="${rowHeight - 8}" fill="${color}"><title>${name}: ${n}</title></rect>`;
          at += w;
          return rect;
        })
        .join('');
      return `<text x="${left - 8}" y="${i * rowHeight + rowHeight / 2 + 4}" text-anchor="end">${escapeHtml(run.label)}</text>${segments}`;
    })
    .join('');
  const legend = kinds.map(([name, , color]) => `<span style="color:${color}">■ ${name}</span>`).join(' ');
  return `<figure><figcaption>What the students were told<br>${legend}</figcaption><svg viewBox="0 0 ${width} ${runs.length * rowHeight + 4}" role="img" aria-label="outcomes">${rows}</svg></figure>`;
}

/** The whole report as one self-contained HTML page (inline SVG and CSS, no scripts). */
export function renderHtml(report: FestivalReport): string {
  const header = `<tr><th></th>${report.runs.map((r) => `<th>${escapeHtml(r.label)}</th>`).join('')}</tr>`;
  const body = tableRows(report)
    .map(
      ([label, ...cells]) =>
        `<tr><th>${escapeHtml(label)}</th>${cells.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`,
    )
    .join('');
  const perRun = report.runs
    .map((run) => {
      const limit = new Array(run.series.admitted.length).fill(run.bankRate);
      return `<section><h2>${escapeHtml(run.label)}</h2><p>${escapeHtml(findings(run))}</p><div class="charts">${lineChart(
        'Requests at the bank against its limit',
        'per second',
        [
          { name: 'admitted by the bank', color: COLORS.admitted, values: run.series.admitted },
          { name: 'throttled (503)', color: COLORS.throttled, values: run.series.throttled },
          { name: 'orders settled (useful work)', color: COLORS.useful, values: run.series.useful },
          { name: `limit ${run.bankRate}/s`, color: COLORS.limit, values: limit, dashed: true },
        ],
      )}${lineChart('Checkout latency, by second the click was made', 'ms', [
        { name: 'p50', color: COLORS.p50, values: run.series.p50 },
        { name: 'p99', color: COLORS.p99, values: run.series.p99 },
      ])}</div></section>`;
    })
    .join('');
  const s = report.settings;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Festival report ${escapeHtml(report.createdAt)}</title>
<style>
body{font-family:system-ui,sans-serif;color:#1d2329;max-width:75rem;margin:0 auto;padding:1rem 1.5rem 3rem;background:#f7f7f5}
table{border-collapse:collapse;background:#fff;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dde2e6;padding:.35rem .7rem;text-align:right}
th:first-child{text-align:left;font-weight:normal}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(26rem,1fr));gap:1rem}
figure{margin:0;background:#fff;border:1px solid #dde2e6;border-radius:.5rem;padding:.5rem}
figcaption{font-size:.9rem}figcaption span{margin-right:.8rem}
svg{width:100%;height:auto;font-size:11px;fill:#5b6670}
</style></head><body>
<h1>Shopping festival</h1>
<p>${s.students} students arriving within ${seconds(s.arrivalMs)}, a bank limited to ${s.bankRate} payments/s,
faults ${s.faults ? 'on' : 'off'}, seed ${s.seed}, the floodgate shop on ${s.framework === 'fastify' ? 'Fastify' : 'Express'}${s.instances > 1 ? `, ${s.instances} floodgate shop processes sharing the limit through Redis` : ''}.
The same surge ran against each shop; the bank's own ground truth decides what was charged.</p>
<table>${header}${body}</table>
<ul>${report.runs.map((r) => `<li>${escapeHtml(findings(r))}</li>`).join('')}</ul>
${outcomesChart(report.runs)}
${perRun}
<p><small>Generated ${escapeHtml(report.createdAt)} in ${seconds(report.durationMs)}. ${escapeHtml(machineLine(report))}. Raw numbers: report.json.</small></p>
</body></html>
`;
}
