import { describe, expectTypeOf, it } from 'vitest';
import {
  type BankSim,
  type BankSimError,
  type BankStats,
  type BankStatsSecond,
  type Faults,
  type InvalidOptionError,
  startBankSim,
} from './index.js';

describe('public types', () => {
  it('startBankSim resolves to a BankSim with the contract surface', () => {
    expectTypeOf(startBankSim).returns.toEqualTypeOf<Promise<BankSim>>();
    expectTypeOf<BankSim['url']>().toEqualTypeOf<string>();
    expectTypeOf<BankSim['port']>().toEqualTypeOf<number>();
    expectTypeOf<BankSim['stats']>().returns.toEqualTypeOf<BankStats>();
    expectTypeOf<BankSim['setFaults']>().parameter(0).toEqualTypeOf<Partial<Faults>>();
    expectTypeOf<BankSim['close']>().returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf<BankStats['series']>().toEqualTypeOf<readonly BankStatsSecond[]>();
  });

  it('rejects unknown options and faults at compile time', () => {
    // @ts-expect-error not an option
    void startBankSim({ colour: 'red' });
    // @ts-expect-error throttleStatus is 429 or 503
    void startBankSim({ throttleStatus: 500 });
    // @ts-expect-error not a fault
    void startBankSim({ faults: { dropRate: 1 } });
  });

  it('errors carry a code', () => {
    expectTypeOf<InvalidOptionError>().toMatchTypeOf<BankSimError>();
    expectTypeOf<BankSimError['code']>().toEqualTypeOf<string>();
  });
});
