/**
 * The state of one liveMigration run and the handlers that read or change it from outside: the `progress`
 * query, the `cancel` signal, the `tune` update and the activities' `ferry.progress` signal.
 *
 * What the run has reached is ONE value, `Reached`: compensation switches on it to know what to undo.
 * Everything else here is what the progress query and the report show.
 */
import { ApplicationFailure, getExternalWorkflowHandle, setHandler, upsertSearchAttributes, workflowInfo, type CancellationScope } from '@temporalio/workflow';
import type { Artifact, ConvergenceView, RejectedTarget, HostRef, MigrationProgress, Phase, ProgressSignal, StoragePlan, TuneRequest, VmFacts } from '../common/migration';
import { SA_PHASE } from '../common/search-attributes';
import { MAX_BANDWIDTH_MIBPS, MAX_DOWNTIME_LIMIT_MS, type LiveMigrationInput, type MigrationRequest } from '../common/validation';
import { cancelSignal, childPhaseSignal, progressQuery, progressSignal, tuneUpdate } from './definitions';
import { quick } from './proxies';

/**
 * How far the migration got — what compensation has to undo:
 *   nothing   validating or reading the VM: nothing changed anywhere
 *   claiming  the claim step ran; if it did not answer it may have claimed a target after all
 *   claimed   the target is claimed and the VM is `migrating` in the inventory
 *   storage   create tasks ran; `artifacts` holds each one, recorded BEFORE it was created
 *   copying   the migration activity was started: a libvirt job may be running
 */
export type Reached =
  | { step: 'nothing' }
  | { step: 'claiming'; vm: VmFacts }
  | { step: 'claimed'; vm: VmFacts; target: HostRef }
  | { step: 'storage'; vm: VmFacts; target: HostRef; artifacts: Artifact[] }
  | { step: 'copying'; vm: VmFacts; target: HostRef; artifacts: Artifact[] };

/** Workflow-time stamps and durations (ms since the epoch, as Date.now() gives them in the sandbox). */
export interface RunClock {
  startedAt: number;
  phaseStartedAt: number;
  phaseMs: Record<string, number>;
  /** The migration's in-flight interval: when the target claim was taken and given back. */
  claimedAt: number | null;
  releasedAt: number | null;
  /** The migration step's deadline, and how long the copy took. */
  timeoutMs: number | null;
  migrationMs: number | null;
}

export interface MigrationRun {
  /** What the progress query shows, but the artifacts (they live in `reached`) and the rejected targets. */
  progress: Omit<MigrationProgress, 'artifacts' | 'rejectedTargets'>;
  reached: Reached;
  request: MigrationRequest | null;
  /** How the storage reaches the target (set once a target passed its storage check). */
  plan: StoragePlan | null;
  /** Targets claimed and then refused by a pre-flight check or their storage, with why. */
  rejectedTargets: RejectedTarget[];
  /** Set by the `cancel` signal (a Temporal cancel carries no reason). */
  cancel: { reason: string } | null;
  clock: RunClock;
}

export function vmOf(r: Reached): VmFacts | null {
  return r.step === 'nothing' ? null : r.vm;
}
export function targetOf(r: Reached): HostRef | null {
  return r.step === 'nothing' || r.step === 'claiming' ? null : r.target;
}
export function artifactsOf(r: Reached): Artifact[] {
  return r.step === 'storage' || r.step === 'copying' ? r.artifacts : [];
}

/** The progress query's answer. */
export function progressOf(run: MigrationRun): MigrationProgress {
  return { ...run.progress, artifacts: artifactsOf(run.reached), rejectedTargets: [...run.rejectedTargets] };
}

