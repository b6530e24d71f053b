/**
 * The migration step (5) and what the workflow asks of a running or finished libvirt job: abort it, tune it,
 * switch it to post-copy, and where the VM runs.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { CompletedMigrationStats, HostRef, LocateResult } from '../common/migration';
import { FailureType } from '../common/failures';
import { isJobActive } from '../hypervisor/port';
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

/** libvirt's job takes a moment to end after an abort or to enter a memory iteration. */
const JOB_SETTLE_MS = 500;

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
    async tuneMigration(input: TuneMigrationInput): Promise<{ maxDowntimeMs: number; bandwidthMiBps: number | null; postCopyActive: boolean }> {
      return guarded(async () => {
        const job = await hv.jobInfo(input.source.uri, input.vmUuid);
        if (!isJobActive(job)) throw nonRetryable(FailureType.InvalidInput, `no migration job is running for ${input.vmUuid} on ${input.source.name}`);
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
