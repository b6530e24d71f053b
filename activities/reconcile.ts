/**
 * Reconciliation: what a migration left behind when its workflow closed without finishing or compensating —
 * terminated from the Web UI or `temporal workflow terminate`, or closed by a workflow timeout. Such a run
 * leaves a target claim (the host stays "receiving" for ever) and the VM `migrating`.
 *
 * For every claim whose workflow is closed, and every VM `migrating` without a running workflow: ask libvirt
 * where the VM runs (after aborting a migration job nobody owns any more), put the inventory right, remove what
 * that workflow recorded as created on the target — with compensation's rules (storage.ts: only what its
 * provenance records prove, never a file a domain uses, a directory only when empty) — and release the claim.
 * `ferry reconcile` runs it; so does the syncInventory workflow (the inventory-sync schedule).
 */
import { vmStateOfDomain, type LocateResult, type HostRef } from '../common/migration';
import type { ReconcileAction, ReconciledVm, ReconcileOptions } from '../common/reconcile';
import type { Claim, HostRecord, StorageArtifactRecord, VmRecord, VmState } from '../common/types';
import { migrationWorkflowId } from '../common/names';
import { FailureType } from '../common/failures';
import type { Hypervisor } from '../hypervisor/port';
import type { Inventory } from '../inventory/store';
import type { ActivityRuntime } from './context';
import { cleanSourceStorage } from './finishing';
import { guarded, nonRetryable } from './failures';
import { abortAndLocate, hostRef, isRunningOrPaused, locate } from './locate';
import { undoRecord } from './storage';

/** Temporal's status of a workflow ID's latest run (`RUNNING`, `TERMINATED`, …), `NOT_FOUND` when it has none. */
export type WorkflowStatusOf = (workflowId: string) => Promise<string>;

interface Stuck {
  vm: VmRecord;
  claim: Claim | null;
  workflowId: string;
  workflow: string;
}

const OPEN = new Set(['RUNNING', 'CONTINUED_AS_NEW']);

/** Finds the migrations left behind and reconciles each one; returns what was (or would be) done, per VM. */
export async function reconcileMigrations(inventory: Inventory, hv: Hypervisor, statusOf: WorkflowStatusOf, opts: ReconcileOptions = {}): Promise<ReconciledVm[]> {
  const out: ReconciledVm[] = [];
  for (const s of await leftBehind(inventory, statusOf, opts.hosts)) {
    // Re-read after asking Temporal: a claim released meanwhile by a run that just finished is not stale.
    const claim = await inventory.getClaim(s.vm.uuid);
    const vm = await inventory.getVm(s.vm.uuid);
    if (vm === null || !sameClaim(claim, s.claim) || (claim === null && vm.state !== 'migrating')) continue;
    out.push(await reconcileOne(inventory, hv, { ...s, vm, claim }, opts.dryRun === true));
  }
  return out;
}

/** Claims whose workflow is closed, and `migrating` VMs without a running workflow. */
async function leftBehind(inventory: Inventory, statusOf: WorkflowStatusOf, hosts?: readonly string[]): Promise<Stuck[]> {
  const involves = (...names: string[]) => hosts === undefined || names.some((n) => hosts.includes(n));
  const [claims, vms] = await Promise.all([inventory.listClaims(), inventory.listVms()]);
  const byUuid = new Map(vms.map((v) => [v.uuid, v]));
  const candidates = new Map<string, Omit<Stuck, 'workflow'>>();
  for (const claim of claims) {
    const vm = byUuid.get(claim.vmUuid);
    if (vm && involves(claim.host, claim.sourceHost)) candidates.set(vm.uuid, { vm, claim, workflowId: claim.workflowId });
  }
  for (const vm of vms) {
    if (vm.state !== 'migrating' || candidates.has(vm.uuid) || claims.some((c) => c.vmUuid === vm.uuid)) continue;
    if (involves(vm.host)) candidates.set(vm.uuid, { vm, claim: null, workflowId: migrationWorkflowId(vm.uuid) });
  }
  const stuck: Stuck[] = [];
  for (const c of candidates.values()) {
    const workflow = await statusOf(c.workflowId);
    if (!OPEN.has(workflow)) stuck.push({ ...c, workflow });
  }
  return stuck;
}

function sameClaim(a: Claim | null, b: Claim | null): boolean {
  return a === null || b === null ? a === b : a.workflowId === b.workflowId && a.createdAt === b.createdAt && a.host === b.host;
}

