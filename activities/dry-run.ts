/**
 * What `ferry migrate --dry-run` asks beyond the migration's own checks: the target placement would choose now
 * (nothing claimed), and an estimate of the copy — from the bandwidth limit or the rate this fleet's recent
 * migrations reached, and for a running VM QEMU's measurement of how fast the guest dirties its memory.
 */
import type { CopyEstimate, HostRef, MigrationMode, VmFacts } from '../common/migration';
import type { MigrationLimits } from '../inventory/store';
import { PlacementError } from '../inventory/placement';
import type { ActivityRuntime } from './context';
import { guarded } from './failures';
import { hostRef } from './locate';

export interface PreviewPlacementInput {
  vm: VmFacts;
  workflowId: string;
  targetHost: string | null;
  limits: MigrationLimits;
  excludeHosts: string[];
}

export type PreviewPlacementResult = { target: HostRef; rejected: { host: string; reason: string }[] } | { refused: string; rejected: { host: string; reason: string }[] };

export interface EstimateCopyInput {
  vm: VmFacts;
  mode: MigrationMode;
  copyBytes: number;
  bandwidthMiBps: number | null;
}

/** How many recent successful migrations the observed rate is taken from. */
const HISTORY_SAMPLE = 10;
/** QEMU's dirty-rate measurement period. */
const DIRTY_RATE_SECONDS = 1;
const MiB = 1024 * 1024;

export function dryRunActivities({ inventory, hv }: ActivityRuntime) {
  return {
    async previewPlacement(input: PreviewPlacementInput): Promise<PreviewPlacementResult> {
      return guarded(async () => {
        const { vm } = input;
        try {
          const placed = await inventory.previewTarget({
            vmUuid: vm.uuid,
            sourceHost: vm.source.name,
            workflowId: input.workflowId,
            memoryMiB: vm.memoryMiB,
            vcpus: vm.vcpus,
            storageBytes: vm.disks.reduce((s, d) => s + d.sizeBytes, 0),
            ...(input.targetHost !== null ? { fixedTarget: input.targetHost } : {}),
            ...(input.excludeHosts.length ? { excludeHosts: input.excludeHosts } : {}),
            limits: input.limits,
          });
          return { target: hostRef(placed.host), rejected: placed.rejected };
        } catch (err) {
          if (err instanceof PlacementError) return { refused: err.message, rejected: err.rejected };
          throw err;
        }
      });
    },

    async estimateCopy(input: EstimateCopyInput): Promise<CopyEstimate> {
      return guarded(async () => {
        const { vm, mode, copyBytes } = input;
        let bandwidth = input.bandwidthMiBps;
        let from: CopyEstimate['bandwidthFrom'] = bandwidth !== null ? 'request' : null;
        if (bandwidth === null) {
          bandwidth = await observedRate(inventory);
          if (bandwidth !== null) from = 'history';
        }
        const dirty = mode === 'live' && vm.state !== 'paused' ? await hv.measureDirtyRate(vm.source.uri, vm.uuid, DIRTY_RATE_SECONDS) : mode === 'live' ? 0 : null;
        const copySeconds = bandwidth !== null && bandwidth > 0 ? Math.round((copyBytes / (bandwidth * MiB)) * 10) / 10 : null;
        const converge = mode === 'cold' || dirty === null || bandwidth === null ? null : dirty < bandwidth;
        const note =
          mode === 'cold'
            ? 'cold: the VM is stopped, its disks are streamed and nothing changes while they are'
            : vm.state === 'paused'
              ? 'paused: the guest dirties no memory, the copy converges'
              : dirty === null
                ? 'the guest dirty rate could not be measured'
                : bandwidth === null
                  ? `the guest dirties ${dirty} MiB/s; no bandwidth known to compare it with (pass --bandwidth)`
                  : converge
                    ? `the guest dirties ${dirty} MiB/s, below ${bandwidth} MiB/s: each memory pass is shorter than the last`
                    : `the guest dirties ${dirty} MiB/s, not below ${bandwidth} MiB/s: memory may not converge (consider --auto-converge or --post-copy)`;
        return { copyBytes, bandwidthMiBps: bandwidth, bandwidthFrom: from, copySeconds, dirtyRateMiBps: dirty, likelyToConverge: converge, note };
      });
    },
  };
}

/** MiB/s the last successful migrations moved (bytes over their migrating phase); null without history. */
async function observedRate(inventory: ActivityRuntime['inventory']): Promise<number | null> {
  const rows = (await inventory.listHistory({ limit: 50 })).filter((h) => h.result === 'migrated' && (h.bytesTransferred ?? 0) > 0 && (h.phaseMs['migrating'] ?? 0) > 0);
  const recent = rows.slice(0, HISTORY_SAMPLE);
  if (recent.length === 0) return null;
  const bytes = recent.reduce((s, h) => s + (h.bytesTransferred ?? 0), 0);
  const ms = recent.reduce((s, h) => s + (h.phaseMs['migrating'] ?? 0), 0);
  return Math.round((bytes / MiB / (ms / 1000)) * 10) / 10;
}
