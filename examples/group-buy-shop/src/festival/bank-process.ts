import { type BankSimOptions, startBankSim } from '@floodgate/bank-sim';

// The bank, in its own process so its event loop does not share a core with the shop or the students.
// Started by the festival with one JSON argument: the options for startBankSim().
const options = JSON.parse(process.argv[2] ?? '{}') as BankSimOptions;
const bank = await startBankSim(options);
process.send?.({ type: 'ready', url: bank.url, port: bank.port });

async function shutdown(): Promise<void> {
  await bank.close();
  process.exit(0);
}
process.once('SIGTERM', shutdown);
process.on('message', (message) => {
  if ((message as { type?: string }).type === 'shutdown') void shutdown();
});
