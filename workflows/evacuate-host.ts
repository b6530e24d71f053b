/**
 * evacuateHost: drain one host for maintenance, durably and visibly.
 *
 *   1. validate           bad input fails at once, nothing changed
 *   2. beginEvacuation    the host goes into maintenance (never a target) and its VMs are listed
 *   3. migrateAll         each running VM moves as a child liveMigration (ID ferry-migrate-<uuid>), at most
 *                         `maxParallel` at a time, under the fleet's limits; pause stops new starts, resume
 *                         continues, cancel (or the deadline) cancels the running ones, which compensate
 *   4. finish             ask the inventory what is left on the host; the result lists every VM's outcome
 *
 * One VM that cannot move never hangs the drain: each child has its own deadlines (create-task thresholds,
 * migration timeout, queue timeout) and fails on its own while the others go on.
 *
 * evacuateHosts: a batch (what a schedule starts) — hosts drained one after another, each as a child evacuateHost.
 */
import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  condition,
  isCancellation,
  metricMeter,
  ParentClosePolicy,
  patched,
  setHandler,
  sleep,
  startChild,
  workflowInfo,
  ChildWorkflowCancellationType,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { MigrationReport } from '../common/migration';
import { FailureType } from '../common/failures';
import { migrationWorkflowId } from '../common/names';
import { InputError, type LiveMigrationInput } from '../common/validation';
import {
  evacuationSkip,
  validateEvacuation,
  type EvacuateHostInput,
  type EvacuateHostsInput,
  type EvacuationProgress,
  type EvacuationRequest,
  type EvacuationResult,
  type VmEvacuation,
  type VmEvacuationStatus,
} from '../common/evacuation';
import type { HostState } from '../common/types';
import { cancelEvacuationSignal, childPhaseSignal, evacuationProgressQuery, pauseSignal, resumeSignal } from './definitions';
import { reportOf, rootMessage } from './failures';
import { liveMigration } from './live-migration';
import { evacuationSteps as inventory } from './proxies';

export type { EvacuateHostInput, EvacuateHostsInput } from '../common/evacuation';

interface Evacuation {
  request: EvacuationRequest | null;
  progress: EvacuationProgress;
  paused: boolean;
  cancelRequested: boolean;
  restoreHostState: boolean;
  cancelReason: string | null;
  startedAt: number;
}

/** Runs started before stopped VMs moved cold skip every VM that is not running. */
const MOVE_STOPPED_PATCH = 'move-stopped';

const EMPTY_COUNTS: Record<VmEvacuationStatus, number> = { pending: 0, running: 0, migrated: 0, failed: 0, skipped: 0, cancelled: 0 };

const evacuationVms = metricMeter.createGauge('ferry_evacuation_vms', 'int', 'vms', 'VMs of a running evacuation by status');

function recount(ev: Evacuation): void {
  const counts = { ...EMPTY_COUNTS };
  for (const v of ev.progress.vms) counts[v.status] += 1;
  ev.progress.counts = counts;
  for (const [status, n] of Object.entries(counts)) evacuationVms.set(n, { host: ev.progress.host, status });
}

