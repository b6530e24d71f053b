/**
 * Inventory activities: reading the VM (step 2), claiming a target (step 3), putting the VM's record back,
 * the evacuation's host bookkeeping and `inventory sync`.
 */
import { Context } from '@temporalio/activity';
import type { HostRef, VmFacts } from '../common/migration';
import type { HostState, VmState } from '../common/types';
import { FailureType } from '../common/failures';
import type { MigrationLimits, SyncResult } from '../inventory/store';
import { syncInventory } from '../inventory/sync';
import { PlacementError } from '../inventory/placement';
import type { ActivityRuntime } from './context';
import {
  checkDiskPaths,
  definitionPersists,
  disksMatch,
  domainMatches,
  domainPresent,
  sourceHostKnown,
  vmKnown,
  vmMovable,
  vmNamed,
  vmOnSource,
  type VmRef,
} from './checks';
import { guarded, nonRetryable } from './failures';
import { hostRef } from './locate';

export interface ClaimTargetInput {
  vm: VmFacts;
  workflowId: string;
  targetHost: string | null;
  limits: MigrationLimits;
  /** Hosts this migration's storage check refused: not chosen again. */
  excludeHosts?: string[];
}

/** A claimed target, or why the migration has to wait for a slot (a limit, or every fitting host busy). */
export type ClaimTargetResult = { target: HostRef } | { waiting: string };

export type VmSummary = { uuid: string; name: string; state: VmState };

export function inventoryActivities({ inventory, hv }: ActivityRuntime) {
  return {
    /** Step 2: the VM's disks from the inventory, cross-checked with libvirt on the source. */
    async readVm(input: VmRef): Promise<VmFacts> {
      return guarded(async () => {
        const host = sourceHostKnown(input, await inventory.getHost(input.sourceHost));
        const vm = vmKnown(input, await inventory.getVm(input.vmUuid));
        vmNamed(input, vm);
        vmOnSource(vm, host);
        vmMovable(vm, host, await inventory.getClaim(vm.uuid), Context.current().info.workflowExecution?.workflowId ?? '');
        const dom = domainPresent(vm, host, await hv.getDomain(host.uri, vm.uuid));
        const state = domainMatches(vm, host, dom);
        definitionPersists(vm, host, dom, state);
        disksMatch(vm, host, dom);
        const storageDir = checkDiskPaths(vm.name, vm.disks);
        const diskBytes = vm.disks.reduce((s, d) => s + d.sizeBytes, 0);
        return {
          uuid: vm.uuid,
          name: vm.name,
          state,
          memoryMiB: vm.memoryMiB,
          vcpus: vm.vcpus,
          source: hostRef(host),
          disks: vm.disks,
          storageDir,
          dataBytes: diskBytes + vm.memoryMiB * 1024 * 1024,
        };
      });
    },

    /** Step 3: filter, score and claim a target; the VM becomes `migrating` in the same transaction. */
    async claimTarget(input: ClaimTargetInput): Promise<ClaimTargetResult> {
      return guarded(async () => {
        const placed = await inventory
          .claimTarget({
            vmUuid: input.vm.uuid,
            sourceHost: input.vm.source.name,
            workflowId: input.workflowId,
            memoryMiB: input.vm.memoryMiB,
            vcpus: input.vm.vcpus,
            storageBytes: input.vm.disks.reduce((s, d) => s + d.sizeBytes, 0),
            ...(input.targetHost !== null ? { fixedTarget: input.targetHost } : {}),
            ...(input.excludeHosts?.length ? { excludeHosts: input.excludeHosts } : {}),
            limits: input.limits,
          })
          .catch((err: unknown) => {
            if (err instanceof PlacementError && err.code === 'no-slot') return { waiting: err.message };
            throw err;
          });
        if ('waiting' in placed) return placed;
        const host = await inventory.getHost(placed.claim.host);
        if (host === null) throw new Error(`claimed host ${placed.claim.host} vanished from the inventory`);
        return { target: hostRef(host) };
      });
    },

    /** Puts the VM's inventory record where libvirt says it is (compensation does this first). */
    async setVmPlacement(input: { vmUuid: string; host: string; state: VmState }): Promise<void> {
      return guarded(() => inventory.setVmPlacement(input.vmUuid, input.host, input.state));
    },

    async releaseClaim(input: { vmUuid: string; workflowId: string }): Promise<void> {
      return guarded(() => inventory.releaseClaim(input.vmUuid, input.workflowId));
    },

    /**
     * The claim step did not answer: if it claimed a target for this workflow after all, put the VM back to
     * `running` on its source and drop the claim. A claim of another workflow is never touched.
     */
    async abandonClaim(input: { vmUuid: string; workflowId: string; sourceHost: string; state?: VmState }): Promise<void> {
      return guarded(async () => {
        const claim = await inventory.getClaim(input.vmUuid);
        if (claim === null || claim.workflowId !== input.workflowId) return;
        await inventory.setVmPlacement(input.vmUuid, input.sourceHost, input.state ?? 'running');
        await inventory.releaseClaim(input.vmUuid, input.workflowId);
      });
    },

    /**
     * Puts the host in maintenance (so it is never chosen as a target) and lists its VMs. Idempotent;
     * `previousState` is the state the host had before this call (a retry whose first answer was lost sees
     * `maintenance`, so a cancel that restores the host state then leaves it in maintenance).
     */
    async beginEvacuation(input: { host: string }): Promise<{ host: HostRef & { state: HostState }; previousState: HostState; vms: VmSummary[] }> {
      return guarded(async () => {
        const host = await inventory.getHost(input.host);
        if (host === null) {
          throw nonRetryable(FailureType.InvalidInput, `host "${input.host}" is not in the inventory: check the name or address (\`ferry hosts list\`)`);
        }
        if (host.state !== 'maintenance') await inventory.setHostState(host.name, 'maintenance');
        const vms = await inventory.listVms({ host: host.name });
        return { host: { ...hostRef(host), state: 'maintenance' }, previousState: host.state, vms: vms.map(summary) };
      });
    },

    async setHostState(input: { host: string; state: HostState }): Promise<void> {
      return guarded(async () => {
        await inventory.setHostState(input.host, input.state);
      });
    },

    /** VMs the inventory still has on a host. */
    async vmsOnHost(input: { host: string }): Promise<VmSummary[]> {
      return guarded(async () => (await inventory.listVms({ host: input.host })).map(summary));
    },

    /** `ferry inventory sync` as an activity (run by the syncInventory workflow, e.g. on a schedule). */
    async syncHosts(input: { hosts?: string[] }): Promise<SyncResult[]> {
      return guarded(() => syncInventory(inventory, hv, input.hosts ? { hosts: input.hosts } : {}));
    },
  };
}

function summary(v: { uuid: string; name: string; state: VmState }): VmSummary {
  return { uuid: v.uuid, name: v.name, state: v.state };
}
