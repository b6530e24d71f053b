import { describe, it, expect } from 'vitest';
import type { HostRecord } from '../../common/types';
import {
  checkHost,
  checkLimits,
  compareCandidates,
  computeUsage,
  formatBytes,
  NO_USAGE,
  placeVm,
  PlacementError,
  scoreHost,
  type HostUsage,
} from '../../inventory/placement';

const MiB = 1024 * 1024;

function host(name: string, over: Partial<HostRecord> = {}): HostRecord {
  return {
    name,
    address: `10.0.0.${name.replace(/\D/g, '') || '9'}`,
    uri: `qemu+tcp://${name}/system`,
    state: 'normal',
    memoryMiB: 1024,
    vcpus: 4,
    storageRoot: '/var/lib/libvirt/images/ferry',
    storageFreeBytes: 10 * 1024 * MiB,
    memoryRatio: 1,
    cpuRatio: 4,
    updatedAt: '2025-01-01T00:00:00.000Z',
    ...over,
  };
}

function usage(over: Partial<HostUsage> = {}): HostUsage {
  return { ...NO_USAGE, inbound: [], ...over };
}

const req = {
  vmUuid: 'uuid-vm1',
  sourceHost: 'h0',
  workflowId: 'wf-1',
  memoryMiB: 128,
  vcpus: 1,
  storageBytes: 64 * MiB,
};

function expectPlacementError(fn: () => unknown): PlacementError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PlacementError);
    return err as PlacementError;
  }
  throw new Error('expected a PlacementError');
}

describe('computeUsage', () => {
  it('sums VMs and claims per host and lists inbound VMs', () => {
    const u = computeUsage(
      [
        { host: 'h1', memoryMiB: 512, vcpus: 2 },
        { host: 'h2', memoryMiB: 100, vcpus: 1 },
      ],
      [
        { host: 'h1', vmUuid: 'a', memoryMiB: 128, vcpus: 1, storageBytes: 10 },
        { host: 'h3', vmUuid: 'b', memoryMiB: 64, vcpus: 2, storageBytes: 20 },
      ],
    );
    expect(u.get('h1')).toEqual({
      vmMemoryMiB: 512,
      vmVcpus: 2,
      claimedMemoryMiB: 128,
      claimedVcpus: 1,
      claimedStorageBytes: 10,
      inbound: ['a'],
    });
    expect(u.get('h2')?.inbound).toEqual([]);
    expect(u.get('h3')).toMatchObject({ vmMemoryMiB: 0, claimedStorageBytes: 20, inbound: ['b'] });
  });
});

describe('checkHost filters', () => {
  it('accepts a host with room', () => {
    expect(checkHost(host('h1'), usage(), req)).toBeNull();
  });

  it('rejects the source host', () => {
    expect(checkHost(host('h0'), usage(), req)).toBe("is the VM's source host");
  });

  it('rejects hosts in maintenance or down', () => {
    expect(checkHost(host('h1', { state: 'maintenance' }), usage(), req)).toBe('is in maintenance');
    expect(checkHost(host('h1', { state: 'down' }), usage(), req)).toBe('is down');
  });

  it('rejects a host already receiving a migration, naming the VM', () => {
    expect(checkHost(host('h1'), usage({ inbound: ['uuid-other'], claimedMemoryMiB: 1 }), req)).toBe(
      'already receiving a migration of uuid-other',
    );
  });

  it('memory: capacity × ratio − VMs − claims must cover the request', () => {
    // 1024 − 800 − 96 = 128: exactly enough.
    expect(checkHost(host('h1'), usage({ vmMemoryMiB: 800 }), { ...req, memoryMiB: 224 })).toBeNull();
    expect(checkHost(host('h1'), usage({ vmMemoryMiB: 897 }), req)).toBe(
      'not enough memory (needs 128 MiB): 127 MiB free of 1 GiB',
    );
    // Claims count as used (the inbound rule fires too: both reasons are given).
    expect(checkHost(host('h1'), usage({ vmMemoryMiB: 800, claimedMemoryMiB: 100, inbound: ['x'] }), req)).toBe(
      'already receiving a migration of x, not enough memory (needs 128 MiB): 124 MiB free of 1 GiB',
    );
    // Overcommit ratio applies to capacity.
    expect(checkHost(host('h1', { memoryRatio: 1.5 }), usage({ vmMemoryMiB: 1400 }), req)).toBeNull();
    expect(checkHost(host('h1', { memoryRatio: 1.5 }), usage({ vmMemoryMiB: 1500 }), req)).toBe(
      'not enough memory (needs 128 MiB): 36 MiB free of 1.5 GiB (overcommit ×1.5)',
    );
  });

  it('vCPUs: vcpus × cpuRatio − VMs − claims must cover the request', () => {
    expect(checkHost(host('h1'), usage({ vmVcpus: 15 }), req)).toBeNull();
    expect(checkHost(host('h1'), usage({ vmVcpus: 16 }), req)).toBe(
      'not enough vCPUs (needs 1): 0 free of 16 (overcommit ×4)',
    );
    expect(checkHost(host('h1', { cpuRatio: 1 }), usage({ vmVcpus: 3, claimedVcpus: 0 }), { ...req, vcpus: 2 })).toBe(
      'not enough vCPUs (needs 2): 1 free of 4',
    );
  });

  it('unknown capacity (never synced) is rejected with the fix', () => {
    expect(checkHost(host('h1', { storageFreeBytes: null }), usage(), req)).toBe(
      'storage capacity unknown: run `ferry inventory sync`',
    );
    expect(checkHost(host('h1', { memoryMiB: 0, vcpus: 0 }), usage(), req)).toBe(
      'memory capacity unknown: run `ferry inventory sync`, vCPU capacity unknown: run `ferry inventory sync`',
    );
  });

  it('storage: free − claimed must cover the request', () => {
    const h = host('h1', { storageFreeBytes: 100 * MiB });
    expect(checkHost(h, usage(), { ...req, storageBytes: 100 * MiB })).toBeNull();
    expect(checkHost(h, usage(), { ...req, storageBytes: 101 * MiB })).toBe(
      'not enough storage under /var/lib/libvirt/images/ferry (needs 101 MiB): 100 MiB free',
    );
    expect(checkHost(h, usage({ claimedStorageBytes: 50 * MiB, inbound: ['x'] }), req)).toBe(
      'already receiving a migration of x, not enough storage under /var/lib/libvirt/images/ferry ' +
        '(needs 64 MiB): 50 MiB free after 50 MiB claimed',
    );
  });

  it('lists every capacity reason at once', () => {
    const h = host('h1', { memoryMiB: 64, storageFreeBytes: 0 });
    expect(checkHost(h, usage({ vmVcpus: 16 }), req)?.split(', ').map((r) => r.split(':')[0])).toEqual([
      'not enough memory (needs 128 MiB)',
      'not enough vCPUs (needs 1)',
      'not enough storage under /var/lib/libvirt/images/ferry (needs 64 MiB)',
    ]);
  });
});

