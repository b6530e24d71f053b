/**
 * Step 5 for a stopped VM: cold migration. Each copied disk's bytes are streamed from the source volume into
 * the volume its create task made on the target (vol-download → vol-upload, heartbeating the bytes copied),
 * then libvirt moves the definition (`migrate --offline --persistent --undefinesource`): defined on the
 * target, undefined on the source, in one libvirt call. Every attempt reconciles first: the VM already defined
 * on the target only → moved; otherwise its copies start again from the first byte (the target volumes are
 * this run's own). The source's disks are never written.
 */
import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { CompletedMigrationStats, HostRef, LocateResult, MigrationStats, PlannedDisk } from '../common/migration';
import { FailureType } from '../common/failures';
import { dirnameOf } from '../common/names';
import type { Hypervisor } from '../hypervisor/port';
import type { ActivityRuntime } from './context';
import { guarded, nonRetryable } from './failures';
import { locate } from './locate';
import type { LocateInput } from './migration';
import { PROBE_PREFIX, withDirectoryPool } from './storage-plan';

export interface ColdMigrateInput {
  source: HostRef;
  target: HostRef;
  vmUuid: string;
  bandwidthMiBps: number | null;
  /** The storage plan's disks: `copied` ones are streamed into their target pools, `shared` ones stay. */
  plannedDisks: PlannedDisk[];
}

/** One disk's stream so far (its total: the virtual size, what a raw file holds; a qcow2 file is usually smaller). */
interface DiskStream {
  target: string;
  totalBytes: number;
  copiedBytes: number;
  startedAt: number | null;
}

/** bytes/s since `since`; null before any time passed. */
function rate(bytes: number, since: number | null): number | null {
  const ms = since === null ? 0 : Date.now() - since;
  return ms > 0 ? Math.round((bytes / ms) * 1000) : null;
}

/** The copy's progress as the progress query shows a live migration's: all disks together, and each disk. */
function copyStats(streams: readonly DiskStream[], startedAt: number, bandwidthMiBps: number | null): MigrationStats {
  const done = streams.reduce((s, d) => s + d.copiedBytes, 0);
  const total = Math.max(done, streams.reduce((s, d) => s + d.totalBytes, 0));
  return {
    jobType: 'cold-copy',
    elapsedMs: Date.now() - startedAt,
    dataTotalBytes: total,
    dataProcessedBytes: done,
    dataRemainingBytes: total - done,
    memoryRemainingBytes: 0,
    diskRemainingBytes: total - done,
    memoryIteration: null,
    dirtyRatePagesPerSec: null,
    percent: total > 0 ? Math.min(100, Math.round((done / total) * 1000) / 10) : 100,
    sampledAt: new Date().toISOString(),
    disk: { processedBytes: done, totalBytes: total, bytesPerSec: rate(done, startedAt) },
    disks: streams
      .filter((d) => d.startedAt !== null)
      .map((d) => ({ target: d.target, processedBytes: d.copiedBytes, totalBytes: Math.max(d.totalBytes, d.copiedBytes), bytesPerSec: rate(d.copiedBytes, d.startedAt), bandwidthMiBps })),
  };
}

/** The VM must stay shut off while its disks are copied: a started VM writes to the source copy. */
async function requireShutOff(hv: Hypervisor, source: HostRef, vmUuid: string, when: string): Promise<void> {
  const dom = await hv.getDomain(source.uri, vmUuid);
  if (dom === null || dom.state === 'shutoff') return;
  throw nonRetryable(
    FailureType.MigrationFailed,
    `${dom.name} was started on ${source.name} ${when} (it is ${dom.state}): a cold migration moves stopped VMs only; ` +
      'the target copy is discarded — stop the VM and migrate it again, or migrate it live',
  );
}

export function coldMigrationActivities(rt: ActivityRuntime) {
  const { hv } = rt;
  return {
    async coldMigrateVm(input: ColdMigrateInput): Promise<CompletedMigrationStats> {
      return guarded(async () => {
        const ctx = Context.current();
        const { source, target, vmUuid } = input;
        const startedAt = Date.now();
        const already = await locate(hv, source, target, vmUuid);
        if (already.location === 'target') return { totalTimeMs: 0, downtimeMs: null, bytesTransferred: 0, location: already };
        await requireShutOff(hv, source, vmUuid, 'before the copy');

        const copied = input.plannedDisks.filter((d) => d.layout === 'copied');
        const streams: DiskStream[] = copied.map((d) => ({ target: d.target, totalBytes: d.sizeBytes, copiedBytes: 0, startedAt: null }));
        const sourcePools = await hv.listPools(source.uri);
        let lastSignal = 0;
        for (const [i, d] of copied.entries()) {
          const stream = streams[i]!;
          if (d.pool === null) throw new Error(`disk ${d.name} has no target pool in the storage plan`);
          const pool = d.pool;
          // A fresh volume first (this run's own, made by its create task): an earlier attempt's partial copy goes.
          await hv.recreateVolume(target.uri, pool, d.name, d.sizeBytes, d.format, { replace: true });
          const tag = `${PROBE_PREFIX}${vmUuid.slice(0, 8)}-copy-${randomUUID().slice(0, 4)}`;
          const bytes = await withDirectoryPool(hv, source, sourcePools, dirnameOf(d.path), tag, (from) =>
            hv.copyVolume({ uri: source.uri, pool: from, name: d.name }, { uri: target.uri, pool, name: d.name }, {
              ...(input.bandwidthMiBps !== null ? { bandwidthMiBps: input.bandwidthMiBps } : {}),
              signal: ctx.cancellationSignal,
              onProgress: (n) => {
                stream.startedAt ??= Date.now();
                stream.copiedBytes = n;
                const stats = copyStats(streams, startedAt, input.bandwidthMiBps);
                ctx.heartbeat({ stats });
                if (Date.now() - lastSignal >= rt.signalEveryMs) {
                  lastSignal = Date.now();
                  void rt.report({ migration: stats }).catch(() => undefined);
                }
              },
            }),
          ).catch((err: unknown) => {
            if (ctx.cancellationSignal.aborted) return undefined;
            throw err;
          });
          if (bytes === undefined) await ctx.cancelled; // the copy was killed by the activity's cancellation
          if (bytes === null || bytes === undefined) throw nonRetryable(FailureType.MigrationFailed, `${source.name} no longer has the directory of ${d.path}`);
          stream.copiedBytes = bytes;
        }
        const done = streams.reduce((s, x) => s + x.copiedBytes, 0);
        if (ctx.cancellationSignal.aborted) await ctx.cancelled;
        await requireShutOff(hv, source, vmUuid, 'during the copy');
        await hv.migrateOffline(source.uri, vmUuid, target.uri);
        const where = await locate(hv, source, target, vmUuid);
        return { totalTimeMs: Date.now() - startedAt, downtimeMs: null, bytesTransferred: done, location: where };
      });
    },

    /**
     * Compensation of a cold migration (its copy activity has stopped): if the definition reached the target
     * while the source still has it (libvirt's offline migration interrupted), the target's copy of the
     * definition goes — the VM's home is its source. Then where the VM is.
     */
    async abortColdMigration(input: LocateInput): Promise<LocateResult> {
      return guarded(async () => {
        const { source, target, vmUuid } = input;
        const [src, tgt] = await Promise.all([hv.getDomain(source.uri, vmUuid), hv.getDomain(target.uri, vmUuid)]);
        if (src !== null && src.persistent && tgt !== null && tgt.persistent && tgt.state === 'shutoff') await hv.undefineDomain(target.uri, vmUuid);
        return locate(hv, source, target, vmUuid);
      });
    },
  };
}
