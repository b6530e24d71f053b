/**
 * TEST DOUBLE: an in-memory model of a few libvirt hosts (domains, dir pools, volumes, migration jobs)
 * behind the Hypervisor port, with fault injection. Only for workflow-logic tests; the real lab tests use
 * VirshHypervisor against real libvirt/QEMU.
 */
import type { DiskFormat } from '../../common/types';
import { LibvirtError, type LibvirtErrorKind } from '../../hypervisor/errors';
import {
  emptyJobInfo,
  type CopyVolumeOptions,
  type DiskCopyJob,
  type DomainInfo,
  type DomainNeeds,
  type HostCapacity,
  type Hypervisor,
  type JobInfo,
  type MigrateOptions,
  type NetworkInfo,
  type PoolInfo,
  type VolumeInfo,
  type VolumeRef,
} from '../../hypervisor/port';

interface MemVolume {
  name: string;
  capacityBytes: number;
  format: DiskFormat;
}
interface MemPool {
  name: string;
  path: string;
  active: boolean;
  built: boolean;
  /** Not defined: gone once stopped. */
  transient: boolean;
  /** The files of the pool's directory (on a shared directory: the same files every sharing host sees). */
  readonly volumes: Map<string, MemVolume>;
}
interface MemJob {
  startedAt: number;
  durationMs: number;
  targetUri: string;
  aborted: boolean;
  autoConverge: boolean;
  postCopyAllowed: boolean;
  postCopyAt: number | null;
  /** The disks copied (NBD mirrors in libvirt): each copy runs during the job's first half, at `diskMiBps`. */
  copied: { target: string; capacityBytes: number }[];
  diskMiBps: number | null;
  settle: (err?: Error) => void;
}
export interface MemHost {
  uri: string;
  hostname: string;
  up: boolean;
  domains: Map<string, DomainInfo>;
  pools: Map<string, MemPool>;
  /** Directories that exist (built pools and anything else). */
  dirs: Set<string>;
  jobs: Map<string, MemJob>;
  completed: Map<string, JobInfo>;
  /** Network interfaces (bridges included) and libvirt networks the host has. */
  interfaces: Set<string>;
  networks: NetworkInfo[];
  /** What the host's hypervisor says of any custom CPU (null: runs it) and of machine types it lacks. */
  cpuRefusal: string | null;
  machines: Set<string> | null;
}

export type FaultMethod = keyof Hypervisor;
interface Fault {
  method: FaultMethod;
  uri?: string;
  /** Only calls whose arguments mention this text (e.g. one VM's pool). */
  match?: string;
  remaining: number; // Infinity = always
  kind: LibvirtErrorKind;
  message: string;
}

export class MemoryHypervisor implements Hypervisor {
  readonly hosts = new Map<string, MemHost>();
  readonly calls: { method: FaultMethod; uri: string; args: unknown[] }[] = [];
  private faults: Fault[] = [];
  /** How long a simulated migration job runs. */
  migrationMs = 300;
  /**
   * A guest that dirties memory faster than the link: while set, a job completes only once the domain's
   * max downtime reaches this many ms, after a switch to post-copy, or (with auto-converge) after
   * `autoConvergeMs` more. Its remaining data saw-tooths around a level that makes no new lows.
   */
  nonConvergingBelowDowntimeMs: number | null = null;
  autoConvergeMs = 1_000;
  /** The target dies during post-copy: the source stays `paused (post-copy failed)` with its job listed. */
  failPostCopy = false;
  readonly maxDowntimes = new Map<string, number>();
  /** Files per directory, keyed by `<uri>|<dir>`, or `shared|<dir>` for a directory several hosts share. */
  private readonly stores = new Map<string, Map<string, MemVolume>>();
  private readonly sharedDirs = new Map<string, Set<string>>();
  /** Per VM: what its definition asks of a host beyond the defaults (no NICs, a custom CPU, pc-i440fx-7.2). */
  readonly needs = new Map<string, Partial<DomainNeeds>>();
  /** Bytes per ms a cold volume copy moves (default: 64 MiB/s). */
  copyBytesPerMs = 64 * 1024;

