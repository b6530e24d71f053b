/**
 * The lab's Linux guest without a lab: the record format the verifier reads (the same layout as
 * lab/guest/linux/record.go writes), holes and damage found, the domain XML for direct kernel boot and a bridged
 * NIC, the workload's limits, and `ferry migrate`'s flags reaching the workflow input (its convergence controls,
 * --sync-disk-writes among them, were once parsed and dropped). When Go and the unpacked kernel are there, the
 * initramfs is built and its contents checked.
 */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { migrateInputOf } from '../../cli/migrate-commands';
import { validatedRequest } from '../../workflows/failures';
import { GuestError } from '../../lab/guest';
import { checkLinuxGuest, guestInitrd, guestToolsDir } from '../../lab/linux-guest';
import { checkRecords, crc32c, RECORD_BYTES, RING_SLOTS, RING_START, recordViolations } from '../../lab/records';
import { labDomainXml } from '../../lab/xml';
import { parseDomainXml } from '../../hypervisor/xml';

/** A record as the guest writes it (record.go's encodeRecord). */
function encode(seq: number, nanos = BigInt(Date.now()) * 1_000_000n, boot = 42n): Buffer {
  const b = Buffer.alloc(RECORD_BYTES);
  b.write('FERRYREC', 0, 'latin1');
  b.writeBigUInt64LE(BigInt(seq), 8);
  b.writeBigUInt64LE(nanos, 16);
  b.writeBigUInt64LE(boot, 24);
  const M = (1n << 64n) - 1n;
  let x = (BigInt(seq) * 0x9e3779b97f4a7c15n + 1n) & M;
  for (let i = 32; i < 504; i += 8) {
    x ^= (x << 13n) & M;
    x ^= x >> 7n;
    x ^= (x << 17n) & M;
    b.writeBigUInt64LE(x, i);
  }
  b.writeUInt32LE(crc32c(b.subarray(0, 508)), 508);
  return b;
}

function image(seqs: number[]): Buffer {
  const raw = Buffer.alloc(RING_START + RING_SLOTS * RECORD_BYTES);
  for (const s of seqs) encode(s).copy(raw, RING_START + (s % RING_SLOTS) * RECORD_BYTES);
  return raw;
}

