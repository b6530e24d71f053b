/**
 * Ferry's activities: thin, idempotent steps over the inventory and the Hypervisor port.
 * Each one can be retried after a partial success (or a worker crash) and ends in the same place.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { DiskRecord, HistoryRecord, HostRecord, HostState, VmState } from '../common/types';
import type {
  CompletedMigrationStats,
  CreateTaskResult,
  HostRef,
  LimitFired,
  LocateResult,
  MigrationStats,
  ProgressSignal,
  VmFacts,
} from '../common/migration';
import { FailureType } from '../common/failures';
import { basenameOf, dirnameOf, isStrictlyInside, isVolumeName, normalizeAbsolute } from '../common/names';
import type { DomainInfo, Hypervisor, JobInfo } from '../hypervisor/port';
import { LibvirtError } from '../hypervisor/errors';
import type { Inventory, MigrationLimits, SyncResult } from '../inventory/store';
import { syncInventory } from '../inventory/sync';
import { PlacementError } from '../inventory/placement';
import { guarded, nonRetryable } from './failures';
import { ConvergenceMonitor } from './convergence-monitor';
import type { ConvergencePolicy } from '../common/validation';

export interface ActivityDeps {
  inventory: Inventory;
  hypervisor: Hypervisor;
  /** Delivers live progress to the running workflow (the worker wires a Temporal client in). */
  signalProgress?: (workflowId: string, progress: ProgressSignal) => Promise<void>;
  /** How often the migrate activity samples libvirt's job statistics. Default 1 s. */
  jobPollIntervalMs?: number;
  /** How often it forwards them to the workflow (each one is a history event). Default 2 s. */
  progressSignalIntervalMs?: number;
}

export interface ReadVmInput {
  sourceHost: string;
  vmName: string;
  vmUuid: string;
}

export interface ClaimTargetInput {
  vm: VmFacts;
  workflowId: string;
  targetHost: string | null;
  limits: MigrationLimits;
}

/** A claimed target, or why the migration has to wait for a slot (a limit, or every fitting host busy). */
export type ClaimTargetResult = { target: HostRef } | { waiting: string };

export interface TargetStorageInput {
  target: HostRef;
  vmUuid: string;
  pool: string;
}

export interface MigrateVmInput {
  source: HostRef;
  target: HostRef;
  vmUuid: string;
  bandwidthMiBps: number | null;
  convergence: ConvergencePolicy;
  pool: string;
  disks: DiskRecord[];
  /** Upper bound for the virsh client (the workflow's timer is the real deadline). */
  clientTimeoutMs: number;
}

export interface LocateInput {
  source: HostRef;
  target: HostRef;
  vmUuid: string;
}

export interface CleanSourceInput {
  source: HostRef;
  vmUuid: string;
  disks: DiskRecord[];
  storageDir: string;
}

export interface CleanSourceResult {
  removed: string[];
  warnings: string[];
}

/** Kept in the migrate activity's heartbeat so a retry knows what an earlier attempt did. */
interface MigrateHeartbeat {
  startedByAttempt: number | null;
  stats?: MigrationStats;
}

const ACTIVE_JOB_TYPES: ReadonlySet<JobInfo['type']> = new Set(['bounded', 'unbounded']);

export function hostRef(h: HostRecord): HostRef {
  return { name: h.name, address: h.address, uri: h.uri };
}

export function migrationStats(job: JobInfo, now = new Date()): MigrationStats {
  const total = job.dataTotalBytes;
  const processed = job.dataProcessedBytes;
  return {
    jobType: job.type,
    elapsedMs: job.timeElapsedMs,
    dataTotalBytes: total,
    dataProcessedBytes: processed,
    dataRemainingBytes: job.dataRemainingBytes,
    memoryRemainingBytes: job.memoryRemainingBytes,
    diskRemainingBytes: job.diskRemainingBytes,
    memoryIteration: job.memoryIteration,
    dirtyRatePagesPerSec: job.dirtyRatePagesPerSec,
    percent: total && processed !== null ? Math.min(100, Math.round((processed / total) * 1000) / 10) : null,
    sampledAt: now.toISOString(),
  };
}

/** libvirt's marker of a migration in post-copy: the source domain's state reason. */
function isPostCopy(d: DomainInfo | null): boolean {
  return d?.stateReason !== null && d?.stateReason !== undefined && /post-?copy/.test(d.stateReason);
}

/** A post-copy that failed: the source is `paused (post-copy failed)` and can neither resume nor be aborted. */
function isPostCopyFailed(d: DomainInfo | null): boolean {
  return isPostCopy(d) && /fail/.test(d?.stateReason ?? '');
}

