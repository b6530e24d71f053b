/**
 * liveMigration end to end on the real lab: 2 libvirt hosts in namespaces, real QEMU (TCG) VMs with 32 MiB
 * of random data on their disks, the real Temporal dev server, VirshHypervisor. No test doubles.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostDaemon, stopHostDaemon } from '../../lab';
import type { LabVm } from '../../lab';
import { canRunLab, poolsOn, startLabHarness, storageEntries, vmDirExists, whereRuns, type LabHarness } from '../support/lab-harness';
import { eventually } from '../support/temporal';

describe.skipIf(!canRunLab)('liveMigration on the real lab', () => {
  let h: LabHarness;
  let vms: LabVm[];
  /** The lab's host names (<prefix>-h1, <prefix>-h2): FERRY_LAB_PREFIX picks the prefix. */
  let H1 = '';
  let H2 = '';

  beforeAll(async () => {
    h = await startLabHarness({ hosts: 2, vms: 4 });
    H1 = h.lab.hosts[0]!.name;
    H2 = h.lab.hosts[1]!.name;
    vms = h.lab.vms;
    expect(vms).toHaveLength(4);
  }, 300_000);

  afterAll(async () => {
    await h?.stop();
  }, 120_000);

  const source = () => h.lab.hosts[0]!;
  const inputFor = (vm: LabVm) => ({ sourceHost: source().address, vmName: vm.name, vmUuid: vm.uuid });

  async function expectOnSourceAndClean(vm: LabVm): Promise<void> {
    expect(await whereRuns(h, vm.uuid)).toEqual([H1]);
    expect(await h.inventory.getVm(vm.uuid)).toMatchObject({ host: H1, state: 'running' });
    expect(await h.inventory.getClaim(vm.uuid)).toBeNull();
    expect(vmDirExists(h.home, H2, vm.uuid)).toBe(false);
    expect(await poolsOn(h, H2)).not.toContain(`ferry-${vm.uuid}`);
  }

  it('(a) happy path: VM runs on the target, inventory and history updated, source cleaned, nothing else on the target', async () => {
    const vm = vms[0]!;
    const targetBefore = storageEntries(h.home, H2);
    const outcome = await h.ferry.migrate(inputFor(vm));
    expect(outcome.status).toBe('migrated');
    expect(outcome.target).toBe(H2);
    expect(outcome.createAttempts).toEqual({ directory: 1, pool: 1, 'disk:disk0.qcow2': 1 });

    // where libvirt says it runs
    expect(await whereRuns(h, vm.uuid)).toEqual([H2]);
    expect(await h.hv.getDomain(source().uri, vm.uuid)).toBeNull(); // undefined on the source
    expect((await h.hv.getDomain(h.lab.hosts[1]!.uri, vm.uuid))?.persistent).toBe(true);
    // the inventory
    expect(await h.inventory.getVm(vm.uuid)).toMatchObject({ host: H2, state: 'running' });
    expect(await h.inventory.getClaim(vm.uuid)).toBeNull();
    const [row] = await h.inventory.listHistory({ vm: vm.uuid });
    expect(row).toMatchObject({ result: 'migrated', source: H1, target: H2 });
    expect(row!.downtimeMs).toBeGreaterThan(0);
    expect(row!.bytesTransferred).toBeGreaterThan(0);
    // source cleaned: disk, pool and directory gone
    expect(vmDirExists(h.home, H1, vm.uuid)).toBe(false);
    expect(await poolsOn(h, H1)).not.toContain(`ferry-${vm.uuid}`);
    expect(outcome.sourceCleaned).toBe(true);
    // the target holds exactly the VM's directory (with its one disk) in addition to what it had
    expect(storageEntries(h.home, H2)).toEqual([...targetBefore, vm.uuid].sort());
    expect(storageEntries(h.home, H2).length).toBe(targetBefore.length + 1);
    expect((await h.hv.listVolumes(h.lab.hosts[1]!.uri, `ferry-${vm.uuid}`)).map((v) => v.name)).toEqual(['disk0.qcow2']);
  });

  it('(b) transient failure: target libvirtd down for a few seconds during the create tasks, then back: retried, migrated', async () => {
    const vm = vms[1]!;
    await stopHostDaemon(h.home, H2, 'SIGKILL');
    const handle = await h.ferry.startMigration({ ...inputFor(vm), createAttempts: 5, options: { createRetryInterval: '1s' } });
    await eventually(async () => (await handle.progress()).phase === 'creating-storage', 30_000);
    await new Promise((r) => setTimeout(r, 2500));
    await startHostDaemon(h.home, H2);
    const outcome = await handle.outcome();
    expect(outcome.status).toBe('migrated');
    expect(outcome.createAttempts.directory).toBeGreaterThan(1);
    expect(outcome.createAttempts.directory).toBeLessThanOrEqual(5);
    expect(await whereRuns(h, vm.uuid)).toEqual([H2]);
    expect(await h.inventory.getVm(vm.uuid)).toMatchObject({ host: H2, state: 'running' });
  });

  it('(c) persistent failure: aborted after exactly N attempts, nothing left on the target, VM running on the source', async () => {
    const vm = vms[2]!;
    await stopHostDaemon(h.home, H2, 'SIGKILL');
    const handle = await h.ferry.startMigration({ ...inputFor(vm), createAttempts: 3, options: { createRetryInterval: '500ms' } });
    // the directory task fails 3 times; compensation then retries against the dead target until it is back
    const p = await eventually(async () => {
      const pr = await handle.progress();
      return pr.phase === 'compensating' ? pr : null;
    }, 60_000);
    expect(p.createAttempts.directory).toBe(3);
    expect(p.lastError).toContain(`create task directory on ${H2} failed 3 of 3`);
    // the VM's state is restored first, before the target is even reachable
    await eventually(async () => (await h.inventory.getVm(vm.uuid))?.state === 'running', 30_000);
    expect(await h.inventory.getVm(vm.uuid)).toMatchObject({ host: H1, state: 'running' });
    expect(await h.inventory.getClaim(vm.uuid)).not.toBeNull(); // the claim stays until the target is clean
    await startHostDaemon(h.home, H2);
    const outcome = await handle.outcome();
    expect(outcome.status).toBe('aborted');
    expect(outcome.createAttempts).toEqual({ directory: 3 });
    await expectOnSourceAndClean(vm);
    const [row] = await h.inventory.listHistory({ vm: vm.uuid });
    expect(row).toMatchObject({ result: 'aborted', target: H2 });
  });

  it('(d) timeout: a bandwidth-limited migration with a short timeout is aborted, VM on the source, target disks deleted', async () => {
    const vm = vms[3]!;
    const handle = await h.ferry.startMigration({ ...inputFor(vm), bandwidthMiBps: 1, timeout: '6s' });
    const during = await eventually(async () => {
      const pr = await handle.progress();
      return pr.phase === 'migrating' && pr.migration !== null ? pr : null;
    }, 30_000);
    expect(during.target).toBe(H2);
    expect(vmDirExists(h.home, H2, vm.uuid)).toBe(true); // the pre-created volume is being filled
    const outcome = await handle.outcome();
    expect(outcome.status).toBe('timed-out');
    expect(outcome.reason).toMatch(/timeout of 6\.0 s/);
    expect((await h.hv.jobInfo(source().uri, vm.uuid)).type).toBe('none');
    await expectOnSourceAndClean(vm);
    const [row] = await h.inventory.listHistory({ vm: vm.uuid });
    expect(row).toMatchObject({ result: 'timed-out' });
  });
});
