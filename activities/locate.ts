/**
 * Asking libvirt where a VM really runs, and what its domains' states mean for a migration. Every decision
 * after a failure (finish, compensate, refuse a deletion) starts from here, never from what a client said.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { ApplicationFailure } from '@temporalio/common';
import type { DiskRecord, HostRecord } from '../common/types';
import type { CompletedMigrationStats, HostRef, LocateResult, MigrationStats } from '../common/migration';
import { FailureType } from '../common/failures';
import { isJobActive, type DomainInfo, type Hypervisor, type JobInfo } from '../hypervisor/port';
import { samePath } from '../hypervisor/virsh';
import { LibvirtError } from '../hypervisor/errors';
import { nonRetryable } from './failures';

export function hostRef(h: HostRecord): HostRef {
  return { name: h.name, address: h.address, uri: h.uri };
}

/** libvirt's marker of a migration in post-copy: the source domain's state reason. */
export function isPostCopy(d: DomainInfo | null): boolean {
  return d?.stateReason !== null && d?.stateReason !== undefined && /post-?copy/.test(d.stateReason);
}

/** A post-copy that failed: the source is `paused (post-copy failed)` and can neither resume nor be aborted. */
export function isPostCopyFailed(d: DomainInfo | null): boolean {
  return isPostCopy(d) && /fail/.test(d?.stateReason ?? '');
}

export function isRunningOrPaused(d: DomainInfo | null): boolean {
  return d !== null && (d.state === 'running' || d.state === 'paused');
}

/** The domain that references the file (as a disk, a cdrom or a backing file), if any. */
export function domainUsing(domains: readonly DomainInfo[], path: string): DomainInfo | undefined {
  return domains.find((d) => d.files.some((f) => samePath(f, path)));
}

/** Where libvirt says the VM runs. Asks the source first: a VM running there with no job is there. */
export async function locate(hv: Hypervisor, source: HostRef, target: HostRef, uuid: string): Promise<LocateResult> {
  const src = await hv.getDomain(source.uri, uuid);
  if (src !== null && isPostCopyFailed(src)) {
    const tgt = await hv.getDomain(target.uri, uuid).catch(() => null);
    return { location: 'split', sourceState: `${src.state} (${src.stateReason})`, targetState: tgt ? `${tgt.state} (${tgt.stateReason ?? ''})` : null };
  }
  if (src !== null && src.state === 'running') {
    const job = await hv.jobInfo(source.uri, uuid);
    if (!isJobActive(job)) return { location: 'source', sourceState: src.state, targetState: null };
  }
  const tgt = await hv.getDomain(target.uri, uuid);
  const states = { sourceState: src?.state ?? null, targetState: tgt?.state ?? null };
  if (hasLanded(tgt) && !isRunningOrPaused(src)) return { location: 'target', ...states };
  if (isRunningOrPaused(src)) return { location: 'source', ...states };
  // Nothing runs: a stopped VM (cold migration, or one that stopped during the move) is where it is defined.
  if (src !== null && src.persistent) return { location: 'source', ...states };
  if (tgt !== null && tgt.persistent && tgt.state === 'shutoff') return { location: 'target', ...states };
  return { location: 'nowhere', ...states };
}

/**
 * The target's domain is the VM itself, not an incoming migration's: running, or paused and persistent (a paused
 * VM migrates live and stays paused; the incoming domain of a running migration is paused and transient until
 * libvirt's finish step).
 */
function hasLanded(tgt: DomainInfo | null): tgt is DomainInfo {
  return tgt !== null && (tgt.state === 'running' || (tgt.state === 'paused' && tgt.persistent && !/migrat/.test(tgt.stateReason ?? '')));
}

/** libvirt's job takes a moment to end after an abort. */
const JOB_SETTLE_MS = 500;

/**
 * Aborts libvirt's migration job of the VM on the source (if any), waits until it has ended, then says where
 * the VM is. A job in post-copy is never aborted (each host holds part of the guest's memory): it is waited
 * for; one whose post-copy failed is left, and locate() reports the split. `tick` runs each turn (heartbeats).
 */
export async function abortAndLocate(hv: Hypervisor, source: HostRef, target: HostRef, uuid: string, tick: () => void = () => undefined): Promise<LocateResult> {
  for (;;) {
    tick();
    const job = await hv.jobInfo(source.uri, uuid).catch((err: unknown) => {
      if (err instanceof LibvirtError && err.kind === 'not-found') return null;
      throw err;
    });
    if (job === null || !isJobActive(job)) break;
    const dom = await hv.getDomain(source.uri, uuid);
    if (isPostCopyFailed(dom)) break;
    if (!isPostCopy(dom)) await hv.abortJob(source.uri, uuid);
    await delay(JOB_SETTLE_MS);
  }
  return locate(hv, source, target, uuid);
}

/** A target-side deletion must never touch storage of a VM that runs there. */
export async function assertNotRunningOn(hv: Hypervisor, host: HostRef, uuid: string, what: string): Promise<void> {
  const dom = await hv.getDomain(host.uri, uuid);
  if (dom !== null && dom.state === 'paused' && !dom.persistent) {
    // The transient, paused domain of an incoming migration that has not been torn down yet: e.g. after the
    // target's libvirtd was killed mid-migration and restarted, it lists the incoming QEMU until it kills it.
    // Not the live VM, but its QEMU may still hold the disk: wait (retry) until libvirt has dropped it.
    throw ApplicationFailure.create({
      type: FailureType.IncomingDomainPresent,
      message:
        `waiting to ${what} on ${host.name}: it still has the paused, transient domain of an incoming migration ` +
        `of ${uuid} (${dom.stateReason ?? 'no reason given'}); libvirt removes it when that migration job ends`,
      nonRetryable: false,
    });
  }
  if (isRunningOrPaused(dom)) {
    throw nonRetryable(
      FailureType.UnsafeCleanup,
      `refusing to ${what} on ${host.name}: VM ${uuid} is ${dom?.state} there. ` + 'Check where the VM runs (`ferry status`) before removing its storage by hand.',
    );
  }
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

/**
 * libvirt's completed-job statistics, read on the target (the source's are gone with --undefinesource).
 * They count memory only; the disk mirror copies each copied disk's full virtual size, added here (`disks`:
 * the copied ones — a disk on shared storage crosses no wire).
 */
export async function completedStats(hv: Hypervisor, target: HostRef, uuid: string, disks: readonly Pick<DiskRecord, 'sizeBytes'>[]): Promise<CompletedMigrationStats> {
  const job = await hv.completedJobInfo(target.uri, uuid);
  if (job === null) return { totalTimeMs: null, downtimeMs: null, bytesTransferred: null };
  const diskBytes = disks.reduce((sum, d) => sum + d.sizeBytes, 0);
  return {
    totalTimeMs: job.totalTimeMs ?? job.timeElapsedMs,
    downtimeMs: job.downtimeMs,
    bytesTransferred: job.dataProcessedBytes === null ? null : job.dataProcessedBytes + diskBytes,
  };
}