/** A new run with its handlers registered; the `cancel` signal cancels `forward`, the forward steps' scope. */
export function startRun(input: LiveMigrationInput, forward: CancellationScope): MigrationRun {
  const loose = (typeof input === 'object' && input !== null ? input : {}) as Partial<LiveMigrationInput>;
  const now = Date.now();
  const run: MigrationRun = {
    progress: {
      workflowId: workflowInfo().workflowId,
      phase: 'validating',
      mode: null,
      streamEncrypted: null,
      vm: { name: String(loose.vmName ?? ''), uuid: String(loose.vmUuid ?? '') },
      source: String(loose.sourceHost ?? ''),
      target: null,
      startedAt: new Date(now).toISOString(),
      deadline: null,
      disks: null,
      createAttempts: {},
      migration: null,
      convergence: null,
      waitingFor: null,
      lastError: null,
      cancelRequested: false,
    },
    reached: { step: 'nothing' },
    request: null,
    plan: null,
    rejectedTargets: [],
    cancel: null,
    clock: { startedAt: now, phaseStartedAt: now, phaseMs: {}, claimedAt: null, releasedAt: null, timeoutMs: null, migrationMs: null },
  };
  setHandler(progressQuery, () => progressOf(run));
  setHandler(cancelSignal, (req) => {
    if (run.cancel !== null) return;
    run.cancel = { reason: req?.reason ?? 'cancelled by operator (signal)' };
    run.progress.cancelRequested = true;
    forward.cancel();
  });
  setHandler(tuneUpdate, (req) => tune(run, req), { validator: (req) => validateTune(run, req) });
  setHandler(progressSignal, (p) => applyProgress(run, p));
  return run;
}

export function setPhase(run: MigrationRun, phase: Phase): void {
  const now = Date.now();
  const prev = run.progress.phase;
  run.clock.phaseMs[prev] = (run.clock.phaseMs[prev] ?? 0) + (now - run.clock.phaseStartedAt);
  run.clock.phaseStartedAt = now;
  run.progress.phase = phase;
  run.progress.waitingFor = null;
  upsertSearchAttributes([{ key: SA_PHASE, value: phase }]);
  tellParent(run);
}

/** A migration started by an evacuation reports its phase changes to it (best effort). */
export function tellParent(run: MigrationRun): void {
  const parent = workflowInfo().parent;
  if (!parent) return;
  getExternalWorkflowHandle(parent.workflowId, parent.runId)
    .signal(childPhaseSignal, {
      vmUuid: run.progress.vm.uuid,
      phase: run.progress.phase,
      target: run.progress.target,
      waitingFor: run.progress.waitingFor,
    })
    .catch(() => undefined);
}

/** The copy begins: its deadline and the convergence controls as the progress query shows them. */
export function beginCopy(run: MigrationRun, request: MigrationRequest, timeoutMs: number): ConvergenceView {
  run.clock.timeoutMs = timeoutMs;
  run.progress.deadline = new Date(Date.now() + timeoutMs).toISOString();
  const policy = request.convergence;
  const view: ConvergenceView = {
    autoConverge: policy.autoConverge,
    postCopyAllowed: policy.postCopy,
    postCopyActive: false,
    maxDowntimeMs: policy.maxDowntimeMs,
    bandwidthMiBps: request.bandwidthMiBps,
    throttlePercent: null,
    progressTimeoutMs: policy.progressTimeoutMs,
    lowestRemainingBytes: null,
    sinceNewLowMs: null,
    limitFired: null,
    events: [],
  };
  run.progress.convergence = view;
  return view;
}

/** Live numbers from the activities: job statistics, convergence state, create-task retries. */
function applyProgress(run: MigrationRun, p: ProgressSignal): void {
  if (p.migration && run.progress.phase === 'migrating') run.progress.migration = p.migration;
  const view = run.progress.convergence;
  if (p.convergence && view) {
    const c = p.convergence;
    if (c.maxDowntimeMs !== undefined) view.maxDowntimeMs = c.maxDowntimeMs;
    if (c.throttlePercent !== undefined) view.throttlePercent = c.throttlePercent;
    if (c.postCopyActive !== undefined) view.postCopyActive = c.postCopyActive;
    if (c.lowestRemainingBytes !== undefined) view.lowestRemainingBytes = c.lowestRemainingBytes;
    if (c.sinceNewLowMs !== undefined) view.sinceNewLowMs = c.sinceNewLowMs;
    if (c.limitFired) view.limitFired = c.limitFired;
    if (c.event) view.events.push({ at: new Date().toISOString(), what: c.event });
  }
  if (p.createTask) {
    const { task, attempt } = p.createTask;
    const attempts = run.progress.createAttempts;
    if (task in attempts || run.progress.phase === 'creating-storage') attempts[task] = Math.max(attempts[task] ?? 0, attempt);
    if (run.progress.phase === 'compensating') {
      run.progress.waitingFor = `${run.progress.waitingFor?.replace(/ \(attempt \d+\)$/, '') ?? task} (attempt ${attempt})`;
    }
  }
  if (p.waitingFor !== undefined) run.progress.waitingFor = p.waitingFor;
}

