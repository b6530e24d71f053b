/**
 * The shapes a migration exposes: its phases, the artifacts it creates, its progress (query) and its report
 * (result, and details of its failure). Sandbox-safe.
 */
import type { DiskRecord, MigrationResultKind } from './types';

export type Phase =
  | 'validating'
  | 'reading-vm'
  | 'selecting-target'
  | 'waiting-for-slot'
  | 'creating-storage'
  | 'migrating'
  | 'finishing'
  | 'compensating'
  | 'migrated'
  | 'aborted'
  | 'timed-out'
  | 'cancelled'
  | 'failed';

export const TERMINAL_PHASES: readonly Phase[] = ['migrated', 'aborted', 'timed-out', 'cancelled', 'failed'];

/** Something created on the target, recorded in workflow state before it is created. */
export type Artifact =
  | { kind: 'directory'; host: string; pool: string; path: string }
  | { kind: 'pool'; host: string; pool: string }
  | { kind: 'volume'; host: string; pool: string; name: string };

export interface HostRef {
  name: string;
  address: string;
  uri: string;
}

/** What step 2 learned about the VM (inventory, cross-checked with libvirt on the source). */
export interface VmFacts {
  uuid: string;
  name: string;
  memoryMiB: number;
  vcpus: number;
  source: HostRef;
  disks: DiskRecord[];
  /** The VM's storage directory (same path on source and target). */
  storageDir: string;
  /** Memory + disk virtual sizes, for the default timeout. */
  dataBytes: number;
}

export interface MigrationStats {
  /** libvirt job type while running, e.g. unbounded; 'completed' at the end. */
  jobType: string;
  elapsedMs: number | null;
  dataTotalBytes: number | null;
  dataProcessedBytes: number | null;
  dataRemainingBytes: number | null;
  memoryRemainingBytes: number | null;
  diskRemainingBytes: number | null;
  memoryIteration: number | null;
  dirtyRatePagesPerSec: number | null;
  /** 0..100, from processed / total. */
  percent: number | null;
  sampledAt: string;
}

/** Which deadline passed, what Ferry did, and libvirt's statistics at that moment. */
export interface LimitFired {
  limit: 'completion' | 'progress';
  action: 'abort' | 'post-copy';
  at: string;
  stats: MigrationStats | null;
  detail: string;
}

/** Convergence controls of a running migration, as the progress query shows them. */
export interface ConvergenceView {
  autoConverge: boolean;
  postCopyAllowed: boolean;
  postCopyActive: boolean;
  maxDowntimeMs: number | null;
  bandwidthMiBps: number | null;
  throttlePercent: number | null;
  progressTimeoutMs: number;
  lowestRemainingBytes: number | null;
  /** Time since the remaining data made its last new low. */
  sinceNewLowMs: number | null;
  limitFired: LimitFired | null;
  /** What changed the migration while it ran (ramp steps, operator updates, post-copy). */
  events: { at: string; what: string }[];
}

/** The `tune` update's argument: changes to a running copy. */
export interface TuneRequest {
  maxDowntimeMs?: number;
  bandwidthMiBps?: number;
  postCopyNow?: boolean;
}

export interface CompletedMigrationStats {
  totalTimeMs: number | null;
  downtimeMs: number | null;
  bytesTransferred: number | null;
  /** Where libvirt said the VM runs when the copy ended (null when not asked). */
  location?: LocateResult | null;
}

/**
 * `split`: a post-copy migration failed — the guest's memory is divided between the two hosts and the
 * target's disk holds writes made after the switch. Nothing may be deleted; an operator must recover it.
 */
export type VmLocation = 'source' | 'target' | 'nowhere' | 'split';

export interface LocateResult {
  location: VmLocation;
  sourceState: string | null;
  targetState: string | null;
}

export interface MigrationProgress {
  workflowId: string;
  phase: Phase;
  vm: { name: string; uuid: string };
  source: string;
  target: string | null;
  startedAt: string;
  /** Deadline of the migration step (ISO), once it started. */
  deadline: string | null;
  artifacts: Artifact[];
  /** Attempts per create task, e.g. {"directory": 1, "pool": 1, "disk:disk0.qcow2": 3}. */
  createAttempts: Record<string, number>;
  migration: MigrationStats | null;
  convergence: ConvergenceView | null;
  /** What the workflow waits for right now, in words (e.g. a compensation retrying against a down host). */
  waitingFor: string | null;
  lastError: string | null;
  cancelRequested: boolean;
}

/** The workflow's result on success, and the details of its ApplicationFailure otherwise. */
export interface MigrationReport {
  status: MigrationResultKind;
  workflowId: string;
  runId: string;
  vm: string;
  vmUuid: string;
  source: string;
  target: string | null;
  createAttempts: Record<string, number>;
  durationMs: number;
  downtimeMs: number | null;
  bytesTransferred: number | null;
  migrationMs: number | null;
  timeoutMs: number | null;
  phaseMs: Record<string, number>;
  /** When the migration held its target claim (ISO; null when it never got one): its in-flight interval. */
  claimedAt: string | null;
  releasedAt: string | null;
  reason: string | null;
  /** Where libvirt says the VM runs at the end. */
  location: VmLocation | null;
  /** The deadline that fired (if any) and the convergence events. */
  limitFired: LimitFired | null;
  convergenceEvents: { at: string; what: string }[];
  sourceCleaned: boolean;
  warnings: string[];
}

export interface CreateTaskResult {
  attempt: number;
}

/** Sent by long-running activities to their workflow so the progress query can show live numbers. */
export interface ProgressSignal {
  migration?: MigrationStats;
  /** From the migrate activity: its convergence state and anything it just did. */
  convergence?: {
    maxDowntimeMs?: number | null;
    throttlePercent?: number | null;
    postCopyActive?: boolean;
    lowestRemainingBytes?: number | null;
    sinceNewLowMs?: number | null;
    event?: string;
    limitFired?: LimitFired;
  };
  createTask?: { task: string; attempt: number; error?: string };
  waitingFor?: string | null;
}

