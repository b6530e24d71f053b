/**
 * The storage plan (before any create task): for each directory of the VM's disks, does the target see the
 * same storage (a probe volume created through the target and looked for from the source, Nova's test-file
 * way, through libvirt only), and if not, which pool on the target receives the copies. A same-name file
 * already on the target is replaced only when the inventory's provenance proves it the leftover of an earlier
 * Ferry migration of this VM and no domain uses it; otherwise the target is refused (the workflow then tries
 * another one).
 */
import { randomUUID } from 'node:crypto';
import type { HostRef, PlannedDirectory, PlannedDisk, StoragePlan, VmFacts } from '../common/migration';
import type { DiskRecord, HostRecord } from '../common/types';
import { dirnameOf, isStrictlyInside, normalizeAbsolute, vmPoolName } from '../common/names';
import { byDirectory, ownPoolName } from '../common/storage';
import { LibvirtError } from '../hypervisor/errors';
import type { DomainInfo, Hypervisor, PoolInfo } from '../hypervisor/port';
import { samePath } from '../hypervisor/virsh';
import type { Inventory } from '../inventory/store';
import type { ActivityRuntime } from './context';
import { guarded } from './failures';
import { domainUsing } from './locate';

export interface PlanStorageInput {
  vm: VmFacts;
  target: HostRef;
}

/**
 * The plan; or why this target cannot take the VM's storage (nothing was created on it); or `deferred`: a host
 * did not answer, and each directory task makes its directory's plan as its first step (with its retries).
 */
export type PlanStorageResult = { plan: StoragePlan } | { refused: string } | { deferred: string };

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

/** The pool on `dir`, if the host has one. */
export function poolOn(pools: readonly PoolInfo[], dir: string): PoolInfo | undefined {
  return pools.find((p) => p.path !== '' && samePath(p.path, dir));
}

/** Ferry's per-VM directory layout: the directory sits directly under the host's storage root. */
export function isPerVmDirectory(dir: string, host: Pick<HostRecord, 'storageRoot'> | null): boolean {
  const root = host ? normalizeAbsolute(host.storageRoot) : null;
  return root !== null && dirnameOf(normalizeAbsolute(dir) ?? dir) === root;
}

/** What planning one directory needs to know about both hosts (read once per plan). */
export interface PlanContext {
  vm: VmFacts;
  target: HostRef;
  targetHost: HostRecord | null;
  targetPools: PoolInfo[];
  sourcePools: PoolInfo[];
  /** The target's domains: a file one of them references is never replaced. */
  targetDomains: DomainInfo[];
  /** Per disk target: whether the source image has a backing chain. */
  backing: Map<string, boolean>;
}

/** One directory's plan: its disks (shared or copied) and, for copied ones, the target directory + pool. */
export type DirectoryPlan = { disks: PlannedDisk[]; directory: PlannedDirectory | null } | { refused: string };

export async function planContext(inventory: Inventory, hv: Hypervisor, vm: VmFacts, target: HostRef): Promise<PlanContext> {
  const [targetHost, sourceDom, targetDomains] = await Promise.all([inventory.getHost(target.name), hv.getDomain(vm.source.uri, vm.uuid), hv.listDomains(target.uri)]);
  const tag = probeTag(vm);
  const [targetPools, sourcePools] = await Promise.all([clearStaleProbes(hv, target.uri, tag), clearStaleProbes(hv, vm.source.uri, tag)]);
  return {
    vm,
    target,
    targetHost,
    targetPools,
    sourcePools,
    targetDomains,
    backing: new Map((sourceDom?.disks ?? []).map((d) => [d.target, d.backingFile !== undefined])),
  };
}

/** Plans one directory of the VM's disks (`index`: how many directories with copies came before it). */
export async function planDirectory(inventory: Inventory, hv: Hypervisor, c: PlanContext, dir: string, inDir: DiskRecord[], index: number): Promise<DirectoryPlan> {
  const { vm, target } = c;
  const perVm = isPerVmDirectory(dir, c.targetHost);
  const existing = poolOn(c.targetPools, dir);
  const foreignPerVmPool = perVm && existing !== undefined && existing.name !== vmPoolName(vm.uuid);
  // Another owner's pool on Ferry's per-VM directory: not probed, not used; the directory task refuses it.
  const seen = foreignPerVmPool ? { shared: false, dirExists: true, files: new Set<string>() } : await probe(hv, vm, target, dir, c.targetPools, c.sourcePools);
  if (seen.shared) return { disks: inDir.map((d) => planned(d, 'shared', null, false, c.backing)), directory: null };
  const place = choosePool(dir, index, existing, foreignPerVmPool, vm, target, c.targetHost);
  if ('refused' in place) return place;
  const disks: PlannedDisk[] = [];
  for (const d of inDir) {
    const taken = seen.files.has(d.name);
    if (taken) {
      const why = await leftoverRefusal(inventory, d, vm, target, c.targetDomains);
      if (why !== null) return { refused: why };
    }
    disks.push(planned(d, 'copied', place.pool, taken, c.backing));
  }
  return { disks, directory: { path: dir, pool: place.pool, poolExists: place.poolExists, dirExists: seen.dirExists } };
}

/**
 * The target (or the source) cannot be reached: the storage plan is made by the directory tasks instead, and the
 * pre-flight checks are skipped — the create tasks' threshold decides, with their retries.
 */
export function unreachable(err: unknown): boolean {
  return err instanceof LibvirtError && (err.kind === 'connection' || err.kind === 'timeout' || err.kind === 'busy');
}