// ---- the tune update ----------------------------------------------------------------------------------

/** Refuses a tune that cannot apply (the migration is not copying, a value out of range, post-copy not allowed). */
function validateTune(run: MigrationRun, req: TuneRequest): void {
  const problems: string[] = [];
  if (typeof req !== 'object' || req === null) throw new Error('tune takes one object like {"maxDowntimeMs": 1000}');
  const known = ['maxDowntimeMs', 'bandwidthMiBps', 'postCopyNow'];
  for (const k of Object.keys(req)) if (!known.includes(k)) problems.push(`unknown option ${k}`);
  const view = run.progress.convergence;
  if (run.progress.phase !== 'migrating' || view === null) problems.push(`the migration is ${run.progress.phase}, not migrating: nothing to tune`);
  else if (run.progress.mode === 'cold') {
    problems.push('a cold migration streams its volumes at the bandwidth it started with and has no downtime or post-copy to change: cancel it and start it again with --bandwidth');
  }
  if (req.maxDowntimeMs !== undefined && !wholeIn(req.maxDowntimeMs, 1, MAX_DOWNTIME_LIMIT_MS)) {
    problems.push(`maxDowntimeMs must be a whole number of ms from 1 to ${MAX_DOWNTIME_LIMIT_MS}`);
  }
  if (req.bandwidthMiBps !== undefined && !wholeIn(req.bandwidthMiBps, 1, MAX_BANDWIDTH_MIBPS)) {
    problems.push(`bandwidthMiBps must be a whole number from 1 to ${MAX_BANDWIDTH_MIBPS}`);
  }
  if (req.postCopyNow !== undefined && typeof req.postCopyNow !== 'boolean') problems.push('postCopyNow must be true or false');
  if (req.postCopyNow && view && !view.postCopyAllowed) problems.push('post-copy was not allowed for this migration (convergence.postCopy)');
  if (req.postCopyNow && view?.postCopyActive) problems.push('the migration is already in post-copy');
  if (req.maxDowntimeMs === undefined && req.bandwidthMiBps === undefined && !req.postCopyNow) problems.push('nothing to change');
  if (problems.length > 0) throw new Error(`cannot tune: ${problems.join('; ')}`);
}

/** Which copies a bandwidth change reached: memory always; the disk copies running then (an older worker: unknown). */
function bandwidthScope(disks: { target: string }[] | undefined): string {
  if (disks === undefined) return '';
  return disks.length === 0 ? ' (memory; no disk copy running)' : ` (memory and the disk copy of ${disks.map((d) => d.target).join(', ')})`;
}

function wholeIn(n: number, min: number, max: number): boolean {
  return Number.isInteger(n) && n >= min && n <= max;
}

async function tune(run: MigrationRun, req: TuneRequest): Promise<ConvergenceView> {
  const view = run.progress.convergence;
  const vm = vmOf(run.reached);
  if (view === null || vm === null) throw ApplicationFailure.create({ message: 'the migration is not copying', nonRetryable: true });
  const applied = await quick.tuneMigration({ source: vm.source, vmUuid: vm.uuid, ...req });
  const what: string[] = [];
  if (req.maxDowntimeMs !== undefined) what.push(`max downtime ${applied.maxDowntimeMs} ms`);
  if (req.bandwidthMiBps !== undefined) what.push(`bandwidth ${req.bandwidthMiBps} MiB/s${bandwidthScope(applied.diskCopies)}`);
  if (req.postCopyNow) what.push('post-copy now');
  view.maxDowntimeMs = applied.maxDowntimeMs;
  if (applied.bandwidthMiBps !== null) view.bandwidthMiBps = applied.bandwidthMiBps;
  if (applied.postCopyActive) view.postCopyActive = true;
  view.events.push({ at: new Date().toISOString(), what: `operator: ${what.join(', ')}` });
  return view;
}
