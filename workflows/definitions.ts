/**
 * Every workflow type, query, signal and update Ferry defines — once, here. The workflows register handlers
 * for them; the client, the CLI and the worker import them instead of spelling names as strings.
 * Definitions only (sandbox-safe, and safe to import outside the sandbox).
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ConvergenceView, MigrationProgress, Phase, ProgressSignal, TuneRequest } from '../common/migration';
import type { EvacuationProgress } from '../common/evacuation';

/** Workflow type names (what the Web UI's start form and Schedules want). workflows/index.ts exports each. */
export const WORKFLOW_TYPES = {
  liveMigration: 'liveMigration',
  planMigration: 'planMigration',
  evacuateHost: 'evacuateHost',
  evacuateHosts: 'evacuateHosts',
  syncInventory: 'syncInventory',
  reconcile: 'reconcile',
} as const;

// ---- liveMigration ------------------------------------------------------------------------------------

/** Phase, target, created artifacts, attempts per create task, migration progress. */
export const progressQuery = defineQuery<MigrationProgress>('progress');
/** Operator cancel by signal (same compensation as a Temporal cancel). */
export const cancelSignal = defineSignal<[{ reason?: string } | undefined]>('cancel');
/** Tune a running migration: raise the max downtime, change the bandwidth, switch to post-copy now. */
export const tuneUpdate = defineUpdate<ConvergenceView, [TuneRequest]>('tune');
/** Internal: live numbers from the activities (job statistics, create-task retries), sent by the worker. */
export const progressSignal = defineSignal<[ProgressSignal]>('ferry.progress');

// ---- evacuateHost -------------------------------------------------------------------------------------

/** A child liveMigration tells its parent evacuation about each phase change. */
export interface ChildPhase {
  vmUuid: string;
  phase: Phase;
  target: string | null;
  waitingFor: string | null;
}
export const childPhaseSignal = defineSignal<[ChildPhase]>('ferry.child-phase');

export const evacuationProgressQuery = defineQuery<EvacuationProgress>('progress');
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** Cancel an evacuation: running migrations are cancelled (and compensate); `restoreHostState` puts the host back. */
export interface CancelEvacuationRequest {
  restoreHostState?: boolean;
  reason?: string;
}
export const cancelEvacuationSignal = defineSignal<[CancelEvacuationRequest | undefined]>('cancel');
