/**
 * liveMigration on the real Temporal dev server, with the real activities over a real SQLite inventory,
 * and an in-memory hypervisor double (test/support/memory-hypervisor.ts) for fault injection.
 * Every test asserts outcomes: where the VM is, what is left on the target, what the inventory says.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import type { WorkflowFailedError } from '@temporalio/client';
import { MigrationAlreadyRunningError, MigrationRejectedError, type FerryClient } from '../../client';
import type { LiveMigrationInput } from '../../common/validation';
import { workflowsPath } from '../../worker';
import type { Inventory } from '../../inventory';
import type { MemoryHypervisor } from '../support/memory-hypervisor';
import { eventually } from '../support/temporal';
import { DISK, memUri, startWorkflowWorld, type TestVm, type WorkflowWorld, migrationOf } from '../support/workflow-env';

const H1 = memUri('h1');
const H2 = memUri('h2');
/** Histories recorded by an earlier version (protobuf): today's workflow code must replay them unchanged. */
const HISTORY_DIR = path.join(__dirname, 'histories');
const History = temporal.api.history.v1.History;

let world: WorkflowWorld;
let env: WorkflowWorld['env'];
let inventory: Inventory;
let hv: MemoryHypervisor;
let ferry: FerryClient;
const finishedWorkflowIds: string[] = [];
const newVm = () => world.newVm();

const input = migrationOf;

function targetIsClean(vm: TestVm): void {
  const h2 = hv.host(H2);
  expect(h2.pools.has(vm.pool)).toBe(false);
  expect(h2.dirs.has(vm.dir)).toBe(false);
  expect(h2.domains.has(vm.uuid)).toBe(false);
}

async function expectOnSourceAndRunning(vm: TestVm): Promise<void> {
  expect(hv.host(H1).domains.get(vm.uuid)?.state).toBe('running');
  const rec = await inventory.getVm(vm.uuid);
  expect(rec?.host).toBe('h1');
  expect(rec?.state).toBe('running');
  expect(await inventory.getClaim(vm.uuid)).toBeNull();
}

beforeAll(async () => {
  world = await startWorkflowWorld({ hosts: 2, taskQueue: 'ferry-wf-test', uuidPrefix: '00000000' });
  ({ env, inventory, hv, ferry } = world);
}, 120_000);

afterAll(async () => {
  // Record this file's histories on request (FERRY_RECORD_HISTORIES=1) for the replay test of later versions.
  if (world) {
    const histories = await Promise.all(
      finishedWorkflowIds.map(async (id) => ({ workflowId: id, history: await env.client.workflow.getHandle(id).fetchHistory() })),
    );
    if (process.env.FERRY_RECORD_HISTORIES === '1') {
      fs.mkdirSync(HISTORY_DIR, { recursive: true });
      for (const h of histories) {
        fs.writeFileSync(path.join(HISTORY_DIR, `${h.workflowId}.pb`), History.encode(h.history).finish());
      }
    }
  }
  await world?.stop();
}, 120_000);

beforeEach(() => {
  hv.clearFaults();
  hv.migrationMs = 300;
  hv.host(H2).up = true;
});

async function run(vm: TestVm, extra: Partial<LiveMigrationInput> = {}) {
  const handle = await ferry.startMigration(input(vm, extra));
  const outcome = await handle.outcome();
  finishedWorkflowIds.push(handle.workflowId);
  return { handle, outcome };
}

