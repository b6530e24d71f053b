/**
 * A host's network and mount namespaces: the lab's bridge in the root namespace, the host's netns and veth
 * pair, the private <home>/lab/ns directory of namespace handles, and the host's mount + UTS namespaces with
 * its libvirt directories bind-mounted (LAB_BINDS).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../hypervisor/exec';
import { LAB_BINDS, nsDir, vethName, type HostRefs } from './naming';
import {
  ensureOnlyAddress,
  ipLinks,
  ipv4Addresses,
  isMountPoint,
  isNsfsMount,
  killAndWait,
  nsInodeOfFile,
  pidsInNamespaces,
  rootMounts,
  tryRun,
} from './sys';
import { LabError } from './types';

/** Another interface (another lab's bridge, a real network) already in this /24 would break routing. */
export async function assertSubnetFree(bridge: string, subnet: string): Promise<void> {
  const clash = (await ipv4Addresses()).find((a) => a.ifname !== bridge && a.local.startsWith(`${subnet}.`));
  if (clash) {
    throw new LabError(
      `subnet ${subnet}.0/24 is already used by ${clash.ifname} (${clash.local}/${clash.prefixlen}), perhaps another lab: ` +
        'choose another subnet (labUp `subnet`, `ferry lab up --subnet`, FERRY_LAB_SUBNET in tests)',
    );
  }
}

export async function ensureBridge(bridge: string, subnet: string): Promise<void> {
  const links = await ipLinks();
  const br = links.find((l) => l.ifname === bridge);
  if (br && br.linkinfo?.info_kind !== 'bridge') {
    throw new LabError(`${bridge} exists and is not a bridge`);
  }
  await assertSubnetFree(bridge, subnet);
  if (!br) await run('ip', ['link', 'add', 'name', bridge, 'type', 'bridge']);
  await ensureOnlyAddress(bridge, `${subnet}.1/24`);
  await run('ip', ['link', 'set', 'dev', bridge, 'up']);
}

export async function ensureHostNetwork(r: HostRefs, bridge: string): Promise<void> {
  const { h } = r;
  if (!isNsfsMount(r.netnsFile)) {
    await tryRun('ip', ['netns', 'delete', h.netns]);
    await run('ip', ['netns', 'add', h.netns]);
  }
  await ensureVeth(vethName(h.name), h.netns, 'eth0', bridge);
  await ensureNsEth0(h.netns, `${h.address}/24`);
  // The bridge's address is the host's gateway, as on a real network: machines on other subnets (a `ferry cluster`'s
  // workers, routed by the root namespace) reach libvirtd and get their answers back.
  await run('ip', ['-n', h.netns, 'route', 'replace', 'default', 'via', `${h.address.split('.').slice(0, 3).join('.')}.1`]);
  // …but hosts have no DNS: nothing NATs the machine's resolvers into the lab, and a query that leaves by the
  // default route waits 5 s per try, which libvirtd pays inside a migration's switch-over (measured: 10 s of
  // downtime). An unreachable route per resolver makes every lookup fail at once, as it did without the route.
  for (const ns of machineNameservers()) await run('ip', ['-n', h.netns, 'route', 'replace', 'unreachable', `${ns}/32`]);
}

/** The IPv4 nameservers of the machine's /etc/resolv.conf. */
export function machineNameservers(file = '/etc/resolv.conf'): string[] {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return [...text.matchAll(/^\s*nameserver\s+(\d{1,3}(?:\.\d{1,3}){3})\s*$/gm)].map((m) => m[1] as string);
}

/** A veth pair `outer` (root namespace, enslaved to `bridge`, up) ↔ `inner` (in `netns`), recreated when half of it is missing. */
export async function ensureVeth(outer: string, netns: string, inner: string, bridge: string): Promise<void> {
  const o = (await ipLinks()).find((l) => l.ifname === outer);
  const i = (await ipLinks(netns)).find((l) => l.ifname === inner);
  if (!o || !i || i.link_index !== o.ifindex) {
    if (o) await tryRun('ip', ['link', 'delete', 'dev', outer]);
    if (i) await tryRun('ip', ['-n', netns, 'link', 'delete', 'dev', inner]);
    await run('ip', ['link', 'add', 'name', outer, 'type', 'veth', 'peer', 'name', inner, 'netns', netns]);
  }
  await run('ip', ['link', 'set', 'dev', outer, 'master', bridge, 'up']);
}

