/**
 * Where a workflow's time went, from its Temporal history (server timestamps): every activity's
 * scheduled → started (Temporal scheduling latency: the task waits for a poller) and started → closed (the
 * activity's own work), every workflow task's scheduled → started → completed, and what is left.
 */
import type { temporal } from '@temporalio/proto';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

export interface ActivityTiming {
  type: string;
  attempt: number;
  scheduledAt: number;
  startedAt: number;
  closedAt: number;
  /** started − scheduled */
  scheduleToStartMs: number;
  /** closed − started */
  runMs: number;
}

export interface WorkflowTaskTiming {
  scheduledAt: number;
  startedAt: number;
  completedAt: number;
}

export interface HistoryTimings {
  startedAt: number;
  closedAt: number;
  durationMs: number;
  events: number;
  activities: ActivityTiming[];
  workflowTasks: WorkflowTaskTiming[];
  /** Σ scheduled→started over the activities. */
  activityScheduleToStartMs: number;
  /** Σ scheduled→completed over the workflow tasks (the workflow code's turns, incl. their queueing). */
  workflowTaskMs: number;
  /** Σ closed(activity k) → scheduled(activity k+1) for consecutive activities: the workflow-task round trips. */
  betweenActivitiesMs: number;
  signals: number;
}

export function eventMs(e: HistoryEvent): number {
  const t = e.eventTime;
  if (!t) return NaN;
  return Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
}

export function historyTimings(events: readonly HistoryEvent[]): HistoryTimings {
  const scheduled = new Map<string, { type: string; at: number }>();
  const started = new Map<string, { at: number; attempt: number }>();
  const activities: ActivityTiming[] = [];
  const wftScheduled = new Map<string, number>();
  const wftStarted = new Map<string, number>();
  const workflowTasks: WorkflowTaskTiming[] = [];
  let signals = 0;
  const id = (v: unknown) => String(v);
  for (const e of events) {
    const at = eventMs(e);
    if (e.activityTaskScheduledEventAttributes) {
      scheduled.set(id(e.eventId), { type: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?', at });
    } else if (e.activityTaskStartedEventAttributes) {
      started.set(id(e.activityTaskStartedEventAttributes.scheduledEventId), { at, attempt: e.activityTaskStartedEventAttributes.attempt ?? 1 });
    } else {
      const closed =
        e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes ?? e.activityTaskCanceledEventAttributes;
      if (closed) {
        const sid = id(closed.scheduledEventId);
        const s = scheduled.get(sid);
        const st = started.get(sid);
        if (s && st) {
          activities.push({
            type: s.type,
            attempt: st.attempt,
            scheduledAt: s.at,
            startedAt: st.at,
            closedAt: at,
            scheduleToStartMs: st.at - s.at,
            runMs: at - st.at,
          });
        }
      }
    }
    if (e.workflowTaskScheduledEventAttributes) wftScheduled.set(id(e.eventId), at);
    if (e.workflowTaskStartedEventAttributes) wftStarted.set(id(e.workflowTaskStartedEventAttributes.scheduledEventId), at);
    if (e.workflowTaskCompletedEventAttributes) {
      const sid = id(e.workflowTaskCompletedEventAttributes.scheduledEventId);
      const s = wftScheduled.get(sid);
      const st = wftStarted.get(sid);
      if (s !== undefined && st !== undefined) workflowTasks.push({ scheduledAt: s, startedAt: st, completedAt: at });
    }
    if (e.workflowExecutionSignaledEventAttributes) signals++;
  }
  const first = events[0];
  const last = events[events.length - 1];
  const startedAt = first ? eventMs(first) : NaN;
  const closedAt = last ? eventMs(last) : NaN;
  const ordered = [...activities].sort((a, b) => a.scheduledAt - b.scheduledAt);
  let between = 0;
  for (let i = 1; i < ordered.length; i++) {
    const gap = ordered[i]!.scheduledAt - ordered[i - 1]!.closedAt;
    if (gap > 0) between += gap;
  }
  return {
    startedAt,
    closedAt,
    durationMs: closedAt - startedAt,
    events: events.length,
    activities: ordered,
    workflowTasks,
    activityScheduleToStartMs: activities.reduce((s, a) => s + a.scheduleToStartMs, 0),
    workflowTaskMs: workflowTasks.reduce((s, w) => s + (w.completedAt - w.scheduledAt), 0),
    betweenActivitiesMs: between,
    signals,
  };
}
