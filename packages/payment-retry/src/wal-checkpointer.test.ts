import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidOptionError } from './errors.js';
import { SqliteLedger } from './sqlite-ledger.js';
import { WalCheckpointer } from './wal-checkpointer.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'payment-retry-wal-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A WAL database that never checkpoints by itself, with `rows` rows written. */
function walDatabase(file: string, rows: number): Database.Database {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)');
  const insert = db.prepare('INSERT INTO t (body) VALUES (?)');
  for (let i = 0; i < rows; i++) insert.run('x'.repeat(200));
  return db;
}

describe('WalCheckpointer', () => {
  it('moves the WAL into the database from its own thread, and stops', async () => {
    const file = join(dir, 'wal.db');
    const db = walDatabase(file, 500);
    // An hour between timed checkpoints: only the one asked for runs during the test.
    const checkpointer = new WalCheckpointer(file, 3_600_000);
    const sizeBefore = statSync(file).size;
    const result = await checkpointer.checkpointNow();
    expect(result.busy).toBe(0);
    expect(result.log).toBeGreaterThan(0);
    expect(result.checkpointed).toBe(result.log); // every frame moved: the writer was idle
    expect(statSync(file).size).toBeGreaterThan(sizeBefore); // the rows are in the database file now
    await checkpointer.stop();
    await checkpointer.stop(); // idempotent
    db.close();
  });
});

describe('SqliteLedger checkpoint option', () => {
  it('checkpoints from a worker by default with a file, and close() settles when it has exited', async () => {
    const path = join(dir, 'ledger.db');
    const ledger = new SqliteLedger({ path });
    await ledger.close();
    await ledger.close();
    const reopened = new SqliteLedger({ path, checkpoint: 'inline' });
    expect(reopened.unresolved()).toEqual([]);
    await reopened.close();
  });

  it('rejects a worker where the ledger does not open the file itself, and unknown values', () => {
    const db = new Database(':memory:');
    expect(() => new SqliteLedger({ database: db, checkpoint: 'worker' })).toThrow(InvalidOptionError);
    expect(() => new SqliteLedger({ path: ':memory:', checkpoint: 'worker' })).toThrow('`checkpoint`');
    // @ts-expect-error testing a bad value
    expect(() => new SqliteLedger({ path: join(dir, 'x.db'), checkpoint: 'never' })).toThrow(
      "Expected `checkpoint` to be 'worker' or 'inline', got `never` (string)",
    );
    db.close();
  });
});

describe('a script that ends with `await ledger.close()`', () => {
  it('waits for the checkpoint worker instead of exiting with the promise unsettled', async () => {
    const ledgerModule = fileURLToPath(new URL('./sqlite-ledger.ts', import.meta.url));
    const script = `
      import { SqliteLedger } from ${JSON.stringify(ledgerModule)};
      const ledger = new SqliteLedger({ path: ${JSON.stringify(join(dir, 'script.db'))} });
      await ledger.close();
      console.log('closed');
    `;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      { timeout: 20_000 },
    );
    expect(stdout.trim()).toBe('closed');
  });
});
