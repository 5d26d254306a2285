import { createRequire } from 'node:module';
import { SqliteDriverUnsupportedError } from './errors.js';

/** Why better-sqlite3 12 is a risk on Node 24; the text of the process warning {@link checkSqliteDriver} returns. */
const NODE_24_RISK =
  'can abort the process on Node.js 24 (Node 24.19 made node::ObjectWrap remove a cleanup hook in its ' +
  'destructor, which better-sqlite3 <= 12 statements reach during garbage collection: nodejs/node#65446); ' +
  'install better-sqlite3 >= 13.2, which uses Node-API';

function major(version: string): number {
  return Number.parseInt(version, 10);
}

/**
 * Checks a better-sqlite3 version against a Node.js version (both as `process.versions` spells them).
 * Pure, so every pairing is testable on any Node.
 *
 * @returns a warning to emit when the pair works but is known to be fragile, else `undefined`.
 * @throws {SqliteDriverUnsupportedError} when the pair cannot work.
 */
export function checkSqliteDriver(nodeVersion: string, driverVersion: string): string | undefined {
  const node = major(nodeVersion);
  const driver = major(driverVersion);
  if (driver >= 13 && node < 22) throw new SqliteDriverUnsupportedError(nodeVersion, driverVersion);
  if (driver <= 12 && node >= 24) return `better-sqlite3 ${driverVersion} ${NODE_24_RISK}`;
  return undefined;
}

let warned = false;

/**
 * Checks the better-sqlite3 this package resolves against the running Node.js: throws for a pair that
 * would crash; for a fragile one emits a process warning (code `FLOODGATE_SQLITE_DRIVER`), once per process.
 */
export function assertSqliteDriverRuns(): void {
  const { version } = createRequire(import.meta.url)('better-sqlite3/package.json') as { version: string };
  const warning = checkSqliteDriver(process.versions.node, version);
  if (warning !== undefined && !warned) {
    warned = true;
    process.emitWarning(warning, { type: 'FloodgateWarning', code: 'FLOODGATE_SQLITE_DRIVER' });
  }
}