function isRunningOrPaused(d: DomainInfo | null): boolean {
  return d !== null && (d.state === 'running' || d.state === 'paused');
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done);
  });
}

export function createActivities(deps: ActivityDeps) {
  const { inventory, hypervisor: hv } = deps;
  const jobPollMs = deps.jobPollIntervalMs ?? 1000;
  const signalEveryMs = deps.progressSignalIntervalMs ?? 2000;

  function workflowId(): string {
    const wf = Context.current().info.workflowExecution;
    if (!wf) throw new Error('Ferry activities run inside workflows only');
    return wf.workflowId;
  }

  async function report(progress: ProgressSignal): Promise<void> {
    if (!deps.signalProgress) return;
    try {
      await deps.signalProgress(workflowId(), progress);
    } catch {
      // Progress is best effort: a lost sample must never fail a migration.
    }
  }

  /** Reports a retry of a create task to the workflow as it begins (the first attempt is not news). */
  async function noteAttempt(task: string): Promise<number> {
    const attempt = Context.current().info.attempt;
    if (attempt > 1) await report({ createTask: { task, attempt } });
    return attempt;
  }

  /** Where libvirt says the VM runs. Asks the source first: a VM running there with no job is there. */
  async function locate(source: HostRef, target: HostRef, uuid: string): Promise<LocateResult> {
    const src = await hv.getDomain(source.uri, uuid);
    if (src !== null && isPostCopyFailed(src)) {
      const tgt = await hv.getDomain(target.uri, uuid).catch(() => null);
      return { location: 'split', sourceState: `${src.state} (${src.stateReason})`, targetState: tgt ? `${tgt.state} (${tgt.stateReason ?? ''})` : null };
    }
    if (src !== null && src.state === 'running') {
      const job = await hv.jobInfo(source.uri, uuid);
      if (!ACTIVE_JOB_TYPES.has(job.type)) {
        return { location: 'source', sourceState: src.state, targetState: null };
      }
    }
    const tgt = await hv.getDomain(target.uri, uuid);
    const tgtRunning = tgt !== null && tgt.state === 'running';
    if (tgtRunning && !isRunningOrPaused(src)) {
      return { location: 'target', sourceState: src?.state ?? null, targetState: tgt.state };
    }
    if (isRunningOrPaused(src)) {
      return { location: 'source', sourceState: src?.state ?? null, targetState: tgt?.state ?? null };
    }
    return { location: 'nowhere', sourceState: src?.state ?? null, targetState: tgt?.state ?? null };
  }

  /** A target-side deletion must never touch storage of a VM that runs there. */
  async function assertNotRunningOn(host: HostRef, uuid: string, what: string): Promise<void> {
    const dom = await hv.getDomain(host.uri, uuid);
    if (dom !== null && dom.state === 'paused' && !dom.persistent) {
      // The transient, paused domain of an incoming migration that has not been torn down yet: e.g. after the
      // target's libvirtd was killed mid-migration and restarted, it lists the incoming QEMU until it kills it.
      // Not the live VM, but its QEMU may still hold the disk: wait (retry) until libvirt has dropped it.
      throw ApplicationFailure.create({
        type: 'IncomingDomainPresent',
        message:
          `waiting to ${what} on ${host.name}: it still has the paused, transient domain of an incoming migration ` +
          `of ${uuid} (${dom.stateReason ?? 'no reason given'}); libvirt removes it when that migration job ends`,
        nonRetryable: false,
      });
    }
    if (isRunningOrPaused(dom)) {
      throw nonRetryable(
        FailureType.UnsafeCleanup,
        `refusing to ${what} on ${host.name}: VM ${uuid} is ${dom?.state} there. ` +
          'Check where the VM runs (`ferry status`) before removing its storage by hand.',
      );
    }
  }

  /**
   * libvirt's completed-job statistics, read on the target (the source's are gone with --undefinesource).
   * They count memory only; the disk mirror copies each disk's full virtual size, added here.
   */
  async function completedStats(target: HostRef, uuid: string, disks: DiskRecord[]): Promise<CompletedMigrationStats> {
    const job = await hv.completedJobInfo(target.uri, uuid);
    if (job === null) return { totalTimeMs: null, downtimeMs: null, bytesTransferred: null };
    const diskBytes = disks.reduce((sum, d) => sum + d.sizeBytes, 0);
    return {
      totalTimeMs: job.totalTimeMs ?? job.timeElapsedMs,
      downtimeMs: job.downtimeMs,
      bytesTransferred: job.dataProcessedBytes === null ? null : job.dataProcessedBytes + diskBytes,
    };
  }

  return {
    /** Step 2: the VM's disks from the inventory, cross-checked with libvirt on the source. */
    async readVm(input: ReadVmInput): Promise<VmFacts> {
      return guarded(async () => {
        const host = await inventory.getHost(input.sourceHost);
        if (host === null) {
          throw nonRetryable(
            FailureType.InvalidInput,
            `source host "${input.sourceHost}" is not in the inventory: add it with \`ferry hosts add\` or check the address`,
          );
        }
        const vm = await inventory.getVm(input.vmUuid);
        if (vm === null) {
          throw nonRetryable(
            FailureType.VmNotFound,
            `no VM with UUID ${input.vmUuid} in the inventory: check the UUID or run \`ferry inventory sync\``,
          );
        }
        if (vm.name !== input.vmName) {
          throw nonRetryable(
            FailureType.VmMismatch,
            `VM ${input.vmUuid} is named "${vm.name}" in the inventory, not "${input.vmName}": check the name and UUID`,
          );
        }
        if (vm.host !== host.name) {
          throw nonRetryable(
            FailureType.VmMismatch,
            `VM ${vm.name} runs on ${vm.host} according to the inventory, not on ${host.name} (${host.address}): pass the right source`,
          );
        }
        if (vm.state === 'migrating') {
          throw nonRetryable(FailureType.VmBusy, `VM ${vm.name} is already being migrated: wait for it or cancel it (\`ferry cancel ${vm.name}\`)`);
        }
        if (vm.state !== 'running') {
          throw nonRetryable(FailureType.UnsupportedVm, `VM ${vm.name} is ${vm.state}: only running VMs are live-migrated`);
        }
        const dom = await hv.getDomain(host.uri, vm.uuid);
        if (dom === null) {
          throw nonRetryable(
            FailureType.VmMismatch,
            `libvirt on ${host.name} has no domain with UUID ${vm.uuid}: the inventory is stale, run \`ferry inventory sync\``,
          );
        }
        if (dom.name !== vm.name || dom.state !== 'running') {
          throw nonRetryable(
            FailureType.VmMismatch,
            `libvirt on ${host.name} reports domain ${vm.uuid} as "${dom.name}" (${dom.state}); the inventory says "${vm.name}" (running): run \`ferry inventory sync\``,
          );
        }
        const problems = compareDisks(vm.disks, dom);
        if (problems.length > 0) {
          throw nonRetryable(
            FailureType.VmMismatch,
            `the disks of ${vm.name} in the inventory do not match libvirt on ${host.name}: ${problems.join('; ')}. Run \`ferry inventory sync\``,
          );
        }
        const storageDir = checkStorageLayout(vm.name, vm.disks, host.storageRoot);
        const diskBytes = vm.disks.reduce((s, d) => s + d.sizeBytes, 0);
        return {
          uuid: vm.uuid,
          name: vm.name,
          memoryMiB: vm.memoryMiB,
          vcpus: vm.vcpus,
          source: hostRef(host),
          disks: vm.disks,
          storageDir,
          dataBytes: diskBytes + vm.memoryMiB * 1024 * 1024,
        };
      });
    },

    /** Step 3: filter, score and claim a target; the VM becomes `migrating` in the same transaction. */
    async claimTarget(input: ClaimTargetInput): Promise<ClaimTargetResult> {
      return guarded(async () => {
        const placed = await inventory.claimTarget({
          vmUuid: input.vm.uuid,
          sourceHost: input.vm.source.name,
          workflowId: input.workflowId,
          memoryMiB: input.vm.memoryMiB,
          vcpus: input.vm.vcpus,
          storageBytes: input.vm.disks.reduce((s, d) => s + d.sizeBytes, 0),
          ...(input.targetHost !== null ? { fixedTarget: input.targetHost } : {}),
          limits: input.limits,
        }).catch((err: unknown) => {
          if (err instanceof PlacementError && err.code === 'no-slot') return { waiting: err.message };
          throw err;
        });
        if ('waiting' in placed) return placed;
        const { claim } = placed;
        const host = await inventory.getHost(claim.host);
        if (host === null) throw new Error(`claimed host ${claim.host} vanished from the inventory`);
        return { target: hostRef(host) };
      });
    },

    /** Create task 1: the VM's storage directory on the target (through a defined dir pool). */
    async createStorageDirectory(input: TargetStorageInput & { path: string }): Promise<CreateTaskResult> {
      const attempt = await noteAttempt('directory');
      return guarded(async () => {
        // The VM's directory was checked against the SOURCE's storage root; it must sit directly under the
        // TARGET's configured root too (libvirt copies disks to the same path), or Ferry would create storage
        // outside what the target's operator gave it.
        const host = await inventory.getHost(input.target.name);
        const root = host ? normalizeAbsolute(host.storageRoot) : null;
        const dir = normalizeAbsolute(input.path);
        if (host && (root === null || dir === null || !isStrictlyInside(dir, root) || dirnameOf(dir) !== root)) {
          throw nonRetryable(
            FailureType.UnsupportedVm,
            `${input.target.name} keeps VM storage under ${host.storageRoot}, but the VM's directory is ${input.path}: ` +
              'libvirt copies disks to the same path, so source and target need the same storage root (`ferry hosts add --storage-root`)',
          );
        }
        const present = await hv.getDomain(input.target.uri, input.vmUuid);
        if (isRunningOrPaused(present)) {
          throw nonRetryable(
            FailureType.VmMismatch,
            `${input.target.name} already runs a domain with UUID ${input.vmUuid}: run \`ferry inventory sync\` and check where the VM is`,
          );
        }
        await hv.createStorageDirectory(input.target.uri, input.pool, input.path);
        return { attempt };
      });
    },

    /** Create task 2: start (and autostart) the pool on that directory. */
    async createStoragePool(input: TargetStorageInput): Promise<CreateTaskResult> {
      const attempt = await noteAttempt('pool');
      return guarded(async () => {
        await hv.startPool(input.target.uri, input.pool);
        return { attempt };
      });
    },

    /** Create task 3..n: one empty volume with the disk's name, size and format (a stale one is replaced). */
    async createDisk(input: TargetStorageInput & { disk: DiskRecord }): Promise<CreateTaskResult> {
      const attempt = await noteAttempt(`disk:${input.disk.name}`);
      return guarded(async () => {
        if (!isVolumeName(input.disk.name)) {
          throw nonRetryable(FailureType.UnsupportedVm, `disk name "${input.disk.name}" is not a safe volume name`);
        }
        await hv.recreateVolume(input.target.uri, input.pool, input.disk.name, input.disk.sizeBytes, input.disk.format);
        return { attempt };
      });
    },

    /**
     * Step 5: the live migration, heartbeating libvirt's job statistics. Reconciles first on every attempt:
     * VM already on the target → done; a job still running → monitor it; never starts a second copy blindly.
     */
    async migrateVm(input: MigrateVmInput): Promise<CompletedMigrationStats> {
      const ctx = Context.current();
      const prior = (ctx.info.heartbeatDetails as MigrateHeartbeat | undefined) ?? { startedByAttempt: null };
      const beat = (hb: MigrateHeartbeat) => ctx.heartbeat(hb);
      return guarded(async () => {
        // Reconcile with what an earlier attempt may have left running (a first attempt has none).
        for (;;) {
          if (ctx.info.attempt === 1 && prior.startedByAttempt === null) break;
          ctx.heartbeat(prior);
          const where = await locate(input.source, input.target, input.vmUuid);
          if (where.location === 'target') return completedStats(input.target, input.vmUuid, input.disks);
          const job = await hv.jobInfo(input.source.uri, input.vmUuid);
          if (!ACTIVE_JOB_TYPES.has(job.type)) break;
          await monitorJob(job, prior.startedByAttempt);
        }
        if (prior.startedByAttempt !== null) {
          throw nonRetryable(
            FailureType.MigrationFailed,
            `the migration started by attempt ${prior.startedByAttempt} ended without moving the VM (no libvirt job, VM running on ${input.source.name})`,
          );
        }
        if (ctx.info.attempt > 1) {
          // An earlier attempt may have begun copying: never let a copy land on stale target data.
          for (const d of input.disks) {
            await hv.recreateVolume(input.target.uri, input.pool, d.name, d.sizeBytes, d.format);
          }
        }
        const monitor = new ConvergenceMonitor(input.convergence, hv, input.source.uri, input.vmUuid, (c) => report({ convergence: c }));
        await monitor.beforeStart();
        const started: MigrateHeartbeat = { startedByAttempt: ctx.info.attempt };
        beat(started);
        const startedAt = Date.now();
        const client = new AbortController();
        const onCancel = () => client.abort();
        ctx.cancellationSignal.addEventListener('abort', onCancel);
        let outcome: { ok: true } | { ok: false; err: unknown } | null = null;
        const migration = hv
          .migrate(input.source.uri, input.vmUuid, input.target.uri, {
            ...(input.bandwidthMiBps !== null ? { bandwidthMiBps: input.bandwidthMiBps } : {}),
            autoConverge: input.convergence.autoConverge,
            postCopy: input.convergence.postCopy,
            clientTimeoutMs: input.clientTimeoutMs,
            signal: client.signal,
          })
          .then(
            () => (outcome = { ok: true }),
            (err: unknown) => (outcome = { ok: false, err }),
          );
        let stalled: LimitFired | null = null;
        try {
          let lastSignal = 0;
          while (outcome === null) {
            await Promise.race([migration, sleep(jobPollMs, ctx.cancellationSignal)]);
            if (ctx.cancellationSignal.aborted) throw new CancelledFailure('migration activity cancelled');
            if (outcome !== null) break;
            const job = await hv.jobInfo(input.source.uri, input.vmUuid).catch(() => null);
            if (job === null || !ACTIVE_JOB_TYPES.has(job.type)) continue;
            const stats = migrationStats(job);
            beat({ ...started, stats });
            const verdict = await monitor.onSample(job, stats, Date.now() - startedAt);
            if (verdict.kind === 'abort' && stalled === null) {
              // The progress deadline: abort the job and let the migration client come back.
              stalled = verdict.limit;
              await hv.abortJob(input.source.uri, input.vmUuid);
            }
            // Each signal is a history event: every 2 s at first, every 10 s once the copy runs long.
            const every = Date.now() - startedAt < 60_000 ? signalEveryMs : Math.max(signalEveryMs, 10_000);
            if (Date.now() - lastSignal >= every) {
              lastSignal = Date.now();
              await report({ migration: stats, convergence: monitor.view() });
            }
          }
        } finally {
          ctx.cancellationSignal.removeEventListener('abort', onCancel);
        }
        const result = outcome as { ok: true } | { ok: false; err: unknown };
        // Cancelled while a poll was in flight: the killed client's error is ours, not libvirt's.
        if (!result.ok && ctx.cancellationSignal.aborted) throw new CancelledFailure('migration activity cancelled');
        if (stalled !== null && !result.ok) {
          const where = await locate(input.source, input.target, input.vmUuid);
          if (where.location === 'target') return completedStats(input.target, input.vmUuid, input.disks);
          throw ApplicationFailure.create({
            type: 'MigrationStalled',
            message: `the progress deadline passed: ${stalled.detail}`,
            nonRetryable: true,
            details: [{ limitFired: stalled }],
          });
        }
        if (!result.ok) {
          // virsh failed: believe libvirt's account of where the VM is, not the client's exit status.
          const where = await locate(input.source, input.target, input.vmUuid);
          if (where.location === 'target') return completedStats(input.target, input.vmUuid, input.disks);
          const why = result.err instanceof Error ? result.err.message : String(result.err);
          throw nonRetryable(FailureType.MigrationFailed, `libvirt's migration of ${input.vmUuid} failed: ${why}`);
        }
        // Step 6 asks libvirt where the VM runs: ask it now, together with the job's statistics.
        const [stats, where] = await Promise.all([
          completedStats(input.target, input.vmUuid, input.disks),
          locate(input.source, input.target, input.vmUuid),
        ]);
        return { ...stats, location: where };
      }, { keepAlive: false });

      async function monitorJob(first: JobInfo, startedBy: number | null): Promise<void> {
        let job = first;
        while (ACTIVE_JOB_TYPES.has(job.type)) {
          beat({ startedByAttempt: startedBy, stats: migrationStats(job) });
          await sleep(jobPollMs, ctx.cancellationSignal);
          if (ctx.cancellationSignal.aborted) throw new CancelledFailure('migration activity cancelled');
          job = await hv.jobInfo(input.source.uri, input.vmUuid);
        }
      }
    },

    /** Timeout / cancel: abort libvirt's job (if any), wait until it has ended, then say where the VM is. */
    async abortMigration(input: LocateInput): Promise<LocateResult> {
      const ctx = Context.current();
      return guarded(async () => {
        for (;;) {
          ctx.heartbeat();
          const job = await hv.jobInfo(input.source.uri, input.vmUuid).catch((err: unknown) => {
            if (err instanceof LibvirtError && err.kind === 'not-found') return null;
            throw err;
          });
          if (job === null || !ACTIVE_JOB_TYPES.has(job.type)) break;
          // A migration in post-copy cannot be undone (each host holds part of the guest's memory): let it
          // finish; if it has failed, stop here — locate() reports the split and nothing gets deleted.
          const dom = await hv.getDomain(input.source.uri, input.vmUuid);
          if (isPostCopyFailed(dom)) break;
          if (!isPostCopy(dom)) await hv.abortJob(input.source.uri, input.vmUuid);
          await sleep(500);
        }
        return locate(input.source, input.target, input.vmUuid);
      });
    },

    /** The tune update: raise the max downtime, change the bandwidth, switch to post-copy — on the running job. */
    async tuneMigration(input: {
      source: HostRef;
      vmUuid: string;
      maxDowntimeMs?: number;
      bandwidthMiBps?: number;
      postCopyNow?: boolean;
    }): Promise<{ maxDowntimeMs: number; bandwidthMiBps: number | null; postCopyActive: boolean }> {
      return guarded(async () => {
        const job = await hv.jobInfo(input.source.uri, input.vmUuid);
        if (!ACTIVE_JOB_TYPES.has(job.type)) {
          throw nonRetryable(FailureType.InvalidInput, `no migration job is running for ${input.vmUuid} on ${input.source.name}`);
        }
        if (input.maxDowntimeMs !== undefined) await hv.setMaxDowntime(input.source.uri, input.vmUuid, input.maxDowntimeMs);
        if (input.bandwidthMiBps !== undefined) await hv.setMigrationBandwidth(input.source.uri, input.vmUuid, input.bandwidthMiBps);
        if (input.postCopyNow) await hv.startPostCopy(input.source.uri, input.vmUuid);
        return {
          maxDowntimeMs: await hv.getMaxDowntime(input.source.uri, input.vmUuid),
          bandwidthMiBps: input.bandwidthMiBps ?? null,
          postCopyActive: input.postCopyNow === true,
        };
      });
    },

    /** The completion deadline with onDeadline "post-copy": switch the running job to post-copy. */
    async switchToPostCopy(input: { source: HostRef; vmUuid: string }): Promise<boolean> {
      return guarded(async () => {
        const job = await hv.jobInfo(input.source.uri, input.vmUuid);
        if (!ACTIVE_JOB_TYPES.has(job.type)) return false;
        // libvirt refuses post-copy during the disk copy (memory iteration 0): wait for the memory copy.
        let current = job;
        while (ACTIVE_JOB_TYPES.has(current.type) && (current.memoryIteration ?? 0) < 1) {
          await sleep(500);
          current = await hv.jobInfo(input.source.uri, input.vmUuid);
        }
        if (!ACTIVE_JOB_TYPES.has(current.type)) return false;
        const dom = await hv.getDomain(input.source.uri, input.vmUuid);
        if (!isPostCopy(dom)) await hv.startPostCopy(input.source.uri, input.vmUuid);
        return true;
      });
    },

    /** Step 6 (and every compensation): where does libvirt say the VM runs? */
    async locateVm(input: LocateInput): Promise<LocateResult> {
      return guarded(() => locate(input.source, input.target, input.vmUuid));
    },

    // ---- compensation on the target: each refuses to act if the VM runs there ----

    async deleteDisk(input: TargetStorageInput & { name: string }): Promise<void> {
      return guarded(async () => {
        await assertNotRunningOn(input.target, input.vmUuid, `delete volume ${input.name}`);
        await hv.deleteVolume(input.target.uri, input.pool, input.name);
      });
    },

    async stopStoragePool(input: TargetStorageInput): Promise<void> {
      return guarded(async () => {
        await assertNotRunningOn(input.target, input.vmUuid, `stop pool ${input.pool}`);
        await hv.stopPool(input.target.uri, input.pool);
      });
    },

    /**
     * `path`: the VM's storage directory. A pool of our name on ANOTHER directory was not made by this
     * migration (its directory task refused it): it and its files are left alone.
     */
    async removeStorageDirectory(input: TargetStorageInput & { path?: string }): Promise<void> {
      return guarded(async () => {
        await assertNotRunningOn(input.target, input.vmUuid, `remove the storage directory of pool ${input.pool}`);
        if (input.path !== undefined) {
          const pool = (await hv.listPools(input.target.uri)).find((p) => p.name === input.pool);
          if (pool && normalizeAbsolute(pool.path) !== normalizeAbsolute(input.path)) return;
        }
        await hv.removeStorageDirectory(input.target.uri, input.pool);
      });
    },

    // ---- inventory ----

    /** Puts the VM's inventory record where libvirt says it is (compensation does this first). */
    async setVmPlacement(input: { vmUuid: string; host: string; state: VmState }): Promise<void> {
      return guarded(() => inventory.setVmPlacement(input.vmUuid, input.host, input.state));
    },

    async releaseClaim(input: { vmUuid: string; workflowId: string }): Promise<void> {
      return guarded(() => inventory.releaseClaim(input.vmUuid, input.workflowId));
    },

    /**
     * The claim step did not answer: if it claimed a target for this workflow after all, put the VM back to
     * `running` on its source and drop the claim. A claim of another workflow is never touched.
     */
    async abandonClaim(input: { vmUuid: string; workflowId: string; sourceHost: string }): Promise<void> {
      return guarded(async () => {
        const claim = await inventory.getClaim(input.vmUuid);
        if (claim === null || claim.workflowId !== input.workflowId) return;
        await inventory.setVmPlacement(input.vmUuid, input.sourceHost, 'running');
        await inventory.releaseClaim(input.vmUuid, input.workflowId);
      });
    },

    /** Success bookkeeping: the VM runs on the target; its claim is released. */
    async recordVmMoved(input: { vmUuid: string; target: string; workflowId: string }): Promise<void> {
      return guarded(async () => {
        await inventory.setVmPlacement(input.vmUuid, input.target, 'running');
        await inventory.releaseClaim(input.vmUuid, input.workflowId);
      });
    },

    /** Removes the VM's old disks, and its pool + directory when nothing else is in them, from the source. */
    async cleanSource(input: CleanSourceInput): Promise<CleanSourceResult> {
      return guarded(async () => {
        const removed: string[] = [];
        const warnings: string[] = [];
        const dom = await hv.getDomain(input.source.uri, input.vmUuid);
        if (dom !== null) {
          warnings.push(`${input.source.name} still has domain ${input.vmUuid} (${dom.state}); its storage was left in place`);
          return { removed, warnings };
        }
        const pools = new Set<string>();
        for (const disk of input.disks) {
          const pool = await hv.poolOfVolume(input.source.uri, disk.path);
          if (pool === null) {
            // Already deleted by an earlier attempt, or not in any libvirt pool.
            continue;
          }
          pools.add(pool);
          if (await hv.deleteVolume(input.source.uri, pool, disk.name)) removed.push(disk.path);
        }
        for (const pool of pools) {
          const info = (await hv.listPools(input.source.uri)).find((p) => p.name === pool);
          if (!info || info.path !== input.storageDir) continue; // a shared pool: keep it
          const left = await hv.listVolumes(input.source.uri, pool);
          if (left.length > 0) {
            warnings.push(`${input.storageDir} on ${input.source.name} still holds ${left.map((v) => v.name).join(', ')}; kept`);
            continue;
          }
          await hv.removeStorageDirectory(input.source.uri, pool);
          removed.push(input.storageDir);
        }
        return { removed, warnings };
      });
    },

    /** Re-measures free storage etc. of hosts whose usage just changed. Best effort. */
    async refreshHostCapacity(input: { hosts: string[] }): Promise<void> {
      return guarded(async () => {
        for (const name of input.hosts) {
          try {
            const host = await inventory.getHost(name);
            if (!host) continue;
            const cap = await hv.hostCapacity(host.uri, host.storageRoot);
            await inventory.updateHostCapacity(name, {
              memoryMiB: Math.floor(cap.memoryKiB / 1024),
              vcpus: cap.cpus,
              storageFreeBytes: cap.storage?.availableBytes ?? host.storageFreeBytes,
            });
          } catch {
            // The next `ferry inventory sync` corrects it.
          }
        }
      });
    },

    // ---- evacuation ----

    /**
     * Puts the host in maintenance (so it is never chosen as a target) and lists its VMs. Idempotent;
     * `previousState` is the state the host had before this call (a retry whose first answer was lost sees
     * `maintenance`, so a cancel that restores the host state then leaves it in maintenance).
     */
    async beginEvacuation(input: { host: string }): Promise<{
      host: HostRef & { state: HostState };
      previousState: HostState;
      vms: { uuid: string; name: string; state: VmState }[];
    }> {
      return guarded(async () => {
        const host = await inventory.getHost(input.host);
        if (host === null) {
          throw nonRetryable(FailureType.InvalidInput, `host "${input.host}" is not in the inventory: check the name or address (\`ferry hosts list\`)`);
        }
        if (host.state !== 'maintenance') await inventory.setHostState(host.name, 'maintenance');
        const vms = await inventory.listVms({ host: host.name });
        return {
          host: { ...hostRef(host), state: 'maintenance' },
          previousState: host.state,
          vms: vms.map((v) => ({ uuid: v.uuid, name: v.name, state: v.state })),
        };
      });
    },

    async setHostState(input: { host: string; state: HostState }): Promise<void> {
      return guarded(async () => {
        await inventory.setHostState(input.host, input.state);
      });
    },

    /** VMs the inventory still has on a host. */
    async vmsOnHost(input: { host: string }): Promise<{ uuid: string; name: string; state: VmState }[]> {
      return guarded(async () => (await inventory.listVms({ host: input.host })).map((v) => ({ uuid: v.uuid, name: v.name, state: v.state })));
    },

    /** `ferry inventory sync` as an activity (run by the syncInventory workflow, e.g. on a schedule). */
    async syncHosts(input: { hosts?: string[] }): Promise<SyncResult[]> {
      return guarded(() => syncInventory(inventory, hv, input.hosts ? { hosts: input.hosts } : {}));
    },

    async recordHistory(row: HistoryRecord): Promise<void> {
      return guarded(async () => {
        await inventory.recordHistory(row);
        recordMigrationMetrics(row);
      });
    },
  };
}

