/**
 * Low-level Linux helpers for the lab: /proc scanning, mountinfo parsing, namespace identities and
 * `ip` calls. No shell anywhere: every command goes through run() (execFile + argument array).
 */
import * as fs from 'node:fs';
import { run, CommandError, type RunResult } from '../hypervisor/exec';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs a command; returns null instead of throwing when it exits non-zero (still throws on timeout). */
export async function tryRun(file: string, args: readonly string[], timeoutMs = 30_000): Promise<RunResult | null> {
  try {
    return await run(file, args, { timeoutMs });
  } catch (e) {
    if (e instanceof CommandError && !e.timedOut) return null;
    throw e;
  }
}

/** The names in a directory; none when it cannot be read (e.g. it does not exist). */
export function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------
// processes

export interface ProcInfo {
  pid: number;
  /** Single-letter state from /proc/<pid>/stat: R, S, D, T, t, Z, X, I … */
  state: string;
  comm: string;
}

export function procInfo(pid: number): ProcInfo | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const state = stat.slice(close + 2, close + 3);
  return { pid, state, comm: stat.slice(open + 1, close) };
}

/** Alive = exists and is neither a zombie nor dead (zombies linger until their parent reaps them). */
export function isAlive(pid: number): boolean {
  const p = procInfo(pid);
  return p !== null && p.state !== 'Z' && p.state !== 'X';
}

export function allPids(): number[] {
  return fs
    .readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map(Number);
}

/** Inode of a namespace, from a /proc/<pid>/ns/<kind> link (`net:[4026531840]`) or a bound ns file. */
export function nsInodeOfPid(pid: number, kind: 'net' | 'mnt' | 'uts'): number | null {
  try {
    const m = /\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/ns/${kind}`));
    return m?.[1] ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Inode of a namespace file (e.g. /run/netns/x) when it is a bound namespace, else null. */
export function nsInodeOfFile(file: string): number | null {
  try {
    const st = fs.statSync(file);
    // nsfs inodes are large (4026531xxx+) and the file is not a regular empty placeholder
    return isNsfsMount(file) ? st.ino : null;
  } catch {
    return null;
  }
}

/** Live pids in any of the given namespaces (by inode). */
export function pidsInNamespaces(net: ReadonlySet<number>, mnt: ReadonlySet<number>): number[] {
  const out: number[] = [];
  for (const pid of allPids()) {
    if (pid === process.pid) continue;
    const n = nsInodeOfPid(pid, 'net');
    const m = nsInodeOfPid(pid, 'mnt');
    if ((n !== null && net.has(n)) || (m !== null && mnt.has(m))) {
      if (isAlive(pid)) out.push(pid);
    }
  }
  return out;
}

export async function waitUntil(pred: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(stepMs);
  }
}

/** SIGKILLs the pids and waits until they are gone (or zombies). Returns the pids still alive. */
export async function killAndWait(pids: readonly number[], timeoutMs = 10_000): Promise<number[]> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  await waitUntil(() => pids.every((p) => !isAlive(p)), timeoutMs);
  return pids.filter(isAlive);
}

// ---------------------------------------------------------------------------------------------
// mounts

export interface MountEntry {
  id: number;
  parentId: number;
  /** Path of the mount's root within its filesystem. */
  root: string;
  mountPoint: string;
  fstype: string;
  source: string;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const f = left.split(' ');
    const r = right.split(' ');
    out.push({
      id: Number(f[0]),
      parentId: Number(f[1]),
      root: unescapeMount(f[3] ?? ''),
      mountPoint: unescapeMount(f[4] ?? ''),
      fstype: r[0] ?? '',
      source: unescapeMount(r[1] ?? ''),
    });
  }
  return out;
}

export function rootMounts(): MountEntry[] {
  return parseMountInfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
}

export function isMountPoint(p: string, mounts: MountEntry[] = rootMounts()): boolean {
  return mounts.some((m) => m.mountPoint === p);
}

export function isNsfsMount(p: string, mounts: MountEntry[] = rootMounts()): boolean {
  return mounts.some((m) => m.mountPoint === p && m.fstype === 'nsfs');
}

/** Unmounts every mount at or under `dir` in the root namespace, deepest first (lazily if busy). */
export async function unmountUnder(dir: string): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const mounts = rootMounts()
      .filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + '/'))
      .sort((a, b) => b.mountPoint.length - a.mountPoint.length);
    if (mounts.length === 0) return;
    for (const m of mounts) {
      if ((await tryRun('umount', [m.mountPoint])) === null) await tryRun('umount', ['--lazy', m.mountPoint]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// ip

export interface IpLink {
  ifindex: number;
  ifname: string;
  link_index?: number;
  master?: string;
  flags?: string[];
  operstate?: string;
  link_netnsid?: number;
  linkinfo?: { info_kind?: string };
}

export interface IpAddr extends IpLink {
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

export async function ipLinks(netns?: string): Promise<IpLink[]> {
  const args = netns ? ['-n', netns, '-j', '-d', 'link', 'show'] : ['-j', '-d', 'link', 'show'];
  const r = await run('ip', args, { timeoutMs: 15_000 });
  return JSON.parse(r.stdout || '[]') as IpLink[];
}

export async function ipAddrs(dev: string, netns?: string): Promise<IpAddr | null> {
  const args = [...(netns ? ['-n', netns] : []), '-j', 'addr', 'show', 'dev', dev];
  const r = await tryRun('ip', args, 15_000);
  if (!r) return null;
  const list = JSON.parse(r.stdout || '[]') as IpAddr[];
  return list[0] ?? null;
}

/** Makes `dev` carry exactly one IPv4 address `cidr` (e.g. 10.213.77.1/24), flushing any other. */
export async function ensureOnlyAddress(dev: string, cidr: string, netns?: string): Promise<void> {
  const ns = netns ? ['-n', netns] : [];
  const cur = await ipAddrs(dev, netns);
  const v4 = (cur?.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
  if (v4.length === 1 && v4[0] === cidr) return;
  if (v4.length > 0) await run('ip', [...ns, '-4', 'addr', 'flush', 'dev', dev], { timeoutMs: 15_000 });
  await run('ip', [...ns, 'addr', 'add', cidr, 'dev', dev], { timeoutMs: 15_000 });
}

/** Every IPv4 address in a network namespace (default: the root's), with its interface. */
export async function ipv4Addresses(netns?: string): Promise<{ ifname: string; local: string; prefixlen: number }[]> {
  const args = [...(netns ? ['-n', netns] : []), '-j', '-4', 'addr', 'show'];
  const r = await run('ip', args, { timeoutMs: 15_000 });
  const list = JSON.parse(r.stdout || '[]') as IpAddr[];
  return list.flatMap((l) =>
    (l.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => ({ ifname: l.ifname, local: a.local, prefixlen: a.prefixlen })),
  );
}
