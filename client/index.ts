/**
 * Ferry's typed client: start, await, query and cancel live migrations from any Node program.
 * The `ferry` CLI is built on it.
 *
 *   const ferry = await FerryClient.connect();
 *   const handle = await ferry.startMigration({ sourceHost: '10.213.77.11', vmName: 'vm1', vmUuid: '…' });
 *   console.log(await handle.progress());
 *   const outcome = await handle.outcome();   // { status: 'migrated' | 'aborted' | 'timed-out' | 'cancelled' | 'failed', … }
 */
import {
  CancelledFailure,
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
} from '@temporalio/client';
import { ApplicationFailure, TerminatedFailure, TimeoutFailure } from '@temporalio/common';
import { randomUUID } from 'node:crypto';
import type { ReconciledVm, ReconcileOptions } from '../common/reconcile';
import type { ConvergenceView, MigrationPlan, MigrationProgress, MigrationReport, TuneRequest } from '../common/migration';
import { BAD_INPUT_FAILURES, FailureType } from '../common/failures';
import { migrationWorkflowId } from '../common/names';
import { InputError, validateMigrationInput, type LiveMigrationInput } from '../common/validation';
import { cancelSignal, progressQuery, tuneUpdate, WORKFLOW_TYPES } from '../workflows/definitions';
import { clientConnectionOptions, describeTarget, taskQueue, temporalTarget, type TemporalTarget } from './config';

export type { LiveMigrationInput, LiveMigrationOptions, ConvergenceInput } from '../common/validation';
export type { ReconciledVm, ReconcileOptions, ReconcileAction } from '../common/reconcile';
export type { MigrationProgress, MigrationReport, MigrationPlan, Artifact, Phase, TuneRequest, ConvergenceView, LimitFired } from '../common/migration';
export { InputError } from '../common/validation';
export { migrationWorkflowId } from '../common/names';

/** Workflow type names, as the Web UI's start form wants them. */
export { WORKFLOW_TYPES } from '../workflows/definitions';

/** The migration was refused before anything changed (bad input, unknown VM, no target, VM busy). */
export class MigrationRejectedError extends Error {
  override readonly name = 'MigrationRejectedError';
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** Another migration of this VM is running (workflow IDs derive from the VM UUID). */
export class MigrationAlreadyRunningError extends MigrationRejectedError {
  constructor(
    readonly vmUuid: string,
    readonly workflowId: string,
  ) {
    super(
      FailureType.VmBusy,
      `VM ${vmUuid} is already being migrated (workflow ${workflowId}): follow it with \`ferry status ${vmUuid}\` or stop it with \`ferry cancel ${vmUuid}\``,
    );
  }
}

export type MigrationOutcome = MigrationReport;

export class MigrationHandle {
  constructor(readonly workflow: WorkflowHandle) {}

  get workflowId(): string {
    return this.workflow.workflowId;
  }

  /** Phase, target, artifacts, create-task attempts, live job statistics. */
  progress(): Promise<MigrationProgress> {
    return this.workflow.query(progressQuery);
  }

  /** Whether the workflow is still running. */
  async isRunning(): Promise<boolean> {
    const d = await this.workflow.describe();
    return d.status.name === 'RUNNING';
  }

  /**
   * Waits for the end. Resolves with the report for every compensated ending too (status aborted /
   * timed-out / cancelled / failed); rejects with MigrationRejectedError when the request was refused
   * before anything changed, and with the underlying error when Temporal itself fails.
   */
  async outcome(): Promise<MigrationOutcome> {
    try {
      return (await this.workflow.result()) as MigrationReport;
    } catch (err) {
      if (err instanceof WorkflowFailedError && err.cause instanceof CancelledFailure && !err.cause.details?.length) {
        // Cancelled workflows carry no result details; the workflow leaves its report in the memo.
        const memo = (await this.workflow.describe()).memo as { report?: MigrationReport } | undefined;
        if (memo?.report) return memo.report;
      }
      return outcomeOfFailure(err);
    }
  }

  /**
   * Tunes the running copy (Temporal update `tune`): raise the max downtime, change the bandwidth, switch
   * to post-copy now. Resolves with the convergence view; a refused tune rejects with the reason.
   */
  async tune(req: TuneRequest): Promise<ConvergenceView> {
    try {
      return await this.workflow.executeUpdate(tuneUpdate, { args: [req] });
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError && err.cause instanceof Error) throw new Error(err.cause.message);
      throw err;
    }
  }

  /** Operator cancel (Temporal cancellation): the workflow compensates, then ends cancelled. */
  async cancel(): Promise<void> {
    await this.workflow.cancel();
  }

  /** Operator cancel by signal, with a reason recorded in the history. */
  async cancelWithReason(reason: string): Promise<void> {
    await this.workflow.signal(cancelSignal, { reason });
  }
}

export function outcomeOfFailure(err: unknown): MigrationOutcome {
  if (!(err instanceof WorkflowFailedError)) throw err;
  const cause = err.cause;
  if (cause instanceof ApplicationFailure || cause instanceof CancelledFailure) {
    const report = cause.details?.[0] as MigrationReport | undefined;
    if (report && typeof report === 'object' && 'status' in report) return report;
    const type = cause instanceof ApplicationFailure ? (cause.type ?? 'Error') : FailureType.MigrationCancelled;
    if (BAD_INPUT_FAILURES.includes(type)) throw new MigrationRejectedError(type, cause.message);
    if (cause instanceof CancelledFailure) throw new MigrationRejectedError(FailureType.MigrationCancelled, cause.message);
    throw new Error(`migration failed: ${cause.message}`);
  }
  if (cause instanceof TerminatedFailure) throw new Error(`the migration workflow was terminated: ${cause.message}`);
  if (cause instanceof TimeoutFailure) throw new Error(`the migration workflow timed out: ${cause.message}`);
  throw err;
}

