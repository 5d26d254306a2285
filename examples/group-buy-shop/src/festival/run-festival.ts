import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import type { Framework, ShopKind } from '../config.js';
import { ProgressBar } from './progress.js';
import { type FestivalReport, renderHtml } from './report.js';
import { type FestivalSettings, type RunReport, type RunSpec, runOne } from './run.js';

export interface FestivalOptions extends Omit<FestivalSettings, 'onProgress' | 'onShopsReady'> {
  /** The shops to compare, in order. */
  readonly shops: readonly ShopKind[];
  /**
   * The floodgate shop's framework. The naive and careful shops are Express apps whatever it says: their
   * checkout guards are Express middleware.
   * @default 'express'
   */
  readonly framework?: Framework;
  /** Also run the floodgate shop once more with a SIGKILL mid-surge. */
  readonly crash: boolean;
  /** Floodgate shop processes sharing the bank's limit (needs `redisUrl` when > 1). */
  readonly instances: number;
  readonly redisUrl: string | undefined;
  /** Draw a progress bar on this stream (`undefined`: none). */
  readonly progress?: NodeJS.WriteStream | undefined;
}

/** The runs the festival makes, one per column of its table. */
export function plannedRuns(options: FestivalOptions): RunSpec[] {
  const runs: RunSpec[] = [];
  for (const shop of options.shops) {
    const floodgate = shop === 'floodgate';
    const instances = floodgate ? options.instances : 1;
    const framework = floodgate ? (options.framework ?? 'express') : 'express';
    // The Express shop keeps its plain label, so reports from before `--framework` compare as they were.
    const on = framework === 'express' ? '' : ` (${framework})`;
    const suffix = instances > 1 ? ` ×${instances}` : '';
    runs.push({
      shop,
      framework,
      label: `${shop}${on}${suffix}`,
      crash: false,
      instances,
      redisUrl: floodgate ? options.redisUrl : undefined,
    });
    if (floodgate && options.crash) {
      runs.push({
        shop,
        framework,
        label: `${shop}${on}${suffix} + SIGKILL`,
        crash: true,
        instances,
        redisUrl: options.redisUrl,
      });
    }
  }
  return runs;
}

/**
 * Runs the same surge against each shop and writes `report.json` and `report.html` into `outDir`.
 * @returns the report (also written to disk).
 */
export async function runFestival(options: FestivalOptions): Promise<FestivalReport> {
  const startedAt = performance.now();
  const loadAtStart = loadavg()[0] ?? 0;
  await mkdir(options.outDir, { recursive: true });
  const bar = options.progress ? new ProgressBar(options.progress) : undefined;
  const runs: RunReport[] = [];
  for (const spec of plannedRuns(options)) {
    runs.push(
      await runOne(spec, {
        ...options,
        onProgress: bar
          ? ({ label, phase, done, total }) => bar.update(label, phase, done, total)
          : undefined,
        onShopsReady: bar
          ? ({ label, dashboards }) => {
              dashboards.forEach((url, i) => {
                const which = dashboards.length > 1 ? `, process ${i + 1} of ${dashboards.length}` : '';
                bar.note(`live dashboard: ${url}  (${label}${which})`);
              });
            }
          : undefined,
      }),
    );
    bar?.done();
  }
  const report: FestivalReport = {
    createdAt: new Date().toISOString(),
    settings: {
      students: options.students,
      bankRate: options.bankRate,
      faults: options.faults,
      seed: options.seed,
      arrivalMs: options.arrivalMs,
      drainTimeoutMs: options.drainTimeoutMs,
      framework: options.framework ?? 'express',
      instances: options.instances,
      redisUrl: options.redisUrl,
    },
    durationMs: Math.round(performance.now() - startedAt),
    machine: { cores: availableParallelism(), loadAtStart, loadAtEnd: loadavg()[0] ?? 0 },
    runs,
  };
  await writeFile(join(options.outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(join(options.outDir, 'report.html'), renderHtml(report));
  return report;
}