export function planningActivities({ inventory, hv }: ActivityRuntime) {
  return {
    /**
     * Step 3's storage check of a claimed target: each disk shared or copied, and where copies go. A host that
     * does not answer defers the plan to the create tasks (`deferred`), whose threshold then applies.
     */
    async planStorage(input: PlanStorageInput): Promise<PlanStorageResult> {
      return guarded(async () => {
        const { vm, target } = input;
        try {
          const c = await planContext(inventory, hv, vm, target);
          const disks: PlannedDisk[] = [];
          const directories: PlannedDirectory[] = [];
          for (const [dir, inDir] of byDirectory(vm.disks)) {
            const one = await planDirectory(inventory, hv, c, dir, inDir, directories.length);
            if ('refused' in one) return one;
            disks.push(...one.disks);
            if (one.directory) directories.push(one.directory);
          }
          return { plan: { disks, directories } };
        } catch (err) {
          if (unreachable(err)) return { deferred: (err as Error).message };
          throw err;
        }
      });
    },
  };
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
  const ours = ownPoolName(vm.uuid, index);
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
async function leftoverRefusal(inventory: Inventory, d: DiskRecord, vm: VmFacts, target: HostRef, targetDomains: DomainInfo[]): Promise<string | null> {
  const records = await inventory.listArtifacts({ host: target.name, kind: 'volume', path: d.path });
  const ours = records.some((r) => r.vmUuid === vm.uuid);
  if (ours && domainUsing(targetDomains, d.path) === undefined) return null;
  const why = ours ? 'a domain there uses it' : `Ferry did not create it (no record of a migration of ${vm.name} leaving it there)`;
  return `${target.name} already has ${d.path}, and ${why}: it is left untouched; move or remove it on ${target.name}, or migrate ${vm.name} elsewhere`;
}

/** Probes are tagged by VM: one migration of a VM runs at a time, so a probe of this tag that is there is a crashed one's. */
export function probeTag(vm: Pick<VmFacts, 'uuid'>): string {
  return `${PROBE_PREFIX}${vm.uuid.slice(0, 8)}`;
}

/**
 * Removes the probe pools a crashed attempt of this VM's migration left (another VM's may be in use right now);
 * returns the host's pools without any probe pool (never "the pool on a directory").
 */
export async function clearStaleProbes(hv: Hypervisor, uri: string, tag: string): Promise<PoolInfo[]> {
  const pools = await hv.listPools(uri);
  for (const p of pools) if (p.name.startsWith(tag)) await hv.stopPool(uri, p.name); // transient: gone once stopped
  return pools.filter((p) => !p.name.startsWith(PROBE_PREFIX));
}

/**
 * Runs `fn` with a pool on `dir` on one host: the host's own pool there (started if inactive, never removed), or
 * a transient one named `<tag>-…` that is removed afterwards. null when the host has no such directory.
 */
export async function withDirectoryPool<T>(
  hv: Hypervisor,
  host: HostRef,
  pools: readonly PoolInfo[],
  dir: string,
  tag: string,
  fn: (pool: string) => Promise<T>,
): Promise<T | null> {
  const existing = poolOn(pools, dir);
  if (existing) {
    if (!existing.active) await hv.startPool(host.uri, existing.name, { autostart: false });
    return fn(existing.name);
  }
  const name = `${tag}-${randomUUID().slice(0, 8)}`;
  try {
    await hv.createTransientPool(host.uri, name, dir);
  } catch (err) {
    if (err instanceof LibvirtError && err.kind === 'not-found') return null; // no such directory on that host
    if (err instanceof LibvirtError && `${err.message} ${err.stderr}`.includes(PROBE_PREFIX)) {
      // Another migration is probing this directory right now (its transient pool holds it): retry shortly.
      throw new Error(`another migration is probing ${dir} on ${host.name}; trying again`);
    }
    throw err;
  }
  try {
    return await fn(name);
  } finally {
    await hv.stopPool(host.uri, name);
  }
}

/**
 * Is `dir` the same storage on both hosts? A probe volume created in it through the target, then looked for
 * in it from the source (after a refresh), then deleted. Transient pools are used where a host has no pool
 * on the directory (a missing directory on the target: not shared, nothing to probe).
 */
async function probe(hv: Hypervisor, vm: VmFacts, target: HostRef, dir: string, targetPools: readonly PoolInfo[], sourcePools: readonly PoolInfo[]): Promise<Seen> {
  const tag = probeTag(vm);
  const seen = await withDirectoryPool(hv, target, targetPools, dir, tag, async (tPool): Promise<Seen> => {
    const files = new Set((await hv.listVolumes(target.uri, tPool)).map((v) => v.name));
    for (const stale of [...files].filter((f) => f.startsWith(tag))) {
      await hv.deleteVolume(target.uri, tPool, stale);
      files.delete(stale);
    }
    const probeName = `${tag}-${randomUUID().slice(0, 8)}.raw`;
    await hv.recreateVolume(target.uri, tPool, probeName, PROBE_BYTES, 'raw');
    try {
      const found = await withDirectoryPool(hv, vm.source, sourcePools, dir, tag, async (sPool) => (await hv.listVolumes(vm.source.uri, sPool)).some((v) => v.name === probeName));
      return { shared: found === true, dirExists: true, files };
    } finally {
      await hv.deleteVolume(target.uri, tPool, probeName);
    }
  });
  return seen ?? { shared: false, dirExists: false, files: new Set() };
}
