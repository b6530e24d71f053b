/**
 * `ferry reconcile` on the real lab: migrations terminated from outside (Temporal's terminate, as the Web UI's
 * Terminate button or `temporal workflow terminate` do) during the create tasks and during the copy leave a
 * claim, a `migrating` VM and storage on the target; after reconciliation the VM runs on exactly one host, the
 * inventory agrees, no claim is left and the target holds nothing of that run. Also: the inventory-sync
 * schedule reconciles, and `ferry lab down` refuses while a claim is held unless `--force`.
 * The worker is a child process (test/support/worker-child.ts) so that a create task can be held at a gate.
 * Run with a lab of your own, e.g. FERRY_LAB_PREFIX=rec FERRY_LAB_SUBNET=10.213.93.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSyncSchedule } from '../../client/fleet';
import type { ReconciledVm } from '../../common/reconcile';
import { LAB_STORAGE_ROOT, type LabVm } from '../../lab';
import { canRunLab, expectConsistent, migrationInput, runFerryCli, startFaultLab, type FaultLab } from '../support/fault-harness';
import { storageEntries } from '../support/lab-harness';
import { eventually } from '../support/temporal';

const FILE = 'reconcile.lab.test.ts';

describe.skipIf(!canRunLab)('ferry reconcile after a terminated migration, on the real lab', () => {
  let f: FaultLab;
  let vms: LabVm[];
  let H2 = '';

  beforeAll(async () => {
    f = await startFaultLab({ hosts: 2, vms: 4, taskQueue: 'ferry-reconcile' });
    vms = f.lab.vms;
    H2 = f.lab.hosts[1]!.name;
  }, 300_000);

  afterAll(async () => {
    await f?.stop();
  }, 120_000);

  const ferry = (...args: string[]) => runFerryCli(f, ...args);

  async function expectLeftBehind(vm: LabVm): Promise<void> {
    expect(await f.inventory.getClaim(vm.uuid)).toMatchObject({ host: H2 });
    expect(await f.inventory.getVm(vm.uuid)).toMatchObject({ state: 'migrating' });
    expect(storageEntries(f.home, H2)).toContain(vm.uuid);
  }

  /** After reconciliation: consistent (fault-harness), and nothing of the VM on the target, recorded or real. */
  async function expectReconciled(vm: LabVm, label: string): Promise<void> {
    expect(await expectConsistent(f, FILE, vm, label)).toBe(f.lab.hosts[0]!.name);
    expect(storageEntries(f.home, H2)).not.toContain(vm.uuid);
    expect(await f.inventory.listArtifacts({ vmUuid: vm.uuid, host: H2 })).toEqual([]);
  }

  /** Starts a migration at 2 MiB/s and terminates its workflow once libvirt's job is copying (as the Web UI's Terminate would). */
  async function terminateDuringCopy(vm: LabVm, reason: string): Promise<void> {
    const handle = await f.ferry.startMigration(await migrationInput(f, vm, { bandwidthMiBps: 2 }));
    await eventually(async () => {
      const p = await handle.progress();
      return p.phase === 'migrating' && p.migration !== null;
    }, 60_000);
    await handle.workflow.terminate(reason);
  }

  const entryOf = (list: ReconciledVm[], vm: LabVm) => list.find((r) => r.vmUuid === vm.uuid);

  it('terminated during the create tasks (the disk task held, then let run after the terminate): dry run changes nothing; reconcile removes the volume, then the pool with its directory, and releases the claim', async () => {
    const vm = vms[0]!;
    await f.worker.stop();
    await f.worker.start({ gates: ['createDisk:1'] });
    const handle = await f.ferry.startMigration(await migrationInput(f, vm));
    await f.worker.gateReached('createDisk');
    await handle.workflow.terminate('test: terminated during the create tasks');
    const diskTask = f.worker.next((e) => e.type === 'activity' && e.activity === 'createDisk');
    f.worker.release('createDisk');
    await diskTask; // the attempt ran after the terminate: it created (and recorded) the volume
    await expectLeftBehind(vm);
    expect(await f.ferry.workflowStatus(handle.workflowId)).toBe('TERMINATED');

    const dry = entryOf(await f.ferry.reconcile({ dryRun: true }), vm);
    expect(dry).toMatchObject({ workflow: 'TERMINATED', location: 'source', target: H2 });
    expect(dry!.actions.map((a) => a.action)).toEqual(['set-vm', 'remove', 'remove', 'release-claim']);
    expect(dry!.actions.every((a) => !a.done)).toBe(true);
    await expectLeftBehind(vm); // nothing changed

    const done = entryOf(await f.ferry.reconcile(), vm);
    expect(done!.actions.map((a) => `${a.action}:${a.done}`)).toEqual(['set-vm:true', 'remove:true', 'remove:true', 'release-claim:true']);
    expect(done!.actions.filter((a) => a.action === 'remove').map((a) => a.detail.replace(/ \(run .*$/, ''))).toEqual([
      `volume ${LAB_STORAGE_ROOT}/${vm.uuid}/disk0.qcow2 on ${H2}`,
      `pool ferry-${vm.uuid} and directory ${LAB_STORAGE_ROOT}/${vm.uuid} on ${H2}`,
    ]);
    await expectReconciled(vm, 'terminated during the create tasks, reconciled');
    expect(entryOf(await f.ferry.reconcile(), vm)).toBeUndefined(); // idempotent: nothing left to do
    await f.worker.stop();
    await f.worker.start();
  }, 180_000);

  it('terminated during the copy (bandwidth 2 MiB/s): `ferry reconcile` aborts the job nobody owns, cleans the target, releases the claim', async () => {
    const vm = vms[1]!;
    await terminateDuringCopy(vm, 'test: terminated during the copy');
    await expectLeftBehind(vm);

    const cli = await ferry('reconcile', '--json');
    expect(cli.code, cli.stderr).toBe(0);
    const out = JSON.parse(cli.stdout) as { dryRun: boolean; reconciled: ReconciledVm[] };
    const entry = entryOf(out.reconciled, vm);
    expect(entry).toMatchObject({ workflow: 'TERMINATED', location: 'source' });
    const actions = entry!.actions.map((a) => a.action);
    expect(actions[actions.length - 1]).toBe('release-claim');
    expect(actions.filter((a) => a === 'remove')).toHaveLength(2);
    expect(entry!.actions.every((a) => a.error === undefined)).toBe(true);
    expect((await f.hv.jobInfo(f.lab.hosts[0]!.uri, vm.uuid)).type).toBe('none');
    await expectReconciled(vm, 'terminated during the copy, reconciled by the CLI');
  }, 240_000);

  it('the inventory-sync schedule reconciles a terminated migration by itself', async () => {
    const vm = vms[2]!;
    await terminateDuringCopy(vm, 'test: terminated, for the schedule');
    await expectLeftBehind(vm);
    const id = await createSyncSchedule(f.client, f.taskQueue, '1h', 'ferry-inventory-sync-rec');
    try {
      await f.client.schedule.getHandle(id).trigger();
      await eventually(async () => (await f.inventory.getClaim(vm.uuid)) === null && (await f.inventory.getVm(vm.uuid))?.state === 'running', 120_000, 500);
      await eventually(async () => !storageEntries(f.home, H2).includes(vm.uuid), 30_000, 200);
      await expectReconciled(vm, 'terminated, reconciled by the inventory-sync schedule');
    } finally {
      await f.client.schedule.getHandle(id).delete();
    }
  }, 240_000);

  it('`ferry lab down` refuses while a terminated migration holds a claim (nothing stopped); `--force` stops the lab', async () => {
    const vm = vms[3]!;
    await terminateDuringCopy(vm, 'test: terminated, then the lab is taken down');
    const refused = await ferry('lab', 'down');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('migrations in flight');
    expect(refused.stderr).toContain('--force');
    expect((await f.hv.getDomain(f.lab.hosts[0]!.uri, vm.uuid))?.state).toBe('running'); // the lab still runs

    const forced = await ferry('lab', 'down', '--force');
    expect(forced.code, forced.stderr).toBe(0);
    expect(await f.inventory.listClaims()).toEqual([]);
    expect(await f.inventory.listHosts()).toEqual([]);
    expect(fs.existsSync(path.join(f.home, 'lab', 'state.json'))).toBe(false);
  }, 240_000);
});
