/**
 * The databases the inventory tests run on: every inventory test runs once per backend.
 *
 *   sqlite    a file in a fresh temporary directory, removed after the test;
 *   postgres  a fresh schema in the database FERRY_TEST_PG_URL names (the URL's role must be allowed to
 *             create schemas there), selected with `?options=-c search_path=<schema>` and dropped after.
 *
 * Without FERRY_TEST_PG_URL the postgres variant FAILS, saying how to get a server (scripts/test starts one);
 * only an explicit FERRY_SKIP_PG=1 skips it (shown as skipped, never silently). Locations of the postgres
 * backend contain the password: tests never print them (use describeInventoryLocation).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SqlParams } from '../../inventory/db';
import { PgDb } from '../../inventory/pg-db';
import { SqliteDb } from '../../inventory/sqlite-db';

export type Backend = 'sqlite' | 'postgres';
export const BACKENDS: readonly Backend[] = ['sqlite', 'postgres'];

/** True only for the postgres backend when no server is configured and FERRY_SKIP_PG=1 asks to skip it. */
export function skipBackend(backend: Backend): boolean {
  return backend === 'postgres' && !process.env.FERRY_TEST_PG_URL && process.env.FERRY_SKIP_PG === '1';
}

/** The server for the postgres tests, or an error saying how to provide one. */
export function pgTestUrl(): string {
  const url = process.env.FERRY_TEST_PG_URL;
  if (!url) {
    throw new Error(
      'FERRY_TEST_PG_URL is not set: the PostgreSQL variant of the inventory tests needs a server — run scripts/test ' +
        '(it starts one), or export FERRY_TEST_PG_URL=postgres://USER:PASSWORD@127.0.0.1:5432/DATABASE (a role ' +
        'that may create schemas there); to skip these tests on a machine without PostgreSQL set FERRY_SKIP_PG=1',
    );
  }
  return url;
}

/** `url` with `-c search_path=<schema>` added to its libpq `options`. */
export function withSearchPath(url: string, schema: string): string {
  const u = new URL(url);
  const options = u.searchParams.get('options');
  u.searchParams.set('options', `${options ? `${options} ` : ''}-c search_path=${schema}`);
  return u.toString();
}

export interface TestDatabase {
  readonly backend: Backend;
  /** For openInventory (postgres: contains the password — never print it). */
  readonly location: string;
  /** Raw SQL on the database, outside the inventory (`?` placeholders): rows, or rows changed. */
  query<T>(text: string, params?: SqlParams): Promise<T[]>;
  run(text: string, params?: SqlParams): Promise<{ changes: number }>;
  /** Removes the database (file or schema). Close the inventories on it first. */
  drop(): Promise<void>;
}

let counter = 0;

export async function freshDatabase(backend: Backend): Promise<TestDatabase> {
  if (backend === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-inv-'));
    const file = join(dir, 'inventory.db');
    let raw: SqliteDb | undefined;
    return {
      backend,
      location: file,
      query: (text, params) => (raw ??= new SqliteDb(file)).query(text, params),
      run: (text, params) => (raw ??= new SqliteDb(file)).run(text, params),
      drop: async () => {
        await raw?.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  const url = pgTestUrl();
  const schema = `ferry_t${process.pid}_${++counter}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = await PgDb.connect(url);
  try {
    await admin.run(`CREATE SCHEMA ${schema}`);
  } finally {
    await admin.close();
  }
  const location = withSearchPath(url, schema);
  let raw: Promise<PgDb> | undefined;
  return {
    backend,
    location,
    query: async (text, params) => (await (raw ??= PgDb.connect(location))).query(text, params),
    run: async (text, params) => (await (raw ??= PgDb.connect(location))).run(text, params),
    drop: async () => {
      if (raw) await (await raw).close();
      const db = await PgDb.connect(url);
      try {
        await db.run(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await db.close();
      }
    },
  };
}
