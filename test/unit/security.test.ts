/**
 * Security properties (issue 4): libvirt URIs are restricted to documented, harmless forms; credentials in a
 * URI never reach the inventory and are redacted from every error Ferry builds from virsh (real virsh runs
 * against closed ports here); storage paths stay under the configured roots; names that end up in XML are
 * escaped and read back unchanged.
 */
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDiskPaths, createActivities } from '../../activities';
import { toFailure } from '../../activities/failures';
import { libvirtUriProblem, uriHasPassword } from '../../common/libvirt-uri';
import { LibvirtError, libvirtErrorFromStderr, redactText, redactUri } from '../../hypervisor/errors';
import type { Hypervisor } from '../../hypervisor/port';
import { parseDomainXml } from '../../hypervisor/xml';
import { VirshHypervisor, type VirshCallInfo } from '../../hypervisor/virsh';
import { openInventory, type Inventory } from '../../inventory';
import { escapeXml, labDomainXml } from '../../lab/xml';
import { MemoryHypervisor } from '../support/memory-hypervisor';

const PASSWORD = 'S3cr3t-Pa55word';
const UUID = '11111111-2222-4333-8444-555555555555';

describe('libvirt URIs', () => {
  it.each([
    'qemu+tcp://10.0.0.1/system',
    'qemu+tcp://h1.example.org:16509/system',
    'qemu+tls://h1.example.org/system',
    'qemu+tls://h1.example.org/system?pkipath=/etc/pki/ferry&no_verify=0',
    'qemu+ssh://root@h1.example.org/system',
    'qemu+ssh://ferry@h1.example.org:2222/system?keyfile=/home/ferry/.ssh/id_ed25519&known_hosts=/home/ferry/.ssh/known_hosts',
    'qemu+libssh2://ferry@h1/system?known_hosts_verify=normal&sshauth=privkey',
    'qemu+tcp://[fd00::11]:16509/system',
    'qemu:///system',
    'qemu+unix:///system',
  ])('accepts %s', (uri) => {
    expect(libvirtUriProblem(uri)).toBeNull();
  });

  it.each([
    [`qemu+tcp://admin:${PASSWORD}@10.0.0.1/system`, /carries a password/],
    [`qemu+ssh://admin:${PASSWORD}@h1/system`, /carries a password/],
    ['qemu+ssh://h1/system?command=/tmp/evil', /parameter "command" is not allowed/],
    ['qemu+ssh://h1/system?netcat=/tmp/evil', /parameter "netcat" is not allowed/],
    ['qemu+ssh://h1/system?socket=/tmp/other.sock', /parameter "socket" is not allowed/],
    ['qemu+ssh://h1/system?keyfile=$(reboot)', /characters that are not allowed/],
    ['qemu+ssh://h1/system?keyfile=/k;reboot', /characters that are not allowed/],
    ['xen+ssh://h1/system', /unsupported scheme xen\+ssh/],
    ['test:///default', /unsupported scheme test/],
    ['qemu+tcp://h1/session', /path must be \/system/],
    ['qemu+tcp://h1', /path must be \/system/],
    ['qemu+tcp:///system', /needs a host/],
    ['qemu+tcp://h1/system extra', /whitespace/],
    ["qemu+ssh://us'er@h1/system", /user name/],
    ['qemu+tcp://h1:99999/system', /port 99999 is out of range/],
    ['/var/run/libvirt/libvirt-sock', /not a URI/],
  ])('refuses %s', (uri, why) => {
    const problem = libvirtUriProblem(uri);
    expect(problem).toMatch(why);
    expect(problem).not.toContain(PASSWORD);
  });

  it('VirshHypervisor refuses a URI that would make libvirt run a program, before running anything', async () => {
    const calls: VirshCallInfo[] = [];
    const hv = new VirshHypervisor({ onCall: (c) => calls.push(c) });
    const err = await hv.getDomain('qemu+ssh://h1/system?command=/tmp/evil', UUID).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect((err as LibvirtError).kind).toBe('invalid');
    expect((err as LibvirtError).message).toMatch(/invalid libvirt URI .*parameter "command" is not allowed/);
    expect(calls).toEqual([]);
  });
});

