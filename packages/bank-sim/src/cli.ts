#!/usr/bin/env node
import { startBankSim } from './bank-sim.js';
import { parseCliArgs, usage } from './cli-args.js';
import { BankSimError } from './errors.js';

async function main(): Promise<void> {
  const command = parseCliArgs(process.argv.slice(2));
  if (command.help) {
    process.stdout.write(usage);
    return;
  }
  const bank = await startBankSim(command.options);
  const { rate, burst, seed, faults } = bank.options;
  // The library's timers are unref'd and a `refuse` outage closes the server, so during an outage
  // nothing of the simulator keeps the process alive: the CLI holds its own handle until stopped.
  // It never fires in practice (2^31 - 1 ms is about 24.8 days) and does nothing when it does.
  const keepAlive = setInterval(() => {}, 2_147_483_647);
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    clearInterval(keepAlive);
    const { series: _series, ...totals } = bank.stats();
    bank.close().then(
      () => {
        process.stderr.write(`floodgate-bank-sim stopped (${signal}): ${JSON.stringify(totals)}\n`);
        process.exitCode = 0;
      },
      (error: unknown) => {
        process.stderr.write(`floodgate-bank-sim: ${String(error)}\n`);
        process.exitCode = 1;
      },
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // The address goes out only once a signal can stop the simulator cleanly (with its final stats): a
  // script that reads it and signals at once must not kill it before the handlers are there.
  process.stdout.write(
    command.json ? `${JSON.stringify({ url: bank.url, port: bank.port })}\n` : `${bank.url}\n`,
  );
  process.stderr.write(
    `floodgate-bank-sim listening on ${bank.url} (rate ${rate}/s, burst ${burst}, seed ${seed}); ` +
      `faults ${JSON.stringify(faults)}; stats at ${bank.url}/_stats; Ctrl-C to stop\n`,
  );
}

main().catch((error: unknown) => {
  // A bad command line is a usage error (2, with the usage); anything else, such as a port already in
  // use, is a failure to run (1), where the usage would only bury the reason.
  if (error instanceof BankSimError) {
    process.stderr.write(`floodgate-bank-sim: ${error.message}\n\n${usage}`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`floodgate-bank-sim: ${String(error)}\n`);
    process.exitCode = 1;
  }
});
