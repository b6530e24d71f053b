/**
 * Storage plans in the workflow (sandbox-safe): the plan of a migration started before storage plans existed,
 * what the report shows of a plan, and how much a plan copies.
 */
import { modeOf, type PlannedDisk, type ReportedDisk, type StoragePlan, type VmFacts } from './migration';
import { dirnameOf, normalizeAbsolute, vmPoolName } from './names';
import type { DiskRecord } from './types';

/**
 * What Ferry did before it planned storage: every disk copied into its one per-VM directory, through a pool
 * `ferry-<uuid>` it creates there. The workflow uses it when replaying such a run (patched()).
 */
export function legacyPlan(vm: VmFacts): StoragePlan {
  const pool = vmPoolName(vm.uuid);
  return {
    disks: vm.disks.map((d) => ({ ...d, layout: 'copied', pool, replacesLeftover: false, flattened: false })),
    directories: [{ path: vm.storageDir, pool, poolExists: false, dirExists: false }],
  };
}

export function copiedDisks(plan: StoragePlan): PlannedDisk[] {
  return plan.disks.filter((d) => d.layout === 'copied');
}

/**
 * Bytes the migration moves: the copied disks' virtual sizes (shared disks move nothing) and, live, the guest's
 * memory (a cold migration moves no memory).
 */
export function dataToMove(vm: VmFacts, plan: StoragePlan): number {
  const memory = modeOf(vm) === 'cold' ? 0 : vm.memoryMiB * 1024 * 1024;
  return memory + copiedDisks(plan).reduce((s, d) => s + d.sizeBytes, 0);
}

/** What the create tasks of this plan create on the target, in their order, in words. */
export function plannedCreates(plan: StoragePlan): string[] {
  const out: string[] = [];
  for (const d of plan.directories) {
    if (!d.dirExists) out.push(`directory ${d.path}`);
    if (!d.poolExists) out.push(`pool ${d.pool} on ${d.path}`);
  }
  for (const d of copiedDisks(plan)) out.push(`volume ${d.path} (${d.format}, ${d.sizeBytes} bytes${d.replacesLeftover ? ', replacing a leftover of an earlier Ferry migration of this VM' : ''})`);
  return out;
}

/** A planned disk as the progress query, the report and the dry run show it. */
export function reportedDisk(d: PlannedDisk): ReportedDisk {
  return { target: d.target, path: d.path, layout: d.layout, ...(d.flattened ? { flattened: true } : {}) };
}

export function reportedDisks(plan: StoragePlan): ReportedDisk[] {
  return plan.disks.map(reportedDisk);
}

/** Create-task names per disk: `disk:<name>`, or `disk:<path>` where two disks share a name in different directories. */
export function diskTaskName(d: PlannedDisk, plan: StoragePlan): string {
  const twins = plan.disks.filter((x) => x.layout === 'copied' && x.name === d.name).length;
  return twins > 1 ? `disk:${d.path}` : `disk:${d.name}`;
}

/**
 * How a VM's disks are laid out on its host, for `ferry vms list`: `per-VM directory` (a directory of its own
 * directly under the host's storage root, Ferry's layout), `directory <path>` (e.g. libvirt's flat `default`
 * pool at /var/lib/libvirt/images, holding other VMs' disks too), or `<n> directories`.
 */
export function diskLayout(disks: readonly Pick<DiskRecord, 'path'>[], storageRoot: string): string {
  const dirs = [...new Set(disks.map((d) => dirnameOf(d.path)))];
  const [only] = dirs;
  if (only === undefined) return 'no disks';
  if (dirs.length > 1) return `${dirs.length} directories`;
  return dirnameOf(only) === normalizeAbsolute(storageRoot) ? 'per-VM directory' : `directory ${only}`;
}

/** The VM's disks by directory, in the order of the disks. */
export function byDirectory<D extends Pick<DiskRecord, 'path'>>(disks: readonly D[]): Map<string, D[]> {
  const out = new Map<string, D[]>();
  for (const d of disks) {
    const dir = dirnameOf(d.path);
    out.set(dir, [...(out.get(dir) ?? []), d]);
  }
  return out;
}

/** The pool Ferry defines on the `index`-th directory that receives copies: `ferry-<uuid>`, then `ferry-<uuid>-1`, … */
export function ownPoolName(vmUuid: string, index: number): string {
  return index === 0 ? vmPoolName(vmUuid) : `${vmPoolName(vmUuid)}-${index}`;
}
