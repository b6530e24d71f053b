/**
 * Issue 16 in the workflow, with the real activities over the in-memory hypervisor double: paused VMs move live
 * and stay paused, stopped VMs move cold (volumes streamed, definition moved) with the same compensation, the
 * pre-flight checks refuse a target before anything is created there (automatic placement tries the next), and
 * the dry run changes nothing. The real-lab proof is test/lab/cold-preflight.lab.test.ts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MigrationRejectedError, type FerryClient } from '../../client';
import { FailureType } from '../../common/failures';
import type { MigrationReport } from '../../common/migration';
import type { VmState } from '../../common/types';
import type { LiveMigrationInput } from '../../common/validation';
import { WORKFLOW_TYPES } from '../../workflows/definitions';
import type { Inventory } from '../../inventory';
import type { MemoryHypervisor } from '../support/memory-hypervisor';
import { memUri, startWorkflowWorld, type TestVm, type WorkflowWorld, migrationOf } from '../support/workflow-env';

const [H1, H2, H3] = [memUri('h1'), memUri('h2'), memUri('h3')];

let world: WorkflowWorld;
let inventory: Inventory;
let hv: MemoryHypervisor;
let ferry: FerryClient;

const input = migrationOf;

/** A VM on h1 in the given libvirt state, the inventory agreeing. */
async function vmIn(state: 'running' | 'paused' | 'shutoff'): Promise<TestVm> {
  const vm = await world.newVm('h1');
  const dom = hv.host(H1).domains.get(vm.uuid)!;
  hv.host(H1).domains.set(vm.uuid, { ...dom, state, stateReason: state === 'running' ? 'booted' : 'user' });
  const inv: VmState = state === 'shutoff' ? 'stopped' : state;
  await inventory.setVmPlacement(vm.uuid, 'h1', inv);
  return vm;
}

/** Where libvirt has the VM defined, with its state, host by host. */
const defined = (vm: TestVm) =>
  Object.fromEntries([H1, H2, H3].flatMap((u) => (hv.host(u).domains.has(vm.uuid) ? [[hv.host(u).hostname, hv.host(u).domains.get(vm.uuid)!.state]] : [])));

/** Files of the VM's per-VM directory on a host (its pool's volumes). */
const vmFiles = (uri: string, vm: TestVm) => [...(hv.host(uri).pools.get(vm.pool)?.volumes.keys() ?? [])];

async function expectHome(vm: TestVm, host: string, state: VmState): Promise<void> {
  expect(await inventory.getVm(vm.uuid)).toMatchObject({ host, state });
  expect(await inventory.getClaim(vm.uuid)).toBeNull();
}

beforeAll(async () => {
  world = await startWorkflowWorld({ hosts: 3, taskQueue: 'ferry-wf-cold', uuidPrefix: '00000016' });
  ({ inventory, hv, ferry } = world);
}, 120_000);

afterAll(async () => {
  await world?.stop();
}, 120_000);

beforeEach(() => hv.reset());

