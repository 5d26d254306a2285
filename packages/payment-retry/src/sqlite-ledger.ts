import Database from 'better-sqlite3';
import { InvalidOptionError } from './errors.js';
import type { AttemptRecord, PaymentLedger, PaymentRecord, PaymentState, RecordPatch } from './ledger.js';
import { canTransition, UNRESOLVED_STATES } from './ledger.js';
import { booleanOption, checkOptions, delayMs, unresolvedLimit } from './options.js';
import { assertSqliteDriverRuns } from './sqlite-driver.js';
import { WalCheckpointer } from './wal-checkpointer.js';

/** Options of {@link sqliteLedger}. */
export interface SqliteLedgerOptions {
  /** Database file (created when missing). Give this or `database`. */
  readonly path?: string;
  /** An open better-sqlite3 database to use instead of `path`; the ledger will not close it. */
  readonly database?: Database.Database;
  /**
   * SQLite `synchronous` pragma. `normal` (with WAL) survives a process crash (SIGKILL) but may lose the
   * last transactions on power loss; `full` survives that too, at one fsync per write. A lost record is
   * not a lost key: derived keys come back the same. @default 'normal'
   */
  readonly synchronous?: 'normal' | 'full';
  /** How long a write waits for another process's lock before failing, at most 2^31 - 1. @default 5000 */
  readonly busyTimeoutMs?: number;
  /** Keep one row per attempt (for `attempts()` and audits); counts are kept either way. @default true */
  readonly keepAttempts?: boolean;
  /**
   * Who moves the write-ahead log into the database file. `'worker'`: a worker thread with its own
   * connection, every 200 ms, so no payment's commit stalls on copying and syncing the file (the writer
   * still checkpoints by itself if the WAL reaches 10,000 pages, as a safety net). `'inline'`: SQLite's
   * default, the commit that crosses 1,000 pages does it on the event loop's thread.
   * @default 'worker' with `path` (a file), 'inline' with `database` or `':memory:'`
   */
  readonly checkpoint?: 'worker' | 'inline';
}

const OPTION_KEYS = [
  'path',
  'database',
  'synchronous',
  'busyTimeoutMs',
  'keepAttempts',
  'checkpoint',
] as const;
/** How often the worker checkpoints, and the WAL size (pages) at which the writer does it anyway. */
const CHECKPOINT_INTERVAL_MS = 200;
const SAFETY_NET_PAGES = 10_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS floodgate_payments (
  idempotency_key TEXT PRIMARY KEY,
  scope TEXT NOT NULL,
  merchant TEXT NOT NULL,
  order_id TEXT NOT NULL,
  generation INTEGER NOT NULL,
  amount INTEGER NOT NULL,
  currency TEXT NOT NULL,
  payer TEXT NOT NULL,
  fields TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  reference TEXT,
  decline_reason TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  first_sent_at INTEGER,
  unknown_since INTEGER,
  UNIQUE (scope, generation)
);
CREATE INDEX IF NOT EXISTS floodgate_payments_unresolved ON floodgate_payments (created_at)
  WHERE state IN ('created', 'sending', 'unknown', 'reconciling');
