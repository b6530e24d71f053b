/**
 * Parsers against real virsh 9.0 output (test/fixtures/virsh/, captured from libvirtd 9.0 / QEMU 7.2 on Debian 12).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  TextShapeError,
  parseBlkInfoAll,
  parseBlkInfoCapacity,
  parseBlockJobRaw,
  parseDomInfo,
  parseDomState,
  parseDomStatsBlock,
  parseFreecellTotal,
  parseHostname,
  parseJobInfoRaw,
  parseKeyValues,
  parseNameList,
  parseNodeInfo,
  parsePoolInfo,
  parseQmpReply,
  parseUuidList,
  parseVolListPaths,
} from '../../hypervisor/text';
import { samePath, uriHost } from '../../hypervisor/virsh';
import { buildBatchScript, quoteVirshArg, splitBatchOutput } from '../../hypervisor/virsh-batch';
import { XmlShapeError, parseDiskAliases, parseDomainXml, parsePoolXml, parseVolumeXml } from '../../hypervisor/xml';

const fx = (name: string): string => readFileSync(join(__dirname, '../fixtures/virsh', name), 'utf8');
const D1 = '6f0e1c52-9a1d-4c3e-8a55-0a0a0a0a0a01';
const D2 = '6f0e1c52-9a1d-4c3e-8a55-0a0a0a0a0a02';

describe('host text', () => {
  it('nodeinfo', () => {
    expect(parseNodeInfo(fx('nodeinfo.txt'))).toEqual({ cpus: 2, memoryKiB: 5466328, cpuModel: 'x86_64' });
  });
  it('freecell and freecell --all total', () => {
    expect(parseFreecellTotal(fx('freecell-all.txt'))).toBe(3749208);
    expect(parseFreecellTotal(fx('freecell.txt'))).toBe(3214120);
    expect(parseFreecellTotal('    0:    100 KiB\n    1:    50 KiB\n')).toBe(150);
    expect(() => parseFreecellTotal('garbage')).toThrow(TextShapeError);
  });
  it('hostname', () => {
    expect(parseHostname(fx('hostname.txt'))).toBe('vm');
    expect(() => parseHostname('\n')).toThrow(TextShapeError);
  });
});

describe('domain text', () => {
  it('domstate --reason', () => {
    expect(parseDomState(fx('domstate-running.txt'))).toEqual({ state: 'running', reason: 'unpaused' });
    expect(parseDomState(fx('domstate-shutoff.txt'))).toEqual({ state: 'shutoff', reason: 'destroyed' });
    expect(parseDomState(fx('domstate-paused-user.txt'))).toEqual({ state: 'paused', reason: 'user' });
    expect(parseDomState('in shutdown (user)\n')).toEqual({ state: 'shutdown', reason: 'user' });
    expect(parseDomState('idle\n')).toEqual({ state: 'blocked', reason: null });
    expect(parseDomState('paused (post-copy failed)\n')).toEqual({ state: 'paused', reason: 'post-copy failed' });
    expect(() => parseDomState('sleeping (x)')).toThrow(TextShapeError);
  });

  it('dominfo: running persistent, shut off, running transient', () => {
    const r = parseDomInfo(fx('dominfo-running.txt'));
    expect(r).toMatchObject({ name: 'hv test 1', uuid: D1, state: 'running', persistent: true, cpus: 1, maxMemoryKiB: 131072 });
    expect(parseDomInfo(fx('dominfo-shutoff.txt')).state).toBe('shutoff');
    const t = parseDomInfo(fx('dominfo-transient.txt'));
    expect(t).toMatchObject({ name: "hv <&> 'two'", uuid: D2, persistent: false, cpus: 2, maxMemoryKiB: 1048576 });
  });

  it('dominfo "Messages: tainted: ..." keeps its value whole', () => {
    expect(parseKeyValues(fx('dominfo-running.txt'))['Messages']).toBe('tainted: running with undesirable elevated privileges');
  });

  it('domblkinfo --all (bytes), with an empty cdrom as -', () => {
    const m = parseBlkInfoAll(fx('domblkinfo-all-running.txt'));
    expect([...m.entries()]).toEqual([
      ['vda', 67108864],
      ['vdb', 33554432],
      ['vdc', 16777216],
      ['hdc', null],
    ]);
    expect(parseBlkInfoAll(fx('domblkinfo-all-cdrom.txt')).get('sda')).toBe(1048576);
    expect(() => parseBlkInfoAll(fx('domblkinfo-all-shutoff-volume-disk.txt'))).toThrow(TextShapeError);
  });

  it('domstats --block --nowait: running, inactive (volume disk and empty cdrom), incoming migration', () => {
    expect([...parseDomStatsBlock(fx('domstats-block-running.txt'))]).toEqual([['vda', 67108864]]);
    expect([...parseDomStatsBlock(fx('domstats-block-shutoff-volume-cdrom.txt'))]).toEqual([
      ['vda', 67108864],
      ['vdb', 33554432],
      ['vdc', null],
      ['hdc', null],
    ]);
    // the incoming migration holds the domain's job: --nowait leaves the capacity out instead of blocking
    expect([...parseDomStatsBlock(fx('domstats-block-incoming-migration.txt'))]).toEqual([['vda', null]]);
    expect(() => parseDomStatsBlock('')).toThrow(TextShapeError);
  });

  it('domstate of a migrating target and of a migrated domain', () => {
    expect(parseDomState(fx('domstate-incoming-migrating.txt'))).toEqual({ state: 'paused', reason: 'migrating' });
    expect(parseDomState(fx('domstate-migrated.txt'))).toEqual({ state: 'running', reason: 'migrated' });
  });

  it('domblkinfo <dev>', () => {
    expect(parseBlkInfoCapacity(fx('domblkinfo-vda.txt'))).toBe(67108864);
  });

  it('list --all --uuid', () => {
    expect(parseUuidList(fx('list-all-uuid.txt'))).toEqual([D1]);
    expect(parseUuidList('\n')).toEqual([]);
    expect(parseUuidList('6F0E1C52-9A1D-4C3E-8A55-0A0A0A0A0A01\n')).toEqual([D1]);
    expect(() => parseUuidList('vm1\n')).toThrow(TextShapeError);
  });
});

describe('domain XML', () => {
  it('running domain: file disks only (volume disk and empty cdrom excluded), max memory, current vcpus', () => {
    const d = parseDomainXml(fx('dumpxml-running.xml'));
    expect(d).toMatchObject({ uuid: D1, name: 'hv test 1', memoryKiB: 131072, currentMemoryKiB: 131072, vcpus: 1, maxVcpus: 2 });
    expect(d.disks).toEqual([
      { target: 'vda', path: '/var/tmp/hvtest/pools/p1/disk0.qcow2', format: 'qcow2' },
      { target: 'vdb', path: '/var/tmp/hvtest/pools/p1/disk1.raw', format: 'raw' },
    ]);
    expect(d.otherDisks).toEqual(['vdc']);
  });

  it('inactive XML has the configured currentMemory', () => {
    const d = parseDomainXml(fx('dumpxml-inactive.xml'));
    expect(d.currentMemoryKiB).toBe(98304);
    expect(d.disks.map((x) => x.target)).toEqual(['vda', 'vdb']);
  });

  it('backing chain: the top image is the disk, the readonly cdrom is excluded, entities decoded', () => {
    const d = parseDomainXml(fx('dumpxml-transient-backing-chain.xml'));
    expect(d.name).toBe("hv <&> 'two'");
    expect(d.uuid).toBe(D2);
    expect(d.memoryKiB).toBe(1048576);
    expect(d.vcpus).toBe(2);
    expect(d.disks).toEqual([{ target: 'vda', path: '/var/tmp/hvtest/pools/p1/overlay.qcow2', format: 'qcow2' }]);
    expect(d.otherDisks).toEqual([]);
  });

  it('units other than KiB and a missing driver type (raw)', () => {
    const d = parseDomainXml(
      `<domain type='kvm'><name>n</name><uuid>${D1}</uuid><memory unit='GiB'>2</memory><vcpu>3</vcpu>` +
        `<devices><disk type='file' device='disk'><source file='/x.img'/><target dev='sda'/></disk></devices></domain>`,
    );
    expect(d.memoryKiB).toBe(2 * 1024 * 1024);
    expect(d.vcpus).toBe(3);
    expect(d.disks).toEqual([{ target: 'sda', path: '/x.img', format: 'raw' }]);
  });

  it('refuses malformed or foreign XML', () => {
    expect(() => parseDomainXml('<domain><name>x</name')).toThrow(XmlShapeError);
    expect(() => parseDomainXml(fx('pool-dumpxml-active.xml'))).toThrow(XmlShapeError);
    expect(() => parseDomainXml(`<domain><name>x</name><uuid>${D1}</uuid></domain>`)).toThrow(/memory/);
  });
});

describe('storage', () => {
  it('pool-dumpxml active and inactive', () => {
    expect(parsePoolXml(fx('pool-dumpxml-active.xml'))).toEqual({
      name: 'hvp1',
      uuid: '4c2de693-3bb4-4e1f-9428-8b484d8cf445',
      type: 'dir',
      path: '/var/tmp/hvtest/pools/p1',
      capacityBytes: 270553174016,
      allocationBytes: 13409480704,
      availableBytes: 257143693312,
    });
    const inactive = parsePoolXml(fx('pool-dumpxml-inactive.xml'));
    expect(inactive).toMatchObject({ name: 'hvinact', path: '/var/tmp/hvtest/pools/inact', capacityBytes: 0, availableBytes: 0 });
  });

  it('pool-info --bytes: figures only when active', () => {
    expect(parsePoolInfo(fx('pool-info-bytes-active.txt'))).toEqual({
      name: 'hvp1',
      active: true,
      autostart: false,
      capacityBytes: 270553174016,
      allocationBytes: 13409480704,
      availableBytes: 257143693312,
    });
    expect(parsePoolInfo(fx('pool-info-bytes-inactive.txt'))).toEqual({
      name: 'hvinact',
      active: false,
      autostart: false,
      capacityBytes: null,
      allocationBytes: null,
      availableBytes: null,
    });
  });

  it('pool-list --name', () => {
    expect(parseNameList(fx('pool-list-all-name.txt'))).toEqual(['hvp1']);
  });

  it('vol-dumpxml qcow2 and raw', () => {
    expect(parseVolumeXml(fx('vol-dumpxml-qcow2.xml'))).toEqual({
      name: 'disk0.qcow2',
      path: '/var/tmp/hvtest/pools/p1/disk0.qcow2',
      type: 'file',
      capacityBytes: 67108864,
      allocationBytes: 200704,
      format: 'qcow2',
    });
    expect(parseVolumeXml(fx('vol-dumpxml-raw.xml'))).toMatchObject({ name: 'disk1.raw', capacityBytes: 33554432, format: 'raw' });
  });

  it('vol-list paths, including names and paths with spaces', () => {
    expect(parseVolListPaths(fx('vol-list.txt'))).toEqual([
      '/var/tmp/hvtest/pools/p1/disk0.qcow2',
      '/var/tmp/hvtest/pools/p1/disk1.raw',
      '/var/tmp/hvtest/pools/p1/disk2.raw',
    ]);
    const spaced = ' Name        Path\n-----------------------------\n a b.raw     /p/dir x/a b.raw\n\n';
    expect(parseVolListPaths(spaced)).toEqual(['/p/dir x/a b.raw']);
    expect(parseVolListPaths(' Name   Path\n------------------\n\n')).toEqual([]);
  });

  it('vol-info --bytes is key/value', () => {
    expect(parseKeyValues(fx('vol-info-bytes.txt'))['Capacity']).toBe('67108864 bytes');
  });

  it('uriHost', () => {
    expect(uriHost('qemu+tcp://10.0.0.2/system')).toBe('10.0.0.2');
    expect(uriHost('qemu+tcp://10.0.0.2:16509/system')).toBe('10.0.0.2');
    expect(uriHost('qemu+ssh://root@h.example/system')).toBe('h.example');
    expect(uriHost('qemu+tcp://[fd00::2]:16509/system')).toBe('fd00::2');
    expect(uriHost('qemu:///system')).toBe('');
  });

  it('samePath ignores trailing and doubled slashes', () => {
    expect(samePath('/a/b/', '/a//b')).toBe(true);
    expect(samePath('/a/b', '/a/bc')).toBe(false);
    expect(samePath('/', '/')).toBe(true);
  });
});

describe('domjobinfo --rawstats', () => {
  it('no job', () => {
    const j = parseJobInfoRaw(fx('domjobinfo-rawstats-none.txt'));
    expect(j.type).toBe('none');
    expect(j.operation).toBeNull();
    expect(j.raw).toEqual({ 'Job type': '0' });
    expect(parseJobInfoRaw(fx('domjobinfo-completed-rawstats-none.txt')).type).toBe('none');
  });
  it('outgoing migration, setup phase', () => {
    const j = parseJobInfoRaw(fx('domjobinfo-rawstats-migration-setup.txt'));
    expect(j).toMatchObject({ type: 'unbounded', operation: 'Outgoing migration', timeElapsedMs: 504, dataTotalBytes: 0 });
  });

  it('outgoing migration copying storage at 5 MiB/s', () => {
    const j = parseJobInfoRaw(fx('domjobinfo-rawstats-migration-disk-copy.txt'));
    expect(j).toMatchObject({
      type: 'unbounded',
      operation: 'Outgoing migration',
      timeElapsedMs: 4495,
      dataTotalBytes: 67108864,
      dataProcessedBytes: 16777216,
      dataRemainingBytes: 50331648,
      diskTotalBytes: 67108864,
      diskProcessedBytes: 16777216,
      diskRemainingBytes: 50331648,
      memoryTotalBytes: 0,
      memoryIteration: 0,
      dirtyRatePagesPerSec: 0,
      totalTimeMs: null,
      downtimeMs: null,
    });
    expect(j.raw['memory_postcopy_requests']).toBe('0');
    expect(parseJobInfoRaw(fx('domjobinfo-rawstats-migration-disk-copy-1mibps.txt')).type).toBe('unbounded');
  });

  it('completed incoming migration on the target: downtime, total time, memory bytes (no disk figures)', () => {
    const j = parseJobInfoRaw(fx('domjobinfo-completed-rawstats-incoming.txt'));
    expect(j).toMatchObject({
      type: 'completed',
      operation: 'Incoming migration',
      timeElapsedMs: 16790,
      totalTimeMs: 16790,
      downtimeMs: 20,
      dataTotalBytes: 134610944,
      dataProcessedBytes: 758592,
      memoryProcessedBytes: 758592,
      memoryIteration: 3,
      diskTotalBytes: 0,
      diskProcessedBytes: 0,
    });
  });

  it('refuses non-raw output', () => {
    expect(() => parseJobInfoRaw(fx('domjobinfo-none.txt'))).toThrow(TextShapeError);
  });
});

describe('disk copies of a migration', () => {
  it('blockjob --info --raw of a migration mirror: bytes copied of the total and the limit in MiB/s', () => {
    expect(parseBlockJobRaw('vda', fx('blockjob-info-raw-migration-copy.txt'))).toEqual({
      target: 'vda',
      processedBytes: 16777216,
      totalBytes: 134217728,
      bandwidthMiBps: 5,
    });
  });

  it('no block job: null; an unlimited copy: bandwidth null; another job type is no disk copy', () => {
    expect(parseBlockJobRaw('vda', fx('blockjob-info-raw-none.txt'))).toBeNull();
    expect(parseBlockJobRaw('vda', ' type=Block Copy\n bandwidth=0\n cur=1\n end=2\n')?.bandwidthMiBps).toBeNull();
    expect(parseBlockJobRaw('vda', ' type=Block Pull\n bandwidth=0\n cur=1\n end=2\n')).toBeNull();
    expect(() => parseBlockJobRaw('vda', ' type=Block Copy\n bandwidth=0\n')).toThrow(TextShapeError);
  });

  it('QMP replies through qemu-monitor-command: virsh exits 0 for a QMP error, the JSON says it', () => {
    expect(parseQmpReply(fx('qmp-block-job-set-speed-ok.txt'))).toEqual({ ok: true });
    expect(parseQmpReply(fx('qmp-block-job-set-speed-not-found.txt'))).toEqual({
      ok: false,
      errorClass: 'DeviceNotActive',
      desc: "Block job 'drive-nope' not found",
    });
    expect(() => parseQmpReply('error: something')).toThrow(TextShapeError);
  });

  it("the live XML's disk aliases (the mirror job of a disk is drive-<alias>)", () => {
    expect(parseDiskAliases(fx('dumpxml-running.xml'))).toMatchObject({ vda: 'virtio-disk0', vdb: 'virtio-disk1', vdc: 'virtio-disk2' });
    expect(parseDiskAliases(fx('dumpxml-inactive.xml'))).toEqual({});
  });
});

describe('batch protocol', () => {
  it('quotes tokens for virsh\'s tokenizer', () => {
    expect(quoteVirshArg("it's; x")).toBe(`'it'\\''s; x'`);
    expect(quoteVirshArg('--pool=a b')).toBe(`'--pool=a b'`);
  });

  it('splits a real batch (successes, failures, XML) per command', () => {
    const cmds = [
      ['dominfo', `--domain=${D2}`],
      ['domstate', `--domain=${D2}`, '--reason'],
      ['dumpxml', `--domain=${D2}`],
      ['domblkinfo', `--domain=${D2}`, '--all'],
      ['dominfo', '--domain=6f0e1c52-9a1d-4c3e-8a55-0a0a0a0a0aff'],
      ['pool-refresh', '--pool=nosuch'],
      ['vol-delete', '--pool=hvp1', '--vol=nosuch'],
      ['hostname'],
    ];
    expect(buildBatchScript(cmds, 'fixture0') + '\n').toBe(fx('batch-fixture0.script.txt'));
    const parts = splitBatchOutput(fx('batch-fixture0.stdout.txt'), fx('batch-fixture0.stderr.txt'), 'fixture0', cmds.length);
    if (!parts) throw new Error('markers not found');
    expect(parts).toHaveLength(8);
    expect(parseDomInfo(parts[0]?.stdout ?? '').name).toBe("hv <&> 'two'");
    expect(parts[0]?.stderr).toBe('');
    expect(parseDomState(parts[1]?.stdout ?? '').state).toBe('running');
    expect(parseDomainXml(parts[2]?.stdout ?? '').uuid).toBe(D2);
    expect(parseBlkInfoAll(parts[3]?.stdout ?? '').get('vda')).toBe(33554432);
    expect(parts[4]?.stdout.trim()).toBe('');
    expect(parts[4]?.stderr).toBe("error: failed to get domain '6f0e1c52-9a1d-4c3e-8a55-0a0a0a0a0aff'\n");
    expect(parts[5]?.stderr).toContain('Storage pool not found');
    expect(parts[6]?.stderr).toContain('Storage volume not found');
    expect(parseHostname(parts[7]?.stdout ?? '')).toBe('vm');
    expect(parts[7]?.stderr).toBe('');
  });

  it('returns null when virsh died before the last marker', () => {
    const out = fx('batch-fixture0.stdout.txt');
    const cut = out.slice(0, out.indexOf('@@ferry-fixture0-5@@'));
    expect(splitBatchOutput(cut, fx('batch-fixture0.stderr.txt'), 'fixture0', 8)).toBeNull();
  });

  it('keeps output that lacks a trailing newline', () => {
    const parts = splitBatchOutput('abc@@ferry-n-0@@\n', 'error: @@ferry-n-0@@\n', 'n', 1);
    expect(parts).toEqual([{ stdout: 'abc', stderr: '' }]);
  });
});
