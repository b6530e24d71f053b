/**
 * Ferry's activities: thin, idempotent steps over the inventory and the Hypervisor port, by concern.
 * Each one can be retried after a partial success (or a worker crash) and ends in the same place.
 *
 *   inventory.ts   read the VM (step 2), claim a target (3), VM records, evacuation bookkeeping, sync
 *   storage-plan.ts  step 3's storage check: each disk shared (probe) or copied, and where copies go
 *   storage.ts     the create tasks on the target (4) and their undoing, by provenance
 *   preflight.ts   the pre-flight checks of a claimed target (bridges, networks, CPU, machine type, files)
 *   migration.ts   the live migration (5: migration-run.ts), abort, tune, post-copy, where the VM runs
 *   cold-migration.ts  step 5 for a stopped VM: its volumes streamed, its definition moved
 *   finishing.ts   success bookkeeping, source cleanup, capacity, history and metrics (6)
 *   dry-run.ts     what `migrate --dry-run` adds: placement without a claim, the copy estimate
 *   checks.ts      the pre-conditions, as named checks; locate.ts: libvirt's account of a VM
 *   reconcile.ts   what a workflow closed from outside (terminated) left behind: claim, VM state, target storage
 */
import { activityRuntime, type ActivityDeps } from './context';
import { finishingActivities } from './finishing';
import { inventoryActivities } from './inventory';
import { migrationActivities } from './migration';
import { coldMigrationActivities } from './cold-migration';
import { preflightActivities } from './preflight';
import { dryRunActivities } from './dry-run';
import { storageActivities } from './storage';
import { planningActivities } from './storage-plan';
import { reconcileActivities } from './reconcile';

export type { ActivityDeps } from './context';
export type { ClaimTargetInput, ClaimTargetResult } from './inventory';
export type { TargetStorageInput, DirectoryTaskInput, DiskTaskInput } from './storage';
export type { PlanStorageInput, PlanStorageResult } from './storage-plan';
export type { MigrateVmInput } from './migration-run';
export type { ColdMigrateInput } from './cold-migration';
export type { CheckTargetInput } from './preflight';
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
    ...preflightActivities(rt),
    ...migrationActivities(rt),
    ...coldMigrationActivities(rt),
    ...finishingActivities(rt),
    ...dryRunActivities(rt),
    ...reconcileActivities(rt),
  };
}

export type FerryActivities = ReturnType<typeof createActivities>;
