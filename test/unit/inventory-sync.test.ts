/** Inventory sync from libvirt (a fake hypervisor), on every backend (test/support/inventory-backends.ts). */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import type { DomainInfo, HostCapacity, Hypervisor } from '../../hypervisor/port';
import { LibvirtError } from '../../hypervisor/errors';
import { openInventory } from '../../inventory/index';
import type { Inventory } from '../../inventory/store';
import { domainToVm, syncInventory } from '../../inventory/sync';
import { BACKENDS, freshDatabase, skipBackend, type TestDatabase } from '../support/inventory-backends';

const GiB = 1024 ** 3;

/** In-memory hosts keyed by URI; an absent URI is unreachable. */
class FakeHypervisor implements Pick<Hypervisor, 'hostCapacity' | 'listDomains'> {
  readonly calls: string[] = [];
  constructor(readonly hosts: Map<string, { capacity: HostCapacity; domains: DomainInfo[] }>) {}

  async hostCapacity(uri: string, storageRoot: string): Promise<HostCapacity> {
    this.calls.push(`hostCapacity ${uri} ${storageRoot}`);
    return this.host(uri).capacity;
  }

  async listDomains(uri: string): Promise<DomainInfo[]> {
    this.calls.push(`listDomains ${uri}`);
    return this.host(uri).domains;
  }

  private host(uri: string): { capacity: HostCapacity; domains: DomainInfo[] } {
    const h = this.hosts.get(uri);
    if (!h) throw new LibvirtError('connection', `failed to connect to the hypervisor ${uri}: Connection refused`);
    return h;
  }
}

function domain(uuid: string, over: Partial<DomainInfo> = {}): DomainInfo {
  return {
    uuid,
    name: `vm-${uuid}`,
    state: 'running',
    stateReason: 'booted',
    persistent: true,
    memoryKiB: 1024 * 1024,
    vcpus: 2,
    disks: [{ target: 'vda', path: `/var/lib/libvirt/images/ferry/${uuid}/disk0.qcow2`, format: 'qcow2', capacityBytes: 10 * GiB }],
    files: [`/var/lib/libvirt/images/ferry/${uuid}/disk0.qcow2`],
    ...over,
  };
}

function capacity(storage: boolean): HostCapacity {
  return {
    hostname: 'x',
    memoryKiB: 16 * 1024 * 1024 + 512, // rounds down to 16384 MiB
    cpus: 8,
    freeMemoryKiB: 0,
    storage: storage ? { pool: 'ferry', path: '/var/lib/libvirt/images/ferry', capacityBytes: 100 * GiB, availableBytes: 60 * GiB } : null,
  };
}

let db: TestDatabase;
let inv: Inventory;

describe('domainToVm', () => {
  it('maps memory (KiB -> MiB, rounded up), state, and disks', () => {
    const vm = domainToVm(domain('u1', { memoryKiB: 1024 * 1024 + 1, state: 'shutoff' }), 'h1');
    expect(vm).toEqual({
      uuid: 'u1',
      name: 'vm-u1',
      host: 'h1',
      memoryMiB: 1025,
      vcpus: 2,
      state: 'stopped',
      disks: [
        {
          target: 'vda',
          name: 'disk0.qcow2',
          path: '/var/lib/libvirt/images/ferry/u1/disk0.qcow2',
          format: 'qcow2',
          sizeBytes: 10 * GiB,
        },
      ],
    });
    expect(domainToVm(domain('u', { state: 'paused' }), 'h').state).toBe('paused');
    expect(domainToVm(domain('u', { state: 'running' }), 'h').state).toBe('running');
    expect(domainToVm(domain('u', { state: 'nostate' }), 'h').state).toBe('unknown');
  });
});

for (const backend of BACKENDS) {
  describe.skipIf(skipBackend(backend))(backend, () => {
    beforeEach(async () => {
      db = await freshDatabase(backend);
      inv = await openInventory(db.location);
      for (const n of [1, 2, 3]) {
        await inv.addHost({ name: `h${n}`, address: `10.0.0.${n}`, uri: `qemu+tcp://10.0.0.${n}/system` });
      }
    });

    afterEach(async () => {
      try {
        await inv?.close();
      } finally {
        await db?.drop();
      }
    });

    describe('syncInventory', () => {
      it('records every reachable host and reports the unreachable one', async () => {
        const hv = new FakeHypervisor(
          new Map([
            ['qemu+tcp://10.0.0.1/system', { capacity: capacity(true), domains: [domain('a'), domain('b')] }],
            ['qemu+tcp://10.0.0.3/system', { capacity: capacity(false), domains: [domain('c', { state: 'paused' })] }],
          ]),
        );
        const results = await syncInventory(inv, hv);
        expect(results).toEqual([
          { host: 'h1', added: ['vm-a', 'vm-b'], updated: [], removed: [], skipped: [] },
          {
            host: 'h2',
            added: [],
            updated: [],
            removed: [],
            skipped: [],
            error: 'failed to connect to the hypervisor qemu+tcp://10.0.0.2/system: Connection refused',
          },
          { host: 'h3', added: ['vm-c'], updated: [], removed: [], skipped: [] },
        ]);
        expect(await inv.getHost('h1')).toMatchObject({ memoryMiB: 16384, vcpus: 8, storageFreeBytes: 60 * GiB });
        expect(await inv.getHost('h2')).toMatchObject({ memoryMiB: 0, vcpus: 0, storageFreeBytes: null });
        expect(await inv.getHost('h3')).toMatchObject({ memoryMiB: 16384, storageFreeBytes: null });
        expect((await inv.listVms()).map((v) => [v.uuid, v.host, v.state, v.memoryMiB])).toEqual([
          ['a', 'h1', 'running', 1024],
          ['b', 'h1', 'running', 1024],
          ['c', 'h3', 'paused', 1024],
        ]);
        expect(hv.calls).toContain('hostCapacity qemu+tcp://10.0.0.1/system /var/lib/libvirt/images/ferry');
      });

      it('syncs only the selected hosts (by name or address) and rejects unknown ones', async () => {
        const hv = new FakeHypervisor(
          new Map([
            ['qemu+tcp://10.0.0.1/system', { capacity: capacity(true), domains: [] }],
            ['qemu+tcp://10.0.0.2/system', { capacity: capacity(true), domains: [domain('x')] }],
          ]),
        );
        const results = await syncInventory(inv, hv, { hosts: ['10.0.0.2'] });
        expect(results.map((r) => [r.host, r.added])).toEqual([['h2', ['vm-x']]]);
        expect(hv.calls).toEqual(['hostCapacity qemu+tcp://10.0.0.2/system /var/lib/libvirt/images/ferry', 'listDomains qemu+tcp://10.0.0.2/system']);
        await expect(syncInventory(inv, hv, { hosts: ['h1', 'h9'] })).rejects.toThrow('not in the inventory: h9');
      });

      it('a second sync reports updates and removals', async () => {
        const hosts = new Map([['qemu+tcp://10.0.0.1/system', { capacity: capacity(true), domains: [domain('a'), domain('b')] }]]);
        const hv = new FakeHypervisor(hosts);
        await syncInventory(inv, hv, { hosts: ['h1'] });
        hosts.set('qemu+tcp://10.0.0.1/system', { capacity: capacity(true), domains: [domain('a', { vcpus: 4 })] });
        expect(await syncInventory(inv, hv, { hosts: ['h1'] })).toEqual([
          { host: 'h1', added: [], updated: ['vm-a'], removed: ['vm-b'], skipped: [] },
        ]);
      });
    });
  });
}
