/**
 * liveMigration: one VM's live migration as a durable workflow.
 *
 * The steps, in order, each a named function below:
 *   1. validateInput          bad input fails at once, non-retryable, nothing created
 *   2. readVmDisks            the VM's disks from the inventory, cross-checked with libvirt on the source
 *   3. selectTarget           filter + score + claim a target; the VM becomes "migrating"
 *   4. createTargetStorage    directory, pool, each disk: one activity each, maximumAttempts = threshold
 *   5. migrateBeforeDeadline  a timer, then the heartbeating live migration; the timer firing aborts it
 *   6. finishMigration        ask libvirt where the VM runs, update the inventory, clean the source, history
 *   7. compensate             on abort / timeout / failure / operator cancel: VM state first, then the
 *                             target's artifacts in reverse, then the claim; never cancellable, retried until done
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  defineQuery,
  defineSignal,
  defineUpdate,
  getExternalWorkflowHandle,
  isCancellation,
  proxyActivities,
  setHandler,
  sleep,
  TimeoutFailure,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { RetryState } from '@temporalio/common';
import type { FerryActivities } from '../activities';
import type {
  Artifact,
  CompletedMigrationStats,
  ConvergenceView,
  HostRef,
  LimitFired,
  TuneRequest,
  LocateResult,
  MigrationProgress,
  MigrationReport,
  Phase,
  ProgressSignal,
  VmFacts,
} from '../common/migration';
import type { HistoryRecord, MigrationResultKind } from '../common/types';
import { FailureType } from '../common/failures';
import { formatDuration } from '../common/durations';
import { vmPoolName } from '../common/names';
import { childPhaseSignal } from './signals';
import { SA_PHASE, SA_SOURCE, SA_TARGET, SA_VM_NAME, SA_VM_UUID } from '../common/search-attributes';
import {
  defaultMigrationTimeoutMs,
  InputError,
  MAX_BANDWIDTH_MIBPS,
  MAX_DOWNTIME_LIMIT_MS,
  validateMigrationInput,
  type LiveMigrationInput,
  type MigrationRequest,
} from '../common/validation';

export type { LiveMigrationInput } from '../common/validation';

// ---- the workflow's interface -------------------------------------------------------------------------

/** Phase, target, created artifacts, attempts per create task, migration progress. */
export const progressQuery = defineQuery<MigrationProgress>('progress');
/** Operator cancel by signal (same compensation as a Temporal cancel). */
export const cancelSignal = defineSignal<[{ reason?: string } | undefined]>('cancel');
/** Tune a running migration: raise the max downtime, change the bandwidth, switch to post-copy now. */
export const tuneUpdate = defineUpdate<ConvergenceView, [TuneRequest]>('tune');

/** Internal: live numbers from the activities (job statistics, create-task retries). */
export const progressSignal = defineSignal<[ProgressSignal]>('ferry.progress');

// ---- activity options ---------------------------------------------------------------------------------

/** Inventory reads/writes and libvirt reads: quick, a few retries for transient errors. */
/**
 * Every activity but the migration heartbeats every 2 s while it runs (activities/failures.ts): a heartbeat
 * timeout of 10 s notices a dead worker quickly, so the step is retried within seconds, not minutes.
 */
const HEARTBEAT = '10s';

const quick = proxyActivities<FerryActivities>({
  startToCloseTimeout: '1m',
  heartbeatTimeout: HEARTBEAT,
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 5 },
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});

/** Compensation and bookkeeping that must happen: retried until done (unlimited attempts). */
// No maximumAttempts: unlimited.
const UNTIL_DONE = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' } as const;
const mustComplete = proxyActivities<FerryActivities>({ startToCloseTimeout: '2m', heartbeatTimeout: HEARTBEAT, retry: UNTIL_DONE });
/** Aborting libvirt's job waits for it to end, heartbeating meanwhile. */
const aborting = proxyActivities<FerryActivities>({ startToCloseTimeout: '10m', heartbeatTimeout: '30s', retry: UNTIL_DONE });

