/**
 * The local multi-host libvirt lab: N "hosts" on one machine, each a `libvirtd --listen` in its own
 * network + mount + UTS namespace, joined by a Linux bridge, with M small TCG VMs on the first host.
 *
 * Layout (other parts of Ferry rely on it):
 *   <home>/lab/state.json                      what labUp built (hosts, VM uuids)
 *   <home>/lab/hosts/<name>/{run,lib,etc,log,cache}
 *       bind-mounted (inside that host's mount namespace only) over
 *       /run/libvirt, /var/lib/libvirt, /etc/libvirt, /var/log/libvirt, /var/cache/libvirt
 *   <home>/lab/ns/<name>.{mnt,uts}             persistent mount/UTS namespace handles (nsfs binds);
 *                                              <home>/lab/ns is a private bind mount of itself
 *   /run/netns/<name>                          network namespace (ip netns); eth0 = <address>/24
 *   bridge <prefix>br0 (<subnet>.1/24) in the root namespace; root side of each host's veth: <name>-v
 *
 * Hosts: <prefix>-h1..<prefix>-hN at <subnet>.11, .12, …; URI qemu+tcp://<ip>/system (no auth, no TLS).
 * The prefix (default `ferry`) and subnet (default 10.213.77) make a lab: several labs with different
 * prefixes and subnets run side by side on one machine. Both are recorded in state.json, so labDown,
 * labStatus, stopHostDaemon and startHostDaemon find them from the home alone.
 * Every host has the started+autostarted dir pool `ferry-root` on /var/lib/libvirt/images/ferry.
 * VMs vm1..vmM are created on the first host: 128 MiB, 1 vCPU, TCG, one qcow2 disk of 64 MiB whose
 * first 32 MiB are random, in a per-VM dir pool `ferry-<uuid>` on /var/lib/libvirt/images/ferry/<uuid>.
 *
 * No shell anywhere: every command goes through run() (execFile, argument array, time limit); the
 * daemons are spawned directly (detached, no shell) through nsenter, which execs libvirtd, so the
 * spawned pid is the libvirtd pid. Mounts in a host's namespace are made with `nsenter --mount=<file>`.
 * The host namespaces are created with private propagation: nothing mounted there is seen in the
 * root namespace (its /run/libvirt etc. stay as they were).
 *
 * One lab per prefix per machine: labUp/labDown tear down stray pieces (netns, veths, namespace handles,
 * processes in them) of their OWN prefix only, never another prefix's. labUp/labDown of one prefix must
 * not run concurrently; labs of different prefixes may.
 */
