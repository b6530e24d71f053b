/**
 * liveMigration: one VM's live migration as a durable workflow.
 *
 * The steps, in order, each a named function below:
 *   1. validateInput          bad input fails at once, non-retryable, nothing created
 *   2. readVmDisks            the VM's disks from the inventory, cross-checked with libvirt on the source
 *   3. selectTarget           filter + score + claim a target; the VM becomes "migrating"; the target's
 *                             pre-flight checks and storage plan, a refused target given back, the next one tried
 *   4. createTargetStorage    directory, pool, each disk: one activity each, maximumAttempts = threshold
 *   5. migrateBeforeDeadline  a timer, then the heartbeating migration — live (running and paused VMs) or
 *                             cold (stopped VMs: volumes streamed, definition moved); the timer firing aborts it
 *   6. finishMigration        ask libvirt where the VM runs, update the inventory, clean the source, history
 *   7. compensate             on abort / timeout / failure / operator cancel: VM state first, then the
 *                             target's artifacts in reverse, then the claim; never cancellable, retried until done
 *
 * The run's state, its handlers (progress query, cancel signal, tune update) live in migration-state.ts; the
 * report and the final failure in reports.ts; the activity proxies in proxies.ts.
 */
import { ApplicationFailure, CancellationScope, CancelledFailure, isCancellation, patched, sleep, upsertSearchAttributes } from '@temporalio/workflow';
import type {
  Artifact,
  CompletedMigrationStats,
  HostRef,
  LimitFired,
  LocateResult,
  MigrationReport,
  PlannedDirectory,
  PlannedDisk,
  StoragePlan,
  VmFacts,
} from '../common/migration';
import { modeOf, vmStateOfDomain } from '../common/migration';
import { deadlineAction } from '../common/convergence';
import { formatDuration } from '../common/durations';
import { FailureType } from '../common/failures';
import { vmPoolName } from '../common/names';
import { SA_SOURCE, SA_TARGET, SA_VM_NAME, SA_VM_UUID } from '../common/search-attributes';
import { streamEncryption, transportPolicy } from '../common/security';
import { byDirectory, copiedDisks, dataToMove, diskTaskName, legacyPlan, ownPoolName, reportedDisks } from '../common/storage';
import { migrationTimeoutMs, type LiveMigrationInput, type MigrationRequest } from '../common/validation';
import { attemptsOf, rootApplicationFailure, rootMessage, StepFailure, validatedRequest } from './failures';
import { artifactsOf, beginCopy, setPhase, startRun, tellParent, type MigrationRun, type Reached } from './migration-state';
import { aborting, cleanup, createTasks, migration, mustComplete, quick, targetCleanup } from './proxies';
import { buildReport, describeArtifact, describeFailure, finalFailure, historyRow, type FailureSummary } from './reports';

export type { LiveMigrationInput } from '../common/validation';

export async function liveMigration(input: LiveMigrationInput): Promise<MigrationReport> {
  const forward = new CancellationScope();
  const run = startRun(input, forward);
  try {
    return await forward.run(async () => {
      const request = validateInput(run, input);
      const vm = await readVmDisks(run, request);
      const checked = await selectTarget(run, request, vm);
      const { target } = checked;
      const plan = await createTargetStorage(run, request, vm, target, checked.plan);
      const stats = await migrateBeforeDeadline(run, request, vm, target, plan);
      return await CancellationScope.nonCancellable(() => finishMigration(run, vm, target, plan, stats));
    });
  } catch (err) {
    return await CancellationScope.nonCancellable(() => compensate(run, err));
  }
}

// ---- step 1 -------------------------------------------------------------------------------------------

function validateInput(run: MigrationRun, input: LiveMigrationInput): MigrationRequest {
  const request = validatedRequest(input);
  run.request = request;
  run.progress.vm = { name: request.vmName, uuid: request.vmUuid };
  run.progress.source = request.sourceHost;
  upsertSearchAttributes([
    { key: SA_VM_UUID, value: request.vmUuid },
    { key: SA_VM_NAME, value: request.vmName },
    { key: SA_SOURCE, value: request.sourceHost },
  ]);
  return request;
}

// ---- step 2 -------------------------------------------------------------------------------------------

