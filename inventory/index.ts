/**
 * Opening the inventory. Location: a SQLite file path, `sqlite:<path>` / `sqlite://<path>`, `:memory:`, or a
 * PostgreSQL URL `postgres://user:password@host:5432/database` (`postgresql://` too; an optional
 * `?options=-c search_path=<schema>` puts the tables in that schema). Messages and logs show a location only
 * through describeInventoryLocation(), which hides the password.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Db } from './db';
import { SqlInventory, type SqlInventoryOptions } from './inventory';
import { PgDb, redactUrl, type PgDbOptions } from './pg-db';
import { SqliteDb, type SqliteDbOptions } from './sqlite-db';
import type { Inventory } from './store';

export type { Inventory } from './store';
export { SqlInventory, InventoryError } from './inventory';
export { PlacementError } from './placement';
export { syncInventory } from './sync';

export function defaultInventoryLocation(home: string): string {
  return join(home, 'inventory.db');
}

export type InventoryLocation = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

/** Which database a location names. Throws for unknown schemes (never echoing credentials). */
export function parseInventoryLocation(location: string): InventoryLocation {
  if (location === '') throw new Error('inventory location is empty');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(location)?.[1]?.toLowerCase();
  if (scheme === 'postgres' || scheme === 'postgresql') {
    if (!location.slice(scheme.length + 1).startsWith('//')) {
      throw new Error(`inventory location ${scheme}:… is not a URL: write ${scheme}://user:password@host:5432/database`);
    }
    return { kind: 'postgres', url: location };
  }
  if (scheme === 'sqlite') {
    const path = location.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (path === '') throw new Error('inventory location sqlite: names no file');
    return { kind: 'sqlite', path };
  }
  if (scheme !== undefined && scheme.length > 1 && location.slice(scheme.length + 1).startsWith('//')) {
    throw new Error(
      `unsupported inventory location ${scheme}://…: use a SQLite file path, sqlite:<path> or postgres://user:password@host/database`,
    );
  }
  return { kind: 'sqlite', path: location }; // a plain path (a one-letter "scheme" is a Windows drive)
}

/** The SQLite file a location names; throws for PostgreSQL and unknown locations. */
export function sqlitePath(location: string): string {
  const loc = parseInventoryLocation(location);
  if (loc.kind !== 'sqlite') throw new Error(`the inventory ${redactUrl(loc.url)} is a PostgreSQL database, not a SQLite file`);
  return loc.path;
}

/** The location for messages and logs: a PostgreSQL URL's password is replaced by ***. */
export function describeInventoryLocation(location: string): string {
  try {
    const loc = parseInventoryLocation(location);
    return loc.kind === 'sqlite' ? loc.path : redactUrl(loc.url);
  } catch {
    return redactUrl(location);
  }
}

export type OpenInventoryOptions = SqlInventoryOptions & SqliteDbOptions & PgDbOptions;

export async function openInventory(location: string, opts: OpenInventoryOptions = {}): Promise<Inventory> {
  const loc = parseInventoryLocation(location);
  let db: Db;
  if (loc.kind === 'postgres') {
    db = await PgDb.connect(loc.url, opts);
  } else {
    if (loc.path !== ':memory:') mkdirSync(dirname(loc.path), { recursive: true });
    db = new SqliteDb(loc.path, opts);
  }
  try {
    return await SqlInventory.open(db, opts);
  } catch (err) {
    await db.close();
    throw err;
  }
}
