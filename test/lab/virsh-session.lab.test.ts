/**
 * Persistent virsh sessions against real libvirt (a two-host lab, one VM): every read answers exactly as
 * one-shot virsh does; a session survives a daemon restart without failing the first call after it; a frozen
 * daemon times out and the session is replaced; and a call costs less than a one-shot process.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtError } from '../../hypervisor/errors';
import { VirshHypervisor } from '../../hypervisor/virsh';
import { LAB_ROOT_POOL, LAB_STORAGE_ROOT, labDown, labUp, startHostDaemon, stopHostDaemon, type LabStatus } from '../../lab';
import { labNaming } from '../support/lab-naming';
import { libvirtRejection } from '../support/libvirt-rejection';

const canRun = process.getuid?.() === 0 && existsSync('/usr/sbin/libvirtd') && existsSync('/usr/bin/virsh');

const rejection = libvirtRejection;

describe.skipIf(!canRun)('virsh sessions on the lab', () => {
  let home = '';
  let lab: LabStatus;
  const session = new VirshHypervisor({ sessions: true });
  const oneShot = new VirshHypervisor({ sessions: false });

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), 'ferry-session-lab-'));
    lab = await labUp({ home, hosts: 2, vms: 1, ...labNaming() });
  }, 300_000);

  afterAll(async () => {
    session.close();
    if (home) {
      await labDown(home, { prefix: labNaming().prefix });
      rmSync(home, { recursive: true, force: true });
    }
  }, 120_000);

  it('answers every read exactly as one-shot virsh', async () => {
    const [h1, h2] = lab.hosts;
    const vm = lab.vms[0]!;
    for (const h of [h1!, h2!]) {
      expect(await session.listDomains(h.uri)).toEqual(await oneShot.listDomains(h.uri));
      expect(await session.getDomain(h.uri, vm.uuid)).toEqual(await oneShot.getDomain(h.uri, vm.uuid));
      expect(await session.listPools(h.uri)).toEqual(await oneShot.listPools(h.uri));
      expect(await session.listVolumes(h.uri, LAB_ROOT_POOL)).toEqual(await oneShot.listVolumes(h.uri, LAB_ROOT_POOL));
      const a = await session.hostCapacity(h.uri, LAB_STORAGE_ROOT);
      const b = await oneShot.hostCapacity(h.uri, LAB_STORAGE_ROOT);
      expect({ ...a, freeMemoryKiB: 0, storage: { ...a.storage, availableBytes: 0 } }).toEqual({
        ...b,
        freeMemoryKiB: 0,
        storage: { ...b.storage, availableBytes: 0 },
      });
      expect(await session.jobInfo(h.uri, vm.uuid).catch((e: LibvirtError) => e.kind)).toEqual(
        await oneShot.jobInfo(h.uri, vm.uuid).catch((e: LibvirtError) => e.kind),
      );
    }
    expect(await session.listVolumes(h1!.uri, `ferry-${vm.uuid}`)).toEqual(await oneShot.listVolumes(h1!.uri, `ferry-${vm.uuid}`));
    expect(await session.poolOfVolume(h1!.uri, vm.diskPath)).toBe(await oneShot.poolOfVolume(h1!.uri, vm.diskPath));
    const a = await rejection(session.startPool(h2!.uri, 'no-such-pool'));
    const b = await rejection(oneShot.startPool(h2!.uri, 'no-such-pool'));
    expect([a.kind, a.message]).toEqual([b.kind, b.message]);
  });

  it('a call costs less than a one-shot virsh process', async () => {
    const h = lab.hosts[0]!;
    const time = async (hv: VirshHypervisor) => {
      await hv.getDomain(h.uri, lab.vms[0]!.uuid);
      const t0 = performance.now();
      for (let i = 0; i < 10; i++) await hv.getDomain(h.uri, lab.vms[0]!.uuid);
      return (performance.now() - t0) / 10;
    };
    const s = await time(session);
    const o = await time(oneShot);
    expect(s).toBeLessThan(o);
  });

  it('after a daemon restart the next call succeeds on a new connection', async () => {
    const h = lab.hosts[1]!;
    expect((await session.listPools(h.uri)).length).toBeGreaterThan(0);
    await stopHostDaemon(home, h.name, 'SIGTERM');
    expect((await rejection(session.listPools(h.uri))).kind).toBe('connection');
    await startHostDaemon(home, h.name);
    expect((await session.listPools(h.uri)).length).toBeGreaterThan(0);
    // and once more with the session idle across the restart
    await stopHostDaemon(home, h.name, 'SIGTERM');
    await startHostDaemon(home, h.name);
    expect((await session.listPools(h.uri)).length).toBeGreaterThan(0);
  }, 120_000);

  it('a frozen daemon times out, and the next call after it thaws succeeds', async () => {
    const h = lab.hosts[1]!;
    const quick = new VirshHypervisor({ sessions: true, timeoutMs: 2000 });
    try {
      expect((await quick.listPools(h.uri)).length).toBeGreaterThan(0);
      await stopHostDaemon(home, h.name, 'SIGSTOP');
      try {
        expect((await rejection(quick.listPools(h.uri))).kind).toBe('timeout');
      } finally {
        await startHostDaemon(home, h.name); // SIGCONT
      }
      expect((await quick.listPools(h.uri)).length).toBeGreaterThan(0);
    } finally {
      quick.close();
    }
  }, 120_000);
});