async function readVmDisks(run: MigrationRun, request: MigrationRequest): Promise<VmFacts> {
  setPhase(run, 'reading-vm');
  const vm = await quick.readVm({ sourceHost: request.sourceHost, vmName: request.vmName, vmUuid: request.vmUuid });
  run.progress.source = vm.source.name;
  run.progress.mode = modeOf(vm);
  upsertSearchAttributes([{ key: SA_SOURCE, value: vm.source.name }]);
  return vm;
}

// ---- step 3 -------------------------------------------------------------------------------------------

/** Slot polling while a limit is reached or every fitting host is busy: 2 s doubling to 15 s. */
const SLOT_POLL_FIRST_MS = 2_000;
const SLOT_POLL_MAX_MS = 15_000;
/** Targets a migration claims and then finds unfit for its storage, before it gives up. */
const MAX_REJECTED_TARGETS = 3;
/** Runs started before storage plans replay without one (every disk copied into a per-VM directory). */
const STORAGE_PLAN_PATCH = 'storage-plan';
/** Runs started before pre-flight checks replay without them. */
const PREFLIGHT_PATCH = 'preflight';
/** Runs started before stream encryption replay (and finish) unencrypted, as they began. */
const STREAM_ENCRYPTION_PATCH = 'stream-encryption';

/** Why a claimed target was given back: a pre-flight check, or its storage. */
type Refusal = { check: string; reason: string; type: FailureType; vmWide: boolean };

/**
 * Claims a target that passes the storage check; a refused one is given back and another one claimed. `plan`
 * null: the target did not answer the check, and the directory tasks plan their directories (with retries).
 */
async function selectTarget(run: MigrationRun, request: MigrationRequest, vm: VmFacts): Promise<{ target: HostRef; plan: StoragePlan | null }> {
  setPhase(run, 'selecting-target');
  run.reached = { step: 'claiming', vm };
  const planned = patched(STORAGE_PLAN_PATCH);
  const preflight = patched(PREFLIGHT_PATCH);
  for (;;) {
    const target = await claimTarget(run, request, vm);
    let refusal = preflight ? await preflightRefusal(vm, target, request) : null;
    if (refusal === null) {
      const checked = planned ? await quick.planStorage({ vm, target }) : { plan: legacyPlan(vm) };
      if ('plan' in checked) return { target, plan: checked.plan };
      if ('deferred' in checked) return { target, plan: null };
      refusal = { check: 'storage', reason: checked.refused, type: FailureType.StorageConflict, vmWide: false };
    }
    // Nothing was created on it: give the claim back (the VM is back in its state on its source), try another.
    run.rejectedTargets.push({ host: target.name, reason: refusal.reason, check: refusal.check });
    await mustComplete.abandonClaim({ vmUuid: vm.uuid, workflowId: run.progress.workflowId, sourceHost: vm.source.name, state: vm.state ?? 'running' });
    run.reached = { step: 'claiming', vm };
    run.progress.target = null;
    if (refusal.vmWide || request.targetHost !== null || run.rejectedTargets.length >= MAX_REJECTED_TARGETS) throw targetsRefused(run, refusal.type, null);
  }
}

/** The claimed target's pre-flight checks: why it cannot run the VM, or null (a target that did not answer: null). */
async function preflightRefusal(vm: VmFacts, target: HostRef, request: MigrationRequest): Promise<Refusal | null> {
  const result = await quick.checkTarget({ vm, target, mode: modeOf(vm), transport: transportPolicy(request) });
  const failed = result.checks.find((c) => !c.ok);
  if (result.refusal === null || failed === undefined) return null;
  return { check: failed.check, reason: result.refusal, type: FailureType.PreflightFailed, vmWide: result.vmWide };
}