describe('credentials in URIs never show', () => {
  let inventory: Inventory;
  beforeAll(async () => {
    inventory = await openInventory(':memory:');
  });
  afterAll(async () => {
    await inventory.close();
  });

  it('the inventory refuses a host whose URI carries a password (it would travel in workflow histories)', async () => {
    expect(uriHasPassword(`qemu+tcp://admin:${PASSWORD}@10.0.0.1/system`)).toBe(true);
    expect(uriHasPassword('qemu+ssh://admin@10.0.0.1/system')).toBe(false);
    const err = await inventory
      .addHost({ name: 'h1', address: '10.0.0.1', uri: `qemu+tcp://admin:${PASSWORD}@10.0.0.1/system` })
      .then(
        () => null,
        (e: unknown) => e as Error,
      );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(/carries a password: use SSH keys/);
    expect(err!.message).not.toContain(PASSWORD);
    expect(await inventory.getHost('h1')).toBeNull();
  });

  // Real virsh against ports where nothing listens: each transport fails in its own way.
  const uris = [
    `qemu+tcp://admin:${PASSWORD}@127.0.0.1:1/system`,
    `qemu+ssh://admin:${PASSWORD}@127.0.0.1:1/system?no_tty=1`,
    `qemu+tls://admin:${PASSWORD}@127.0.0.1:1/system`,
  ];
  const hv = new VirshHypervisor({ timeoutMs: 10_000 });
  const NEEDS = { virtType: 'qemu', arch: 'x86_64', machine: 'pc-i440fx-7.2', cpuMode: 'custom', nics: [], hostDevices: [], readOnlyFiles: [], xml: `<domain type='qemu'><cpu mode='custom'><model>qemu64</model></cpu></domain>` };
  const target = `qemu+tcp://other:${PASSWORD}@127.0.0.1:2/system`;
  const calls: [string, (uri: string) => Promise<unknown>][] = [
    ['hostCapacity', (u) => hv.hostCapacity(u, '/var/lib/libvirt/images/ferry')],
    ['ensureStorageRootPool', (u) => hv.ensureStorageRootPool(u, 'ferry-root', '/var/lib/libvirt/images/ferry')],
    ['getDomain', (u) => hv.getDomain(u, UUID)],
    ['listDomains', (u) => hv.listDomains(u)],
    ['createStorageDirectory', (u) => hv.createStorageDirectory(u, `ferry-${UUID}`, `/var/lib/libvirt/images/ferry/${UUID}`)],
    ['definePool', (u) => hv.definePool(u, `ferry-${UUID}`, `/var/lib/libvirt/images/ferry/${UUID}`)],
    ['startPool', (u) => hv.startPool(u, `ferry-${UUID}`)],
    ['forgetPool', (u) => hv.forgetPool(u, `ferry-${UUID}`)],
    ['createTransientPool', (u) => hv.createTransientPool(u, `ferry-probe-${UUID}`, `/var/lib/libvirt/images/ferry/${UUID}`)],
    ['recreateVolume', (u) => hv.recreateVolume(u, `ferry-${UUID}`, 'disk0.qcow2', 1024 * 1024, 'qcow2')],
    ['deleteVolume', (u) => hv.deleteVolume(u, `ferry-${UUID}`, 'disk0.qcow2')],
    ['stopPool', (u) => hv.stopPool(u, `ferry-${UUID}`)],
    ['removeStorageDirectory', (u) => hv.removeStorageDirectory(u, `ferry-${UUID}`)],
    ['listPools', (u) => hv.listPools(u)],
    ['listVolumes', (u) => hv.listVolumes(u, `ferry-${UUID}`)],
    ['poolOfVolume', (u) => hv.poolOfVolume(u, `/var/lib/libvirt/images/ferry/${UUID}/disk0.qcow2`)],
    ['migrate', (u) => hv.migrate(u, UUID, target, { bandwidthMiBps: 10, clientTimeoutMs: 10_000 })],
    ['jobInfo', (u) => hv.jobInfo(u, UUID)],
    ['completedJobInfo', (u) => hv.completedJobInfo(u, UUID)],
    ['abortJob', (u) => hv.abortJob(u, UUID)],
    ['setMaxDowntime', (u) => hv.setMaxDowntime(u, UUID, 500)],
    ['getMaxDowntime', (u) => hv.getMaxDowntime(u, UUID)],
    ['setMigrationBandwidth', (u) => hv.setMigrationBandwidth(u, UUID, 10)],
    ['startPostCopy', (u) => hv.startPostCopy(u, UUID)],
    ['domainNeeds', (u) => hv.domainNeeds(u, UUID)],
    ['hostInterfaces', (u) => hv.hostInterfaces(u)],
    ['listNetworks', (u) => hv.listNetworks(u)],
    ['cpuIncompatibility', (u) => hv.cpuIncompatibility(u, NEEDS)],
    ['machineUnsupported', (u) => hv.machineUnsupported(u, NEEDS)],
    ['copyVolume', (u) => hv.copyVolume({ uri: u, pool: `ferry-${UUID}`, name: 'disk0.qcow2' }, { uri: target, pool: `ferry-${UUID}`, name: 'disk0.qcow2' })],
    ['migrateOffline', (u) => hv.migrateOffline(u, UUID, target)],
    ['measureDirtyRate', (u) => hv.measureDirtyRate(u, UUID, 1)],
    ['undefineDomain', (u) => hv.undefineDomain(u, UUID)],
    ['diskCopyJobs', (u) => hv.diskCopyJobs(u, UUID, ['vda'])],
    ['setDiskCopyBandwidth', (u) => hv.setDiskCopyBandwidth(u, UUID, 10)],
  ];
  const methods: (keyof Hypervisor)[] = calls.map(([m]) => m as keyof Hypervisor);

  it('covers every method of the Hypervisor port', () => {
    const port: Record<keyof Hypervisor, true> = {
      hostCapacity: true, ensureStorageRootPool: true, getDomain: true, listDomains: true, createStorageDirectory: true,
      definePool: true, startPool: true, forgetPool: true, createTransientPool: true, recreateVolume: true, deleteVolume: true, stopPool: true, removeStorageDirectory: true,
      listPools: true, listVolumes: true, poolOfVolume: true, migrate: true, jobInfo: true, completedJobInfo: true, abortJob: true,
      setMaxDowntime: true, getMaxDowntime: true, setMigrationBandwidth: true, startPostCopy: true,
      domainNeeds: true, hostInterfaces: true, listNetworks: true, cpuIncompatibility: true, machineUnsupported: true,
      copyVolume: true, migrateOffline: true, undefineDomain: true, measureDirtyRate: true,
      diskCopyJobs: true, setDiskCopyBandwidth: true,
    };
    expect([...methods].sort()).toEqual(Object.keys(port).sort());
  });

  it.each(uris)('every virsh failure over %s is redacted (message, stderr, arguments, and the Temporal failure)', async (uri) => {
    for (const [name, call] of calls) {
      const err = await call(uri).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, name).toBeInstanceOf(LibvirtError);
      const e = err as LibvirtError;
      const everything = [e.message, e.stderr, ...e.args, toFailure(e).message].join('\n');
      expect(everything, `${name}: ${e.message}`).not.toContain(PASSWORD);
      expect(everything, name).not.toContain('admin:');
      expect(e.message, name).toContain(redactUri(uri));
    }
  }, 120_000);

  it("libvirt's own text quoting a URI (p2p: \"Failed to connect to remote libvirt URI …\") is redacted too", () => {
    const stderr =
      `error: operation failed: Failed to connect to remote libvirt URI qemu+tcp://other:${PASSWORD}@10.0.0.3/system: ` +
      "unable to connect to server at '10.0.0.3:16509': Connection refused\n";
    const e = libvirtErrorFromStderr(stderr, false, { uri: `qemu+tcp://admin:${PASSWORD}@10.0.0.2/system`, what: 'migrate x' }, [
      'migrate',
      `--desturi=qemu+tcp://other:${PASSWORD}@10.0.0.3/system`,
    ]);
    expect(e.kind).toBe('connection');
    for (const text of [e.message, e.stderr, ...e.args]) {
      expect(text).not.toContain(PASSWORD);
      expect(text).not.toContain('other:');
    }
    expect(e.message).toContain('qemu+tcp://10.0.0.3/system');
    expect(e.args).toEqual(['migrate', '--desturi=qemu+tcp://10.0.0.3/system']);
    // a password printed on its own by some tool is masked as well
    expect(redactText(`ssh: admin ${PASSWORD} denied`, [`qemu+ssh://admin:${PASSWORD}@h/system`])).toBe('ssh: admin *** denied');
  });
});