  /** `dir` is the same storage on these hosts (as NFS, or a bind mount, is): one set of files. */
  shareDirectory(dir: string, uris: string[]): void {
    this.sharedDirs.set(dir, new Set(uris));
    for (const uri of uris) this.host(uri).dirs.add(dir);
  }

  /** The files in `dir` as `h` sees them. */
  files(h: MemHost, dir: string): Map<string, MemVolume> {
    const key = this.sharedDirs.get(dir)?.has(h.uri) ? `shared|${dir}` : `${h.uri}|${dir}`;
    let store = this.stores.get(key);
    if (!store) {
      store = new Map();
      this.stores.set(key, store);
    }
    return store;
  }

  private hostsSeeing(h: MemHost, dir: string): MemHost[] {
    const sharing = this.sharedDirs.get(dir);
    return sharing?.has(h.uri) ? [...sharing].map((u) => this.host(u)) : [h];
  }

  private newPool(h: MemHost, name: string, path: string, o: { active: boolean; built: boolean; transient?: boolean }): MemPool {
    const files = (dir: string) => this.files(h, dir);
    return {
      name,
      path,
      active: o.active,
      built: o.built,
      transient: o.transient ?? false,
      get volumes() {
        return files(this.path);
      },
    };
  }

  addHost(uri: string, hostname: string): MemHost {
    const h: MemHost = {
      uri,
      hostname,
      up: true,
      domains: new Map(),
      pools: new Map(),
      dirs: new Set(['/var/lib/libvirt/images/ferry']),
      jobs: new Map(),
      completed: new Map(),
      interfaces: new Set(['eth0', 'lo']),
      networks: [],
      cpuRefusal: null,
      machines: null,
    };
    this.hosts.set(uri, h);
    return h;
  }

  /**
   * Two hosts (`src`, `tgt`) and a 128 MiB, 1-vCPU VM `vm1` with one 64 MiB qcow2 disk (vda, disk0.qcow2) in
   * <dir>, pool `pool` on both: as a migration's create tasks leave the target. The target's domain is there too
   * (delete it for "not there yet").
   */
  static twoHostsWithVm(o: { src: string; tgt: string; uuid: string; dir: string; pool: string }): MemoryHypervisor {
    const hv = new MemoryHypervisor();
    hv.addHost(o.src, 'src');
    hv.addHost(o.tgt, 'tgt');
    const vm = { uuid: o.uuid, name: 'vm1', memoryMiB: 128, vcpus: 1, dir: o.dir, pool: o.pool };
    const disks = [{ name: 'disk0.qcow2', target: 'vda', sizeBytes: 64 * 2 ** 20, format: 'qcow2' as const }];
    hv.addVm(o.src, { ...vm, disks });
    hv.addVm(o.tgt, { ...vm, disks });
    return hv;
  }

  /**
   * A running VM with its disks in <dir>/<name>, in pool `pool` on `uri` (a disk may name its own `dir` and
   * `pool`: several directories, or a flat pool such as `default` holding other VMs' disks too).
   */
  addVm(
    uri: string,
    vm: {
      uuid: string;
      name: string;
      memoryMiB: number;
      vcpus: number;
      dir: string;
      pool: string;
      disks: { name: string; target: string; sizeBytes: number; format: DiskFormat; dir?: string; pool?: string }[];
    },
  ): void {
    const h = this.host(uri);
    const placed = vm.disks.map((d) => ({ ...d, dir: d.dir ?? vm.dir, pool: d.pool ?? vm.pool }));
    for (const d of placed) {
      const pool = h.pools.get(d.pool) ?? this.newPool(h, d.pool, d.dir, { active: true, built: true });
      h.pools.set(d.pool, pool);
      pool.volumes.set(d.name, { name: d.name, capacityBytes: d.sizeBytes, format: d.format });
      for (const x of this.hostsSeeing(h, d.dir)) x.dirs.add(d.dir);
    }
    if (placed.length === 0 && !h.pools.has(vm.pool)) h.pools.set(vm.pool, this.newPool(h, vm.pool, vm.dir, { active: true, built: true }));
    h.dirs.add(vm.dir);
    h.domains.set(vm.uuid, {
      uuid: vm.uuid,
      name: vm.name,
      state: 'running',
      stateReason: 'booted',
      persistent: true,
      memoryKiB: vm.memoryMiB * 1024,
      vcpus: vm.vcpus,
      disks: placed.map((d) => ({ target: d.target, path: `${d.dir}/${d.name}`, format: d.format, capacityBytes: d.sizeBytes })),
      files: placed.map((d) => `${d.dir}/${d.name}`),
    });
  }