describe('liveMigration workflow (real Temporal, hypervisor double)', () => {
  it('migrates: VM on the target, inventory and history updated, source cleaned', async () => {
    const vm = await newVm();
    const { outcome } = await run(vm);
    expect(outcome.status).toBe('migrated');
    expect(outcome.target).toBe('h2');
    expect(outcome.createAttempts).toEqual({ directory: 1, pool: 1, [`disk:${DISK}`]: 1 });
    expect(outcome.downtimeMs).toBe(25);
    expect(hv.host(H2).domains.get(vm.uuid)?.state).toBe('running');
    expect(hv.host(H1).domains.has(vm.uuid)).toBe(false);
    expect(hv.host(H2).pools.get(vm.pool)?.volumes.has(DISK)).toBe(true);
    // source cleaned
    expect(hv.host(H1).pools.has(vm.pool)).toBe(false);
    expect(outcome.sourceCleaned).toBe(true);
    const rec = await inventory.getVm(vm.uuid);
    expect(rec).toMatchObject({ host: 'h2', state: 'running' });
    expect(await inventory.getClaim(vm.uuid)).toBeNull();
    const [hist] = await inventory.listHistory({ vm: vm.uuid });
    expect(hist).toMatchObject({ result: 'migrated', source: 'h1', target: 'h2', downtimeMs: 25 });
  });

  it('succeeds after k < threshold failures of a create task, counting the attempts', async () => {
    const vm = await newVm();
    hv.fail('recreateVolume', 2, { uri: H2 });
    const { outcome } = await run(vm, { createAttempts: 3 });
    expect(outcome.status).toBe('migrated');
    expect(outcome.createAttempts[`disk:${DISK}`]).toBe(3);
    expect(hv.callsOf('recreateVolume', H2).filter((c) => c.args[1] === DISK && (c.args[0] as string) === vm.pool)).toHaveLength(3);
    expect(hv.host(H2).domains.get(vm.uuid)?.state).toBe('running');
  });

  it('aborts after exactly `threshold` attempts and compensates exactly what it created', async () => {
    const vm = await newVm();
    hv.fail('recreateVolume', Infinity, { uri: H2 });
    const before = hv.calls.length;
    const { outcome } = await run(vm, { createAttempts: 4 });
    expect(outcome.status).toBe('aborted');
    expect(outcome.createAttempts).toEqual({ directory: 1, pool: 1, [`disk:${DISK}`]: 4 });
    expect(outcome.reason).toContain(`disk:${DISK}`);
    expect(outcome.reason).toContain('4 of 4');
    const mine = hv.calls.slice(before).filter((c) => c.uri === H2 && JSON.stringify(c.args).includes(vm.uuid));
    expect(mine.filter((c) => c.method === 'recreateVolume')).toHaveLength(4);
    // compensation, newest first: the volume, the pool, the directory; nothing else
    const undo = mine.filter((c) => ['deleteVolume', 'stopPool', 'removeStorageDirectory'].includes(c.method)).map((c) => c.method);
    expect(undo).toEqual(['deleteVolume', 'stopPool', 'removeStorageDirectory']);
    targetIsClean(vm);
    await expectOnSourceAndRunning(vm);
    const [hist] = await inventory.listHistory({ vm: vm.uuid });
    expect(hist).toMatchObject({ result: 'aborted', target: 'h2' });
  });

  it('a failing pool task compensates only the directory and the pool', async () => {
    const vm = await newVm();
    hv.fail('startPool', Infinity, { uri: H2 });
    const before = hv.calls.length;
    const { outcome } = await run(vm, { createAttempts: 2 });
    expect(outcome.status).toBe('aborted');
    expect(outcome.createAttempts).toEqual({ directory: 1, pool: 2 });
    const undo = hv.calls
      .slice(before)
      .filter((c) => c.uri === H2 && ['deleteVolume', 'stopPool', 'removeStorageDirectory'].includes(c.method))
      .map((c) => c.method);
    expect(undo).toEqual(['stopPool', 'removeStorageDirectory']);
    targetIsClean(vm);
    await expectOnSourceAndRunning(vm);
  });

  it('a non-retryable create failure aborts at once', async () => {
    const vm = await newVm();
    hv.fail('createStorageDirectory', Infinity, { uri: H2, kind: 'invalid', message: 'invalid argument: bad path' });
    const { outcome } = await run(vm, { createAttempts: 5 });
    expect(outcome.status).toBe('aborted');
    expect(outcome.createAttempts).toEqual({ directory: 1 });
    expect(hv.callsOf('createStorageDirectory', H2).filter((c) => c.args[0] === vm.pool)).toHaveLength(1);
    targetIsClean(vm);
    await expectOnSourceAndRunning(vm);
  });

  it('times out: aborts the libvirt job, VM stays on the source, target storage deleted', async () => {
    const vm = await newVm();
    hv.migrationMs = 60_000;
    const { outcome } = await run(vm, { timeout: '2s' });
    expect(outcome.status).toBe('timed-out');
    expect(outcome.reason).toMatch(/timeout of 2\.0 s/);
    expect(hv.callsOf('abortJob', H1).some((c) => c.args[0] === vm.uuid)).toBe(true);
    expect(hv.host(H1).jobs.has(vm.uuid)).toBe(false);
    targetIsClean(vm);
    await expectOnSourceAndRunning(vm);
    const [hist] = await inventory.listHistory({ vm: vm.uuid });
    expect(hist?.result).toBe('timed-out');
  });

  it('operator cancel (Temporal cancel) during the migration compensates', async () => {
    const vm = await newVm();
    hv.migrationMs = 60_000;
    const handle = await ferry.startMigration(input(vm));
    const p = await eventually(async () => {
      const pr = await handle.progress();
      return pr.phase === 'migrating' && pr.migration !== null ? pr : null;
    });
    expect(p.target).toBe('h2');
    expect(p.artifacts.map((a) => a.kind)).toEqual(['directory', 'pool', 'volume']);
    await handle.cancel();
    const outcome = await handle.outcome();
    finishedWorkflowIds.push(handle.workflowId);
    expect(outcome.status).toBe('cancelled');
    targetIsClean(vm);
    await expectOnSourceAndRunning(vm);
  });

  it('operator cancel by signal during the create tasks compensates', async () => {
    const vm = await newVm();
    hv.fail('recreateVolume', Infinity, { uri: H2 });
    const handle = await ferry.startMigration(input(vm, { createAttempts: 10, options: { createRetryInterval: '2s' } }));
    await eventually(async () => (await handle.progress()).phase === 'creating-storage');
    await handle.cancelWithReason('maintenance window closed');
    const outcome = await handle.outcome();
    finishedWorkflowIds.push(handle.workflowId);
    expect(outcome.status).toBe('cancelled');
    expect(outcome.reason).toBe('maintenance window closed');
    targetIsClean(vm);
    await expectOnSourceAndRunning(vm);
  });

  it('refuses a second migration of a running VM, allows it once the first has ended', async () => {
    const vm = await newVm();
    hv.migrationMs = 60_000;
    const first = await ferry.startMigration(input(vm));
    await expect(ferry.startMigration(input(vm))).rejects.toBeInstanceOf(MigrationAlreadyRunningError);
    await expect(ferry.startMigration(input(vm))).rejects.toThrow(/already being migrated/);
    await first.cancel();
    expect((await first.outcome()).status).toBe('cancelled');
    finishedWorkflowIds.push(first.workflowId);
    hv.migrationMs = 200;
    const { outcome } = await run(vm);
    expect(outcome.status).toBe('migrated');
  });

  it('waits for a slot when a limit is reached, says so in the progress query, then proceeds', async () => {
    const first = await newVm();
    const second = await newVm();
    hv.migrationMs = 60_000;
    const a = await ferry.startMigration(input(first));
    await eventually(async () => (await a.progress()).phase === 'migrating');
    const b = await ferry.startMigration(input(second, { limits: { maxInFlight: 1 } }));
    const waiting = await eventually(async () => {
      const p = await b.progress();
      return p.phase === 'waiting-for-slot' ? p : null;
    });
    expect(waiting.waitingFor).toMatch(/1 migrations are in flight in the fleet \(limit 1\)/);
    expect(waiting.artifacts).toEqual([]);
    expect((await inventory.getVm(second.uuid))?.state).toBe('running'); // nothing claimed while waiting
    await a.cancel();
    expect((await a.outcome()).status).toBe('cancelled');
    hv.migrationMs = 200;
    const outcome = await b.outcome();
    finishedWorkflowIds.push(a.workflowId, b.workflowId);
    expect(outcome.status).toBe('migrated');
    expect(outcome.phaseMs['waiting-for-slot']).toBeGreaterThan(0);
  });

  it('gives up waiting for a slot after the queue timeout, having changed nothing', async () => {
    const first = await newVm();
    const second = await newVm();
    hv.migrationMs = 60_000;
    const a = await ferry.startMigration(input(first));
    await eventually(async () => (await a.progress()).phase === 'migrating');
    // the only other host (h2) is busy receiving: a fixed target that is busy means waiting too
    const b = await ferry.startMigration(input(second, { targetHost: 'h2', options: { queueTimeout: '3s' } }));
    await expect(b.outcome()).rejects.toThrow(/no slot within the queue timeout of 3\.0 s: waiting for a target: h2 would fit/);
    await a.cancel();
    await a.outcome();
    finishedWorkflowIds.push(a.workflowId, b.workflowId);
    await expectOnSourceAndRunning({ ...second });
  });

  it('bad input fails at once, non-retryable, with nothing created or changed', async () => {
    const vm = await newVm();
    const calls = hv.calls.length;
    const handle = await env.client.workflow.start('liveMigration', {
      taskQueue: 'ferry-wf-test',
      workflowId: `bad-input-${vm.uuid}`,
      args: [{ sourceHost: '10.0.0.1', vmName: 'vm/../x', vmUuid: 'not-a-uuid', createAttempts: 0, surprise: true }],
    });
    const err = (await handle.result().catch((e: unknown) => e)) as WorkflowFailedError;
    finishedWorkflowIds.push(handle.workflowId);
    expect(err.cause?.message).toMatch(/vmName/);
    expect(err.cause?.message).toMatch(/vmUuid/);
    expect(err.cause?.message).toMatch(/createAttempts/);
    expect(err.cause?.message).toMatch(/unknown option surprise/);
    expect((err.cause as { type?: string }).type).toBe('InvalidInput');
    expect(hv.calls.length).toBe(calls);
    await expectOnSourceAndRunning(vm);
    expect(await inventory.listHistory({ vm: vm.uuid })).toEqual([]);
  });

  it('a UUID that does not match the name is refused before anything changes', async () => {
    const vm = await newVm();
    const handle = await ferry.startMigration({ ...input(vm), vmName: 'someone-else' });
    await expect(handle.outcome()).rejects.toBeInstanceOf(MigrationRejectedError);
    finishedWorkflowIds.push(handle.workflowId);
    await expectOnSourceAndRunning(vm);
    expect(hv.host(H2).pools.has(vm.pool)).toBe(false);
  });

  it('replays recorded histories deterministically', async () => {
    const recorded = fs.existsSync(HISTORY_DIR) ? fs.readdirSync(HISTORY_DIR).filter((f) => f.endsWith('.pb')) : [];
    const histories = [
      ...recorded.map((f) => ({
        workflowId: f.replace(/\.pb$/, ''),
        history: History.decode(fs.readFileSync(path.join(HISTORY_DIR, f))),
      })),
      ...(await Promise.all(
        finishedWorkflowIds.map(async (id) => ({ workflowId: id, history: await env.client.workflow.getHandle(id).fetchHistory() })),
      )),
    ];
    expect(histories.length).toBeGreaterThan(5);
    let replayed = 0;
    for await (const r of Worker.runReplayHistories({ workflowsPath: workflowsPath() }, histories)) {
      expect(r.error, `${r.workflowId}: ${String(r.error)}`).toBeUndefined();
      replayed += 1;
    }
    expect(replayed).toBe(histories.length);
  });
});