export async function evacuateHost(input: EvacuateHostInput): Promise<EvacuationResult> {
  const ev: Evacuation = {
    request: null,
    progress: {
      host: typeof input === 'object' && input !== null ? String(input.host ?? '') : '',
      state: 'starting',
      maxParallel: 0,
      deadline: null,
      vms: [],
      counts: { ...EMPTY_COUNTS },
    },
    paused: false,
    cancelRequested: false,
    restoreHostState: false,
    cancelReason: null,
    startedAt: Date.now(),
  };
  const drain = new CancellationScope();
  setHandler(evacuationProgressQuery, () => ev.progress);
  setHandler(pauseSignal, () => {
    ev.paused = true;
    if (ev.progress.state === 'running') ev.progress.state = 'paused';
  });
  setHandler(resumeSignal, () => {
    ev.paused = false;
    if (ev.progress.state === 'paused') ev.progress.state = 'running';
  });
  setHandler(cancelEvacuationSignal, (req) => {
    ev.cancelRequested = true;
    ev.restoreHostState = req?.restoreHostState ?? false;
    ev.cancelReason = req?.reason ?? 'evacuation cancelled by operator';
    ev.progress.state = 'cancelling';
    drain.cancel();
  });
  setHandler(childPhaseSignal, (c) => {
    const v = ev.progress.vms.find((x) => x.vmUuid === c.vmUuid);
    if (!v || v.status !== 'running') return;
    v.phase = c.phase;
    v.target = c.target ?? v.target;
    v.waitingFor = c.waitingFor;
  });

  // 1.
  const request = validate(input);
  ev.request = request;
  ev.progress.maxParallel = request.maxParallel;

  // 2.
  const begun = await inventory.beginEvacuation({ host: request.host });
  ev.progress.host = begun.host.name;
  // Runs recorded before stopped VMs moved cold (and paused ones live) skipped every VM that was not running.
  const movesStopped = patched(MOVE_STOPPED_PATCH);
  const skips = begun.vms.map((vm) => evacuationSkip(vm.state, request.skipStopped, movesStopped));
  ev.progress.vms = begun.vms.map((vm, i) => ({
    vm: vm.name,
    vmUuid: vm.uuid,
    status: skips[i] === null ? 'pending' : 'skipped',
    workflowId: migrationWorkflowId(vm.uuid),
    phase: null,
    target: null,
    waitingFor: null,
    reason: skips[i] ?? null,
    startedAt: null,
    endedAt: null,
    claimedAt: null,
    releasedAt: null,
    durationMs: null,
    downtimeMs: null,
  }));
  recount(ev);
  ev.progress.state = ev.paused ? 'paused' : 'running';

  // 3.
  let cancelledByTemporal = false;
  try {
    await drain.run(() => migrateAll(ev, request, begun.host.address));
  } catch (err) {
    if (!isCancellation(err)) throw err;
    if (!ev.cancelRequested) {
      cancelledByTemporal = true;
      ev.cancelRequested = true;
      ev.cancelReason = 'evacuation cancelled by operator';
    }
  }

  // 4.
  const result = await CancellationScope.nonCancellable(() => finish(ev, begun.host.name, begun.previousState));
  if (cancelledByTemporal) throw new CancelledFailure(ev.cancelReason ?? 'cancelled', [result]);
  return result;
}

function validate(input: EvacuateHostInput): EvacuationRequest {
  try {
    return validateEvacuation(input);
  } catch (err) {
    if (err instanceof InputError) {
      throw ApplicationFailure.create({ type: FailureType.InvalidInput, message: err.message.replace('migration request', 'evacuation request'), nonRetryable: true });
    }
    throw err;
  }
}

async function migrateAll(ev: Evacuation, request: EvacuationRequest, sourceAddress: string): Promise<void> {
  const drain = CancellationScope.current();
  const timerScope = new CancellationScope();
  if (request.deadlineMs !== null) {
    ev.progress.deadline = new Date(Date.now() + request.deadlineMs).toISOString();
    const deadlineMs = request.deadlineMs;
    timerScope
      .run(() => sleep(deadlineMs))
      .then(() => {
        ev.cancelRequested = true;
        ev.cancelReason = `the evacuation deadline (${ev.progress.deadline}) passed`;
        ev.progress.state = 'cancelling';
        drain.cancel();
      })
      .catch(() => undefined);
  }

  const queue = ev.progress.vms.filter((v) => v.status === 'pending');
  const lane = async (): Promise<void> => {
    for (;;) {
      try {
        await condition(() => ev.cancelRequested || !ev.paused);
      } catch {
        return; // cancelled
      }
      if (ev.cancelRequested) return;
      const next = queue.shift();
      if (!next) return;
      await migrateOne(ev, request, sourceAddress, next);
    }
  };
  // Every lane runs to its end: a cancelled child is awaited until it has compensated.
  await Promise.allSettled(Array.from({ length: request.maxParallel }, lane));
  timerScope.cancel();
  for (const v of queue) {
    v.status = 'cancelled';
    v.reason = ev.cancelReason ?? 'evacuation cancelled';
  }
  recount(ev);
  if (ev.cancelRequested) throw new CancelledFailure(ev.cancelReason ?? 'cancelled');
}