import { spawn } from 'node:child_process';
import { randomFillSync, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { run, CommandError } from '../hypervisor/exec';
import { labDomainXml } from './xml';
import { dirtyBootSector, dirtyGuestParams, type LabGuestSpec } from './guest';
import {
  ensureOnlyAddress,
  ipLinks,
  ipv4Addresses,
  isAlive,
  isMountPoint,
  isNsfsMount,
  killAndWait,
  nsInodeOfFile,
  nsInodeOfPid,
  pidsInNamespaces,
  procInfo,
  rootMounts,
  sleep,
  tryRun,
  unmountUnder,
  waitUntil,
} from './sys';

export { labDomainXml, escapeXml } from './xml';
export type { LabDomainXmlOptions, LabDiskSpec } from './xml';
export type { LabGuestSpec, DirtyGuestSpec, DirtyGuestParams } from './guest';
export { dirtyGuestParams } from './guest';

// ---------------------------------------------------------------------------------------------
// public types and constants

export interface LabHost {
  name: string;
  address: string;
  uri: string;
  netns: string;
  /** Live libvirtd pid, 0 when not running. */
  pid: number;
  /** <home>/lab/hosts/<name> */
  dir: string;
  storageRoot: string;
}

export type LabVmState = 'running' | 'paused' | 'shutoff' | 'unknown';

export interface LabVm {
  name: string;
  uuid: string;
  /** Host the VM currently runs on (or is defined on); '' when no reachable host has it. */
  host: string;
  state: LabVmState;
  /** Path of its disk inside whichever host has it (the same on every host). */
  diskPath: string;
  /** The guest program in its boot sector (labAddVm), absent for the default VMs (nothing boots). */
  guest?: LabGuestSpec;
}

export interface LabStatus {
  hosts: LabHost[];
  vms: LabVm[];
}

export interface LabUpOptions {
  home: string;
  hosts: number;
  vms: number;
  /** First three octets of the lab's /24, default '10.213.77'. Must not be in use by another interface. */
  subnet?: string;
  /**
   * Names this lab's pieces: hosts `<prefix>-h<k>` (netns the same), bridge `<prefix>br0`, veths
   * `<prefix>-h<k>-v`. 1..8 characters of [a-z0-9], default `ferry`.
   */
  prefix?: string;
  /** Default 128. */
  vmMemoryMiB?: number;
  /** Random data at the start of each VM disk, default 32 MiB (the disk is max(64, this) MiB). */
  randomDataMiB?: number;
  /** Progress lines (default: silent). */
  log?: (line: string) => void;
}

export const LAB_DEFAULT_PREFIX = 'ferry';
/** The default lab's bridge. */
export const LAB_BRIDGE = 'ferrybr0';
export const LAB_DEFAULT_SUBNET = '10.213.77';
export const LAB_STORAGE_ROOT = '/var/lib/libvirt/images/ferry';
export const LAB_ROOT_POOL = 'ferry-root';
export const LAB_DISK_NAME = 'disk0.qcow2';
const LIBVIRTD = '/usr/sbin/libvirtd';
const DEFAULT_DISK_MIB = 64;

export class LabError extends Error {
  override readonly name = 'LabError';
}

/** What is bind-mounted where inside every host. */
export const LAB_BINDS: readonly { inside: string; sub: string }[] = [
  { inside: '/run/libvirt', sub: 'run' },
  { inside: '/var/lib/libvirt', sub: 'lib' },
  { inside: '/etc/libvirt', sub: 'etc' },
  { inside: '/var/log/libvirt', sub: 'log' },
  { inside: '/var/cache/libvirt', sub: 'cache' },
];

/** A lab prefix: 1..8 characters of [a-z0-9] (so that `<prefix>-h<k>-v` fits an interface name). */
export function checkLabPrefix(prefix: string): string {
  if (!/^[a-z0-9]{1,8}$/.test(prefix)) {
    throw new LabError(`lab prefix must be 1 to 8 characters of [a-z0-9], e.g. ferry (got ${JSON.stringify(prefix)})`);
  }
  return prefix;
}

export function labHostName(i: number, prefix: string = LAB_DEFAULT_PREFIX): string {
  return `${checkLabPrefix(prefix)}-h${i}`;
}

/** The lab's bridge in the root namespace: `<prefix>br0` (at most 11 characters). */
export function labBridgeName(prefix: string = LAB_DEFAULT_PREFIX): string {
  return `${checkLabPrefix(prefix)}br0`;
}

function checkSubnet(subnet: string): string {
  if (!/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(subnet) || subnet.split('.').some((x) => Number(x) > 255)) {
    throw new LabError(`subnet must be the first three octets of a /24, e.g. 10.213.77 (got ${subnet})`);
  }
  return subnet;
}

export function labHostUri(address: string): string {
  return `qemu+tcp://${address}/system`;
}

// ---------------------------------------------------------------------------------------------
// paths

function labDir(home: string): string {
  return path.join(path.resolve(home), 'lab');
}
function statePath(home: string): string {
  return path.join(labDir(home), 'state.json');
}
function nsDir(home: string): string {
  return path.join(labDir(home), 'ns');
}
function tmpDir(home: string): string {
  return path.join(labDir(home), 'tmp');
}
export function labHostDir(home: string, host: string): string {
  return path.join(labDir(home), 'hosts', host);
}
function vethName(host: string): string {
  return `${host}-v`;
}

/**
 * Path in the root namespace of `insidePath` as seen inside `host`: paths under the bind-mounted
 * libvirt directories map into <home>/lab/hosts/<host>/…, anything else is shared with the root.
 */
export function hostPath(home: string, host: string, insidePath: string): string {
  if (!path.posix.isAbsolute(insidePath)) throw new LabError(`not an absolute path: ${insidePath}`);
  let p = path.posix.normalize(insidePath);
  if (p === '/var/run' || p.startsWith('/var/run/')) p = p.slice('/var'.length); // Debian: /var/run -> /run
  for (const b of LAB_BINDS) {
    if (p === b.inside || p.startsWith(b.inside + '/')) {
      return path.join(labHostDir(home, host), b.sub, p.slice(b.inside.length));
    }
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// state file

const StateHostSchema = z.object({
  name: z.string(),
  address: z.string(),
  uri: z.string(),
  netns: z.string(),
  hostUuid: z.string(),
});
const StateVmSchema = z.object({
  name: z.string(),
  uuid: z.string(),
  memoryMiB: z.number(),
  diskPath: z.string(),
  diskMiB: z.number(),
  randomDataMiB: z.number(),
  createdOn: z.string(),
  /** labAddVm's guest program (absent: nothing bootable, as labUp's VMs). */
  guest: z
    .object({ kind: z.literal('dirty'), regionMiB: z.number(), pagesPerSec: z.union([z.number(), z.literal('max')]) })
    .optional(),
});
const StateSchema = z.object({
  version: z.literal(1),
  home: z.string(),
  /** Absent in state files written before labs had prefixes: those are the default lab. */
  prefix: z.string().default(LAB_DEFAULT_PREFIX),
  subnet: z.string(),
  bridge: z.string(),
  hosts: z.array(StateHostSchema),
  vms: z.array(StateVmSchema),
  createdAt: z.string(),
});
type StateHost = z.infer<typeof StateHostSchema>;
type StateVm = z.infer<typeof StateVmSchema>;
type LabState = z.infer<typeof StateSchema>;

function readState(home: string): LabState | null {
  return readStateFile(statePath(home));
}

function readStateFile(file: string): LabState | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  try {
    const r = StateSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

function writeState(home: string, s: LabState): void {
  const file = statePath(home);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n');
  fs.renameSync(tmp, file);
}

function requireHost(s: LabState | null, host: string): StateHost {
  const h = s?.hosts.find((x) => x.name === host);
  if (!h) throw new LabError(`no lab host ${host} (is the lab up?)`);
  return h;
}

// ---------------------------------------------------------------------------------------------
// preconditions

function requireRoot(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new LabError('the lab needs root (network/mount namespaces, bridges, libvirtd)');
  }
}

function requireTools(): void {
  const tools = [LIBVIRTD, 'virsh', 'qemu-img', 'qemu-system-x86_64', 'ip', 'nsenter', 'unshare', 'mount', 'umount', 'hostname', 'stat'];
  const dirs = (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin']);
  const missing = tools.filter((t) =>
    t.startsWith('/') ? !fs.existsSync(t) : !dirs.some((d) => d && fs.existsSync(path.join(d, t))),
  );
  if (missing.length) {
    throw new LabError(
      `missing ${missing.join(', ')}; install libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils iproute2`,
    );
  }
}

/** libvirt resolves user/group libvirt-qemu (and group kvm) at start-up, before reading qemu.conf. */
async function ensureUsers(): Promise<void> {
  const has = async (db: string, name: string) => (await tryRun('getent', [db, name], 10_000)) !== null;
  for (const g of ['kvm', 'libvirt-qemu']) {
    if (!(await has('group', g))) {
      await tryRun('groupadd', ['--system', g], 30_000);
      if (!(await has('group', g))) throw new LabError(`could not create group ${g}`);
    }
  }
  if (!(await has('passwd', 'libvirt-qemu'))) {
    await tryRun(
      'useradd',
      ['--system', '--gid', 'libvirt-qemu', '--groups', 'kvm', '--no-create-home', '--home-dir', '/var/lib/libvirt', '--shell', '/usr/sbin/nologin', 'libvirt-qemu'],
      30_000,
    );
    if (!(await has('passwd', 'libvirt-qemu'))) throw new LabError('could not create user libvirt-qemu');
  }
}

// ---------------------------------------------------------------------------------------------
// configuration

function libvirtdConf(h: StateHost): string {
  return [
    `# Written by Ferry's lab for ${h.name}; rewritten by every \`ferry lab up\`.`,
    `listen_tcp = 1`,
    `listen_tls = 0`,
    `listen_addr = "${h.address}"`,
    `tcp_port = "16509"`,
    `auth_tcp = "none"`,
    `auth_unix_ro = "none"`,
    `auth_unix_rw = "none"`,
    `unix_sock_group = "root"`,
    `unix_sock_ro_perms = "0777"`,
    `unix_sock_rw_perms = "0700"`,
    `host_uuid = "${h.hostUuid}"`,
    `log_outputs = "3:file:/var/log/libvirt/libvirtd.log"`,
    '',
  ].join('\n');
}

function qemuConf(h: StateHost): string {
  return [
    `# Written by Ferry's lab for ${h.name}; rewritten by every \`ferry lab up\`.`,
    `user = "root"`,
    `group = "root"`,
    `security_driver = "none"`,
    `dynamic_ownership = 0`,
    `remember_owner = 0`,
    `# no virtlogd: QEMU writes its log file directly`,
    `stdio_handler = "file"`,
    `# every host shares the machine's cgroup tree: keep libvirt out of it`,
    `cgroup_controllers = [ ]`,
    `namespaces = [ ]`,
    `migration_address = "${h.address}"`,
    `migration_host = "${h.address}"`,
    '',
  ].join('\n');
}

function writeIfChanged(file: string, text: string): boolean {
  try {
    if (fs.readFileSync(file, 'utf8') === text) return false;
  } catch {
    /* absent */
  }
  fs.writeFileSync(file, text);
  return true;
}

// ---------------------------------------------------------------------------------------------
// virsh

function virsh(uri: string, args: readonly string[], timeoutMs = 30_000) {
  return run('virsh', ['-c', uri, ...args], { timeoutMs });
}

/** Like virsh(), but null on any failure (exit code or time-out). */
async function virshMaybe(uri: string, args: readonly string[], timeoutMs = 10_000) {
  try {
    return await virsh(uri, args, timeoutMs);
  } catch (e) {
    if (e instanceof CommandError) return null;
    throw e;
  }
}

async function poolInfo(uri: string, pool: string): Promise<{ active: boolean; autostart: boolean } | null> {
  const r = await virshMaybe(uri, ['pool-info', pool], 30_000);
  if (!r) return null;
  return {
    active: /^State:\s+running\s*$/m.test(r.stdout),
    autostart: /^Autostart:\s+yes\s*$/m.test(r.stdout),
  };
}

/** Defines (if needed), builds, starts and autostarts a dir pool. */
async function ensureDirPool(uri: string, pool: string, target: string): Promise<void> {
  let info = await poolInfo(uri, pool);
  if (!info) {
    await virsh(uri, ['pool-define-as', pool, 'dir', '--target', target]);
    info = { active: false, autostart: false };
  }
  if (!info.active) {
    await virsh(uri, ['pool-build', pool]);
    await virsh(uri, ['pool-start', pool]);
  }
  if (!info.autostart) await virsh(uri, ['pool-autostart', pool]);
}

// ---------------------------------------------------------------------------------------------
// namespaces and daemons

interface HostRefs {
  h: StateHost;
  dir: string;
  netnsFile: string;
  mntFile: string;
  utsFile: string;
  pidFile: string;
  logFile: string;
}

function refs(home: string, h: StateHost): HostRefs {
  const dir = labHostDir(home, h.name);
  let ns = nsDir(home);
  try {
    ns = fs.realpathSync(ns);
  } catch {
    /* not there yet */
  }
  return {
    h,
    dir,
    netnsFile: `/run/netns/${h.netns}`,
    mntFile: path.join(ns, `${h.name}.mnt`),
    utsFile: path.join(ns, `${h.name}.uts`),
    pidFile: path.join(dir, 'run', 'libvirtd.pid'),
    logFile: path.join(dir, 'log', 'libvirtd.stdout.log'),
  };
}

/** The pid of the host's libvirtd if it is alive and really lives in the host's namespaces, else 0. */
function daemonPid(r: HostRefs): number {
  let pid: number;
  try {
    pid = Number.parseInt(fs.readFileSync(r.pidFile, 'utf8').trim(), 10);
  } catch {
    return 0;
  }
  const p = procInfo(pid);
  if (!p || p.state === 'Z' || p.state === 'X' || p.comm !== 'libvirtd') return 0;
  const net = nsInodeOfFile(r.netnsFile);
  const mnt = nsInodeOfFile(r.mntFile);
  if (net === null || nsInodeOfPid(pid, 'net') !== net) return 0;
  if (mnt === null || nsInodeOfPid(pid, 'mnt') !== mnt) return 0;
  return pid;
}

function logTail(file: string, bytes = 2000): string {
  try {
    const t = fs.readFileSync(file, 'utf8');
    return t.slice(-bytes).trim();
  } catch {
    return '';
  }
}

/** Polls `virsh -c <uri> uri` until it answers. */
async function waitAnswer(r: HostRefs, pid: number, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (pid && !isAlive(pid)) {
      throw new LabError(
        `libvirtd of ${r.h.name} (pid ${pid}) exited; ${r.logFile}:\n${logTail(r.logFile)}\n` +
          `${path.join(r.dir, 'log', 'libvirtd.log')}:\n${logTail(path.join(r.dir, 'log', 'libvirtd.log'))}`,
      );
    }
    if (await virshMaybe(r.h.uri, ['uri'], 5_000)) return;
    if (Date.now() > deadline) throw new LabError(`libvirtd of ${r.h.name} does not answer on ${r.h.uri}`);
    await sleep(150);
  }
}

async function spawnDaemon(r: HostRefs): Promise<number> {
  const out = fs.openSync(r.logFile, 'a');
  let child;
  try {
    child = spawn(
      'nsenter',
      [
        `--net=${r.netnsFile}`,
        `--mount=${r.mntFile}`,
        `--uts=${r.utsFile}`,
        '--',
        LIBVIRTD,
        '--listen',
        '--config',
        '/etc/libvirt/libvirtd.conf',
        '--pid-file',
        '/run/libvirt/libvirtd.pid',
      ],
      { detached: true, stdio: ['ignore', out, out], cwd: '/', env: { ...process.env, LC_ALL: 'C', LANG: 'C' } },
    );
  } finally {
    fs.closeSync(out);
  }
  let spawnError: Error | null = null;
  child.on('error', (e) => {
    spawnError = e;
  });
  child.unref();
  const pid = child.pid ?? 0;
  if (!pid) {
    await sleep(50);
    throw new LabError(`could not start libvirtd for ${r.h.name}: ${String(spawnError ?? 'no pid')}`);
  }
  // nsenter execs libvirtd (no pid namespace, no --fork), so `pid` is the daemon itself.
  await waitAnswer(r, pid);
  return pid;
}

async function ensureDaemon(r: HostRefs, configChanged: boolean, log: (l: string) => void): Promise<number> {
  let pid = daemonPid(r);
  if (pid && configChanged) {
    log(`${r.h.name}: configuration changed, restarting libvirtd`);
    await signalAndWait(pid, 'SIGTERM');
    pid = 0;
  }
  if (pid) {
    if (procInfo(pid)?.state === 'T') process.kill(pid, 'SIGCONT');
    await waitAnswer(r, pid);
    return pid;
  }
  // A libvirtd left in this host's netns from an older mount namespace would hold the port.
  const netIno = nsInodeOfFile(r.netnsFile);
  if (netIno !== null) {
    const strays = pidsInNamespaces(new Set([netIno]), new Set()).filter((p) => procInfo(p)?.comm === 'libvirtd');
    if (strays.length) await killAndWait(strays);
  }
  log(`${r.h.name}: starting libvirtd`);
  return spawnDaemon(r);
}

async function signalAndWait(pid: number, signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
  try {
    if (signal === 'SIGTERM' && procInfo(pid)?.state === 'T') process.kill(pid, 'SIGCONT');
    process.kill(pid, signal);
  } catch {
    return;
  }
  const gone = await waitUntil(() => !isAlive(pid), signal === 'SIGKILL' ? 10_000 : 30_000);
  if (!gone) {
    const left = await killAndWait([pid]);
    if (left.length) throw new LabError(`pid ${pid} does not die`);
  }
}

/** Another interface (another lab's bridge, a real network) already in this /24 would break routing. */
async function assertSubnetFree(bridge: string, subnet: string): Promise<void> {
  const clash = (await ipv4Addresses()).find((a) => a.ifname !== bridge && a.local.startsWith(`${subnet}.`));
  if (clash) {
    throw new LabError(
      `subnet ${subnet}.0/24 is already used by ${clash.ifname} (${clash.local}/${clash.prefixlen}), perhaps another lab: ` +
        'choose another subnet (labUp `subnet`, `ferry lab up --subnet`, FERRY_LAB_SUBNET in tests)',
    );
  }
}

async function ensureBridge(bridge: string, subnet: string): Promise<void> {
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

async function ensureHostNetwork(r: HostRefs, bridge: string): Promise<void> {
  const { h } = r;
  if (!isNsfsMount(r.netnsFile)) {
    await tryRun('ip', ['netns', 'delete', h.netns]);
    await run('ip', ['netns', 'add', h.netns]);
  }
  const veth = vethName(h.name);
  const outer = (await ipLinks()).find((l) => l.ifname === veth);
  const inner = (await ipLinks(h.netns)).find((l) => l.ifname === 'eth0');
  if (!outer || !inner || inner.link_index !== outer.ifindex) {
    if (outer) await tryRun('ip', ['link', 'delete', 'dev', veth]);
    if (inner) await tryRun('ip', ['-n', h.netns, 'link', 'delete', 'dev', 'eth0']);
    await run('ip', ['link', 'add', 'name', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.netns]);
  }
  await run('ip', ['link', 'set', 'dev', veth, 'master', bridge, 'up']);
  await ensureOnlyAddress('eth0', `${h.address}/24`, h.netns);
  await run('ip', ['-n', h.netns, 'link', 'set', 'dev', 'lo', 'up']);
  await run('ip', ['-n', h.netns, 'link', 'set', 'dev', 'eth0', 'up']);
}

/** Private bind mount of <home>/lab/ns on itself: `unshare --mount=<file>` needs a non-shared parent. */
async function ensureNsDir(home: string): Promise<string> {
  const dir = nsDir(home);
  fs.mkdirSync(dir, { recursive: true });
  const real = fs.realpathSync(dir);
  if (!isMountPoint(real)) await run('mount', ['--bind', real, real]);
  await run('mount', ['--make-private', real]);
  return real;
}

async function ensureHostMountNs(r: HostRefs, nsReal: string): Promise<void> {
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
}

function writeHostConfig(r: HostRefs): boolean {
  const etc = path.join(r.dir, 'etc');
  for (const f of ['libvirt.conf', 'libvirt-admin.conf']) {
    const src = path.join('/etc/libvirt', f);
    const dst = path.join(etc, f);
    if (!fs.existsSync(dst) && fs.existsSync(src)) fs.copyFileSync(src, dst);
  }
  const a = writeIfChanged(path.join(etc, 'libvirtd.conf'), libvirtdConf(r.h));
  const b = writeIfChanged(path.join(etc, 'qemu.conf'), qemuConf(r.h));
  return a || b;
}

async function bringUpHost(home: string, h: StateHost, nsReal: string, bridge: string, log: (l: string) => void): Promise<void> {
  const r = refs(home, h);
  await ensureHostNetwork(r, bridge);
  await ensureHostMountNs(r, nsReal);
  const changed = writeHostConfig(r);
  await ensureDaemon(r, changed, log);
  await ensureDirPool(h.uri, LAB_ROOT_POOL, LAB_STORAGE_ROOT);
}

const CAPS_SUBDIR = path.join('cache', 'qemu', 'capabilities');

function capsFiles(home: string, host: string): string[] {
  return safeReaddir(path.join(labHostDir(home, host), CAPS_SUBDIR)).filter((f) => f.endsWith('.xml'));
}

/**
 * libvirt probes QEMU's capabilities on first use (about 3.5 s with TCG here), which would otherwise
 * land in the first define on a host or the first incoming migration. Probe one host, copy its
 * capability cache to the others (same binaries, same machine: libvirt validates and accepts it),
 * and make every host load it now.
 */
async function warmQemuCaps(home: string, hosts: readonly StateHost[], log: (l: string) => void): Promise<void> {
  const warm = (h: StateHost) =>
    virsh(h.uri, ['domcapabilities', '--virttype', 'qemu', '--arch', 'x86_64'], 120_000).then(() => undefined);
  let source = hosts.find((h) => capsFiles(home, h.name).length > 0);
  if (!source) {
    source = hosts[0];
    if (!source) return;
    log(`${source.name}: probing QEMU capabilities`);
    await warm(source);
  }
  const files = capsFiles(home, source.name);
  for (const h of hosts) {
    if (h === source || capsFiles(home, h.name).length > 0) continue;
    const dst = path.join(labHostDir(home, h.name), CAPS_SUBDIR);
    fs.mkdirSync(dst, { recursive: true });
    for (const f of files) {
      const from = path.join(labHostDir(home, source.name), CAPS_SUBDIR, f);
      fs.copyFileSync(from, path.join(dst, f));
      const st = fs.statSync(from);
      fs.utimesSync(path.join(dst, f), st.atime, st.mtime);
    }
  }
  await Promise.all(hosts.map(warm));
}

// ---------------------------------------------------------------------------------------------
// clean-up of stray pieces (crashed sessions, other homes)

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Tears down every host of lab `prefix` not in `keep`: processes in its network or mount namespace, the
 * netns, the root-side veth, and namespace handles bound under any `…/lab/ns/` directory (ours or a
 * crashed session's). Only names of this prefix (`<prefix>-h<k>`) are ever touched: other labs' pieces
 * are left alone. `ourNs` is the real path of this home's ns dir (or null).
 */
async function teardownHosts(
  prefix: string,
  keep: ReadonlySet<string>,
  ourNs: string | null,
  log: (l: string) => void,
): Promise<void> {
  checkLabPrefix(prefix); // [a-z0-9] only: safe inside a regular expression
  const hostRe = new RegExp(`^${prefix}-h\\d+$`);
  const nsRe = new RegExp(`/lab/ns/(${prefix}-h\\d+)\\.(mnt|uts)$`);
  const vethRe = new RegExp(`^(${prefix}-h\\d+)-v$`);
  const netnsNames = safeReaddir('/run/netns').filter((n) => hostRe.test(n) && !keep.has(n));
  const nsMounts = rootMounts().filter((m) => {
    if (m.fstype !== 'nsfs') return false;
    const mm = nsRe.exec(m.mountPoint);
    if (!mm?.[1]) return false;
    const ours = ourNs !== null && path.dirname(m.mountPoint) === ourNs;
    return !(ours && keep.has(mm[1]));
  });
  const netInos = new Set<number>();
  for (const n of netnsNames) {
    const ino = nsInodeOfFile(`/run/netns/${n}`);
    if (ino !== null) netInos.add(ino);
  }
  const mntInos = new Set<number>();
  for (const m of nsMounts) {
    if (!m.mountPoint.endsWith('.mnt')) continue;
    const ino = nsInodeOfFile(m.mountPoint);
    if (ino !== null) mntInos.add(ino);
  }
  const pids = pidsInNamespaces(netInos, mntInos);
  if (pids.length) {
    log(`killing ${pids.length} lab process(es): ${pids.join(' ')}`);
    const left = await killAndWait(pids);
    if (left.length) throw new LabError(`lab processes do not die: ${left.join(' ')}`);
  }
  for (const n of netnsNames) {
    log(`removing netns ${n}`);
    await tryRun('ip', ['netns', 'delete', n]);
  }
  for (const m of nsMounts) {
    if ((await tryRun('umount', [m.mountPoint])) === null) await tryRun('umount', ['--lazy', m.mountPoint]);
  }
  // Root-side veths whose host is gone (deleting one end deletes the pair, even if a stray copy
  // of the netns is still pinned somewhere).
  for (const l of await ipLinks()) {
    const mm = vethRe.exec(l.ifname);
    if (mm?.[1] && !keep.has(mm[1])) await tryRun('ip', ['link', 'delete', 'dev', l.ifname]);
  }
  // Other homes' ns dirs (self bind mounts) left by a crashed session of this prefix, once empty.
  const all = rootMounts();
  for (const m of all) {
    if (!m.mountPoint.endsWith('/lab/ns') || m.mountPoint === ourNs) continue;
    if (!fs.existsSync(path.join(path.dirname(m.mountPoint), 'hosts'))) continue;
    if (readStateFile(path.join(path.dirname(m.mountPoint), 'state.json'))?.prefix !== prefix) continue;
    if (all.some((c) => c.mountPoint.startsWith(m.mountPoint + '/'))) continue;
    await tryRun('umount', [m.mountPoint]);
  }
}

// ---------------------------------------------------------------------------------------------
// VMs

interface VmLocation {
  host: string;
  state: LabVmState;
}

/** Where each domain (by uuid) is, asking every host whose daemon is alive and not stopped. */
async function locateVms(home: string, hosts: readonly StateHost[]): Promise<Map<string, VmLocation>> {
  const rank: Record<LabVmState, number> = { running: 3, paused: 2, shutoff: 1, unknown: 0 };
  const out = new Map<string, VmLocation>();
  const per = await Promise.all(
    hosts.map(async (h) => {
      const pid = daemonPid(refs(home, h));
      if (!pid || procInfo(pid)?.state === 'T') return null;
      const [all, running, paused] = await Promise.all([
        virshMaybe(h.uri, ['list', '--all', '--uuid']),
        virshMaybe(h.uri, ['list', '--uuid', '--state-running']),
        virshMaybe(h.uri, ['list', '--uuid', '--state-paused']),
      ]);
      if (!all) return null;
      const ids = (t: string | undefined) => new Set((t ?? '').split('\n').map((s) => s.trim()).filter(Boolean));
      return { h, all: ids(all.stdout), running: ids(running?.stdout), paused: ids(paused?.stdout) };
    }),
  );
  for (const p of per) {
    if (!p) continue;
    for (const uuid of p.all) {
      const state: LabVmState = p.running.has(uuid) ? 'running' : p.paused.has(uuid) ? 'paused' : 'shutoff';
      const cur = out.get(uuid);
      if (!cur || rank[state] > rank[cur.state]) out.set(uuid, { host: p.h.name, state });
    }
  }
  return out;
}

/**
 * A qcow2 image of `diskMiB` MiB whose first `randomMiB` MiB are random (so they are allocated), with
 * `bootSector` (if any) over its first bytes.
 */
async function writeRandomQcow2(
  dest: string,
  diskMiB: number,
  randomMiB: number,
  scratch: string,
  bootSector?: Buffer,
): Promise<void> {
  const raw = path.join(scratch, `${path.basename(path.dirname(dest))}.${process.pid}.raw`);
  const fd = fs.openSync(raw, 'w');
  try {
    const chunk = Buffer.allocUnsafe(4 * 1024 * 1024);
    let left = randomMiB * 1024 * 1024;
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      randomFillSync(chunk, 0, n);
      fs.writeSync(fd, chunk, 0, n);
      left -= n;
    }
    fs.ftruncateSync(fd, diskMiB * 1024 * 1024);
    if (bootSector) fs.writeSync(fd, bootSector, 0, bootSector.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.rmSync(dest, { force: true });
    await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, dest], { timeoutMs: 120_000 });
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

async function createVm(home: string, h: StateHost, vm: StateVm, log: (l: string) => void): Promise<void> {
  log(`${h.name}: creating ${vm.name} (${vm.uuid})`);
  const pool = `ferry-${vm.uuid}`;
  const dirInside = path.posix.dirname(vm.diskPath);
  await ensureDirPool(h.uri, pool, dirInside);
  const dest = hostPath(home, h.name, vm.diskPath);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const boot = vm.guest ? await dirtyBootSector(vm.guest, vm.memoryMiB, tmpDir(home)) : null;
  await writeRandomQcow2(dest, vm.diskMiB, vm.randomDataMiB, tmpDir(home), boot?.image);
  await virsh(h.uri, ['pool-refresh', pool]);
  const xmlFile = path.join(tmpDir(home), `${vm.uuid}.xml`);
  fs.writeFileSync(
    xmlFile,
    labDomainXml({
      name: vm.name,
      uuid: vm.uuid,
      memoryMiB: vm.memoryMiB,
      vcpus: 1,
      diskPath: vm.diskPath,
      // a guest program's console goes to a file on whichever host runs it (labSerialLogPath)
      ...(vm.guest ? { serial: { file: serialLogInside(vm.name) } } : {}),
    }),
  );
  log(`${h.name}: defining ${vm.name}`);
  try {
    await virsh(h.uri, ['define', xmlFile]);
  } finally {
    fs.rmSync(xmlFile, { force: true });
  }
  log(`${h.name}: starting ${vm.name}`);
  await virsh(h.uri, ['start', vm.uuid], 60_000);
}

// ---------------------------------------------------------------------------------------------
// public API

/**
 * Brings the lab up. Idempotent: a healthy lab is left alone, dead daemons are restarted, missing
 * hosts/VMs are added, lab VMs found shut off are started. Never removes hosts or VMs. Pieces of a
 * crashed session (stale netns, veths, namespace handles) are torn down first.
 */
export async function labUp(o: LabUpOptions): Promise<LabStatus> {
  const log = o.log ?? (() => undefined);
  const subnet = checkSubnet(o.subnet ?? LAB_DEFAULT_SUBNET);
  const prefix = checkLabPrefix(o.prefix ?? LAB_DEFAULT_PREFIX);
  const vmMemoryMiB = o.vmMemoryMiB ?? 128;
  const randomDataMiB = o.randomDataMiB ?? 32;
  if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts > 200) throw new LabError('hosts must be 1..200');
  if (!Number.isInteger(o.vms) || o.vms < 0 || o.vms > 1000) throw new LabError('vms must be 0..1000');
  if (!Number.isInteger(vmMemoryMiB) || vmMemoryMiB < 16) throw new LabError('vmMemoryMiB must be an integer >= 16');
  if (!Number.isInteger(randomDataMiB) || randomDataMiB < 0) throw new LabError('randomDataMiB must be an integer >= 0');
  requireRoot();
  requireTools();
  await ensureUsers();

  const home = path.resolve(o.home);
  let state = readState(home);
  await assertSubnetFree(labBridgeName(prefix), subnet); // before anything is written or torn down
  if (state && (state.subnet !== subnet || state.prefix !== prefix)) {
    throw new LabError(
      `the lab in ${labDir(home)} uses prefix ${state.prefix} and subnet ${state.subnet}; run \`ferry lab down\` first`,
    );
  }
  if (!state) {
    // Fresh start: remove whatever a crashed session of this prefix left, including this home's old lab dir.
    const oldNs = fs.existsSync(nsDir(home)) ? fs.realpathSync(nsDir(home)) : null;
    await teardownHosts(prefix, new Set(), oldNs, log);
    if (fs.existsSync(labDir(home))) {
      const real = fs.realpathSync(labDir(home));
      await unmountUnder(real);
      if (rootMounts().some((m) => m.mountPoint === real || m.mountPoint.startsWith(real + '/'))) {
        throw new LabError(`cannot unmount everything under ${real}`);
      }
      fs.rmSync(real, { recursive: true, force: true });
    }
    state = {
      version: 1,
      home,
      prefix,
      subnet,
      bridge: labBridgeName(prefix),
      hosts: [],
      vms: [],
      createdAt: new Date().toISOString(),
    };
  }
  fs.mkdirSync(tmpDir(home), { recursive: true });
  for (let i = state.hosts.length + 1; i <= o.hosts; i++) {
    const name = labHostName(i, prefix);
    const address = `${subnet}.${10 + i}`;
    state.hosts.push({ name, address, uri: labHostUri(address), netns: name, hostUuid: randomUUID() });
  }
  writeState(home, state);
  const st: LabState = state;

  // Stray hosts of this prefix that are not ours (another home, a crashed session).
  const nsReal = await ensureNsDir(home);
  await teardownHosts(prefix, new Set(st.hosts.map((h) => h.name)), nsReal, log);
  await ensureBridge(st.bridge, subnet);
  await Promise.all(st.hosts.map((h) => bringUpHost(home, h, nsReal, st.bridge, log)));
  await warmQemuCaps(home, st.hosts, log);

  const first = st.hosts[0];
  if (!first) throw new LabError('no hosts');
  for (let k = 1; k <= o.vms; k++) {
    const name = `vm${k}`;
    if (st.vms.some((v) => v.name === name)) continue;
    const uuid = randomUUID();
    st.vms.push({
      name,
      uuid,
      memoryMiB: vmMemoryMiB,
      diskPath: `${LAB_STORAGE_ROOT}/${uuid}/${LAB_DISK_NAME}`,
      diskMiB: Math.max(DEFAULT_DISK_MIB, randomDataMiB),
      randomDataMiB,
      createdOn: first.name,
    });
  }
  writeState(home, st); // before creating: a crash mid-way is repaired by the next labUp

  const where = await locateVms(home, st.hosts);
  const hostByName = new Map(st.hosts.map((h) => [h.name, h]));
  const todo = st.vms.filter((v) => where.get(v.uuid)?.state !== 'running' && where.get(v.uuid)?.state !== 'paused');
  // Two at a time: the machine has two cores and each start spawns a QEMU.
  for (let i = 0; i < todo.length; i += 2) {
    await Promise.all(
      todo.slice(i, i + 2).map(async (vm) => {
        const loc = where.get(vm.uuid);
        if (loc) {
          const h = hostByName.get(loc.host);
          if (!h) return;
          log(`${h.name}: starting ${vm.name}`);
          await virsh(h.uri, ['start', vm.uuid], 60_000);
          return;
        }
        const h = hostByName.get(vm.createdOn) ?? first;
        await createVm(home, h, vm, log);
      }),
    );
  }
  return labStatus(home);
}

/**
 * Kills everything of the lab, removes netns, veths, bridge, namespace handles and <home>/lab. The prefix
 * comes from the home's state file; `prefix` is only used when there is none (then stray pieces of that
 * prefix, e.g. of a crashed session, are removed; default `ferry`). Other prefixes' labs are never touched.
 */
export async function labDown(home: string, opts: { prefix?: string } = {}): Promise<void> {
  requireRoot();
  const log = () => undefined;
  const dir = labDir(home);
  const state = readState(path.resolve(home));
  const prefix = checkLabPrefix(state?.prefix ?? opts.prefix ?? LAB_DEFAULT_PREFIX);
  const bridge = state?.bridge ?? labBridgeName(prefix);
  const ourNs = fs.existsSync(nsDir(home)) ? fs.realpathSync(nsDir(home)) : null;
  await teardownHosts(prefix, new Set(), ourNs, log);
  if ((await ipLinks()).some((l) => l.ifname === bridge)) {
    await run('ip', ['link', 'delete', 'dev', bridge]);
  }
  if (fs.existsSync(dir)) {
    const real = fs.realpathSync(dir);
    await unmountUnder(real);
    if (rootMounts().some((m) => m.mountPoint === real || m.mountPoint.startsWith(real + '/'))) {
      throw new LabError(`cannot unmount everything under ${real}`);
    }
    fs.rmSync(real, { recursive: true, force: true });
  }
}

export async function labStatus(home: string): Promise<LabStatus> {
  const s = readState(path.resolve(home));
  if (!s) return { hosts: [], vms: [] };
  const hosts: LabHost[] = s.hosts.map((h) => ({
    name: h.name,
    address: h.address,
    uri: h.uri,
    netns: h.netns,
    pid: daemonPid(refs(home, h)),
    dir: labHostDir(home, h.name),
    storageRoot: LAB_STORAGE_ROOT,
  }));
  const where = await locateVms(home, s.hosts);
  const vms: LabVm[] = s.vms.map((v) => {
    const loc = where.get(v.uuid);
    return {
      name: v.name,
      uuid: v.uuid,
      host: loc?.host ?? '',
      state: loc?.state ?? 'unknown',
      diskPath: v.diskPath,
      ...(v.guest ? { guest: v.guest } : {}),
    };
  });
  return { hosts, vms };
}

export interface LabAddVmOptions {
  /** Domain name, unique in the lab ([A-Za-z0-9][A-Za-z0-9_.-]{0,63}). */
  name: string;
  /** The guest program in the boot sector, e.g. `{ kind: 'dirty', regionMiB: 96, pagesPerSec: 2560 }`. */
  guest: LabGuestSpec;
  /** Lab host to create it on; default the first. */
  host?: string;
  /** Default 128. */
  memoryMiB?: number;
  /** Random data at the start of the disk (after the boot sector), default 32 MiB; disk max(64, this) MiB. */
  randomDataMiB?: number;
}

/**
 * Adds one VM that boots a guest program (lab/guest.ts) to a lab that is up: same disk layout, pool and
 * size as labUp's VMs (one qcow2 disk in its own directory, so Ferry migrates it the same way), the
 * program in the disk's first sector, its serial console in a file (labSerialLogPath). Recorded in the
 * lab's state, so labUp restarts it and labStatus lists it. A VM of that name already there is returned
 * as it is (its guest is not changed).
 */
export async function labAddVm(home: string, o: LabAddVmOptions): Promise<LabVm> {
  requireRoot();
  const abs = path.resolve(home);
  const st = readState(abs);
  if (!st) throw new LabError(`no lab in ${labDir(abs)} (run labUp first)`);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(o.name) || o.name.includes('..')) {
    throw new LabError(`invalid VM name ${JSON.stringify(o.name)}`);
  }
  const memoryMiB = o.memoryMiB ?? 128;
  const randomDataMiB = o.randomDataMiB ?? 32;
  if (!Number.isInteger(memoryMiB) || memoryMiB < 16) throw new LabError('memoryMiB must be an integer >= 16');
  if (!Number.isInteger(randomDataMiB) || randomDataMiB < 0) throw new LabError('randomDataMiB must be an integer >= 0');
  if (o.guest.kind !== 'dirty') throw new LabError(`unknown guest kind ${JSON.stringify((o.guest as { kind: unknown }).kind)}`);
  dirtyGuestParams(o.guest, memoryMiB); // validates before anything is recorded
  const h = o.host === undefined ? st.hosts[0] : requireHost(st, o.host);
  if (!h) throw new LabError('the lab has no hosts');
  let vm = st.vms.find((v) => v.name === o.name);
  if (!vm) {
    const uuid = randomUUID();
    vm = {
      name: o.name,
      uuid,
      memoryMiB,
      diskPath: `${LAB_STORAGE_ROOT}/${uuid}/${LAB_DISK_NAME}`,
      diskMiB: Math.max(DEFAULT_DISK_MIB, randomDataMiB),
      randomDataMiB,
      createdOn: h.name,
      guest: { ...o.guest },
    };
    st.vms.push(vm);
    writeState(abs, st); // before creating: a crash mid-way is repaired by the next labUp
  }
  const where = (await locateVms(abs, st.hosts)).get(vm.uuid);
  if (!where) await createVm(abs, requireHost(st, vm.createdOn), vm, () => undefined);
  else if (where.state === 'shutoff') await virsh(requireHost(st, where.host).uri, ['start', vm.uuid], 60_000);
  const status = await labStatus(abs);
  const out = status.vms.find((v) => v.uuid === vm.uuid);
  if (!out) throw new LabError(`${o.name} vanished`);
  return out;
}

function serialLogInside(vmName: string): string {
  return `/var/log/libvirt/${vmName}.serial.log`;
}

/** The serial console log of a guest-program VM on `host`, as a path in the root namespace. */
export function labSerialLogPath(home: string, host: string, vmName: string): string {
  return hostPath(path.resolve(home), host, serialLogInside(vmName));
}

/**
 * Stops a host's libvirtd (QEMU processes keep running, as on a real host). SIGTERM (default) and
 * SIGKILL wait until the daemon is gone; SIGSTOP freezes it (connections then hang, not fail).
 */
export async function stopHostDaemon(
  home: string,
  host: string,
  signal: 'SIGKILL' | 'SIGTERM' | 'SIGSTOP' = 'SIGTERM',
): Promise<void> {
  const r = refs(home, requireHost(readState(path.resolve(home)), host));
  const pid = daemonPid(r);
  if (!pid) return;
  if (signal === 'SIGSTOP') {
    process.kill(pid, 'SIGSTOP');
    await waitUntil(() => procInfo(pid)?.state === 'T', 5_000, 20);
    return;
  }
  await signalAndWait(pid, signal);
}

/** Restarts (or SIGCONTs) a host's libvirtd and waits until it answers. */
export async function startHostDaemon(home: string, host: string): Promise<void> {
  requireRoot();
  const abs = path.resolve(home);
  const h = requireHost(readState(abs), host);
  const r = refs(abs, h);
  const pid = daemonPid(r);
  if (pid) {
    if (procInfo(pid)?.state === 'T') process.kill(pid, 'SIGCONT');
    await waitAnswer(r, pid);
    return;
  }
  // The namespaces may be gone too (e.g. after a reboot): make sure they are there.
  if (!isNsfsMount(r.netnsFile) || !isNsfsMount(r.mntFile) || !isNsfsMount(r.utsFile)) {
    const nsReal = await ensureNsDir(abs);
    const s = readState(abs);
    const bridge = s?.bridge ?? LAB_BRIDGE;
    if (s) await ensureBridge(bridge, s.subnet);
    await ensureHostNetwork(r, bridge);
    await ensureHostMountNs(r, nsReal);
    writeHostConfig(r);
  }
  await spawnDaemon(r);
}
