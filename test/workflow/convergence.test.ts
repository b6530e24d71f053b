/**
 * Convergence control in the workflow (real Temporal, real activities, hypervisor double whose simulated
 * guest does not converge until the max downtime reaches 1 s, post-copy starts, or auto-converge works).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { LiveMigrationInput } from '../../common/validation';
import { eventually } from '../support/temporal';
import { memUri, startWorkflowWorld, type TestVm, type WorkflowWorld } from '../support/workflow-env';

let w: WorkflowWorld;
const H1 = memUri('h1');
const H2 = memUri('h2');

beforeAll(async () => {
  w = await startWorkflowWorld({ hosts: 2, taskQueue: 'ferry-cvg-test', uuidPrefix: '33333333' });
}, 120_000);

afterAll(async () => {
  await w?.stop();
}, 120_000);

beforeEach(() => {
  w.hv.clearFaults();
  w.hv.migrationMs = 400;
  w.hv.nonConvergingBelowDowntimeMs = 1_000;
  w.hv.autoConvergeMs = 1_000;
  w.hv.failPostCopy = false;
});

function input(vm: TestVm, extra: Partial<LiveMigrationInput> = {}): LiveMigrationInput {
  return { sourceHost: '10.0.0.1', vmName: vm.name, vmUuid: vm.uuid, ...extra };
}

async function expectOnSourceClean(vm: TestVm): Promise<void> {
  expect(w.hv.host(H1).domains.get(vm.uuid)?.state).toBe('running');
  expect(w.hv.host(H2).pools.has(vm.pool)).toBe(false);
  expect(await w.inventory.getVm(vm.uuid)).toMatchObject({ host: 'h1', state: 'running' });
}

describe('convergence control', () => {
  it('without controls the progress deadline fires: aborted and compensated, with the statistics at that moment', async () => {
    const vm = await w.newVm();
    const outcome = await w.ferry.migrate(input(vm, { convergence: { progressTimeout: '2s' } }));
    expect(outcome.status).toBe('timed-out');
    expect(outcome.reason).toMatch(/progress deadline passed: no new low of the remaining data for .* \(progress timeout 2\.0 s\): iteration \d+, \d+\.\d MiB remaining \(lowest 8\.0 MiB\), dirty rate 5000 pages\/s/);
    expect(outcome.limitFired).toMatchObject({ limit: 'progress', action: 'abort' });
    expect(outcome.limitFired?.stats?.dataRemainingBytes).toBeGreaterThan(0);
    await expectOnSourceClean(vm);
    const [row] = await w.inventory.listHistory({ vm: vm.uuid });
    expect(row?.reason).toMatch(/progress deadline/);
  });

  it('with post-copy as the deadline action it completes through post-copy', async () => {
    const vm = await w.newVm();
    const outcome = await w.ferry.migrate(input(vm, { convergence: { progressTimeout: '2s', postCopy: true, onDeadline: 'post-copy' } }));
    expect(outcome.status).toBe('migrated');
    expect(outcome.limitFired).toMatchObject({ limit: 'progress', action: 'post-copy' });
    expect(outcome.convergenceEvents.map((e) => e.what).join('\n')).toMatch(/switched to post-copy/);
    expect(w.hv.host(H2).domains.get(vm.uuid)?.state).toBe('running');
    expect(w.hv.callsOf('startPostCopy', H1).some((c) => c.args[0] === vm.uuid)).toBe(true);
  });

  it('the completion deadline with post-copy switches too (never aborts a post-copy)', async () => {
    const vm = await w.newVm();
    const outcome = await w.ferry.migrate(input(vm, { timeout: '3s', convergence: { postCopy: true, onDeadline: 'post-copy' } }));
    expect(outcome.status).toBe('migrated');
    expect(outcome.limitFired).toMatchObject({ limit: 'completion', action: 'post-copy' });
    expect(w.hv.callsOf('abortJob', H1).filter((c) => c.args[0] === vm.uuid)).toHaveLength(0);
  });

  it('auto-converge lets a guest that throttling can slow down complete', async () => {
    const vm = await w.newVm();
    const outcome = await w.ferry.migrate(input(vm, { convergence: { autoConverge: true, progressTimeout: '30s' } }));
    expect(outcome.status).toBe('migrated');
    expect(w.hv.callsOf('migrate', H1).find((c) => c.args[0] === vm.uuid)?.args[2]).toMatchObject({ autoConverge: true });
  });

  it('the max-downtime ramp raises the downtime while iterations stall, until it converges', async () => {
    const vm = await w.newVm();
    const outcome = await w.ferry.migrate(
      input(vm, { convergence: { maxDowntimeMs: 300, maxDowntimeRamp: { maxMs: 1_200, steps: 3, stallIterations: 1 }, progressTimeout: '60s' } }),
    );
    expect(outcome.status).toBe('migrated');
    const events = outcome.convergenceEvents.map((e) => e.what);
    expect(events.some((e) => /max downtime raised to \d+ ms \(ramp step/.test(e))).toBe(true);
    expect(w.hv.maxDowntimes.get(vm.uuid)).toBeGreaterThanOrEqual(1_000);
  });

  it('an operator raises the max downtime through the update and a non-converging migration finishes', async () => {
    const vm = await w.newVm();
    const handle = await w.ferry.startMigration(input(vm, { convergence: { progressTimeout: '10m' } }));
    await eventually(async () => (await handle.progress()).convergence?.sinceNewLowMs !== undefined && (await handle.progress()).phase === 'migrating');
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await handle.progress()).phase).toBe('migrating'); // it does not converge on its own
    // refused: nothing to change / out of range / post-copy not allowed
    await expect(handle.tune({})).rejects.toThrow(/nothing to change/);
    await expect(handle.tune({ maxDowntimeMs: 0 })).rejects.toThrow(/maxDowntimeMs must be/);
    await expect(handle.tune({ postCopyNow: true })).rejects.toThrow(/post-copy was not allowed/);
    const view = await handle.tune({ maxDowntimeMs: 1_500, bandwidthMiBps: 50 });
    expect(view.maxDowntimeMs).toBe(1_500);
    expect(view.bandwidthMiBps).toBe(50);
    expect(view.events.at(-1)?.what).toMatch(/^operator: max downtime 1500 ms, bandwidth 50 MiB\/s \(memory(; no disk copy running| and the disk copy of vda)\)$/);
    const outcome = await handle.outcome();
    expect(outcome.status).toBe('migrated');
    expect(outcome.convergenceEvents.some((e) => e.what.startsWith('operator:'))).toBe(true);
  });

  it('an operator switches a running migration to post-copy now', async () => {
    const vm = await w.newVm();
    const handle = await w.ferry.startMigration(input(vm, { convergence: { postCopy: true, progressTimeout: '10m' } }));
    await eventually(async () => (await handle.progress()).phase === 'migrating');
    await new Promise((r) => setTimeout(r, 500));
    const view = await handle.tune({ postCopyNow: true });
    expect(view.postCopyActive).toBe(true);
    expect((await handle.outcome()).status).toBe('migrated');
  });

  it('a post-copy that fails keeps both disks, marks the VM unknown and says how to recover', async () => {
    const vm = await w.newVm();
    w.hv.failPostCopy = true;
    const outcome = await w.ferry.migrate(input(vm, { convergence: { progressTimeout: '2s', postCopy: true, onDeadline: 'post-copy' } }));
    expect(outcome.status).toBe('failed');
    expect(outcome.location).toBe('split');
    expect(outcome.reason).toMatch(/failed in post-copy: .* both disks were kept .* Recover by hand: start the VM on h2/);
    expect(w.hv.host(H2).pools.get(vm.pool)?.volumes.has('disk0.qcow2')).toBe(true); // the up-to-date disk
    expect(w.hv.host(H1).pools.has(vm.pool)).toBe(true);
    expect(await w.inventory.getVm(vm.uuid)).toMatchObject({ state: 'unknown' });
    expect(await w.inventory.getClaim(vm.uuid)).toBeNull();
    expect(w.hv.callsOf('deleteVolume').filter((c) => c.args[0] === vm.pool)).toHaveLength(0);
  });
});
