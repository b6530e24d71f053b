/**
 * The storage plan (before any create task): for each directory of the VM's disks, does the target see the
 * same storage (a probe volume created through the target and looked for from the source, Nova's test-file
 * way, through libvirt only), and if not, which pool on the target receives the copies. A same-name file
 * already on the target is replaced only when the inventory's provenance proves it the leftover of an earlier
 * Ferry migration of this VM and no domain uses it; otherwise the target is refused (the workflow then tries
 * another one).
 */
import { randomUUID } from 'node:crypto';
import type { HostRef, PlannedDirectory, PlannedDisk, RunRef, StoragePlan, VmFacts } from '../common/migration';
import type { DiskRecord, HostRecord } from '../common/types';
import { dirnameOf, isStrictlyInside, normalizeAbsolute, vmPoolName } from '../common/names';
import { LibvirtError } from '../hypervisor/errors';
import type { Hypervisor, PoolInfo } from '../hypervisor/port';
import type { Inventory } from '../inventory/store';
import type { ActivityRuntime } from './context';
import { guarded } from './failures';

export interface PlanStorageInput {
  vm: VmFacts;
  target: HostRef;
  owner: RunRef;
}

/** The plan, or why this target cannot take the VM's storage (nothing was created on it). */
export type PlanStorageResult = { plan: StoragePlan } | { refused: string };

/** Probe volumes and the transient pools that hold them are named so; a crashed attempt's are removed. */
export const PROBE_PREFIX = 'ferry-probe-';
const PROBE_BYTES = 4096;

/** What the probe learned about one directory. */
interface Seen {
  shared: boolean;
  dirExists: boolean;
  /** Names of the files in that directory on the target (empty when it does not exist). */
  files: Set<string>;
}

export function samePath(a: string, b: string): boolean {
  return normalizeAbsolute(a) === normalizeAbsolute(b);
}

/** The pool on `dir`, if the host has one. */
export function poolOn(pools: readonly PoolInfo[], dir: string): PoolInfo | undefined {
  return pools.find((p) => p.path !== '' && samePath(p.path, dir));
}

/** Ferry's per-VM directory layout: the directory sits directly under the host's storage root. */
export function isPerVmDirectory(dir: string, host: Pick<HostRecord, 'storageRoot'> | null): boolean {
  const root = host ? normalizeAbsolute(host.storageRoot) : null;
  return root !== null && dirnameOf(normalizeAbsolute(dir) ?? dir) === root;
}

export function planningActivities({ inventory, hv }: ActivityRuntime) {
  return {
    /** Step 3's storage check of a claimed target: each disk shared or copied, and where copies go. */
    async planStorage(input: PlanStorageInput): Promise<PlanStorageResult> {
      return guarded(async () => {
        const { vm, target, owner } = input;
        const [targetHost, sourceDom, targetDomains] = await Promise.all([
          inventory.getHost(target.name),
          hv.getDomain(vm.source.uri, vm.uuid),
          hv.listDomains(target.uri),
        ]);
        const [targetPools, sourcePools] = await Promise.all([clearStaleProbes(hv, target.uri), clearStaleProbes(hv, vm.source.uri)]);
        const inUse = new Set(targetDomains.flatMap((d) => d.files));
        const backing = new Map((sourceDom?.disks ?? []).map((d) => [d.target, d.backingFile !== undefined]));
        const disks: PlannedDisk[] = [];
        const directories: PlannedDirectory[] = [];

        for (const [dir, inDir] of byDirectory(vm.disks)) {
          const perVm = isPerVmDirectory(dir, targetHost);
          const existing = poolOn(targetPools, dir);
          const foreignPerVmPool = perVm && existing !== undefined && existing.name !== vmPoolName(vm.uuid);
          // Another owner's pool on Ferry's per-VM directory: not probed, not used; the directory task refuses it.
          const seen = foreignPerVmPool
            ? { shared: false, dirExists: true, files: new Set<string>() }
            : await probe(hv, vm.source, target, dir, targetPools, sourcePools, owner);
          if (seen.shared) {
            for (const d of inDir) disks.push(planned(d, 'shared', null, false, backing));
            continue;
          }
          const place = choosePool(dir, directories.length, existing, foreignPerVmPool, vm, target, targetHost);
          if ('refused' in place) return place;
          directories.push({ path: dir, pool: place.pool, poolExists: place.poolExists, dirExists: seen.dirExists });
          for (const d of inDir) {
            const taken = seen.files.has(d.name);
            if (taken) {
              const why = await leftoverRefusal(inventory, d, vm, target, inUse);
              if (why !== null) return { refused: why };
            }
            disks.push(planned(d, 'copied', place.pool, taken, backing));
          }
        }
        return { plan: { disks, directories } };
      });
    },
  };
}

/** The VM's disks by directory, in the order of the disks. */
export function byDirectory(disks: readonly DiskRecord[]): Map<string, DiskRecord[]> {
  const out = new Map<string, DiskRecord[]>();
  for (const d of disks) {
    const dir = dirnameOf(d.path);
    out.set(dir, [...(out.get(dir) ?? []), d]);
  }
  return out;
}

