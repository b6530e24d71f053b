/**
 * Issue 10 on the real lab (3 hosts): Linux guests (the lab's Debian kernel + busybox initramfs, direct kernel
 * boot, lab/linux-guest.ts) defined with plain virsh the way an operator would — disk in virt-install's flat
 * `default` pool (or a directory two hosts share), a virtio NIC on the guest bridge that spans the hosts — each
 * writing 100 sequence-numbered, checksummed, flushed records per second and answering the lab's 10 ms prober.
 *
 * For every path — live success, create-task threshold (abort), timeout, the worker SIGKILLed mid-copy, a disk on
 * shared storage, cold migration, a guest writing 20 MiB/s with and without synchronous disk writes — the test
 * reads the disk the VM uses afterwards (qemu-img, inside the host that runs it) and asserts: every record the
 * guest acknowledged is there, no hole, no damaged record, and records kept coming while the VM moved. The
 * migrated results carry `guestDowntimeMs` (the prober's longest gap) next to libvirt's `downtimeMs`.
 */
import { randomUUID } from 'node:crypto';
import { run } from '../../hypervisor/exec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MigrationOutcome } from '../../client';
import type { LiveMigrationInput } from '../../common/validation';
import {
  guestBootDir,
  labProbeGuest,
  linuxGuestBoot,
  LAB_GUEST_BRIDGE,
  probeSeconds,
  recordViolations,
  verifyGuestDisk,
  type RecordCheck,
} from '../../lab';
import { canRunLab, waitForCopied, sleep, startFaultLab, type FaultLab } from '../support/fault-harness';
import {
  DEFAULT_POOL_DIR as IMAGES,
  definePlainVm,
  ensureDefaultPool,
  ensureDirPool,
  mountFullFilesystem,
  shareDirectory,
  syncPlainVms,
  virsh,
  whereIs,
  type PlainVm,
  type SharedDirectory,
} from '../support/plain-vms';

const SHARED = `${IMAGES}/shared`;

