/**
 * The tune update's activity on the in-memory hypervisor: a new bandwidth reaches the memory stream and every
 * running disk copy; in post-copy it is refused, saying why, instead of claiming success.
 */
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import type { TuneResult } from '../../activities/migration';
import { openInventory, type Inventory } from '../../inventory';
import { MemoryHypervisor } from '../support/memory-hypervisor';

const UUID = '7a1c0b5e-8d2a-4c11-9a5e-2b7d3c4e5f61';
const SRC = 'qemu+tcp://10.0.0.1/system';
const TGT = 'qemu+tcp://10.0.0.2/system';
const DIR = `/var/lib/libvirt/images/ferry/${UUID}`;
const POOL = `ferry-${UUID}`;
const source = { name: 'src', address: '10.0.0.1', uri: SRC };

describe('tuneMigration', () => {
  let inventory: Inventory;
  let hv: MemoryHypervisor;
  let acts: ReturnType<typeof createActivities>;
  let migration: Promise<unknown>;
  const env = new MockActivityEnvironment({ activityType: 'tuneMigration', workflowExecution: { workflowId: 'wf', runId: 'r' } });

  beforeAll(async () => {
    inventory = await openInventory(':memory:');
  });
  afterAll(async () => {
    await inventory.close();
  });

  beforeEach(() => {
    hv = MemoryHypervisor.twoHostsWithVm({ src: SRC, tgt: TGT, uuid: UUID, dir: DIR, pool: POOL });
    hv.host(TGT).domains.delete(UUID);
    hv.migrationMs = 2_000; // the disk copy runs for the first second
    acts = createActivities({ inventory, hypervisor: hv });
    migration = hv.migrate(SRC, UUID, TGT, { bandwidthMiBps: 2, copyDisks: ['vda'] }).catch(() => undefined);
  });
  afterEach(async () => {
    await hv.abortJob(SRC, UUID);
    await migration;
  });

  it('during the disk copy: the bandwidth reaches the memory stream and the copy of vda', async () => {
    expect((await hv.diskCopyJobs(SRC, UUID, ['vda']))[0]?.bandwidthMiBps).toBe(2);
    const r = await env.run(acts.tuneMigration, { source, vmUuid: UUID, bandwidthMiBps: 200 });
    expect(r).toMatchObject({ bandwidthMiBps: 200, diskCopies: [{ target: 'vda', bandwidthMiBps: 200 }] });
    expect(hv.calls.map((c) => c.method)).toEqual(expect.arrayContaining(['setMigrationBandwidth', 'setDiskCopyBandwidth']));
    expect((await hv.diskCopyJobs(SRC, UUID, ['vda']))[0]?.bandwidthMiBps).toBe(200);
  });

  it('after the disk copy: memory only, and the result says no disk copy was running', async () => {
    await new Promise((r) => setTimeout(r, 1_100));
    const r = (await env.run(acts.tuneMigration, { source, vmUuid: UUID, bandwidthMiBps: 50 })) as TuneResult;
    expect(r.diskCopies).toEqual([]);
  });

  it('a max-downtime change alone touches no bandwidth', async () => {
    const r = (await env.run(acts.tuneMigration, { source, vmUuid: UUID, maxDowntimeMs: 900 })) as TuneResult;
    expect(r).toMatchObject({ maxDowntimeMs: 900, bandwidthMiBps: null });
    expect(r.diskCopies).toBeUndefined();
    expect(hv.calls.map((c) => c.method)).not.toContain('setDiskCopyBandwidth');
  });

  it('in post-copy a bandwidth change is refused with the reason, not claimed', async () => {
    const dom = hv.host(SRC).domains.get(UUID)!;
    hv.host(SRC).domains.set(UUID, { ...dom, state: 'paused', stateReason: 'post-copy' });
    const err = await env.run(acts.tuneMigration, { source, vmUuid: UUID, bandwidthMiBps: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).nonRetryable).toBe(true);
    expect((err as Error).message).toMatch(/in post-copy.*Ferry does not change it/);
    expect(hv.calls.map((c) => c.method)).not.toContain('setMigrationBandwidth');
  });
});
