/**
 * Bad input, end to end (issue 4): every case goes through the REAL workflow on the real lab (started with the
 * raw input through the Temporal client, as the Web UI or another program could), and must fail at once with a
 * clear, non-retryable error of the right type; nothing may be created on any lab host (pools and storage
 * directories compared before/after) and nothing may change in the inventory (hosts, VMs, claims, history).
 * Where Ferry's own client refuses the input before starting anything, that is checked too (and that it
 * started no workflow). One shared lab for all cases.
 */
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputError, MigrationAlreadyRunningError } from '../../client';
import type { LabVm } from '../../lab';
import {
  canRunLab,
  inventorySnapshot,
  startFaultLab,
  storageSnapshot,
  type FaultLab,
} from '../support/fault-harness';
import { eventually } from '../support/temporal';

type Case = {
  name: string;
  /** The raw workflow input (built once the lab is up). */
  input: (c: Ctx) => unknown;
  type: string;
  message: RegExp;
  /** Inventory changes made before the run (and undone after); the snapshot is taken after them. */
  setup?: (c: Ctx) => Promise<() => Promise<void>>;
  /** Whether FerryClient refuses it before starting anything (validation). Default: type === InvalidInput. */
  clientRefuses?: boolean;
};

interface Ctx {
  f: FaultLab;
  vm1: LabVm;
  vm2: LabVm;
  h1: { name: string; address: string };
  h2: { name: string; address: string };
}

const ok = (c: Ctx, extra: Record<string, unknown> = {}) => ({
  sourceHost: c.h1.address,
  vmName: c.vm1.name,
  vmUuid: c.vm1.uuid,
  ...extra,
});

const hostState = (state: 'maintenance' | 'down') => async (c: Ctx) => {
  await c.f.inventory.setHostState(c.h2.name, state);
  return async () => {
    await c.f.inventory.setHostState(c.h2.name, 'normal');
  };
};

