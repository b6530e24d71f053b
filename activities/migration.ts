/**
 * The migration step (5) and what the workflow asks of a running or finished libvirt job: abort it, tune it,
 * switch it to post-copy, and where the VM runs.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { CompletedMigrationStats, HostRef, LocateResult } from '../common/migration';
import { FailureType } from '../common/failures';
import { isJobActive, type DiskCopyJob, type Hypervisor, type JobInfo } from '../hypervisor/port';
import type { ActivityRuntime } from './context';
import { guarded, nonRetryable } from './failures';
import { abortAndLocate, isPostCopy, isPostCopyFailed, locate } from './locate';
import { MigrationRun, type MigrateVmInput, type MigrationVerdict } from './migration-run';

export interface LocateInput {
  source: HostRef;
  target: HostRef;
  vmUuid: string;
}

export interface TuneMigrationInput {
  source: HostRef;
  vmUuid: string;
  maxDowntimeMs?: number;
  bandwidthMiBps?: number;
  postCopyNow?: boolean;
}

/** What the tune update changed: the max downtime, the bandwidth (of memory and of each disk copy), post-copy. */
export interface TuneResult {
  maxDowntimeMs: number;
  bandwidthMiBps: number | null;
  postCopyActive: boolean;
  /** The disk copies the new bandwidth was applied to, with the limit libvirt now reports (absent: no bandwidth change). */
  diskCopies?: { target: string; bandwidthMiBps: number | null }[];
}

/** libvirt's job takes a moment to end after an abort or to enter a memory iteration. */
const JOB_SETTLE_MS = 500;
/** A job that has not begun copying yet (the target's QEMU is starting) is waited for this long by a bandwidth change. */
const COPY_START_WAIT_MS = 20_000;

export function migrationActivities(rt: ActivityRuntime) {
  const { hv } = rt;
  return {
    /**
     * Step 5: the live migration, heartbeating libvirt's job statistics. Reconciles first on every attempt:
     * VM already on the target → done; a job still running → monitor it; never starts a second copy blindly.
     */
    async migrateVm(input: MigrateVmInput): Promise<CompletedMigrationStats> {
      return guarded(
        async () => {
          const run = new MigrationRun(rt, input);
          let verdict = await run.reconcile();
          if (verdict === null) {
            await run.start();
            while (await run.poll());
            verdict = await run.verdict();
          }
          return settle(verdict);
        },
        { keepAlive: false },
      );
    },

    /** Timeout / cancel: abort libvirt's job (if any), wait until it has ended, then say where the VM is. */
    async abortMigration(input: LocateInput): Promise<LocateResult> {
      const ctx = Context.current();
      return guarded(() => abortAndLocate(hv, input.source, input.target, input.vmUuid, () => ctx.heartbeat()));
    },

    /** The tune update: raise the max downtime, change the bandwidth, switch to post-copy — on the running job. */
    async tuneMigration(input: TuneMigrationInput): Promise<TuneResult> {
      return guarded(async () => {
        const { uri } = input.source;
        const job = await hv.jobInfo(uri, input.vmUuid);
        if (!isJobActive(job)) throw nonRetryable(FailureType.InvalidInput, `no migration job is running for ${input.vmUuid} on ${input.source.name}`);
        if (input.bandwidthMiBps !== undefined && isPostCopy(await hv.getDomain(uri, input.vmUuid))) {
          throw nonRetryable(
            FailureType.InvalidInput,
            `cannot change the bandwidth of ${input.vmUuid}'s migration: it is in post-copy, where QEMU's post-copy limit governs the rest ` +
              '(not the migration bandwidth) and Ferry does not change it; the migration finishes on its own',
          );
        }
        if (input.maxDowntimeMs !== undefined) await hv.setMaxDowntime(uri, input.vmUuid, input.maxDowntimeMs);
        const disks = input.bandwidthMiBps !== undefined ? await applyBandwidth(hv, uri, input.vmUuid, input.bandwidthMiBps) : undefined;
        if (input.postCopyNow) await hv.startPostCopy(uri, input.vmUuid);
        return {
          maxDowntimeMs: await hv.getMaxDowntime(uri, input.vmUuid),
          bandwidthMiBps: input.bandwidthMiBps ?? null,
          postCopyActive: input.postCopyNow === true,
          ...(disks ? { diskCopies: disks.map((d) => ({ target: d.target, bandwidthMiBps: d.bandwidthMiBps })) } : {}),
        };
      });
    },

    /** The completion deadline with onDeadline "post-copy": switch the running job to post-copy. */
    async switchToPostCopy(input: { source: HostRef; vmUuid: string }): Promise<boolean> {
      return guarded(async () => {
        let job = await hv.jobInfo(input.source.uri, input.vmUuid);
        // libvirt refuses post-copy during the disk copy (memory iteration 0): wait for the memory copy.
        while (isJobActive(job) && (job.memoryIteration ?? 0) < 1) {
          await delay(JOB_SETTLE_MS);
          job = await hv.jobInfo(input.source.uri, input.vmUuid);
        }
        if (!isJobActive(job)) return false;
        const dom = await hv.getDomain(input.source.uri, input.vmUuid);
        if (!isPostCopy(dom)) await hv.startPostCopy(input.source.uri, input.vmUuid);
        return true;
      });
    },

    /** Step 6 (and every compensation): where does libvirt say the VM runs? */
    async locateVm(input: LocateInput): Promise<LocateResult> {
      return guarded(() => locate(hv, input.source, input.target, input.vmUuid));
    },
  };
}

/**
 * A new bandwidth for the whole copy: the memory stream (`migrate-setspeed`) and each running disk copy (libvirt
 * gives its NBD mirrors the bandwidth only when it starts them). A job that has not begun copying yet is waited
 * for (libvirt sets the start bandwidth again when it begins), so a change right after the start is not lost.
 */
async function applyBandwidth(hv: Hypervisor, uri: string, uuid: string, mibps: number): Promise<DiskCopyJob[]> {
  const until = Date.now() + COPY_START_WAIT_MS;
  for (;;) {
    await hv.setMigrationBandwidth(uri, uuid, mibps);
    const disks = await hv.setDiskCopyBandwidth(uri, uuid, mibps);
    if (disks.length > 0 || Date.now() >= until) return disks;
    const job = await hv.jobInfo(uri, uuid);
    if (!isJobActive(job) || copyStarted(job)) return disks;
    await delay(JOB_SETTLE_MS);
  }
}

/** libvirt has begun copying: disk copies set up, or memory being sent. */
function copyStarted(job: JobInfo): boolean {
  return (job.diskTotalBytes ?? 0) > 0 || (job.memoryProcessedBytes ?? 0) > 0 || (job.memoryIteration ?? 0) > 0;
}

/** The verdict as the workflow sees it: the stats, or a typed, non-retryable failure. */
function settle(verdict: MigrationVerdict): CompletedMigrationStats {
  switch (verdict.kind) {
    case 'moved':
      return verdict.stats;
    case 'stalled':
      throw ApplicationFailure.create({
        type: FailureType.MigrationStalled,
        message: `the progress deadline passed: ${verdict.limit.detail}`,
        nonRetryable: true,
        details: [{ limitFired: verdict.limit }],
      });
    case 'failed':
      throw nonRetryable(FailureType.MigrationFailed, verdict.message);
  }
}
