/**
 * The Hypervisor port: everything Ferry asks of a libvirt host, typed. One real implementation
 * (`VirshHypervisor`, virsh through execFile). Every method takes the host's libvirt URI first.
 *
 * Storage model: a directory on a host is owned through a libvirt `dir` storage pool defined on it
 * (libvirt is the only channel to a host, so `pool-build` makes the directory and `pool-delete` removes it).
 *
 * All methods throw `LibvirtError` (see errors.ts) with a kind that says whether a retry can help.
 * All mutating methods are idempotent unless stated otherwise.
 */
import type { DiskFormat } from '../common/types';

export type DomainState =
  | 'running'
  | 'paused'
  | 'shutoff'
  | 'shutdown'
  | 'crashed'
  | 'blocked'
  | 'pmsuspended'
  | 'nostate';

export interface DomainDisk {
  /** Guest device, e.g. `vda`. */
  target: string;
  /** Absolute path of the backing file on the host. */
  path: string;
  format: DiskFormat;
  /** Virtual size in bytes. */
  capacityBytes: number;
  /** The image's backing file, when it has one (live XML's `<backingStore>`); absent otherwise. */
  backingFile?: string;
}

export interface DomainInfo {
  uuid: string;
  name: string;
  state: DomainState;
  /** libvirt's state reason text when available, e.g. `migrating`, `booted`, `user`. */
  stateReason: string | null;
  persistent: boolean;
  memoryKiB: number;
  vcpus: number;
  /** Writable file-backed disks only (cdroms, read-only and network disks excluded): what a migration copies. */
  disks: DomainDisk[];
  /** Every file the domain references (all disks and cdroms, read-only or not, backing chains): never delete these. */
  files: string[];
}

/** A NIC as the domain defines it: what it attaches to on the host. */
export interface DomainNic {
  /** libvirt's interface type: `bridge`, `network`, `direct`, `user`, … */
  type: string;
  /** The bridge, network or device it attaches to (null for types without one, e.g. `user`). */
  source: string | null;
  mac: string | null;
}

/** A file the domain reads but a migration does not copy: a cdrom or floppy image, a read-only disk. */
export interface DomainLocalFile {
  target: string;
  path: string;
  device: string;
}

/** What a host must offer for the domain to run there: the pre-flight checks' facts about the VM. */
export interface DomainNeeds {
  /** `<domain type>`: `qemu` (TCG) or `kvm`. */
  virtType: string;
  arch: string | null;
  /** `<os><type machine>`, e.g. `pc-i440fx-7.2`. */
  machine: string | null;
  /** `<cpu mode>`: `custom` CPUs are compared with the target's; null when the domain has no `<cpu>`. */
  cpuMode: string | null;
  nics: DomainNic[];
  /** Host devices passed through (`<hostdev>`), described, e.g. `pci 0000:03:00.0`. */
  hostDevices: string[];
  readOnlyFiles: DomainLocalFile[];
  /** The inactive, migratable domain XML (what the CPU comparison reads). */
  xml: string;
}

/** A libvirt network on a host. */
export interface NetworkInfo {
  name: string;
  active: boolean;
}

/** A volume by pool and name on a host. */
export interface VolumeRef {
  uri: string;
  pool: string;
  name: string;
}

export interface CopyVolumeOptions {
  /** MiB/s; undefined = as fast as the hosts allow. */
  bandwidthMiBps?: number;
  /** Called with the bytes copied so far, at most every `progressEveryMs` (default 500 ms) and at the end. */
  onProgress?: (copiedBytes: number) => void;
  progressEveryMs?: number;
  /** Aborting kills both virsh clients; the target volume then holds a partial copy. */
  signal?: AbortSignal;
  /** Upper bound for the whole copy, ms. */
  timeoutMs?: number;
}

export interface StorageInfo {
  pool: string;
  path: string;
  capacityBytes: number;
  availableBytes: number;
}

export interface HostCapacity {
  hostname: string;
  memoryKiB: number;
  cpus: number;
  freeMemoryKiB: number;
  /** Capacity of the pool whose target path is the storage root; null when there is none. */
  storage: StorageInfo | null;
}

