/**
 * Opening the inventory. Location: a SQLite file path, `sqlite:<path>` / `sqlite://<path>`, or `:memory:`.
 * PostgreSQL (`postgres://`, `postgresql://`) comes with a later driver.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { SqlInventory, type SqlInventoryOptions } from './inventory';
import { SqliteDb, type SqliteDbOptions } from './sqlite-db';
import type { Inventory } from './store';

export type { Inventory } from './store';
export { SqlInventory, InventoryError } from './inventory';
export { PlacementError } from './placement';
export { syncInventory } from './sync';

export function defaultInventoryLocation(home: string): string {
  return join(home, 'inventory.db');
}

/** The SQLite file a location names; throws for other databases (never echoing credentials). */
export function sqlitePath(location: string): string {
  if (location === '') throw new Error('inventory location is empty');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(location)?.[1]?.toLowerCase();
  if (scheme === 'postgres' || scheme === 'postgresql') {
    throw new Error(
      `PostgreSQL inventories (${scheme}://…) are not yet supported: use a SQLite file path or sqlite:<path>`,
    );
  }
  if (scheme === 'sqlite') {
    const path = location.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (path === '') throw new Error('inventory location sqlite: names no file');
    return path;
  }
  if (scheme !== undefined && scheme.length > 1 && location.slice(scheme.length + 1).startsWith('//')) {
    throw new Error(`unsupported inventory location ${scheme}://…: use a SQLite file path or sqlite:<path>`);
  }
  return location; // a plain path (a one-letter "scheme" is a Windows drive)
}

export async function openInventory(
  location: string,
  opts: SqlInventoryOptions & SqliteDbOptions = {},
): Promise<Inventory> {
  const file = sqlitePath(location);
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new SqliteDb(file, opts);
  try {
    return await SqlInventory.open(db, opts);
  } catch (err) {
    await db.close();
    throw err;
  }
}
