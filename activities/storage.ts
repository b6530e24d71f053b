/**
 * Storage on the target: the create tasks of step 4 (directory, pool, each disk — each its own activity
 * whose retry policy's maximumAttempts is the failure threshold) and their undoing by compensation.
 *
 * Ownership by provenance: each task records in the inventory what it is about to create, for this run
 * (workflow ID + run ID), before it creates it; "directory" and "pool" only create what is missing (an
 * existing pool such as libvirt's `default` is used, never removed). Compensation deletes only what this
 * run's records prove it created, never a file a domain on the target uses, and a directory only when empty.
 */
import { Context } from '@temporalio/activity';
import type { CreateTaskResult, HostRef, PlannedDirectory, PlannedDisk, RunRef, VmFacts } from '../common/migration';
import { basenameOf, dirnameOf } from '../common/names';
import type { DiskRecord, StorageArtifactRecord } from '../common/types';
import { FailureType } from '../common/failures';
import { LibvirtError } from '../hypervisor/errors';
import type { Hypervisor } from '../hypervisor/port';
import type { Inventory } from '../inventory/store';
import type { ActivityRuntime } from './context';
import { safeVolumeName, targetDoesNotRunVm, targetKeepsStorageThere } from './checks';
import { guarded, nonRetryable } from './failures';
import { assertNotRunningOn, domainUsing } from './locate';
import { planContext, planDirectory, poolOn } from './storage-plan';
import { samePath } from '../hypervisor/virsh';

export interface TargetStorageInput {
  target: HostRef;
  vmUuid: string;
  pool: string;
  /** The create task's name in the workflow's attempt counts (default: directory / pool / disk:<name>). */
  task?: string;
}

/**
 * The directory task: `poolExists` and `dirExists` come from the storage plan (absent: create both, as before).
 * `decide`: the plan was deferred (the target did not answer then): this task plans its directory first.
 */
export interface DirectoryTaskInput extends TargetStorageInput {
  path: string;
  poolExists?: boolean;
  dirExists?: boolean;
  decide?: { vm: VmFacts; index: number };
}

export interface DirectoryTaskResult extends CreateTaskResult {
  /** With `decide`: this directory's plan (`directory: null` when it is shared storage: nothing to create). */
  plan?: { disks: PlannedDisk[]; directory: PlannedDirectory | null };
}

export interface DiskTaskInput extends TargetStorageInput {
  disk: DiskRecord;
  /** The plan proved the same-name file on the target a leftover of an earlier Ferry migration of this VM. */
  replacesLeftover?: boolean;
}

/** The run calling this activity: provenance records carry it. */
export function currentRun(): RunRef {
  const wf = Context.current().info.workflowExecution;
  return { workflowId: wf?.workflowId ?? '', runId: wf?.runId ?? '' };
}