describe('paused and stopped VMs (workflow, hypervisor double)', () => {
  it('a paused VM migrates live and is paused on the target; the inventory says paused', async () => {
    const vm = await vmIn('paused');
    const outcome = await ferry.migrate(input(vm, { targetHost: 'h2' }));
    expect([outcome.status, outcome.mode]).toEqual(['migrated', 'live']);
    expect(defined(vm)).toEqual({ h2: 'paused' });
    await expectHome(vm, 'h2', 'paused');
    expect(hv.callsOf('migrate')).not.toHaveLength(0);
  });

  it('a stopped VM migrates cold: each disk streamed into its pre-created volume, the definition moved, the source cleaned', async () => {
    const vm = await vmIn('shutoff');
    const before = hv.callsOf('copyVolume').length;
    const outcome = await ferry.migrate(input(vm, { targetHost: 'h2' }));
    expect([outcome.status, outcome.mode, outcome.downtimeMs]).toEqual(['migrated', 'cold', null]);
    expect(outcome.bytesTransferred).toBe(64 * 2 ** 20); // the disk, no memory
    expect(hv.callsOf('copyVolume').length - before).toBe(1);
    expect(hv.callsOf('migrateOffline').at(-1)?.args).toEqual([vm.uuid, H2]);
    expect(defined(vm)).toEqual({ h2: 'shutoff' });
    expect(vmFiles(H2, vm)).toEqual(['disk0.qcow2']);
    expect(vmFiles(H1, vm)).toEqual([]);
    await expectHome(vm, 'h2', 'stopped');
  });

  it('a cold migration past its timeout stops the copy and compensates: VM defined and stopped on the source, target empty', async () => {
    const vm = await vmIn('shutoff');
    hv.copyBytesPerMs = 1; // 64 MiB would take ~18 h
    const outcome = await ferry.migrate(input(vm, { targetHost: 'h2', timeout: '2s' }));
    expect([outcome.status, outcome.mode]).toEqual(['timed-out', 'cold']);
    expect(defined(vm)).toEqual({ h1: 'shutoff' });
    expect(hv.host(H2).pools.has(vm.pool)).toBe(false);
    await expectHome(vm, 'h1', 'stopped');
  });

  it('a cold migration cancelled during the copy compensates the same way', async () => {
    const vm = await vmIn('shutoff');
    hv.copyBytesPerMs = 1;
    const handle = await ferry.startMigration(input(vm, { targetHost: 'h2' }));
    for (let i = 0; i < 100 && ((await handle.progress()).migration?.disk?.processedBytes ?? 0) === 0; i++) await new Promise((r) => setTimeout(r, 100));
    const copying = (await handle.progress()).migration;
    expect(copying?.jobType).toBe('cold-copy');
    expect(copying?.disks?.map((d) => [d.target, d.totalBytes])).toEqual([['vda', 64 * 2 ** 20]]); // the disk's own progress
    expect(copying?.disk?.processedBytes).toBeGreaterThan(0);
    await expect(handle.tune({ bandwidthMiBps: 100 })).rejects.toThrow(/cold migration streams its volumes at the bandwidth it started with/);
    await handle.cancel();
    const outcome = await handle.outcome();
    expect(outcome.status).toBe('cancelled');
    expect(defined(vm)).toEqual({ h1: 'shutoff' });
    expect(hv.host(H2).pools.has(vm.pool)).toBe(false);
    await expectHome(vm, 'h1', 'stopped');
  });

  it('a cold migration whose disk create task fails every attempt aborts; the VM stays stopped on its source', async () => {
    const vm = await vmIn('shutoff');
    hv.fail('recreateVolume', Infinity, { uri: H2, match: vm.pool });
    const outcome = await ferry.migrate(input(vm, { targetHost: 'h2', createAttempts: 2 }));
    expect([outcome.status, outcome.createAttempts['disk:disk0.qcow2']]).toEqual(['aborted', 2]);
    expect(hv.callsOf('copyVolume').filter((c) => JSON.stringify(c.args).includes(vm.uuid))).toEqual([]);
    expect(defined(vm)).toEqual({ h1: 'shutoff' });
    await expectHome(vm, 'h1', 'stopped');
  });
});

