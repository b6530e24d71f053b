/**
 * Types shared by the workflow (sandboxed: no Node builtins here), activities, inventory, client and CLI.
 */

/** Lifecycle state of a hypervisor host in the inventory. Only `normal` hosts receive migrations. */
export type HostState = 'normal' | 'maintenance' | 'down';
export const HOST_STATES: readonly HostState[] = ['normal', 'maintenance', 'down'];

/** Inventory state of a VM. `migrating` is set when a target is claimed and always reset by the workflow. */
export type VmState = 'running' | 'migrating' | 'stopped' | 'paused' | 'unknown';

export type DiskFormat = 'qcow2' | 'raw';

/** One disk of a VM as the inventory knows it. `name` is the volume (file) name; `path` is absolute. */
export interface DiskRecord {
  /** Device name inside the guest, e.g. `vda`. */
  target: string;
  /** Volume name = file name of `path`, e.g. `disk0.qcow2`. */
  name: string;
  path: string;
  format: DiskFormat;
  /** Virtual size in bytes (what the target volume must be created with). */
  sizeBytes: number;
}

export interface HostRecord {
  name: string;
  /** Address the host is known by (IP or DNS name); unique. */
  address: string;
  /** libvirt URI the worker (and, for p2p migration, the source host) uses, e.g. qemu+tcp://10.0.0.2/system. */
  uri: string;
  state: HostState;
  /** Total memory and CPUs from libvirt's nodeinfo (or set by the operator). */
  memoryMiB: number;
  vcpus: number;
  /** Directory under which Ferry keeps one directory per VM, e.g. /var/lib/libvirt/images/ferry. */
  storageRoot: string;
  /** Free bytes on the filesystem of `storageRoot` at the last sync; null when never measured. */
  storageFreeBytes: number | null;
  /** Overcommit ratios used by placement. */
  memoryRatio: number;
  cpuRatio: number;
  updatedAt: string;
}

export interface VmRecord {
  uuid: string;
  name: string;
  /** Name of the host the VM runs on. */
  host: string;
  memoryMiB: number;
  vcpus: number;
  state: VmState;
  disks: DiskRecord[];
  updatedAt: string;
}

/** A target host reserved for one VM's migration (one per VM at a time). */
export interface Claim {
  vmUuid: string;
  host: string;
  sourceHost: string;
  workflowId: string;
  memoryMiB: number;
  vcpus: number;
  storageBytes: number;
  createdAt: string;
}

/**
 * Storage a migration created on a host, as the inventory records it (provenance): written BEFORE the thing is
 * created (`creating`), `created` once it exists, `removed` once Ferry deleted it. Ferry deletes only what such
 * a record proves it created.
 */
export interface StorageArtifactRecord {
  host: string;
  kind: 'directory' | 'pool' | 'volume';
  /** The directory, the pool's directory, or the volume's file. */
  path: string;
  pool: string;
  vmUuid: string;
  /** The migration run that created it (a VM's migrations share one workflow ID; each run has its own run ID). */
  workflowId: string;
  runId: string;
  state: 'creating' | 'created' | 'removed';
  createdAt: string;
  updatedAt: string;
}

export type MigrationResultKind = 'migrated' | 'aborted' | 'timed-out' | 'cancelled' | 'failed';

export interface HistoryRecord {
  id?: number;
  workflowId: string;
  runId: string;
  vmUuid: string;
  vmName: string;
  source: string;
  target: string | null;
  result: MigrationResultKind;
  reason: string | null;
  startedAt: string;
  endedAt: string;
  durationMs: number;
  /** From libvirt's completed-job statistics (null when the migration did not run to completion). */
  downtimeMs: number | null;
  bytesTransferred: number | null;
  createAttempts: Record<string, number>;
  /** Milliseconds spent per workflow phase. */
  phaseMs: Record<string, number>;
}
