/**
 * The SQLite driver of the Db port, on better-sqlite3 (synchronous; wrapped in promises).
 *
 * The CLI and the worker processes share one file: WAL (readers don't block the writer), a busy timeout
 * (a process waits for another's write lock instead of failing with SQLITE_BUSY), foreign keys on, and
 * `BEGIN IMMEDIATE` for transactions so a transaction owns the write lock from its first statement.
 *
 * Inside one process, every statement and transaction goes through a FIFO queue: `transaction(fn)` awaits
 * between statements, and without the queue another caller's statement would run inside it. The queue is
 * shared by every SqliteDb open on the same file in this process: better-sqlite3 waits for a lock
 * synchronously, so a second connection blocking on our own open transaction would block the very thread
 * that has to finish it (a stall until busy_timeout, then SQLITE_BUSY).
 */
import { realpathSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Db, Dialect, Queryable, SqlParams } from './db';

export interface SqliteDbOptions {
  /** How long to wait for another process's write lock before failing with SQLITE_BUSY. Default 10 s. */
  busyTimeoutMs?: number;
}

/** FIFO of the statements/transactions on one database file in this process. */
interface Queue {
  tail: Promise<unknown>;
}

const fileQueues = new Map<string, Queue>();

const IDLE_CHECKPOINT_MS = 200;
const MAX_WRITES_BETWEEN_CHECKPOINTS = 2_000;

export class SqliteDb implements Db {
  readonly dialect: Dialect = 'sqlite';
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly queue: Queue;
  /** Runs statements directly: used inside the queue. */
  private readonly direct: Queryable;
  private readonly wal: boolean;
  private writesSinceCheckpoint = 0;
  private checkpointTimer: NodeJS.Timeout | null = null;

  /** `file` is a path or `:memory:`. */
  constructor(file: string, opts: SqliteDbOptions = {}) {
    this.db = new Database(file);
    if (file === ':memory:') {
      this.queue = { tail: Promise.resolve() };
    } else {
      const key = realpathSync(file);
      this.queue = fileQueues.get(key) ?? { tail: Promise.resolve() };
      fileQueues.set(key, this.queue);
    }
    this.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 10_000))}`);
    this.wal = file !== ':memory:';
    if (this.wal) {
      this.db.pragma('journal_mode = WAL');
      // SQLite would checkpoint inside whichever commit pushes the WAL past 1,000 pages — a claim, say.
      // Checkpoint when the inventory is idle instead (see noteWrite), off the request path.
      this.db.pragma('wal_autocheckpoint = 0');
    }
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.direct = {
      query: async <T>(sql: string, params: SqlParams = []) => this.prepare(sql).all(...params) as T[],
      get: async <T>(sql: string, params: SqlParams = []) => this.prepare(sql).get(...params) as T | undefined,
      run: async (sql: string, params: SqlParams = []) => ({ changes: this.prepare(sql).run(...params).changes }),
    };
  }

  query<T>(sql: string, params?: SqlParams): Promise<T[]> {
    return this.enqueue(() => this.direct.query<T>(sql, params));
  }

  get<T>(sql: string, params?: SqlParams): Promise<T | undefined> {
    return this.enqueue(() => this.direct.get<T>(sql, params));
  }

  run(sql: string, params?: SqlParams): Promise<{ changes: number }> {
    return this.enqueue(async () => {
      const r = await this.direct.run(sql, params);
      this.noteWrite();
      return r;
    });
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.enqueue(async () => {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const result = await fn(this.direct);
        this.db.exec('COMMIT');
        this.noteWrite();
        return result;
      } catch (err) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
    });
  }

  async close(): Promise<void> {
    if (this.checkpointTimer !== null) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = null;
    await this.enqueue(async () => undefined);
    if (this.db.open) this.db.close(); // the last connection to close checkpoints the WAL
  }

  /**
   * After a write: checkpoint once the inventory has been quiet for IDLE_CHECKPOINT_MS, or right away after
   * MAX_WRITES_BETWEEN_CHECKPOINTS writes in a row (a write storm must not grow the WAL without bound).
   */
  private noteWrite(): void {
    if (!this.wal) return;
    this.writesSinceCheckpoint += 1;
    if (this.writesSinceCheckpoint >= MAX_WRITES_BETWEEN_CHECKPOINTS) {
      this.checkpoint();
      return;
    }
    if (this.checkpointTimer !== null) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = setTimeout(() => {
      this.checkpointTimer = null;
      void this.enqueue(async () => this.checkpoint());
    }, IDLE_CHECKPOINT_MS);
    this.checkpointTimer.unref();
  }

  private checkpoint(): void {
    if (this.db.open) this.db.pragma('wal_checkpoint(PASSIVE)');
    this.writesSinceCheckpoint = 0;
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.queue.tail.then(fn);
    this.queue.tail = result.catch(() => undefined);
    return result;
  }

  private prepare(sql: string): Database.Statement {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.statements.set(sql, stmt);
    }
    return stmt;
  }
}