describe('records', () => {
  it('CRC-32C matches the standard check value', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  it('a full run of records: no hole, nothing bad, no violation up to the last acknowledged', () => {
    const c = checkRecords(image([...Array(500).keys()]));
    expect([c.count, c.first, c.last, c.holes, c.bad]).toEqual([500, 0, 499, [], 0]);
    expect(recordViolations(c, 499)).toEqual([]);
    expect(recordViolations(c, 510)).toEqual(['acknowledged up to 510, the disk ends at 499']);
  });

  it('a missing record is a hole; a flipped byte is a damaged record; a missing beginning is reported', () => {
    const raw = image([...Array(100).keys()].filter((s) => s !== 40 && s !== 41));
    raw.writeUInt8(raw.readUInt8(RING_START + 7 * RECORD_BYTES + 100) ^ 0xff, RING_START + 7 * RECORD_BYTES + 100);
    const c = checkRecords(raw);
    expect(c.holes).toEqual([
      [7, 7],
      [40, 41],
    ]);
    expect(c.bad).toBe(1);
    expect(recordViolations(c, 99)).toEqual(['1 slot(s) hold a damaged record', 'holes: 7, 40-41']);
    expect(recordViolations(checkRecords(image([5, 6, 7])), 7)).toEqual(['records 0-4 are missing']);
  });

  it('a valid record in the wrong slot (copied to the wrong place) is damaged, not counted', () => {
    const raw = image([0, 1, 2]);
    encode(3).copy(raw, RING_START + 9 * RECORD_BYTES);
    expect(checkRecords(raw)).toMatchObject({ count: 3, bad: 1 });
  });
});

describe('the Linux guest domain and limits', () => {
  it('direct kernel boot and a virtio NIC on a bridge, without a boot ROM', () => {
    const xml = labDomainXml({
      name: 'g1',
      uuid: '00000000-0000-4000-8000-000000000001',
      memoryMiB: 128,
      diskPath: '/var/lib/libvirt/images/ferry/x/disk0.qcow2',
      directBoot: { kernel: '/k/vmlinuz', initrd: '/k/initrd.gz', cmdline: 'console=ttyS0 ferry.ip=192.168.213.11/24' },
      bridges: ['br-guest'],
    });
    expect(xml).toContain('<kernel>/k/vmlinuz</kernel>');
    expect(xml).toContain('<cmdline>console=ttyS0 ferry.ip=192.168.213.11/24</cmdline>');
    expect(xml).not.toContain("<boot dev='hd'/>");
    expect(xml).toContain("<source bridge='br-guest'/>");
    expect(xml).toContain("<rom enabled='no'/>");
    const parsed = parseDomainXml(xml);
    expect(parsed.disks.map((d) => d.target)).toEqual(['vda']);
  });

  it('refuses rates and memory the workload cannot run with', () => {
    expect(() => checkLinuxGuest({ kind: 'linux', ip: '192.168.213.11' }, 128)).not.toThrow();
    expect(() => checkLinuxGuest({ kind: 'linux', ip: '192.168.213.11', recordsPerSec: 0 }, 128)).toThrow(GuestError);
    expect(() => checkLinuxGuest({ kind: 'linux', ip: '192.168.213.11', writeMiBPerSec: 500 }, 128)).toThrow(/writeMiBPerSec/);
    expect(() => checkLinuxGuest({ kind: 'linux', ip: '192.168.213.11' }, 64)).toThrow(/at least 96 MiB/);
    expect(() => checkLinuxGuest({ kind: 'linux', ip: 'nope' }, 128)).toThrow(/IPv4/);
  });
});

describe('ferry migrate flags → workflow input', () => {
  const vm = { name: 'db1', uuid: '00000000-0000-4000-8000-000000000001' };
  it('convergence flags reach the input and survive validation', () => {
    const input = migrateInputOf({ vm: 'db1', wait: true, autoConverge: true, syncDiskWrites: true, maxDowntime: '500', bandwidth: '10' }, vm, '10.0.0.1');
    expect(input.convergence).toEqual({ autoConverge: true, syncDiskWrites: true, maxDowntimeMs: 500 });
    const req = validatedRequest(input);
    expect([req.convergence.autoConverge, req.convergence.syncDiskWrites, req.convergence.maxDowntimeMs]).toEqual([true, true, 500]);
  });
  it('no flags: no convergence object, synchronous writes off', () => {
    const input = migrateInputOf({ vm: 'db1', wait: true }, vm, '10.0.0.1');
    expect(input.convergence).toBeUndefined();
    expect(validatedRequest(input).convergence.syncDiskWrites).toBe(false);
  });
});

const haveAssets = fs.existsSync(`${guestToolsDir()}/linux-image/boot`) && fs.existsSync(`${guestToolsDir()}/busybox-static/bin/busybox`);

describe.skipIf(!haveAssets)('the initramfs (Go and the unpacked Debian kernel present)', () => {
  it('is a gzip\'d newc archive with /init, busybox, the workload and the virtio modules with their dependencies', async () => {
    const { path: file, kernel } = await guestInitrd();
    expect(fs.existsSync(kernel)).toBe(true);
    const cpio = (await import('node:zlib')).gunzipSync(fs.readFileSync(file)).toString('latin1');
    for (const name of ['init', 'bin/busybox', 'bin/ferry-guest', 'virtio_blk.ko', 'virtio_net.ko', 'virtio_pci.ko', 'virtio_ring.ko', 'net_failover.ko', 'modules.dep']) {
      expect(cpio, name).toContain(name);
    }
    expect(cpio.startsWith('070701')).toBe(true);
    expect(cpio).toContain('TRAILER!!!');
  }, 300_000);
});
