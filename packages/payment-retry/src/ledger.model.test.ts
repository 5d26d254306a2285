import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  addSeen,
  emptySeen,
  LedgerModel,
  LedgerReal,
  type LedgerStore,
  LedgerWorld,
  ledgerCommands,
  type ReopenMode,
} from '../test/ledger-model.js';
import { MemoryLedger } from './memory-ledger.js';
import { SqliteLedger } from './sqlite-ledger.js';

// `updatedAt` is the wall clock at a transition: both ledgers read `Date.now()`, which is faked here and
// moved by the model's `tick` commands. Nothing else is faked (the checkpoint worker runs on its own).
const START = 1_000;
const setClock = (now: number) => vi.setSystemTime(now);

let dir: string;
let files = 0;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'payment-retry-ledger-model-'));
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(START);
});
afterEach(() => {
  vi.useRealTimers();
  rmSync(dir, { recursive: true, force: true });
});

function memoryStore(options: ConstructorParameters<typeof MemoryLedger>[0]): LedgerStore {
  const ledger = new MemoryLedger(options);
  return {
    name: 'memoryLedger',
    connections: 1,
    connection: () => ledger,
    dispose: async () => ledger.close(),
  };
}

/** One file, two connections (two processes of one machine), each of which may restart. */
function sqliteStore(keepAttempts: boolean, checkpoint: 'inline' | 'worker'): LedgerStore {
  const path = join(dir, `ledger-${files++}.db`);
  const open = () => new SqliteLedger({ path, keepAttempts, checkpoint });
  const connections = [open(), open()];
  const at = (via: number) => connections[via] as SqliteLedger;
  return {
    name: 'sqliteLedger',
    connections: connections.length,
    connection: at,
    async reopen(via: number, mode: ReopenMode) {
      if (mode === 'all') {
        for (const connection of connections) await connection.close();
        for (let i = 0; i < connections.length; i++) connections[i] = open();
      } else if (mode === 'open-close') {
        const old = at(via);
        connections[via] = open();
        await old.close();
      } else {
        await at(via).close();
        connections[via] = open();
      }
    },
    async dispose() {
      for (const connection of connections) await connection.close();
      for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true });
    },
  };
}

async function runModel(world: LedgerWorld, stores: readonly LedgerStore[], commands: Iterable<unknown>) {
  const real = new LedgerReal(world, stores);
  try {
    await fc.asyncModelRun(
      () => ({ model: world, real }),
      commands as Iterable<fc.AsyncCommand<LedgerWorld, LedgerReal>>,
    );
  } finally {
    for (const store of stores) await store.dispose();
  }
}

/** One model run against memoryLedger() and a sqliteLedger file; answers what the run met. */
async function runBoth(keepAttempts: boolean, checkpoint: 'inline' | 'worker', commands: Iterable<unknown>) {
  vi.setSystemTime(START);
  const model = new LedgerModel({ keepAttempts });
  await runModel(
    new LedgerWorld(model),
    [memoryStore({ keepAttempts }), sqliteStore(keepAttempts, checkpoint)],
    commands,
  );
  return model.seen;
}

describe('PaymentLedger against the reference model (test/ledger-model.ts)', () => {
  it('memoryLedger() and sqliteLedger (two connections, restarts) answer every call as the model does', {
    timeout: 90_000,
  }, async () => {
    const seen = emptySeen();
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        ledgerCommands({ maxCommands: 50, reopen: true, restart: false, apiCreates: true, setClock }),
        async (keepAttempts, commands) => addSeen(seen, await runBoth(keepAttempts, 'inline', commands)),
      ),
      { numRuns: 300 },
    );
    // The cases the model exists for did come up (a property that never meets them proves nothing).
    // (About a third of what 300 runs meet: ~250 creates refused for the key and ~150 for the generation,
    // ~1150 moves and ~1900 refused, ~110 stale drivers refused and ~10 moved anyway, ~560 attempts for
    // missing payments, ~50 unresolved lists cut by a limit, ~500 restarts, ~600 clicks that created a
    // payment, ~300 answered paid, ~550 driven, ~9 refused as another order's key.)
    expect(seen.refusedKey).toBeGreaterThan(80);
    expect(seen.refusedGeneration).toBeGreaterThan(50);
    expect(seen.moved).toBeGreaterThan(400);
    expect(seen.refusedMove).toBeGreaterThan(600);
    expect(seen.staleRefused).toBeGreaterThan(35);
    expect(seen.staleMovedAnyway).toBeGreaterThan(0);
    expect(seen.orphanAttempts).toBeGreaterThan(180);
    expect(seen.unresolvedCut).toBeGreaterThan(15);
    expect(seen.badLimits).toBeGreaterThan(10);
    expect(seen.reopens).toBeGreaterThan(150);
    expect(seen.clicks.created).toBeGreaterThan(200);
    expect(seen.clicks.paid).toBeGreaterThan(100);
    expect(seen.clicks.drive).toBeGreaterThan(180);
    expect(seen.clicks.mismatch).toBeGreaterThan(0);
  });

  it('sqliteLedger with its checkpoint worker (the default for a file) keeps everything across restarts', {
    timeout: 90_000,
  }, async () => {
    // A worker thread per connection, started and stopped at every restart: fewer runs.
    const seen = emptySeen();
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        ledgerCommands({ maxCommands: 50, reopen: true, restart: false, apiCreates: true, setClock }),
        async (keepAttempts, commands) => addSeen(seen, await runBoth(keepAttempts, 'worker', commands)),
      ),
      { numRuns: 25 },
    );
    expect(seen.reopens).toBeGreaterThan(10);
  });

  it.each([
    [
      'written only the way the client writes: every click is compared with a ledger that never forgets',
      false,
    ],
    ['written through the API too (any generation, any key): every answer as the model says', true],
  ])('memoryLedger({ maxPaid }) forgets only what it may, orders %s', async (_name, apiCreates) => {
    const seen = emptySeen();
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 }),
        fc.boolean(),
        ledgerCommands({ maxCommands: 60, reopen: false, restart: true, apiCreates, setClock }),
        async (maxPaid, keepAttempts, commands) => {
          vi.setSystemTime(START);
          const model = new LedgerModel({ maxPaid, keepAttempts });
          await runModel(new LedgerWorld(model), [memoryStore({ maxPaid, keepAttempts })], commands);
          addSeen(seen, model.seen);
        },
      ),
      { numRuns: 1000 },
    );
    // (About a third of what 1000 runs meet: ~760-960 paid payments forgotten, most of them their order's
    // latest, ~260-370 forgotten keys created again, ~140-370 clicks that re-derived a forgotten paid key,
    // ~550 restarts; with API writes ~240 generations remembered below a gap and ~400 creates refused by
    // one; ~7700 clicks compared with the ledger that never forgets without them, ~4000 with.)
    expect(seen.evicted).toBeGreaterThan(250);
    expect(seen.evictedLatest).toBeGreaterThan(200);
    expect(seen.recreated).toBeGreaterThan(80);
    expect(seen.clicks.replayed).toBeGreaterThan(40);
    expect(seen.restarts).toBeGreaterThan(150);
    expect(seen.clicksAgainstShadow).toBeGreaterThan(1000);
    if (apiCreates) {
      expect(seen.floorsSet).toBeGreaterThan(60);
      expect(seen.refusedFloor).toBeGreaterThan(100);
    }
  });
});
