import { once } from 'node:events';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * The worker's code, run with `eval` so the package needs no second entry file in two module formats. It
 * opens its own connection to the ledger's file and moves the WAL into the database on a timer (PASSIVE:
 * it never waits for, nor blocks, the writer), and once more when told to stop.
 */
const WORKER_CODE = `
const { parentPort, workerData } = require('node:worker_threads');
(() => {
  let db;
  try {
    const Database = require(workerData.driver);
    db = new Database(workerData.file, { fileMustExist: true });
    db.pragma('busy_timeout = 100');
  } catch {
    // No file (it was removed), no driver: nothing to checkpoint. The writer's own checkpoints remain.
    parentPort.close();
    return;
  }
  const checkpoint = () => {
    try {
      return db.pragma('wal_checkpoint(PASSIVE)', { simple: false })[0];
    } catch (error) {
      return { error: String(error) };
    }
  };
  const timer = setInterval(checkpoint, workerData.intervalMs);
  parentPort.on('message', (message) => {
    if (message.type === 'checkpoint') {
      parentPort.postMessage({ type: 'checkpointed', id: message.id, result: checkpoint() });
      return;
    }
    clearInterval(timer);
    checkpoint();
    db.close();
    parentPort.close();
  });
})();
`;

/** What one checkpoint did: SQLite's `wal_checkpoint` row (frames in the WAL, frames moved). */
export interface CheckpointResult {
  readonly busy: number;
  readonly log: number;
  readonly checkpointed: number;
}

/**
 * Checkpoints a SQLite WAL from a worker thread. With the default auto-checkpoint, the commit that crosses
 * 1000 WAL pages copies them into the database file and syncs it on the event loop's thread, stalling
 * every payment for that long; from a worker the stall is gone. The worker is unref'd: it never keeps a
 * process alive.
 */
export class WalCheckpointer {
  readonly #worker: Worker;
  readonly #exited: Promise<unknown>;
  #nextId = 0;
  #stopping: Promise<void> | undefined;

  /**
   * @param file The database file (the worker opens its own connection to it).
   * @param intervalMs How often to checkpoint.
   */
  constructor(file: string, intervalMs: number) {
    // Resolved here, next to our own dependency: the eval'd worker has no module location of its own.
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    this.#worker = new Worker(WORKER_CODE, {
      eval: true,
      workerData: { driver, file, intervalMs },
      // Not the app's flags: `--input-type=module` would make the eval'd CommonJS code a module, and a
      // loader such as `--import tsx` would only slow the worker's start.
      execArgv: [],
    });
    this.#worker.unref();
    this.#exited = once(this.#worker, 'exit');
    // A failing worker must not crash the process: the writer's own auto-checkpoint is the safety net.
    this.#worker.on('error', () => {});
  }

  /** Checkpoints now and reports what moved (for tests and diagnostics). */
  async checkpointNow(): Promise<CheckpointResult> {
    const id = this.#nextId++;
    this.#worker.ref(); // awaited: keep the process alive for the answer
    try {
      const answer = new Promise<CheckpointResult>((resolve, reject) => {
        const onMessage = (message: {
          type: string;
          id: number;
          result: CheckpointResult & { error?: string };
        }) => {
          if (message.type !== 'checkpointed' || message.id !== id) return;
          this.#worker.off('message', onMessage);
          if (message.result.error !== undefined) reject(new Error(message.result.error));
          else resolve(message.result);
        };
        this.#worker.on('message', onMessage);
      });
      this.#worker.postMessage({ type: 'checkpoint', id });
      const exited = this.#exited.then(() => {
        throw new Error('The WAL checkpoint worker has exited');
      });
      return await Promise.race([answer, exited]);
    } finally {
      this.#worker.unref();
    }
  }

  /** A last checkpoint, then the worker closes its connection and exits. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      // Awaited by close(): hold the process open until the last checkpoint is done, or a script that
      // ends with `await ledger.close()` would exit with the promise unsettled.
      this.#worker.ref();
      this.#worker.postMessage({ type: 'stop' });
      await this.#exited;
    })();
    return this.#stopping;
  }
}
