/**
 * The PostgreSQL driver itself (inventory/pg-db.ts): placeholder rewriting, number parsing and redaction
 * need no server; locking, timeouts and connection errors run against FERRY_TEST_PG_URL (see
 * test/support/inventory-backends.ts: without it they fail, unless FERRY_SKIP_PG=1).
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { openInventory } from '../../inventory/index';
import { parseBigint, parseNumeric, PgDb, redactUrl, toPgPlaceholders } from '../../inventory/pg-db';
import { freshDatabase, pgTestUrl, skipBackend, withSearchPath, type TestDatabase } from '../support/inventory-backends';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await sleep(10);
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  return err as Error;
}

describe('without a server', () => {
  it('rewrites ? placeholders outside strings, identifiers and comments', () => {
    expect(toPgPlaceholders('SELECT a FROM t WHERE b = ? AND c IN (?, ?) LIMIT ?')).toEqual({
      text: 'SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) LIMIT $4',
      count: 4,
    });
    expect(toPgPlaceholders("UPDATE vms SET state = 'migrating?', updated_at = ? WHERE uuid = ?").text).toBe(
      "UPDATE vms SET state = 'migrating?', updated_at = $1 WHERE uuid = $2",
    );
    expect(toPgPlaceholders(`SELECT 'it''s ?', "odd?""col", ? -- why?\n, /* ? */ ?`)).toEqual({
      text: `SELECT 'it''s ?', "odd?""col", $1 -- why?\n, /* ? */ $2`,
      count: 2,
    });
    expect(toPgPlaceholders("SELECT E'a\\'?', $$ ? $$, $x$ ? $x$, ?").text).toBe("SELECT E'a\\'?', $$ ? $$, $x$ ? $x$, $1");
    expect(toPgPlaceholders('SELECT 1')).toEqual({ text: 'SELECT 1', count: 0 });
  });

  it('parses BIGINT and NUMERIC to numbers, refusing what a number cannot hold exactly', () => {
    expect(parseBigint('0')).toBe(0);
    expect(parseBigint('-42')).toBe(-42);
    expect(parseBigint(String(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => parseBigint('9007199254740993')).toThrow(/^PostgreSQL returned the integer 9007199254740993, beyond .*±2\^53/);
    expect(parseNumeric('1099511627776')).toBe(1099511627776);
    expect(parseNumeric('1.5')).toBe(1.5);
    expect(() => parseNumeric('18446744073709551616')).toThrow(/beyond/);
  });

  it('redacts passwords and password-like parameters from URLs', () => {
    expect(redactUrl('postgres://ferry:hunter2@db:5432/ferry')).toBe('postgres://ferry:***@db:5432/ferry');
    expect(redactUrl('postgresql://ferry@db/ferry?password=hunter2&sslmode=require')).toBe(
      'postgresql://ferry@db/ferry?password=***&sslmode=require',
    );
    expect(redactUrl('postgres://db/ferry')).toBe('postgres://db/ferry');
    expect(redactUrl('postgres://ferry:hun ter2@')).toBe('postgres://…');
  });

  it('a server that cannot be reached: says so, with the URL redacted', async () => {
    const secret = 'n0t-Echoed%40pw';
    const err = await rejection(openInventory(`postgres://ferry:${secret}@127.0.0.1:1/ferry`, { connectTimeoutMs: 2000 }));
    expect(err.message).toMatch(
      /^cannot open the PostgreSQL inventory postgres:\/\/ferry:\*\*\*@127\.0\.0\.1:1\/ferry: .*ECONNREFUSED.* — check that the server runs/,
    );
    expect(`${err.message}\n${err.stack}`).not.toMatch(/n0t-Echoed/);
  });

  it('a location that is not a URL is refused without echoing it', async () => {
    const err = await rejection(PgDb.connect('postgres://ferry:p w@[bad'));
    expect(err.message).toBe('the inventory location postgres://… is not a valid URL: write postgres://user:password@host:5432/database');
  });
});

