/**
 * Fleet operations for programs and the CLI: host evacuations and scheduled evacuation batches
 * (Temporal Schedules), plus the scheduled inventory sync.
 */
import {
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  WorkflowExecutionAlreadyStartedError,
  type Client,
  type ScheduleSpec,
  type WorkflowHandle,
} from '@temporalio/client';
import { MONTHS } from '@temporalio/client';
import type { EvacuateHostInput, EvacuationProgress, EvacuationResult } from '../common/evacuation';
import { validateEvacuation } from '../common/evacuation';
import { parseDuration } from '../common/durations';
import { isHostRef } from '../common/names';
import { InputError } from '../common/validation';
import { cancelEvacuationSignal, evacuationProgressQuery, pauseSignal, resumeSignal, WORKFLOW_TYPES, type CancelEvacuationRequest } from '../workflows/definitions';

export type { EvacuateHostInput, EvacuationProgress, EvacuationResult, VmEvacuation } from '../common/evacuation';

export function evacuationWorkflowId(host: string): string {
  return `ferry-evacuate-${host}`;
}

export class EvacuationAlreadyRunningError extends Error {
  override readonly name = 'EvacuationAlreadyRunningError';
  constructor(readonly host: string) {
    super(`${host} is already being evacuated (workflow ${evacuationWorkflowId(host)}): follow it with \`ferry evacuate --host ${host} --attach\` or cancel it`);
  }
}

export class EvacuationHandle {
  constructor(readonly workflow: WorkflowHandle) {}
  get workflowId(): string {
    return this.workflow.workflowId;
  }
  progress(): Promise<EvacuationProgress> {
    return this.workflow.query(evacuationProgressQuery);
  }
  async result(): Promise<EvacuationResult> {
    try {
      return (await this.workflow.result()) as EvacuationResult;
    } catch (err) {
      // A cancelled evacuation still reports what happened to each VM.
      const details = (err as { cause?: { details?: unknown[] } }).cause?.details;
      const first = Array.isArray(details) ? details[0] : undefined;
      if (first && typeof first === 'object' && 'vms' in first) return first as EvacuationResult;
      throw err;
    }
  }
  pause(): Promise<void> {
    return this.workflow.signal(pauseSignal);
  }
  resume(): Promise<void> {
    return this.workflow.signal(resumeSignal);
  }
  /** Running migrations are cancelled and compensate; `restoreHostState` puts the host back in its earlier state. */
  cancel(opts: CancelEvacuationRequest = {}): Promise<void> {
    return this.workflow.signal(cancelEvacuationSignal, opts);
  }
}

export async function startEvacuation(client: Client, taskQueue: string, input: EvacuateHostInput): Promise<EvacuationHandle> {
  validateEvacuation(input); // throws InputError before anything starts
  try {
    const handle = await client.workflow.start(WORKFLOW_TYPES.evacuateHost, {
      taskQueue,
      workflowId: evacuationWorkflowId(input.host),
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
    });
    return new EvacuationHandle(handle);
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new EvacuationAlreadyRunningError(input.host);
    throw err;
  }
}

export function getEvacuation(client: Client, host: string): EvacuationHandle {
  return new EvacuationHandle(client.workflow.getHandle(evacuationWorkflowId(host)));
}

// ---- schedules ---------------------------------------------------------------------------------------

export type When = { at: string } | { cron: string } | { every: string };

export interface EvacuationScheduleOptions extends Omit<EvacuateHostInput, 'host'> {
  hosts: string[];
  when: When;
  scheduleId?: string;
  note?: string;
}

/**
 * Overlap policy SKIP: when a batch is still running at its next due time, that run is skipped (draining
 * the same hosts twice at once makes no sense); missed runs are caught up within 10 minutes of a server outage.
 */
export const SCHEDULE_POLICIES = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '10m' } as const;