  /** A pool on `dir` (e.g. libvirt's `default` on /var/lib/libvirt/images), active, as an operator defines one. */
  addPool(uri: string, name: string, dir: string): void {
    const h = this.host(uri);
    h.pools.set(name, this.newPool(h, name, dir, { active: true, built: true }));
    for (const x of this.hostsSeeing(h, dir)) x.dirs.add(dir);
  }

  /** Makes the next `times` calls of `method` (optionally on one host) fail with a libvirt error. */
  fail(method: FaultMethod, times: number, opts: { uri?: string; match?: string; kind?: LibvirtErrorKind; message?: string } = {}): void {
    this.faults.push({
      method,
      ...(opts.uri !== undefined ? { uri: opts.uri } : {}),
      ...(opts.match !== undefined ? { match: opts.match } : {}),
      remaining: times,
      kind: opts.kind ?? 'connection',
      message: opts.message ?? `injected ${opts.kind ?? 'connection'} failure of ${method}`,
    });
  }

  /** Between test cases: no faults, default job and copy speeds, every host's defaults (interfaces, CPU, machines), no VM needs. */
  reset(): void {
    this.clearFaults();
    this.migrationMs = 300;
    this.copyBytesPerMs = 64 * 1024;
    this.needs.clear();
    for (const h of this.hosts.values()) Object.assign(h, { interfaces: new Set(['eth0', 'lo']), cpuRefusal: null, machines: null });
  }

  clearFaults(): void {
    this.faults = [];
  }

  callsOf(method: FaultMethod, uri?: string) {
    return this.calls.filter((c) => c.method === method && (uri === undefined || c.uri === uri));
  }

  private enter(method: FaultMethod, uri: string, ...args: unknown[]): MemHost {
    this.calls.push({ method, uri, args });
    const h = this.host(uri);
    if (!h.up) throw new LibvirtError('connection', `failed to connect to ${uri}: Connection refused`);
    const f = this.faults.find(
      (x) =>
        x.method === method &&
        (x.uri === undefined || x.uri === uri) &&
        (x.match === undefined || JSON.stringify(args).includes(x.match)) &&
        x.remaining > 0,
    );
    if (f) {
      f.remaining -= 1;
      throw new LibvirtError(f.kind, f.message);
    }
    return h;
  }

  host(uri: string): MemHost {
    const h = this.hosts.get(uri);
    if (!h) throw new LibvirtError('connection', `unknown host ${uri}`);
    return h;
  }

  private pool(h: MemHost, name: string): MemPool {
    const p = h.pools.get(name);
    if (!p) throw new LibvirtError('not-found', `Storage pool not found: no storage pool with matching name '${name}'`);
    return p;
  }

  async hostCapacity(uri: string, storageRoot: string): Promise<HostCapacity> {
    const h = this.enter('hostCapacity', uri, storageRoot);
    return {
      hostname: h.hostname,
      memoryKiB: 16 * 1024 * 1024,
      cpus: 8,
      freeMemoryKiB: 8 * 1024 * 1024,
      storage: { pool: 'ferry-root', path: storageRoot, capacityBytes: 100 * 2 ** 30, availableBytes: 50 * 2 ** 30 },
    };
  }

  async ensureStorageRootPool(uri: string, pool: string, storageRoot: string): Promise<void> {
    this.enter('ensureStorageRootPool', uri, pool, storageRoot);
  }

  async getDomain(uri: string, uuid: string): Promise<DomainInfo | null> {
    const h = this.enter('getDomain', uri, uuid);
    const d = h.domains.get(uuid);
    return d ? structuredClone(d) : null;
  }

  async listDomains(uri: string): Promise<DomainInfo[]> {
    const h = this.enter('listDomains', uri);
    return [...h.domains.values()].map((d) => structuredClone(d));
  }