describe('score', () => {
  it('is the fraction of memory and vCPUs free after placement', () => {
    expect(scoreHost(host('h1'), usage({ vmMemoryMiB: 384, vmVcpus: 7 }), { ...req, memoryMiB: 128 })).toEqual({
      memoryFree: 0.5,
      vcpuFree: 0.5,
    });
    expect(scoreHost(host('h1', { memoryMiB: 0, vcpus: 0 }), usage(), req)).toEqual({ memoryFree: 0, vcpuFree: 0 });
  });

  it('prefers the emptiest host by memory fraction, not absolute MiB', () => {
    const big = host('h1', { memoryMiB: 8192 }); // 4096 used: ~48% free after
    const small = host('h2', { memoryMiB: 1024 }); // 0 used: 87.5% free after
    const u = new Map([['h1', usage({ vmMemoryMiB: 4096 })]]);
    const p = placeVm([big, small], u, req);
    expect(p.host.name).toBe('h2');
    expect(p.rejected).toEqual([
      { host: 'h1', reason: 'fits but scored lower: 48% memory / 94% vCPUs free after placement, vs 88% / 94% on h2' },
    ]);
  });

  it('breaks a memory tie on the vCPU fraction, then on the name', () => {
    const a = host('h3', { vcpus: 4 });
    const b = host('h2', { vcpus: 8 });
    const c = host('h1', { vcpus: 8 });
    expect(placeVm([a, b], new Map(), req).host.name).toBe('h2');
    expect(placeVm([a, b, c], new Map(), req).host.name).toBe('h1');
    // Floating point: equal fractions computed from different numbers still tie.
    const x = host('hx', { memoryMiB: 3000 });
    const y = host('hy', { memoryMiB: 300 });
    const u = new Map([
      ['hx', usage({ vmMemoryMiB: 1000 - 128 })],
      ['hy', usage({ vmMemoryMiB: 100 - 128 })],
    ]);
    const sx = { host: x, score: scoreHost(x, u.get('hx') ?? NO_USAGE, req) };
    const sy = { host: y, score: scoreHost(y, u.get('hy') ?? NO_USAGE, req) };
    expect(compareCandidates(sx, sy)).toBeLessThan(0);
    expect(compareCandidates(sy, sx)).toBeGreaterThan(0);
  });

  it('is deterministic whatever the input order', () => {
    const hosts = ['h5', 'h1', 'h4', 'h2', 'h3'].map((n) => host(n));
    expect(placeVm(hosts, new Map(), req).host.name).toBe('h1');
    expect(placeVm([...hosts].reverse(), new Map(), req).host.name).toBe('h1');
  });
});

