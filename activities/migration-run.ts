/**
 * One attempt of the migrate activity, KubeVirt-monitor style: reconcile with what an earlier attempt left,
 * start libvirt's job, then one small loop — wait for the client or the poll interval, read the job's
 * statistics, let the convergence monitor judge them, report — and the verdict as a returned value.
 *
 *   const run = new MigrationRun(rt, input);
 *   let verdict = await run.reconcile();           // an earlier attempt's job: adopted, never started twice
 *   if (verdict === null) {
 *     await run.start();
 *     while (await run.poll());
 *     verdict = await run.verdict();
 *   }
 */
import { Context } from '@temporalio/activity';
import type { CompletedMigrationStats, HostRef, LimitFired, MigrationStats, PlannedDisk } from '../common/migration';
import type { DiskRecord } from '../common/types';
import type { ConvergencePolicy } from '../common/validation';
import { isJobActive } from '../hypervisor/port';
import type { ActivityRuntime } from './context';
import { ConvergenceMonitor } from './convergence-monitor';
import { CopyProgress } from './copy-progress';
import { completedStats, locate, migrationStats } from './locate';

export interface MigrateVmInput {
  source: HostRef;
  target: HostRef;
  vmUuid: string;
  bandwidthMiBps: number | null;
  /** `--tls` (the workflow decided it: common/security.ts). Absent: not encrypted. */
  encryptStream?: boolean;
  convergence: ConvergencePolicy;
  pool: string;
  disks: DiskRecord[];
  /**
   * The storage plan's disks: only `copied` ones are copied (`--migrate-disks`), into their pools. Absent (a
   * migration started before storage plans): every disk, into `pool`.
   */
  plannedDisks?: PlannedDisk[];
  /** Upper bound for the virsh client (the workflow's timer is the real deadline). */
  clientTimeoutMs: number;
}

/** How the migration ended, as libvirt tells it. */
export type MigrationVerdict =
  | { kind: 'moved'; stats: CompletedMigrationStats }
  /** The progress deadline passed; the job was aborted and the VM is on the source. */
  | { kind: 'stalled'; limit: LimitFired }
  /** libvirt's migration ended without moving the VM. */
  | { kind: 'failed'; message: string };

/** Kept in the activity's heartbeat so a retry knows what an earlier attempt did. */
interface MigrateHeartbeat {
  startedByAttempt: number | null;
  stats?: MigrationStats;
}

type ClientResult = { ok: true } | { ok: false; err: unknown };

/** Each progress signal is a history event: every `signalEveryMs` at first, every 10 s once the copy runs long. */
const LONG_COPY_MS = 60_000;
const LONG_COPY_SIGNAL_MS = 10_000;

export class MigrationRun {
  private readonly ctx = Context.current();
  private readonly prior: MigrateHeartbeat;
  private readonly monitor: ConvergenceMonitor;
  private readonly progress = new CopyProgress();
  private client: Promise<ClientResult> | null = null;
  private result: ClientResult | null = null;
  private startedAt = 0;
  private lastSignalAt = 0;
  private stalled: LimitFired | null = null;
  /** The disks libvirt copies, each with the target pool of its pre-created volume. */
  private readonly copied: (Pick<DiskRecord, 'target' | 'name' | 'sizeBytes' | 'format'> & { pool: string })[];
  private readonly copyDisks: string[] | undefined;
  private readonly sharedStorageProven: boolean;

  constructor(
    private readonly rt: ActivityRuntime,
    private readonly input: MigrateVmInput,
  ) {
    this.prior = (this.ctx.info.heartbeatDetails as MigrateHeartbeat | undefined) ?? { startedByAttempt: null };
    const planned = input.plannedDisks;
    this.copied = planned
      ? planned.filter((d) => d.layout === 'copied').map((d) => ({ ...d, pool: d.pool ?? input.pool }))
      : input.disks.map((d) => ({ ...d, pool: input.pool }));
    this.copyDisks = planned ? this.copied.map((d) => d.target) : undefined;
    this.sharedStorageProven = planned?.some((d) => d.layout === 'shared') ?? false;
    this.monitor = new ConvergenceMonitor(input.convergence, rt.hv, input.source.uri, input.vmUuid, (c) => rt.report({ convergence: c }));
  }

  /**
   * What an earlier attempt left (a first attempt has none): the VM already on the target → moved; its job
   * still running → monitored until it ends, then asked again; a job that ended without moving the VM → failed.
   * null: no earlier copy to adopt, start one.
   */
  async reconcile(): Promise<MigrationVerdict | null> {
    const { hv } = this.rt;
    const { source, target, vmUuid } = this.input;
    const disks = this.copied;
    const startedBy = this.prior.startedByAttempt;
    if (this.ctx.info.attempt === 1 && startedBy === null) return null;
    for (;;) {
      this.ctx.heartbeat(this.prior);
      const where = await locate(hv, source, target, vmUuid);
      if (where.location === 'target') return { kind: 'moved', stats: await completedStats(hv, target, vmUuid, disks) };
      let job = await hv.jobInfo(source.uri, vmUuid);
      if (!isJobActive(job)) break;
      while (isJobActive(job)) {
        this.ctx.heartbeat({ startedByAttempt: startedBy, stats: migrationStats(job) } satisfies MigrateHeartbeat);
        await this.ctx.sleep(this.rt.jobPollMs);
        job = await hv.jobInfo(source.uri, vmUuid);
      }
    }
    if (startedBy !== null) {
      return { kind: 'failed', message: `the migration started by attempt ${startedBy} ended without moving the VM (no libvirt job, VM running on ${source.name})` };
    }
    // An earlier attempt may have begun copying: never let a copy land on stale target data (these volumes are
    // this run's own: its create tasks made them).
    for (const d of disks) await hv.recreateVolume(target.uri, d.pool, d.name, d.sizeBytes, d.format, { replace: true });
    return null;
  }