const CASES: Case[] = [
  // the VM and the hosts
  { name: 'unknown VM (a UUID the inventory does not know)', input: (c) => ok(c, { vmUuid: randomUUID() }), type: 'VmNotFound', message: /no VM with UUID .* in the inventory/ },
  { name: 'UUID that does not match the name', input: (c) => ok(c, { vmUuid: c.vm2.uuid }), type: 'VmMismatch', message: /is named "vm2" in the inventory, not "vm1"/ },
  { name: 'VM not on the given source', input: (c) => ok(c, { sourceHost: c.h2.address }), type: 'VmMismatch', message: /runs on .* according to the inventory, not on/ },
  { name: 'unknown source host', input: (c) => ok(c, { sourceHost: '10.99.99.99' }), type: 'InvalidInput', message: /source host "10\.99\.99\.99" is not in the inventory/, clientRefuses: false },
  { name: 'target equal to source (same text)', input: (c) => ok(c, { targetHost: c.h1.address }), type: 'InvalidInput', message: /targetHost is the source host/ },
  { name: 'target equal to source (its name, source given by address)', input: (c) => ok(c, { targetHost: c.h1.name }), type: 'NoTargetHost', message: /source host/i },
  { name: 'unknown target host', input: (c) => ok(c, { targetHost: 'no-such-host' }), type: 'NoTargetHost', message: /no-such-host/ },
  { name: 'target in maintenance', input: (c) => ok(c, { targetHost: c.h2.name }), setup: hostState('maintenance'), type: 'NoTargetHost', message: /maintenance/ },
  { name: 'target down', input: (c) => ok(c, { targetHost: c.h2.name }), setup: hostState('down'), type: 'NoTargetHost', message: /down/ },
  { name: 'the only other host in maintenance (no target given)', input: (c) => ok(c), setup: hostState('maintenance'), type: 'NoTargetHost', message: /maintenance/ },
  {
    name: 'target without capacity (memory)',
    input: (c) => ok(c, { targetHost: c.h2.name }),
    setup: async (c) => {
      const before = (await c.f.inventory.getHost(c.h2.name))!;
      await c.f.inventory.updateHostCapacity(c.h2.name, { memoryMiB: 64, vcpus: before.vcpus, storageFreeBytes: before.storageFreeBytes });
      return async () => {
        await c.f.inventory.updateHostCapacity(c.h2.name, { memoryMiB: before.memoryMiB, vcpus: before.vcpus, storageFreeBytes: before.storageFreeBytes });
      };
    },
    type: 'NoTargetHost',
    message: /memory/i,
  },
  {
    name: 'target without capacity (storage)',
    input: (c) => ok(c, { targetHost: c.h2.name }),
    setup: async (c) => {
      const before = (await c.f.inventory.getHost(c.h2.name))!;
      await c.f.inventory.updateHostCapacity(c.h2.name, { memoryMiB: before.memoryMiB, vcpus: before.vcpus, storageFreeBytes: 1024 * 1024 });
      return async () => {
        await c.f.inventory.updateHostCapacity(c.h2.name, { memoryMiB: before.memoryMiB, vcpus: before.vcpus, storageFreeBytes: before.storageFreeBytes });
      };
    },
    type: 'NoTargetHost',
    message: /storage/i,
  },
  // identifiers
  { name: 'malformed UUID', input: (c) => ok(c, { vmUuid: 'not-a-uuid' }), type: 'InvalidInput', message: /vmUuid must be a UUID/ },
  { name: 'UUID with a trailing path', input: (c) => ok(c, { vmUuid: `${c.vm1.uuid}/../x` }), type: 'InvalidInput', message: /vmUuid must be a UUID/ },
  { name: 'name with "/"', input: (c) => ok(c, { vmName: 'vm/1' }), type: 'InvalidInput', message: /vmName must be/ },
  { name: 'name ".."', input: (c) => ok(c, { vmName: '..' }), type: 'InvalidInput', message: /vmName must be/ },
  { name: 'name with ".." inside', input: (c) => ok(c, { vmName: 'vm1..x' }), type: 'InvalidInput', message: /vmName must be/ },
  { name: 'name with a space', input: (c) => ok(c, { vmName: 'vm 1' }), type: 'InvalidInput', message: /vmName must be/ },
  { name: "name with a single quote", input: (c) => ok(c, { vmName: "vm1'" }), type: 'InvalidInput', message: /vmName must be/ },
  { name: 'name with a double quote', input: (c) => ok(c, { vmName: 'vm1"' }), type: 'InvalidInput', message: /vmName must be/ },
  { name: 'name with "<"', input: (c) => ok(c, { vmName: 'vm1<x>' }), type: 'InvalidInput', message: /vmName must be/ },
  { name: 'name with "&"', input: (c) => ok(c, { vmName: 'vm1&x' }), type: 'InvalidInput', message: /vmName must be/ },
  { name: 'name with a newline', input: (c) => ok(c, { vmName: 'vm1\nx' }), type: 'InvalidInput', message: /vmName must be/ },
  { name: 'name with a NUL byte', input: (c) => ok(c, { vmName: 'vm1\u0000' }), type: 'InvalidInput', message: /vmName must be/ },
  { name: 'name of 65 characters', input: (c) => ok(c, { vmName: 'v'.repeat(65) }), type: 'InvalidInput', message: /vmName must be 1-64 characters/ },
  { name: 'name of 100,000 characters', input: (c) => ok(c, { vmName: 'v'.repeat(100_000) }), type: 'InvalidInput', message: /vmName must be 1-64 characters/ },
  { name: 'empty name', input: (c) => ok(c, { vmName: '' }), type: 'InvalidInput', message: /vmName must be/ },
  { name: 'source host with shell characters', input: (c) => ok(c, { sourceHost: '10.0.0.1;reboot' }), type: 'InvalidInput', message: /sourceHost must be a host name or address/ },
  { name: 'target host with "$(…)"', input: (c) => ok(c, { targetHost: '$(reboot)' }), type: 'InvalidInput', message: /targetHost must be a host name or address/ },
  // thresholds, timeouts, bandwidth
  { name: 'createAttempts 0', input: (c) => ok(c, { createAttempts: 0 }), type: 'InvalidInput', message: /createAttempts must be at least 1/ },
  { name: 'createAttempts negative', input: (c) => ok(c, { createAttempts: -3 }), type: 'InvalidInput', message: /createAttempts must be at least 1/ },
  { name: 'createAttempts huge', input: (c) => ok(c, { createAttempts: 1e9 }), type: 'InvalidInput', message: /createAttempts must be at most 10/ },
  { name: 'createAttempts not whole', input: (c) => ok(c, { createAttempts: 2.5 }), type: 'InvalidInput', message: /createAttempts must be a whole number/ },
  { name: 'createAttempts as a string', input: (c) => ok(c, { createAttempts: '3' }), type: 'InvalidInput', message: /createAttempts must be a whole number/ },
  { name: 'timeout 0s', input: (c) => ok(c, { timeout: '0s' }), type: 'InvalidInput', message: /timeout 0s is out of range/ },
  { name: 'timeout negative', input: (c) => ok(c, { timeout: '-5s' }), type: 'InvalidInput', message: /timeout "-5s" is not a duration/ },
  { name: 'timeout huge', input: (c) => ok(c, { timeout: '100000h' }), type: 'InvalidInput', message: /timeout 100000h is out of range/ },
  { name: 'timeout unparsable ("soon")', input: (c) => ok(c, { timeout: 'soon' }), type: 'InvalidInput', message: /timeout "soon" is not a duration/ },
  { name: 'timeout unparsable ("5 min")', input: (c) => ok(c, { timeout: '5 min' }), type: 'InvalidInput', message: /timeout "5 min" is not a duration/ },
  { name: 'timeout as a number', input: (c) => ok(c, { timeout: 300 }), type: 'InvalidInput', message: /timeout/ },
  { name: 'create retry interval unparsable', input: (c) => ok(c, { options: { createRetryInterval: 'fast' } }), type: 'InvalidInput', message: /options\.createRetryInterval "fast" is not a duration/ },
  { name: 'bandwidth 0', input: (c) => ok(c, { bandwidthMiBps: 0 }), type: 'InvalidInput', message: /bandwidthMiBps must be at least 1/ },
  { name: 'bandwidth negative', input: (c) => ok(c, { bandwidthMiBps: -10 }), type: 'InvalidInput', message: /bandwidthMiBps must be at least 1/ },
  { name: 'bandwidth huge', input: (c) => ok(c, { bandwidthMiBps: 1e12 }), type: 'InvalidInput', message: /bandwidthMiBps must be at most/ },
  // shape
  { name: 'unknown option (top level)', input: (c) => ok(c, { force: true }), type: 'InvalidInput', message: /unknown option force/ },
  { name: 'unknown option (in options)', input: (c) => ok(c, { options: { skipChecks: true } }), type: 'InvalidInput', message: /unknown option options\.skipChecks/ },
  { name: 'missing vmUuid', input: (c) => ({ sourceHost: c.h1.address, vmName: c.vm1.name }), type: 'InvalidInput', message: /vmUuid is required/ },
  { name: 'input is a string', input: () => 'vm1', type: 'InvalidInput', message: /the input must be one JSON object/ },
  { name: 'input is an array', input: (c) => [ok(c)], type: 'InvalidInput', message: /the input must be one JSON object/ },
  { name: 'input is null', input: () => null, type: 'InvalidInput', message: /the input must be one JSON object/ },
  { name: 'several problems at once (all listed)', input: (c) => ok(c, { vmUuid: 'x', createAttempts: 0, timeout: 'soon' }), type: 'InvalidInput', message: /vmUuid must be a UUID.*createAttempts must be at least 1.*timeout "soon"/ },
];

