/**
 * Ferry's activities: thin, idempotent steps over the inventory and the Hypervisor port, by concern.
 * Each one can be retried after a partial success (or a worker crash) and ends in the same place.
 *
 *   inventory.ts   read the VM (step 2), claim a target (3), VM records, evacuation bookkeeping, sync
 *   storage-plan.ts  step 3's storage check: each disk shared (probe) or copied, and where copies go
 *   storage.ts     the create tasks on the target (4) and their undoing, by provenance
 *   migration.ts   the live migration (5: migration-run.ts), abort, tune, post-copy, where the VM runs
 *   finishing.ts   success bookkeeping, source cleanup, capacity, history and metrics (6)
 *   checks.ts      the pre-conditions, as named checks; locate.ts: libvirt's account of a VM
 *   reconcile.ts   what a workflow closed from outside (terminated) left behind: claim, VM state, target storage
 */
import { activityRuntime, type ActivityDeps } from './context';
import { finishingActivities } from './finishing';
import { inventoryActivities } from './inventory';
import { migrationActivities } from './migration';
import { storageActivities } from './storage';
import { planningActivities } from './storage-plan';
import { reconcileActivities } from './reconcile';

export type { ActivityDeps } from './context';
export type { ClaimTargetInput, ClaimTargetResult } from './inventory';
export type { TargetStorageInput, DirectoryTaskInput, DiskTaskInput } from './storage';
export type { PlanStorageInput, PlanStorageResult } from './storage-plan';
export type { MigrateVmInput } from './migration-run';
export type { LocateInput } from './migration';
export type { CleanSourceInput, CleanSourceResult } from './finishing';
export { reconcileMigrations } from './reconcile';
export { checkDiskPaths, compareDisks } from './checks';
export { hostRef, migrationStats } from './locate';

export function createActivities(deps: ActivityDeps) {
  const rt = activityRuntime(deps);
  return {
    ...inventoryActivities(rt),
    ...planningActivities(rt),
    ...storageActivities(rt),
    ...migrationActivities(rt),
    ...finishingActivities(rt),
    ...reconcileActivities(rt),
  };
}

export type FerryActivities = ReturnType<typeof createActivities>;
