/**
 * Issue 16 on the real lab (3 hosts), on VMs defined with plain virsh (test/support/plain-vms.ts: virt-install's
 * flat `default` pool, qcow2 and raw disks, a cdrom, a NIC on a bridge):
 *   - a paused VM migrates live and is paused on the target; a stopped VM migrates cold (volumes streamed, the
 *     definition moved); each disk's guest-visible content is the same on the target; the source holds nothing;
 *   - the cold failure paths (create-task threshold, timeout, cancel, worker killed during the volume copy) end
 *     consistent: the VM defined and stopped on exactly one host, the inventory agreeing, nothing leaked;
 *   - an evacuation of a host with a running and a stopped VM empties it;
 *   - pre-flight checks: a bridge only some hosts have, a CPU no host can run, a cdrom image missing on a host —
 *     `--target` refused before anything is created there, automatic placement lands on a host that passes;
 *   - `ferry migrate --dry-run` prints the plan and changes nothing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MigrationRejectedError, type MigrationOutcome } from '../../client';
import { startEvacuation, type EvacuationResult } from '../../client/fleet';
import { FailureType } from '../../common/failures';
import type { VmState } from '../../common/types';
import type { LiveMigrationInput } from '../../common/validation';
import { canRunLab, waitForCopied, inventorySnapshot, runFerryCli, sleep, startFaultLab, storageSnapshot, type FaultLab } from '../support/fault-harness';
import {
  DEFAULT_POOL_DIR as IMAGES,
  definePlainVm,
  diskDigest,
  ensureDefaultPool,
  ensureGuestBridge,
  existsInside,
  inHost,
  listInside,
  mountFullFilesystem,
  readInside,
  removePlainVm,
  syncPlainVms,
  virsh,
  whereIs,
  writeInside,
  type PlainVm,
} from '../support/plain-vms';

describe.skipIf(!canRunLab)('cold migration, paused VMs, pre-flight checks and the dry run (issue 16, real lab)', () => {
  let f: FaultLab;
  let H1 = '';
  let H2 = '';
  let H3 = '';
  const uri = (h: string) => f.host(h).uri;

  beforeAll(async () => {
    f = await startFaultLab({ hosts: 3, vms: 0, taskQueue: 'ferry-cold-preflight' });
    [H1, H2, H3] = f.lab.hosts.map((h) => h.name) as [string, string, string];
    for (const h of [H1, H2, H3]) await ensureDefaultPool(uri(h));
  }, 300_000);

  afterAll(async () => {
    await f?.stop();
  }, 120_000);

  const made: PlainVm[] = [];
  const def = async (...a: Parameters<typeof definePlainVm>): Promise<PlainVm> => {
    const vm = await definePlainVm(...a);
    made.push(vm);
    await syncPlainVms(f.inventory, f);
    return vm;
  };

  afterEach(async () => {
    for (const vm of made.splice(0)) await removePlainVm(f, vm, { removeDisks: true });
    await syncPlainVms(f.inventory, f);
  }, 120_000);

  function input(vm: PlainVm, extra: Partial<LiveMigrationInput> = {}): LiveMigrationInput {
    return { sourceHost: f.host(vm.host).address, vmName: vm.name, vmUuid: vm.uuid, options: { createRetryInterval: '200ms' }, ...extra };
  }

  async function refusal(p: Promise<MigrationOutcome>): Promise<MigrationRejectedError> {
    const err = await p.then(
      (o) => new Error(`expected a refusal, got ${o.status}`),
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MigrationRejectedError);
    return err as MigrationRejectedError;
  }

  /**
   * The VM is defined on `at` only, in libvirt state `state`, the inventory agrees (no claim), each disk is on `at`
   * with the content it was created with, and no other host has any of its disk files.
   */
  async function expectOnlyOn(vm: PlainVm, at: string, state: 'running' | 'paused' | 'shut off', label: string): Promise<void> {
    const problems: string[] = [];
    const where = await whereIs(f, vm.uuid);
    if (JSON.stringify(where) !== JSON.stringify({ [at]: state })) problems.push(`libvirt: ${JSON.stringify(where)}, expected ${state} on ${at} only`);
    const invState: VmState = state === 'shut off' ? 'stopped' : state;
    const rec = await f.inventory.getVm(vm.uuid);
    if (rec?.host !== at || rec.state !== invState) problems.push(`inventory: ${rec?.host}/${rec?.state}, expected ${at}/${invState}`);
    if (await f.inventory.getClaim(vm.uuid)) problems.push('a claim is left');
    for (const d of vm.disks) {
      if (!(await existsInside(f.home, at, d.path))) problems.push(`${d.path} missing on ${at}`);
      else if (d.expectedDigest !== null && (await diskDigest(f.home, at, d.path)) !== d.expectedDigest) problems.push(`${d.path} on ${at}: content changed`);
      for (const h of [H1, H2, H3].filter((x) => x !== at)) if (await existsInside(f.home, h, d.path)) problems.push(`leak: ${d.path} on ${h}`);
    }
    console.log(`COLD-RESULT ${JSON.stringify({ label, vm: vm.name, at, problems })}`);
    expect(problems).toEqual([]);
  }

  const twoDisks = (name: string) => [
    { path: `${IMAGES}/${name}-os.qcow2`, sizeMiB: 64, dataMiB: 8 },
    { path: `${IMAGES}/${name}-data.raw`, format: 'raw' as const, sizeMiB: 16, dataMiB: 4 },
  ];

  // ---- paused and stopped ---------------------------------------------------------------------------------

  it('a paused VM migrates live and is paused on the target, its disks intact; the source holds nothing of it', async () => {
    const vm = await def(f, H1, { name: 'pause1', disks: twoDisks('pause1'), state: 'paused' });
    const out = await f.ferry.migrate(input(vm, { targetHost: H2 }));
    expect([out.status, out.mode, out.target]).toEqual(['migrated', 'live', H2]);
    await expectOnlyOn(vm, H2, 'paused', 'paused');
  });

  it('a stopped VM migrates cold: its disks streamed and intact on the target, the definition moved, the source holds nothing', async () => {
    const vm = await def(f, H1, { name: 'cold1', disks: twoDisks('cold1'), state: 'shutoff' });
    const out = await f.ferry.migrate(input(vm, { targetHost: H2 }));
    console.log(`COLD-OUTCOME ${JSON.stringify({ status: out.status, mode: out.mode, migrationMs: out.migrationMs, bytes: out.bytesTransferred })}`);
    expect([out.status, out.mode, out.downtimeMs]).toEqual(['migrated', 'cold', null]);
    expect(out.bytesTransferred).toBeGreaterThan(12 * 2 ** 20); // the qcow2's data + the whole raw disk
    await expectOnlyOn(vm, H2, 'shut off', 'cold');
    // the moved definition boots on its new host, from the copied disks
    await virsh(uri(H2), ['start', vm.uuid], 90_000);
    expect(await whereIs(f, vm.uuid)).toEqual({ [H2]: 'running' });
    await virsh(uri(H2), ['destroy', vm.uuid]);
  });

  describe('cold failure paths end consistent, nothing leaked', () => {
    it('create-task threshold: the target directory is full, the disk task fails 2 of 2 attempts, the VM stays stopped on its source', async () => {
      const vm = await def(f, H1, { name: 'coldfull', disks: [{ path: `${IMAGES}/coldfull.qcow2`, sizeMiB: 64, dataMiB: 8 }], state: 'shutoff' });
      const full = await mountFullFilesystem(f, H2, IMAGES);
      let out: MigrationOutcome;
      try {
        out = await f.ferry.migrate(input(vm, { targetHost: H2, createAttempts: 2 }));
      } finally {
        await full.undo();
      }
      expect([out.status, out.mode]).toEqual(['aborted', 'cold']);
      expect(Object.values(out.createAttempts)).toContain(2);
      await expectOnlyOn(vm, H1, 'shut off', 'cold-threshold');
    });

    it('timeout: a copy at 1 MiB/s past its 3 s deadline is stopped and compensated', async () => {
      const vm = await def(f, H1, { name: 'coldslow', disks: [{ path: `${IMAGES}/coldslow.qcow2`, sizeMiB: 64, dataMiB: 24 }], state: 'shutoff' });
      const out = await f.ferry.migrate(input(vm, { targetHost: H2, bandwidthMiBps: 1, timeout: '3s' }));
      expect([out.status, out.mode]).toEqual(['timed-out', 'cold']);
      await expectOnlyOn(vm, H1, 'shut off', 'cold-timeout');
    });

    it('cancel during the copy: compensated, and `tune` refuses to change a cold copy with a clear message', async () => {
      const vm = await def(f, H1, { name: 'coldcxl', disks: [{ path: `${IMAGES}/coldcxl.qcow2`, sizeMiB: 64, dataMiB: 24 }], state: 'shutoff' });
      const handle = await f.ferry.startMigration(input(vm, { targetHost: H2, bandwidthMiBps: 1 }));
      let copied = 0;
      for (let i = 0; i < 100 && copied === 0; i++) {
        await sleep(200);
        copied = (await handle.progress()).migration?.dataProcessedBytes ?? 0;
      }
      expect(copied).toBeGreaterThan(0);
      const disks = (await handle.progress()).migration?.disks ?? [];
      expect(disks.map((d) => d.target)).toEqual(['vda']); // the disk's own copy, with its rate once measured
      await expect(handle.tune({ bandwidthMiBps: 100 })).rejects.toThrow(/cold migration streams its volumes at the bandwidth it started with/);
      await handle.cancel();
      expect((await handle.outcome()).status).toBe('cancelled');
      await expectOnlyOn(vm, H1, 'shut off', 'cold-cancel');
    });

    it('the worker killed during the volume copy: the copy starts again from the first byte on the next attempt and the VM lands intact', async () => {
      const vm = await def(f, H1, { name: 'coldkill', disks: [{ path: `${IMAGES}/coldkill.qcow2`, sizeMiB: 64, dataMiB: 16 }], state: 'shutoff' });
      const handle = await f.ferry.startMigration(input(vm, { targetHost: H2, bandwidthMiBps: 4 }));
      expect(await waitForCopied(handle, 2 * 2 ** 20)).toBeGreaterThan(0);
      await f.worker.kill();
      await f.worker.start();
      const out = await handle.outcome();
      expect([out.status, out.mode]).toEqual(['migrated', 'cold']);
      await expectOnlyOn(vm, H2, 'shut off', 'cold-worker-killed');
    }, 180_000);
  });

  it('an evacuation of a host with one running and one stopped VM empties the host', async () => {
    const running = await def(f, H3, { name: 'evrun', disks: [{ path: `${IMAGES}/evrun.qcow2`, sizeMiB: 64, dataMiB: 4 }] });
    const stopped = await def(f, H3, { name: 'evstop', disks: [{ path: `${IMAGES}/evstop.qcow2`, sizeMiB: 64, dataMiB: 4 }], state: 'shutoff' });
    const handle = await startEvacuation(f.client, f.taskQueue, { host: H3, migration: { options: { createRetryInterval: '200ms' } } });
    const result = (await handle.result()) as EvacuationResult;
    expect(Object.fromEntries(result.vms.map((v) => [v.vm, v.status]))).toEqual({ evrun: 'migrated', evstop: 'migrated' });
    expect(await f.inventory.listVms({ host: H3 })).toEqual([]);
    expect(await whereIs(f, running.uuid)).not.toHaveProperty(H3);
    const at = Object.keys(await whereIs(f, stopped.uuid))[0]!;
    await expectOnlyOn(stopped, at, 'shut off', 'evacuated-stopped');
    await f.inventory.setHostState(H3, 'normal');
  }, 180_000);

  // ---- pre-flight checks -----------------------------------------------------------------------------------

  describe('pre-flight checks refuse a target before anything is created on it', () => {
    /** What Ferry could have created on a host for this VM: its disk files, a pool named for it. */
    async function createdFor(vm: PlainVm, host: string): Promise<string[]> {
      const files = (await listInside(f.home, host, IMAGES)).filter((n) => vm.disks.some((d) => d.path.endsWith(`/${n}`)));
      const pools = (await f.hv.listPools(uri(host))).map((p) => p.name).filter((n) => n.includes(vm.uuid));
      return [...files, ...pools];
    }

    it('a bridge only some hosts have: --target without it is refused naming the bridge; placement lands on a host with it', async () => {
      const vm = await def(f, H1, { name: 'bridged', disks: [{ path: `${IMAGES}/bridged.qcow2`, sizeMiB: 64, dataMiB: 4 }], bridge: 'br-lan' });
      // which host placement prefers now: that one lacks the bridge, the other gets it
      const preferred = (await f.ferry.planMigration(input(vm))).candidates[0]!.host;
      const other = preferred === H2 ? H3 : H2;
      await ensureGuestBridge(f, other, 'br-lan');
      const err = await refusal(f.ferry.migrate(input(vm, { targetHost: preferred })));
      expect(err.type).toBe(FailureType.PreflightFailed);
      expect(err.message).toContain(`${preferred} has no bridge br-lan`);
      expect(await createdFor(vm, preferred)).toEqual([]);
      const out = await f.ferry.migrate(input(vm));
      expect([out.status, out.target]).toEqual(['migrated', other]);
      expect(out.rejectedTargets).toEqual([{ host: preferred, check: 'bridges', reason: expect.stringContaining('br-lan') }]);
      await expectOnlyOn(vm, other, 'running', 'bridge');
    });

    it('a CPU the target cannot run (a stopped VM requiring avx512f under TCG): --target refused naming the feature, nothing created', async () => {
      const vm = await def(f, H1, { name: 'bigcpu', disks: [{ path: `${IMAGES}/bigcpu.qcow2`, sizeMiB: 64, dataMiB: 1 }], state: 'shutoff', cpuFeatures: ['avx512f'] });
      const err = await refusal(f.ferry.migrate(input(vm, { targetHost: H2 })));
      expect(err.type).toBe(FailureType.PreflightFailed);
      expect(err.message).toMatch(new RegExp(`${H2} cannot run bigcpu's CPU \\(.*avx512f`));
      expect(await createdFor(vm, H2)).toEqual([]);
      await expectOnlyOn(vm, H1, 'shut off', 'cpu');
    });

    it('a cdrom image missing on the target: --target refused naming it; placement lands on the host that has it', async () => {
      const iso = `${IMAGES}/tools-${Date.now()}.iso`;
      const vm = await def(f, H1, { name: 'withiso', disks: [{ path: `${IMAGES}/withiso.qcow2`, sizeMiB: 64, dataMiB: 4 }], cdrom: { path: iso } });
      const has = (await f.ferry.planMigration(input(vm))).candidates[0]!.host === H2 ? H3 : H2;
      const lacks = has === H2 ? H3 : H2;
      await writeInside(f.home, has, iso, await readInside(f.home, H1, iso));
      await f.hv.startPool(uri(has), 'default'); // refreshes it: libvirt lists the image
      try {
        const err = await refusal(f.ferry.migrate(input(vm, { targetHost: lacks })));
        expect(err.type).toBe(FailureType.PreflightFailed);
        expect(err.message).toContain(`${lacks} lacks a file withiso reads but a migration does not copy (cdrom hdc ${iso})`);
        expect(await createdFor(vm, lacks)).toEqual([]);
        const out = await f.ferry.migrate(input(vm));
        expect([out.status, out.target]).toEqual(['migrated', has]);
        await expectOnlyOn(vm, has, 'running', 'cdrom');
      } finally {
        for (const h of [H1, H2, H3]) await inHost(f.home, h, 'rm', ['-f', '--', iso]);
      }
    });
  });

  it('`ferry migrate --dry-run` prints the plan (target, disks, what it would create, checks, estimate) and changes nothing', async () => {
    const vm = await def(f, H1, { name: 'dry1', disks: twoDisks('dry1') });
    const before = { inventory: await inventorySnapshot(f.inventory), storage: await storageSnapshot(f), where: await whereIs(f, vm.uuid) };
    const cli = await runFerryCli(f, 'migrate', '--vm', vm.name, '--dry-run', '--bandwidth', '50');
    console.log(`DRY-RUN\n${cli.stdout}`);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(new RegExp(`dry run: dry1 \\(running\\) would migrate live ${H1} → (${H2}|${H3}); nothing was changed`));
    for (const check of ['host-devices', 'bridges', 'networks', 'cpu', 'machine-type', 'files']) expect(cli.stdout).toMatch(new RegExp(`ok {3}${check}: `));
    expect(cli.stdout).toContain(`disk vda ${IMAGES}/dry1-os.qcow2 (64 MiB): copied`);
    expect(cli.stdout).toMatch(/volume \/var\/lib\/libvirt\/images\/dry1-data.raw \(raw, 16777216 bytes\)/);
    expect(cli.stdout).toMatch(/estimate: 208 MiB to copy at 50 MiB\/s \(--bandwidth\): 4.2 s/);
    expect(cli.stdout).toMatch(/convergence: the guest dirties \d+ MiB\/s, below 50 MiB\/s/);
    const after = { inventory: await inventorySnapshot(f.inventory), storage: await storageSnapshot(f), where: await whereIs(f, vm.uuid) };
    expect(after).toEqual(before);

    const refused = await runFerryCli(f, 'migrate', '--vm', vm.name, '--dry-run', '--target', H1);
    expect(refused.code).toBe(2);
  });
});