describe('placeVm', () => {
  it('skips filtered hosts and reports why', () => {
    const p = placeVm(
      [host('h0'), host('h1', { state: 'maintenance' }), host('h2')],
      new Map(),
      req,
    );
    expect(p.host.name).toBe('h2');
    expect(p.rejected).toEqual([
      { host: 'h0', reason: "is the VM's source host" },
      { host: 'h1', reason: 'is in maintenance' },
    ]);
  });

  it('says what is wrong and what to do when nothing fits', () => {
    const e = expectPlacementError(() =>
      placeVm(
        [host('ferry-h1'), host('ferry-h2', { state: 'maintenance' }), host('ferry-h3')],
        new Map([['ferry-h3', usage({ inbound: ['uuid-9'] })]]),
        { ...req, sourceHost: 'ferry-h1', storageBytes: 10 ** 15 },
        'vm1',
      ),
    );
    expect(e.code).toBe('no-host');
    expect(e.message).toMatch(
      /^no host can take vm1 \(128 MiB, 1 vCPU, 909\.5 TiB disk\): ferry-h1: is the VM's source host; ferry-h2: is in maintenance; ferry-h3: already receiving a migration of uuid-9, not enough storage .* — add capacity, finish or cancel running migrations, or pass --target$/,
    );
    expect(e.rejected.map((r) => r.host)).toEqual(['ferry-h1', 'ferry-h2', 'ferry-h3']);
  });

  it('a host that would fit but is busy receiving makes the migration wait (no-slot), not fail', () => {
    const e = expectPlacementError(() =>
      placeVm([host('ferry-h1'), host('ferry-h2')], new Map([['ferry-h2', usage({ inbound: ['uuid-9'] })]]), { ...req, sourceHost: 'ferry-h1' }, 'vm1'),
    );
    expect(e.code).toBe('no-slot');
    expect(e.message).toBe('waiting for a target: ferry-h2 would fit vm1 (128 MiB, 1 vCPU, 64 MiB disk) but is busy receiving migrations');
  });

  it('the inbound limit is configurable', () => {
    const p = placeVm([host('ferry-h1'), host('ferry-h2')], new Map([['ferry-h2', usage({ inbound: ['uuid-9'] })]]), {
      ...req,
      sourceHost: 'ferry-h1',
      limits: { maxOutboundPerHost: 2, maxInboundPerHost: 2, maxInFlight: 5 },
    });
    expect(p.host.name).toBe('ferry-h2');
  });

  it('checkLimits: outbound per source and fleet-wide, not counting the VM itself', () => {
    const claims = [
      { vmUuid: 'a', sourceHost: 's1' },
      { vmUuid: 'b', sourceHost: 's1' },
      { vmUuid: 'c', sourceHost: 's2' },
    ];
    expect(checkLimits(claims, { vmUuid: 'x', sourceHost: 's1' })).toMatch(/s1 is already sending 2 migrations \(limit 2 per source host\)/);
    expect(checkLimits(claims, { vmUuid: 'a', sourceHost: 's1' })).toBeNull();
    expect(checkLimits(claims, { vmUuid: 'x', sourceHost: 's2' })).toBeNull();
    expect(checkLimits(claims, { vmUuid: 'x', sourceHost: 's3', limits: { maxOutboundPerHost: 2, maxInboundPerHost: 1, maxInFlight: 3 } })).toMatch(
      /3 migrations are in flight in the fleet \(limit 3\)/,
    );
  });

  it('reports an empty inventory', () => {
    const e = expectPlacementError(() => placeVm([], new Map(), req));
    expect(e.code).toBe('no-host');
    expect(e.message).toContain('the inventory has no hosts');
  });

  it('fixedTarget: evaluates only that host (by name or address)', () => {
    const hosts = [host('h1'), host('h2', { vcpus: 64 }), host('h3', { address: '192.0.2.3' })];
    const p = placeVm(hosts, new Map(), { ...req, fixedTarget: 'h1' });
    expect(p.host.name).toBe('h1');
    expect(p.rejected).toEqual([]);
    expect(placeVm(hosts, new Map(), { ...req, fixedTarget: '192.0.2.3' }).host.name).toBe('h3');
  });

  it('fixedTarget: reports the failures of that host', () => {
    const e = expectPlacementError(() =>
      placeVm([host('h1', { storageFreeBytes: null }), host('h2')], new Map(), { ...req, fixedTarget: 'h1' }, 'vm1'),
    );
    expect(e.code).toBe('no-host');
    expect(e.rejected).toEqual([{ host: 'h1', reason: 'storage capacity unknown: run `ferry inventory sync`' }]);
    expect(e.message).toBe(
      'h1 cannot take vm1 (128 MiB, 1 vCPU, 64 MiB disk): storage capacity unknown: run `ferry inventory sync` — ' +
        'fix that host, choose another --target, or leave --target out to let Ferry choose',
    );
    const src = expectPlacementError(() => placeVm([host('h0')], new Map(), { ...req, fixedTarget: 'h0' }));
    expect(src.rejected[0]?.reason).toBe("is the VM's source host");
  });

  it('fixedTarget: an unknown host is an error', () => {
    const e = expectPlacementError(() => placeVm([host('h1')], new Map(), { ...req, fixedTarget: 'nope' }));
    expect(e.code).toBe('unknown-host');
    expect(e.message).toContain('nope is not in the inventory');
  });
});

describe('formatBytes', () => {
  it('uses binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536 * MiB)).toBe('1.5 GiB');
    expect(formatBytes(64 * MiB)).toBe('64 MiB');
    expect(formatBytes(-5)).toBe('0 B');
  });
});