describe('pre-flight checks and alternates (workflow, hypervisor double)', () => {
  const withBridge = async () => {
    const vm = await world.newVm('h1');
    hv.needs.set(vm.uuid, { nics: [{ type: 'bridge', source: 'br-lan', mac: '52:54:00:00:00:01' }] });
    hv.host(H1).interfaces.add('br-lan');
    return vm;
  };

  it('a bridge only some hosts have: automatic placement skips the host without it (reason in the result) and lands on one with it', async () => {
    const vm = await withBridge();
    // the host placement prefers now lacks the bridge; the other one has it
    const preferred = (await ferry.planMigration(input(vm))).candidates[0]!.host;
    const other = preferred === 'h2' ? 'h3' : 'h2';
    hv.host(memUri(other)).interfaces.add('br-lan');
    const outcome = await ferry.migrate(input(vm));
    expect([outcome.status, outcome.target]).toEqual(['migrated', other]);
    expect(outcome.rejectedTargets).toEqual([{ host: preferred, check: 'bridges', reason: expect.stringMatching(new RegExp(`${preferred} has no bridge br-lan`)) }]);
    expect((await (await ferry.getMigration(vm.uuid)).progress()).rejectedTargets).toEqual(outcome.rejectedTargets); // the progress query too
  });

  it('--target to a host without the bridge is refused naming the bridge, with nothing created there', async () => {
    const vm = await withBridge();
    const creates = hv.callsOf('createStorageDirectory').length + hv.callsOf('recreateVolume').length;
    const err = await ferry.migrate(input(vm, { targetHost: 'h2' })).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MigrationRejectedError);
    expect((err as MigrationRejectedError).type).toBe(FailureType.PreflightFailed);
    expect((err as Error).message).toMatch(/h2 has no bridge br-lan, which vm\d+'s NIC uses: create br-lan on h2/);
    expect(hv.callsOf('createStorageDirectory').length + hv.callsOf('recreateVolume').length).toBe(creates);
    await expectHome(vm, 'h1', 'running');
  });

  it("a CPU the target cannot run and a machine type it lacks are refused with libvirt's reason", async () => {
    const vm = await world.newVm('h1');
    hv.host(H2).cpuRefusal = 'the CPU is incompatible with host CPU: Host CPU does not provide required features: avx512f';
    const cpu = (await ferry.migrate(input(vm, { targetHost: 'h2' })).catch((e: unknown) => e)) as Error;
    expect(cpu.message).toMatch(/h2 cannot run vm\d+'s CPU \(.*required features: avx512f\)/);
    hv.host(H2).cpuRefusal = null;
    hv.needs.set(vm.uuid, { machine: 'pc-q35-99.0' });
    hv.host(H2).machines = new Set(['pc-i440fx-7.2']);
    const machine = (await ferry.migrate(input(vm, { targetHost: 'h2' })).catch((e: unknown) => e)) as Error;
    expect(machine.message).toMatch(/h2 does not support machine type pc-q35-99.0/);
    hv.host(H2).machines = null;
    await expectHome(vm, 'h1', 'running');
  });

  it('host devices passed through: refused at once (no target can pass), not after three targets', async () => {
    const vm = await world.newVm('h1');
    hv.needs.set(vm.uuid, { hostDevices: ['pci 0000:03:00.0'] });
    const err = (await ferry.migrate(input(vm)).catch((e: unknown) => e)) as MigrationRejectedError;
    expect(err.type).toBe(FailureType.PreflightFailed);
    expect(err.message).toMatch(/host devices passed through \(pci 0000:03:00.0\)/);
    expect((err.message.match(/h\d: /g) ?? []).length).toBe(1);
  });

  it('a cdrom image missing on the target: refused there; found on another host: lands there', async () => {
    const vm = await world.newVm('h1');
    const iso = '/var/lib/libvirt/images/tools.iso';
    hv.needs.set(vm.uuid, { readOnlyFiles: [{ target: 'sda', path: iso, device: 'cdrom' }] });
    for (const u of [H1, H3]) {
      hv.addPool(u, 'default', '/var/lib/libvirt/images');
      await hv.recreateVolume(u, 'default', 'tools.iso', 4096, 'raw');
    }
    hv.addPool(H2, 'default', '/var/lib/libvirt/images');
    const refused = (await ferry.migrate(input(vm, { targetHost: 'h2' })).catch((e: unknown) => e)) as Error;
    expect(refused.message).toMatch(/h2 lacks a file vm\d+ reads but a migration does not copy \(cdrom sda \/var\/lib\/libvirt\/images\/tools.iso\).*virsh change-media vm\d+ sda --eject/);
    const outcome = await ferry.migrate(input(vm));
    expect([outcome.status, outcome.target]).toEqual(['migrated', 'h3']);
  });
});

describe('dry run and evacuations (workflow, hypervisor double)', () => {
  it('the dry run names the target, the disks, what would be created and the estimate; it changes nothing', async () => {
    const vm = await world.newVm('h1');
    const claimsBefore = await inventory.listClaims();
    const mutating = () => (['createStorageDirectory', 'definePool', 'startPool', 'migrate', 'migrateOffline', 'copyVolume'] as const).map((m) => hv.callsOf(m).length);
    const before = mutating();
    const plan = await ferry.planMigration(input(vm, { bandwidthMiBps: 64 }));
    expect(plan.wouldMigrate).toBe(true);
    expect(plan.mode).toBe('live');
    expect(plan.target).toMatch(/^h[23]$/);
    expect(plan.candidates[0]?.checks.map((c) => [c.check, c.ok])).toEqual([
      ['host-devices', true],
      ['bridges', true],
      ['networks', true],
      ['cpu', true],
      ['machine-type', true],
      ['files', true],
      ['transport', true],
    ]);
    expect(plan.disks).toEqual([{ target: 'vda', path: `${vm.dir}/disk0.qcow2`, layout: 'copied', sizeBytes: 64 * 2 ** 20 }]);
    expect(plan.creates).toEqual([`directory ${vm.dir}`, `pool ${vm.pool} on ${vm.dir}`, expect.stringMatching(/^volume .*disk0.qcow2 \(qcow2, 67108864 bytes\)$/)]);
    expect(plan.estimate).toMatchObject({ copyBytes: (64 + 128) * 2 ** 20, bandwidthMiBps: 64, bandwidthFrom: 'request', copySeconds: 3, dirtyRateMiBps: 0, likelyToConverge: true });
    // nothing changed: no claim, the VM still running on h1, nothing created anywhere (the probe is created and removed)
    expect(await inventory.listClaims()).toEqual(claimsBefore);
    await expectHome(vm, 'h1', 'running');
    expect(mutating()).toEqual(before);
    expect(hv.host(H2).pools.has(vm.pool) || hv.host(H3).pools.has(vm.pool)).toBe(false);
  });

  it('the dry run of a VM no target can take says why (wouldMigrate false)', async () => {
    const vm = await world.newVm('h1');
    hv.needs.set(vm.uuid, { nics: [{ type: 'bridge', source: 'br-none', mac: null }] });
    const plan = await ferry.planMigration(input(vm, { targetHost: 'h2' }));
    expect(plan.wouldMigrate).toBe(false);
    expect(plan.reason).toMatch(/h2 has no bridge br-none/);
    expect(plan.candidates.map((c) => c.host)).toEqual(['h2']);
  });

  it('an evacuation moves the running VM live and the stopped one cold, and empties the host; skipStopped leaves the stopped one', async () => {
    const host = 'h3';
    const running = await world.newVm(host);
    const stopped = await world.newVm(host);
    const dom = hv.host(H3).domains.get(stopped.uuid)!;
    hv.host(H3).domains.set(stopped.uuid, { ...dom, state: 'shutoff', stateReason: 'user' });
    await inventory.setVmPlacement(stopped.uuid, host, 'stopped');
    const result = (await world.env.client.workflow.execute(WORKFLOW_TYPES.evacuateHost, {
      taskQueue: world.taskQueue,
      workflowId: `evac-${host}-${Date.now()}`,
      args: [{ host, migration: { options: { createRetryInterval: '100ms' } } }],
    })) as { vms: { vm: string; status: string; reason: string | null }[] };
    const status = Object.fromEntries(result.vms.filter((v) => [running.name, stopped.name].includes(v.vm)).map((v) => [v.vm, v.status]));
    expect(status).toEqual({ [running.name]: 'migrated', [stopped.name]: 'migrated' });
    expect(await inventory.listVms({ host })).toEqual([]);
    expect((await inventory.getVm(stopped.uuid))?.state).toBe('stopped');
    await inventory.setHostState(host, 'normal');

    // skipStopped: the stopped VM (now elsewhere) stays where it is
    const at = (await inventory.getVm(stopped.uuid))!.host;
    const skip = (await world.env.client.workflow.execute(WORKFLOW_TYPES.evacuateHost, {
      taskQueue: world.taskQueue,
      workflowId: `evac-skip-${Date.now()}`,
      args: [{ host: at, skipStopped: true, migration: { options: { createRetryInterval: '100ms' } } }],
    })) as { vms: { vm: string; status: string; reason: string | null }[]; report?: MigrationReport };
    expect(skip.vms.find((v) => v.vm === stopped.name)).toMatchObject({ status: 'skipped', reason: expect.stringMatching(/skipStopped/) });
    expect((await inventory.getVm(stopped.uuid))?.host).toBe(at);
    await inventory.setHostState(at, 'normal');
  });
});
