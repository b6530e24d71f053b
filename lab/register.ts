/** Registers a lab's hosts in the inventory and reads their VMs, disks and capacity from libvirt. */
import type { Hypervisor } from '../hypervisor/port';
import type { Inventory, SyncResult } from '../inventory/store';
import { syncInventory } from '../inventory/sync';
import { LAB_STORAGE_ROOT, type LabStatus } from './index';

export async function registerLab(inv: Inventory, hv: Hypervisor, status: LabStatus): Promise<SyncResult[]> {
  for (const h of status.hosts) {
    if ((await inv.getHost(h.name)) === null) {
      await inv.addHost({ name: h.name, address: h.address, uri: h.uri, storageRoot: LAB_STORAGE_ROOT, state: 'normal' });
    }
  }
  return syncInventory(inv, hv, { hosts: status.hosts.map((h) => h.name) });
}
