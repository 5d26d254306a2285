/** What the dashboard reads of the bank's own counters (`GET /_stats` of bank-sim). */
export interface BankStatsView {
  admitted?: number;
  throttled?: number;
  charges?: number;
  ordersCharged?: number;
  ordersChargedMoreThanOnce?: number;
  extraCharges?: number;
  peakAdmittedPerSecond?: number;
  series?: Array<{ admitted?: number }>;
}

/**
 * The bank's counters, or `null` when it does not answer within half a second: the dashboard polls every
 * second and shows the shop's own numbers without the bank's.
 */
export async function fetchBankStats(bankUrl: string): Promise<BankStatsView | null> {
  try {
    const response = await fetch(`${bankUrl}/_stats`, { signal: AbortSignal.timeout(500) });
    return response.ok ? ((await response.json()) as BankStatsView) : null;
  } catch {
    return null;
  }
}

/**
 * The bank's per-second series as the dashboard draws the shop's own (`Meter.history`): the last `seconds`
 * complete seconds, oldest first, padded with zeros in front. The bank's series ends with the second
 * still filling, and a bank started less than a minute ago (every festival run's) has fewer entries: drawn
 * as they come, its line would be stretched over the whole chart, out of step with the shop's.
 */
export function completeSeconds(series: ReadonlyArray<{ admitted?: number }>, seconds = 60): number[] {
  const complete = series.slice(0, -1).slice(-seconds);
  const out = new Array<number>(seconds - complete.length).fill(0);
  for (const second of complete) out.push(second.admitted ?? 0);
  return out;
}