  async createStorageDirectory(uri: string, pool: string, path: string): Promise<void> {
    const h = this.enter('createStorageDirectory', uri, pool, path);
    const other = [...h.pools.values()].find((p) => p.path === path && p.name !== pool);
    if (other) throw new LibvirtError('exists', `pool '${other.name}' already uses ${path}`);
    const p = h.pools.get(pool) ?? this.newPool(h, pool, path, { active: false, built: false });
    p.built = true;
    h.pools.set(pool, p);
    for (const x of this.hostsSeeing(h, path)) x.dirs.add(path);
  }

  async definePool(uri: string, pool: string, path: string): Promise<void> {
    const h = this.enter('definePool', uri, pool, path);
    const other = [...h.pools.values()].find((p) => p.path === path && p.name !== pool);
    if (other) throw new LibvirtError('exists', `pool '${other.name}' already uses ${path}`);
    const mine = h.pools.get(pool);
    if (mine && mine.path !== path) throw new LibvirtError('exists', `pool '${pool}' is already defined on ${mine.path}, not ${path}`);
    if (!mine) h.pools.set(pool, this.newPool(h, pool, path, { active: false, built: true }));
  }

  async forgetPool(uri: string, pool: string): Promise<void> {
    const h = this.enter('forgetPool', uri, pool);
    h.pools.delete(pool);
  }

  async startPool(uri: string, pool: string, _opts?: { autostart?: boolean }): Promise<void> {
    const h = this.enter('startPool', uri, pool);
    const p = this.pool(h, pool);
    if (!h.dirs.has(p.path)) throw new LibvirtError('not-found', `cannot open directory '${p.path}': No such file or directory`);
    p.active = true;
  }

  async createTransientPool(uri: string, pool: string, path: string): Promise<void> {
    const h = this.enter('createTransientPool', uri, pool, path);
    const other = [...h.pools.values()].find((p) => p.path === path);
    if (other) throw new LibvirtError('exists', `Storage source conflict with pool: '${other.name}'`);
    if (h.pools.has(pool)) throw new LibvirtError('exists', `pool '${pool}' already exists`);
    if (!h.dirs.has(path)) throw new LibvirtError('not-found', `cannot open directory '${path}': No such file or directory`);
    h.pools.set(pool, this.newPool(h, pool, path, { active: true, built: true, transient: true }));
  }

  async recreateVolume(uri: string, pool: string, name: string, capacityBytes: number, format: DiskFormat, opts: { replace?: boolean } = {}): Promise<void> {
    const h = this.enter('recreateVolume', uri, pool, name, capacityBytes, format);
    const p = this.pool(h, pool);
    if (!p.active) throw new LibvirtError('invalid', `storage pool '${pool}' is not active`);
    if (!opts.replace && p.volumes.has(name)) throw new LibvirtError('exists', `storage volume name '${name}' already in use.`);
    p.volumes.set(name, { name, capacityBytes, format });
  }

  async deleteVolume(uri: string, pool: string, name: string): Promise<boolean> {
    const h = this.enter('deleteVolume', uri, pool, name);
    const p = h.pools.get(pool);
    return p ? p.volumes.delete(name) : false;
  }

  async stopPool(uri: string, pool: string): Promise<void> {
    const h = this.enter('stopPool', uri, pool);
    const p = h.pools.get(pool);
    if (p) p.active = false;
    if (p?.transient) h.pools.delete(pool);
  }

  async removeStorageDirectory(uri: string, pool: string): Promise<void> {
    const h = this.enter('removeStorageDirectory', uri, pool);
    const p = h.pools.get(pool);
    if (!p) return;
    if (p.volumes.size > 0) throw new LibvirtError('invalid', `the directory still holds ${[...p.volumes.keys()].join(', ')}; kept with its pool`);
    for (const x of this.hostsSeeing(h, p.path)) x.dirs.delete(p.path);
    h.pools.delete(pool);
  }

  async listPools(uri: string): Promise<PoolInfo[]> {
    const h = this.enter('listPools', uri);
    return [...h.pools.values()].map((p) => ({ name: p.name, path: p.path, active: p.active }));
  }

  async listVolumes(uri: string, pool: string): Promise<VolumeInfo[]> {
    const h = this.enter('listVolumes', uri, pool);
    const p = this.pool(h, pool);
    return [...p.volumes.values()].map((v) => ({ name: v.name, path: `${p.path}/${v.name}`, capacityBytes: v.capacityBytes }));
  }

