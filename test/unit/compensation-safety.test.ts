/**
 * The target-side deletions of compensation (deleteDisk, stopStoragePool, removeStorageDirectory) never touch
 * storage a live VM uses, and do not give up on a leftover that libvirt is about to remove.
 *
 * Seen on the real lab (test/faults/infrastructure.test.ts): after the target's libvirtd is killed mid-migration
 * and restarted, it lists the incoming QEMU as a transient domain "paused (migrating)" until it kills it. A
 * deletion that hit that window used to refuse for good (UnsafeCleanup) and leave the target's volume, pool and
 * directory behind; it now waits (a retryable failure) until the domain is gone.
 *
 * Seen on the real lab too (test/faults/storage.test.ts): a pool of the VM's name defined on ANOTHER directory
 * of the target made the directory task refuse, and compensation then removed that other pool with its files.
 */
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities';
import { openInventory, type Inventory } from '../../inventory';
import { MemoryHypervisor } from '../support/memory-hypervisor';

const SRC = 'mem://src';
const TGT = 'mem://tgt';
const UUID = '11111111-2222-4333-8444-555555555555';
const POOL = `ferry-${UUID}`;
const DIR = `/var/lib/libvirt/images/ferry/${UUID}`;
const target = { name: 'tgt', address: '10.0.0.2', uri: TGT };

describe('compensation deletions on the target', () => {
  let inventory: Inventory;
  let hv: MemoryHypervisor;
  let acts: ReturnType<typeof createActivities>;
  const env = new MockActivityEnvironment({ activityType: 'deleteDisk', workflowExecution: { workflowId: 'wf', runId: 'r' } });

  beforeAll(async () => {
    inventory = await openInventory(':memory:');
  });
  afterAll(async () => {
    await inventory.close();
  });

  async function world(domainOnTarget: { state: 'running' | 'paused'; persistent: boolean; reason: string } | null): Promise<void> {
    // the target: what the create tasks made (pool, volume), and maybe a domain
    hv = MemoryHypervisor.twoHostsWithVm({ src: SRC, tgt: TGT, uuid: UUID, dir: DIR, pool: POOL });
    const dom = hv.host(TGT).domains.get(UUID)!;
    if (domainOnTarget === null) hv.host(TGT).domains.delete(UUID);
    else Object.assign(dom, { state: domainOnTarget.state, persistent: domainOnTarget.persistent, stateReason: domainOnTarget.reason });
    acts = createActivities({ inventory, hypervisor: hv });
    // what the create tasks of this run ('wf', 'r') recorded as they made them (provenance)
    const run = { host: 'tgt', pool: POOL, vmUuid: UUID, workflowId: 'wf', runId: 'r' };
    await inventory.recordArtifact({ ...run, kind: 'directory', path: DIR }, 'created');
    await inventory.recordArtifact({ ...run, kind: 'pool', path: DIR }, 'created');
    await inventory.recordArtifact({ ...run, kind: 'volume', path: `${DIR}/disk0.qcow2` }, 'created');
  }

  async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
    const r = await p.then(
      () => null,
      (e: unknown) => e,
    );
    if (!(r instanceof ApplicationFailure)) throw new Error(`expected an ApplicationFailure, got ${String(r)}`);
    return r;
  }

  const base = { target, vmUuid: UUID, pool: POOL };
  const volumes = () => [...(hv.host(TGT).pools.get(POOL)?.volumes.keys() ?? [])];

  it('no domain on the target: the volume, pool and directory are removed', async () => {
    await world(null);
    await env.run(acts.deleteDisk, { ...base, name: 'disk0.qcow2' });
    expect(volumes()).toEqual([]);
    await env.run(acts.stopStoragePool, base);
    await env.run(acts.removeStorageDirectory, base);
    expect(hv.host(TGT).pools.has(POOL)).toBe(false);
    expect(hv.host(TGT).dirs.has(DIR)).toBe(false);
  });

  it('the VM runs on the target: refused for good (UnsafeCleanup), nothing deleted', async () => {
    await world({ state: 'running', persistent: true, reason: 'migrated' });
    const f = await failureOf(env.run(acts.deleteDisk, { ...base, name: 'disk0.qcow2' }));
    expect(f.type).toBe('UnsafeCleanup');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toMatch(/refusing to delete volume disk0\.qcow2 on tgt: VM .* is running there/);
    expect(volumes()).toEqual(['disk0.qcow2']);
  });

  it('a persistent domain paused on the target (the moved VM, paused by someone): refused for good', async () => {
    await world({ state: 'paused', persistent: true, reason: 'user' });
    const f = await failureOf(env.run(acts.removeStorageDirectory, base));
    expect(f.type).toBe('UnsafeCleanup');
    expect(f.nonRetryable).toBe(true);
    expect(hv.host(TGT).pools.has(POOL)).toBe(true);
  });

  it('the transient "paused (migrating)" domain of an incoming migration: retryable wait, nothing deleted; then removed once it is gone', async () => {
    await world({ state: 'paused', persistent: false, reason: 'migrating' });
    for (const run of [
      () => env.run(acts.deleteDisk, { ...base, name: 'disk0.qcow2' }),
      () => env.run(acts.stopStoragePool, base),
      () => env.run(acts.removeStorageDirectory, base),
    ]) {
      const f = await failureOf(run());
      expect(f.nonRetryable).toBe(false);
      expect(f.type).toBe('IncomingDomainPresent');
      expect(f.message).toMatch(/waiting to .* on tgt: it still has the paused, transient domain of an incoming migration/);
    }
    expect(volumes()).toEqual(['disk0.qcow2']);
    // libvirt drops the incoming domain: the retry goes through
    hv.host(TGT).domains.delete(UUID);
    await env.run(acts.deleteDisk, { ...base, name: 'disk0.qcow2' });
    await env.run(acts.removeStorageDirectory, base);
    expect(hv.host(TGT).pools.has(POOL)).toBe(false);
  });

  it('a pool of our name on ANOTHER directory (the directory task refused it): removeStorageDirectory leaves it and its files alone', async () => {
    await world(null);
    const elsewhere = `${DIR}-kept`;
    const pool = hv.host(TGT).pools.get(POOL)!;
    // the pool (and its file) on another directory
    const movePool = (to: string) => {
      const from = hv.files(hv.host(TGT), pool.path);
      const dest = hv.files(hv.host(TGT), to);
      for (const [k, v] of from) dest.set(k, v);
      from.clear();
      pool.path = to;
    };
    movePool(elsewhere);
    hv.host(TGT).dirs.add(elsewhere);
    await env.run(acts.removeStorageDirectory, { ...base, path: DIR });
    expect(hv.host(TGT).pools.get(POOL)?.path).toBe(elsewhere);
    expect(volumes()).toEqual(['disk0.qcow2']);
    expect(hv.host(TGT).dirs.has(elsewhere)).toBe(true);
    // on the VM's own directory it is removed — once it is empty (a directory Ferry made is removed only then)
    movePool(DIR);
    const full = await failureOf(env.run(acts.removeStorageDirectory, { ...base, path: `${DIR}/` }));
    expect(full.message).toMatch(/still holds disk0\.qcow2; kept/);
    await env.run(acts.deleteDisk, { ...base, name: 'disk0.qcow2' });
    await env.run(acts.removeStorageDirectory, { ...base, path: `${DIR}/` });
    expect(hv.host(TGT).pools.has(POOL)).toBe(false);
  });
});
