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
 *
 * The run's state, its handlers (progress query, cancel signal, tune update) live in migration-state.ts; the
 * report and the final failure in reports.ts; the activity proxies in proxies.ts.
 */
import { ApplicationFailure, CancellationScope, CancelledFailure, isCancellation, sleep, upsertSearchAttributes } from '@temporalio/workflow';
import type { Artifact, CompletedMigrationStats, HostRef, LimitFired, LocateResult, MigrationReport, VmFacts } from '../common/migration';
import { deadlineAction } from '../common/convergence';
import { formatDuration } from '../common/durations';
import { FailureType } from '../common/failures';
import { vmPoolName } from '../common/names';
import { SA_SOURCE, SA_TARGET, SA_VM_NAME, SA_VM_UUID } from '../common/search-attributes';
import { InputError, migrationTimeoutMs, validateMigrationInput, type LiveMigrationInput, type MigrationRequest } from '../common/validation';
import { attemptsOf, rootApplicationFailure, rootMessage, StepFailure } from './failures';
import { artifactsOf, beginCopy, setPhase, startRun, tellParent, type MigrationRun, type Reached } from './migration-state';
import { aborting, cleanup, createTasks, migration, mustComplete, quick } from './proxies';
import { buildReport, describeArtifact, describeFailure, finalFailure, historyRow, type FailureSummary } from './reports';

export type { LiveMigrationInput } from '../common/validation';

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

function validateInput(run: MigrationRun, input: LiveMigrationInput): MigrationRequest {
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
    if (!(err instanceof InputError)) throw err;
    throw ApplicationFailure.create({ type: FailureType.InvalidInput, message: err.message, nonRetryable: true, details: [{ problems: err.problems }] });
  }
}

// ---- step 2 -------------------------------------------------------------------------------------------

async function readVmDisks(run: MigrationRun, request: MigrationRequest): Promise<VmFacts> {
  setPhase(run, 'reading-vm');
  const vm = await quick.readVm({ sourceHost: request.sourceHost, vmName: request.vmName, vmUuid: request.vmUuid });
  run.progress.source = vm.source.name;
  upsertSearchAttributes([{ key: SA_SOURCE, value: vm.source.name }]);
  return vm;
}

// ---- step 3 -------------------------------------------------------------------------------------------

/** Slot polling while a limit is reached or every fitting host is busy: 2 s doubling to 15 s. */
const SLOT_POLL_FIRST_MS = 2_000;
const SLOT_POLL_MAX_MS = 15_000;

