/**
 * Convergence control on the real lab: VMs whose guest (lab/guest/dirty.s) dirties memory faster than a
 * 10 MiB/s link copies it, so pre-copy never converges on its own.
 *   - no control: the progress deadline fires, the job is aborted and compensated;
 *   - post-copy as the deadline action: it completes through post-copy;
 *   - auto-converge: throttling brings a 20 MiB/s guest under the bandwidth and it completes;
 *   - a long deadline and an operator who raises the max downtime through the `tune` update: it completes.
 * The times and downtimes are printed for the report.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labAddVm, type LabVm } from '../../lab';
import { syncInventory } from '../../inventory/sync';
import type { MigrationReport } from '../../common/migration';
import { canRunLab, poolsOn, startLabHarness, vmDirExists, whereRuns, type LabHarness } from '../support/lab-harness';
import { eventually } from '../support/temporal';

/** 16 MiB of memory rewritten at 20 MiB/s: every iteration ends with the whole region dirty again. */
const BUSY = { kind: 'dirty' as const, regionMiB: 16, pagesPerSec: 5_120 };
/** 8 MiB at 20 MiB/s: 8 MiB left each iteration, ~0.8 s at 10 MiB/s — over 300 ms, under 2 s of downtime. */
const SMALL = { kind: 'dirty' as const, regionMiB: 8, pagesPerSec: 5_120 };

describe.skipIf(!canRunLab)('convergence control on the real lab', () => {
  let h: LabHarness;
  const vms: Record<string, LabVm> = {};
  const src = () => h.lab.hosts[0]!;
  const dst = () => h.lab.hosts[1]!;

  beforeAll(async () => {
    h = await startLabHarness({ hosts: 2, vms: 0 });
    for (const [name, guest] of [
      ['nc', BUSY],
      ['pc', BUSY],
      ['ac', BUSY],
      ['dt', SMALL],
    ] as const) {
      vms[name] = await labAddVm(h.home, { name, guest });
    }
    const [r] = await syncInventory(h.inventory, h.hv, { hosts: [src().name] });
    expect(r?.error).toBeUndefined();
  }, 300_000);

  afterAll(async () => {
    await h?.stop();
  }, 120_000);

  const input = (vm: LabVm) => ({ sourceHost: src().address, vmName: vm.name, vmUuid: vm.uuid, bandwidthMiBps: 10 });
  const summary = (name: string, r: MigrationReport) =>
    console.log(`${name}: ${r.status} in ${r.durationMs} ms (migration ${r.migrationMs} ms), downtime ${r.downtimeMs} ms, limit ${r.limitFired?.limit ?? '-'}→${r.limitFired?.action ?? '-'}`);

  it('without any control the progress deadline fires: aborted and compensated (VM on the source, target clean)', async () => {
    const vm = vms.nc!;
    const r = await h.ferry.migrate({ ...input(vm), convergence: { progressTimeout: '10s' } });
    summary('no control', r);
    expect(r.status).toBe('timed-out');
    expect(r.limitFired).toMatchObject({ limit: 'progress', action: 'abort' });
    expect(r.limitFired?.stats?.memoryIteration).toBeGreaterThan(1);
    expect(r.limitFired?.stats?.dataRemainingBytes).toBeGreaterThan(4 * 2 ** 20);
    expect(await whereRuns(h, vm.uuid)).toEqual([src().name]);
    expect(vmDirExists(h.home, dst().name, vm.uuid)).toBe(false);
    expect(await poolsOn(h, dst().name)).not.toContain(`ferry-${vm.uuid}`);
    expect(await h.inventory.getVm(vm.uuid)).toMatchObject({ host: src().name, state: 'running' });
  });

  it('with post-copy as the deadline action it completes through post-copy', async () => {
    const vm = vms.pc!;
    const r = await h.ferry.migrate({ ...input(vm), convergence: { progressTimeout: '10s', postCopy: true, onDeadline: 'post-copy' } });
    summary('post-copy', r);
    expect(r.status).toBe('migrated');
    expect(r.limitFired).toMatchObject({ limit: 'progress', action: 'post-copy' });
    expect(await whereRuns(h, vm.uuid)).toEqual([dst().name]);
  });

  it('auto-converge throttles a 20 MiB/s guest under the 10 MiB/s link and it completes', async () => {
    const vm = vms.ac!;
    const r = await h.ferry.migrate({ ...input(vm), timeout: '5m', convergence: { autoConverge: true, progressTimeout: '90s' } });
    summary('auto-converge', r);
    expect(r.status).toBe('migrated');
    expect(r.limitFired).toBeNull();
    expect(await whereRuns(h, vm.uuid)).toEqual([dst().name]);
  });

  it('a non-converging migration with a long deadline finishes after an operator raises the max downtime', async () => {
    const vm = vms.dt!;
    const handle = await h.ferry.startMigration({ ...input(vm), timeout: '10m', convergence: { progressTimeout: '10m' } });
    // wait until memory iterations repeat without converging
    await eventually(async () => ((await handle.progress()).migration?.memoryIteration ?? 0) >= 4, 120_000, 1_000);
    expect((await handle.progress()).phase).toBe('migrating');
    const view = await handle.tune({ maxDowntimeMs: 2_000 });
    expect(view.maxDowntimeMs).toBe(2_000);
    const r = await handle.outcome();
    summary('operator raised max downtime', r);
    expect(r.status).toBe('migrated');
    expect(r.convergenceEvents.some((e) => e.what === 'operator: max downtime 2000 ms')).toBe(true);
    expect(await whereRuns(h, vm.uuid)).toEqual([dst().name]);
  });
});
