/**
 * The baseline: the same migration done by hand with plain virsh, one command per invocation as an operator
 * (or a shell script) would, with Ferry's flags. No Temporal, no inventory, no checks. Each command through
 * run() (argv, no shell).
 *
 *   create:  on the target   pool-define-as --type dir --target <vm dir>, pool-build, pool-start,
 *                             vol-create-as <disk> <same capacity> --format qcow2
 *   migrate: on the source   migrate --live --p2p --copy-storage-all --persistent --undefinesource
 *   cleanup: on the source   vol-delete, pool-destroy, pool-delete, pool-undefine (Ferry's cleanSource does
 *                             the same work, so "raw + cleanup" is the like-for-like figure)
 *   stats:   on the target   domjobinfo --completed --keep-completed --rawstats (libvirt's downtime; untimed)
 */
import { run } from '../hypervisor/exec';
import { parseJobInfoRaw } from '../hypervisor/text';

export interface RawVm {
  uuid: string;
  /** The VM's directory (the same path on every host) and its one disk. */
  dir: string;
  diskName: string;
  diskBytes: number;
}

export interface RawTimings {
  createMs: number;
  migrateMs: number;
  cleanupMs: number;
  /** libvirt's completed-job statistics on the target. */
  downtimeMs: number | null;
  totalTimeMs: number | null;
  virshCalls: number;
}

async function virsh(uri: string, args: string[], timeoutMs = 120_000): Promise<string> {
  return (await run('virsh', ['-c', uri, ...args], { timeoutMs })).stdout;
}

export function rawPool(vm: RawVm): string {
  return `ferry-${vm.uuid}`;
}

export async function rawCreate(targetUri: string, vm: RawVm): Promise<void> {
  const pool = rawPool(vm);
  await virsh(targetUri, ['pool-define-as', '--name', pool, '--type', 'dir', '--target', vm.dir]);
  await virsh(targetUri, ['pool-build', '--pool', pool]);
  await virsh(targetUri, ['pool-start', '--pool', pool]);
  await virsh(targetUri, ['vol-create-as', '--pool', pool, '--name', vm.diskName, '--capacity', String(vm.diskBytes), '--format', 'qcow2']);
}

export async function rawMigrate(sourceUri: string, targetUri: string, vm: RawVm): Promise<void> {
  await virsh(sourceUri, ['migrate', '--live', '--p2p', '--copy-storage-all', '--persistent', '--undefinesource', '--domain', vm.uuid, '--desturi', targetUri], 30 * 60_000);
}

export async function rawCleanup(sourceUri: string, vm: RawVm): Promise<void> {
  const pool = rawPool(vm);
  await virsh(sourceUri, ['vol-delete', '--pool', pool, '--vol', vm.diskName]);
  await virsh(sourceUri, ['pool-destroy', '--pool', pool]);
  await virsh(sourceUri, ['pool-delete', '--pool', pool]);
  await virsh(sourceUri, ['pool-undefine', '--pool', pool]);
}

export async function rawCompletedStats(targetUri: string, vm: RawVm): Promise<{ downtimeMs: number | null; totalTimeMs: number | null }> {
  const job = parseJobInfoRaw(await virsh(targetUri, ['domjobinfo', '--domain', vm.uuid, '--completed', '--keep-completed', '--rawstats']));
  return { downtimeMs: job.downtimeMs, totalTimeMs: job.totalTimeMs ?? job.timeElapsedMs };
}

/** The whole by-hand migration, timed step by step. */
export async function rawMigration(sourceUri: string, targetUri: string, vm: RawVm): Promise<RawTimings> {
  const t0 = performance.now();
  await rawCreate(targetUri, vm);
  const t1 = performance.now();
  await rawMigrate(sourceUri, targetUri, vm);
  const t2 = performance.now();
  await rawCleanup(sourceUri, vm);
  const t3 = performance.now();
  const stats = await rawCompletedStats(targetUri, vm);
  return { createMs: t1 - t0, migrateMs: t2 - t1, cleanupMs: t3 - t2, ...stats, virshCalls: 9 };
}
