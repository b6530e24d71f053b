/**
 * The worker SIGKILLed at every step boundary of liveMigration, then restarted (issue 4).
 *
 * Real lab (2 libvirt hosts, TCG VMs), real Temporal dev server, the worker as a child process
 * (test/support/worker-child.ts). Each case ends with checkConsistent(): libvirt runs the VM on exactly one
 * host, the inventory agrees (host, running, no claim), and no `ferry-<uuid>` pool or storage directory of the
 * VM is left on any other host. VMs move back and forth between the two hosts across cases.
 *
 * Where the kill lands: a killed worker loses any activity attempt it was running, and Temporal only notices
 * through that activity's timeout (create tasks: startToClose 1 min; the migration: heartbeat 20 s). One case
 * pays that price on purpose (a create task lost in flight). The others kill the worker while the current
 * activity is in its retry back-off — made to fail by a REAL fault (the target's or source's libvirtd stopped)
 * injected at exactly that boundary through the test worker's gate hook — so that nothing is in flight.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostDaemon, stopHostDaemon, type LabVm } from '../../lab';
import {
  canRunLab,
  expectConsistent as expectConsistentIn,
  checkConsistent,
  migrationInput,
  sleep,
  startFaultLab,
  waitForBackoff,
  type FaultLab,
} from '../support/fault-harness';
import { eventually } from '../support/temporal';

describe.skipIf(!canRunLab)('worker SIGKILL at every step boundary (real lab)', () => {
  let f: FaultLab;
  let vms: LabVm[];

  beforeAll(async () => {
    f = await startFaultLab({ hosts: 2, vms: 3 });
    vms = f.lab.vms;
  }, 300_000);

  afterAll(async () => {
    await f?.stop();
  }, 120_000);

  /** The host the inventory has the VM on, and the other one. */
  async function ends(vm: LabVm): Promise<{ source: string; target: string }> {
    const rec = await f.inventory.getVm(vm.uuid);
    const source = rec!.host;
    const target = f.lab.hosts.find((h) => h.name !== source)!.name;
    return { source, target };
  }

  const expectConsistent = (vm: LabVm, label: string) => expectConsistentIn(f, 'worker-crash', vm, label);

  it('killed while a create task is in flight (right after the claim): the lost attempt times out, is retried, migrated', async () => {
    const vm = vms[0]!;
    const { target } = await ends(vm);
    await f.worker.kill();
    await f.worker.start({ gates: ['createStorageDirectory:1'] });
    const handle = await f.ferry.startMigration(await migrationInput(f, vm));
    await f.worker.gateReached('createStorageDirectory', 1);
    // the claim is made and recorded; the first create task is running on the worker
    expect(await f.inventory.getClaim(vm.uuid)).toMatchObject({ host: target });
    expect((await handle.progress()).phase).toBe('creating-storage');
    await f.worker.kill();
    await f.worker.start();
    const outcome = await handle.outcome();
    expect(outcome.status).toBe('migrated');
    // the lost attempt counted (its start-to-close timeout), the next one created the directory
    expect(outcome.createAttempts.directory).toBe(2);
    expect(await expectConsistent(vm, 'create task in flight')).toBe(target);
  }, 180_000);

  for (const [task, activity] of [
    ['directory', 'createStorageDirectory'],
    ['pool', 'createStoragePool'],
    ['disk:disk0.qcow2', 'createDisk'],
  ] as const) {
    it(`killed during the ${task} create task (target down, in retry back-off), restarted with the target back: migrated`, async () => {
      const vm = vms[1]!;
      const { target } = await ends(vm);
      await f.worker.kill();
      await f.worker.start({ gates: [`${activity}:1`] });
      const handle = await f.ferry.startMigration(await migrationInput(f, vm, { createAttempts: 5, options: { createRetryInterval: '3s' } }));
      await f.worker.gateReached(activity, 1);
      await stopHostDaemon(f.home, target, 'SIGKILL'); // a real fault at exactly this boundary
      f.worker.release(activity, 1);
      await waitForBackoff(handle.workflow, activity, 1);
      await f.worker.kill();
      await startHostDaemon(f.home, target);
      await f.worker.start();
      const outcome = await handle.outcome();
      expect(outcome.status).toBe('migrated');
      expect(outcome.createAttempts[task]).toBeGreaterThanOrEqual(2);
      expect(await expectConsistent(vm, `${task} create task, back-off`)).toBe(target);
    }, 180_000);
  }

  it('killed during the migration (libvirt job running): the job goes on, the retried activity reconciles, migrated', async () => {
    const vm = vms[2]!;
    const { source, target } = await ends(vm);
    // 64 MiB of disk mirror at 2 MiB/s: the job outlives the lost attempt's heartbeat timeout (20 s)
    const handle = await f.ferry.startMigration(await migrationInput(f, vm, { bandwidthMiBps: 2, timeout: '5m' }));
    await eventually(async () => {
      const p = await handle.progress();
      return p.phase === 'migrating' && p.migration !== null;
    }, 60_000);
    await f.worker.kill();
    // no worker: the p2p job is driven by the source libvirtd and keeps going
    expect((await f.hv.jobInfo(f.host(source).uri, vm.uuid)).type).toBe('unbounded');
    await f.worker.start();
    const outcome = await handle.outcome();
    expect(outcome.status).toBe('migrated');
    expect(outcome.target).toBe(target);
    expect(outcome.sourceCleaned).toBe(true);
    expect(await expectConsistent(vm, 'migration job running')).toBe(target);
  }, 180_000);

  it('killed during compensation (timed out; target down, deletions in retry back-off): compensated once both are back', async () => {
    const vm = vms[0]!;
    const { source, target } = await ends(vm);
    await f.worker.kill();
    await f.worker.start({ gates: ['deleteDisk:1'] });
    const handle = await f.ferry.startMigration(await migrationInput(f, vm, { bandwidthMiBps: 1, timeout: '4s' }));
    await f.worker.gateReached('deleteDisk', 1, 120_000);
    await stopHostDaemon(f.home, target, 'SIGKILL');
    f.worker.release('deleteDisk', 1);
    // compensation retries against the dead target, and says so in the progress query
    const p = await eventually(async () => {
      const pr = await handle.progress();
      return pr.phase === 'compensating' && /deleting volume disk0\.qcow2/.test(pr.waitingFor ?? '') ? pr : null;
    }, 30_000);
    expect(p.lastError).toMatch(/timeout of 4\.0 s/);
    // the VM's state was restored first
    expect(await f.inventory.getVm(vm.uuid)).toMatchObject({ host: source, state: 'running' });
    await waitForBackoff(handle.workflow, 'deleteDisk', 3); // back-off of 4 s and more: nothing in flight
    await f.worker.kill();
    await startHostDaemon(f.home, target);
    await f.worker.start();
    const outcome = await handle.outcome();
    expect(outcome.status).toBe('timed-out');
    expect(await expectConsistent(vm, 'compensation, back-off')).toBe(source);
  }, 180_000);

  it('killed during source cleanup (source down, cleanup in retry back-off): migrated, source cleaned', async () => {
    const vm = vms[1]!;
    const { source, target } = await ends(vm);
    await f.worker.kill();
    await f.worker.start({ gates: ['cleanSource:1'] });
    const handle = await f.ferry.startMigration(await migrationInput(f, vm));
    await f.worker.gateReached('cleanSource', 1);
    // the VM runs on the target already; the source's daemon dies (its other VMs' QEMUs keep running)
    await stopHostDaemon(f.home, source, 'SIGKILL');
    f.worker.release('cleanSource', 1);
    await waitForBackoff(handle.workflow, 'cleanSource', 1);
    await f.worker.kill();
    await startHostDaemon(f.home, source);
    await f.worker.start();
    const outcome = await handle.outcome();
    expect(outcome.status).toBe('migrated');
    expect(outcome.sourceCleaned).toBe(true);
    expect(outcome.warnings).toEqual([]);
    expect(await expectConsistent(vm, 'source cleanup, back-off')).toBe(target);
  }, 180_000);
});
