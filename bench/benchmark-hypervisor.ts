/**
 * BENCHMARK ADAPTER, used only by bench/throughput.ts: the Hypervisor port without libvirt, so that a
 * throughput run measures Ferry's own orchestration cost (Temporal workflow + activities + inventory) and
 * nothing else.
 *
 * It reuses the workflow tests' in-memory model (test/support/memory-hypervisor.ts: domains, dir pools,
 * volumes, migration jobs, completed-job statistics), which keeps every check the activities make meaningful
 * (the target pool and volumes must exist before a migration, the source is cleaned afterwards, etc.). Two
 * differences, both for long runs: a migration job completes on the next timer tick (migrationMs = 0) instead
 * of after 300 ms, and the double's call log (kept for test assertions) is emptied as it goes so a run of
 * thousands of workflows does not grow without bound. No fault injection is used.
 */
import type { DomainInfo, Hypervisor } from '../hypervisor/port';
import type { Inventory } from '../inventory';
import { MemoryHypervisor } from '../test/support/memory-hypervisor';

export class BenchmarkHypervisor extends MemoryHypervisor implements Hypervisor {
  constructor() {
    super();
    this.migrationMs = 0;
  }

  /** Every migration reads the domain several times: a good place to empty the double's call log. */
  override async getDomain(uri: string, uuid: string): Promise<DomainInfo | null> {
    if (this.calls.length >= 1000) this.calls.length = 0;
    return super.getDomain(uri, uuid);
  }
}

/** A benchmark hypervisor holding the inventory's hosts and VMs (every VM running where the inventory says). */
export async function benchmarkHypervisorFor(inventory: Inventory): Promise<BenchmarkHypervisor> {
  const hv = new BenchmarkHypervisor();
  const hosts = await inventory.listHosts();
  for (const h of hosts) hv.addHost(h.uri, h.name);
  const uriOf = new Map(hosts.map((h) => [h.name, h.uri]));
  for (const vm of await inventory.listVms()) {
    const first = vm.disks[0];
    if (!first) continue;
    hv.addVm(uriOf.get(vm.host) ?? '', {
      uuid: vm.uuid,
      name: vm.name,
      memoryMiB: vm.memoryMiB,
      vcpus: vm.vcpus,
      dir: first.path.slice(0, first.path.lastIndexOf('/')),
      pool: `ferry-${vm.uuid}`,
      disks: vm.disks.map((d) => ({ name: d.name, target: d.target, sizeBytes: d.sizeBytes, format: d.format })),
    });
  }
  return hv;
}