async function reconcileOne(inventory: Inventory, hv: Hypervisor, s: Stuck, dryRun: boolean): Promise<ReconciledVm> {
  const { vm, claim, workflowId } = s;
  const sourceName = claim?.sourceHost ?? vm.host;
  const records = await inventory.listArtifacts({ vmUuid: vm.uuid, workflowId });
  const targetName = claim?.host ?? records.find((r) => r.host !== sourceName)?.host ?? null;
  const result: ReconciledVm = { vm: vm.name, vmUuid: vm.uuid, workflowId, workflow: s.workflow, source: sourceName, target: targetName, location: 'unknown', actions: [] };
  const act = async (action: ReconcileAction['action'], detail: string, body: () => Promise<unknown>): Promise<boolean> => {
    if (dryRun) {
      result.actions.push({ action, detail, done: false });
      return true;
    }
    try {
      const did = await body();
      result.actions.push({ action, detail, done: did !== false });
      return true;
    } catch (err) {
      result.actions.push({ action, detail, done: false, error: rootMessage(err) });
      return false;
    }
  };

  let source: HostRef;
  let target: HostRef | null;
  let where: LocateResult;
  try {
    source = await knownHost(inventory, sourceName);
    target = targetName === null ? null : await knownHost(inventory, targetName);
    where = await whereVmRuns(hv, source, target, vm.uuid, dryRun, (d) => result.actions.push({ action: 'abort-job', detail: d, done: !dryRun }));
  } catch (err) {
    result.actions.push({ action: 'keep', detail: `libvirt could not say where ${vm.name} runs: nothing changed; run \`ferry reconcile\` again when the hosts answer`, done: false, error: rootMessage(err) });
    return result;
  }
  result.location = where.location;
  const placement = placementOf(where, sourceName, targetName);
  await act('set-vm', `${vm.name} ${placement.state} on ${placement.host} in the inventory`, () => inventory.setVmPlacement(vm.uuid, placement.host, placement.state));

  const onTarget = target === null ? [] : records.filter((r) => r.host === target.name);
  if (where.location === 'source' && target !== null) await removeRecorded(inventory, hv, target, onTarget, act);
  else if (where.location === 'target' && target !== null) {
    const copied = onTarget.filter((r) => r.kind === 'volume').map((r) => r.path);
    await act('clean-source', `the copied disks of ${vm.name} on ${sourceName}: ${copied.join(', ') || 'none'}`, async () => {
      const cleaned = await cleanSourceStorage(inventory, hv, { source, vmUuid: vm.uuid, disks: vm.disks, copied });
      if (cleaned.warnings.length > 0) throw new Error(cleaned.warnings.join('; '));
      return cleaned.removed.length > 0;
    });
  } else if (onTarget.length > 0) {
    result.actions.push({
      action: 'keep',
      detail: `${vm.name} runs ${where.location === 'split' ? 'split between the hosts (post-copy failed)' : 'nowhere'}: its storage on ${targetName} is kept; recover it by hand, then run \`ferry inventory sync\``,
      done: true,
    });
  }
  if (claim !== null) await act('release-claim', `the claim of ${workflowId} on ${claim.host}`, () => inventory.releaseClaim(vm.uuid, claim.workflowId));
  return result;
}

/**
 * The records of that workflow on the target, newest first, each undone with the run that recorded it (a pool
 * and the directory under it are one action, as removeRunDirectory removes both). Stops at the first refusal.
 */
async function removeRecorded(
  inventory: Inventory,
  hv: Hypervisor,
  target: HostRef,
  records: readonly StorageArtifactRecord[],
  act: (action: 'remove', detail: string, body: () => Promise<unknown>) => Promise<boolean>,
): Promise<void> {
  const handled = new Set<string>();
  for (const r of records) {
    const key = `${r.runId}|${r.path}`;
    if (r.kind !== 'volume' && handled.has(key)) continue;
    if (r.kind !== 'volume') handled.add(key);
    const withDir = r.kind === 'pool' && records.some((d) => d.kind === 'directory' && `${d.runId}|${d.path}` === key);
    const what = r.kind === 'pool' ? `pool ${r.pool}${withDir ? ' and directory' : ' on'} ${r.path}` : `${r.kind} ${r.path}`;
    const run = { workflowId: r.workflowId, runId: r.runId };
    const ok = await act('remove', `${what} on ${target.name} (run ${r.runId}, ${r.state})`, () => undoRecord({ inventory, hv, run }, target, r));
    if (!ok) break; // as compensation: leave the rest recorded; a later migration of the VM there replaces it
  }
}

/** Where the VM runs, after aborting a job its closed workflow left running (not in a dry run). */
async function whereVmRuns(hv: Hypervisor, source: HostRef, target: HostRef | null, uuid: string, dryRun: boolean, aborting: (detail: string) => void): Promise<LocateResult> {
  if (target === null) {
    const dom = await hv.getDomain(source.uri, uuid);
    return { location: isRunningOrPaused(dom) ? 'source' : 'nowhere', sourceState: dom?.state ?? null, targetState: null };
  }
  const job = await hv.jobInfo(source.uri, uuid).catch(() => null);
  if (job === null || job.type === 'none') return locate(hv, source, target, uuid);
  aborting(`the migration job of ${uuid} on ${source.name} (no workflow owns it any more)`);
  return dryRun ? locate(hv, source, target, uuid) : abortAndLocate(hv, source, target, uuid);
}

function placementOf(where: LocateResult, source: string, target: string | null): { host: string; state: VmState } {
  // The state libvirt reports there: a paused VM stays paused, a stopped one (cold migration) stopped.
  if (where.location === 'target' && target !== null) return { host: target, state: knownState(where.targetState) };
  if (where.location === 'source') return { host: source, state: knownState(where.sourceState) };
  return { host: source, state: 'unknown' };
}

function knownState(domainState: string | null): VmState {
  const s = vmStateOfDomain(domainState);
  return s === 'unknown' ? 'running' : s;
}

async function knownHost(inventory: Inventory, name: string): Promise<HostRef> {
  const h: HostRecord | null = await inventory.getHost(name);
  if (h === null) throw new Error(`host ${name} of a left-behind migration is not in the inventory: add it back (\`ferry hosts add\`) or fix the VM's record by hand`);
  return hostRef(h);
}

function rootMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function reconcileActivities({ inventory, hv, workflowStatus }: ActivityRuntime) {
  return {
    /** `ferry reconcile` as an activity (the syncInventory workflow runs it before syncing). */
    async reconcileMigrations(input: ReconcileOptions = {}): Promise<ReconciledVm[]> {
      return guarded(async () => {
        if (workflowStatus === undefined) {
          throw nonRetryable(FailureType.InvalidInput, 'reconcile needs a Temporal client to ask which workflows are closed: create the worker with `client`');
        }
        return reconcileMigrations(inventory, hv, workflowStatus, input);
      });
    },
  };
}
