/**
 * The inventory: hosts, VMs, disks, target claims and migration history.
 * Async so that the same callers work on SQLite (embedded default) and PostgreSQL.
 */
import type { MigrationLimits } from '../common/limits';
export type { MigrationLimits } from '../common/limits';
import type { Claim, HistoryRecord, HostRecord, HostState, StorageArtifactRecord, VmRecord, VmState } from '../common/types';
import type { Placement } from './placement';

export interface NewHost {
  name: string;
  address: string;
  uri: string;
  state?: HostState;
  storageRoot?: string;
  memoryMiB?: number;
  vcpus?: number;
  storageFreeBytes?: number | null;
  memoryRatio?: number;
  cpuRatio?: number;
}

export type VmUpsert = Omit<VmRecord, 'updatedAt'>;

/** What a migration needs on its target. */
export interface PlacementRequest {
  vmUuid: string;
  sourceHost: string;
  workflowId: string;
  memoryMiB: number;
  vcpus: number;
  storageBytes: number;
  /** When set, only this host is considered (it is still checked). */
  fixedTarget?: string;
  /** Hosts this migration already found unfit after claiming them (e.g. its storage check refused them). */
  excludeHosts?: string[];
  /** Concurrency limits; DEFAULT_LIMITS when absent. */
  limits?: MigrationLimits;
}

export interface RejectedHost {
  host: string;
  reason: string;
}

export interface PlacementResult {
  claim: Claim;
  /**
   * Hosts that were considered and why they lost or were filtered out (for the error message / logs).
   * Every other host in fleets of up to 100 hosts (SqlInventoryOptions.fullPlacementMaxHosts); in larger
   * fleets only the hosts busy receiving migrations and the best host of each other capacity class.
   */
  rejected: RejectedHost[];
}

export interface HostCapacityUpdate {
  memoryMiB: number;
  vcpus: number;
  storageFreeBytes: number | null;
}

export interface HistoryFilter {
  vm?: string;
  host?: string;
  /** Only rows with this result (migrated, aborted, timed-out, cancelled, failed). */
  result?: string;
  /** Only rows started at or after / before this ISO time. */
  since?: string;
  until?: string;
  limit?: number;
  /** Rows to skip (newest first), for pages. */
  offset?: number;
}

/** Lists hold VM names. `skipped`: VMs left alone because a migration holds them. */
export interface SyncResult {
  host: string;
  added: string[];
  updated: string[];
  removed: string[];
  skipped: string[];
  /** Set by syncInventory when the host could not be queried; nothing was recorded for it then. */
  error?: string;
}

/** What identifies a provenance record: which run created what, where. */
export type ArtifactKey = Pick<StorageArtifactRecord, 'host' | 'kind' | 'path' | 'workflowId' | 'runId'>;
export type ArtifactFilter = Partial<Pick<StorageArtifactRecord, 'host' | 'kind' | 'path' | 'vmUuid' | 'workflowId' | 'runId'>>;

export interface Inventory {
  close(): Promise<void>;

  addHost(host: NewHost): Promise<HostRecord>;
  /** By name or address. */
  getHost(nameOrAddress: string): Promise<HostRecord | null>;
  listHosts(): Promise<HostRecord[]>;
  setHostState(name: string, state: HostState): Promise<HostRecord>;
  /**
   * Forgets a host and the VMs recorded on it (refused while a migration involves it). Idempotent. `force`:
   * also drops the claims of migrations from or to it; a VM elsewhere that such a migration held becomes `unknown`.
   */
  removeHost(name: string, opts?: { force?: boolean }): Promise<void>;
  updateHostCapacity(name: string, capacity: HostCapacityUpdate): Promise<void>;

  upsertVm(vm: VmUpsert): Promise<void>;
  getVm(uuid: string): Promise<VmRecord | null>;
  /** VMs whose name or UUID equals `nameOrUuid`. */
  findVms(nameOrUuid: string): Promise<VmRecord[]>;
  listVms(filter?: { host?: string }): Promise<VmRecord[]>;

  /**
   * Atomically: filter hosts, score them, insert a claim for the best one and set the VM
   * `running` -> `migrating`. Idempotent for the same workflowId (returns the existing claim).
   * Throws PlacementError (see placement.ts) when no host fits or the VM is not in a migratable state.
   */
  claimTarget(request: PlacementRequest): Promise<PlacementResult>;
  /**
   * The target claimTarget would choose now, with every other host and why it lost — nothing is claimed, nothing
   * changes (a dry run). Limits that would make a claim wait are not applied: the host that fits is named.
   */
  previewTarget(request: PlacementRequest): Promise<Placement>;
  getClaim(vmUuid: string): Promise<Claim | null>;
  listClaims(): Promise<Claim[]>;
  /** Deletes the claim if it belongs to workflowId. Idempotent. */
  releaseClaim(vmUuid: string, workflowId: string): Promise<void>;
  /**
   * Sets the VM's host and state (e.g. back to `running` on the source after an abort,
   * or `running` on the target after success). Does not touch the claim.
   */
  setVmPlacement(vmUuid: string, host: string, state: VmState): Promise<void>;

  /**
   * Provenance of storage a migration creates: `recordArtifact` before creating (state `creating`; idempotent
   * per workflow, host, kind and path), `markArtifact` once it exists (`created`) or was deleted (`removed`).
   */
  recordArtifact(a: ArtifactKey & Pick<StorageArtifactRecord, 'pool' | 'vmUuid'>, state?: 'creating' | 'created'): Promise<void>;
  markArtifact(a: ArtifactKey, state: 'created' | 'removed'): Promise<void>;
  /** Records not yet removed, newest first (optionally on one host, at one path, of one VM or one run). */
  listArtifacts(filter: ArtifactFilter): Promise<StorageArtifactRecord[]>;

  recordHistory(row: HistoryRecord): Promise<number>;
  listHistory(filter?: HistoryFilter): Promise<HistoryRecord[]>;

  /**
   * Replaces what the inventory knows about the VMs of one host with what libvirt reported.
   * VMs in state `migrating` (or holding a claim) are left alone.
   */
  syncHost(host: string, vms: VmUpsert[], capacity: HostCapacityUpdate): Promise<SyncResult>;
}
