/** Shared by the concurrency test and its child processes (inventory-claim-child.ts). */
import type { MigrationLimits } from '../../common/limits';
import { PlacementError } from '../../inventory/placement';
import type { Inventory } from '../../inventory/store';

export interface ClaimOutcome {
  vm: string;
  host: string | null;
  code: string | null;
}

/** One VM to claim a target for, from its source host. */
export interface ClaimAsk {
  vm: string;
  sourceHost: string;
}

export type ParentMessage = { type: 'claim'; asks: ClaimAsk[]; limits?: MigrationLimits } | { type: 'exit' };
export type ChildMessage = { type: 'ready' } | { type: 'result'; results: ClaimOutcome[] };

/** Claims a target for every VM concurrently (512 MiB, 1 vCPU, 1 GiB each); one outcome per VM. */
export async function claimAll(inv: Inventory, asks: readonly ClaimAsk[], limits?: MigrationLimits): Promise<ClaimOutcome[]> {
  return Promise.all(
    asks.map(async ({ vm, sourceHost }): Promise<ClaimOutcome> => {
      try {
        const { claim } = await inv.claimTarget({
          vmUuid: vm,
          sourceHost,
          workflowId: `wf-${vm}`,
          memoryMiB: 512,
          vcpus: 1,
          storageBytes: 1024 ** 3,
          ...(limits ? { limits } : {}),
        });
        return { vm, host: claim.host, code: null };
      } catch (err) {
        if (err instanceof PlacementError) return { vm, host: null, code: err.code };
        throw err;
      }
    }),
  );
}
