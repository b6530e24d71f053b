/**
 * The PostgreSQL driver of the Db port (db.ts), on node-postgres (`pg`) with a small connection pool.
 *
 * Atomicity across processes. Every write to the inventory holds one transaction-level advisory lock:
 *   - `transaction(fn)` runs `BEGIN`, then `SELECT pg_advisory_xact_lock(FERRY, <schema key>)` as its first
 *     statement, then `fn`, then `COMMIT` (or `ROLLBACK` when `fn` throws); the lock ends with the transaction;
 *   - a writing statement outside a transaction (anything that is not a plain SELECT) runs as a one-statement
 *     `transaction`, so it is ordered with respect to every transaction too (as on SQLite);
 *   - plain SELECTs outside a transaction need no lock: they see what was committed when they started.
 * So inventory writers run one at a time, in every process and on every machine sharing the database, and
 * under READ COMMITTED each statement of a locked transaction sees everything committed before the lock was
 * granted plus its own writes, and nothing else changes meanwhile: a claim's reads (VM, hosts, VM totals,
 * claims) and its insert act on one consistent state, exactly like SQLite's `BEGIN IMMEDIATE`. The key is
 * scoped to the schema the inventory lives in (advisory locks are already per database), so inventories in
 * different schemas do not wait for each other. (Writes made by hand with psql bypass the lock.)
 *
 * Why not SERIALIZABLE with retries: claims conflict by design (they all read every host and claim), so
 * under load most of them would abort and retry; the lock makes them queue instead, which is what SQLite
 * does too, keeps one behaviour for both backends, and a claim on 1,000 hosts takes milliseconds.
 *
 * Waiting: a lock wait longer than `busyTimeoutMs` (default 10 s, as SQLite's busy timeout) fails with an
 * error that says so (`lock_timeout`); a session idle inside a transaction for 60 s is ended by the server
 * (`idle_in_transaction_session_timeout`) so a hung process cannot hold the lock forever; a process that dies
 * drops its connection and with it the lock.
 *
 * Types: `?` placeholders become `$1, $2, …` (outside quotes and comments); BIGINT and NUMERIC come back as
 * JavaScript numbers, and a value a number cannot hold exactly is an error, never a silently rounded number.
 * Credentials: the URL's password never appears in an error or a log line (see redactUrl).
 */
import type pg from 'pg';
import type { Db, Dialect, Queryable, SqlParams } from './db';

export interface PgDbOptions {
  /** How long a transaction waits for another's inventory lock before failing. Default 10 s. */
  busyTimeoutMs?: number;
  /** Connections in the pool. Default 4 (writers queue on the lock anyway; readers share the rest). */
  maxConnections?: number;
  /** How long to wait for a connection to the server. Default 10 s. */
  connectTimeoutMs?: number;
}

/** First half of the advisory lock key: "FERR" as a 32-bit integer. The second half hashes the schema. */
export const LOCK_CLASS = 0x46455252;

/** The oldest PostgreSQL the schema and the locking are written for. */
const MIN_SERVER_VERSION = 120000;

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/** BIGINT / COUNT / SUM(integer) -> number, refusing values beyond 2^53 instead of rounding them. */
export function parseBigint(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) {
    throw new RangeError(
      `PostgreSQL returned the integer ${text}, beyond what Ferry can hold exactly (±2^53): ` +
        'check the inventory row it belongs to for a corrupt value',
    );
  }
  return n;
}

/** NUMERIC (e.g. SUM(bigint)) -> number; an integral value must be exact, as for BIGINT. */
export function parseNumeric(text: string): number {
  if (/^-?\d+$/.test(text)) return parseBigint(text);
  const n = Number(text);
  if (!Number.isFinite(n)) throw new RangeError(`PostgreSQL returned the number ${text}, which is not finite`);
  return n;
}

/** node-postgres, loaded on first use: a SQLite inventory (and every CLI start) does not pay for it. */
const pgModule = (): typeof import('pg') => require('pg');