/** One claim, waiting for a slot while a limit is reached or every fitting host is busy (within the queue timeout). */
async function claimTarget(run: MigrationRun, request: MigrationRequest, vm: VmFacts): Promise<HostRef> {
  const giveUpAt = Date.now() + request.queueTimeoutMs;
  const excludeHosts = run.rejectedTargets.map((r) => r.host);
  for (let wait = SLOT_POLL_FIRST_MS; ; wait = Math.min(wait * 2, SLOT_POLL_MAX_MS)) {
    const placed = await quick
      .claimTarget({ vm, workflowId: run.progress.workflowId, targetHost: request.targetHost, limits: request.limits, ...(excludeHosts.length ? { excludeHosts } : {}) })
      .catch((err: unknown) => {
        const last = run.rejectedTargets[run.rejectedTargets.length - 1];
        const type = last?.check === 'storage' ? FailureType.StorageConflict : FailureType.PreflightFailed;
        throw excludeHosts.length > 0 && rootApplicationFailure(err)?.type === FailureType.NoTargetHost ? targetsRefused(run, type, rootMessage(err)) : err;
      });
    if ('target' in placed) {
      run.clock.claimedAt = Date.now();
      run.reached = { step: 'claimed', vm, target: placed.target };
      run.progress.target = placed.target.name;
      upsertSearchAttributes([{ key: SA_TARGET, value: placed.target.name }]);
      return placed.target;
    }
    if (Date.now() + wait > giveUpAt) {
      const message = `no slot within the queue timeout of ${formatDuration(request.queueTimeoutMs)}: ${placed.waiting}`;
      throw ApplicationFailure.create({ type: FailureType.NoTargetHost, message, nonRetryable: true });
    }
    const first = run.progress.phase !== 'waiting-for-slot';
    if (first) setPhase(run, 'waiting-for-slot');
    run.progress.waitingFor = placed.waiting;
    if (first) tellParent(run);
    await sleep(wait);
  }
}

/** Every claimed target was refused (its checks or its storage): nothing was created on any of them. */
function targetsRefused(run: MigrationRun, type: FailureType, noMore: string | null): ApplicationFailure {
  const each = run.rejectedTargets.map((r) => `${r.host}: ${r.reason}`).join('; ');
  const what = type === FailureType.StorageConflict ? 'can take the storage of' : 'passes the pre-flight checks for';
  const message = `no target ${what} ${run.progress.vm.name} (${each})${noMore ? `; ${noMore}` : ''}`;
  return ApplicationFailure.create({ type, message, nonRetryable: true, details: [{ rejectedTargets: run.rejectedTargets }] });
}

// ---- step 4 -------------------------------------------------------------------------------------------

/**
 * For each directory receiving copied disks, the directory and the pool ("ensure": only what is missing is
 * created, and the task says whether it created it), then each copied disk. Shared disks need nothing. With
 * no plan yet (the target did not answer the check), each directory task plans its directory first.
 */
async function createTargetStorage(run: MigrationRun, request: MigrationRequest, vm: VmFacts, target: HostRef, planned: StoragePlan | null): Promise<StoragePlan> {
  setPhase(run, 'creating-storage');
  const artifacts: Artifact[] = [];
  run.reached = { step: 'storage', vm, target, artifacts };
  const tasks = createTasks(request);
  const base = { target, vmUuid: vm.uuid };
  const host = target.name;
  const createTask = <R extends { attempt: number }>(task: string, artifact: Artifact, body: () => Promise<R>) =>
    runCreateTask(run, request, artifacts, task, artifact, body);

  const disks: PlannedDisk[] = planned ? [...planned.disks] : [];
  const directories: PlannedDirectory[] = [];
  const slots = planned ? planned.directories : [...byDirectory(vm.disks).keys()].map((path) => ({ path, decided: null }));
  const several = slots.length > 1;
  for (const slot of slots) {
    const { path } = slot;
    const [dirTask, poolTask] = several ? [`directory:${path}`, `pool:${path}`] : ['directory', 'pool'];
    const decided = 'pool' in slot ? slot : null;
    const pool = decided?.pool ?? ownPoolName(vm.uuid, directories.length);
    const ask = decided ? { poolExists: decided.poolExists, dirExists: decided.dirExists } : { decide: { vm, index: directories.length } };
    const made = await createTask(dirTask, { kind: 'directory', host, pool, path }, () => tasks.createStorageDirectory({ ...base, pool, path, task: dirTask, ...ask }));
    if (made.plan) disks.push(...made.plan.disks);
    const dir = decided ?? made.plan?.directory ?? null;
    if (dir === null) continue; // shared storage: nothing to create
    directories.push(dir);
    await createTask(poolTask, { kind: 'pool', host, pool: dir.pool, path }, () => tasks.createStoragePool({ ...base, pool: dir.pool, poolExists: dir.poolExists, task: poolTask }));
  }
  const plan: StoragePlan = { disks, directories };
  run.plan = plan;
  run.progress.disks = reportedDisks(plan);
  for (const d of copiedDisks(plan)) {
    const task = diskTaskName(d, plan);
    const pool = d.pool ?? vmPoolName(vm.uuid);
    const disk = { target: d.target, name: d.name, path: d.path, format: d.format, sizeBytes: d.sizeBytes };
    await createTask(task, { kind: 'volume', host, pool, name: d.name, path: d.path }, () =>
      tasks.createDisk({ ...base, pool, disk, replacesLeftover: d.replacesLeftover, task }),
    );
  }
  return plan;
}

