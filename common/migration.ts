/**
 * The shapes a migration exposes: its phases, the artifacts it creates, its progress (query) and its report
 * (result, and details of its failure). Sandbox-safe.
 */
import type { DiskFormat, DiskRecord, MigrationResultKind, VmState } from './types';

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

/**
 * Something a create task may create on the target, recorded in workflow state before the task runs. Whether
 * the task really created it (rather than finding it there) is the inventory's provenance record's to say:
 * compensation deletes only what that record proves this run created.
 */
export type Artifact =
  | { kind: 'directory'; host: string; pool: string; path: string }
  | { kind: 'pool'; host: string; pool: string; path?: string }
  | { kind: 'volume'; host: string; pool: string; name: string; path?: string };

/** The migration run that owns what it creates: provenance records carry it. */
export interface RunRef {
  workflowId: string;
  runId: string;
}

/** How one disk travels: on storage the target shares (nothing copied, nothing created, never deleted) or copied. */
export type DiskLayout = 'shared' | 'copied';

export interface PlannedDisk {
  /** Guest device, e.g. vda: what `--migrate-disks` names. */
  target: string;
  name: string;
  path: string;
  layout: DiskLayout;
  sizeBytes: number;
  format: DiskFormat;
  /** Copied disks: the target pool that receives the volume. */
  pool: string | null;
  /** A leftover of an earlier Ferry migration of this VM (provenance record, not in use) is in its place: replaced. */
  replacesLeftover: boolean;
  /** The source disk has a backing chain: the copy on the target is one flattened image. */
  flattened: boolean;
}

/** A directory on the target that receives copied disks. */
export interface PlannedDirectory {
  path: string;
  /** The pool that will hold the volumes: an existing one on that directory (used, never removed) or Ferry's own. */
  pool: string;
  poolExists: boolean;
  /** Whether the directory exists on the target already (then Ferry never builds or removes it). */
  dirExists: boolean;
}

/**
 * How the VM's storage reaches one target, decided before any create task: each disk shared or copied (a probe
 * volume created through the target and looked for from the source, as Nova does), and for copied disks the
 * directory and pool on the target.
 */
export interface StoragePlan {
  disks: PlannedDisk[];
  directories: PlannedDirectory[];
}

/** One pre-flight check of a target: its name, whether it passed, and what it found (or what to do). */
export interface PreflightCheck {
  check: string;
  ok: boolean;
  detail: string;
}

/**
 * The pre-flight checks of one target. `refusal`: the first failed check's message (null: the target can run
 * the VM). `vmWide`: the VM itself fails (no target could pass). `deferred`: a host did not answer, nothing was
 * checked (the create tasks' threshold decides, as before checks existed).
 */
export interface PreflightResult {
  checks: PreflightCheck[];
  refusal: string | null;
  vmWide: boolean;
  deferred?: string;
}

/** One target the dry run considered: its pre-flight checks, its storage, and whether it would be chosen. */
export interface PlannedCandidate {
  host: string;
  checks: PreflightCheck[];
  /** Why its storage cannot take the VM (null: it can, or it was not asked because a check failed). */
  storageRefusal: string | null;
  chosen: boolean;
}

/** How long the copy would take, and whether a live one is likely to converge. */
export interface CopyEstimate {
  /** Bytes that would cross the wire: copied disks (virtual size) + memory for a live migration. */
  copyBytes: number;
  bandwidthMiBps: number | null;
  /** Where the bandwidth figure comes from: the request's limit, or the rate of this fleet's recent migrations. */
  bandwidthFrom: 'request' | 'history' | null;
  copySeconds: number | null;
  /** The guest's memory dirty rate as QEMU measured it just now (live migrations of running VMs). */
  dirtyRateMiBps: number | null;
  /** Dirty rate below the bandwidth: each memory pass is shorter than the last. null: not known. */
  likelyToConverge: boolean | null;
  note: string;
}

/** `ferry migrate --dry-run`: what a migration would do now, with nothing claimed, created or changed. */
export interface MigrationPlan {
  wouldMigrate: boolean;
  /** Why not (null when it would go). */
  reason: string | null;
  mode: MigrationMode;
  vm: { name: string; uuid: string; state: MovableState | null };
  source: string;
  target: string | null;
  candidates: PlannedCandidate[];
  /** Hosts placement filtered out or ranked lower (capacity, health, busy), with why. */
  placementRejected: { host: string; reason: string }[];
  /** Per disk: shared or copied; for the chosen target only. */
  disks: (ReportedDisk & { sizeBytes: number })[];
  /** What the create tasks would create on the target, in order. */
  creates: string[];
  estimate: CopyEstimate | null;
}

export interface HostRef {
  name: string;
  address: string;
  uri: string;
}

/** The states a VM moves in: running and paused VMs live (a paused one stays paused), stopped ones cold. */
export type MovableState = 'running' | 'paused' | 'stopped';
export type MigrationMode = 'live' | 'cold';