/** `eth0` of a namespace with exactly `cidr`, it and `lo` up. */
export async function ensureNsEth0(netns: string, cidr: string): Promise<void> {
  await ensureOnlyAddress('eth0', cidr, netns);
  await run('ip', ['-n', netns, 'link', 'set', 'dev', 'lo', 'up']);
  await run('ip', ['-n', netns, 'link', 'set', 'dev', 'eth0', 'up']);
}

/** Private bind mount of <home>/lab/ns on itself: `unshare --mount=<file>` needs a non-shared parent. */
export async function ensureNsDir(home: string): Promise<string> {
  const dir = nsDir(home);
  fs.mkdirSync(dir, { recursive: true });
  const real = fs.realpathSync(dir);
  if (!isMountPoint(real)) await run('mount', ['--bind', real, real]);
  await run('mount', ['--make-private', real]);
  return real;
}

export async function ensureHostMountNs(r: HostRefs, nsReal: string): Promise<void> {
  const { h } = r;
  const mounts = rootMounts();
  if (!isNsfsMount(r.mntFile, mounts) || !isNsfsMount(r.utsFile, mounts)) {
    // A half-made pair: drop it (and anything still running in it) and make a new one.
    const oldMnt = nsInodeOfFile(r.mntFile);
    if (oldMnt !== null) await killAndWait(pidsInNamespaces(new Set(), new Set([oldMnt])));
    for (const f of [r.mntFile, r.utsFile]) {
      if (isMountPoint(f, mounts)) await tryRun('umount', [f]);
      fs.writeFileSync(f, '');
    }
    await run('unshare', [`--mount=${r.mntFile}`, `--uts=${r.utsFile}`, '--propagation', 'private', 'true']);
    // The new namespace started as a copy of the root's mounts: drop its copies of other hosts'
    // namespace handles so that it never keeps them alive.
    await tryRun('nsenter', [`--mount=${r.mntFile}`, 'umount', '--recursive', '--lazy', '/run/netns']);
    await tryRun('nsenter', [`--mount=${r.mntFile}`, 'umount', '--recursive', '--lazy', nsReal]);
  }
  await run('nsenter', [`--uts=${r.utsFile}`, 'hostname', h.name]);

  // Bind mounts: compare device:inode seen inside with our directories, mount what differs.
  for (const b of LAB_BINDS) {
    fs.mkdirSync(path.join(r.dir, b.sub), { recursive: true, mode: 0o755 });
    fs.mkdirSync(b.inside, { recursive: true, mode: 0o755 }); // mount point (an empty dir in the root)
  }
  const want = LAB_BINDS.map((b) => {
    const st = fs.statSync(path.join(r.dir, b.sub));
    return `${st.dev}:${st.ino}`;
  });
  const seen = (
    await run('nsenter', [`--mount=${r.mntFile}`, 'stat', '--format=%d:%i', ...LAB_BINDS.map((b) => b.inside)])
  ).stdout
    .trim()
    .split('\n');
  for (const [i, b] of LAB_BINDS.entries()) {
    if (seen[i] !== want[i]) {
      await run('nsenter', [`--mount=${r.mntFile}`, 'mount', '--bind', path.join(r.dir, b.sub), b.inside]);
    }
  }
  await ensureHostSysfs(r);
}

/**
 * The host's own /sys: a sysfs mounted from inside its network namespace lists that namespace's interfaces,
 * so libvirt's interface driver (`virsh iface-list`, which Ferry's bridge pre-check asks) sees the host's
 * bridges, not the machine's. The root's copy is recognised by the root-side veth, which only the root has.
 */
async function ensureHostSysfs(r: HostRefs): Promise<void> {
  const rootOnly = `/sys/class/net/${vethName(r.h.name)}`;
  const seen = await tryRun('nsenter', [`--mount=${r.mntFile}`, 'test', '-e', rootOnly]);
  if (!seen) return;
  await run('nsenter', [`--net=${r.netnsFile}`, `--mount=${r.mntFile}`, 'mount', '-t', 'sysfs', 'sysfs', '/sys']);
}