/** Records the artifact, runs the task, counts its attempts; a task that exhausts them aborts the migration. */
async function runCreateTask<R extends { attempt: number }>(
  run: MigrationRun,
  request: MigrationRequest,
  artifacts: Artifact[],
  task: string,
  artifact: Artifact,
  body: () => Promise<R>,
): Promise<R> {
  artifacts.push(artifact);
  run.progress.createAttempts[task] = 1;
  try {
    const done = await body();
    run.progress.createAttempts[task] = done.attempt;
    return done;
  } catch (err) {
    if (isCancellation(err)) throw err;
    const attempts = attemptsOf(err, request.createAttempts);
    run.progress.createAttempts[task] = attempts;
    const allowed = `${request.createAttempts} allowed attempt${request.createAttempts === 1 ? '' : 's'}`;
    throw new StepFailure('aborted', FailureType.CreateTaskFailed, `create task ${task} on ${artifact.host} failed ${attempts} of ${allowed}: ${rootMessage(err)}`);
  }
}

// ---- step 5 -------------------------------------------------------------------------------------------

type CopyResult = { ok: true; stats: CompletedMigrationStats } | { ok: false; err: unknown };

async function migrateBeforeDeadline(run: MigrationRun, request: MigrationRequest, vm: VmFacts, target: HostRef, plan: StoragePlan): Promise<CompletedMigrationStats> {
  setPhase(run, 'migrating');
  const timeoutMs = migrationTimeoutMs(request, dataToMove(vm, plan));
  const view = beginCopy(run, request, timeoutMs);

  // The timer first, then the migration; whichever finishes first decides.
  const timerScope = new CancellationScope();
  const deadline = timerScope.run(() => sleep(timeoutMs)).then(
    () => 'deadline' as const,
    () => 'stopped' as const,
  );
  const copyScope = new CancellationScope();
  run.reached = { step: 'copying', vm, target, artifacts: artifactsOf(run.reached) };
  const started = Date.now();
  const cold = modeOf(vm) === 'cold';
  // The pre-flight check refused what these hosts cannot honour; this is the same rule's decision.
  const encrypt = patched(STREAM_ENCRYPTION_PATCH) && streamEncryption(transportPolicy(request), modeOf(vm), vm.source, target).encrypt;
  run.progress.streamEncrypted = encrypt;
  const move = () =>
    cold
      ? migration(timeoutMs).coldMigrateVm({ source: vm.source, target, vmUuid: vm.uuid, bandwidthMiBps: request.bandwidthMiBps, plannedDisks: plan.disks })
      : migration(timeoutMs).migrateVm({
          source: vm.source,
          target,
          vmUuid: vm.uuid,
          bandwidthMiBps: request.bandwidthMiBps,
          ...(encrypt ? { encryptStream: true } : {}),
          convergence: request.convergence,
          pool: vmPoolName(vm.uuid),
          disks: vm.disks,
          plannedDisks: plan.disks,
          clientTimeoutMs: timeoutMs + 5 * 60_000,
        });
  const copy: Promise<CopyResult> = copyScope
    .run(move)
    .then(
      (stats) => ({ ok: true as const, stats }),
      (err: unknown) => ({ ok: false as const, err }),
    );

  let first = await Promise.race([copy, deadline]);
  if (first === 'deadline') {
    const detail = `the migration did not finish within its timeout of ${formatDuration(timeoutMs)}`;
    const fired = (action: LimitFired['action']): LimitFired => ({ limit: 'completion', action, at: new Date().toISOString(), stats: run.progress.migration, detail });
    if (!view.postCopyActive && (cold || deadlineAction(request.convergence) === 'abort')) {
      view.limitFired = fired('abort');
      copyScope.cancel();
      await copy; // WAIT_CANCELLATION_COMPLETED: the activity has stopped when this settles
      throw new StepFailure('timed-out', FailureType.MigrationTimedOut, detail);
    }
    // Post-copy: switch (unless already in post-copy) and let the copy finish — a migration in post-copy is never aborted.
    if (!view.postCopyActive) {
      await quick.switchToPostCopy({ source: vm.source, vmUuid: vm.uuid });
      view.postCopyActive = true;
      view.limitFired = fired('post-copy');
      view.events.push({ at: view.limitFired.at, what: `completion deadline: switched to post-copy (${detail})` });
    }
    first = await copy;
  } else {
    timerScope.cancel();
    await deadline;
  }
  if (first === 'stopped') {
    // The timer only stops early when the whole migration is being cancelled: let the activity stop first.
    const settled = await copy;
    throw settled.ok ? new CancelledFailure('cancelled') : settled.err;
  }
  run.clock.migrationMs = Date.now() - started;
  if (!first.ok) throw copyFailure(run, first.err);
  return first.stats;
}

