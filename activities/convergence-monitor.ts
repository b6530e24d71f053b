/**
 * The convergence controls of one running migration, applied sample by sample inside the migrate activity
 * (where libvirt's job statistics arrive every second): the max-downtime ramp, and the progress deadline —
 * "no new minimum of the remaining data for N seconds" (common/convergence.ts), never a sampled rate.
 * When the progress deadline passes it switches to post-copy (if the migration allows it and its policy
 * says so) or asks the caller to abort. A migration in post-copy is never aborted: both hosts hold part of
 * the guest's memory then.
 */
import type { ConvergencePolicy } from '../common/validation';
import type { LimitFired, MigrationStats, ProgressSignal } from '../common/migration';
import {
  createProgressTracker,
  deadlineAction,
  downtimeRamp,
  type ConvergenceSample,
  type DowntimeRamp,
  type ProgressTracker,
} from '../common/convergence';
import { formatDuration } from '../common/durations';
import type { Hypervisor, JobInfo } from '../hypervisor/port';

/** Re-read the max downtime this often: an operator may have raised it (the tune update). */
const DOWNTIME_RECHECK_MS = 5_000;

export type SampleVerdict = { kind: 'continue' } | { kind: 'abort'; limit: LimitFired };

export class ConvergenceMonitor {
  private readonly tracker: ProgressTracker;
  private readonly ramp: DowntimeRamp | null;
  private knownDowntimeMs: number | null;
  private lastRecheck = 0;
  postCopyActive = false;
  limitFired: LimitFired | null = null;

  constructor(
    private readonly policy: ConvergencePolicy,
    private readonly hv: Hypervisor,
    private readonly sourceUri: string,
    private readonly uuid: string,
    private readonly report: (c: NonNullable<ProgressSignal['convergence']>) => Promise<void>,
  ) {
    this.tracker = createProgressTracker({ stallMs: policy.progressTimeoutMs, minImprovementRatio: 0.01 });
    this.ramp = policy.ramp ? downtimeRamp(policy.ramp) : null;
    this.knownDowntimeMs = policy.maxDowntimeMs;
  }

  /** Before the job starts: the initial max downtime (libvirt accepts it outside a job). */
  async beforeStart(): Promise<void> {
    if (this.policy.maxDowntimeMs !== null) await this.hv.setMaxDowntime(this.sourceUri, this.uuid, this.policy.maxDowntimeMs);
  }

  /** The job's statistics as the tracker sees them (libvirt's own clock, so saw-tooth series replay exactly). */
  static sample(job: JobInfo, fallbackAtMs: number): ConvergenceSample {
    return {
      atMs: job.timeElapsedMs ?? fallbackAtMs,
      remainingBytes: job.dataRemainingBytes,
      totalBytes: job.dataTotalBytes,
      iteration: job.memoryIteration,
      throttlePct: job.autoConvergeThrottlePercent,
    };
  }

  async onSample(job: JobInfo, stats: MigrationStats, fallbackAtMs: number): Promise<SampleVerdict> {
    if (this.postCopyActive) return { kind: 'continue' };
    const sample = ConvergenceMonitor.sample(job, fallbackAtMs);
    await this.followOperator(sample.atMs);
    if (this.ramp) {
      const step = this.ramp.observe(sample);
      if (step.changed && step.downtimeMs > (this.knownDowntimeMs ?? 0)) {
        await this.hv.setMaxDowntime(this.sourceUri, this.uuid, step.downtimeMs);
        this.knownDowntimeMs = step.downtimeMs;
        this.tracker.intervene(sample.atMs);
        await this.report({ maxDowntimeMs: step.downtimeMs, event: `max downtime raised to ${step.downtimeMs} ms (ramp step ${step.step}: memory iterations stalled)` });
      }
    }
    const v = this.tracker.observe(sample);
    if (!v.stalled) return { kind: 'continue' };

    // The progress deadline passed.
    const detail =
      `no new low of the remaining data for ${formatDuration(v.sinceProgressMs)} (progress timeout ${formatDuration(this.policy.progressTimeoutMs)}): ` +
      `iteration ${job.memoryIteration ?? '?'}, ${mib(job.dataRemainingBytes)} remaining (lowest ${mib(v.lowestRemaining)}), ` +
      `dirty rate ${job.dirtyRatePagesPerSec ?? '?'} pages/s` +
      (job.autoConvergeThrottlePercent !== null ? `, throttle ${job.autoConvergeThrottlePercent} %` : '');
    if (await this.alreadyInPostCopy()) return { kind: 'continue' };
    if (deadlineAction(this.policy) === 'post-copy' && (job.memoryIteration ?? 0) >= 1) {
      await this.hv.startPostCopy(this.sourceUri, this.uuid);
      this.postCopyActive = true;
      this.limitFired = { limit: 'progress', action: 'post-copy', at: new Date().toISOString(), stats, detail };
      await this.report({ postCopyActive: true, limitFired: this.limitFired, event: `progress deadline: switched to post-copy (${detail})` });
      return { kind: 'continue' };
    }
    this.limitFired = { limit: 'progress', action: 'abort', at: new Date().toISOString(), stats, detail };
    await this.report({ limitFired: this.limitFired, event: `progress deadline: aborting (${detail})` });
    return { kind: 'abort', limit: this.limitFired };
  }

  /** A max downtime raised from outside (the tune update) is an intervention: the stall clock restarts. */
  private async followOperator(atMs: number): Promise<void> {
    const now = Date.now();
    if (now - this.lastRecheck < DOWNTIME_RECHECK_MS) return;
    this.lastRecheck = now;
    const current = await this.hv.getMaxDowntime(this.sourceUri, this.uuid).catch(() => null);
    if (current !== null && this.knownDowntimeMs !== null && current > this.knownDowntimeMs) this.tracker.intervene(atMs);
    if (current !== null) this.knownDowntimeMs = current;
  }

  /** Post-copy may have been started by the operator: libvirt says so in the source domain's state. */
  private async alreadyInPostCopy(): Promise<boolean> {
    if (!this.policy.postCopy) return false;
    const dom = await this.hv.getDomain(this.sourceUri, this.uuid).catch(() => null);
    if (dom?.stateReason && /post-?copy/.test(dom.stateReason)) this.postCopyActive = true;
    return this.postCopyActive;
  }

  view(): NonNullable<ProgressSignal['convergence']> {
    const v = this.tracker.state();
    return {
      maxDowntimeMs: this.knownDowntimeMs,
      postCopyActive: this.postCopyActive,
      lowestRemainingBytes: v.lowestRemaining,
      sinceNewLowMs: v.lastAtMs !== null && v.lastNewLowAtMs !== null ? v.lastAtMs - v.lastNewLowAtMs : null,
      throttlePercent: v.throttlePct,
    };
  }
}

function mib(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? '?' : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