describe.skipIf(skipBackend('postgres'))('on the server', () => {
  let db: TestDatabase;
  const open: PgDb[] = [];
  const connect = async (location: string, opts = {}): Promise<PgDb> => {
    const d = await PgDb.connect(location, opts);
    open.push(d);
    return d;
  };

  beforeEach(async () => {
    db = await freshDatabase('postgres');
  });

  afterEach(async () => {
    try {
      await Promise.all(open.splice(0).map((d) => d.close()));
    } finally {
      await db?.drop();
    }
  });

  it('a wrong password: says what to check, without echoing the password', async () => {
    const u = new URL(pgTestUrl());
    u.password = 'Wr0ngPassw0rd';
    const err = await rejection(PgDb.connect(u.toString()));
    expect(err.message).toMatch(/^cannot open the PostgreSQL inventory postgres:\/\/[^:]+:\*\*\*@.*password authentication failed.*\(28P01\)/);
    expect(`${err.message}\n${err.stack}`).not.toMatch(/Wr0ngPassw0rd/);
  });

  it('a search_path naming no existing schema is refused', async () => {
    const err = await rejection(PgDb.connect(withSearchPath(pgTestUrl(), 'ferry_no_such_schema')));
    expect(err.message).toMatch(/^no schema of the search_path exists in the PostgreSQL inventory .*: create the schema/);
    expect(err.message).not.toContain(new URL(pgTestUrl()).password);
  });

  it('returns BIGINT and SUM results as numbers and refuses values beyond 2^53', async () => {
    const d = await connect(db.location);
    expect(await d.query('SELECT 9007199254740991::bigint AS n, COUNT(*) AS c, SUM(x) AS s FROM (VALUES (2::bigint), (3)) v (x)')).toEqual([
      { n: 9007199254740991, c: 2, s: 5 },
    ]);
    await expect(d.query('SELECT 9007199254740993::bigint AS n')).rejects.toThrow(/beyond what Ferry can hold exactly/);
    expect(await d.query('SELECT 1 AS one')).toEqual([{ one: 1 }]); // the pool is still usable
  });

  it('a write outside a transaction waits for the running transaction; a read does not', async () => {
    const a = await connect(db.location);
    const b = await connect(db.location);
    await a.run('CREATE TABLE t (v INTEGER)');
    const order: string[] = [];
    let release = (): void => undefined;
    const held = new Promise<void>((r) => (release = r));
    const tx = a.transaction(async (q) => {
      await q.run('INSERT INTO t VALUES (?)', [1]);
      order.push('tx wrote');
      await held;
      order.push('tx commits');
    });
    await until(() => order.includes('tx wrote'), 'the transaction');
    const write = b.run('INSERT INTO t VALUES (?)', [2]).then(() => order.push('autocommit write done'));
    const read = b.query<{ n: number }>('SELECT COUNT(*) AS n FROM t').then((rows) => order.push(`read saw ${rows[0]?.n}`));
    await read;
    await sleep(300);
    expect(order).toEqual(['tx wrote', 'read saw 0']);
    release();
    await Promise.all([tx, write]);
    expect(order).toEqual(['tx wrote', 'read saw 0', 'tx commits', 'autocommit write done']);
    expect(await b.query('SELECT v FROM t ORDER BY v')).toEqual([{ v: 1 }, { v: 2 }]);
  });

  it('a lock wait beyond busyTimeoutMs fails with a message that says what to do', async () => {
    const a = await connect(db.location);
    const b = await connect(db.location, { busyTimeoutMs: 200 });
    let release = (): void => undefined;
    const held = new Promise<void>((r) => (release = r));
    let locked = false;
    const tx = a.transaction(async () => {
      locked = true;
      await held;
    });
    await until(() => locked, 'the lock');
    const err = await rejection(b.transaction(async () => undefined));
    expect(err.message).toMatch(
      /^timed out after 200 ms waiting for the inventory lock of postgres:\/\/.*: another Ferry process holds a long transaction — retry/,
    );
    expect(err.message).not.toContain(new URL(pgTestUrl()).password);
    release();
    await tx;
    await b.transaction(async () => undefined); // free again
  });

  it('a process whose connections all stay busy says so', async () => {
    const d = await connect(db.location, { maxConnections: 1, connectTimeoutMs: 200 });
    let release = (): void => undefined;
    const held = new Promise<void>((r) => (release = r));
    let inside = false;
    const tx = d.transaction(async () => {
      inside = true;
      await held;
    });
    await until(() => inside, 'the transaction');
    const err = await rejection(d.query('SELECT 1'));
    expect(err.message).toMatch(
      /^timed out waiting for a connection to the PostgreSQL inventory postgres:\/\/[^:]+:\*\*\*@.*: .*all 1 connections of this process stayed busy/,
    );
    release();
    await tx;
    expect(await d.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });

  it('inventories in different schemas do not wait for each other', async () => {
    const other = await freshDatabase('postgres');
    try {
      const a = await connect(db.location);
      const b = await connect(other.location, { busyTimeoutMs: 2000 });
      let release = (): void => undefined;
      const held = new Promise<void>((r) => (release = r));
      let locked = false;
      const tx = a.transaction(async () => {
        locked = true;
        await held;
      });
      await until(() => locked, 'the lock');
      await b.run('CREATE TABLE t (v INTEGER)'); // would time out if it shared the lock
      release();
      await tx;
    } finally {
      await Promise.all(open.splice(0).map((d) => d.close()));
      await other.drop();
    }
  });

  it('a transaction that throws rolls back, releases the lock and keeps the connection usable', async () => {
    const d = await connect(db.location, { maxConnections: 1 });
    await d.run('CREATE TABLE t (v INTEGER PRIMARY KEY)');
    await expect(
      d.transaction(async (q) => {
        await q.run('INSERT INTO t VALUES (?)', [1]);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    await expect(d.transaction((q) => q.run('INSERT INTO t VALUES (?), (?)', [2, 2]))).rejects.toThrow(/duplicate key/);
    expect(await d.query('SELECT v FROM t')).toEqual([]);
    await d.transaction((q) => q.run('INSERT INTO t VALUES (?)', [3]));
    expect(await d.query('SELECT v FROM t')).toEqual([{ v: 3 }]);
  });

  it('checks the parameter count', async () => {
    const d = await connect(db.location);
    await expect(d.query('SELECT ? AS a', [])).rejects.toThrow('SQL with 1 placeholders was given 0 parameters: SELECT ? AS a');
  });

  it('close() waits for running transactions, then refuses work', async () => {
    const d = await PgDb.connect(db.location);
    let done = false;
    const tx = d.transaction(async (q) => {
      await sleep(200);
      await q.query('SELECT 1');
      done = true;
    });
    await sleep(20);
    await d.close();
    expect(done).toBe(true);
    await tx;
    await expect(d.query('SELECT 1')).rejects.toThrow(/^the PostgreSQL inventory postgres:\/\/[^:]+:\*\*\*@.* is closed$/);
    await d.close(); // idempotent
  });
});