/** Why the copy failed: cancelled, the progress deadline (the activity aborted the job), or libvirt's failure. */
function copyFailure(run: MigrationRun, err: unknown): unknown {
  if (isCancellation(err)) return err;
  const app = rootApplicationFailure(err);
  if (app?.type !== FailureType.MigrationStalled) return new StepFailure('failed', FailureType.MigrationFailed, rootMessage(err));
  const fired = (app.details?.[0] as { limitFired?: LimitFired } | undefined)?.limitFired;
  if (fired && run.progress.convergence) run.progress.convergence.limitFired = fired;
  return new StepFailure('timed-out', FailureType.MigrationTimedOut, app.message);
}

// ---- step 6 -------------------------------------------------------------------------------------------

async function finishMigration(
  run: MigrationRun,
  vm: VmFacts,
  target: HostRef,
  plan: StoragePlan,
  stats: CompletedMigrationStats,
  warnings: string[] = [],
): Promise<MigrationReport> {
  setPhase(run, 'finishing');
  // Where does libvirt say the VM runs? The migrate activity asked as the copy ended; ask again otherwise.
  const where = stats.location?.location === 'target' ? stats.location : await mustComplete.locateVm({ source: vm.source, target, vmUuid: vm.uuid });
  if (where.location !== 'target') {
    const at = where.location === 'source' ? `still on ${vm.source.name}` : 'running nowhere';
    throw new StepFailure('failed', FailureType.MigrationFailed, `libvirt reported success but the VM is ${at}`);
  }
  // A paused VM stays paused, a stopped one stopped: the inventory takes the state libvirt reports on the target.
  const state = vmStateOfDomain(where.targetState);
  await mustComplete.recordVmMoved({ vmUuid: vm.uuid, target: target.name, workflowId: run.progress.workflowId, state: state === 'unknown' ? 'running' : state });
  run.clock.releasedAt = Date.now();

  // The source's old storage and the target's new capacity at once; then the source's capacity and history.
  const [sourceCleaned] = await Promise.all([cleanSourceStorage(run, vm, plan, warnings), mustComplete.refreshHostCapacity({ hosts: [target.name] })]);
  setPhase(run, 'migrated');
  const report = buildReport(run, 'migrated', null, stats, where, sourceCleaned, warnings);
  await Promise.all([mustComplete.refreshHostCapacity({ hosts: [vm.source.name] }), mustComplete.recordHistory(historyRow(run, report))]);
  return report;
}

/** Removes the source's old disks, pool and directory (unless kept); a failure is a warning, never a rollback. */
async function cleanSourceStorage(run: MigrationRun, vm: VmFacts, plan: StoragePlan, warnings: string[]): Promise<boolean> {
  if (run.request?.keepSourceStorage) return false;
  try {
    const copied = copiedDisks(plan).map((d) => d.path);
    const cleaned = await cleanup.cleanSource({ source: vm.source, vmUuid: vm.uuid, disks: vm.disks, copied });
    warnings.push(...cleaned.warnings);
    return cleaned.warnings.length === 0;
  } catch (err) {
    warnings.push(`the source's old storage was not removed: ${rootMessage(err)} (remove ${vm.storageDir} on ${vm.source.name} by hand)`);
    return false;
  }
}

// ---- step 7 -------------------------------------------------------------------------------------------

/** Refusals of the claim step: the inventory changed nothing. */
const PLACEMENT_REFUSALS: readonly string[] = [FailureType.NoTargetHost, FailureType.VmBusy, FailureType.VmNotFound, FailureType.VmMismatch, FailureType.StorageConflict, FailureType.PreflightFailed];