/**
 * Temporal's status of a workflow ID's latest run: `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, `TERMINATED`,
 * `TIMED_OUT`, …, or `NOT_FOUND` when there is none (never started, or past the namespace's retention).
 */
export async function workflowStatusOf(client: Client, workflowId: string): Promise<string> {
  try {
    return (await client.workflow.getHandle(workflowId).describe()).status.name;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return 'NOT_FOUND';
    throw err;
  }
}

export interface FerryClientOptions {
  /** Defaults to the standard TEMPORAL_* environment (see client/config.ts). */
  target?: TemporalTarget;
  taskQueue?: string;
}

export class FerryClient {
  constructor(
    readonly client: Client,
    readonly taskQueue: string,
    private readonly ownsConnection: boolean,
  ) {}

  static async connect(opts: FerryClientOptions = {}): Promise<FerryClient> {
    const target = opts.target ?? temporalTarget();
    let connection: Connection;
    try {
      connection = await Connection.connect({ ...clientConnectionOptions(target), connectTimeout: '5s' });
    } catch (err) {
      throw new Error(
        `cannot reach Temporal at ${describeTarget(target)}: ${(err as Error).message}. Start it with \`ferry dev up\` or set TEMPORAL_ADDRESS`,
      );
    }
    const client = new Client({ connection, namespace: target.namespace });
    return new FerryClient(client, opts.taskQueue ?? taskQueue(), true);
  }

  /** Wraps an existing Temporal client (tests, programs that already have one). */
  static fromClient(client: Client, queue = taskQueue()): FerryClient {
    return new FerryClient(client, queue, false);
  }

  /**
   * Validates (throws InputError on bad input, before anything is started) and starts the workflow
   * with ID `ferry-migrate-<uuid>`; a second start while one runs throws MigrationAlreadyRunningError.
   */
  async startMigration(input: LiveMigrationInput): Promise<MigrationHandle> {
    const request = validateMigrationInput(input);
    const workflowId = migrationWorkflowId(request.vmUuid);
    try {
      const handle = await this.client.workflow.start(WORKFLOW_TYPES.liveMigration, {
        taskQueue: this.taskQueue,
        workflowId,
        args: [input],
        workflowIdConflictPolicy: 'FAIL',
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      });
      return new MigrationHandle(handle);
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new MigrationAlreadyRunningError(request.vmUuid, workflowId);
      }
      throw err;
    }
  }

  /** Starts and waits for the outcome. */
  async migrate(input: LiveMigrationInput): Promise<MigrationOutcome> {
    return (await this.startMigration(input)).outcome();
  }

  /**
   * The dry run: what `migrate(input)` would do now — target, each disk shared or copied, what would be created,
   * every check's outcome and a copy estimate — with nothing claimed, created or changed. A refusal is a plan
   * with `wouldMigrate: false`; bad input or an unknown VM throws MigrationRejectedError.
   */
  async planMigration(input: LiveMigrationInput): Promise<MigrationPlan> {
    const request = validateMigrationInput(input);
    try {
      return await this.client.workflow.execute(WORKFLOW_TYPES.planMigration, {
        taskQueue: this.taskQueue,
        workflowId: `ferry-plan-${request.vmUuid}-${randomUUID().slice(0, 8)}`,
        args: [input],
        workflowExecutionTimeout: '10m',
      });
    } catch (err) {
      const cause = err instanceof WorkflowFailedError ? err.cause : null;
      if (cause instanceof ApplicationFailure && BAD_INPUT_FAILURES.includes(cause.type ?? '')) throw new MigrationRejectedError(cause.type ?? 'Error', cause.message);
      throw err;
    }
  }

  /** The latest migration of a VM (running or finished); throws WorkflowNotFoundError if it never ran. */
  async getMigration(vmUuid: string): Promise<MigrationHandle> {
    const handle = this.client.workflow.getHandle(migrationWorkflowId(vmUuid));
    await handle.describe();
    return new MigrationHandle(handle);
  }

  /**
   * `ferry reconcile`: the workers reconcile every migration whose workflow closed without finishing or
   * compensating (terminated from outside): VM record, claim, what it created on the target. Resolves with what
   * was done per VM (with `dryRun`, what would be done; nothing changes).
   */
  async reconcile(opts: ReconcileOptions = {}): Promise<ReconciledVm[]> {
    return this.client.workflow.execute(WORKFLOW_TYPES.reconcile, {
      taskQueue: this.taskQueue,
      workflowId: `ferry-reconcile-${Date.now()}`,
      args: [opts],
    });
  }

  /** Temporal's status of a workflow ID's latest run (`RUNNING`, `TERMINATED`, …, `NOT_FOUND`). */
  workflowStatus(workflowId: string): Promise<string> {
    return workflowStatusOf(this.client, workflowId);
  }

  async close(): Promise<void> {
    if (this.ownsConnection) await this.client.connection.close();
  }
}

export { WorkflowNotFoundError };