CREATE TABLE IF NOT EXISTS floodgate_payment_attempts (
  idempotency_key TEXT NOT NULL,
  kind TEXT NOT NULL,
  outcome TEXT NOT NULL,
  status_code INTEGER,
  error_code TEXT,
  started_at INTEGER NOT NULL,
  duration_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS floodgate_payment_attempts_key ON floodgate_payment_attempts (idempotency_key);
`;

interface PaymentRow {
  idempotency_key: string;
  scope: string;
  merchant: string;
  order_id: string;
  generation: number;
  amount: number;
  currency: string;
  payer: string;
  fields: string;
  state: PaymentState;
  attempts: number;
  reference: string | null;
  decline_reason: string | null;
  created_at: number;
  updated_at: number;
  first_sent_at: number | null;
  unknown_since: number | null;
}

interface AttemptRow {
  idempotency_key: string;
  kind: 'charge' | 'status';
  outcome: 'not_sent' | 'unknown' | 'responded';
  status_code: number | null;
  error_code: string | null;
  started_at: number;
  duration_ms: number;
}

const ALL_STATES: readonly PaymentState[] = [
  'created',
  'sending',
  'paid',
  'declined',
  'unknown',
  'reconciling',
];

function toRecord(row: PaymentRow): PaymentRecord {
  return {
    idempotencyKey: row.idempotency_key,
    scope: row.scope,
    merchant: row.merchant,
    orderId: row.order_id,
    generation: row.generation,
    amount: row.amount,
    currency: row.currency,
    payer: row.payer,
    fields: row.fields,
    state: row.state,
    attempts: row.attempts,
    reference: row.reference,
    declineReason: row.decline_reason,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    firstSentAt: row.first_sent_at,
    unknownSince: row.unknown_since,
  };
}

/**
 * The durable ledger: one SQLite file (better-sqlite3, WAL), shared safely by the processes of one
 * machine. Every statement is prepared once; each call is one short transaction (a new payment is inserted
 * already `sending` by {@link SqliteLedger.createSending}: two commits per payment), so a process killed at
 * any instant leaves the file consistent and `recover()` finds what was in flight.
 *
 * @example
 * const ledger = sqliteLedger({ path: './payments.db' });
 * const client = createPaymentClient({ gateway, ledger });
 * await client.recover();
 * @throws {InvalidOptionError} for a malformed option; {@link SqliteDriverUnsupportedError} when the
 * better-sqlite3 found cannot run on this Node (13 on Node 20); better-sqlite3's SqliteError when the file
 * cannot be opened.
 */
export class SqliteLedger implements PaymentLedger {
  readonly #db: Database.Database;
  readonly #owned: boolean;
  readonly #keepAttempts: boolean;
  readonly #latest: Database.Statement<[string], PaymentRow>;
  readonly #get: Database.Statement<[string], PaymentRow>;
  readonly #create: Database.Statement<unknown[]>;
  readonly #createSending: Database.Statement<unknown[]>;
  readonly #transition: Map<PaymentState, Database.Statement<unknown[], PaymentRow>>;
  readonly #insertAttempt: Database.Statement<unknown[]>;
  readonly #countAttempt: Database.Statement<[string]>;
  readonly #recordAttempt: (attempt: AttemptRecord) => void;
  readonly #transitionWithAttempt: (
    statement: Database.Statement<unknown[], PaymentRow>,
    args: unknown[],
    attempt: AttemptRecord,
  ) => PaymentRow | undefined;
  readonly #attempts: Database.Statement<[string], AttemptRow>;
  readonly #unresolved: Database.Statement<[number], PaymentRow>;
  #closed = false;
  readonly #checkpointer: WalCheckpointer | undefined;

  constructor(options: SqliteLedgerOptions) {
    checkOptions('options', options, OPTION_KEYS);
    if ((options.path === undefined) === (options.database === undefined)) {
      throw new InvalidOptionError(
        'path',
        'a file path, or else a `database` (exactly one of the two)',
        options.path,
      );
    }
    if (options.path !== undefined && (typeof options.path !== 'string' || options.path === '')) {
      throw new InvalidOptionError('path', 'a non-empty string', options.path);
    }
    const synchronous = options.synchronous ?? 'normal';
    if (synchronous !== 'normal' && synchronous !== 'full') {
      throw new InvalidOptionError('synchronous', "'normal' or 'full'", options.synchronous);
    }
    // SQLite reads busy_timeout as a 32-bit int: a larger value becomes 0, no waiting at all.
    const busyTimeoutMs = delayMs('busyTimeoutMs', options.busyTimeoutMs, 0, 5000);
    const inFile = options.path !== undefined && options.path !== ':memory:';
    const checkpoint = options.checkpoint ?? (inFile ? 'worker' : 'inline');
    if (checkpoint !== 'worker' && checkpoint !== 'inline') {
      throw new InvalidOptionError('checkpoint', "'worker' or 'inline'", options.checkpoint);
    }
    if (checkpoint === 'worker' && !inFile) {
      throw new InvalidOptionError(
        'checkpoint',
        "'inline' unless the ledger opens a database file itself (`path`)",
        options.checkpoint,
      );
    }
    this.#keepAttempts = booleanOption('keepAttempts', options.keepAttempts, true);
    this.#owned = options.database === undefined;
    // Only what we open ourselves: a `database` passed in was opened by the app's own better-sqlite3.
    if (this.#owned) assertSqliteDriverRuns();
    this.#db = options.database ?? new Database(options.path as string);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma(`synchronous = ${synchronous.toUpperCase()}`);
    this.#db.pragma(`busy_timeout = ${Math.round(busyTimeoutMs)}`);
    // `RETURNING` collects its rows in an ephemeral table; on disk (the default) that opens a temp file
    // per statement, about 100 µs of each state change. In memory it is a few rows.
    this.#db.pragma('temp_store = MEMORY');
    if (checkpoint === 'worker') {
      this.#db.pragma(`wal_autocheckpoint = ${SAFETY_NET_PAGES}`);
      this.#checkpointer = new WalCheckpointer(this.#db.name, CHECKPOINT_INTERVAL_MS);
    }
    this.#db.exec(SCHEMA);

    const db = this.#db;
    this.#latest = db.prepare(
      'SELECT * FROM floodgate_payments WHERE scope = ? ORDER BY generation DESC LIMIT 1',
    );
    this.#get = db.prepare('SELECT * FROM floodgate_payments WHERE idempotency_key = ?');
    // The NOT EXISTS makes "a newer generation won the race" a refusal, not a second live generation.
    const insert = (state: 'created' | 'sending') =>
      db.prepare(
        `INSERT INTO floodgate_payments (idempotency_key, scope, merchant, order_id, generation, amount, currency,
           payer, fields, state, attempts, created_at, updated_at, first_sent_at)
         SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, '${state}', 0, ?, ?, ?
         WHERE NOT EXISTS (SELECT 1 FROM floodgate_payments WHERE scope = ? AND generation >= ?)
         ON CONFLICT DO NOTHING`,
      );
    this.#create = insert('created');
    this.#createSending = insert('sending');
    this.#transition = new Map();
    for (const to of ALL_STATES) {
      const from = ALL_STATES.filter((state) => canTransition(state, to));
      if (from.length === 0) continue;
      this.#transition.set(
        to,
        db.prepare(
          `UPDATE floodgate_payments SET state = '${to}', updated_at = ?, attempts = attempts + ?,
             reference = COALESCE(?, reference), decline_reason = COALESCE(?, decline_reason),
             first_sent_at = COALESCE(first_sent_at, ?), unknown_since = COALESCE(unknown_since, ?)
           WHERE idempotency_key = ? AND state IN (${from.map((state) => `'${state}'`).join(', ')})
           RETURNING *`,
        ),
      );
    }
    this.#insertAttempt = db.prepare(
      `INSERT INTO floodgate_payment_attempts (idempotency_key, kind, outcome, status_code, error_code,
         started_at, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#countAttempt = db.prepare(
      'UPDATE floodgate_payments SET attempts = attempts + 1 WHERE idempotency_key = ?',
    );
    const insertAttempt = (attempt: AttemptRecord) => {
      this.#insertAttempt.run(
        attempt.idempotencyKey,
        attempt.kind,
        attempt.outcome,
        attempt.statusCode,
        attempt.errorCode,
        attempt.startedAt,
        attempt.durationMs,
      );
    };
    this.#recordAttempt = this.#keepAttempts
      ? db.transaction((attempt: AttemptRecord) => {
          this.#countAttempt.run(attempt.idempotencyKey);
          insertAttempt(attempt);
        })
      : (attempt) => {
          this.#countAttempt.run(attempt.idempotencyKey);
        };
    // One transaction for the attempt and the state change it caused: one commit instead of two. The
    // UPDATE counts the attempt itself; a refused move still counts it, as the attempt happened.
    this.#transitionWithAttempt = db.transaction(
      (statement: Database.Statement<unknown[], PaymentRow>, args: unknown[], attempt: AttemptRecord) => {
        const row = statement.get(...args);
        if (row === undefined) this.#countAttempt.run(attempt.idempotencyKey);
        if (this.#keepAttempts) insertAttempt(attempt);
        return row;
      },
    );
    this.#attempts = db.prepare(
      'SELECT * FROM floodgate_payment_attempts WHERE idempotency_key = ? ORDER BY rowid',
    );
    this.#unresolved = db.prepare(
      `SELECT * FROM floodgate_payments WHERE state IN (${UNRESOLVED_STATES.map((s) => `'${s}'`).join(', ')})
       ORDER BY created_at, rowid LIMIT ?`,
    );
  }

  latest(scope: string): PaymentRecord | undefined {
    const row = this.#latest.get(scope);
    return row === undefined ? undefined : toRecord(row);
  }

  get(idempotencyKey: string): PaymentRecord | undefined {
    const row = this.#get.get(idempotencyKey);
    return row === undefined ? undefined : toRecord(row);
  }

  create(record: PaymentRecord): boolean {
    return this.#insert(this.#create, record, null);
  }

  /**
   * Inserts a new payment directly in state `sending` (with `record.firstSentAt`): `create` and the move
   * to `sending` in one statement, one commit. Refuses exactly when {@link SqliteLedger.create} would.
   */
  createSending(record: PaymentRecord): boolean {
    return this.#insert(this.#createSending, record, record.firstSentAt);
  }

  /** Runs one of the two insert statements (they differ only in the state they write). */
  #insert(
    statement: Database.Statement<unknown[]>,
    record: PaymentRecord,
    firstSentAt: number | null | undefined,
  ): boolean {
    const result = statement.run(
      record.idempotencyKey,
      record.scope,
      record.merchant,
      record.orderId,
      record.generation,
      record.amount,
      record.currency,
      record.payer,
      record.fields,
      record.createdAt,
      record.updatedAt,
      firstSentAt ?? null,
      record.scope,
      record.generation,
    );
    return result.changes === 1;
  }

  transition(idempotencyKey: string, to: PaymentState, patch: RecordPatch = {}): PaymentRecord | undefined {
    const statement = this.#transition.get(to);
    if (statement === undefined) {
      if (patch.attempt !== undefined) this.#recordAttempt(patch.attempt);
      return undefined;
    }
    const args = [
      Date.now(),
      patch.attempt === undefined ? 0 : 1,
      patch.reference ?? null,
      patch.declineReason ?? null,
      patch.firstSentAt ?? null,
      patch.unknownSince ?? null,
      idempotencyKey,
    ];
    const row =
      patch.attempt === undefined
        ? statement.get(...args)
        : this.#transitionWithAttempt(statement, args, patch.attempt);
    return row === undefined ? undefined : toRecord(row);
  }

  recordAttempt(attempt: AttemptRecord): void {
    this.#recordAttempt(attempt);
  }

  attempts(idempotencyKey: string): readonly AttemptRecord[] {
    return this.#attempts.all(idempotencyKey).map((row) => ({
      idempotencyKey: row.idempotency_key,
      kind: row.kind,
      outcome: row.outcome,
      statusCode: row.status_code,
      errorCode: row.error_code,
      startedAt: row.started_at,
      durationMs: row.duration_ms,
    }));
  }

  unresolved(limit?: number): readonly PaymentRecord[] {
    const most = unresolvedLimit(limit);
    // SQLite reads a negative LIMIT as "no limit": only `Infinity` (or no limit) becomes -1.
    return this.#unresolved.all(most === Number.POSITIVE_INFINITY ? -1 : most).map(toRecord);
  }

  /**
   * Closes the database (when the ledger opened it) at once; the promise settles when the checkpoint
   * worker, if any, has made its last checkpoint and exited. Idempotent.
   */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#owned) this.#db.close();
    }
    return this.#checkpointer?.stop() ?? Promise.resolve();
  }
}

/** Creates a {@link SqliteLedger}. */
export function sqliteLedger(options: SqliteLedgerOptions): SqliteLedger {
  return new SqliteLedger(options);
}
