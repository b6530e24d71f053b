/**
 * What every activity module is built from: the inventory, the Hypervisor port, and the few helpers that
 * talk back to the running workflow (live progress, create-task attempts).
 */
import { Context } from '@temporalio/activity';
import type { ProgressSignal } from '../common/migration';
import type { Hypervisor } from '../hypervisor/port';
import type { Inventory } from '../inventory/store';

/**
 * Something outside libvirt that watched the guest's network during the migration (the lab's prober): the longest
 * time the guest did not answer from `fromMs` to `toMs`, null when it did not watch this VM.
 */
export interface GuestObserver {
  longestGapMs(vmUuid: string, fromMs: number, toMs: number): Promise<number | null>;
}

export interface ActivityDeps {
  inventory: Inventory;
  hypervisor: Hypervisor;
  /** Delivers live progress to the running workflow (the worker wires a Temporal client in). */
  signalProgress?: (workflowId: string, progress: ProgressSignal) => Promise<void>;
  /** Temporal's status of a workflow ID (`RUNNING`, `TERMINATED`, … `NOT_FOUND`): reconciliation asks it. */
  workflowStatus?: (workflowId: string) => Promise<string>;
  /** How often the migrate activity samples libvirt's job statistics. Default 1 s. */
  jobPollIntervalMs?: number;
  /** How often it forwards them to the workflow (each one is a history event). Default 2 s. */
  progressSignalIntervalMs?: number;
  /** Guest-observed downtime (`guestDowntimeMs` in the result) where something watches the guests. */
  guestObserver?: GuestObserver;
}

export interface ActivityRuntime {
  inventory: Inventory;
  hv: Hypervisor;
  jobPollMs: number;
  signalEveryMs: number;
  workflowStatus: ((workflowId: string) => Promise<string>) | undefined;
  guestObserver: GuestObserver | undefined;
  /** Sends live progress to the calling workflow; best effort (a lost sample never fails a step). */
  report(progress: ProgressSignal): Promise<void>;
  /** The current attempt of a create task; a retry is reported to the workflow as it begins. */
  noteAttempt(task: string): Promise<number>;
}

export function activityRuntime(deps: ActivityDeps): ActivityRuntime {
  const report = async (progress: ProgressSignal): Promise<void> => {
    if (!deps.signalProgress) return;
    try {
      const wf = Context.current().info.workflowExecution;
      if (!wf) throw new Error('Ferry activities run inside workflows only');
      await deps.signalProgress(wf.workflowId, progress);
    } catch {
      // Progress is best effort: a lost sample must never fail a migration.
    }
  };
  return {
    inventory: deps.inventory,
    hv: deps.hypervisor,
    jobPollMs: deps.jobPollIntervalMs ?? 1000,
    signalEveryMs: deps.progressSignalIntervalMs ?? 2000,
    workflowStatus: deps.workflowStatus,
    guestObserver: deps.guestObserver,
    report,
    async noteAttempt(task: string): Promise<number> {
      const attempt = Context.current().info.attempt;
      if (attempt > 1) await report({ createTask: { task, attempt } });
      return attempt;
    },
  };
}
