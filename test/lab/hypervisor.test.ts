/**
 * VirshHypervisor against real libvirt: a two-host lab (lab/), one VM on host 1. Exercises every port method,
 * a throttled live migration with job statistics, an aborted migration, and the error kinds of a stopped daemon.
 * Skipped when not root or libvirtd is not installed.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtError } from '../../hypervisor/errors';
import type { JobInfo } from '../../hypervisor/port';
import { VirshHypervisor, type VirshCallInfo } from '../../hypervisor/virsh';
import {
  LAB_ROOT_POOL,
  LAB_STORAGE_ROOT,
  type LabHost,
  type LabVm,
  hostPath,
  labDown,
  labUp,
  startHostDaemon,
  stopHostDaemon,
} from '../../lab';
import { labNaming } from '../support/lab-naming';
import { libvirtRejection } from '../support/libvirt-rejection';

const canRun = process.getuid?.() === 0 && existsSync('/usr/sbin/libvirtd') && existsSync('/usr/bin/virsh');
const MiB = 1024 * 1024;

const rejection = libvirtRejection;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!canRun)('VirshHypervisor on the lab', () => {
  let home = '';
  let h1: LabHost;
  let h2: LabHost;
  let vm: LabVm;
  const calls: VirshCallInfo[] = [];
  const hv = new VirshHypervisor({ onCall: (c) => calls.push(c) });
  /** Calls and wall time of one operation. */
  async function measured<T>(fn: () => Promise<T>): Promise<{ value: T; calls: number; ms: number }> {
    calls.length = 0;
    const t0 = performance.now();
    const value = await fn();
    return { value, calls: calls.length, ms: performance.now() - t0 };
  }
  const vmPool = () => `ferry-${vm.uuid}`;
  const vmDir = () => dirname(vm.diskPath);

  /** What the workflow does before migrating: the VM's directory, pool and an empty disk on the target. */
  async function prepareTarget(): Promise<void> {
    const d = await hv.getDomain(h1.uri, vm.uuid);
    const disk = d?.disks[0];
    if (!disk) throw new Error('vm has no disk');
    await hv.createStorageDirectory(h2.uri, vmPool(), vmDir());
    await hv.startPool(h2.uri, vmPool());
    await hv.recreateVolume(h2.uri, vmPool(), 'disk0.qcow2', disk.capacityBytes, disk.format, { replace: true });
  }

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), 'ferry-hv-lab-'));
    const lab = await labUp({ home, hosts: 2, vms: 1, ...labNaming() });
    const [a, b] = lab.hosts;
    const v = lab.vms[0];
    if (!a || !b || !v) throw new Error('lab did not come up with 2 hosts and 1 vm');
    h1 = a;
    h2 = b;
    vm = v;
  }, 600_000);

  afterAll(async () => {
    if (!home) return;
    try {
      if (h1) await startHostDaemon(home, h1.name).catch(() => undefined);
      if (h2) await startHostDaemon(home, h2.name).catch(() => undefined);
    } finally {
      await labDown(home, { prefix: labNaming().prefix });
      rmSync(home, { recursive: true, force: true });
    }
  }, 300_000);

  it('hostCapacity: nodeinfo, hostname, free memory and the storage root pool (1 round trip when warm)', async () => {
    for (const h of [h1, h2]) {
      const cold = await measured(() => hv.hostCapacity(h.uri, LAB_STORAGE_ROOT));
      console.log(`hostCapacity cold on ${h.name}: ${cold.ms.toFixed(0)} ms: ${calls.map((x) => `[${x.commands.join(',')}] ${x.ms.toFixed(0)} ms`).join(' ')}`);
      const c = cold.value;
      expect(c.hostname).toBe(h.name);
      expect(c.cpus).toBeGreaterThan(0);
      expect(c.memoryKiB).toBeGreaterThan(0);
      expect(c.freeMemoryKiB).toBeGreaterThan(0);
      expect(c.storage).toMatchObject({ pool: LAB_ROOT_POOL, path: LAB_STORAGE_ROOT });
      expect(c.storage?.availableBytes).toBeGreaterThan(0);
      expect(c.storage?.capacityBytes).toBeGreaterThanOrEqual(c.storage?.availableBytes ?? 0);
    }
    const warm = await measured(() => hv.hostCapacity(h1.uri, LAB_STORAGE_ROOT));
    expect(warm.calls).toBe(1);
    console.log(`hostCapacity warm: ${warm.calls} virsh call(s), ${warm.ms.toFixed(1)} ms`);
    expect((await hv.hostCapacity(h1.uri, '/nonexistent/root')).storage).toBeNull();
  });

  it('ensureStorageRootPool is idempotent on an existing root pool', async () => {
    await hv.ensureStorageRootPool(h2.uri, LAB_ROOT_POOL, LAB_STORAGE_ROOT);
    await hv.ensureStorageRootPool(h2.uri, LAB_ROOT_POOL, LAB_STORAGE_ROOT);
    const pools = await hv.listPools(h2.uri);
    expect(pools).toContainEqual({ name: LAB_ROOT_POOL, path: LAB_STORAGE_ROOT, active: true });
  });

  it('getDomain / listDomains: the VM on host 1 in one round trip, absent on host 2', async () => {
    const got = await measured(() => hv.getDomain(h1.uri, vm.uuid));
    console.log(`getDomain: ${got.calls} virsh call(s), ${got.ms.toFixed(1)} ms`);
    expect(got.calls).toBe(1);
    expect(got.value).toMatchObject({
      uuid: vm.uuid,
      name: vm.name,
      state: 'running',
      persistent: true,
      memoryKiB: 128 * 1024,
      vcpus: 1,
    });
    expect(got.value?.disks).toEqual([{ target: 'vda', path: vm.diskPath, format: 'qcow2', capacityBytes: 64 * MiB }]);
    expect(await hv.getDomain(h2.uri, vm.uuid)).toBeNull();
    const list = await measured(() => hv.listDomains(h1.uri));
    console.log(`listDomains (1 domain): ${list.calls} virsh call(s), ${list.ms.toFixed(1)} ms`);
    expect(list.value.map((d) => d.uuid)).toEqual([vm.uuid]);
    expect(await hv.listDomains(h2.uri)).toEqual([]);
    expect(await hv.poolOfVolume(h1.uri, vm.diskPath)).toBe(vmPool());
    expect(await hv.poolOfVolume(h2.uri, vm.diskPath)).toBeNull();
    expect(await hv.jobInfo(h1.uri, vm.uuid)).toMatchObject({ type: 'none' });
    expect(await hv.abortJob(h1.uri, vm.uuid)).toBe(false);
  });

  it('storage lifecycle on host 2: create, start, recreate twice, delete, remove (directory gone)', async () => {
    const pool = 'ferry-hvtest';
    const dir = `${LAB_STORAGE_ROOT}/hvtest`;
    const onHost = hostPath(home, h2.name, dir);
    await hv.createStorageDirectory(h2.uri, pool, dir);
    expect(existsSync(onHost)).toBe(true);
    await hv.createStorageDirectory(h2.uri, pool, dir); // idempotent
    await hv.startPool(h2.uri, pool);
    await hv.startPool(h2.uri, pool); // idempotent: refresh + autostart
    expect(await hv.listPools(h2.uri)).toContainEqual({ name: pool, path: dir, active: true });

    await hv.recreateVolume(h2.uri, pool, 'disk0.qcow2', 64 * MiB, 'qcow2');
    // an existing volume is never replaced unless the caller says it owns it (issue 15: provenance)
    expect((await rejection(hv.recreateVolume(h2.uri, pool, 'disk0.qcow2', 32 * MiB, 'qcow2'))).kind).toBe('exists');
    await hv.recreateVolume(h2.uri, pool, 'disk0.qcow2', 32 * MiB, 'qcow2', { replace: true }); // replaced, not reused
    await hv.recreateVolume(h2.uri, pool, 'disk1.raw', 8 * MiB, 'raw');
    const vols = await hv.listVolumes(h2.uri, pool);
    expect(vols).toEqual(
      expect.arrayContaining([
        { name: 'disk0.qcow2', path: `${dir}/disk0.qcow2`, capacityBytes: 32 * MiB },
        { name: 'disk1.raw', path: `${dir}/disk1.raw`, capacityBytes: 8 * MiB },
      ]),
    );
    expect(await hv.poolOfVolume(h2.uri, `${dir}/disk1.raw`)).toBe(pool);
    expect(await hv.deleteVolume(h2.uri, pool, 'disk1.raw')).toBe(true);
    expect(await hv.deleteVolume(h2.uri, pool, 'disk1.raw')).toBe(false);
    expect(await hv.deleteVolume(h2.uri, 'ferry-no-such-pool', 'x')).toBe(false);

    // another pool already owns the storage root: never adopted
    const conflict = await rejection(hv.createStorageDirectory(h2.uri, 'ferry-intruder', LAB_STORAGE_ROOT));
    expect(conflict.kind).toBe('exists');
    expect(conflict.message).toContain(`'${LAB_ROOT_POOL}'`);
    // same pool name, other path
    expect((await rejection(hv.createStorageDirectory(h2.uri, pool, `${dir}-other`))).kind).toBe('exists');

    await hv.stopPool(h2.uri, pool);
    await hv.stopPool(h2.uri, pool);
    // removal never deletes a file: with disk0.qcow2 still in it the directory and its pool are kept
    const kept = await rejection(hv.removeStorageDirectory(h2.uri, pool));
    expect(kept.kind).toBe('invalid');
    expect(kept.message).toMatch(/still holds .*disk0\.qcow2; kept with its pool/);
    expect(existsSync(`${onHost}/disk0.qcow2`)).toBe(true);
    expect(await hv.deleteVolume(h2.uri, pool, 'disk0.qcow2')).toBe(true);
    const removed = await measured(() => hv.removeStorageDirectory(h2.uri, pool));
    console.log(`removeStorageDirectory (empty): ${removed.calls} virsh call(s), ${removed.ms.toFixed(1)} ms`);
    expect(existsSync(onHost)).toBe(false);
    expect((await hv.listPools(h2.uri)).map((p) => p.name)).not.toContain(pool);
    await hv.removeStorageDirectory(h2.uri, pool); // absent: nothing to do
    await hv.stopPool(h2.uri, pool);
  });

  it('abortJob mid-migration: the migration fails as aborted and the VM stays on host 1', async () => {
    await prepareTarget();
    const migration = hv.migrate(h1.uri, vm.uuid, h2.uri, { bandwidthMiBps: 1 });
    const settled = migration.then(
      () => null,
      (e: unknown) => e,
    );
    let running: JobInfo | null = null;
    for (let i = 0; i < 100 && !running; i++) {
      await sleep(200);
      const j = await hv.jobInfo(h1.uri, vm.uuid);
      if (j.type === 'unbounded' && (j.dataProcessedBytes ?? 0) > 0) running = j;
    }
    expect(running).not.toBeNull();
    expect(await hv.abortJob(h1.uri, vm.uuid)).toBe(true);
    const err = await settled;
    expect(err).toBeInstanceOf(LibvirtError);
    if (err instanceof LibvirtError) {
      console.log(`aborted migration: kind=${err.kind} stderr=${JSON.stringify(err.stderr)}`);
      expect(err.kind).toBe('aborted');
      expect(err.retryable).toBe(false);
    }
    expect(await hv.getDomain(h1.uri, vm.uuid)).toMatchObject({ state: 'running' });
    expect(await hv.getDomain(h2.uri, vm.uuid)).toBeNull();
    expect(await hv.abortJob(h1.uri, vm.uuid)).toBe(false);
  });

  it('the abort signal kills only the virsh client: the p2p job goes on until abortJob', async () => {
    await prepareTarget();
    const ac = new AbortController();
    const migration = hv.migrate(h1.uri, vm.uuid, h2.uri, { bandwidthMiBps: 1, signal: ac.signal });
    const settled = migration.then(
      () => null,
      (e: unknown) => e,
    );
    let started = false;
    for (let i = 0; i < 100 && !started; i++) {
      await sleep(200);
      started = (await hv.jobInfo(h1.uri, vm.uuid)).type === 'unbounded';
    }
    expect(started).toBe(true);
    ac.abort();
    const err = await settled;
    expect(err).toBeInstanceOf(LibvirtError);
    if (err instanceof LibvirtError) {
      expect(err.kind).toBe('aborted');
      expect(err.message).toContain('abortJob');
    }
    await sleep(1000);
    expect((await hv.jobInfo(h1.uri, vm.uuid)).type).toBe('unbounded'); // still migrating without a client
    expect(await hv.abortJob(h1.uri, vm.uuid)).toBe(true);
    let left = 'unbounded';
    for (let i = 0; i < 50 && left !== 'none'; i++) {
      await sleep(200);
      left = (await hv.jobInfo(h1.uri, vm.uuid)).type;
    }
    expect(left).toBe('none');
    expect(await hv.getDomain(h1.uri, vm.uuid)).toMatchObject({ state: 'running' });
    expect(await hv.getDomain(h2.uri, vm.uuid)).toBeNull();
  });

  it('migrate --bandwidth 5: job statistics while running, completed statistics on the target', async () => {
    await prepareTarget(); // a stale partial copy from the aborted run is replaced
    const samples: JobInfo[] = [];
    let done = false;
    const t0 = performance.now();
    const migration = hv.migrate(h1.uri, vm.uuid, h2.uri, { bandwidthMiBps: 5 }).finally(() => {
      done = true;
    });
    let targetView: { value: unknown; calls: number; ms: number } | null = null;
    let targetJob: LibvirtError | null = null;
    const sampler = (async () => {
      while (!done) {
        await sleep(500);
        if (done) break;
        try {
          const s = await hv.jobInfo(h1.uri, vm.uuid);
          samples.push(s);
          if (!targetView && (s.diskProcessedBytes ?? 0) > 0) {
            // the incoming migration holds the target domain's job: getDomain must not wait for it
            targetView = await measured(() => hv.getDomain(h2.uri, vm.uuid));
            targetJob = await rejection(hv.jobInfo(h2.uri, vm.uuid));
          }
        } catch (e) {
          if (!(e instanceof LibvirtError && e.kind === 'not-found')) throw e; // gone at the very end
        }
      }
    })();
    await migration;
    await sampler;
    const wall = performance.now() - t0;
    const live = samples.filter((s) => s.type === 'unbounded');
    console.log(`migration took ${wall.toFixed(0)} ms; ${live.length} live samples; last: ${JSON.stringify(live.at(-1)?.raw)}`);
    expect(live.length).toBeGreaterThan(0);
    const mid = live.at(-1);
    expect(mid?.operation).toBe('Outgoing migration');
    expect(mid?.dataTotalBytes).toBeGreaterThan(0);
    expect(mid?.timeElapsedMs).toBeGreaterThan(0);
    const tv = targetView as { value: unknown; calls: number; ms: number } | null;
    console.log(`getDomain on the target mid-migration: ${tv?.calls} call(s), ${tv?.ms.toFixed(1)} ms`);
    expect(tv?.value).toMatchObject({ state: 'paused', stateReason: 'migrating', persistent: false });
    expect(tv?.value).toMatchObject({ disks: [{ path: vm.diskPath, capacityBytes: 64 * MiB }] });
    expect(tv?.ms).toBeLessThan(5000);
    expect((targetJob as LibvirtError | null)?.kind).toBe('invalid'); // statistics only on the source

    expect(await hv.getDomain(h1.uri, vm.uuid)).toBeNull(); // --undefinesource
    const there = await hv.getDomain(h2.uri, vm.uuid);
    expect(there).toMatchObject({ state: 'running', persistent: true });
    expect(there?.disks[0]).toMatchObject({ path: vm.diskPath, capacityBytes: 64 * MiB });

    const completed = await hv.completedJobInfo(h2.uri, vm.uuid);
    console.log(`completed job on target: ${JSON.stringify(completed?.raw)}`);
    expect(completed?.type).toBe('completed');
    expect(completed?.downtimeMs).toBeGreaterThanOrEqual(0);
    expect(completed?.totalTimeMs).toBeGreaterThan(0);
    expect((completed?.dataProcessedBytes ?? 0) + (completed?.memoryProcessedBytes ?? 0)).toBeGreaterThan(0);
    // --keep-completed: readable again
    expect((await hv.completedJobInfo(h2.uri, vm.uuid))?.type).toBe('completed');

    // The source keeps its disk file and pool after a copy-storage migration: the caller removes them.
    expect(existsSync(hostPath(home, h1.name, vm.diskPath))).toBe(true);
    await hv.deleteVolume(h1.uri, vmPool(), 'disk0.qcow2');
    await hv.removeStorageDirectory(h1.uri, vmPool());
    expect(existsSync(hostPath(home, h1.name, vmDir()))).toBe(false);
    expect(existsSync(hostPath(home, h2.name, vm.diskPath))).toBe(true);
  });

  it('error kinds: stopped daemon (connection), p2p target down (connection), frozen daemon (timeout)', async () => {
    await stopHostDaemon(home, h1.name, 'SIGTERM');
    try {
      const direct = await rejection(hv.hostCapacity(h1.uri, LAB_STORAGE_ROOT));
      console.log(`stopped host: ${direct.kind}: ${direct.message}`);
      expect(direct.kind).toBe('connection');
      expect(direct.retryable).toBe(true);
      expect(direct.message).toContain(`host ${h1.uri} unreachable (connection refused)`);

      // the VM is on host 2 now; its daemon cannot reach host 1
      const p2p = await rejection(hv.migrate(h2.uri, vm.uuid, h1.uri, {}));
      console.log(`p2p to stopped target: ${p2p.kind}: ${JSON.stringify(p2p.stderr)}`);
      expect(p2p.kind).toBe('connection');
      expect(p2p.message).toContain("cannot reach the target's libvirtd (connection refused)");
      expect(await hv.getDomain(h2.uri, vm.uuid)).toMatchObject({ state: 'running' });
    } finally {
      await startHostDaemon(home, h1.name);
    }

    await stopHostDaemon(home, h1.name, 'SIGSTOP');
    try {
      const quick = new VirshHypervisor({ timeoutMs: 2000 });
      const t0 = performance.now();
      const frozen = await rejection(quick.getDomain(h1.uri, vm.uuid));
      expect(frozen.kind).toBe('timeout');
      expect(frozen.retryable).toBe(true);
      expect(performance.now() - t0).toBeLessThan(10_000);
    } finally {
      await startHostDaemon(home, h1.name);
    }
    expect((await hv.hostCapacity(h1.uri, LAB_STORAGE_ROOT)).hostname).toBe(h1.name);
  });
});