/** Per-pool type parsers (the global `pg.types` stay untouched for other users of `pg` in the process). */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) => {
    if (format === undefined || format === 'text') {
      if (oid === INT8_OID) return parseBigint;
      if (oid === NUMERIC_OID) return parseNumeric;
    }
    return pgModule().types.getTypeParser(oid, format as 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * Rewrites `?` placeholders to `$1, $2, …`, leaving `?` inside '…' strings, "…" identifiers, E'…' strings,
 * $tag$…$tag$ bodies and comments alone. Returns the SQL and how many placeholders it has.
 */
export function toPgPlaceholders(sql: string): { text: string; count: number } {
  let out = '';
  let count = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i] as string;
    const next = sql[i + 1];
    if (c === '?') {
      out += `$${++count}`;
      i++;
    } else if (c === "'" || c === '"') {
      // A quoted string or identifier; a doubled quote is an escaped quote. E'…' may escape with a backslash.
      const escapes = c === "'" && /[eE]/.test(sql[i - 1] ?? '') && !/[\w$]/.test(sql[i - 2] ?? '');
      let j = i + 1;
      while (j < n) {
        if (escapes && sql[j] === '\\') j += 2;
        else if (sql[j] === c && sql[j + 1] === c) j += 2;
        else if (sql[j] === c) break;
        else j++;
      }
      out += sql.slice(i, j + 1);
      i = j + 1;
    } else if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      const j = end === -1 ? n : end;
      out += sql.slice(i, j);
      i = j;
    } else if (c === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2);
      const j = end === -1 ? n : end + 2;
      out += sql.slice(i, j);
      i = j;
    } else if (c === '$' && !/[\w$]/.test(sql[i - 1] ?? '')) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i))?.[0];
      if (tag) {
        const end = sql.indexOf(tag, i + tag.length);
        const j = end === -1 ? n : end + tag.length;
        out += sql.slice(i, j);
        i = j;
      } else {
        out += c;
        i++;
      }
    } else {
      out += c;
      i++;
    }
  }
  return { text: out, count };
}

/**
 * The URL with its password (and any password-like query parameter) replaced by ***, for messages and logs.
 * Something that does not parse as a URL is shown as its scheme only.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    for (const key of [...u.searchParams.keys()]) {
      if (/pass|secret|key|token/i.test(key)) u.searchParams.set(key, '***');
    }
    return u.toString();
  } catch {
    const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url)?.[1];
    return scheme ? `${scheme}://…` : '(an unparsable location)';
  }
}

/** Every form in which the URL's secrets could show up in a message (raw and percent-decoded). */
function secretsOf(url: string): string[] {
  const out = new Set<string>();
  try {
    const u = new URL(url);
    const add = (s: string): void => {
      if (s.length < 2) return; // one character is too short to scrub without mangling messages
      out.add(s);
      try {
        out.add(decodeURIComponent(s));
      } catch {
        // not valid percent-encoding: the raw form is enough
      }
    };
    add(u.password);
    for (const [key, value] of u.searchParams) if (/pass|secret|key|token/i.test(key)) add(value);
  } catch {
    // not a URL: nothing we can identify as a secret; callers never print the raw location
  }
  return [...out].sort((a, b) => b.length - a.length);
}

interface PgErrorLike {
  code?: string;
  message: string;
}

export class PgDb implements Db {
  readonly dialect: Dialect = 'postgres';
  /** The location for messages: the URL with its password replaced by ***. */
  readonly location: string;
  readonly #pool: pg.Pool;
  readonly #secrets: string[];
  readonly #lockSql: string;
  readonly #busyTimeoutMs: number;
  readonly #pending = new Set<Promise<unknown>>();
  readonly #sql = new Map<string, { text: string; count: number }>();
  #closed = false;

