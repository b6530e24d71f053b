/** syncInventory: `ferry inventory sync` as a workflow, so a Temporal Schedule keeps capacity current. */
import type { SyncResult } from '../inventory/store';
import { inventorySync } from './proxies';

export async function syncInventory(input: { hosts?: string[] } = {}): Promise<SyncResult[]> {
  return inventorySync.syncHosts(input?.hosts ? { hosts: input.hosts } : {});
}
