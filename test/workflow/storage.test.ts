/**
 * Storage ownership by provenance and shared-storage detection (issue 15), in the workflow with the real
 * activities over the in-memory hypervisor double (shared directories modelled as one set of files seen by
 * several hosts). The real-lab proof of the same rules is test/lab/storage-safety.lab.test.ts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MigrationRejectedError, type FerryClient } from '../../client';
import type { LiveMigrationInput } from '../../common/validation';
import type { Inventory } from '../../inventory';
import type { MemoryHypervisor } from '../support/memory-hypervisor';
import { memUri, ROOT, startWorkflowWorld, type TestDisk, type TestVm, type WorkflowWorld, migrationOf } from '../support/workflow-env';

const [H1, H2, H3] = [memUri('h1'), memUri('h2'), memUri('h3')];
const IMAGES = '/var/lib/libvirt/images';
const SHARED = `${IMAGES}/shared`;
const MiB = 2 ** 20;

let world: WorkflowWorld;
let inventory: Inventory;
let hv: MemoryHypervisor;
let ferry: FerryClient;

const input = migrationOf;

const files = (uri: string, dir: string) => [...hv.files(hv.host(uri), dir).keys()].filter((f) => !f.startsWith('ferry-probe-')).sort();
const probesLeft = () => [H1, H2, H3].flatMap((u) => [...hv.host(u).pools.keys()].filter((p) => p.startsWith('ferry-probe-')));
const lastMigrate = () => hv.callsOf('migrate').at(-1)?.args[2] as { copyDisks?: string[] } | undefined;

async function expectOnSource(vm: TestVm): Promise<void> {
  expect(hv.host(H1).domains.get(vm.uuid)?.state).toBe('running');
  expect(await inventory.getVm(vm.uuid)).toMatchObject({ host: 'h1', state: 'running' });
  expect(await inventory.getClaim(vm.uuid)).toBeNull();
}

beforeAll(async () => {
  world = await startWorkflowWorld({ hosts: 3, taskQueue: 'ferry-wf-storage', uuidPrefix: '00000015' });
  ({ inventory, hv, ferry } = world);
  hv.shareDirectory(SHARED, [H1, H2, H3]);
  for (const uri of [H1, H2, H3]) hv.addPool(uri, 'default', IMAGES); // as virt-install leaves every host
  hv.addPool(H1, 'shared', SHARED); // the source's operator defined a pool on the share; the targets did not
}, 120_000);

afterAll(async () => {
  await world?.stop();
}, 120_000);

beforeEach(() => hv.reset());

const sharedDisk = (name: string): TestDisk => ({ name, target: 'vda', dir: SHARED, pool: 'shared' });

describe('storage plans: shared storage, flat pools, provenance (workflow, hypervisor double)', () => {
  it('shared storage: detected by the probe, nothing created or copied, the disk never deleted', async () => {
    const vm = await world.newVm('h1', { disks: [sharedDisk('s1.qcow2')] });
    const outcome = await ferry.migrate(input(vm, { targetHost: 'h2' }));
    expect(outcome.status).toBe('migrated');
    expect(outcome.disks).toEqual([{ target: 'vda', path: `${SHARED}/s1.qcow2`, layout: 'shared' }]);
    expect(outcome.createAttempts).toEqual({});
    expect(lastMigrate()?.copyDisks).toEqual([]);
    expect(outcome.bytesTransferred).toBe(192 * MiB); // memory only
    expect(files(H2, SHARED)).toContain('s1.qcow2');
    expect(hv.host(H2).domains.get(vm.uuid)?.state).toBe('running');
    expect(probesLeft()).toEqual([]);
    expect(hv.host(H1).pools.get('shared')).toBeDefined(); // source cleanup left the share's pool alone
  });

  it('shared storage, timed out: the job is aborted and the shared disk stays where it is', async () => {
    const vm = await world.newVm('h1', { disks: [sharedDisk('s2.qcow2')] });
    hv.migrationMs = 10_000;
    const outcome = await ferry.migrate(input(vm, { targetHost: 'h2', timeout: '1s' }));
    expect(outcome.status).toBe('timed-out');
    expect(files(H1, SHARED)).toContain('s2.qcow2');
    expect(hv.callsOf('deleteVolume').filter((c) => c.args[1] === 's2.qcow2')).toEqual([]);
    await expectOnSource(vm);
  });

  it('a mixed VM: only the local disk gets a create task and is copied; the shared one stays, the local one leaves the source', async () => {
    const vm = await world.newVm('h1', { disks: [sharedDisk('m1.qcow2')] });
    // add a local second disk in its per-VM directory
    const local = `${ROOT}/${vm.uuid}`;
    hv.addVm(H1, { uuid: vm.uuid, name: vm.name, memoryMiB: 128, vcpus: 1, dir: local, pool: vm.pool, disks: [
      { name: 'm1.qcow2', target: 'vda', sizeBytes: 64 * MiB, format: 'qcow2', dir: SHARED, pool: 'shared' },
      { name: 'm2.qcow2', target: 'vdb', sizeBytes: 32 * MiB, format: 'qcow2' },
    ] });
    const rec = (await inventory.getVm(vm.uuid))!;
    await inventory.upsertVm({ ...rec, disks: [...rec.disks, { name: 'm2.qcow2', target: 'vdb', path: `${local}/m2.qcow2`, format: 'qcow2', sizeBytes: 32 * MiB }] });

    const outcome = await ferry.migrate(input(vm, { targetHost: 'h2' }));
    expect(outcome.status).toBe('migrated');
    expect(outcome.disks?.map((d) => [d.target, d.layout])).toEqual([['vda', 'shared'], ['vdb', 'copied']]);
    expect(outcome.createAttempts).toEqual({ directory: 1, pool: 1, 'disk:m2.qcow2': 1 });
    expect(lastMigrate()?.copyDisks).toEqual(['vdb']);
    expect(outcome.bytesTransferred).toBe(192 * MiB + 32 * MiB);
    expect(files(H1, SHARED)).toContain('m1.qcow2'); // the shared disk: not removed by source cleanup
    expect(files(H1, local)).toEqual([]); // the local one: removed from the source with its per-VM pool
    expect(hv.host(H1).pools.has(vm.pool)).toBe(false);
    expect(files(H2, local)).toEqual(['m2.qcow2']);
  });

  it("a VM in libvirt's flat default pool: the target's default pool is used, never removed; other VMs' disks stay", async () => {
    const other = await world.newVm('h1', { disks: [{ name: 'other.qcow2', target: 'vda', dir: IMAGES, pool: 'default' }] });
    const vm = await world.newVm('h1', { disks: [{ name: 'flat.qcow2', target: 'vda', dir: IMAGES, pool: 'default' }] });
    const outcome = await ferry.migrate(input(vm, { targetHost: 'h2' }));
    expect(outcome.status).toBe('migrated');
    expect(outcome.disks).toEqual([{ target: 'vda', path: `${IMAGES}/flat.qcow2`, layout: 'copied' }]);
    expect(files(H2, IMAGES)).toContain('flat.qcow2');
    expect(files(H1, IMAGES)).toContain('other.qcow2');
    expect(files(H1, IMAGES)).not.toContain('flat.qcow2');
    expect(hv.host(H1).pools.get('default')?.active).toBe(true);
    expect(hv.host(H2).pools.get('default')?.active).toBe(true);
    expect(hv.host(H2).pools.has(`ferry-${vm.uuid}`)).toBe(false);
    expect(hv.host(H1).domains.get(other.uuid)?.state).toBe('running');
  });

  it('flat default pool, create task threshold reached: compensation deletes only its own volume, the default pool stays', async () => {
    const vm = await world.newVm('h1', { disks: [{ name: 'flat2.qcow2', target: 'vda', dir: IMAGES, pool: 'default' }] });
    hv.fail('recreateVolume', Infinity, { uri: H2, match: 'flat2.qcow2' });
    const before = files(H2, IMAGES);
    const outcome = await ferry.migrate(input(vm, { targetHost: 'h2', createAttempts: 2 }));
    expect(outcome.status).toBe('aborted');
    expect(outcome.createAttempts).toEqual({ directory: 1, pool: 1, 'disk:flat2.qcow2': 2 });
    expect(files(H2, IMAGES)).toEqual(before);
    expect(hv.host(H2).pools.get('default')?.active).toBe(true);
    expect(hv.callsOf('stopPool', H2).filter((c) => c.args[0] === 'default')).toEqual([]);
    await expectOnSource(vm);
  });

  // h3 holds no VM yet: placement prefers it, so the automatic run claims it first and is refused by its storage
  it('a same-name volume on the target that Ferry did not create: never touched; --target refused before anything is created, automatic placement goes elsewhere', async () => {
    const vm = await world.newVm('h1', { disks: [{ name: 'web3.qcow2', target: 'vda', dir: IMAGES, pool: 'default' }] });
    hv.files(hv.host(H3), IMAGES).set('web3.qcow2', { name: 'web3.qcow2', capacityBytes: 7 * MiB, format: 'raw' });
    const creates = () => hv.calls.filter((c) => c.uri === H3 && ['createStorageDirectory', 'definePool', 'recreateVolume'].includes(c.method) && JSON.stringify(c.args).includes('web3'));

    const refused = await ferry.migrate(input(vm, { targetHost: 'h3' })).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(MigrationRejectedError);
    expect((refused as MigrationRejectedError).type).toBe('StorageConflict');
    expect((refused as Error).message).toMatch(/h3 already has \/var\/lib\/libvirt\/images\/web3\.qcow2, and Ferry did not create it/);
    expect(creates()).toEqual([]);
    expect(hv.files(hv.host(H3), IMAGES).get('web3.qcow2')).toEqual({ name: 'web3.qcow2', capacityBytes: 7 * MiB, format: 'raw' });
    await expectOnSource(vm);

    const outcome = await ferry.migrate(input(vm));
    expect(outcome.status).toBe('migrated');
    expect(outcome.target).toBe('h2');
    expect(outcome.rejectedTargets).toEqual([{ host: 'h3', check: 'storage', reason: expect.stringMatching(/Ferry did not create it/) }]);
    expect(hv.files(hv.host(H3), IMAGES).get('web3.qcow2')).toEqual({ name: 'web3.qcow2', capacityBytes: 7 * MiB, format: 'raw' });
  });

  it("the recorded leftover of an earlier migration of this VM is replaced; the record says it is gone", async () => {
    const vm = await world.newVm('h1', { disks: [{ name: 'web4.qcow2', target: 'vda', dir: IMAGES, pool: 'default' }] });
    hv.files(hv.host(H2), IMAGES).set('web4.qcow2', { name: 'web4.qcow2', capacityBytes: MiB, format: 'raw' });
    const leftover = { host: 'h2', kind: 'volume' as const, path: `${IMAGES}/web4.qcow2`, pool: 'default', vmUuid: vm.uuid, workflowId: `ferry-migrate-${vm.uuid}`, runId: 'an-earlier-run' };
    await inventory.recordArtifact(leftover, 'created');
    const outcome = await ferry.migrate(input(vm, { targetHost: 'h2' }));
    expect(outcome.status).toBe('migrated');
    expect(hv.files(hv.host(H2), IMAGES).get('web4.qcow2')).toMatchObject({ capacityBytes: 64 * MiB, format: 'qcow2' });
    const records = await inventory.listArtifacts({ host: 'h2', path: leftover.path });
    expect(records.map((r) => r.runId)).not.toContain('an-earlier-run');
  });
});

describe('probes of migrations running at the same time', () => {
  it("another VM's probe in flight on the same directory is neither stopped nor fatal: the plan waits and retries", async () => {
    const dir = `${ROOT}/nopool`;
    for (const uri of [H1, H2]) hv.host(uri).dirs.add(dir); // a directory with no pool on the target (under its root)
    hv.addPool(H1, 'nopool', dir);
    // another migration's transient probe pool holds that directory on the target for 1.5 s
    const busy = 'ferry-probe-deadbeef-00000000';
    await hv.createTransientPool(H2, busy, dir);
    setTimeout(() => void hv.stopPool(H2, busy), 1_500);
    const vm = await world.newVm('h1', { disks: [{ name: 'np.qcow2', target: 'vda', dir, pool: 'nopool' }] });
    const outcome = await ferry.migrate(input(vm, { targetHost: 'h2' }));
    expect(hv.callsOf('stopPool', H2).filter((c) => c.args[0] === busy).length).toBe(1); // only its owner stopped it
    expect(outcome.status).toBe('migrated');
    expect(hv.host(H2).pools.get(`ferry-${vm.uuid}`)?.path).toBe(dir); // Ferry's pool defined on the existing directory
    expect(hv.host(H2).dirs.has(dir)).toBe(true);
  });
});
