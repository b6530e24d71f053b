/** Signals and queries shared between Ferry's workflows (sandbox-safe definitions only). */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { Phase } from '../common/migration';
import type { EvacuationProgress } from '../common/evacuation';

/** A child liveMigration tells its parent evacuation about each phase change. */
export interface ChildPhase {
  vmUuid: string;
  phase: Phase;
  target: string | null;
  waitingFor: string | null;
}
export const childPhaseSignal = defineSignal<[ChildPhase]>('ferry.child-phase');

/** Evacuation controls. */
export const evacuationProgressQuery = defineQuery<EvacuationProgress>('progress');
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** Cancel an evacuation: running migrations are cancelled (and compensate); `restoreHostState` puts the host back. */
export const cancelEvacuationSignal = defineSignal<[{ restoreHostState?: boolean; reason?: string } | undefined]>('cancel');
