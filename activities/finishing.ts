/**
 * Step 6's bookkeeping: the VM's new home in the inventory, the source's old storage removed, capacity
 * re-measured, and the history row (with Ferry's Prometheus metrics) every migration writes once at its end.
 */
import { Context } from '@temporalio/activity';
import type { HostRef } from '../common/migration';
import type { DiskRecord, HistoryRecord, HostRecord, VmState } from '../common/types';
import { basenameOf, vmPoolName } from '../common/names';
import type { Hypervisor, PoolInfo } from '../hypervisor/port';
import type { Inventory } from '../inventory/store';
import type { ActivityRuntime } from './context';
import { guarded } from './failures';
import { domainUsing } from './locate';
import { isPerVmDirectory } from './storage-plan';

export interface CleanSourceInput {
  source: HostRef;
  vmUuid: string;
  disks: DiskRecord[];
  /** Paths of the disks that were copied (the rest are on storage the target shares). Absent: every disk. */
  copied?: string[];
}

/** A pool Ferry may remove from the source: the VM's own per-VM directory, never `default` or a flat one. */
export function heldOnlyThisVm(pool: PoolInfo, vmUuid: string, host: Pick<HostRecord, 'storageRoot'> | null): boolean {
  if (pool.name === 'default' || !isPerVmDirectory(pool.path, host)) return false;
  return pool.name === vmPoolName(vmUuid) || basenameOf(pool.path) === vmUuid;
}

export interface CleanSourceResult {
  removed: string[];
  warnings: string[];
}

export function finishingActivities({ inventory, hv }: ActivityRuntime) {
  return {
    /** Success bookkeeping: the VM runs on the target; its claim is released. */
    async recordVmMoved(input: { vmUuid: string; target: string; workflowId: string; state?: VmState }): Promise<void> {
      return guarded(async () => {
        await inventory.setVmPlacement(input.vmUuid, input.target, input.state ?? 'running');
        await inventory.releaseClaim(input.vmUuid, input.workflowId);
      });
    },

    /**
     * Removes the VM's old copied disks from the source — never a shared one (it is the disk the VM runs on now),
     * never a file a domain there still uses — and a pool + directory only when Ferry can prove it held only
     * this VM: its per-VM directory (directly under the storage root, Ferry's pool or named after the VM),
     * now empty. The `default` pool, other pools and directories with other files stay.
     */
    async cleanSource(input: CleanSourceInput): Promise<CleanSourceResult> {
      return guarded(() => cleanSourceStorage(inventory, hv, input));
    },

    /** Re-measures free storage etc. of hosts whose usage just changed. Best effort. */
    async refreshHostCapacity(input: { hosts: string[] }): Promise<void> {
      return guarded(async () => {
        for (const name of input.hosts) {
          try {
            const host = await inventory.getHost(name);
            if (!host) continue;
            const cap = await hv.hostCapacity(host.uri, host.storageRoot);
            await inventory.updateHostCapacity(name, {
              memoryMiB: Math.floor(cap.memoryKiB / 1024),
              vcpus: cap.cpus,
              storageFreeBytes: cap.storage?.availableBytes ?? host.storageFreeBytes,
            });
          } catch {
            // The next `ferry inventory sync` corrects it.
          }
        }
      });
    },

    async recordHistory(row: HistoryRecord): Promise<void> {
      return guarded(async () => {
        await inventory.recordHistory(row);
        recordMigrationMetrics(row);
      });
    },
  };
}

/** cleanSource's work, also run by `ferry reconcile` for a migration that moved the VM but closed before cleaning. */
export async function cleanSourceStorage(inventory: Inventory, hv: Hypervisor, input: CleanSourceInput): Promise<CleanSourceResult> {
  const { source, vmUuid } = input;
  const removed: string[] = [];
  const warnings: string[] = [];
  const domains = await hv.listDomains(source.uri);
  const dom = domains.find((d) => d.uuid === vmUuid);
  if (dom !== undefined) {
    warnings.push(`${source.name} still has domain ${vmUuid} (${dom.state}); its storage was left in place`);
    return { removed, warnings };
  }
  const host = await inventory.getHost(source.name);
  const copied = input.copied === undefined ? input.disks : input.disks.filter((d) => input.copied?.includes(d.path));
  const pools = new Set<string>();
  let all = await hv.listPools(source.uri);
  for (const disk of copied) {
    const user = domainUsing(domains, disk.path);
    if (user !== undefined) {
      warnings.push(`${disk.path} on ${source.name} is used by domain ${user.name}; kept`);
      continue;
    }
    const pool = await hv.poolOfVolume(source.uri, disk.path);
    if (pool === null) {
      // Already deleted (an earlier attempt, killed with its worker before it removed the pool: seen on the real
      // lab, test/lab/cluster.lab.test.ts), or never in a libvirt pool. The pool of the disk's directory is still a
      // candidate: the same proof below (per-VM directory of this VM, now empty) decides.
      const dir = disk.path.slice(0, disk.path.lastIndexOf('/'));
      const left = all.find((p) => p.path.replace(/\/+$/, '') === dir);
      if (left) pools.add(left.name);
      continue;
    }
    pools.add(pool);
    if (await hv.deleteVolume(source.uri, pool, disk.name)) removed.push(disk.path);
    for (const r of await inventory.listArtifacts({ host: source.name, kind: 'volume', path: disk.path })) await inventory.markArtifact(r, 'removed');
  }
  all = await hv.listPools(source.uri);
  for (const name of pools) {
    const info = all.find((p) => p.name === name);
    if (!info || !heldOnlyThisVm(info, vmUuid, host)) continue; // a shared or flat pool (e.g. default): keep it
    const left = await hv.listVolumes(source.uri, name);
    if (left.length > 0) {
      warnings.push(`${info.path} on ${source.name} still holds ${left.map((v) => v.name).join(', ')}; kept`);
      continue;
    }
    await hv.removeStorageDirectory(source.uri, name);
    removed.push(info.path);
    for (const r of await inventory.listArtifacts({ host: source.name, path: info.path })) await inventory.markArtifact(r, 'removed');
  }
  return { removed, warnings };
}

/**
 * Ferry's own Prometheus metrics (beside Temporal's runtime metrics, on the worker's endpoint), from the
 * history row every migration writes once at its end.
 */
function recordMigrationMetrics(row: HistoryRecord): void {
  const meter = Context.current().metricMeter.withTags({ result: row.result, source: row.source, target: row.target ?? 'none' });
  meter.createCounter('ferry_migrations', 'migrations', 'migrations by result').add(1);
  meter.createHistogram('ferry_migration_duration', 'int', 'ms', 'migration wall time').record(row.durationMs);
  if (row.downtimeMs !== null) meter.createHistogram('ferry_migration_downtime', 'int', 'ms', "libvirt's reported downtime").record(row.downtimeMs);
  if (row.bytesTransferred !== null) meter.createCounter('ferry_migration_bytes', 'bytes', 'bytes copied by migrations').add(row.bytesTransferred);
  const attempts = Context.current().metricMeter.createCounter('ferry_create_task_attempts', 'attempts', 'attempts of create tasks');
  for (const [task, n] of Object.entries(row.createAttempts)) attempts.add(n, { task: task.startsWith('disk:') ? 'disk' : task, result: row.result });
}
