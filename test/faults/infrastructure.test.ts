/**
 * Infrastructure faults in the middle of a migration (issue 4), on the real lab with the worker as a child
 * process: the Temporal dev server stopped and restarted on the same database file, and the target's
 * libvirtd killed while libvirt's migration job runs. Each case ends with checkConsistent().
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostDaemon, stopHostDaemon, type LabVm } from '../../lab';
import { canRunLab, checkConsistent, expectConsistent as expectConsistentIn, migrationInput, sleep, startFaultLab, type FaultLab } from '../support/fault-harness';
import { eventually } from '../support/temporal';

describe.skipIf(!canRunLab)('infrastructure faults during a migration (real lab)', () => {
  let f: FaultLab;
  let vms: LabVm[];

  beforeAll(async () => {
    f = await startFaultLab({ hosts: 2, vms: 2 });
    vms = f.lab.vms;
  }, 300_000);

  afterAll(async () => {
    await f?.stop();
  }, 120_000);

  const expectConsistent = (vm: LabVm, label: string) => expectConsistentIn(f, 'infrastructure', vm, label);

  it('Temporal dev server stopped mid-migration and restarted on the same database: the migration finishes, consistent', async () => {
    const vm = vms[0]!;
    const source = (await f.inventory.getVm(vm.uuid))!.host;
    const handle = await f.ferry.startMigration(await migrationInput(f, vm, { bandwidthMiBps: 5, timeout: '5m' }));
    const during = await eventually(async () => {
      const p = await handle.progress();
      return p.phase === 'migrating' && p.migration !== null ? p : null;
    }, 60_000);
    const target = during.target!;
    await f.server.stop();
    // the server is gone; libvirt's job goes on (the worker keeps heartbeating into the void)
    expect((await f.hv.jobInfo(f.host(source).uri, vm.uuid)).type).toBe('unbounded');
    await sleep(6_000);
    await f.server.start();
    const outcome = await handle.outcome();
    // finished or compensated — either way consistent; with a 6 s outage it finishes
    expect(['migrated', 'failed', 'timed-out']).toContain(outcome.status);
    const where = await expectConsistent(vm, 'Temporal server restarted mid-migration');
    expect(where).toBe(outcome.status === 'migrated' ? target : source);
    expect(outcome.status).toBe('migrated');
    const [row] = await f.inventory.listHistory({ vm: vm.uuid });
    expect(row).toMatchObject({ result: 'migrated', target });
  }, 240_000);

  it('target libvirtd killed during the migration job: the job fails, the VM stays on the source, the target is cleaned once it is back', async () => {
    const vm = vms[1]!;
    const source = (await f.inventory.getVm(vm.uuid))!.host;
    const handle = await f.ferry.startMigration(await migrationInput(f, vm, { bandwidthMiBps: 4, timeout: '5m' }));
    const during = await eventually(async () => {
      const p = await handle.progress();
      return p.phase === 'migrating' && p.migration !== null ? p : null;
    }, 60_000);
    const target = during.target!;
    await stopHostDaemon(f.home, target, 'SIGKILL');

    // compensation keeps retrying against the dead target, and the progress query says what it waits for
    const waiting = await eventually(async () => {
      const p = await handle.progress();
      return p.phase === 'compensating' && /on /.test(p.waitingFor ?? '') && /deleting|stopping|removing/.test(p.waitingFor ?? '') ? p : null;
    }, 60_000);
    console.log(`while the target is down: waitingFor=${JSON.stringify(waiting.waitingFor)} lastError=${JSON.stringify(waiting.lastError)}`);
    expect(waiting.lastError).toMatch(/migration|libvirt/i);
    expect(waiting.waitingFor).toContain(target);
    // libvirt: the VM still runs on the source; the inventory already says so
    expect((await f.hv.getDomain(f.host(source).uri, vm.uuid))?.state).toBe('running');
    await eventually(async () => (await f.inventory.getVm(vm.uuid))?.state === 'running', 30_000);
    expect(await f.inventory.getVm(vm.uuid)).toMatchObject({ host: source, state: 'running' });
    await sleep(3_000);
    expect((await handle.progress()).phase).toBe('compensating'); // still waiting, not given up

    await startHostDaemon(f.home, target);
    const outcome = await handle.outcome();
    expect(outcome.status).toBe('failed');
    expect(outcome.location).toBe('source');
    expect(outcome.warnings).toEqual([]);
    expect(await expectConsistent(vm, 'target libvirtd killed mid-migration')).toBe(source);
  }, 240_000);
});