function planned(d: DiskRecord, layout: PlannedDisk['layout'], pool: string | null, replacesLeftover: boolean, backing: Map<string, boolean>): PlannedDisk {
  return {
    target: d.target,
    name: d.name,
    path: d.path,
    layout,
    sizeBytes: d.sizeBytes,
    format: d.format,
    pool,
    replacesLeftover,
    flattened: layout === 'copied' && backing.get(d.target) === true,
  };
}

/** The target pool that receives the copies of `dir`'s disks: one already on that directory, or Ferry's own. */
function choosePool(
  dir: string,
  index: number,
  existing: PoolInfo | undefined,
  foreignPerVmPool: boolean,
  vm: VmFacts,
  target: HostRef,
  targetHost: HostRecord | null,
): { pool: string; poolExists: boolean } | { refused: string } {
  const ours = index === 0 ? vmPoolName(vm.uuid) : `${vmPoolName(vm.uuid)}-${index}`;
  if (existing !== undefined && !foreignPerVmPool) return { pool: existing.name, poolExists: true };
  if (existing !== undefined) return { pool: ours, poolExists: false }; // refused by the directory task, as it always was
  const root = targetHost?.storageRoot;
  if (root !== undefined && !isStrictlyInside(dir, root)) {
    return {
      refused:
        `${target.name} has no libvirt pool on ${dir} and ${dir} is outside its storage root ${root}: Ferry creates ` +
        `directories only under the storage root; define a pool on ${dir} on ${target.name} (virsh pool-define-as), or choose another target`,
    };
  }
  return { pool: ours, poolExists: false };
}

/**
 * A file named like the disk already sits on the target. It may be replaced only if the inventory records it as
 * storage a Ferry migration of this VM created (and did not remove), and no domain on the target uses it.
 */
async function leftoverRefusal(inventory: Inventory, d: DiskRecord, vm: VmFacts, target: HostRef, inUse: Set<string>): Promise<string | null> {
  const records = await inventory.listArtifacts({ host: target.name, kind: 'volume', path: d.path });
  const ours = records.some((r) => r.vmUuid === vm.uuid);
  if (ours && !inUse.has(d.path)) return null;
  const why = ours ? 'a domain there uses it' : `Ferry did not create it (no record of a migration of ${vm.name} leaving it there)`;
  return `${target.name} already has ${d.path}, and ${why}: it is left untouched; move or remove it on ${target.name}, or migrate ${vm.name} elsewhere`;
}

/** Removes probe pools and volumes a crashed attempt left; returns the host's pools without them. */
async function clearStaleProbes(hv: Hypervisor, uri: string): Promise<PoolInfo[]> {
  const pools = await hv.listPools(uri);
  for (const p of pools) if (p.name.startsWith(PROBE_PREFIX)) await hv.stopPool(uri, p.name); // transient: gone once stopped
  return pools.filter((p) => !p.name.startsWith(PROBE_PREFIX));
}

/**
 * Is `dir` the same storage on both hosts? A probe volume created in it through the target, then looked for
 * in it from the source (after a refresh), then deleted. Transient pools are used where a host has no pool
 * on the directory (a missing directory on the target: not shared, nothing to probe).
 */
async function probe(
  hv: Hypervisor,
  source: HostRef,
  target: HostRef,
  dir: string,
  targetPools: readonly PoolInfo[],
  sourcePools: readonly PoolInfo[],
  owner: RunRef,
): Promise<Seen> {
  const tag = `${PROBE_PREFIX}${owner.runId.replace(/[^A-Za-z0-9]/g, '').slice(0, 12)}`;
  const transient: { uri: string; pool: string }[] = [];
  const usePool = async (uri: string, pools: readonly PoolInfo[]): Promise<string | null> => {
    const existing = poolOn(pools, dir);
    if (existing) {
      if (!existing.active) await hv.startPool(uri, existing.name, { autostart: false });
      return existing.name;
    }
    const name = `${tag}-${randomUUID().slice(0, 8)}`;
    try {
      await hv.createTransientPool(uri, name, dir);
    } catch (err) {
      if (err instanceof LibvirtError && err.kind === 'not-found') return null; // no such directory on that host
      throw err;
    }
    transient.push({ uri, pool: name });
    return name;
  };
  try {
    const tPool = await usePool(target.uri, targetPools);
    if (tPool === null) return { shared: false, dirExists: false, files: new Set() };
    const files = new Set((await hv.listVolumes(target.uri, tPool)).map((v) => v.name));
    for (const stale of [...files].filter((f) => f.startsWith(tag))) {
      await hv.deleteVolume(target.uri, tPool, stale);
      files.delete(stale);
    }
    const probeName = `${tag}-${randomUUID().slice(0, 8)}.raw`;
    await hv.recreateVolume(target.uri, tPool, probeName, PROBE_BYTES, 'raw');
    try {
      const sPool = await usePool(source.uri, sourcePools);
      const shared = sPool !== null && (await hv.listVolumes(source.uri, sPool)).some((v) => v.name === probeName);
      return { shared, dirExists: true, files };
    } finally {
      await hv.deleteVolume(target.uri, tPool, probeName);
    }
  } finally {
    for (const t of transient) await hv.stopPool(t.uri, t.pool);
  }
}
