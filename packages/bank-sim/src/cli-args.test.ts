import { describe, expect, it } from 'vitest';
import { parseCliArgs } from './cli-args.js';

describe('parseCliArgs', () => {
  it('maps flags onto startBankSim options and faults', () => {
    const command = parseCliArgs([
      '--port',
      '0',
      '--rate',
      '300',
      '--burst',
      '30',
      '--seed',
      '7',
      '--throttle-status',
      '429',
      '--rate-limit-headers',
      'draft-8',
      '--limit-status-checks',
      '--latency',
      '5',
      '--drop-rate',
      '0.05',
      '--error-rate',
      '0.1',
      '--outage',
      '10000:5000',
      '--outage',
      '30000:1000',
      '--outage-mode',
      'status',
      '--recovery-ms',
      '20000',
      '--json',
    ]);
    expect(command).toEqual({
      help: false,
      json: true,
      options: {
        port: 0,
        rate: 300,
        burst: 30,
        seed: 7,
        throttleStatus: 429,
        rateLimitHeaders: 'draft-8',
        limitStatusChecks: true,
        latencyMs: 5,
        faults: {
          dropAfterChargeRate: 0.05,
          errorRate: 0.1,
          recoveryMs: 20_000,
          outageMode: 'status',
          outages: [
            { startMs: 10_000, durationMs: 5000 },
            { startMs: 30_000, durationMs: 1000 },
          ],
        },
      },
    });
  });

  it('accepts Infinity as a rate and -h for help', () => {
    expect(parseCliArgs(['--rate', 'Infinity']).options.rate).toBe(Number.POSITIVE_INFINITY);
    expect(parseCliArgs(['-h']).help).toBe(true);
    expect(parseCliArgs([])).toEqual({ help: false, json: false, options: {} });
  });

  it.each([
    [
      ['--drop-rate', '2'],
      'Invalid --drop-rate "2": Expected `faults.dropAfterChargeRate` to be a probability',
    ],
    [['--tellers', '0'], 'Invalid --tellers "0": Expected `tellers` to be an integer >= 1, got `0`'],
    [['--latency=-1'], 'Invalid --latency "-1": Expected `latencyMs`'],
    [['--key-ttl', '0.5'], 'Invalid --key-ttl "0.5": Expected `keyTtlMs`'],
    [
      ['--rate-limit-headers', 'draft-9'],
      'Invalid --rate-limit-headers "draft-9": Expected `rateLimitHeaders`',
    ],
    [['--outage-mode', 'down'], 'Invalid --outage-mode "down": Expected `faults.outageMode`'],
    [
      ['--outage', '0:10', '--outage', '5:0'],
      'Invalid --outage "5:0": Expected `faults.outages[1].durationMs` to be a finite number in [1,',
    ],
  ])('names the flag and the text it got for an out-of-range %j', (argv, message) => {
    let error: unknown;
    try {
      parseCliArgs(argv);
    } catch (caught) {
      error = caught;
    }
    // before the fix: accepted here, then refused by startBankSim() naming only the option
    expect(error).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', cause: { code: 'ERR_INVALID_OPTION' } });
    expect((error as Error).message).toContain(message);
  });

  it('asks nothing of the values when --help is given', () => {
    expect(parseCliArgs(['--tellers', '0', '--help']).help).toBe(true);
  });

  it.each([
    [['--rate', 'fast'], 'Expected --rate to be a number, got "fast"'],
    [['--outage', '10s'], 'Expected --outage to be <startMs>:<durationMs> such as 10000:5000, got "10s"'],
    [['--colour', 'red'], /--colour/],
    [['positional'], /positional/],
  ])('rejects %j with ERR_INVALID_ARGUMENT', (argv, message) => {
    let error: unknown;
    try {
      parseCliArgs(argv);
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    expect((error as Error).message).toMatch(message);
  });
});
