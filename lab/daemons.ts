/**
 * A host's libvirtd: is it alive in the host's namespaces (daemonPid), spawn it (detached, through nsenter,
 * no shell), wait until it answers, restart it when its configuration changed, stop it.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { virshMaybe } from './libvirt';
import { LIBVIRTD, type HostRefs } from './naming';
import { isAlive, killAndWait, nsInodeOfFile, nsInodeOfPid, pidsInNamespaces, procInfo, sleep, waitUntil } from './sys';
import { LabError } from './types';

/** The pid of the host's libvirtd if it is alive and really lives in the host's namespaces, else 0. */
export function daemonPid(r: HostRefs): number {
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
export async function waitAnswer(r: HostRefs, pid: number, timeoutMs = 90_000): Promise<void> {
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

export async function spawnDaemon(r: HostRefs): Promise<number> {
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

export async function ensureDaemon(r: HostRefs, configChanged: boolean, log: (l: string) => void): Promise<number> {
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

export async function signalAndWait(pid: number, signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
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

/**
 * Starts a lab daemon other than libvirtd (the guest prober) detached, without a shell, its output appended to
 * `logFile`; returns its pid (LabError when it could not be started).
 */
export function spawnLabDaemon(file: string, args: readonly string[], logFile: string): number {
  const out = fs.openSync(logFile, 'a');
  let child;
  try {
    child = spawn(file, args, { detached: true, stdio: ['ignore', out, out], cwd: '/' });
  } finally {
    fs.closeSync(out);
  }
  child.on('error', () => undefined);
  child.unref();
  if (!child.pid) throw new LabError(`could not start ${file}`);
  return child.pid;
}
