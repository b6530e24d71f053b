/**
 * The tiny async database port the inventory is written against. One driver per database:
 * `SqliteDb` (sqlite-db.ts) and `PgDb` (pg-db.ts). Rules every driver follows:
 *
 * - SQL uses `?` placeholders; a driver for a database with another placeholder style rewrites them
 *   (PostgreSQL: `?` -> `$1, $2, ...`; the inventory never puts a literal `?` in SQL text).
 * - `transaction(fn)` is exclusive: it holds the database's write lock from its first statement, so two
 *   transactions (in this process or in others sharing the database) never interleave. SQLite:
 *   `BEGIN IMMEDIATE`; PostgreSQL: `BEGIN` + `SELECT pg_advisory_xact_lock(<ferry key>)`. Reads inside see
 *   everything committed before the lock was taken. `fn` must only use the handle it is given (using the
 *   outer Db inside `fn` waits for the transaction to end: a deadlock). Commit on success, rollback on throw.
 * - Statements outside a transaction autocommit and are ordered with respect to transactions of the same Db.
 *   PostgreSQL: a writing statement outside a transaction runs as a one-statement locked transaction (so it
 *   is ordered with respect to every transaction of every process); a plain SELECT sees what was committed.
 * - Numbers may come back as strings for BIGINT / aggregates (node-pg does that): row mappers coerce.
 *   (PgDb parses BIGINT and NUMERIC to numbers itself, refusing values beyond 2^53.)
 * - Only the SQL that differs between dialects checks `dialect`; today that is schema.ts: the auto-increment
 *   column and PostgreSQL's "C" collation for text. Timestamps are ISO-8601 text, JSON is text.
 */

export type SqlValue = string | number | null;
export type SqlParams = readonly SqlValue[];

export type Dialect = 'sqlite' | 'postgres';

/** What can run statements: the Db itself or the handle inside a transaction. */
export interface Queryable {
  /** All rows. */
  query<T>(sql: string, params?: SqlParams): Promise<T[]>;
  /** The first row, or undefined. Also for `INSERT ... RETURNING`. */
  get<T>(sql: string, params?: SqlParams): Promise<T | undefined>;
  /** A statement that returns no rows; resolves to the number of rows it changed. */
  run(sql: string, params?: SqlParams): Promise<{ changes: number }>;
}

export interface Db extends Queryable {
  readonly dialect: Dialect;
  /** Runs `fn` in one exclusive (write-locking) transaction; see the rules above. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Waits for running statements and transactions, then closes the connection(s). */
  close(): Promise<void>;
}
