/**
 * Names of the failure types Ferry raises (Temporal ApplicationFailure `type`). Shared by the workflow,
 * the activities and the client, so that callers can tell bad input from a compensated abort.
 * Besides these, a libvirt error surfaces as `Libvirt.<kind>` (hypervisor/errors.ts: its kind says whether
 * a retry can help) and an unexpected error keeps its JavaScript name (retryable).
 */
export const FailureType = {
  /** The workflow input is malformed. Nothing was created, nothing changed. */
  InvalidInput: 'InvalidInput',
  /** The VM is unknown, does not match its name/UUID/source, or libvirt disagrees with the inventory. */
  VmNotFound: 'VmNotFound',
  VmMismatch: 'VmMismatch',
  /** The VM's storage layout cannot be migrated by Ferry (see README: storage layout). */
  UnsupportedVm: 'UnsupportedVm',
  /** No host passed placement (or the given target did not). Nothing was created. */
  NoTargetHost: 'NoTargetHost',
  /** Another migration of this VM is in flight. */
  VmBusy: 'VmBusy',
  /** A create task on the target failed `threshold` times; compensated. */
  CreateTaskFailed: 'CreateTaskFailed',
  /** The migration did not finish before its deadline; the job was aborted and compensated. */
  MigrationTimedOut: 'MigrationTimedOut',
  /**
   * Raised by the migrate activity when the progress deadline passed (no new low of the remaining data for
   * the progress timeout) and it aborted the job; the workflow compensates and ends MigrationTimedOut.
   */
  MigrationStalled: 'MigrationStalled',
  /** libvirt's migration job failed; compensated. */
  MigrationFailed: 'MigrationFailed',
  /** An operator cancelled the migration; compensated. */
  MigrationCancelled: 'MigrationCancelled',
  /**
   * The target holds storage Ferry did not create (or a domain uses) where the VM's copy would go: nothing was
   * touched; with automatic placement another target is tried.
   */
  StorageConflict: 'StorageConflict',
  /**
   * The target cannot run the VM (a pre-flight check failed: a bridge or network it lacks, its CPU, its machine
   * type, a host device, a file the VM reads that is not there): nothing was created; with automatic placement
   * another target is tried.
   */
  PreflightFailed: 'PreflightFailed',
  /** A compensation step refused to act because it would harm a running VM. */
  UnsafeCleanup: 'UnsafeCleanup',
  /**
   * Retryable: a target-side deletion waits for libvirt to drop the paused, transient domain of an incoming
   * migration (its QEMU may still hold the disk).
   */
  IncomingDomainPresent: 'IncomingDomainPresent',
} as const;
export type FailureType = (typeof FailureType)[keyof typeof FailureType];

/** Failure types that mean "the request itself is wrong" (CLI exit code 2). */
export const BAD_INPUT_FAILURES: readonly string[] = [
  FailureType.InvalidInput,
  FailureType.VmNotFound,
  FailureType.VmMismatch,
  FailureType.UnsupportedVm,
  FailureType.NoTargetHost,
  FailureType.VmBusy,
  FailureType.StorageConflict,
  FailureType.PreflightFailed,
];
