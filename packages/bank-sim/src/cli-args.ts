import { parseArgs } from 'node:util';
import { BankSimError, InvalidOptionError } from './errors.js';
import { type BankSimOptions, type Faults, type OutageWindow, resolveOptions } from './options.js';

/** What the command line asks for. */
export interface CliCommand {
  readonly help: boolean;
  /** Print `{"url":…,"port":…}` instead of the bare URL. */
  readonly json: boolean;
  readonly options: BankSimOptions;
}

export const usage = `Usage: floodgate-bank-sim [options]

A flow-limited, faulty bank gateway to rehearse payment integrations against.
Prints its URL on stdout, runs until SIGINT/SIGTERM, then prints its stats on stderr.

Gateway
  --port <n>                 port, 0 = any free one                 (default 0)
  --host <addr>              address to listen on                   (default 127.0.0.1)
  --rate <n>                 flow limit, requests/s (Infinity: off) (default 300)
  --burst <n>                flow limit bucket size                 (default = rate)
  --throttle-status <n>      429 or 503 over the limit              (default 503)
  --rate-limit-headers <v>   draft-7 or draft-8                     (default off)
  --limit-status-checks      GET /payments/{key} takes tokens too
  --latency <ms>             service time per payment               (default 20)
  --jitter <ms>              extra random service time, up to       (default 0)
  --tellers <n>              payments served at once                (default 64)
  --max-queued <n>           waiting payments before overload       (default 1024)
  --overload-mode <v>        status (503) or reset                  (default status)
  --max-keys <n>             idempotency keys remembered            (default 100000)
  --key-ttl <ms>             how long a key is remembered           (default 86400000)
  --mismatch-status <n>      422 or 400 for a reused key            (default 422)
  --max-body <bytes>         largest request body                   (default 16384)
  --seed <n>                 seed of every random draw              (default 1)
Faults (probabilities in [0, 1])
  --error-rate <p>           transient 5xx before charging
  --error-status <n>         status of those errors                 (default 500)
  --drop-rate <p>            charge, then drop the connection (the ambiguous case)
  --slow-rate <p>            charge, then answer after --slow-ms
  --slow-ms <ms>             delay of a slow answer                 (default 30000)
  --reset-rate <p>           reset the connection before processing
  --refuse-rate <p>          reset new connections as they are accepted
  --outage <start:duration>  outage window in ms from start, repeatable (e.g. 10000:5000)
  --outage-mode <v>          refuse, reset or status                (default refuse)
  --recovery-ms <ms>         reduced rate for this long after an outage
  --recovery-factor <f>      the reduced rate, as a fraction of --rate (default 0.25)
Output
  --json                     print {"url","port"} as JSON instead of the URL
  -h, --help                 show this help
`;

const NUMBERS: Record<string, keyof BankSimOptions> = {
  port: 'port',
  rate: 'rate',
  burst: 'burst',
  'throttle-status': 'throttleStatus',
  latency: 'latencyMs',
  jitter: 'latencyJitterMs',
  tellers: 'tellers',
  'max-queued': 'maxQueued',
  'max-keys': 'maxKeys',
  'key-ttl': 'keyTtlMs',
  'mismatch-status': 'mismatchStatus',
  'max-body': 'maxBodyBytes',
  seed: 'seed',
};

const FAULT_NUMBERS: Record<string, keyof Faults> = {
  'error-rate': 'errorRate',
  'error-status': 'errorStatus',
  'drop-rate': 'dropAfterChargeRate',
  'slow-rate': 'slowAfterChargeRate',
  'slow-ms': 'slowAnswerMs',
  'reset-rate': 'resetRate',
  'refuse-rate': 'refuseConnectionRate',
  'recovery-ms': 'recoveryMs',
  'recovery-factor': 'recoveryRateFactor',
};

// The flags of the options that are not numbers (an InvalidOptionError names the option, not the flag).
const STRINGS: Record<string, string> = {
  host: 'host',
  rateLimitHeaders: 'rate-limit-headers',
  overloadMode: 'overload-mode',
  'faults.outageMode': 'outage-mode',
};

