/**
 * What `ferry reconcile` (the `reconcile` workflow, and the inventory-sync schedule before each sync) reports:
 * per migration whose workflow closed without finishing or compensating, each action taken (or, in a dry run,
 * that would be taken). The logic is activities/reconcile.ts.
 */

export interface ReconcileOptions {
  /** Only migrations from or to these hosts (all when absent). */
  hosts?: string[];
  /** Report what would be done; change nothing. */
  dryRun?: boolean;
}

export interface ReconcileAction {
  /** abort-job: a libvirt job no workflow owns; set-vm: the inventory's record; remove: one provenance record undone. */
  action: 'abort-job' | 'set-vm' | 'remove' | 'clean-source' | 'keep' | 'release-claim';
  detail: string;
  /** False in a dry run, when the action failed (`error`), or when there was nothing left to do. */
  done: boolean;
  error?: string;
}

export interface ReconciledVm {
  vm: string;
  vmUuid: string;
  workflowId: string;
  /** Temporal's status of that workflow: TERMINATED, TIMED_OUT, …, NOT_FOUND (never RUNNING). */
  workflow: string;
  source: string;
  target: string | null;
  /** Where libvirt says the VM runs (`source`, `target`, `nowhere`, `split`), `unknown` when a host did not answer. */
  location: string;
  actions: ReconcileAction[];
}