  async poolOfVolume(uri: string, path: string): Promise<string | null> {
    const h = this.enter('poolOfVolume', uri, path);
    for (const p of h.pools.values()) {
      if (p.active && [...p.volumes.keys()].some((v) => `${p.path}/${v}` === path)) return p.name;
    }
    return null;
  }

  async migrate(sourceUri: string, uuid: string, targetUri: string, opts: MigrateOptions): Promise<void> {
    const src = this.enter('migrate', sourceUri, uuid, targetUri, opts);
    const dom = src.domains.get(uuid);
    if (!dom || (dom.state !== 'running' && dom.state !== 'paused')) throw new LibvirtError('invalid', `Requested operation is not valid: domain is not running`);
    const tgt = this.host(targetUri);
    for (const d of dom.disks) {
      if (opts.copyDisks !== undefined && !opts.copyDisks.includes(d.target)) continue; // on storage the target shares
      const dir = d.path.slice(0, d.path.lastIndexOf('/'));
      const name = d.path.slice(d.path.lastIndexOf('/') + 1);
      const pool = [...tgt.pools.values()].find((p) => p.path === dir && p.active);
      if (!pool || !pool.volumes.has(name)) {
        throw new LibvirtError('failed', `operation failed: pre-created storage ${d.path} missing on ${targetUri}`);
      }
    }
    await new Promise<void>((resolve, reject) => {
      const job: MemJob = {
        startedAt: Date.now(),
        durationMs: this.migrationMs,
        targetUri,
        aborted: false,
        autoConverge: opts.autoConverge === true,
        postCopyAllowed: opts.postCopy === true,
        postCopyAt: null,
        copied: dom.disks.filter((d) => opts.copyDisks === undefined || opts.copyDisks.includes(d.target)),
        diskMiBps: opts.bandwidthMiBps ?? null,
        settle: (err) => {
          clearInterval(timer);
          src.jobs.delete(uuid);
          if (err) reject(err);
          else resolve();
        },
      };
      const timer = setInterval(() => {
        if (this.failPostCopy && job.postCopyAt !== null) {
          clearInterval(timer);
          src.domains.set(uuid, { ...dom, state: 'paused', stateReason: 'post-copy failed' });
          tgt.domains.set(uuid, { ...dom, state: 'shutoff', stateReason: 'crashed', persistent: true });
          reject(new LibvirtError('failed', 'operation failed: domain is not running')); // the job stays listed
          return;
        }
        if (!this.jobMayFinish(uuid, job)) return;
        if (!tgt.up) {
          job.settle(new LibvirtError('connection', 'client socket is closed'));
          return;
        }
        src.domains.delete(uuid);
        // a paused VM stays paused (libvirt keeps its reason), a running one resumes on the target
        tgt.domains.set(uuid, dom.state === 'paused' ? { ...dom } : { ...dom, state: 'running', stateReason: 'migrated' });
        tgt.completed.set(uuid, completedJob(Date.now() - job.startedAt, job.postCopyAt !== null ? 5 : Math.min(25, this.maxDowntime(uuid))));
        job.settle();
      }, 20);
      src.jobs.set(uuid, job);
      opts.signal?.addEventListener('abort', () => {
        // Like virsh with --p2p: killing the client does not stop the job.
      });
    });
  }

  private maxDowntime(uuid: string): number {
    return this.maxDowntimes.get(uuid) ?? 300;
  }

  private jobMayFinish(uuid: string, job: MemJob): boolean {
    const elapsed = Date.now() - job.startedAt;
    if (job.postCopyAt !== null) return Date.now() - job.postCopyAt >= 100;
    if (elapsed < job.durationMs) return false;
    const needs = this.nonConvergingBelowDowntimeMs;
    if (needs === null || this.maxDowntime(uuid) >= needs) return true;
    return job.autoConverge && elapsed >= job.durationMs + this.autoConvergeMs;
  }

  async setMaxDowntime(uri: string, uuid: string, ms: number): Promise<void> {
    this.enter('setMaxDowntime', uri, uuid, ms);
    this.maxDowntimes.set(uuid, ms);
  }

