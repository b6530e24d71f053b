/**
 * `ferry inventory sync`: asks libvirt on each host what it runs and records it (Inventory.syncHost).
 */
import { vmStateOfDomain } from '../common/migration';
import type { DomainInfo, HostCapacity, Hypervisor } from '../hypervisor/port';
import type { HostCapacityUpdate, Inventory, SyncResult, VmUpsert } from './store';

export interface SyncOptions {
  /** Host names or addresses; default: every host in the inventory. */
  hosts?: string[];
  /** Hosts queried at the same time. Default 8. */
  concurrency?: number;
}


export function domainToVm(d: DomainInfo, host: string): VmUpsert {
  return {
    uuid: d.uuid,
    name: d.name,
    host,
    memoryMiB: Math.ceil(d.memoryKiB / 1024),
    vcpus: d.vcpus,
    state: vmStateOfDomain(d.state),
    disks: d.disks.map((disk) => ({
      target: disk.target,
      name: basename(disk.path),
      path: disk.path,
      format: disk.format,
      sizeBytes: disk.capacityBytes,
    })),
  };
}

export function capacityUpdate(c: HostCapacity): HostCapacityUpdate {
  return {
    memoryMiB: Math.floor(c.memoryKiB / 1024),
    vcpus: c.cpus,
    storageFreeBytes: c.storage?.availableBytes ?? null,
  };
}

/** Host paths are POSIX whatever the platform Ferry runs on. */
function basename(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/**
 * Syncs the selected hosts (results in inventory order). A host that cannot be queried gets a result with
 * `error` set and nothing recorded; the others go on. Unknown host names are rejected before any work.
 */
export async function syncInventory(
  inv: Inventory,
  hv: Pick<Hypervisor, 'hostCapacity' | 'listDomains'>,
  opts: SyncOptions = {},
): Promise<SyncResult[]> {
  let hosts = await inv.listHosts();
  if (opts.hosts !== undefined) {
    const wanted = opts.hosts;
    const unknown = wanted.filter((w) => !hosts.some((h) => h.name === w || h.address === w));
    if (unknown.length > 0) throw new Error(`not in the inventory: ${unknown.join(', ')}`);
    hosts = hosts.filter((h) => wanted.includes(h.name) || wanted.includes(h.address));
  }

  const results: SyncResult[] = new Array<SyncResult>(hosts.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < hosts.length; i = next++) {
      const host = hosts[i];
      if (!host) continue;
      let capacity: HostCapacity;
      let domains: DomainInfo[];
      try {
        capacity = await hv.hostCapacity(host.uri, host.storageRoot);
        domains = await hv.listDomains(host.uri);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        results[i] = { host: host.name, added: [], updated: [], removed: [], skipped: [], error: message };
        continue;
      }
      results[i] = await inv.syncHost(
        host.name,
        domains.map((d) => domainToVm(d, host.name)),
        capacityUpdate(capacity),
      );
    }
  };
  const workers = Math.max(1, Math.min(opts.concurrency ?? 8, hosts.length));
  await Promise.all(Array.from({ length: workers }, worker));
  return results;
}
