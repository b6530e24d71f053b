/**
 * syncInventory: `ferry inventory sync` as a workflow, so a Temporal Schedule keeps capacity current; it first
 * reconciles migrations whose workflow closed from outside (terminated), so nothing stays stuck.
 * reconcile: `ferry reconcile` — the same reconciliation on its own (with --dry-run, --host).
 */
import { log, patched } from '@temporalio/workflow';
import type { ReconciledVm, ReconcileOptions } from '../common/reconcile';
import type { SyncResult } from '../inventory/store';
import { inventorySync } from './proxies';

/** Patch: syncInventory reconciles before it syncs (histories recorded before it did not). */
export const SYNC_RECONCILES = 'sync-reconciles';

export async function syncInventory(input: { hosts?: string[] } = {}): Promise<SyncResult[]> {
  const hosts = input?.hosts ? { hosts: input.hosts } : {};
  if (patched(SYNC_RECONCILES)) {
    try {
      const done = await inventorySync.reconcileMigrations(hosts);
      for (const r of done) log.info(`reconciled ${r.vm} (${r.workflowId} ${r.workflow}): ${r.actions.map((a) => `${a.action}${a.done ? '' : ' (not done)'}: ${a.detail}`).join('; ')}`);
    } catch (err) {
      // The sync still runs: capacity and VM lists must stay current even when reconciliation cannot.
      log.warn(`reconciliation failed, syncing anyway: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return inventorySync.syncHosts(hosts);
}

export async function reconcile(input: ReconcileOptions = {}): Promise<ReconciledVm[]> {
  return inventorySync.reconcileMigrations({ ...(input?.hosts ? { hosts: input.hosts } : {}), ...(input?.dryRun ? { dryRun: true } : {}) });
}