export type FerryActivities = ReturnType<typeof createActivities>;

/**
 * Ferry's own Prometheus metrics (beside Temporal's runtime metrics, on the worker's endpoint), from the
 * history row every migration writes once at its end.
 */
function recordMigrationMetrics(row: HistoryRecord): void {
  const meter = Context.current().metricMeter.withTags({ result: row.result, source: row.source, target: row.target ?? 'none' });
  meter.createCounter('ferry_migrations', 'migrations', 'migrations by result').add(1);
  meter.createHistogram('ferry_migration_duration', 'int', 'ms', 'migration wall time').record(row.durationMs);
  if (row.downtimeMs !== null) meter.createHistogram('ferry_migration_downtime', 'int', 'ms', "libvirt's reported downtime").record(row.downtimeMs);
  if (row.bytesTransferred !== null) meter.createCounter('ferry_migration_bytes', 'bytes', 'bytes copied by migrations').add(row.bytesTransferred);
  const attempts = Context.current().metricMeter.createCounter('ferry_create_task_attempts', 'attempts', 'attempts of create tasks');
  for (const [task, n] of Object.entries(row.createAttempts)) attempts.add(n, { task: task.startsWith('disk:') ? 'disk' : task, result: row.result });
}

/** Differences between the inventory's disks and libvirt's, in words. */
export function compareDisks(known: DiskRecord[], dom: DomainInfo): string[] {
  const problems: string[] = [];
  const actual = new Map(dom.disks.map((d) => [d.target, d]));
  for (const k of known) {
    const a = actual.get(k.target);
    if (!a) {
      problems.push(`${k.target} (${k.path}) is not attached`);
      continue;
    }
    actual.delete(k.target);
    if (a.path !== k.path) problems.push(`${k.target} is ${a.path}, inventory says ${k.path}`);
    if (a.capacityBytes !== k.sizeBytes) problems.push(`${k.target} has ${a.capacityBytes} bytes, inventory says ${k.sizeBytes}`);
    if (a.format !== k.format) problems.push(`${k.target} is ${a.format}, inventory says ${k.format}`);
  }
  for (const a of actual.values()) problems.push(`${a.target} (${a.path}) is attached but not in the inventory`);
  return problems;
}

