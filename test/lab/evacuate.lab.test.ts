/**
 * Host evacuation on the real lab (3 libvirt hosts, 5 TCG VMs on the first): the drain empties the host
 * under the limits (checked from the recorded in-flight intervals), a VM made unmovable is reported failed
 * while the others succeed, and a schedule set a few seconds ahead fires and drains another host.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvacuationSchedule, startEvacuation, type EvacuationResult } from '../../client/fleet';
import { peakInFlight } from '../../common/evacuation';
import { LAB_STORAGE_ROOT } from '../../lab';
import { canRunLab, poolsOn, startLabHarness, whereRuns, type LabHarness } from '../support/lab-harness';
import { eventually } from '../support/temporal';


describe.skipIf(!canRunLab)('evacuation on the real lab', () => {
  let h: LabHarness;
  const name = (i: number) => h.lab.hosts[i]!.name;

  beforeAll(async () => {
    h = await startLabHarness({ hosts: 3, vms: 5 });
  }, 300_000);

  afterAll(async () => {
    await h?.stop();
  }, 120_000);

  it('empties the first host under the limits; an unmovable VM is reported failed while the others leave', async () => {
    const stuck = h.lab.vms[2]!;
    // Another owner's storage pool already sits on the stuck VM's directory on every other host: Ferry must
    // never adopt or delete it, so creating that VM's storage fails on each target.
    for (const host of h.lab.hosts.slice(1)) {
      await h.hv.createStorageDirectory(host.uri, `foreign-${host.name}`, `${LAB_STORAGE_ROOT}/${stuck.uuid}`);
    }
    const started = Date.now();
    const handle = await startEvacuation(h.ferry.client, h.taskQueue, { host: name(0) });
    const result = await handle.result();
    const wallMs = Date.now() - started;

    const byVm = Object.fromEntries(result.vms.map((v) => [v.vm, v]));
    expect(byVm[stuck.name]?.status).toBe('failed');
    expect(byVm[stuck.name]?.reason).toMatch(/foreign-/);
    const moved = h.lab.vms.filter((v) => v.uuid !== stuck.uuid);
    for (const vm of moved) {
      expect(byVm[vm.name]?.status).toBe('migrated');
      const [where] = await whereRuns(h, vm.uuid);
      expect(where).toBe(byVm[vm.name]?.target);
      expect(where).not.toBe(name(0));
      expect((await h.inventory.getVm(vm.uuid))?.host).toBe(where);
    }
    expect(result.allLeft).toBe(false);
    expect(result.remainingOnHost).toEqual([stuck.name]);
    expect(await whereRuns(h, stuck.uuid)).toEqual([name(0)]);
    expect((await h.inventory.getHost(name(0)))?.state).toBe('maintenance');
    // limits: 2 outbound per source (and 1 inbound per target: at most 2 here with 2 targets)
    const peak = peakInFlight(result.vms);
    expect(peak).toBeLessThanOrEqual(2);
    expect(peak).toBe(2);
    // the foreign pools are untouched and nothing of the stuck VM was left behind
    for (const host of h.lab.hosts.slice(1)) {
      const pools = await poolsOn(h, host.name);
      expect(pools).toContain(`foreign-${host.name}`);
      expect(pools).not.toContain(`ferry-${stuck.uuid}`);
    }
    const sum = result.vms.reduce((s, v) => s + (v.status === 'migrated' ? (v.durationMs ?? 0) : 0), 0);
    console.log(`evacuation of ${moved.length} VMs: wall ${wallMs} ms; sum of the single migrations ${sum} ms; peak in flight ${peak}`);
  });

  it('a schedule set a few seconds ahead fires and evacuates a lab host', async () => {
    const host = name(1);
    const before = await h.inventory.listVms({ host });
    expect(before.length).toBeGreaterThan(0);
    await h.inventory.setHostState(name(0), 'normal'); // give the drained VMs somewhere to go besides host 3
    const at = new Date(Date.now() + 6_000).toISOString();
    const id = await createEvacuationSchedule(h.ferry.client, h.taskQueue, { hosts: [host], when: { at }, scheduleId: 'ferry-lab-test-once' });
    const schedule = h.ferry.client.schedule.getHandle(id);
    const workflowId = await eventually(async () => {
      const d = await schedule.describe();
      const a = d.info.recentActions[0];
      return a?.action.type === 'startWorkflow' ? a.action.workflow.workflowId : null;
    }, 60_000, 500);
    const batch = (await h.ferry.client.workflow.getHandle(workflowId).result()) as { hosts: EvacuationResult[] };
    expect(batch.hosts).toHaveLength(1);
    expect(batch.hosts[0]?.allLeft).toBe(true);
    expect(await h.inventory.listVms({ host })).toEqual([]);
    for (const vm of before) expect(await whereRuns(h, vm.uuid)).not.toContain(host);
    expect((await schedule.describe()).state.remainingActions).toBe(0);
    await schedule.delete();
  });
});