export interface PoolInfo {
  name: string;
  path: string;
  active: boolean;
}

export interface VolumeInfo {
  name: string;
  path: string;
  capacityBytes: number;
}

/** libvirt job statistics (virsh domjobinfo). Byte counts are absent when libvirt does not report them. */
export interface JobInfo {
  /** `none` = no job; `unbounded`/`bounded` = running; the rest describe a finished job. */
  type: 'none' | 'bounded' | 'unbounded' | 'completed' | 'failed' | 'cancelled';
  operation: string | null;
  timeElapsedMs: number | null;
  dataTotalBytes: number | null;
  dataProcessedBytes: number | null;
  dataRemainingBytes: number | null;
  memoryTotalBytes: number | null;
  memoryProcessedBytes: number | null;
  memoryRemainingBytes: number | null;
  diskTotalBytes: number | null;
  diskProcessedBytes: number | null;
  diskRemainingBytes: number | null;
  memoryIteration: number | null;
  dirtyRatePagesPerSec: number | null;
  /** Auto-converge's current CPU throttle of the guest, percent (null when not throttling). */
  autoConvergeThrottlePercent: number | null;
  /** Pages the target requested from the source in post-copy mode (null before post-copy). */
  postcopyRequests: number | null;
  /** Completed jobs: total time and downtime as libvirt measured them. */
  totalTimeMs: number | null;
  downtimeMs: number | null;
  /** Every field as virsh printed it, for diagnostics. */
  raw: Record<string, string>;
}

/** A migration job is running (libvirt's `bounded` / `unbounded` job types). */
export function isJobActive(job: JobInfo): boolean {
  return job.type === 'bounded' || job.type === 'unbounded';
}

/** Job statistics with nothing known: `type: 'none'` is "no job". */
export function emptyJobInfo(type: JobInfo['type'] = 'none'): JobInfo {
  return {
    type,
    operation: null,
    timeElapsedMs: null,
    dataTotalBytes: null,
    dataProcessedBytes: null,
    dataRemainingBytes: null,
    memoryTotalBytes: null,
    memoryProcessedBytes: null,
    memoryRemainingBytes: null,
    diskTotalBytes: null,
    diskProcessedBytes: null,
    diskRemainingBytes: null,
    memoryIteration: null,
    dirtyRatePagesPerSec: null,
    autoConvergeThrottlePercent: null,
    postcopyRequests: null,
    totalTimeMs: null,
    downtimeMs: null,
    raw: {},
  };
}

/**
 * One disk's copy in a running migration with `--copy-storage-all`: libvirt's NBD mirror block job of that disk
 * (`virsh blockjob <dom> <dev> --info`, type "Block Copy"). It copies the disk's whole virtual size, then stays
 * "ready", mirroring the guest's writes, until the switch-over ends it.
 */
export interface DiskCopyJob {
  /** Guest device, e.g. `vda`. */
  target: string;
  processedBytes: number;
  totalBytes: number;
  /** The job's speed limit, MiB/s; null = unlimited. */
  bandwidthMiBps: number | null;
}

export interface MigrateOptions {
  /** MiB/s; undefined = hypervisor default (unlimited). */
  bandwidthMiBps?: number;
  /** `--auto-converge`: QEMU throttles the guest's CPU while memory iterations do not converge. */
  autoConverge?: boolean;
  /** `--postcopy`: the migration may be switched to post-copy later (startPostCopy). */
  postCopy?: boolean;
  /** `--copy-storage-synchronous-writes`: the disk mirrors run write-blocking (only with disks copied). */
  syncDiskWrites?: boolean;
  /**
   * `--tls`: QEMU encrypts the migration stream and the disk copies (NBD over TLS) with the certificates of
   * qemu.conf's migrate_tls_x509_cert_dir on both hosts; a host without them fails the migration at once.
   */
  encryptStream?: boolean;
  /**
   * Target devs of the disks to copy into the volumes pre-created on the target (`--copy-storage-all
   * --migrate-disks`); `[]` copies no disk (every disk is on storage the target shares). Undefined: copy every
   * writable disk (`--copy-storage-all` alone).
   */
  copyDisks?: string[];
  /**
   * The disks not copied are on storage Ferry's probe proved the target shares (`--unsafe`): libvirt itself
   * recognises only network filesystems (NFS, …) as shared and refuses a bind mount or an unknown cluster
   * filesystem ("Unsafe migration: Migration without shared storage is unsafe").
   */
  sharedStorageProven?: boolean;
  /** Upper bound for the virsh client process, in ms (the job itself is bounded by the workflow timer). */
  clientTimeoutMs?: number;
  /** Aborting this signal kills the local virsh client only; with --p2p the job goes on (use abortJob). */
  signal?: AbortSignal;
}

