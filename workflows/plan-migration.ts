/**
 * planMigration: `ferry migrate --dry-run`. The same reading of the VM, placement, pre-flight checks and storage
 * plan as liveMigration — and nothing claimed, created or changed (the storage plan's probe volume is created and
 * removed within the check, as in a migration). Up to three candidates are tried, as a migration would; the
 * result names the target, each disk shared or copied, what would be created there, every check's outcome, and
 * an estimate of the copy. A refusal is a result (`wouldMigrate: false`), not a failure.
 */
import { workflowInfo } from '@temporalio/workflow';
import type { CopyEstimate, MigrationPlan, PlannedCandidate, StoragePlan, VmFacts } from '../common/migration';
import { modeOf } from '../common/migration';
import { dataToMove, plannedCreates, reportedDisk } from '../common/storage';
import type { LiveMigrationInput, MigrationRequest } from '../common/validation';
import { transportPolicy } from '../common/security';
import { validatedRequest } from './failures';
import { quick } from './proxies';

/** As many candidates as a migration gives back before it gives up. */
const MAX_CANDIDATES = 3;

export async function planMigration(input: LiveMigrationInput): Promise<MigrationPlan> {
  const request = validatedRequest(input);
  const vm = await quick.readVm({ sourceHost: request.sourceHost, vmName: request.vmName, vmUuid: request.vmUuid });
  const plan: MigrationPlan = {
    wouldMigrate: false,
    reason: null,
    mode: modeOf(vm),
    vm: { name: vm.name, uuid: vm.uuid, state: vm.state ?? null },
    source: vm.source.name,
    target: null,
    candidates: [],
    placementRejected: [],
    disks: [],
    creates: [],
    estimate: null,
  };
  const chosen = await chooseTarget(request, vm, plan);
  if (chosen === null) return plan;
  plan.wouldMigrate = true;
  plan.reason = null;
  plan.target = chosen.target;
  plan.disks = chosen.storage.disks.map((d) => ({ ...reportedDisk(d), sizeBytes: d.sizeBytes }));
  plan.creates = plannedCreates(chosen.storage);
  plan.estimate = await estimate(request, vm, chosen.storage);
  return plan;
}

/** Placement without a claim, then each candidate's checks and storage, as selectTarget does them. */
async function chooseTarget(request: MigrationRequest, vm: VmFacts, plan: MigrationPlan): Promise<{ target: string; storage: StoragePlan } | null> {
  const excludeHosts: string[] = [];
  while (plan.candidates.length < MAX_CANDIDATES) {
    const placed = await quick.previewPlacement({ vm, workflowId: workflowInfo().workflowId, targetHost: request.targetHost, limits: request.limits, excludeHosts });
    if (plan.candidates.length === 0) plan.placementRejected = placed.rejected;
    if ('refused' in placed) {
      plan.reason = placed.refused;
      return null;
    }
    const target = placed.target;
    const candidate: PlannedCandidate = { host: target.name, checks: [], storageRefusal: null, chosen: false };
    plan.candidates.push(candidate);
    excludeHosts.push(target.name);
    const checked = await quick.checkTarget({ vm, target, mode: modeOf(vm), transport: transportPolicy(request) });
    candidate.checks = checked.checks;
    let refusal = checked.deferred ? `${target.name} did not answer: ${checked.deferred}` : checked.refusal;
    if (refusal === null) {
      const storage = await quick.planStorage({ vm, target });
      if ('plan' in storage) {
        candidate.chosen = true;
        return { target: target.name, storage: storage.plan };
      }
      refusal = 'refused' in storage ? storage.refused : `${target.name} did not answer: ${storage.deferred}`;
      candidate.storageRefusal = refusal;
    }
    plan.reason = refusal;
    if (checked.vmWide || request.targetHost !== null) return null;
  }
  return null;
}

async function estimate(request: MigrationRequest, vm: VmFacts, storage: StoragePlan): Promise<CopyEstimate> {
  return quick.estimateCopy({ vm, mode: modeOf(vm), copyBytes: dataToMove(vm, storage), bandwidthMiBps: request.bandwidthMiBps });
}
