/**
 * evacuateHost on the real Temporal dev server (real activities, SQLite inventory, hypervisor double):
 * drains under the limits, reports per-VM outcomes, one unmovable VM does not hang the drain,
 * pause / resume / cancel.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { peakInFlight, type EvacuationProgress, type EvacuationResult } from '../../common/evacuation';
import { eventually } from '../support/temporal';
import { memUri, startWorkflowWorld, type TestVm, type WorkflowWorld } from '../support/workflow-env';

let w: WorkflowWorld;

beforeAll(async () => {
  w = await startWorkflowWorld({ hosts: 4, taskQueue: 'ferry-evac-test', uuidPrefix: '11111111' });
}, 120_000);

afterAll(async () => {
  await w?.stop();
}, 120_000);

beforeEach(async () => {
  w.hv.clearFaults();
  w.hv.migrationMs = 400;
  for (const h of await w.inventory.listHosts()) await w.inventory.setHostState(h.name, 'normal');
});

async function vmsOn(host: string, n: number): Promise<TestVm[]> {
  const out: TestVm[] = [];
  for (let i = 0; i < n; i++) out.push(await w.newVm(host));
  return out;
}

function start(host: string, extra: Record<string, unknown> = {}) {
  return w.env.client.workflow.start('evacuateHost', {
    taskQueue: w.taskQueue,
    workflowId: `ferry-evacuate-${host}-${Date.now()}`,
    args: [{ host, migration: { options: { createRetryInterval: '100ms' } }, ...extra }],
  });
}


describe('evacuateHost', () => {
  it('empties the host under the limits: every VM migrated, never more than 2 in flight, host in maintenance', async () => {
    const vms = await vmsOn('h2', 5);
    const handle = await start('h2');
    const during = await eventually(async () => {
      const p = await handle.query<EvacuationProgress>('progress');
      return p.counts.running > 0 ? p : null;
    });
    expect(during.host).toBe('h2');
    expect((await w.inventory.getHost('h2'))?.state).toBe('maintenance');
    const result = await handle.result() as EvacuationResult;
    expect(result.allLeft).toBe(true);
    expect(result.hostState).toBe('maintenance');
    expect(result.vms.map((v) => v.status)).toEqual(vms.map(() => 'migrated'));
    expect(new Set(result.vms.map((v) => v.target))).not.toContain('h2');
    expect(peakInFlight(result.vms)).toBeLessThanOrEqual(2);
    expect(peakInFlight(result.vms)).toBeGreaterThanOrEqual(2); // and it did use the parallelism
    for (const vm of vms) {
      const rec = await w.inventory.getVm(vm.uuid);
      expect(rec?.state).toBe('running');
      expect(w.hv.host(memUri(rec!.host)).domains.get(vm.uuid)?.state).toBe('running');
    }
    expect(await w.inventory.listVms({ host: 'h2' })).toEqual([]);
  });

  it('one VM that cannot move fails on its own; the others leave; the result says which and why', async () => {
    const vms = await vmsOn('h3', 3);
    const stuck = vms[1]!;
    w.hv.fail('recreateVolume', Infinity, { match: stuck.pool });
    const result = (await (await start('h3')).result()) as EvacuationResult;
    expect(result.allLeft).toBe(false);
    expect(result.remainingOnHost).toEqual([stuck.name]);
    const byVm = Object.fromEntries(result.vms.map((v) => [v.vm, v]));
    expect(byVm[stuck.name]?.status).toBe('failed');
    expect(byVm[stuck.name]?.reason).toMatch(/create task disk:disk0\.qcow2 on h\d failed 3 of 3/);
    for (const vm of vms.filter((v) => v !== stuck)) expect(byVm[vm.name]?.status).toBe('migrated');
    expect((await w.inventory.getVm(stuck.uuid))?.state).toBe('running');
  });

  it('pause stops new starts, resume continues, cancel stops the rest and compensates the running ones', async () => {
    const vms = await vmsOn('h4', 4);
    w.hv.migrationMs = 3_000;
    const handle = await start('h4', { maxParallel: 1 });
    await eventually(async () => (await handle.query<EvacuationProgress>('progress')).counts.running === 1);
    await handle.signal('pause');
    const paused = await eventually(async () => {
      const p = await handle.query<EvacuationProgress>('progress');
      return p.state === 'paused' && p.counts.running === 0 ? p : null;
    }, 30_000);
    expect(paused.counts.migrated).toBe(1);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await handle.query<EvacuationProgress>('progress')).counts.running).toBe(0); // nothing new while paused
    await handle.signal('resume');
    await eventually(async () => {
      const p = await handle.query<EvacuationProgress>('progress');
      return p.counts.running === 1 && p.vms.some((v) => v.status === 'running' && v.phase === 'migrating');
    }, 30_000);
    w.hv.migrationMs = 60_000;
    await handle.signal('cancel', { restoreHostState: true });
    const result = (await handle.result()) as EvacuationResult;
    expect(result.cancelled).toBe(true);
    expect(result.hostState).toBe('normal');
    const statuses = result.vms.map((v) => v.status).sort();
    expect(statuses.filter((s) => s === 'migrated').length).toBeGreaterThanOrEqual(1);
    expect(statuses.filter((s) => s === 'cancelled').length).toBeGreaterThanOrEqual(2);
    for (const v of result.vms.filter((x) => x.status === 'cancelled')) {
      const rec = await w.inventory.getVm(v.vmUuid);
      expect(rec).toMatchObject({ host: 'h4', state: 'running' });
      expect(await w.inventory.getClaim(v.vmUuid)).toBeNull();
    }
    expect(vms).toHaveLength(4);
  });

  it('refuses bad input at once', async () => {
    const handle = await start('h1', { maxParallel: 0, surprise: 1 });
    await expect(handle.result()).rejects.toThrow();
    expect((await w.inventory.getHost('h1'))?.state).toBe('normal');
  });
});