/**
 * Ferry migrates disks into the same path on the target, so a VM's disks must share one directory of its
 * own strictly under the host's storage root (e.g. <root>/<uuid>/disk0.qcow2). Returns that directory.
 */
export function checkStorageLayout(vmName: string, disks: DiskRecord[], storageRoot: string): string {
  if (disks.length === 0) {
    throw nonRetryable(FailureType.UnsupportedVm, `VM ${vmName} has no file-backed disks; Ferry migrates VMs with local disks`);
  }
  const dirs = new Set(disks.map((d) => dirnameOf(d.path)));
  const [dir] = [...dirs];
  if (dirs.size !== 1 || dir === undefined) {
    throw nonRetryable(
      FailureType.UnsupportedVm,
      `the disks of ${vmName} are spread over ${[...dirs].join(', ')}; Ferry needs them in one per-VM directory`,
    );
  }
  if (!isStrictlyInside(dir, storageRoot) || dirnameOf(dir) !== storageRoot.replace(/\/+$/, '')) {
    throw nonRetryable(
      FailureType.UnsupportedVm,
      `the disks of ${vmName} live in ${dir}, which is not a per-VM directory directly under the storage root ${storageRoot}`,
    );
  }
  for (const d of disks) {
    if (!isVolumeName(d.name) || basenameOf(d.path) !== d.name) {
      throw nonRetryable(FailureType.UnsupportedVm, `disk ${d.path} of ${vmName} has an unsafe or inconsistent volume name "${d.name}"`);
    }
  }
  return dir;
}
