/**
 * The local libvirt lab, for real: namespaces, bridge, libvirtd per host, a TCG VM, a live migration
 * with storage copy between two lab hosts, daemon stop/start, and a clean lab down.
 *
 * Needs root and Debian's libvirt/QEMU; skipped otherwise. The lab's prefix and subnet come from
 * FERRY_LAB_PREFIX / FERRY_LAB_SUBNET (default ferry / 10.213.77): this file tears down any stray lab of
 * ITS prefix when it starts (and lab down leaves a decoy of another prefix alone).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, CommandError } from '../../hypervisor/exec';
import {
  hostPath,
  labDown,
  labStatus,
  labUp,
  startHostDaemon,
  stopHostDaemon,
  LAB_BINDS,
  labBridgeName,
  type LabStatus,
} from '../../lab';
import { labNaming } from '../support/lab-naming';
import { isAlive, nsInodeOfFile, pidsInNamespaces, procInfo, rootMounts } from '../../lab/sys';

function hasBinary(name: string): boolean {
  return (process.env['PATH'] ?? '')
    .split(':')
    .concat(['/usr/sbin', '/usr/bin'])
    .some((d) => d !== '' && fs.existsSync(path.join(d, name)));
}

const canRun =
  typeof process.getuid === 'function' &&
  process.getuid() === 0 &&
  fs.existsSync('/usr/sbin/libvirtd') &&
  hasBinary('virsh') &&
  hasBinary('qemu-img') &&
  hasBinary('qemu-system-x86_64') &&
  hasBinary('nsenter');

const virsh = (uri: string, args: string[], timeoutMs = 30_000) => run('virsh', ['-c', uri, ...args], { timeoutMs });

async function virshFails(uri: string, args: string[]): Promise<string> {
  try {
    await virsh(uri, args);
  } catch (e) {
    if (e instanceof CommandError) return e.stderr;
    throw e;
  }
  return '';
}

function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

function rootMountPointsUnder(prefixes: readonly string[]): string[] {
  return rootMounts()
    .map((m) => m.mountPoint)
    .filter((p) => prefixes.some((x) => p === x || p.startsWith(x + '/')))
    .sort();
}

const { prefix, subnet } = labNaming();
const H1 = `${prefix}-h1`;
const H2 = `${prefix}-h2`;
const BRIDGE = labBridgeName(prefix);

describe.skipIf(!canRun)('lab (real libvirt)', () => {
  let home = '';
  let status: LabStatus = { tls: false, hosts: [], vms: [] };
  const libvirtDirs = LAB_BINDS.map((b) => b.inside);
  let rootLibvirtMountsBefore: string[] = [];
  /** Every pid seen in the lab's namespaces, checked dead after lab down. */
  const labPids = new Set<number>();

  const h = (name: string) => {
    const host = status.hosts.find((x) => x.name === name);
    if (!host) throw new Error(`no host ${name}`);
    return host;
  };
  const collectLabPids = () => {
    const nets = new Set<number>();
    for (const host of status.hosts) {
      const ino = nsInodeOfFile(`/run/netns/${host.netns}`);
      if (ino !== null) nets.add(ino);
    }
    for (const pid of pidsInNamespaces(nets, new Set())) labPids.add(pid);
  };

  beforeAll(async () => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-lab-test-'));
    await labDown(home, { prefix }); // also removes a stray lab of this prefix (<prefix>-h*, <prefix>br0) of a crashed run
    rootLibvirtMountsBefore = rootMountPointsUnder(libvirtDirs);
  });

  afterAll(async () => {
    if (!home) return;
    await labDown(home, { prefix }).catch(() => undefined);
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('brings up 2 hosts with 1 VM running on <prefix>-h1', async () => {
    const t0 = Date.now();
    status = await labUp({ home, hosts: 2, vms: 1, prefix, subnet });
    console.log(`lab up (2 hosts, 1 VM): ${Date.now() - t0} ms`);

    expect(status.hosts.map((x) => x.name)).toEqual([H1, H2]);
    expect(status.hosts.map((x) => x.address)).toEqual([`${subnet}.11`, `${subnet}.12`]);
    for (const host of status.hosts) {
      expect(host.uri).toBe(`qemu+tcp://${host.address}/system`);
      expect(host.netns).toBe(host.name);
      expect(host.pid).toBeGreaterThan(0);
      expect(isAlive(host.pid)).toBe(true);
      expect(procInfo(host.pid)?.comm).toBe('libvirtd');
      expect(host.dir).toBe(path.join(home, 'lab', 'hosts', host.name));
      // each host answers with its own hostname, and has the started+autostarted root pool
      expect((await virsh(host.uri, ['hostname'])).stdout.trim()).toBe(host.name);
      const pool = (await virsh(host.uri, ['pool-info', 'ferry-root'])).stdout;
      expect(pool).toMatch(/^State:\s+running/m);
      expect(pool).toMatch(/^Autostart:\s+yes/m);
    }
    const state = JSON.parse(fs.readFileSync(path.join(home, 'lab', 'state.json'), 'utf8')) as Record<string, unknown>;
    expect(state).toMatchObject({ prefix, subnet, bridge: BRIDGE });
    const br = JSON.parse((await run('ip', ['-j', '-4', 'addr', 'show', 'dev', BRIDGE])).stdout) as { addr_info: { local: string }[] }[];
    expect(br[0]?.addr_info.map((a) => a.local)).toEqual([`${subnet}.1`]);

    expect(status.vms).toHaveLength(1);
    const vm = status.vms[0]!;
    expect(vm).toMatchObject({ name: 'vm1', host: H1, state: 'running' });
    expect((await virsh(h(H1).uri, ['domstate', vm.uuid])).stdout.trim()).toBe('running');
    const xml = (await virsh(h(H1).uri, ['dumpxml', '--inactive', vm.uuid])).stdout;
    expect(xml).toContain("<domain type='qemu'>");
    expect(xml).toContain(`<source file='/var/lib/libvirt/images/ferry/${vm.uuid}/disk0.qcow2'/>`);
    expect(xml).not.toContain('<interface');
    expect(xml).not.toContain('<graphics');
    expect((await virsh(h(H1).uri, ['pool-info', `ferry-${vm.uuid}`])).stdout).toMatch(/^Autostart:\s+yes/m);

    // the disk: 64 MiB virtual, >= 32 MiB of random data allocated, seen through hostPath()
    const disk = hostPath(home, H1, vm.diskPath);
    expect(disk).toBe(path.join(home, 'lab', 'hosts', H1, 'lib', 'images', 'ferry', vm.uuid, 'disk0.qcow2'));
    expect(allocatedBytes(disk)).toBeGreaterThanOrEqual(32 * 1024 * 1024);
    const info = JSON.parse((await run('qemu-img', ['info', '--force-share', '--output=json', disk])).stdout) as {
      format: string;
      'virtual-size': number;
    };
    expect(info.format).toBe('qcow2');
    expect(info['virtual-size']).toBe(64 * 1024 * 1024);

    // nothing of the lab is mounted over the root namespace's libvirt directories
    expect(rootMountPointsUnder(libvirtDirs)).toEqual(rootLibvirtMountsBefore);
    collectLabPids();
  });

  it('is idempotent: a second lab up leaves the healthy lab alone', async () => {
    const again = await labUp({ home, hosts: 2, vms: 1, prefix, subnet });
    expect(again.hosts.map((x) => x.pid)).toEqual(status.hosts.map((x) => x.pid));
    expect(again.vms.map((v) => v.uuid)).toEqual(status.vms.map((v) => v.uuid));
    expect(again.vms[0]?.state).toBe('running');
  });

  it('live-migrates the VM to <prefix>-h2 with virsh, and status follows it', async () => {
    const vm = status.vms[0]!;
    const src = h(H1);
    const dst = h(H2);
    const pool = `ferry-${vm.uuid}`;
    const dir = path.posix.dirname(vm.diskPath);
    // what Ferry does before migrating: pool + empty volume of the same size at the same path
    await virsh(dst.uri, ['pool-define-as', pool, 'dir', '--target', dir]);
    await virsh(dst.uri, ['pool-build', pool]);
    await virsh(dst.uri, ['pool-start', pool]);
    await virsh(dst.uri, ['vol-create-as', pool, 'disk0.qcow2', '64M', '--format', 'qcow2']);

    const t0 = Date.now();
    await virsh(
      src.uri,
      ['migrate', '--live', '--p2p', '--copy-storage-all', '--persistent', '--undefinesource', vm.uuid, dst.uri],
      180_000,
    );
    console.log(`virsh migrate (unlimited bandwidth): ${Date.now() - t0} ms`);

    expect((await virsh(dst.uri, ['domstate', vm.uuid])).stdout.trim()).toBe('running');
    expect(await virshFails(src.uri, ['domstate', vm.uuid])).toMatch(/failed to get domain|Domain not found/);
    const completed = (await virsh(dst.uri, ['domjobinfo', vm.uuid, '--completed', '--keep-completed'])).stdout;
    expect(completed).toMatch(/^Job type:\s+Completed/m);
    expect(completed).toMatch(/^Operation:\s+Incoming migration/m);

    // the copied disk is on the target's storage, random data and all
    expect(allocatedBytes(hostPath(home, H2, vm.diskPath))).toBeGreaterThanOrEqual(32 * 1024 * 1024);

    const after = await labStatus(home);
    expect(after.vms[0]).toMatchObject({ uuid: vm.uuid, host: H2, state: 'running' });
    collectLabPids();
  });

  it('stops and restarts a host daemon; running VMs survive', async () => {
    const dst = h(H2);
    const vm = status.vms[0]!;

    await stopHostDaemon(home, H2, 'SIGKILL');
    expect(isAlive(dst.pid)).toBe(false);
    expect((await labStatus(home)).hosts.find((x) => x.name === H2)?.pid).toBe(0);
    expect(await virshFails(dst.uri, ['uri'])).toContain('Connection refused');

    await startHostDaemon(home, H2);
    const restarted = (await labStatus(home)).hosts.find((x) => x.name === H2)!;
    expect(restarted.pid).toBeGreaterThan(0);
    expect(restarted.pid).not.toBe(dst.pid);
    expect((await virsh(dst.uri, ['domstate', vm.uuid])).stdout.trim()).toBe('running');

    // SIGTERM: graceful stop, then start again
    await stopHostDaemon(home, H2, 'SIGTERM');
    expect(isAlive(restarted.pid)).toBe(false);
    await startHostDaemon(home, H2);

    // SIGSTOP: the daemon hangs (pid unchanged), startHostDaemon continues it
    const h1 = (await labStatus(home)).hosts.find((x) => x.name === H1)!;
    await stopHostDaemon(home, H1, 'SIGSTOP');
    expect(procInfo(h1.pid)?.state).toBe('T');
    await startHostDaemon(home, H1);
    expect(procInfo(h1.pid)?.state).not.toBe('T');
    expect((await virsh(h1.uri, ['uri'])).stdout.trim()).toBe(h1.uri);

    const s = await labStatus(home);
    expect(s.hosts.every((x) => x.pid > 0)).toBe(true);
    expect(s.vms[0]).toMatchObject({ host: H2, state: 'running' });
    status = s;
    collectLabPids();
  });

  it('lab down leaves no netns, links, mounts or processes', async () => {
    collectLabPids();
    expect(labPids.size).toBeGreaterThanOrEqual(3); // 2 × libvirtd + QEMU at least
    // A decoy of another lab (another prefix): a netns <decoy>-h1 with its veth <decoy>-h1-v. Stray
    // clean-up must only ever touch this lab's prefix.
    const decoy = prefix === 'decoy' ? 'decoy2' : 'decoy';
    await run('ip', ['netns', 'add', `${decoy}-h1`]);
    try {
      await run('ip', ['link', 'add', 'name', `${decoy}-h1-v`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', `${decoy}-h1`]);

      await labDown(home, { prefix });

      expect(fs.readdirSync('/run/netns')).toContain(`${decoy}-h1`);
      const left = JSON.parse((await run('ip', ['-j', 'link', 'show'])).stdout) as { ifname: string }[];
      expect(left.map((l) => l.ifname)).toContain(`${decoy}-h1-v`);
    } finally {
      await run('ip', ['netns', 'delete', `${decoy}-h1`]).catch(() => undefined);
    }

    expect(fs.readdirSync('/run/netns').filter((n) => n.startsWith(`${prefix}-h`))).toEqual([]);
    const links = JSON.parse((await run('ip', ['-j', 'link', 'show'])).stdout) as { ifname: string }[];
    expect(links.filter((l) => l.ifname === BRIDGE || (l.ifname.startsWith(`${prefix}-h`) && l.ifname.endsWith('-v')))).toEqual([]);
    const real = fs.realpathSync(home);
    expect(rootMounts().filter((m) => m.mountPoint.startsWith(real + '/'))).toEqual([]);
    expect(rootMountPointsUnder(libvirtDirs)).toEqual(rootLibvirtMountsBefore);
    expect(fs.existsSync(path.join(home, 'lab'))).toBe(false);
    expect([...labPids].filter(isAlive)).toEqual([]);
    expect(await labStatus(home)).toEqual({ tls: false, hosts: [], vms: [] });

    // and once more: nothing up is fine
    await labDown(home, { prefix });
  });
});
