/**
 * Storage on the target: the create tasks of step 4 (directory, pool, each disk — each its own activity
 * whose retry policy's maximumAttempts is the failure threshold) and their undoing by compensation, which
 * refuses to act where the VM runs.
 */
import type { CreateTaskResult, HostRef } from '../common/migration';
import type { DiskRecord } from '../common/types';
import { normalizeAbsolute } from '../common/names';
import type { ActivityRuntime } from './context';
import { safeVolumeName, targetDoesNotRunVm, targetKeepsStorageThere } from './checks';
import { guarded } from './failures';
import { assertNotRunningOn } from './locate';

export interface TargetStorageInput {
  target: HostRef;
  vmUuid: string;
  pool: string;
}

export function storageActivities({ inventory, hv, noteAttempt }: ActivityRuntime) {
  return {
    /** Create task 1: the VM's storage directory on the target (through a defined dir pool). */
    async createStorageDirectory(input: TargetStorageInput & { path: string }): Promise<CreateTaskResult> {
      const attempt = await noteAttempt('directory');
      return guarded(async () => {
        targetKeepsStorageThere(input.target, await inventory.getHost(input.target.name), input.path);
        targetDoesNotRunVm(input.target, input.vmUuid, await hv.getDomain(input.target.uri, input.vmUuid));
        await hv.createStorageDirectory(input.target.uri, input.pool, input.path);
        return { attempt };
      });
    },

    /** Create task 2: start (and autostart) the pool on that directory. */
    async createStoragePool(input: TargetStorageInput): Promise<CreateTaskResult> {
      const attempt = await noteAttempt('pool');
      return guarded(async () => {
        await hv.startPool(input.target.uri, input.pool);
        return { attempt };
      });
    },

    /** Create task 3..n: one empty volume with the disk's name, size and format (a stale one is replaced). */
    async createDisk(input: TargetStorageInput & { disk: DiskRecord }): Promise<CreateTaskResult> {
      const attempt = await noteAttempt(`disk:${input.disk.name}`);
      return guarded(async () => {
        safeVolumeName(input.disk);
        await hv.recreateVolume(input.target.uri, input.pool, input.disk.name, input.disk.sizeBytes, input.disk.format);
        return { attempt };
      });
    },

    // ---- compensation on the target: each refuses to act if the VM runs there ----

    async deleteDisk(input: TargetStorageInput & { name: string }): Promise<void> {
      return guarded(async () => {
        await assertNotRunningOn(hv, input.target, input.vmUuid, `delete volume ${input.name}`);
        await hv.deleteVolume(input.target.uri, input.pool, input.name);
      });
    },

    async stopStoragePool(input: TargetStorageInput): Promise<void> {
      return guarded(async () => {
        await assertNotRunningOn(hv, input.target, input.vmUuid, `stop pool ${input.pool}`);
        await hv.stopPool(input.target.uri, input.pool);
      });
    },

    /**
     * `path`: the VM's storage directory. A pool of our name on ANOTHER directory was not made by this
     * migration (its directory task refused it): it and its files are left alone.
     */
    async removeStorageDirectory(input: TargetStorageInput & { path?: string }): Promise<void> {
      return guarded(async () => {
        await assertNotRunningOn(hv, input.target, input.vmUuid, `remove the storage directory of pool ${input.pool}`);
        if (input.path !== undefined) {
          const pool = (await hv.listPools(input.target.uri)).find((p) => p.name === input.pool);
          if (pool && normalizeAbsolute(pool.path) !== normalizeAbsolute(input.path)) return;
        }
        await hv.removeStorageDirectory(input.target.uri, input.pool);
      });
    },
  };
}
