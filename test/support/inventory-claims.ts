/** Shared by the concurrency test and its child processes (inventory-claim-child.ts). */
import { PlacementError } from '../../inventory/placement';
import type { Inventory } from '../../inventory/store';

export interface ClaimOutcome {
  vm: string;
  host: string | null;
  code: string | null;
}

export type ParentMessage = { type: 'claim'; vms: string[]; sourceHost: string } | { type: 'exit' };
export type ChildMessage = { type: 'ready' } | { type: 'result'; results: ClaimOutcome[] };

/** Claims every VM concurrently; one outcome per VM. Shared with the in-process variant of the test. */
export async function claimAll(inv: Inventory, vms: readonly string[], sourceHost: string): Promise<ClaimOutcome[]> {
  return Promise.all(
    vms.map(async (vm): Promise<ClaimOutcome> => {
      try {
        const { claim } = await inv.claimTarget({
          vmUuid: vm,
          sourceHost,
          workflowId: `wf-${vm}`,
          memoryMiB: 512,
          vcpus: 1,
          storageBytes: 1024 ** 3,
        });
        return { vm, host: claim.host, code: null };
      } catch (err) {
        if (err instanceof PlacementError) return { vm, host: null, code: err.code };
        throw err;
      }
    }),
  );
}