export interface Hypervisor {
  /** Host name, memory, CPUs; storage figures from the pool whose target is `storageRoot`, if any. */
  hostCapacity(uri: string, storageRoot: string): Promise<HostCapacity>;
  /** Defines + starts + autostarts a dir pool on `storageRoot` so its free space can be measured. */
  ensureStorageRootPool(uri: string, pool: string, storageRoot: string): Promise<void>;

  /** The domain with this UUID, or null when the host has no such domain (running or defined). */
  getDomain(uri: string, uuid: string): Promise<DomainInfo | null>;
  /** Every domain on the host, running or defined, with its disks. */
  listDomains(uri: string): Promise<DomainInfo[]>;

  /** Defines dir pool `pool` on `path` (if not defined) and builds it: the directory exists afterwards. */
  createStorageDirectory(uri: string, pool: string, path: string): Promise<void>;
  /**
   * Defines dir pool `pool` on an EXISTING directory (nothing is built: the directory's owner and mode stay
   * as they are). Idempotent; refuses our name on another path and another owner's pool on that directory.
   */
  definePool(uri: string, pool: string, path: string): Promise<void>;
  /** Starts the pool (if inactive), marks it autostart (unless `autostart: false`), refreshes it. */
  startPool(uri: string, pool: string, opts?: { autostart?: boolean }): Promise<void>;
  /** Stops and undefines the pool; its directory and files stay. Absent pool = nothing to do. */
  forgetPool(uri: string, pool: string): Promise<void>;
  /**
   * A transient, active dir pool on an existing directory (`pool-create-as`: nothing is built, nothing is
   * defined; stopPool removes it). Fails `not-found` when the directory does not exist.
   */
  createTransientPool(uri: string, pool: string, path: string): Promise<void>;
  /**
   * Creates an empty volume with the given size and format. With `replace`, a volume of that name is deleted
   * first — only for a volume the caller has proven it owns; without it, an existing volume fails `exists`.
   */
  recreateVolume(uri: string, pool: string, name: string, capacityBytes: number, format: DiskFormat, opts?: { replace?: boolean }): Promise<void>;
  /** Deletes the volume; returns false when it was already absent (pool absent counts as absent). */
  deleteVolume(uri: string, pool: string, name: string): Promise<boolean>;
  /** Stops the pool if active (its files stay). */
  stopPool(uri: string, pool: string): Promise<void>;
  /**
   * Removes the EMPTY directory behind pool `pool` and the pool: stops it, `pool-delete`s (rmdir) the
   * directory and undefines the pool. A directory that still holds anything fails `invalid` and is kept,
   * with its pool. Absent pool = nothing to do.
   */
  removeStorageDirectory(uri: string, pool: string): Promise<void>;
  listPools(uri: string): Promise<PoolInfo[]>;
  listVolumes(uri: string, pool: string): Promise<VolumeInfo[]>;
  /** Name of the pool holding the volume at `path`, or null when no active pool has it. */
  poolOfVolume(uri: string, path: string): Promise<string | null>;

