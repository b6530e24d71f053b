/**
 * What a finished liveMigration says: its report (the result, or the details of its failure), its history
 * row, and the failure it ends with after compensating.
 */
import { ApplicationFailure, CancelledFailure, isCancellation, upsertMemo, workflowInfo } from '@temporalio/workflow';
import type { Artifact, CompletedMigrationStats, LocateResult, MigrationReport } from '../common/migration';
import type { HistoryRecord, MigrationResultKind } from '../common/types';
import { FailureType } from '../common/failures';
import { rootApplicationFailure, rootMessage, StepFailure, type Outcome } from './failures';
import { targetOf, vmOf, type MigrationRun } from './migration-state';

/** Why the migration stopped, and the failure type it ends with. */
export interface FailureSummary {
  outcome: Outcome;
  type: string;
  message: string;
  /** A failure raised before anything was claimed keeps its own type (bad input, no host, …). */
  original: unknown;
}

export function describeFailure(run: MigrationRun, err: unknown): FailureSummary {
  if (err instanceof StepFailure) return { outcome: err.outcome, type: err.type, message: err.message, original: err };
  if (isCancellation(err)) {
    return { outcome: 'cancelled', type: FailureType.MigrationCancelled, message: run.cancel?.reason ?? 'cancelled by operator', original: err };
  }
  return { outcome: 'failed', type: rootApplicationFailure(err)?.type ?? 'Error', message: rootMessage(err), original: err };
}

/** The failure the workflow ends with: with the report once something was claimed, the original failure before. */
export function finalFailure(run: MigrationRun, f: FailureSummary, report: MigrationReport | null, where: LocateResult | null): Error {
  if (report === null) {
    // Before any claim: surface the original failure (its type tells the CLI "bad input").
    if (f.outcome === 'cancelled') {
      const message = `${f.message}; nothing had been changed`;
      return cancelled(message, buildReport(run, 'cancelled', message, null, null, false, []));
    }
    const app = rootApplicationFailure(f.original);
    if (f.original instanceof ApplicationFailure) return f.original;
    return ApplicationFailure.create({ type: app?.type ?? f.type, message: f.message, nonRetryable: true, details: app?.details ? [...app.details] : [] });
  }
  const placeNote =
    where?.location === 'source'
      ? `VM running on ${vmOf(run.reached)?.source.name}`
      : `VM location unknown (source ${where?.sourceState ?? '?'}, target ${where?.targetState ?? '?'})`;
  const cleaned = report.warnings.length === 0 ? 'target cleaned' : `target NOT fully cleaned: ${report.warnings.join('; ')}`;
  const message = `${f.message}. Compensated: ${placeNote}; ${cleaned}.`;
  if (f.outcome === 'cancelled' && run.cancel === null) return cancelled(message, report);
  return ApplicationFailure.create({ type: f.type, message, nonRetryable: true, details: [report] });
}

/**
 * A Temporal cancel ends the workflow as Canceled, and a cancelled workflow's result carries no details:
 * the report goes into the memo, where `FerryClient` (and the Web UI) find it.
 */
function cancelled(message: string, report: MigrationReport): CancelledFailure {
  upsertMemo({ report });
  return new CancelledFailure(message, [report]);
}

export function buildReport(
  run: MigrationRun,
  status: MigrationResultKind,
  reason: string | null,
  stats: CompletedMigrationStats | null,
  where: LocateResult | null,
  sourceCleaned: boolean,
  warnings: string[],
): MigrationReport {
  const info = workflowInfo();
  const vm = vmOf(run.reached);
  const { clock } = run;
  return {
    status,
    mode: run.progress.mode,
    streamEncrypted: run.progress.streamEncrypted === true,
    workflowId: info.workflowId,
    runId: info.runId,
    vm: vm?.name ?? run.progress.vm.name,
    vmUuid: vm?.uuid ?? run.progress.vm.uuid,
    source: vm?.source.name ?? run.progress.source,
    target: targetOf(run.reached)?.name ?? null,
    createAttempts: { ...run.progress.createAttempts },
    disks: run.progress.disks,
    rejectedTargets: [...run.rejectedTargets],
    durationMs: Date.now() - clock.startedAt,
    downtimeMs: stats?.downtimeMs ?? null,
    guestDowntimeMs: stats?.guestDowntimeMs ?? null,
    bytesTransferred: stats?.bytesTransferred ?? null,
    migrationMs: clock.migrationMs,
    timeoutMs: clock.timeoutMs,
    phaseMs: { ...clock.phaseMs },
    claimedAt: clock.claimedAt === null ? null : new Date(clock.claimedAt).toISOString(),
    releasedAt: clock.releasedAt === null ? null : new Date(clock.releasedAt).toISOString(),
    reason,
    location: where?.location ?? null,
    limitFired: run.progress.convergence?.limitFired ?? null,
    convergenceEvents: run.progress.convergence?.events ?? [],
    sourceCleaned,
    warnings,
  };
}

export function historyRow(run: MigrationRun, r: MigrationReport): HistoryRecord {
  return {
    workflowId: r.workflowId,
    runId: r.runId,
    vmUuid: r.vmUuid,
    vmName: r.vm,
    source: r.source,
    target: r.target,
    result: r.status,
    reason: r.reason,
    startedAt: new Date(run.clock.startedAt).toISOString(),
    endedAt: new Date().toISOString(),
    durationMs: r.durationMs,
    downtimeMs: r.downtimeMs,
    bytesTransferred: r.bytesTransferred,
    createAttempts: r.createAttempts,
    phaseMs: r.phaseMs,
  };
}

/** What compensation is doing to an artifact, for `waitingFor` and warnings. */
export function describeArtifact(a: Artifact): string {
  if (a.kind === 'volume') return `deleting volume ${a.name}`;
  if (a.kind === 'pool') return `stopping pool ${a.pool}`;
  return `removing directory ${a.path}`;
}
