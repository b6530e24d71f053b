/**
 * Step 6's bookkeeping: the VM's new home in the inventory, the source's old storage removed, capacity
 * re-measured, and the history row (with Ferry's Prometheus metrics) every migration writes once at its end.
 */
import { Context } from '@temporalio/activity';
import type { HostRef } from '../common/migration';
import type { DiskRecord, HistoryRecord } from '../common/types';
import type { ActivityRuntime } from './context';
import { guarded } from './failures';

export interface CleanSourceInput {
  source: HostRef;
  vmUuid: string;
  disks: DiskRecord[];
  storageDir: string;
}

export interface CleanSourceResult {
  removed: string[];
  warnings: string[];
}

export function finishingActivities({ inventory, hv }: ActivityRuntime) {
  return {
    /** Success bookkeeping: the VM runs on the target; its claim is released. */
    async recordVmMoved(input: { vmUuid: string; target: string; workflowId: string }): Promise<void> {
      return guarded(async () => {
        await inventory.setVmPlacement(input.vmUuid, input.target, 'running');
        await inventory.releaseClaim(input.vmUuid, input.workflowId);
      });
    },

    /** Removes the VM's old disks, and its pool + directory when nothing else is in them, from the source. */
    async cleanSource(input: CleanSourceInput): Promise<CleanSourceResult> {
      return guarded(async () => {
        const removed: string[] = [];
        const warnings: string[] = [];
        const dom = await hv.getDomain(input.source.uri, input.vmUuid);
        if (dom !== null) {
          warnings.push(`${input.source.name} still has domain ${input.vmUuid} (${dom.state}); its storage was left in place`);
          return { removed, warnings };
        }
        const pools = new Set<string>();
        for (const disk of input.disks) {
          const pool = await hv.poolOfVolume(input.source.uri, disk.path);
          if (pool === null) continue; // already deleted by an earlier attempt, or not in any libvirt pool
          pools.add(pool);
          if (await hv.deleteVolume(input.source.uri, pool, disk.name)) removed.push(disk.path);
        }
        for (const pool of pools) {
          const info = (await hv.listPools(input.source.uri)).find((p) => p.name === pool);
          if (!info || info.path !== input.storageDir) continue; // a shared pool: keep it
          const left = await hv.listVolumes(input.source.uri, pool);
          if (left.length > 0) {
            warnings.push(`${input.storageDir} on ${input.source.name} still holds ${left.map((v) => v.name).join(', ')}; kept`);
            continue;
          }
          await hv.removeStorageDirectory(input.source.uri, pool);
          removed.push(input.storageDir);
        }
        return { removed, warnings };
      });
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