  /**
   * Live-migrates with `--live --p2p --persistent --undefinesource` and the disk copy `copyDisks` asks for. Resolves when
   * virsh reports success; rejects with a LibvirtError otherwise. Not idempotent: callers reconcile first.
   */
  /**
   * `targetUri` is Ferry's URI of the target; with --p2p the source daemon connects to it with the source
   * host's own credentials (the parameters naming Ferry's files, e.g. `pkipath`, are not passed on: peerUri).
   */
  migrate(sourceUri: string, uuid: string, targetUri: string, opts: MigrateOptions): Promise<void>;
  /** Statistics of the domain's current job (`type: 'none'` when there is none). */
  jobInfo(uri: string, uuid: string): Promise<JobInfo>;
  /** Statistics of the last completed job, kept readable (--keep-completed); null when none. */
  completedJobInfo(uri: string, uuid: string): Promise<JobInfo | null>;
  /** Aborts the domain's current job; returns false when there was no job to abort. */
  abortJob(uri: string, uuid: string): Promise<boolean>;
  /** Maximum tolerated downtime of the switch-over, ms (`migrate-setmaxdowntime`; also before a job starts). */
  setMaxDowntime(uri: string, uuid: string, ms: number): Promise<void>;
  getMaxDowntime(uri: string, uuid: string): Promise<number>;
  /** Bandwidth of a running migration, MiB/s (`migrate-setspeed`). */
  setMigrationBandwidth(uri: string, uuid: string, mibps: number): Promise<void>;
  /**
   * The disk copies of the domain's running migration, one per device of `devs` that has one (`blockjob --info`,
   * a query libvirt allows while the migration holds the domain); [] before the copy starts and after it ended.
   */
  diskCopyJobs(uri: string, uuid: string, devs: readonly string[]): Promise<DiskCopyJob[]>;
  /**
   * Sets the speed limit of every running disk copy of the domain's migration, MiB/s, and returns the jobs as
   * they are afterwards ([] when none runs). libvirt 9.0 gives its NBD mirrors the migration bandwidth only when it
   * starts them (`migrate-setspeed` later changes the memory stream only) and refuses `blockjob --bandwidth` while
   * the migration job holds the domain, so this sends QMP `block-job-set-speed` through `qemu-monitor-command`
   * (allowed as a query; libvirt marks that QEMU process tainted `custom-monitor`, the target's is not).
   */
  setDiskCopyBandwidth(uri: string, uuid: string, mibps: number): Promise<DiskCopyJob[]>;
  /** Switches a running migration started with `postCopy` to post-copy now (`migrate-postcopy`). */
  startPostCopy(uri: string, uuid: string): Promise<void>;

  // ---- pre-flight facts ----
  /** What the domain needs of a host (NICs, CPU, machine type, devices, files not copied). */
  domainNeeds(uri: string, uuid: string): Promise<DomainNeeds>;
  /** Names of the host's network interfaces, bridges included (`iface-list --all`). */
  hostInterfaces(uri: string): Promise<string[]>;
  listNetworks(uri: string): Promise<NetworkInfo[]>;
  /** Why the host's hypervisor cannot run the domain's CPU (libvirt's comparison), or null when it can. */
  cpuIncompatibility(uri: string, needs: DomainNeeds): Promise<string | null>;
  /** Why the host's emulator does not support the domain's machine type, or null when it does. */
  machineUnsupported(uri: string, needs: DomainNeeds): Promise<string | null>;
  /**
   * The guest's memory dirty rate in MiB/s, measured by QEMU over `seconds` (`domdirtyrate-calc`, page
   * sampling); null when the domain is not running or QEMU cannot measure it.
   */
  measureDirtyRate(uri: string, uuid: string, seconds: number): Promise<number | null>;

  // ---- cold migration ----
  /**
   * Streams a volume's bytes from one host into an existing volume on another (`vol-download` piped into
   * `vol-upload`, through this process, no shell). Resolves with the bytes copied. Not idempotent: a retry
   * copies again from the start.
   */
  copyVolume(from: VolumeRef, to: VolumeRef, opts?: CopyVolumeOptions): Promise<number>;
  /** Moves a shut-off domain's definition: `migrate --offline --persistent --undefinesource` (no storage copied). */
  migrateOffline(sourceUri: string, uuid: string, targetUri: string): Promise<void>;
  /** Undefines a shut-off domain, keeping its storage; false when it was not defined. Refuses an active domain. */
  undefineDomain(uri: string, uuid: string): Promise<boolean>;
}