describe('storage paths stay under the configured roots', () => {
  let inventory: Inventory;
  let hv: MemoryHypervisor;
  let acts: ReturnType<typeof createActivities>;
  const env = new MockActivityEnvironment({ activityType: 'createStorageDirectory', workflowExecution: { workflowId: 'wf', runId: 'r' } });
  const target = { name: 'tgt', address: '10.0.0.2', uri: 'mem://tgt' };

  beforeAll(async () => {
    inventory = await openInventory(':memory:');
    await inventory.addHost({ name: 'tgt', address: '10.0.0.2', uri: 'mem://tgt', storageRoot: '/srv/ferry' });
    hv = new MemoryHypervisor();
    hv.addHost('mem://tgt', 'tgt');
    acts = createActivities({ inventory, hypervisor: hv });
  });
  afterAll(async () => {
    await inventory.close();
  });

  async function refusal(path: string): Promise<ApplicationFailure> {
    const err = await env.run(acts.createStorageDirectory, { target, vmUuid: UUID, pool: `ferry-${UUID}`, path }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApplicationFailure);
    return err as ApplicationFailure;
  }

  it.each([
    `/var/lib/libvirt/images/ferry/${UUID}`, // the source's root, not the target's
    `/srv/ferry/${UUID}/nested`,
    '/srv/ferry',
    `/srv/ferry/../etc/${UUID}`,
    '/etc',
  ])("the target's directory task refuses %s (not directly under the target's root /srv/ferry)", async (path) => {
    const f = await refusal(path);
    expect(f.type).toBe('UnsupportedVm');
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toMatch(/tgt keeps VM storage under \/srv\/ferry/);
    expect(hv.host('mem://tgt').pools.size).toBe(0);
  });

  it("creates the directory when it is directly under the target's root", async () => {
    await env.run(acts.createStorageDirectory, { target, vmUuid: UUID, pool: `ferry-${UUID}`, path: `/srv/ferry/${UUID}` });
    expect(hv.host('mem://tgt').pools.get(`ferry-${UUID}`)?.path).toBe(`/srv/ferry/${UUID}`);
  });

  // Issue 15: any directory layout is accepted (flat pools such as libvirt's `default`, several directories);
  // what stays refused is a path that is not clean and absolute, and an unsafe or inconsistent volume name.
  it.each([
    [[{ path: `/srv/ferry/../../etc/disk0.qcow2`, name: 'disk0.qcow2' }], /not a clean absolute path/],
    [[{ path: 'srv/ferry/disk0.qcow2', name: 'disk0.qcow2' }], /not a clean absolute path/],
    [[{ path: `/srv/ferry/${UUID}/x.qcow2`, name: 'y.qcow2' }], /unsafe or inconsistent volume name/],
    [[{ path: `/srv/ferry/${UUID}/a b.qcow2`, name: 'a b.qcow2' }], /unsafe or inconsistent volume name/],
  ])("the source's disk check refuses disks %j", (disks, why) => {
    const full = disks.map((d) => ({ ...d, target: 'vda', sizeBytes: 1, format: 'qcow2' as const }));
    expect(() => checkDiskPaths('vm1', full)).toThrow(why);
  });

  it.each([
    [`/srv/ferry/${UUID}/disk0.qcow2`, `/srv/ferry/${UUID}`],
    ['/var/lib/libvirt/images/vm1.qcow2', '/var/lib/libvirt/images'],
    [`/srv/other/${UUID}/disk0.qcow2`, `/srv/other/${UUID}`],
  ])("the source's disk check accepts %s (directory %s)", (path, dir) => {
    const disk = { path, name: path.slice(path.lastIndexOf('/') + 1), target: 'vda', sizeBytes: 1, format: 'qcow2' as const };
    expect(checkDiskPaths('vm1', [disk])).toBe(dir);
  });

  it('VirshHypervisor refuses "." and ".." path segments before running virsh', async () => {
    const calls: VirshCallInfo[] = [];
    const virsh = new VirshHypervisor({ onCall: (c) => calls.push(c) });
    for (const p of ['/srv/ferry/../etc', '/srv/./ferry', 'srv/ferry', '/srv/ferry/x\n']) {
      const err = await virsh.createStorageDirectory('qemu+tcp://127.0.0.1:1/system', `ferry-${UUID}`, p).catch((e: unknown) => e);
      expect((err as LibvirtError).kind, p).toBe('invalid');
      expect((err as LibvirtError).message).toMatch(/invalid absolute path/);
    }
    expect(calls).toEqual([]);
  });
});

describe('names in XML are escaped and read back unchanged', () => {
  it('labDomainXml escapes every value; the parser returns the same name', () => {
    const name = `a<b>&c'd"e`;
    const xml = labDomainXml({ name, uuid: UUID, memoryMiB: 64, diskPath: `/srv/ferry/${UUID}/d&<'".qcow2`, description: ']]> <x/> &amp;' });
    expect(xml).toContain('<name>a&lt;b&gt;&amp;c&apos;d&quot;e</name>');
    expect(xml).not.toContain('<x/>');
    const dom = parseDomainXml(xml);
    expect(dom.name).toBe(name);
    expect(dom.disks[0]?.path).toBe(`/srv/ferry/${UUID}/d&<'".qcow2`);
    expect(escapeXml(`<>&'"`)).toBe('&lt;&gt;&amp;&apos;&quot;');
  });
});