  async getMaxDowntime(uri: string, uuid: string): Promise<number> {
    this.enter('getMaxDowntime', uri, uuid);
    return this.maxDowntime(uuid);
  }

  async setMigrationBandwidth(uri: string, uuid: string, mibps: number): Promise<void> {
    const h = this.enter('setMigrationBandwidth', uri, uuid, mibps);
    if (!h.jobs.has(uuid)) throw new LibvirtError('invalid', 'Requested operation is not valid: no job is active on the domain');
  }

  async diskCopyJobs(uri: string, uuid: string, devs: readonly string[]): Promise<DiskCopyJob[]> {
    const h = this.enter('diskCopyJobs', uri, uuid, devs);
    return copyJobsOf(h.jobs.get(uuid)).filter((j) => devs.includes(j.target));
  }

  async setDiskCopyBandwidth(uri: string, uuid: string, mibps: number): Promise<DiskCopyJob[]> {
    const h = this.enter('setDiskCopyBandwidth', uri, uuid, mibps);
    const job = h.jobs.get(uuid);
    if (job && copyJobsOf(job).length > 0) job.diskMiBps = mibps;
    return copyJobsOf(job);
  }

  async startPostCopy(uri: string, uuid: string): Promise<void> {
    const h = this.enter('startPostCopy', uri, uuid);
    const job = h.jobs.get(uuid);
    if (!job) throw new LibvirtError('invalid', 'Requested operation is not valid: no job is active on the domain');
    if (!job.postCopyAllowed) throw new LibvirtError('invalid', 'Requested operation is not valid: switching to post-copy requires migration to be started with the VIR_MIGRATE_POSTCOPY flag');
    job.postCopyAt ??= Date.now();
  }

  async jobInfo(uri: string, uuid: string): Promise<JobInfo> {
    const h = this.enter('jobInfo', uri, uuid);
    const job = h.jobs.get(uuid);
    if (!job) return emptyJob('none');
    const elapsed = Date.now() - job.startedAt;
    const total = 192 * 2 ** 20;
    const base = { ...emptyJob('unbounded'), timeElapsedMs: elapsed, dataTotalBytes: total, autoConvergeThrottlePercent: job.autoConverge ? 20 : null };
    if (this.nonConvergingBelowDowntimeMs !== null && elapsed >= job.durationMs / 2) {
      // saw-tooth: each 100 ms "iteration" ends at the same 8 MiB it started from — no new lows
      const iteration = 2 + Math.floor(elapsed / 100);
      const remaining = 8 * 2 ** 20 + ((elapsed % 100) < 50 ? 2 * 2 ** 20 : 0);
      return { ...base, dataProcessedBytes: total - remaining, dataRemainingBytes: remaining, memoryIteration: iteration, dirtyRatePagesPerSec: 5_000 };
    }
    const processed = Math.min(total, Math.round((elapsed / job.durationMs) * total));
    return { ...base, dataProcessedBytes: processed, dataRemainingBytes: total - processed, memoryIteration: 1 };
  }

  async completedJobInfo(uri: string, uuid: string): Promise<JobInfo | null> {
    const h = this.enter('completedJobInfo', uri, uuid);
    return h.completed.get(uuid) ?? null;
  }

  async domainNeeds(uri: string, uuid: string): Promise<DomainNeeds> {
    const h = this.enter('domainNeeds', uri, uuid);
    if (!h.domains.has(uuid)) throw new LibvirtError('not-found', `Domain not found: no domain with matching uuid '${uuid}'`);
    return { virtType: 'qemu', arch: 'x86_64', machine: 'pc-i440fx-7.2', cpuMode: 'custom', nics: [], hostDevices: [], readOnlyFiles: [], xml: '<domain/>', ...this.needs.get(uuid) };
  }

  async hostInterfaces(uri: string): Promise<string[]> {
    return [...this.enter('hostInterfaces', uri).interfaces];
  }

  async listNetworks(uri: string): Promise<NetworkInfo[]> {
    return this.enter('listNetworks', uri).networks;
  }

  async cpuIncompatibility(uri: string, needs: DomainNeeds): Promise<string | null> {
    const h = this.enter('cpuIncompatibility', uri);
    return needs.cpuMode === 'custom' ? h.cpuRefusal : null;
  }