export function isMovableState(s: string): s is MovableState {
  return s === 'running' || s === 'paused' || s === 'stopped';
}

/**
 * libvirt domain state -> inventory VM state. `blocked` is a running domain waiting on a resource; `shutdown`
 * is still running but on its way down, so it is not offered for migration (`unknown`); `crashed` is no longer
 * running.
 */
const DOMAIN_TO_VM_STATE: Record<string, VmState> = {
  running: 'running',
  blocked: 'running',
  paused: 'paused',
  pmsuspended: 'paused',
  shutoff: 'stopped',
  crashed: 'stopped',
  shutdown: 'unknown',
  nostate: 'unknown',
};

export function vmStateOfDomain(state: string | null): VmState {
  return (state !== null ? DOMAIN_TO_VM_STATE[state] : undefined) ?? 'unknown';
}

/** How a VM in this state moves. Runs recorded before VmFacts had a state moved running VMs, live. */
export function modeOf(vm: Pick<VmFacts, 'state'>): MigrationMode {
  return vm.state === 'stopped' ? 'cold' : 'live';
}

/** What step 2 learned about the VM (inventory, cross-checked with libvirt on the source). */
export interface VmFacts {
  uuid: string;
  name: string;
  /** Its state when the migration began (absent in runs recorded before: running). */
  state?: MovableState;
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
  /** The memory copy: bytes of guest memory sent so far (iterations re-send dirtied pages), and its rate. */
  memory?: CopyFigures;
  /** The disk copy, all copied disks together (absent when no disk is copied). */
  disk?: CopyFigures;
  /** Each copied disk's copy while libvirt runs it (its NBD mirror job); empty before it starts and after it ends. */
  disks?: DiskCopyProgress[];
}

/** One copy stream's progress: bytes done of the total, and the rate measured over the last few seconds. */
export interface CopyFigures {
  processedBytes: number | null;
  totalBytes: number | null;
  /** null until two samples exist. */
  bytesPerSec: number | null;
}

/** One copied disk, as the progress query shows it. */
export interface DiskCopyProgress extends CopyFigures {
  /** Guest device, e.g. vda. */
  target: string;
  /** The copy's speed limit as libvirt reports it, MiB/s; null = unlimited. */
  bandwidthMiBps: number | null;
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
  /**
   * The longest time the guest did not answer its network probes over the migration, where something probed it
   * (the lab's Linux guests: every 10 ms); absent otherwise. libvirt's `downtimeMs` is the pause it measured.
   */
  guestDowntimeMs?: number;
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
  /** Live (running and paused VMs) or cold (stopped VMs); null until the VM was read. */
  mode: MigrationMode | null;
  /** Whether the migration stream is encrypted (common/security.ts); null until the copy starts. */
  streamEncrypted?: boolean | null;
  vm: { name: string; uuid: string };
  source: string;
  target: string | null;
  startedAt: string;
  /** Deadline of the migration step (ISO), once it started. */
  deadline: string | null;
  artifacts: Artifact[];
  /** Per disk: shared with the target or copied (null until the storage plan is made). */
  disks: ReportedDisk[] | null;
  /** Targets claimed and given back so far (a pre-flight check or their storage refused the VM), with why. */
  rejectedTargets: RejectedTarget[];
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
  /** Live or cold; null when the VM was never read. */
  mode: MigrationMode | null;
  /**
   * The copy crossed the network encrypted: live, QEMU's migration TLS (`--tls`: memory and disks); cold, the
   * worker's qemu+tls / qemu+ssh connections. False when no copy started.
   */
  streamEncrypted: boolean;
  workflowId: string;
  runId: string;
  vm: string;
  vmUuid: string;
  source: string;
  target: string | null;
  createAttempts: Record<string, number>;
  /** Per disk: shared with the target (not copied) or copied; null when no target was planned. */
  disks: ReportedDisk[] | null;
  /** Targets refused after the claim (a pre-flight check, or storage such as a same-name volume Ferry did not create), with why. */
  rejectedTargets: RejectedTarget[];
  durationMs: number;
  downtimeMs: number | null;
  /** Guest-observed downtime (CompletedMigrationStats.guestDowntimeMs), null when nothing probed the guest. */
  guestDowntimeMs: number | null;
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

/** A claimed target given back: which check refused it (`storage` or a pre-flight check's name) and why. */
export interface RejectedTarget {
  host: string;
  reason: string;
  check?: string;
}

/** A disk as the progress query and the report show it. `flattened`: a backing chain copied into one image. */
export interface ReportedDisk {
  target: string;
  path: string;
  layout: DiskLayout;
  flattened?: boolean;
}

export interface CreateTaskResult {
  attempt: number;
  /** Whether this task created something (false: it was there already, e.g. the `default` pool). */
  created?: boolean;
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