/** Create tasks: the failure threshold is the retry policy's maximumAttempts. */
function createTasks(req: MigrationRequest) {
  return proxyActivities<FerryActivities>({
    startToCloseTimeout: '1m',
    heartbeatTimeout: HEARTBEAT,
    retry: {
      initialInterval: req.createRetryIntervalMs,
      backoffCoefficient: 2,
      maximumInterval: '30s',
      maximumAttempts: req.createAttempts,
    },
    // A create task in flight finishes (or fails) before compensation starts: nothing appears behind its back.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });
}

function migration(timeoutMs: number) {
  return proxyActivities<FerryActivities>({
    startToCloseTimeout: timeoutMs + 10 * 60_000,
    heartbeatTimeout: '20s',
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 },
    // Wait until the activity has stopped: a cancelled attempt must not start a copy after we aborted.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });
}

// ---- run state ----------------------------------------------------------------------------------------

type Outcome = Exclude<MigrationResultKind, 'migrated'>;

/** A forward step failed: why, and the failure type the workflow ends with after compensating. */
class StepFailure extends Error {
  constructor(
    readonly outcome: Outcome,
    readonly type: FailureType,
    message: string,
  ) {
    super(message);
  }
}

interface Run {
  progress: MigrationProgress;
  request: MigrationRequest | null;
  vm: VmFacts | null;
  target: HostRef | null;
  claimAttempted: boolean;
  migrationStarted: boolean;
  timeoutMs: number | null;
  migrationMs: number | null;
  phaseStartedAt: number;
  phaseMs: Record<string, number>;
  startedAt: number;
  cancelReason: string | null;
  cancelledBySignal: boolean;
  /** When the target claim was taken and given back (workflow time): the migration's in-flight interval. */
  claimedAt: number | null;
  releasedAt: number | null;
}

function setPhase(run: Run, phase: Phase): void {
  const now = Date.now();
  const prev = run.progress.phase;
  run.phaseMs[prev] = (run.phaseMs[prev] ?? 0) + (now - run.phaseStartedAt);
  run.phaseStartedAt = now;
  run.progress.phase = phase;
  run.progress.waitingFor = null;
  upsertSearchAttributes([{ key: SA_PHASE, value: phase }]);
  tellParent(run);
}

/** A migration started by an evacuation reports its phase changes to it (best effort). */
function tellParent(run: Run): void {
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

function startRun(input: LiveMigrationInput, forward: CancellationScope): Run {
  const info = workflowInfo();
  const loose = (typeof input === 'object' && input !== null ? input : {}) as Partial<LiveMigrationInput>;
  const run: Run = {
    progress: {
      workflowId: info.workflowId,
      phase: 'validating',
      vm: { name: String(loose.vmName ?? ''), uuid: String(loose.vmUuid ?? '') },
      source: String(loose.sourceHost ?? ''),
      target: null,
      startedAt: new Date().toISOString(),
      deadline: null,
      artifacts: [],
      createAttempts: {},
      migration: null,
      convergence: null,
      waitingFor: null,
      lastError: null,
      cancelRequested: false,
    },
    request: null,
    vm: null,
    target: null,
    claimAttempted: false,
    migrationStarted: false,
    timeoutMs: null,
    migrationMs: null,
    phaseStartedAt: Date.now(),
    phaseMs: {},
    startedAt: Date.now(),
    cancelReason: null,
    cancelledBySignal: false,
    claimedAt: null,
    releasedAt: null,
  };
  setHandler(progressQuery, () => run.progress);
  setHandler(cancelSignal, (req) => {
    if (run.progress.cancelRequested) return;
    run.progress.cancelRequested = true;
    run.cancelledBySignal = true;
    run.cancelReason = req?.reason ?? 'cancelled by operator (signal)';
    forward.cancel();
  });
  setHandler(tuneUpdate, (req) => tune(run, req), { validator: (req) => validateTune(run, req) });
  setHandler(progressSignal, (p) => {
    if (p.migration && run.progress.phase === 'migrating') run.progress.migration = p.migration;
    const view = run.progress.convergence;
    if (p.convergence && view) {
      const { event, limitFired, ...state } = p.convergence;
      for (const [k, v] of Object.entries(state)) if (v !== undefined) (view as unknown as Record<string, unknown>)[k] = v;
      if (limitFired) view.limitFired = limitFired;
      if (event) view.events.push({ at: new Date().toISOString(), what: event });
    }
    if (p.createTask) {
      const { task, attempt } = p.createTask;
      if (task in run.progress.createAttempts || run.progress.phase === 'creating-storage') {
        run.progress.createAttempts[task] = Math.max(run.progress.createAttempts[task] ?? 0, attempt);
      }
      if (run.progress.phase === 'compensating') {
        run.progress.waitingFor = `${run.progress.waitingFor?.replace(/ \(attempt \d+\)$/, '') ?? task} (attempt ${attempt})`;
      }
    }
    if (p.waitingFor !== undefined) run.progress.waitingFor = p.waitingFor;
  });
  return run;
}

// ---- the workflow -------------------------------------------------------------------------------------

export async function liveMigration(input: LiveMigrationInput): Promise<MigrationReport> {
  const forward = new CancellationScope();
  const run = startRun(input, forward);
  try {
    return await forward.run(async () => {
      const request = validateInput(run, input);
      const vm = await readVmDisks(run, request);
      const target = await selectTarget(run, request, vm);
      await createTargetStorage(run, request, vm, target);
      const stats = await migrateBeforeDeadline(run, request, vm, target);
      return await CancellationScope.nonCancellable(() => finishMigration(run, vm, target, stats));
    });
  } catch (err) {
    return await CancellationScope.nonCancellable(() => compensate(run, err));
  }
}

// ---- step 1 -------------------------------------------------------------------------------------------

function validateInput(run: Run, input: LiveMigrationInput): MigrationRequest {
  try {
    const request = validateMigrationInput(input);
    run.request = request;
    run.progress.vm = { name: request.vmName, uuid: request.vmUuid };
    run.progress.source = request.sourceHost;
    upsertSearchAttributes([
      { key: SA_VM_UUID, value: request.vmUuid },
      { key: SA_VM_NAME, value: request.vmName },
      { key: SA_SOURCE, value: request.sourceHost },
    ]);
    return request;
  } catch (err) {
    if (err instanceof InputError) {
      throw ApplicationFailure.create({
        type: FailureType.InvalidInput,
        message: err.message,
        nonRetryable: true,
        details: [{ problems: err.problems }],
      });
    }
    throw err;
  }
}

// ---- step 2 -------------------------------------------------------------------------------------------

async function readVmDisks(run: Run, request: MigrationRequest): Promise<VmFacts> {
  setPhase(run, 'reading-vm');
  const vm = await quick.readVm({ sourceHost: request.sourceHost, vmName: request.vmName, vmUuid: request.vmUuid });
  run.vm = vm;
  run.progress.source = vm.source.name;
  upsertSearchAttributes([{ key: SA_SOURCE, value: vm.source.name }]);
  return vm;
}

// ---- step 3 -------------------------------------------------------------------------------------------

async function selectTarget(run: Run, request: MigrationRequest, vm: VmFacts): Promise<HostRef> {
  setPhase(run, 'selecting-target');
  run.claimAttempted = true;
  const giveUpAt = Date.now() + request.queueTimeoutMs;
  for (let wait = SLOT_POLL_FIRST_MS; ; wait = Math.min(wait * 2, SLOT_POLL_MAX_MS)) {
    const placed = await quick.claimTarget({
      vm,
      workflowId: run.progress.workflowId,
      targetHost: request.targetHost,
      limits: request.limits,
    });
    if ('target' in placed) {
      run.claimedAt = Date.now();
      run.target = placed.target;
      run.progress.target = placed.target.name;
      upsertSearchAttributes([{ key: SA_TARGET, value: placed.target.name }]);
      return placed.target;
    }
    // A limit is reached or every fitting host is busy receiving: wait for a slot, within the queue timeout.
    if (Date.now() + wait > giveUpAt) {
      throw ApplicationFailure.create({
        type: FailureType.NoTargetHost,
        message: `no slot within the queue timeout of ${formatDuration(request.queueTimeoutMs)}: ${placed.waiting}`,
        nonRetryable: true,
      });
    }
    const first = run.progress.phase !== 'waiting-for-slot';
    if (first) setPhase(run, 'waiting-for-slot');
    run.progress.waitingFor = placed.waiting;
    if (first) tellParent(run);
    await sleep(wait);
  }
}

/** Slot polling: 2 s doubling to 15 s (each poll is one short activity). */
const SLOT_POLL_FIRST_MS = 2_000;
const SLOT_POLL_MAX_MS = 15_000;

// ---- step 4 -------------------------------------------------------------------------------------------

async function createTargetStorage(run: Run, request: MigrationRequest, vm: VmFacts, target: HostRef): Promise<void> {
  setPhase(run, 'creating-storage');
  const tasks = createTasks(request);
  const pool = vmPoolName(vm.uuid);
  const base = { target, vmUuid: vm.uuid, pool };

  await createTask(run, request, 'directory', { kind: 'directory', host: target.name, pool, path: vm.storageDir }, () =>
    tasks.createStorageDirectory({ ...base, path: vm.storageDir }),
  );
  await createTask(run, request, 'pool', { kind: 'pool', host: target.name, pool }, () => tasks.createStoragePool(base));
  for (const disk of vm.disks) {
    await createTask(run, request, `disk:${disk.name}`, { kind: 'volume', host: target.name, pool, name: disk.name }, () =>
      tasks.createDisk({ ...base, disk }),
    );
  }
}

/** Records the artifact, runs the task, counts its attempts; a task that exhausts them aborts the migration. */
async function createTask(
  run: Run,
  request: MigrationRequest,
  task: string,
  artifact: Artifact,
  body: () => Promise<{ attempt: number }>,
): Promise<void> {
  run.progress.artifacts.push(artifact);
  run.progress.createAttempts[task] = 1;
  try {
    const { attempt } = await body();
    run.progress.createAttempts[task] = attempt;
  } catch (err) {
    if (isCancellation(err)) throw err;
    const attempts = attemptsOf(err, request.createAttempts);
    run.progress.createAttempts[task] = attempts;
    const why = rootMessage(err);
    throw new StepFailure(
      'aborted',
      FailureType.CreateTaskFailed,
      `create task ${task} on ${artifact.host} failed ${attempts} of ${request.createAttempts} allowed attempt${
        request.createAttempts === 1 ? '' : 's'
      }: ${why}`,
    );
  }
}

// ---- step 5 -------------------------------------------------------------------------------------------

async function migrateBeforeDeadline(
  run: Run,
  request: MigrationRequest,
  vm: VmFacts,
  target: HostRef,
): Promise<CompletedMigrationStats> {
  setPhase(run, 'migrating');
  const timeoutMs = request.timeoutMs ?? defaultMigrationTimeoutMs(vm.dataBytes, request.timeoutPerGiBMs, request.timeoutFloorMs);
  run.timeoutMs = timeoutMs;
  run.progress.deadline = new Date(Date.now() + timeoutMs).toISOString();
  const policy = request.convergence;
  run.progress.convergence = {
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

  // The timer first, then the migration; whichever finishes first decides.
  const timerScope = new CancellationScope();
  const deadline = timerScope.run(() => sleep(timeoutMs)).then(
    () => 'deadline' as const,
    () => 'stopped' as const,
  );
  const migrateScope = new CancellationScope();
  run.migrationStarted = true;
  const started = Date.now();
  const copy = migrateScope
    .run(() =>
      migration(timeoutMs).migrateVm({
        source: vm.source,
        target,
        vmUuid: vm.uuid,
        bandwidthMiBps: request.bandwidthMiBps,
        convergence: policy,
        pool: vmPoolName(vm.uuid),
        disks: vm.disks,
        clientTimeoutMs: timeoutMs + 5 * 60_000,
      }),
    )
    .then(
      (stats) => ({ ok: true as const, stats }),
      (err: unknown) => ({ ok: false as const, err }),
    );

  let first = await Promise.race([copy, deadline]);
  if (first === 'deadline') {
    const view = run.progress.convergence;
    const detail = `the migration did not finish within its timeout of ${formatDuration(timeoutMs)}`;
    if (view.postCopyActive || (policy.onDeadline === 'post-copy' && policy.postCopy)) {
      // Completion deadline with post-copy: switch (unless already in post-copy) and let the copy finish —
      // a migration in post-copy is never aborted.
      if (!view.postCopyActive) {
        await quick.switchToPostCopy({ source: vm.source, vmUuid: vm.uuid });
        view.postCopyActive = true;
        view.limitFired = { limit: 'completion', action: 'post-copy', at: new Date().toISOString(), stats: run.progress.migration, detail };
        view.events.push({ at: view.limitFired.at, what: `completion deadline: switched to post-copy (${detail})` });
      }
      first = await copy;
    } else {
      view.limitFired = { limit: 'completion', action: 'abort', at: new Date().toISOString(), stats: run.progress.migration, detail };
      migrateScope.cancel();
      await copy; // WAIT_CANCELLATION_COMPLETED: the activity has stopped when this settles
      throw new StepFailure('timed-out', FailureType.MigrationTimedOut, detail);
    }
  } else {
    timerScope.cancel();
    await deadline;
  }
  if (first === 'stopped') {
    // The timer only stops early when the whole migration is being cancelled: let the activity stop first.
    const settled = await copy;
    throw settled.ok ? new CancelledFailure('cancelled') : settled.err;
  }
  run.migrationMs = Date.now() - started;
  if (!first.ok) {
    if (isCancellation(first.err)) throw first.err;
    const app = rootApplicationFailure(first.err);
    if (app?.type === 'MigrationStalled') {
      // The progress deadline passed inside the activity, which aborted the job.
      const fired = (app.details?.[0] as { limitFired?: LimitFired } | undefined)?.limitFired;
      if (fired) run.progress.convergence.limitFired = fired;
      throw new StepFailure('timed-out', FailureType.MigrationTimedOut, app.message);
    }
    throw new StepFailure('failed', FailureType.MigrationFailed, rootMessage(first.err));
  }
  return first.stats;
}

/** Refuses a tune that cannot apply (the migration is not copying, a value out of range, post-copy not allowed). */
function validateTune(run: Run, req: TuneRequest): void {
  const problems: string[] = [];
  if (typeof req !== 'object' || req === null) throw new Error('tune takes one object like {"maxDowntimeMs": 1000}');
  const known = ['maxDowntimeMs', 'bandwidthMiBps', 'postCopyNow'];
  for (const k of Object.keys(req)) if (!known.includes(k)) problems.push(`unknown option ${k}`);
  const view = run.progress.convergence;
  if (run.progress.phase !== 'migrating' || view === null) problems.push(`the migration is ${run.progress.phase}, not migrating: nothing to tune`);
  if (req.maxDowntimeMs !== undefined && !(Number.isInteger(req.maxDowntimeMs) && req.maxDowntimeMs >= 1 && req.maxDowntimeMs <= MAX_DOWNTIME_LIMIT_MS)) {
    problems.push(`maxDowntimeMs must be a whole number of ms from 1 to ${MAX_DOWNTIME_LIMIT_MS}`);
  }
  if (req.bandwidthMiBps !== undefined && !(Number.isInteger(req.bandwidthMiBps) && req.bandwidthMiBps >= 1 && req.bandwidthMiBps <= MAX_BANDWIDTH_MIBPS)) {
    problems.push(`bandwidthMiBps must be a whole number from 1 to ${MAX_BANDWIDTH_MIBPS}`);
  }
  if (req.postCopyNow !== undefined && typeof req.postCopyNow !== 'boolean') problems.push('postCopyNow must be true or false');
  if (req.postCopyNow && view && !view.postCopyAllowed) problems.push('post-copy was not allowed for this migration (convergence.postCopy)');
  if (req.postCopyNow && view?.postCopyActive) problems.push('the migration is already in post-copy');
  if (req.maxDowntimeMs === undefined && req.bandwidthMiBps === undefined && !req.postCopyNow) problems.push('nothing to change');
  if (problems.length > 0) throw new Error(`cannot tune: ${problems.join('; ')}`);
}

async function tune(run: Run, req: TuneRequest): Promise<ConvergenceView> {
  const view = run.progress.convergence;
  const vm = run.vm;
  if (view === null || vm === null) throw ApplicationFailure.create({ message: 'the migration is not copying', nonRetryable: true });
  const applied = await quick.tuneMigration({ source: vm.source, vmUuid: vm.uuid, ...req });
  const what: string[] = [];
  if (req.maxDowntimeMs !== undefined) what.push(`max downtime ${applied.maxDowntimeMs} ms`);
  if (req.bandwidthMiBps !== undefined) what.push(`bandwidth ${req.bandwidthMiBps} MiB/s`);
  if (req.postCopyNow) what.push('post-copy now');
  view.maxDowntimeMs = applied.maxDowntimeMs;
  if (applied.bandwidthMiBps !== null) view.bandwidthMiBps = applied.bandwidthMiBps;
  if (applied.postCopyActive) view.postCopyActive = true;
  view.events.push({ at: new Date().toISOString(), what: `operator: ${what.join(', ')}` });
  return view;
}

// ---- step 6 -------------------------------------------------------------------------------------------

async function finishMigration(
  run: Run,
  vm: VmFacts,
  target: HostRef,
  stats: CompletedMigrationStats,
  warnings: string[] = [],
): Promise<MigrationReport> {
  setPhase(run, 'finishing');
  // Where does libvirt say the VM runs? The migrate activity asked as the copy ended; ask again otherwise.
  const where =
    stats.location?.location === 'target' ? stats.location : await mustComplete.locateVm({ source: vm.source, target, vmUuid: vm.uuid });
  if (where.location !== 'target') {
    throw new StepFailure(
      'failed',
      FailureType.MigrationFailed,
      `libvirt reported success but the VM is ${where.location === 'source' ? `still on ${vm.source.name}` : 'running nowhere'}`,
    );
  }
  await mustComplete.recordVmMoved({ vmUuid: vm.uuid, target: target.name, workflowId: run.progress.workflowId });
  run.releasedAt = Date.now();

  // The source's old storage and the target's new capacity at once; then the source's capacity and history.
  const cleanSource = async (): Promise<boolean> => {
    if (run.request?.keepSourceStorage) return false;
    try {
      const cleaned = await cleanup.cleanSource({ source: vm.source, vmUuid: vm.uuid, disks: vm.disks, storageDir: vm.storageDir });
      warnings.push(...cleaned.warnings);
      return cleaned.warnings.length === 0;
    } catch (err) {
      warnings.push(`the source's old storage was not removed: ${rootMessage(err)} (remove ${vm.storageDir} on ${vm.source.name} by hand)`);
      return false;
    }
  };
  const [sourceCleaned] = await Promise.all([cleanSource(), mustComplete.refreshHostCapacity({ hosts: [target.name] })]);
  setPhase(run, 'migrated');
  const report = buildReport(run, 'migrated', null, stats, where, sourceCleaned, warnings);
  await Promise.all([mustComplete.refreshHostCapacity({ hosts: [vm.source.name] }), mustComplete.recordHistory(historyRow(run, report))]);
  return report;
}

/** Source cleanup is retried a bounded number of times: a dead source must not hold a finished migration. */
const cleanup = proxyActivities<FerryActivities>({
  startToCloseTimeout: '2m',
  heartbeatTimeout: HEARTBEAT,
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 8 },
});

// ---- step 7 -------------------------------------------------------------------------------------------

async function compensate(run: Run, err: unknown): Promise<MigrationReport> {
  const failure = describeFailure(run, err);
  run.progress.lastError = failure.message;

  // Nothing was claimed: nothing to undo, nothing recorded (bad input changes nothing).
  if (!run.claimAttempted || run.vm === null || PLACEMENT_REFUSALS.includes(failure.type)) {
    throw finalFailure(run, failure, null, null);
  }
  const vm = run.vm;
  const target = run.target;
  if (target === null) {
    // The claim step did not answer (cancelled or out of retries): drop a claim it may have made after all.
    await mustComplete.abandonClaim({ vmUuid: vm.uuid, workflowId: run.progress.workflowId, sourceHost: vm.source.name });
    throw finalFailure(run, failure, null, null);
  }
  setPhase(run, 'compensating');

  // Where is the VM really? Abort a running job first; a migration that completed after all is finished, not undone.
  run.progress.waitingFor = run.migrationStarted ? 'aborting the migration job' : `checking where ${vm.name} runs`;
  const where = run.migrationStarted
    ? await aborting.abortMigration({ source: vm.source, target, vmUuid: vm.uuid })
    : await mustComplete.locateVm({ source: vm.source, target, vmUuid: vm.uuid });
  if (where.location === 'target') {
    const late = `the ${failure.outcome === 'cancelled' ? 'cancel' : failure.outcome} came after the VM had moved: finished, not undone`;
    try {
      return await finishMigration(run, vm, target, NO_STATS, [late]);
    } catch (e) {
      throw ApplicationFailure.create({ type: FailureType.MigrationFailed, message: rootMessage(e), nonRetryable: true });
    }
  }

  if (where.location === 'split') return await keepSplitVm(run, vm, target, failure, where);

  // 1. The VM's state first, so it is never left "migrating".
  run.progress.waitingFor = 'restoring the VM state in the inventory';
  await mustComplete.setVmPlacement({
    vmUuid: vm.uuid,
    host: vm.source.name,
    state: where.location === 'source' ? 'running' : 'unknown',
  });

  // 2. Everything created on the target, newest first.
  const warnings: string[] = [];
  const base = { target, vmUuid: vm.uuid };
  for (const a of [...run.progress.artifacts].reverse()) {
    run.progress.waitingFor = `${describeArtifact(a)} on ${a.host}`;
    try {
      if (a.kind === 'volume') await mustComplete.deleteDisk({ ...base, pool: a.pool, name: a.name });
      else if (a.kind === 'pool') await mustComplete.stopStoragePool({ ...base, pool: a.pool });
      else await mustComplete.removeStorageDirectory({ ...base, pool: a.pool, path: a.path });
    } catch (e) {
      // Only a refusal (the VM runs there) ends up here; leave the rest alone and say so.
      warnings.push(`${describeArtifact(a)} on ${a.host} not done: ${rootMessage(e)}`);
      break;
    }
  }

  // 3. Then the claim: the target is not chosen again while it is being cleaned.
  run.progress.waitingFor = 'releasing the target claim';
  await mustComplete.releaseClaim({ vmUuid: vm.uuid, workflowId: run.progress.workflowId });
  run.releasedAt = Date.now();

  setPhase(run, failure.outcome);
  const report = buildReport(run, failure.outcome, failure.message, null, where, false, warnings);
  await mustComplete.recordHistory(historyRow(run, report));
  throw finalFailure(run, failure, report, where);
}

/**
 * A post-copy that failed leaves the guest split between the hosts, and the target's disk holds the writes
 * made after the switch: nothing is deleted anywhere. The VM is marked `unknown`, the claim released, and the
 * failure says how to recover.
 */
async function keepSplitVm(run: Run, vm: VmFacts, target: HostRef, failure: FailureSummary, where: LocateResult): Promise<never> {
  await mustComplete.setVmPlacement({ vmUuid: vm.uuid, host: vm.source.name, state: 'unknown' });
  await mustComplete.releaseClaim({ vmUuid: vm.uuid, workflowId: run.progress.workflowId });
  const reason =
    `${failure.message}. The migration failed in post-copy: ${vm.name}'s memory was split between ${vm.source.name} ` +
    `(${where.sourceState ?? '?'}) and ${target.name} (${where.targetState ?? '?'}); both disks were kept (the one on ` +
    `${target.name} has the writes made after the switch). Recover by hand: start the VM on ${target.name} from its disk ` +
    `(\`virsh -c ${target.uri} start ${vm.uuid}\`), destroy the paused one on ${vm.source.name}, then run \`ferry inventory sync\``;
  setPhase(run, 'failed');
  const report = buildReport(run, 'failed', reason, null, where, false, ['post-copy failed: nothing was deleted']);
  await mustComplete.recordHistory(historyRow(run, report));
  throw ApplicationFailure.create({ type: FailureType.MigrationFailed, message: reason, nonRetryable: true, details: [report] });
}

const NO_STATS: CompletedMigrationStats = { totalTimeMs: null, downtimeMs: null, bytesTransferred: null };

/** Refusals of the claim step: the inventory changed nothing. */
const PLACEMENT_REFUSALS: readonly string[] = [FailureType.NoTargetHost, FailureType.VmBusy, FailureType.VmNotFound, FailureType.VmMismatch];

// ---- helpers ------------------------------------------------------------------------------------------

interface FailureSummary {
  outcome: Outcome;
  type: string;
  message: string;
  /** A failure raised before anything was claimed keeps its own type (bad input, no host, …). */
  original: unknown;
}

function describeFailure(run: Run, err: unknown): FailureSummary {
  if (err instanceof StepFailure) return { outcome: err.outcome, type: err.type, message: err.message, original: err };
  if (isCancellation(err)) {
    return {
      outcome: 'cancelled',
      type: FailureType.MigrationCancelled,
      message: run.cancelReason ?? 'cancelled by operator',
      original: err,
    };
  }
  const app = rootApplicationFailure(err);
  return {
    outcome: 'failed',
    type: app?.type ?? 'Error',
    message: rootMessage(err),
    original: err,
  };
}

function finalFailure(run: Run, f: FailureSummary, report: MigrationReport | null, where: LocateResult | null): Error {
  if (report === null) {
    // Before any claim: surface the original failure (its type tells the CLI "bad input").
    if (f.outcome === 'cancelled') {
      const message = `${f.message}; nothing had been changed`;
      return cancelled(message, buildReport(run, 'cancelled', message, null, null, false, []));
    }
    const app = rootApplicationFailure(f.original);
    if (f.original instanceof ApplicationFailure) return f.original;
    return ApplicationFailure.create({
      type: app?.type ?? f.type,
      message: f.message,
      nonRetryable: true,
      details: app?.details ? [...app.details] : [],
    });
  }
  const placeNote =
    where?.location === 'source'
      ? `VM running on ${run.vm?.source.name}`
      : `VM location unknown (source ${where?.sourceState ?? '?'}, target ${where?.targetState ?? '?'})`;
  const cleaned = report.warnings.length === 0 ? 'target cleaned' : `target NOT fully cleaned: ${report.warnings.join('; ')}`;
  const message = `${f.message}. Compensated: ${placeNote}; ${cleaned}.`;
  if (f.outcome === 'cancelled' && !run.cancelledBySignal) return cancelled(message, report);
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

function describeArtifact(a: Artifact): string {
  if (a.kind === 'volume') return `deleting volume ${a.name}`;
  if (a.kind === 'pool') return `stopping pool ${a.pool}`;
  return `removing directory ${a.path}`;
}

/** Attempts a create task made before it failed. */
function attemptsOf(err: unknown, maxAttempts: number): number {
  if (err instanceof ActivityFailure && err.retryState === RetryState.MAXIMUM_ATTEMPTS_REACHED) return maxAttempts;
  const app = rootApplicationFailure(err);
  const detail = app?.details?.[0] as { attempt?: unknown } | undefined;
  if (detail && typeof detail.attempt === 'number') return detail.attempt;
  if (err instanceof ActivityFailure && err.cause instanceof TimeoutFailure) return maxAttempts;
  return 1;
}

function rootApplicationFailure(err: unknown): ApplicationFailure | null {
  let e: unknown = err;
  while (e instanceof Error) {
    if (e instanceof ApplicationFailure) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return null;
}

function rootMessage(err: unknown): string {
  let e: unknown = err;
  let last = err instanceof Error ? err.message : String(err);
  while (e instanceof Error) {
    if (e.message) last = e.message;
    if (e instanceof ApplicationFailure || e instanceof TimeoutFailure) return e.message || last;
    e = (e as { cause?: unknown }).cause;
  }
  return last;
}

function buildReport(
  run: Run,
  status: MigrationResultKind,
  reason: string | null,
  stats: CompletedMigrationStats | null,
  where: LocateResult | null,
  sourceCleaned: boolean,
  warnings: string[],
): MigrationReport {
  const info = workflowInfo();
  return {
    status,
    workflowId: info.workflowId,
    runId: info.runId,
    vm: run.vm?.name ?? run.progress.vm.name,
    vmUuid: run.vm?.uuid ?? run.progress.vm.uuid,
    source: run.vm?.source.name ?? run.progress.source,
    target: run.target?.name ?? null,
    createAttempts: { ...run.progress.createAttempts },
    durationMs: Date.now() - run.startedAt,
    downtimeMs: stats?.downtimeMs ?? null,
    bytesTransferred: stats?.bytesTransferred ?? null,
    migrationMs: run.migrationMs,
    timeoutMs: run.timeoutMs,
    phaseMs: { ...run.phaseMs },
    claimedAt: run.claimedAt === null ? null : new Date(run.claimedAt).toISOString(),
    releasedAt: run.releasedAt === null ? null : new Date(run.releasedAt).toISOString(),
    reason,
    location: where?.location ?? null,
    limitFired: run.progress.convergence?.limitFired ?? null,
    convergenceEvents: run.progress.convergence?.events ?? [],
    sourceCleaned,
    warnings,
  };
}

function historyRow(run: Run, r: MigrationReport): HistoryRecord {
  return {
    workflowId: r.workflowId,
    runId: r.runId,
    vmUuid: r.vmUuid,
    vmName: r.vm,
    source: r.source,
    target: r.target,
    result: r.status,
    reason: r.reason,
    startedAt: new Date(run.startedAt).toISOString(),
    endedAt: new Date().toISOString(),
    durationMs: r.durationMs,
    downtimeMs: r.downtimeMs,
    bytesTransferred: r.bytesTransferred,
    createAttempts: r.createAttempts,
    phaseMs: r.phaseMs,
  };
}