describe.skipIf(!canRunLab)('a real Linux guest: every acknowledged record survives every path (issue 10, real lab)', () => {
  let f: FaultLab;
  let H1 = '';
  let H2 = '';
  let H3 = '';
  let share: SharedDirectory;
  const uri = (h: string) => f.host(h).uri;

  beforeAll(async () => {
    f = await startFaultLab({ hosts: 3, vms: 0, taskQueue: 'ferry-linux-guest' });
    [H1, H2, H3] = f.lab.hosts.map((h) => h.name) as [string, string, string];
    for (const h of [H1, H2, H3]) await ensureDefaultPool(uri(h));
    share = await shareDirectory(f, [H1, H2], SHARED);
    for (const h of [H1, H2]) await ensureDirPool(uri(h), 'shared', SHARED);
  }, 300_000);

  afterAll(async () => {
    await share?.undo().catch(() => undefined);
    await f?.stop();
  }, 120_000);

  /** A Linux guest defined with plain virsh on `host`, watched by the prober; resolves once it acknowledges records. */
  async function linuxGuest(name: string, host: string, o: { dir?: string; writeMiBPerSec?: number } = {}): Promise<PlainVm> {
    const uuid = randomUUID();
    const ip = await labProbeGuest(f.home, { name, uuid });
    const linux = await linuxGuestBoot({ kind: 'linux', ip, ...(o.writeMiBPerSec ? { writeMiBPerSec: o.writeMiBPerSec } : {}) }, guestBootDir(f.home));
    const vm = await definePlainVm(f, host, {
      name,
      uuid,
      memoryMiB: 128,
      disks: [{ path: `${o.dir ?? IMAGES}/${name}.qcow2`, sizeMiB: 64, dataMiB: 0 }],
      bridge: LAB_GUEST_BRIDGE,
      linux,
    });
    await syncPlainVms(f.inventory, f);
    await ackedAfter(name, 50, 60_000);
    return vm;
  }

  /** The guest's last acknowledged record, from a probe reply received after this call (waits for one). */
  async function acked(name: string, timeoutMs = 30_000): Promise<number> {
    const since = Date.now();
    const deadline = since + timeoutMs;
    for (;;) {
      const fresh = probeSeconds(f.home, name).filter((s) => s.t >= since - 1000 && s.recv > 0 && s.lastAck >= 0);
      const last = fresh.at(-1);
      if (last && last.t >= Math.floor(since / 1000) * 1000) return last.lastAck;
      if (Date.now() > deadline) throw new Error(`${name} does not answer the prober: ${await diagnose(name)}`);
      await sleep(200);
    }
  }

  /** What libvirt and the prober say about a guest that stopped answering (for the failure message). */
  async function diagnose(name: string): Promise<string> {
    const out: string[] = [`probe: ${JSON.stringify(probeSeconds(f.home, name).slice(-3))}`];
    for (const h of [H1, H2, H3]) {
      const st = await virsh(uri(h), ['domstate', '--reason', name]).catch(() => null);
      if (st === null) continue;
      const q = await virsh(uri(h), ['qemu-monitor-command', name, '--hmp', 'info status']).catch((e: unknown) => String(e));
      out.push(`${h}: ${st.stdout.trim()} / ${typeof q === 'string' ? q : q.stdout.trim()}`);
    }
    // Where the root bridge of the guest network thinks the guest's MAC is (a stale entry: the announcement was missed).
    const mac = /([0-9a-f]{2}(:[0-9a-f]{2}){5})/.exec(String((await virsh(uri(H1), ['dumpxml', name]).catch(() => null))?.stdout ?? ''))?.[1];
    const fdb = await run('bridge', ['fdb', 'show', 'br', `${f.lab.hosts[0]?.name.split('-')[0]}gbr0`]).catch(() => null);
    out.push(`fdb ${mac}: ${fdb?.stdout.split('\n').filter((l) => mac && l.includes(mac)).join(' | ') ?? '?'}`);
    return out.join('; ');
  }

  /** Waits until the guest has acknowledged more than `seq`. */
  async function ackedAfter(name: string, seq: number, timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const a = probeSeconds(f.home, name).at(-1)?.lastAck ?? -1;
      if (a > seq) return a;
      if (Date.now() > deadline) throw new Error(`${name} did not acknowledge past record ${seq} in ${timeoutMs} ms`);
      await sleep(200);
    }
  }

  /** The one host libvirt runs the VM on (asserting there is exactly one domain, in `state`). */
  async function soleHost(vm: PlainVm, state = 'running'): Promise<string> {
    const where = await whereIs(f, vm.uuid);
    const hosts = Object.keys(where);
    expect(hosts.length, JSON.stringify(where)).toBe(1);
    expect(where[hosts[0] as string]).toBe(state);
    return hosts[0] as string;
  }

  /**
   * The record check on the disk the VM uses now: everything up to the guest's latest acknowledgement is there,
   * no hole, no damaged record; and (when `movedAt` is given) records were written while the VM moved.
   */
  async function expectRecordsIntact(vm: PlainVm, label: string, movedAt?: { from: number; to: number }): Promise<RecordCheck> {
    const host = await soleHost(vm);
    const ack = await acked(vm.name);
    const disk = vm.disks[0]?.path as string;
    const check = await verifyGuestDisk(f.home, host, disk);
    const problems = recordViolations(check, ack);
    const during = movedAt ? check.records.filter((r) => r.writtenAtMs >= movedAt.from && r.writtenAtMs <= movedAt.to).length : null;
    console.log(
      `GUEST-RECORDS ${JSON.stringify({ label, vm: vm.name, host, acked: ack, first: check.first, last: check.last, count: check.count, holes: check.holes.length, bad: check.bad, writtenDuringMove: during, moveMs: movedAt ? movedAt.to - movedAt.from : null })}`,
    );
    expect(problems).toEqual([]);
    if (movedAt && during !== null) {
      // 100 records/s are asked for; a loaded 2-core machine under TCG delivers fewer, but they must keep coming.
      expect(during).toBeGreaterThan(((movedAt.to - movedAt.from) / 1000) * 10);
    }
    return check;
  }

  function input(vm: PlainVm, source: string, extra: Partial<LiveMigrationInput> = {}): LiveMigrationInput {
    return { sourceHost: f.host(source).address, vmName: vm.name, vmUuid: vm.uuid, options: { createRetryInterval: '200ms' }, ...extra };
  }

  async function migrate(vm: PlainVm, extra: Partial<LiveMigrationInput>, state = 'running'): Promise<{ out: MigrationOutcome; from: number; to: number }> {
    const source = await soleHost(vm, state);
    const from = Date.now();
    const out = await f.ferry.migrate(input(vm, source, extra));
    const to = Date.now();
    console.log(
      `GUEST-MIGRATION ${JSON.stringify({ vm: vm.name, status: out.status, mode: out.mode, source, target: out.target, downtimeMs: out.downtimeMs, guestDowntimeMs: out.guestDowntimeMs, migrationMs: out.migrationMs, durationMs: out.durationMs })}`,
    );
    return { out, from, to };
  }

  describe('db1: a guest in the default pool, moved through every path', () => {
    let vm: PlainVm;
    beforeAll(async () => {
      vm = await linuxGuest('db1', H1);
    }, 180_000);

    it('live migration: the VM runs on the target, every acknowledged record is on its disk there, guestDowntimeMs reported', async () => {
      await expectRecordsIntact(vm, 'before');
      const { out, from, to } = await migrate(vm, { targetHost: H2 });
      expect([out.status, out.mode, out.target]).toEqual(['migrated', 'live', H2]);
      expect(await soleHost(vm)).toBe(H2);
      await expectRecordsIntact(vm, 'live', { from, to });
      expect(typeof out.guestDowntimeMs).toBe('number');
      expect(out.guestDowntimeMs).toBeGreaterThanOrEqual(10);
      expect(typeof out.downtimeMs).toBe('number');
    }, 180_000);

    it("create-task threshold: the target's directory is full, the migration aborts, the VM keeps running and writing on its source", async () => {
      const full = await mountFullFilesystem(f, H3, IMAGES);
      let r: Awaited<ReturnType<typeof migrate>>;
      try {
        r = await migrate(vm, { targetHost: H3, createAttempts: 2 });
      } finally {
        await full.undo();
      }
      expect(r.out.status).toBe('aborted');
      expect(Object.values(r.out.createAttempts)).toContain(2);
      expect(await soleHost(vm)).toBe(H2);
      await expectRecordsIntact(vm, 'aborted', r);
    }, 180_000);

    it('timeout: a copy at 1 MiB/s past its 4 s deadline is aborted, the VM runs on its source with every record', async () => {
      const r = await migrate(vm, { targetHost: H1, bandwidthMiBps: 1, timeout: '4s' });
      expect(r.out.status).toBe('timed-out');
      expect(await soleHost(vm)).toBe(H2);
      await expectRecordsIntact(vm, 'timed-out', r);
    }, 180_000);

    it('the worker SIGKILLed mid-copy: the VM ends on exactly one host and every acknowledged record is on the disk there', async () => {
      const source = await soleHost(vm);
      const from = Date.now();
      const target = source === H1 ? H3 : H1;
      const handle = await f.ferry.startMigration(input(vm, source, { targetHost: target, bandwidthMiBps: 8 }));
      expect(await waitForCopied(handle, 4 * 2 ** 20)).toBeGreaterThan(0);
      await f.worker.kill();
      await f.worker.start();
      const out = await handle.outcome();
      const to = Date.now();
      console.log(`GUEST-MIGRATION ${JSON.stringify({ vm: vm.name, case: 'worker-killed', status: out.status, target: out.target, downtimeMs: out.downtimeMs })}`);
      expect(['migrated', 'failed', 'aborted']).toContain(out.status);
      expect(await soleHost(vm)).toBe(out.status === 'migrated' ? target : source);
      await expectRecordsIntact(vm, `worker-killed-${out.status}`, { from, to });
    }, 240_000);

    it('cold: powered off hard (acknowledged records only on the disk), moved cold, booted on the target: no record lost, new ones follow', async () => {
      const source = await soleHost(vm);
      const before = await acked(vm.name);
      await virsh(uri(source), ['destroy', vm.uuid]); // a pulled plug: only what the guest flushed is on the disk
      await syncPlainVms(f.inventory, f);
      const target = [H1, H2, H3].find((h) => h !== source) as string;
      const { out } = await migrate(vm, { targetHost: target }, 'shut off');
      expect([out.status, out.mode]).toEqual(['migrated', 'cold']);
      expect(await soleHost(vm, 'shut off')).toBe(target);
      await virsh(uri(target), ['start', vm.uuid], 90_000);
      await ackedAfter(vm.name, before + 100, 60_000);
      const check = await expectRecordsIntact(vm, 'cold');
      expect(check.last).toBeGreaterThan(before + 100);
      expect(new Set(check.records.map((r) => r.boot)).size).toBeGreaterThanOrEqual(2); // records of both boots, no gap between
      await syncPlainVms(f.inventory, f);
    }, 240_000);
  });

  it('shared storage: a guest whose disk two hosts share moves memory-only; the same file holds every record', async () => {
    const vm = await linuxGuest('db2', H1, { dir: SHARED });
    const { out, from, to } = await migrate(vm, { targetHost: H2 });
    expect([out.status, out.target]).toEqual(['migrated', H2]);
    expect(out.disks?.map((d) => d.layout)).toEqual(['shared']);
    await expectRecordsIntact(vm, 'shared', { from, to });
    expect(typeof out.guestDowntimeMs).toBe('number');
  }, 240_000);

  describe('a guest writing 20 MiB/s besides its records, copied at 10 MiB/s', () => {
    let vm: PlainVm;
    beforeAll(async () => {
      vm = await linuxGuest('writer', H1, { writeMiBPerSec: 20 });
    }, 180_000);

    it('without synchronous disk writes the disk copy never converges: timed out cleanly, every record on the source', async () => {
      const r = await migrate(vm, { targetHost: H2, bandwidthMiBps: 10, timeout: '25s' });
      expect(r.out.status).toBe('timed-out');
      expect(await soleHost(vm)).toBe(H1);
      await expectRecordsIntact(vm, 'writer-async', r);
    }, 180_000);

    it('with convergence.syncDiskWrites (write-blocking mirror) it converges: migrated, every record on the target', async () => {
      const r = await migrate(vm, { targetHost: H2, bandwidthMiBps: 10, timeout: '90s', convergence: { syncDiskWrites: true } });
      expect([r.out.status, r.out.target]).toEqual(['migrated', H2]);
      await expectRecordsIntact(vm, 'writer-sync', r);
    }, 180_000);
  });
});