  async machineUnsupported(uri: string, needs: DomainNeeds): Promise<string | null> {
    const h = this.enter('machineUnsupported', uri);
    if (needs.machine === null || h.machines === null || h.machines.has(needs.machine)) return null;
    return `the machine '${needs.machine}' is not supported by emulator '/usr/bin/qemu-system-x86_64'`;
  }

  /** Per VM: the dirty rate measureDirtyRate reports (MiB/s); default 0 for a running VM. */
  readonly dirtyRates = new Map<string, number>();

  async measureDirtyRate(uri: string, uuid: string, _seconds: number): Promise<number | null> {
    const dom = this.enter('measureDirtyRate', uri, uuid).domains.get(uuid);
    return dom?.state === 'running' ? (this.dirtyRates.get(uuid) ?? 0) : null;
  }

  async copyVolume(from: VolumeRef, to: VolumeRef, opts: CopyVolumeOptions = {}): Promise<number> {
    const src = this.pool(this.enter('copyVolume', from.uri, from.pool, from.name, to.uri, to.pool, to.name), from.pool);
    const vol = src.volumes.get(from.name);
    if (!vol) throw new LibvirtError('not-found', `Storage volume not found: no storage vol with matching name '${from.name}'`);
    const dst = this.pool(this.host(to.uri), to.pool);
    if (!dst.volumes.has(to.name)) throw new LibvirtError('not-found', `Storage volume not found: no storage vol with matching name '${to.name}'`);
    const total = vol.capacityBytes;
    const started = Date.now();
    for (;;) {
      if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new Error('aborted');
      const done = Math.min(total, (Date.now() - started) * this.copyBytesPerMs);
      opts.onProgress?.(done);
      if (done >= total) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    dst.volumes.set(to.name, { ...vol, name: to.name });
    return total;
  }

  async migrateOffline(sourceUri: string, uuid: string, targetUri: string): Promise<void> {
    const src = this.enter('migrateOffline', sourceUri, uuid, targetUri);
    const dom = src.domains.get(uuid);
    if (!dom) throw new LibvirtError('not-found', `Domain not found: no domain with matching uuid '${uuid}'`);
    if (dom.state !== 'shutoff') throw new LibvirtError('invalid', 'Requested operation is not valid: domain is active');
    this.host(targetUri).domains.set(uuid, { ...dom });
    src.domains.delete(uuid);
  }

  async undefineDomain(uri: string, uuid: string): Promise<boolean> {
    const h = this.enter('undefineDomain', uri, uuid);
    const dom = h.domains.get(uuid);
    if (!dom || !dom.persistent) return false;
    if (dom.state !== 'shutoff') throw new LibvirtError('invalid', `undefineDomain ${uuid}: the domain is ${dom.state}; only a shut-off domain is undefined`);
    h.domains.delete(uuid);
    return true;
  }

  async abortJob(uri: string, uuid: string): Promise<boolean> {
    const h = this.enter('abortJob', uri, uuid);
    const job = h.jobs.get(uuid);
    if (!job) return false;
    job.aborted = true;
    job.settle(new LibvirtError('aborted', 'operation aborted: migration out: canceled by client'));
    return true;
  }
}

/** The disk copies of a job still in its disk phase (its first half): each disk's share copied so far. */
function copyJobsOf(job: MemJob | undefined): DiskCopyJob[] {
  if (!job) return [];
  const fraction = (Date.now() - job.startedAt) / (job.durationMs / 2);
  if (fraction >= 1) return [];
  return job.copied.map((d) => ({ target: d.target, processedBytes: Math.round(fraction * d.capacityBytes), totalBytes: d.capacityBytes, bandwidthMiBps: job.diskMiBps }));
}

function emptyJob(type: JobInfo['type']): JobInfo {
  return { ...emptyJobInfo(type), operation: type === 'none' ? null : 'Outgoing migration' };
}

function completedJob(ms: number, downtimeMs = 25): JobInfo {
  const total = 192 * 2 ** 20;
  return { ...emptyJob('completed'), timeElapsedMs: ms, totalTimeMs: ms, downtimeMs, dataTotalBytes: total, dataProcessedBytes: total, dataRemainingBytes: 0 };
}