export function scheduleSpec(when: When): { spec: ScheduleSpec; remainingActions?: number } {
  if ('at' in when) {
    const t = new Date(when.at);
    if (Number.isNaN(t.getTime())) throw new InputError([`--at "${when.at}" is not an ISO time like 2026-11-26T22:00:00Z`]);
    const month = MONTHS[t.getUTCMonth()];
    if (month === undefined) throw new InputError([`--at "${when.at}" has no month`]);
    return {
      spec: {
        calendars: [
          {
            year: t.getUTCFullYear(),
            month,
            dayOfMonth: t.getUTCDate(),
            hour: t.getUTCHours(),
            minute: t.getUTCMinutes(),
            second: t.getUTCSeconds(),
          },
        ],
        timezone: 'UTC',
      },
      remainingActions: 1,
    };
  }
  if ('cron' in when) {
    if (when.cron.trim().split(/\s+/).length < 5) throw new InputError([`--cron "${when.cron}" needs 5 fields like "0 2 * * SAT"`]);
    return { spec: { cronExpressions: [when.cron], timezone: 'UTC' } };
  }
  const every = parseDuration(when.every);
  if (every === null || every < 10_000) throw new InputError([`--every "${when.every}" must be a duration of at least 10s like "1h"`]);
  return { spec: { intervals: [{ every }] } };
}

export async function createEvacuationSchedule(client: Client, taskQueue: string, o: EvacuationScheduleOptions): Promise<string> {
  if (o.hosts.length === 0) throw new InputError(['at least one host to evacuate']);
  const { hosts, when, scheduleId, note, ...evacuation } = o;
  for (const host of hosts) validateEvacuation({ ...evacuation, host });
  const id = scheduleId ?? `ferry-evacuate-${hosts.join('-')}`;
  if (!isHostRef(id)) throw new InputError([`schedule id "${id}" may only hold letters, digits, ".", "-", "_"`]);
  const { spec, remainingActions } = scheduleSpec(when);
  try {
    await client.schedule.create({
      scheduleId: id,
      spec,
      action: {
        type: 'startWorkflow',
        workflowType: WORKFLOW_TYPES.evacuateHosts,
        workflowId: `ferry-batch-${id}`,
        taskQueue,
        args: [{ ...evacuation, hosts }],
      },
      policies: SCHEDULE_POLICIES,
      state: { note: note ?? `evacuate ${hosts.join(', ')}`, ...(remainingActions !== undefined ? { remainingActions } : {}) },
    });
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning) throw new InputError([`a schedule with id ${id} exists already: delete it or pass another --id`]);
    throw err;
  }
  return id;
}

/** Runs `ferry inventory sync` as a workflow on a schedule (default every minute). */
export async function createSyncSchedule(client: Client, taskQueue: string, every = '1m', scheduleId = 'ferry-inventory-sync'): Promise<string> {
  const { spec } = scheduleSpec({ every });
  try {
    await client.schedule.create({
      scheduleId,
      spec,
      action: { type: 'startWorkflow', workflowType: WORKFLOW_TYPES.syncInventory, workflowId: `ferry-sync`, taskQueue, args: [{}] },
      policies: SCHEDULE_POLICIES,
      state: { note: `inventory sync every ${every}` },
    });
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning) {
      await client.schedule.getHandle(scheduleId).update((prev) => ({ ...prev, spec }));
    } else throw err;
  }
  return scheduleId;
}

export interface ScheduleRow {
  id: string;
  workflowType: string | null;
  paused: boolean;
  note: string | null;
  next: string | null;
  recent: string[];
}

export async function listSchedules(client: Client): Promise<ScheduleRow[]> {
  const out: ScheduleRow[] = [];
  for await (const s of client.schedule.list()) {
    if (!s.scheduleId.startsWith('ferry-')) continue;
    out.push({
      id: s.scheduleId,
      workflowType: s.action?.type === 'startWorkflow' ? s.action.workflowType : null,
      paused: s.state.paused,
      note: s.state.note ?? null,
      next: s.info?.nextActionTimes?.[0]?.toISOString() ?? null,
      recent: (s.info?.recentActions ?? []).map((a) => a.takenAt.toISOString()),
    });
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}