  /** Starts libvirt's job; the virsh client runs until the job ends (killed if the activity is cancelled). */
  async start(): Promise<void> {
    const { source, target, vmUuid, bandwidthMiBps, convergence, clientTimeoutMs } = this.input;
    await this.monitor.beforeStart();
    this.ctx.heartbeat(this.heartbeat());
    this.startedAt = Date.now();
    this.client = this.rt.hv
      .migrate(source.uri, vmUuid, target.uri, {
        ...(bandwidthMiBps !== null ? { bandwidthMiBps } : {}),
        autoConverge: convergence.autoConverge,
        postCopy: convergence.postCopy,
        ...(this.input.encryptStream ? { encryptStream: true } : {}),
        ...(convergence.syncDiskWrites ? { syncDiskWrites: true } : {}),
        ...(this.copyDisks !== undefined ? { copyDisks: this.copyDisks } : {}),
        ...(this.sharedStorageProven ? { sharedStorageProven: true } : {}),
        clientTimeoutMs,
        signal: this.ctx.cancellationSignal,
      })
      .then(
        (): ClientResult => ({ ok: true }),
        (err: unknown): ClientResult => ({ ok: false, err }),
      )
      .then((r) => (this.result = r));
  }

  /** One turn of the loop; false once the virsh client has returned. Rejects with CancelledFailure when cancelled. */
  async poll(): Promise<boolean> {
    const { hv } = this.rt;
    const { source, vmUuid } = this.input;
    if (this.client === null) throw new Error('MigrationRun.poll() before start()');
    await Promise.race([this.client, this.ctx.sleep(this.rt.jobPollMs)]);
    if (this.result !== null) return false;
    const [job, copies] = await Promise.all([
      hv.jobInfo(source.uri, vmUuid).catch(() => null),
      hv.diskCopyJobs(source.uri, vmUuid, this.copied.map((d) => d.target)).catch(() => []),
    ]);
    if (job === null || !isJobActive(job)) return true;
    const stats = this.progress.sample(job, copies);
    this.ctx.heartbeat(this.heartbeat(stats));
    const judged = await this.monitor.onSample(job, stats, Date.now() - this.startedAt);
    if (judged.kind === 'abort' && this.stalled === null) {
      // The progress deadline: abort the job and let the migration client come back.
      this.stalled = judged.limit;
      await hv.abortJob(source.uri, vmUuid);
    }
    await this.signal(stats);
    return true;
  }

  /** What libvirt says happened, once the client has returned: believe libvirt, not the client's exit status. */
  async verdict(): Promise<MigrationVerdict> {
    const { hv } = this.rt;
    const { source, target, vmUuid } = this.input;
    const disks = this.copied;
    const result = this.result;
    if (result === null) throw new Error('MigrationRun.verdict() before the client returned');
    // Cancelled while a poll was in flight: the killed client's error is ours, not libvirt's.
    if (!result.ok && this.ctx.cancellationSignal.aborted) await this.ctx.cancelled;
    if (result.ok) {
      // Step 6 asks libvirt where the VM runs: ask it now, together with the job's statistics.
      const [stats, where, guestDowntimeMs] = await Promise.all([
        completedStats(hv, target, vmUuid, disks),
        locate(hv, source, target, vmUuid),
        this.guestDowntime(),
      ]);
      return { kind: 'moved', stats: { ...stats, location: where, ...(guestDowntimeMs !== null ? { guestDowntimeMs } : {}) } };
    }
    const where = await locate(hv, source, target, vmUuid);
    if (where.location === 'target') return { kind: 'moved', stats: await completedStats(hv, target, vmUuid, disks) };
    if (this.stalled !== null) return { kind: 'stalled', limit: this.stalled };
    const why = result.err instanceof Error ? result.err.message : String(result.err);
    return { kind: 'failed', message: `libvirt's migration of ${vmUuid} failed: ${why}` };
  }

  /** The longest time the guest did not answer over this copy, when something watched it (best effort). */
  private async guestDowntime(): Promise<number | null> {
    const observer = this.rt.guestObserver;
    if (!observer) return null;
    try {
      const ms = await observer.longestGapMs(this.input.vmUuid, this.startedAt, Date.now());
      return ms === null ? null : Math.round(ms);
    } catch {
      return null;
    }
  }

  private heartbeat(stats?: MigrationStats): MigrateHeartbeat {
    return { startedByAttempt: this.ctx.info.attempt, ...(stats ? { stats } : {}) };
  }

  private async signal(stats: MigrationStats): Promise<void> {
    const now = Date.now();
    const every = now - this.startedAt < LONG_COPY_MS ? this.rt.signalEveryMs : Math.max(this.rt.signalEveryMs, LONG_COPY_SIGNAL_MS);
    if (now - this.lastSignalAt < every) return;
    this.lastSignalAt = now;
    await this.rt.report({ migration: stats, convergence: this.monitor.view() });
  }
}