describe.skipIf(!canRunLab)('bad input end to end: refused, nothing created, nothing changed (real lab)', () => {
  let c: Ctx;
  let n = 0;

  beforeAll(async () => {
    const f = await startFaultLab({ hosts: 2, vms: 2 });
    const [h1, h2] = f.lab.hosts;
    const [vm1, vm2] = f.lab.vms;
    c = { f, vm1: vm1!, vm2: vm2!, h1: h1!, h2: h2! };
  }, 300_000);

  afterAll(async () => {
    console.log(`bad inputs tried end to end: ${n}`);
    await c?.f.stop();
  }, 120_000);

  async function snapshot(): Promise<unknown> {
    return { storage: await storageSnapshot(c.f), inventory: await inventorySnapshot(c.f.inventory) };
  }

  async function runRaw(input: unknown, workflowId: string): Promise<ApplicationFailure> {
    const handle = await c.f.client.workflow.start('liveMigration', { taskQueue: c.f.taskQueue, workflowId, args: [input] });
    const err = await handle.result().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    // no activity on any host before validation failed: at most the inventory/libvirt reads of steps 2-3
    const history = await handle.fetchHistory();
    const scheduled = (history.events ?? [])
      .map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name)
      .filter((x): x is string => typeof x === 'string');
    expect(scheduled.filter((a) => !['readVm', 'claimTarget'].includes(a))).toEqual([]);
    return cause as ApplicationFailure;
  }

  it.each(CASES)('$name', async (tc) => {
    n += 1;
    const undo = tc.setup ? await tc.setup(c) : null;
    try {
      const before = await snapshot();
      const input = tc.input(c);
      const clientRefuses = tc.clientRefuses ?? tc.type === 'InvalidInput';
      if (clientRefuses) {
        // Ferry's client refuses before starting anything
        const listed = async () => (await c.f.client.workflowService.countWorkflowExecutions({ namespace: 'default' })).count?.toString();
        const count = await listed();
        await expect(c.f.ferry.startMigration(input as never)).rejects.toBeInstanceOf(InputError);
        expect(await listed()).toBe(count);
      }
      const failure = await runRaw(input, `bad-input-${n}-${randomUUID()}`);
      expect(failure.type).toBe(tc.type);
      expect(failure.nonRetryable).toBe(true);
      expect(failure.message).toMatch(tc.message);
      expect(await snapshot()).toEqual(before);
    } finally {
      await undo?.();
    }
  });

  it('a VM already migrating: the client refuses a second migration; a raw second workflow fails VmBusy; nothing changes', async () => {
    n += 2;
    const { f, vm1, h1 } = c;
    // a slow migration of vm1 (1 MiB/s): it holds vm1 in "migrating" with its target claimed
    const first = await f.ferry.startMigration({ sourceHost: h1.address, vmName: vm1.name, vmUuid: vm1.uuid, bandwidthMiBps: 1, timeout: '3m' });
    await eventually(async () => {
      const p = await first.progress();
      return p.phase === 'migrating' && p.migration !== null;
    }, 60_000);
    const before = await snapshot();

    await expect(f.ferry.startMigration({ sourceHost: h1.address, vmName: vm1.name, vmUuid: vm1.uuid })).rejects.toBeInstanceOf(
      MigrationAlreadyRunningError,
    );
    const failure = await runRaw({ sourceHost: h1.address, vmName: vm1.name, vmUuid: vm1.uuid }, `bad-input-busy-${randomUUID()}`);
    expect(failure.type).toBe('VmBusy');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toMatch(/already being migrated/);
    expect(await snapshot()).toEqual(before);

    // the first one is unharmed: cancel it, it compensates
    await first.cancelWithReason('bad-input test done');
    const outcome = await first.outcome();
    expect(outcome.status).toBe('cancelled');
    expect(await f.inventory.getVm(vm1.uuid)).toMatchObject({ host: h1.name, state: 'running' });
  }, 180_000);
});