/**
 * Parses the command line of `floodgate-bank-sim` and checks the options it makes as `startBankSim()`
 * will (unless `--help` is asked), so a value out of range is reported by the flag that gave it.
 * @throws {BankSimError} `ERR_INVALID_ARGUMENT` on an unknown flag or a malformed or out-of-range value
 *   (the option's `InvalidOptionError` as `cause`).
 */
export function parseCliArgs(argv: readonly string[]): CliCommand {
  const strings = [...Object.keys(NUMBERS), ...Object.keys(FAULT_NUMBERS)];
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv, strings);
  } catch (error) {
    throw new BankSimError('ERR_INVALID_ARGUMENT', (error as Error).message, { cause: error });
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const options: Record<string, unknown> = {};
  const faults: Record<string, unknown> = {};
  for (const [flag, option] of Object.entries(NUMBERS)) {
    const value = values[flag];
    if (typeof value === 'string') options[option] = number(flag, value);
  }
  for (const [flag, fault] of Object.entries(FAULT_NUMBERS)) {
    const value = values[flag];
    if (typeof value === 'string') faults[fault] = number(flag, value);
  }
  if (typeof values.host === 'string') options.host = values.host;
  if (typeof values['rate-limit-headers'] === 'string')
    options.rateLimitHeaders = values['rate-limit-headers'];
  if (values['limit-status-checks'] === true) options.limitStatusChecks = true;
  if (typeof values['overload-mode'] === 'string') options.overloadMode = values['overload-mode'];
  if (typeof values['outage-mode'] === 'string') faults.outageMode = values['outage-mode'];
  const outages = values.outage;
  if (Array.isArray(outages)) faults.outages = outages.map((text) => outage(String(text)));
  if (Object.keys(faults).length > 0) options.faults = faults;
  const help = values.help === true;
  if (!help) {
    try {
      resolveOptions(options as BankSimOptions);
    } catch (error) {
      if (!(error instanceof InvalidOptionError)) throw error;
      const given = flagOf(error.option, values);
      if (given === undefined) throw error;
      throw new BankSimError(
        'ERR_INVALID_ARGUMENT',
        `Invalid --${given.flag} ${JSON.stringify(given.text)}: ${error.message}`,
        { cause: error },
      );
    }
  }
  return { help, json: values.json === true, options: options as BankSimOptions };
}

/** The flag that set `option` (e.g. `faults.outages[1].durationMs`), with the text it was given. */
function flagOf(
  option: string,
  values: Record<string, string | boolean | string[] | undefined>,
): { flag: string; text: string } | undefined {
  const window = /^faults\.outages\[(\d+)\]/.exec(option);
  const flag =
    window !== null
      ? 'outage'
      : (Object.keys(NUMBERS).find((f) => NUMBERS[f] === option) ??
        Object.keys(FAULT_NUMBERS).find((f) => `faults.${FAULT_NUMBERS[f]}` === option) ??
        STRINGS[option]);
  if (flag === undefined) return undefined;
  const value = values[flag];
  const text = Array.isArray(value) ? value[Number(window?.[1] ?? 0)] : value;
  return typeof text === 'string' ? { flag, text } : undefined;
}

function parse(argv: readonly string[], numberFlags: readonly string[]) {
  const stringOptions = Object.fromEntries(numberFlags.map((flag) => [flag, { type: 'string' as const }]));
  return parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      ...stringOptions,
      host: { type: 'string' },
      'rate-limit-headers': { type: 'string' },
      'limit-status-checks': { type: 'boolean' },
      'overload-mode': { type: 'string' },
      'outage-mode': { type: 'string' },
      outage: { type: 'string', multiple: true },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

function number(flag: string, text: string): number {
  const value = text === 'Infinity' ? Number.POSITIVE_INFINITY : Number(text);
  if (text.trim() === '' || Number.isNaN(value)) {
    throw new BankSimError(
      'ERR_INVALID_ARGUMENT',
      `Expected --${flag} to be a number, got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

function outage(text: string): OutageWindow {
  const match = /^(\d+(?:\.\d+)?):(\d+(?:\.\d+)?)$/.exec(text);
  if (match === null) {
    throw new BankSimError(
      'ERR_INVALID_ARGUMENT',
      `Expected --outage to be <startMs>:<durationMs> such as 10000:5000, got ${JSON.stringify(text)}`,
    );
  }
  return { startMs: Number(match[1]), durationMs: Number(match[2]) };
}