async function migrateOne(ev: Evacuation, request: EvacuationRequest, sourceAddress: string, v: VmEvacuation): Promise<void> {
  v.status = 'running';
  v.startedAt = new Date().toISOString();
  recount(ev);
  const child: LiveMigrationInput = {
    sourceHost: sourceAddress,
    vmName: v.vm,
    vmUuid: v.vmUuid,
    limits: request.limits,
    ...request.migration,
  };
  try {
    const handle = await startChild(liveMigration, {
      workflowId: v.workflowId,
      args: [child],
      // Closing the evacuation asks its migrations to cancel, and they compensate (never a bare terminate).
      parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
      cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
    });
    settle(v, 'migrated', await handle.result());
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      settle(v, 'failed', null, 'another migration of this VM is already running');
    } else {
      const report = reportOf(err);
      const status: VmEvacuationStatus = isCancellation(err) || report?.status === 'cancelled' ? 'cancelled' : 'failed';
      settle(v, status, report, report?.reason ?? rootMessage(err));
    }
  } finally {
    recount(ev);
  }
}

function settle(v: VmEvacuation, status: VmEvacuationStatus, report: MigrationReport | null, reason: string | null = null): void {
  v.status = status;
  v.endedAt = new Date().toISOString();
  v.reason = reason;
  v.waitingFor = null;
  if (report) {
    v.phase = report.status === 'migrated' ? 'migrated' : report.status;
    v.target = report.target;
    v.claimedAt = report.claimedAt;
    v.releasedAt = report.releasedAt;
    v.durationMs = report.durationMs;
    v.downtimeMs = report.downtimeMs;
  }
}

async function finish(ev: Evacuation, host: string, previousState: HostState): Promise<EvacuationResult> {
  let hostState: HostState = 'maintenance';
  if (ev.cancelRequested && ev.restoreHostState && previousState !== 'maintenance') {
    await inventory.setHostState({ host, state: previousState });
    hostState = previousState;
  }
  const remaining = await inventory.vmsOnHost({ host });
  ev.progress.state = 'done';
  recount(ev);
  return {
    host,
    hostState,
    allLeft: remaining.length === 0,
    remainingOnHost: remaining.map((v) => v.name),
    cancelled: ev.cancelRequested,
    vms: ev.progress.vms,
    durationMs: Date.now() - ev.startedAt,
  };
}

// ---- batches ------------------------------------------------------------------------------------------

export interface EvacuateHostsResult {
  hosts: EvacuationResult[];
  failed: { host: string; reason: string }[];
}

/** A batch of hosts, drained one after another (each a child evacuateHost with ID ferry-evacuate-<host>). */
export async function evacuateHosts(input: EvacuateHostsInput): Promise<EvacuateHostsResult> {
  if (typeof input !== 'object' || input === null || !Array.isArray(input.hosts) || input.hosts.length === 0) {
    throw ApplicationFailure.create({ type: FailureType.InvalidInput, message: 'hosts must be a non-empty list of host names', nonRetryable: true });
  }
  const { hosts, ...rest } = input;
  for (const host of hosts) validate({ ...rest, host }); // every host's request is checked before the first starts
  const out: EvacuateHostsResult = { hosts: [], failed: [] };
  const batchId = workflowInfo().workflowId;
  for (const host of hosts) {
    try {
      const handle = await startChild(evacuateHost, {
        workflowId: `ferry-evacuate-${host}`,
        args: [{ ...rest, host }],
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
        memo: { batch: batchId },
      });
      out.hosts.push(await handle.result());
    } catch (err) {
      if (isCancellation(err)) throw err;
      out.failed.push({ host, reason: err instanceof WorkflowExecutionAlreadyStartedError ? 'an evacuation of this host is already running' : rootMessage(err) });
    }
  }
  return out;
}