export function storageActivities({ inventory, hv, noteAttempt }: ActivityRuntime) {
  const undoScope = (): UndoScope => ({ inventory, hv, run: currentRun() });
  const record = (target: HostRef, kind: StorageArtifactRecord['kind'], path: string, pool: string, vmUuid: string) => ({
    host: target.name,
    kind,
    path,
    pool,
    vmUuid,
    ...currentRun(),
  });

  /** The directory (and Ferry's pool on it) on the target, creating only what is missing; records what it creates. */
  async function ensureDirectory(target: HostRef, vmUuid: string, path: string, pool: string, poolExists: boolean, dirExists: boolean): Promise<boolean> {
    if (poolExists) {
      if (!poolOn(await hv.listPools(target.uri), path)) {
        throw new Error(`the pool on ${path} the storage plan found on ${target.name} is gone: planning again`);
      }
      return false;
    }
    if (dirExists) {
      // A directory that is there already: define our pool on it, never build (owner and mode stay).
      await hv.definePool(target.uri, pool, path);
      await inventory.recordArtifact(record(target, 'pool', path, pool, vmUuid), 'created');
      return false;
    }
    // Ferry creates directories only directly under the target's storage root.
    targetKeepsStorageThere(target, await inventory.getHost(target.name), path);
    const dir = record(target, 'directory', path, pool, vmUuid);
    await inventory.recordArtifact(dir); // before it is built: a crash after the build still knows it is ours
    try {
      await hv.createStorageDirectory(target.uri, pool, path);
    } catch (err) {
      // Refused (another owner's pool there, our name elsewhere): nothing was built, nothing is ours.
      if (err instanceof LibvirtError && err.kind === 'exists') await inventory.markArtifact(dir, 'removed');
      throw err;
    }
    await inventory.recordArtifact(record(target, 'pool', path, pool, vmUuid), 'created');
    await inventory.markArtifact(dir, 'created');
    return true;
  }

  return {
    /**
     * Create task 1: the directory on the target, through a dir pool — only if there is no pool on it yet.
     * With `decide` it first makes this directory's storage plan (shared: nothing to create).
     */
    async createStorageDirectory(input: DirectoryTaskInput): Promise<DirectoryTaskResult> {
      const attempt = await noteAttempt(input.task ?? 'directory');
      return guarded(async () => {
        const { target, path } = input;
        targetDoesNotRunVm(target, input.vmUuid, await hv.getDomain(target.uri, input.vmUuid));
        let { pool, poolExists, dirExists } = input;
        let plan: DirectoryTaskResult['plan'];
        if (input.decide) {
          const { vm, index } = input.decide;
          const inDir = vm.disks.filter((d) => dirnameOf(d.path) === path);
          const decided = await planDirectory(inventory, hv, await planContext(inventory, hv, vm, target), path, inDir, index);
          if ('refused' in decided) throw nonRetryable(FailureType.StorageConflict, decided.refused);
          plan = decided;
          if (decided.directory === null) return { attempt, created: false, plan };
          ({ pool, poolExists, dirExists } = decided.directory);
        }
        const created = await ensureDirectory(target, input.vmUuid, path, pool, poolExists === true, dirExists === true);
        return { attempt, created, ...(plan ? { plan } : {}) };
      });
    },

    /** Create task 2: the pool started (Ferry's own also autostarted); an existing pool is only started if it is not. */
    async createStoragePool(input: TargetStorageInput & { poolExists?: boolean }): Promise<CreateTaskResult> {
      const attempt = await noteAttempt(input.task ?? 'pool');
      return guarded(async () => {
        await hv.startPool(input.target.uri, input.pool, { autostart: !input.poolExists });
        return { attempt, created: !input.poolExists };
      });
    },

    /**
     * Create task 3..n: one empty volume with the disk's name, size and format. A file already of that name is
     * replaced only when it is this run's own (an earlier attempt) or the plan proved it a leftover of an
     * earlier migration of this VM, and no domain on the target uses it; otherwise the task refuses.
     */
    async createDisk(input: DiskTaskInput): Promise<CreateTaskResult> {
      const attempt = await noteAttempt(input.task ?? `disk:${input.disk.name}`);
      return guarded(async () => {
        const { target, pool, disk } = input;
        safeVolumeName(disk);
        const run = currentRun();
        const prior = await inventory.listArtifacts({ host: target.name, kind: 'volume', path: disk.path });
        const mine = prior.some((r) => r.workflowId === run.workflowId && r.runId === run.runId);
        const leftovers = prior.filter((r) => r.vmUuid === input.vmUuid && !(r.workflowId === run.workflowId && r.runId === run.runId));
        const vol = record(target, 'volume', disk.path, pool, input.vmUuid);
        await inventory.recordArtifact(vol);
        try {
          await hv.recreateVolume(target.uri, pool, disk.name, disk.sizeBytes, disk.format, { replace: false });
        } catch (err) {
          if (!(err instanceof LibvirtError && err.kind === 'exists')) throw err;
          const ours = mine || (input.replacesLeftover === true && leftovers.length > 0);
          const used = await usedByDomain(hv, target, disk.path);
          if (!ours || used !== null) {
            await inventory.markArtifact(vol, 'removed'); // never ours: compensation must not touch it
            throw nonRetryable(
              FailureType.StorageConflict,
              `${target.name} already has ${disk.path}` +
                (used !== null ? `, which domain ${used} uses` : ', which this migration did not create') +
                ': it is left untouched; move or remove it, or migrate elsewhere',
            );
          }
          await hv.recreateVolume(target.uri, pool, disk.name, disk.sizeBytes, disk.format, { replace: true });
          for (const r of leftovers) await inventory.markArtifact(r, 'removed');
        }
        await inventory.markArtifact(vol, 'created');
        return { attempt, created: true };
      });
    },

    // ---- compensation on the target: only what this run created; never where the VM or another domain runs ----

    async deleteDisk(input: TargetStorageInput & { name: string; path?: string }): Promise<void> {
      return guarded(async () => {
        await deleteRunVolume(undoScope(), input.target, input.vmUuid, input.pool, input.name, input.path);
      });
    },

    async stopStoragePool(input: TargetStorageInput & { path?: string }): Promise<void> {
      return guarded(async () => {
        await stopRunPool(undoScope(), input.target, input.vmUuid, input.pool, input.path);
      });
    },

    /**
     * `path`: the VM's directory. The pool goes only if this run defined it, the directory only if this run
     * built it and it is empty (rmdir); a pool of our name on ANOTHER directory was not made by this run.
     */
    async removeStorageDirectory(input: TargetStorageInput & { path?: string }): Promise<void> {
      return guarded(async () => {
        await removeRunDirectory(undoScope(), input.target, input.vmUuid, input.pool, input.path);
      });
    },
  };
}