  private constructor(pool: pg.Pool, location: string, secrets: string[], lockKey: number, busyTimeoutMs: number) {
    this.#pool = pool;
    this.location = location;
    this.#secrets = secrets;
    this.#busyTimeoutMs = busyTimeoutMs;
    this.#lockSql = `SELECT pg_advisory_xact_lock(${LOCK_CLASS}, ${lockKey})`;
  }

  /**
   * Connects (checking the server, its version and the schema the inventory will live in) and returns the
   * Db. The schema is the first existing one on the search_path: `public` unless the URL sets
   * `?options=-c search_path=<schema>`.
   */
  static async connect(url: string, opts: PgDbOptions = {}): Promise<PgDb> {
    const location = redactUrl(url);
    const secrets = secretsOf(url);
    const scrub = (s: string): string => secrets.reduce((acc, x) => acc.split(x).join('***'), s);
    try {
      new URL(url);
    } catch {
      throw new Error(`the inventory location ${location} is not a valid URL: write postgres://user:password@host:5432/database`);
    }
    const busyTimeoutMs = Math.max(1, Math.floor(opts.busyTimeoutMs ?? 10_000));
    const pool = new (pgModule().Pool)({
      connectionString: url,
      max: Math.max(1, Math.floor(opts.maxConnections ?? 4)),
      connectionTimeoutMillis: Math.max(1, Math.floor(opts.connectTimeoutMs ?? 10_000)),
      idleTimeoutMillis: 30_000,
      allowExitOnIdle: true, // a CLI process that is done exits without waiting for idle connections to expire
      lock_timeout: busyTimeoutMs,
      idle_in_transaction_session_timeout: 60_000,
      application_name: 'ferry',
      types: TYPES,
    });
    // An idle connection that breaks (server restart) must not crash the process; the next query reconnects.
    pool.on('error', (err) => {
      console.warn(`ferry inventory: a PostgreSQL connection to ${location} failed while idle: ${scrub(err.message)}`);
    });
    type Probe = { schema: string | null; key: number | null; version: string };
    let row: Probe | undefined;
    try {
      const probe = await pool.query<Probe>(
        "SELECT current_schema() AS schema, hashtext(current_schema()) AS key, current_setting('server_version_num') AS version",
      );
      row = probe.rows[0];
    } catch (err) {
      await pool.end().catch(() => undefined);
      const e = err as PgErrorLike;
      throw new Error(
        `cannot open the PostgreSQL inventory ${location}: ${scrub(e.message)}${e.code ? ` (${e.code})` : ''} — ` +
          "check that the server runs and that the URL's host, port, database, user and password are right",
      );
    }
    let problem: string | undefined;
    if (Number(row?.version ?? 0) < MIN_SERVER_VERSION) {
      problem = `the PostgreSQL server at ${location} is version ${row?.version}: Ferry needs PostgreSQL 12 or newer`;
    } else if (row?.schema == null || row.key == null) {
      problem =
        `no schema of the search_path exists in the PostgreSQL inventory ${location}: ` +
        "create the schema (CREATE SCHEMA …) or fix the URL's options=-c search_path=…";
    }
    if (problem !== undefined || row?.key == null) {
      await pool.end().catch(() => undefined);
      throw new Error(problem);
    }
    return new PgDb(pool, location, secrets, row.key, busyTimeoutMs);
  }

