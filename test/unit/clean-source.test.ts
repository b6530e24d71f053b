/**
 * Cleaning the source is idempotent across a worker's death: an attempt killed after it deleted the VM's old
 * volume but before it removed the per-VM pool and directory leaves them behind, and the retry (which no longer
 * finds the volume) must still remove them — under the same proof (this VM's per-VM directory, now empty).
 * Seen on the real lab: test/lab/cluster.lab.test.ts, a worker SIGKILLed during an evacuation.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cleanSourceStorage } from '../../activities/finishing';
import { openInventory, type Inventory } from '../../inventory';
import { MemoryHypervisor } from '../support/memory-hypervisor';

const SRC = 'mem://src';
const TGT = 'mem://tgt';
const ROOT = '/var/lib/libvirt/images/ferry';
const UUID = '11111111-2222-4333-8444-555555555555';
const POOL = `ferry-${UUID}`;
const DIR = `${ROOT}/${UUID}`;
const DISK = { target: 'vda', name: 'disk0.qcow2', path: `${DIR}/disk0.qcow2`, format: 'qcow2' as const, sizeBytes: 64 * 2 ** 20 };
const source = { name: 'src', address: '10.0.0.1', uri: SRC };

describe('cleanSource after a killed attempt', () => {
  let inventory: Inventory;
  let hv: MemoryHypervisor;

  beforeEach(async () => {
    inventory = await openInventory(':memory:');
    await inventory.addHost({ name: 'src', address: source.address, uri: SRC, storageRoot: ROOT, memoryMiB: 4096, vcpus: 4, storageFreeBytes: 2 ** 40 });
    hv = MemoryHypervisor.twoHostsWithVm({ src: SRC, tgt: TGT, uuid: UUID, dir: DIR, pool: POOL });
    hv.hosts.get(SRC)!.domains.delete(UUID); // the VM runs on the target now
  });
  afterEach(async () => {
    await inventory.close();
  });

  it('removes the per-VM pool and directory the first attempt left after deleting the volume', async () => {
    expect(await hv.deleteVolume(SRC, POOL, DISK.name)).toBe(true); // the killed attempt got this far
    const r = await cleanSourceStorage(inventory, hv, { source, vmUuid: UUID, disks: [DISK] });
    expect(r.warnings).toEqual([]);
    expect(r.removed).toEqual([DIR]);
    expect(hv.hosts.get(SRC)!.pools.has(POOL)).toBe(false);
  });

  it('still keeps that directory when something else is in it', async () => {
    expect(await hv.deleteVolume(SRC, POOL, DISK.name)).toBe(true);
    await hv.recreateVolume(SRC, POOL, 'notes.img', 2 ** 20, 'raw');
    const r = await cleanSourceStorage(inventory, hv, { source, vmUuid: UUID, disks: [DISK] });
    expect(r.removed).toEqual([]);
    expect(r.warnings.join(' ')).toMatch(/still holds notes\.img; kept/);
    expect(hv.hosts.get(SRC)!.pools.has(POOL)).toBe(true);
  });
});