async function selectTarget(run: MigrationRun, request: MigrationRequest, vm: VmFacts): Promise<HostRef> {
  setPhase(run, 'selecting-target');
  run.reached = { step: 'claiming', vm };
  const giveUpAt = Date.now() + request.queueTimeoutMs;
  for (let wait = SLOT_POLL_FIRST_MS; ; wait = Math.min(wait * 2, SLOT_POLL_MAX_MS)) {
    const placed = await quick.claimTarget({ vm, workflowId: run.progress.workflowId, targetHost: request.targetHost, limits: request.limits });
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

// ---- step 4 -------------------------------------------------------------------------------------------

async function createTargetStorage(run: MigrationRun, request: MigrationRequest, vm: VmFacts, target: HostRef): Promise<void> {
  setPhase(run, 'creating-storage');
  const artifacts: Artifact[] = [];
  run.reached = { step: 'storage', vm, target, artifacts };
  const tasks = createTasks(request);
  const pool = vmPoolName(vm.uuid);
  const base = { target, vmUuid: vm.uuid, pool };
  const host = target.name;
  const createTask = (task: string, artifact: Artifact, body: () => Promise<{ attempt: number }>) =>
    runCreateTask(run, request, artifacts, task, artifact, body);

  await createTask('directory', { kind: 'directory', host, pool, path: vm.storageDir }, () => tasks.createStorageDirectory({ ...base, path: vm.storageDir }));
  await createTask('pool', { kind: 'pool', host, pool }, () => tasks.createStoragePool(base));
  for (const disk of vm.disks) {
    await createTask(`disk:${disk.name}`, { kind: 'volume', host, pool, name: disk.name }, () => tasks.createDisk({ ...base, disk }));
  }
}

/** Records the artifact, runs the task, counts its attempts; a task that exhausts them aborts the migration. */
async function runCreateTask(
  run: MigrationRun,
  request: MigrationRequest,
  artifacts: Artifact[],
  task: string,
  artifact: Artifact,
  body: () => Promise<{ attempt: number }>,
): Promise<void> {
  artifacts.push(artifact);
  run.progress.createAttempts[task] = 1;
  try {
    run.progress.createAttempts[task] = (await body()).attempt;
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

async function migrateBeforeDeadline(run: MigrationRun, request: MigrationRequest, vm: VmFacts, target: HostRef): Promise<CompletedMigrationStats> {
  setPhase(run, 'migrating');
  const timeoutMs = migrationTimeoutMs(request, vm.dataBytes);
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
  const copy: Promise<CopyResult> = copyScope
    .run(() =>
      migration(timeoutMs).migrateVm({
        source: vm.source,
        target,
        vmUuid: vm.uuid,
        bandwidthMiBps: request.bandwidthMiBps,
        convergence: request.convergence,
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
    const detail = `the migration did not finish within its timeout of ${formatDuration(timeoutMs)}`;
    const fired = (action: LimitFired['action']): LimitFired => ({ limit: 'completion', action, at: new Date().toISOString(), stats: run.progress.migration, detail });
    if (!view.postCopyActive && deadlineAction(request.convergence) === 'abort') {
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

async function finishMigration(run: MigrationRun, vm: VmFacts, target: HostRef, stats: CompletedMigrationStats, warnings: string[] = []): Promise<MigrationReport> {
  setPhase(run, 'finishing');
  // Where does libvirt say the VM runs? The migrate activity asked as the copy ended; ask again otherwise.
  const where = stats.location?.location === 'target' ? stats.location : await mustComplete.locateVm({ source: vm.source, target, vmUuid: vm.uuid });
  if (where.location !== 'target') {
    const at = where.location === 'source' ? `still on ${vm.source.name}` : 'running nowhere';
    throw new StepFailure('failed', FailureType.MigrationFailed, `libvirt reported success but the VM is ${at}`);
  }
  await mustComplete.recordVmMoved({ vmUuid: vm.uuid, target: target.name, workflowId: run.progress.workflowId });
  run.clock.releasedAt = Date.now();

  // The source's old storage and the target's new capacity at once; then the source's capacity and history.
  const [sourceCleaned] = await Promise.all([cleanSourceStorage(run, vm, warnings), mustComplete.refreshHostCapacity({ hosts: [target.name] })]);
  setPhase(run, 'migrated');
  const report = buildReport(run, 'migrated', null, stats, where, sourceCleaned, warnings);
  await Promise.all([mustComplete.refreshHostCapacity({ hosts: [vm.source.name] }), mustComplete.recordHistory(historyRow(run, report))]);
  return report;
}

/** Removes the source's old disks, pool and directory (unless kept); a failure is a warning, never a rollback. */
async function cleanSourceStorage(run: MigrationRun, vm: VmFacts, warnings: string[]): Promise<boolean> {
  if (run.request?.keepSourceStorage) return false;
  try {
    const cleaned = await cleanup.cleanSource({ source: vm.source, vmUuid: vm.uuid, disks: vm.disks, storageDir: vm.storageDir });
    warnings.push(...cleaned.warnings);
    return cleaned.warnings.length === 0;
  } catch (err) {
    warnings.push(`the source's old storage was not removed: ${rootMessage(err)} (remove ${vm.storageDir} on ${vm.source.name} by hand)`);
    return false;
  }
}

// ---- step 7 -------------------------------------------------------------------------------------------

/** Refusals of the claim step: the inventory changed nothing. */
const PLACEMENT_REFUSALS: readonly string[] = [FailureType.NoTargetHost, FailureType.VmBusy, FailureType.VmNotFound, FailureType.VmMismatch];

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
        await mustComplete.abandonClaim({ vmUuid: reached.vm.uuid, workflowId: run.progress.workflowId, sourceHost: reached.vm.source.name });
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
  const where = copying
    ? await aborting.abortMigration({ source: vm.source, target, vmUuid: vm.uuid })
    : await mustComplete.locateVm({ source: vm.source, target, vmUuid: vm.uuid });
  if (where.location === 'target') {
    const late = `the ${failure.outcome === 'cancelled' ? 'cancel' : failure.outcome} came after the VM had moved: finished, not undone`;
    try {
      return await finishMigration(run, vm, target, { totalTimeMs: null, downtimeMs: null, bytesTransferred: null }, [late]);
    } catch (e) {
      throw ApplicationFailure.create({ type: FailureType.MigrationFailed, message: rootMessage(e), nonRetryable: true });
    }
  }
  if (where.location === 'split') return await keepSplitVm(run, vm, target, failure, where);

  // 1. The VM's state first, so it is never left "migrating".
  run.progress.waitingFor = 'restoring the VM state in the inventory';
  await mustComplete.setVmPlacement({ vmUuid: vm.uuid, host: vm.source.name, state: where.location === 'source' ? 'running' : 'unknown' });

  // 2. Everything created on the target, newest first.
  const warnings: string[] = [];
  const base = { target, vmUuid: vm.uuid };
  for (const a of [...artifactsOf(reached)].reverse()) {
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