  query<T>(sql: string, params?: SqlParams): Promise<T[]> {
    if (!isRead(sql)) return this.transaction((tx) => tx.query<T>(sql, params));
    return this.track(async () => (await this.exec<T>(this.#pool, sql, params)).rows);
  }

  async get<T>(sql: string, params?: SqlParams): Promise<T | undefined> {
    return (await this.query<T>(sql, params))[0];
  }

  async run(sql: string, params?: SqlParams): Promise<{ changes: number }> {
    if (!isRead(sql)) return this.transaction((tx) => tx.run(sql, params));
    return this.track(async () => ({ changes: (await this.exec(this.#pool, sql, params)).rowCount ?? 0 }));
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.track(async () => {
      const client = await this.#pool.connect().catch((err: unknown) => {
        throw this.translate(err);
      });
      // A connection breaking while checked out and between queries emits 'error': keep it from crashing us.
      const onError = (): void => undefined;
      client.on('error', onError);
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        await client.query(this.#lockSql);
        const tx: Queryable = {
          query: async <R>(sql: string, params?: SqlParams) => (await this.exec<R>(client, sql, params)).rows,
          get: async <R>(sql: string, params?: SqlParams) => (await this.exec<R>(client, sql, params)).rows[0],
          run: async (sql: string, params?: SqlParams) => ({ changes: (await this.exec(client, sql, params)).rowCount ?? 0 }),
        };
        const result = await fn(tx);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch((e: unknown) => {
          broken = e instanceof Error ? e : new Error(String(e)); // the connection is unusable: drop it
        });
        throw this.translate(err);
      } finally {
        client.off('error', onError);
        client.release(broken);
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    await this.#pool.end();
  }

  private async exec<T>(q: pg.Pool | pg.PoolClient, sql: string, params: SqlParams = []): Promise<pg.QueryResult<T & pg.QueryResultRow>> {
    let translated = this.#sql.get(sql);
    if (!translated) {
      translated = toPgPlaceholders(sql);
      if (this.#sql.size > 1000) this.#sql.clear(); // generated IN (?, ?, …) lists: keep the cache bounded
      this.#sql.set(sql, translated);
    }
    if (translated.count !== params.length) {
      throw new Error(`SQL with ${translated.count} placeholders was given ${params.length} parameters: ${sql.slice(0, 120)}`);
    }
    try {
      return await q.query<T & pg.QueryResultRow>(translated.text, params as unknown[]);
    } catch (err) {
      throw this.translate(err);
    }
  }

  /** Refuses work after close() and lets close() wait for what is running. */
  private track<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new Error(`the PostgreSQL inventory ${this.location} is closed`));
    const p = fn();
    this.#pending.add(p);
    const done = (): void => {
      this.#pending.delete(p);
    };
    p.then(done, done);
    return p;
  }

  /** Adds what to do to the errors an operator can act on; scrubs secrets from every message. */
  private translate(err: unknown): unknown {
    if (!(err instanceof Error)) return err;
    const e = err as Error & PgErrorLike;
    if (e.code === '55P03' && /lock timeout/i.test(e.message)) {
      return Object.assign(
        new Error(
          `timed out after ${this.#busyTimeoutMs} ms waiting for the inventory lock of ${this.location}: another ` +
            'Ferry process holds a long transaction — retry; if it persists, look for a stuck session ' +
            "(application_name 'ferry') in pg_stat_activity",
        ),
        { code: e.code },
      );
    }
    if (e.code === '25P03') {
      return Object.assign(
        new Error(
          `the server ended an inventory transaction on ${this.location} that was idle for more than 60 s ` +
            '(idle_in_transaction_session_timeout): nothing of it was committed — retry',
        ),
        { code: e.code },
      );
    }
    if (/timeout exceeded when trying to connect/i.test(e.message)) {
      return new Error(
        `timed out waiting for a connection to the PostgreSQL inventory ${this.location}: the server did not ` +
          `answer, or all ${this.#pool.options.max} connections of this process stayed busy — check the server and ` +
          'its max_connections, or raise maxConnections',
      );
    }
    for (const s of this.#secrets) {
      if (e.message.includes(s)) e.message = e.message.split(s).join('***');
      if (e.stack?.includes(s)) e.stack = e.stack.split(s).join('***');
    }
    return e;
  }
}

/** A statement that writes nothing and therefore needs no lock outside a transaction. */
function isRead(sql: string): boolean {
  return /^\s*SELECT\b/i.test(sql);
}