/**
 * Undoing what ONE run created on a target: the workflow's own compensation (the calling run) and
 * `ferry reconcile` (the run of a workflow that closed without compensating) share these rules.
 */
export interface UndoScope {
  inventory: Inventory;
  hv: Hypervisor;
  /** The run whose provenance records prove what it created. */
  run: RunRef;
}

/** Deletes the volume if this run's records prove it created it and no domain on the target uses it. True if deleted. */
export async function deleteRunVolume(s: UndoScope, target: HostRef, vmUuid: string, pool: string, name: string, knownPath?: string): Promise<boolean> {
  const { inventory, hv } = s;
  await assertNotRunningOn(hv, target, vmUuid, `delete volume ${name}`);
  const path = knownPath ?? (await volumePath(hv, target, pool, name));
  if (path === null) return false;
  const mine = await runRecords(s, target, 'volume', path);
  if (mine.length === 0) return false; // not created by this run: not ours to delete
  const used = await usedByDomain(hv, target, path);
  if (used !== null) throw nonRetryable(FailureType.UnsafeCleanup, `refusing to delete ${path} on ${target.name}: domain ${used} uses it`);
  await hv.deleteVolume(target.uri, pool, name);
  for (const r of mine) await inventory.markArtifact(r, 'removed');
  return true;
}

/** Stops the pool if this run defined it (an existing pool is left as it was). True if stopped. */
export async function stopRunPool(s: UndoScope, target: HostRef, vmUuid: string, name: string, path?: string): Promise<boolean> {
  await assertNotRunningOn(s.hv, target, vmUuid, `stop pool ${name}`);
  const pool = (await s.hv.listPools(target.uri)).find((p) => p.name === name);
  if (!pool || (path !== undefined && !samePath(pool.path, path))) return false;
  if ((await runRecords(s, target, 'pool', pool.path)).length === 0) return false; // an existing pool: left as it was
  await s.hv.stopPool(target.uri, name);
  return true;
}

/** The pool if this run defined it, and its directory if this run built it and it is empty. True if removed. */
export async function removeRunDirectory(s: UndoScope, target: HostRef, vmUuid: string, name: string, path?: string): Promise<boolean> {
  const { inventory, hv } = s;
  await assertNotRunningOn(hv, target, vmUuid, `remove the storage directory of pool ${name}`);
  const pool = (await hv.listPools(target.uri)).find((p) => p.name === name);
  if (!pool || (path !== undefined && !samePath(pool.path, path))) return false;
  const pools = await runRecords(s, target, 'pool', pool.path);
  if (pools.length === 0) return false;
  const dirs = await runRecords(s, target, 'directory', pool.path);
  if (dirs.length > 0) await hv.removeStorageDirectory(target.uri, name);
  else await hv.forgetPool(target.uri, name); // the directory was there before: it stays
  for (const r of [...dirs, ...pools]) await inventory.markArtifact(r, 'removed');
  return true;
}

/**
 * Undoes one provenance record of `s.run` on `target` with the rules above: a volume is deleted, a pool stopped
 * and then removed with its directory (when this run built it). Records come newest first from listArtifacts,
 * so volumes go before their pool and directory. True if something was removed.
 */
export async function undoRecord(s: UndoScope, target: HostRef, r: StorageArtifactRecord): Promise<boolean> {
  if (r.kind === 'volume') return deleteRunVolume(s, target, r.vmUuid, r.pool, basenameOf(r.path), r.path);
  const stopped = r.kind === 'pool' ? await stopRunPool(s, target, r.vmUuid, r.pool, r.path) : false;
  return (await removeRunDirectory(s, target, r.vmUuid, r.pool, r.path)) || stopped;
}

/** The run's records of one thing on the target. */
async function runRecords(s: UndoScope, target: HostRef, kind: StorageArtifactRecord['kind'], path: string): Promise<StorageArtifactRecord[]> {
  return s.inventory.listArtifacts({ host: target.name, kind, path, ...s.run });
}

/** The name of a domain on the host that references the file (a disk, a cdrom, a backing file), or null. */
export async function usedByDomain(hv: Hypervisor, host: HostRef, path: string): Promise<string | null> {
  return domainUsing(await hv.listDomains(host.uri), path)?.name ?? null;
}

/** Where a volume of that pool would be (the pool's directory + the name), or null when the pool is gone. */
async function volumePath(hv: Hypervisor, target: HostRef, pool: string, name: string): Promise<string | null> {
  const p = (await hv.listPools(target.uri)).find((x) => x.name === pool);
  return p ? `${p.path.replace(/\/+$/, '')}/${name}` : null;
}