async function compensate(run: MigrationRun, err: unknown): Promise<MigrationReport> {
  const failure = describeFailure(run, err);
  run.progress.lastError = failure.message;
  const reached = run.reached;
  switch (reached.step) {
    case 'nothing':
      throw finalFailure(run, failure, null, null); // bad input, unknown VM, …: nothing changed, nothing recorded
    case 'claiming':
      // The claim step refused (nothing changed), or did not answer: drop a claim it may have made after all.
      if (!PLACEMENT_REFUSALS.includes(failure.type)) {
        await mustComplete.abandonClaim({ vmUuid: reached.vm.uuid, workflowId: run.progress.workflowId, sourceHost: reached.vm.source.name, state: reached.vm.state ?? 'running' });
      }
      throw finalFailure(run, failure, null, null);
    default:
      return await undoOnTarget(run, reached, failure);
  }
}

/** The claim was held: find the VM, put its state back, delete what this run created on the target, release. */
async function undoOnTarget(run: MigrationRun, reached: Exclude<Reached, { step: 'nothing' | 'claiming' }>, failure: FailureSummary): Promise<MigrationReport> {
  const { vm, target } = reached;
  setPhase(run, 'compensating');

  // Where is the VM really? Abort a running job first; a migration that completed after all is finished, not undone.
  const copying = reached.step === 'copying';
  run.progress.waitingFor = copying ? 'aborting the migration job' : `checking where ${vm.name} runs`;
  const ref = { source: vm.source, target, vmUuid: vm.uuid };
  const cold = modeOf(vm) === 'cold';
  const where = copying ? await (cold ? aborting.abortColdMigration(ref) : aborting.abortMigration(ref)) : await mustComplete.locateVm(ref);
  if (where.location === 'target') {
    const late = `the ${failure.outcome === 'cancelled' ? 'cancel' : failure.outcome} came after the VM had moved: finished, not undone`;
    try {
      return await finishMigration(run, vm, target, run.plan ?? legacyPlan(vm), { totalTimeMs: null, downtimeMs: null, bytesTransferred: null }, [late]);
    } catch (e) {
      throw ApplicationFailure.create({ type: FailureType.MigrationFailed, message: rootMessage(e), nonRetryable: true });
    }
  }
  if (where.location === 'split') return await keepSplitVm(run, vm, target, failure, where);

  // 1. The VM's state first, so it is never left "migrating".
  run.progress.waitingFor = 'restoring the VM state in the inventory';
  await mustComplete.setVmPlacement({ vmUuid: vm.uuid, host: vm.source.name, state: where.location === 'source' ? vmStateOfDomain(where.sourceState) : 'unknown' });

  // 2. Everything created on the target, newest first.
  const warnings: string[] = [];
  const base = { target, vmUuid: vm.uuid };
  for (const a of [...artifactsOf(reached)].reverse()) {
    run.progress.waitingFor = `${describeArtifact(a)} on ${a.host}`;
    try {
      const path = a.path !== undefined ? { path: a.path } : {};
      if (a.kind === 'volume') await targetCleanup.deleteDisk({ ...base, pool: a.pool, name: a.name, ...path });
      else if (a.kind === 'pool') await targetCleanup.stopStoragePool({ ...base, pool: a.pool, ...path });
      else await targetCleanup.removeStorageDirectory({ ...base, pool: a.pool, path: a.path });
    } catch (e) {
      // A refusal (the VM or another domain uses it, a directory not empty) or a target unreachable for minutes:
      // leave the rest alone, say so, and give the claim back; the provenance records keep what is left.
      warnings.push(`${describeArtifact(a)} on ${a.host} not done: ${rootMessage(e)} (left as recorded in the inventory; a later migration of ${vm.name} to ${a.host} removes it)`);
      break;
    }
  }

  // 3. Then the claim: the target is not chosen again while it is being cleaned.
  run.progress.waitingFor = 'releasing the target claim';
  await mustComplete.releaseClaim({ vmUuid: vm.uuid, workflowId: run.progress.workflowId });
  run.clock.releasedAt = Date.now();

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
async function keepSplitVm(run: MigrationRun, vm: VmFacts, target: HostRef, failure: FailureSummary, where: LocateResult): Promise<never> {
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
