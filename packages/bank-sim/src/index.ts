export { BankSim, startBankSim } from './bank-sim.js';
export { BankSimError, InvalidOptionError } from './errors.js';
export type { PaymentState } from './idempotency-store.js';
export type { BankSimOptions, Faults, OutageWindow, ResolvedOptions } from './options.js';
export type { BankStats, BankStatsSecond } from './stats.js';
