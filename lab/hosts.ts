/**
 * A lab host as a whole: bring it up (bringUpHost), warm its QEMU capability cache, and stop or restart its
 * libvirtd on request (stopHostDaemon, startHostDaemon: for fault tests).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { daemonPid, ensureDaemon, signalAndWait, spawnDaemon, waitAnswer } from './daemons';
import { writeHostConfig } from './host-config';
import { labHypervisor, virsh } from './libvirt';
import { LAB_BRIDGE, LAB_ROOT_POOL, LAB_STORAGE_ROOT, labHostDir, refs } from './naming';
import { ensureBridge, ensureHostMountNs, ensureHostNetwork, ensureNsDir } from './network';
import { requireRoot } from './preconditions';
import { readState, requireHost, type StateHost } from './state';
import { isNsfsMount, procInfo, safeReaddir, waitUntil } from './sys';

/** One host up: network, mount namespace, configuration, libvirtd, and the started+autostarted root pool. */
export async function bringUpHost(
  home: string,
  h: StateHost,
  nsReal: string,
  lab: { bridge: string; tls: boolean },
  log: (l: string) => void,
): Promise<void> {
  const r = refs(home, h);
  await ensureHostNetwork(r, lab.bridge);
  await ensureHostMountNs(r, nsReal);
  const changed = writeHostConfig(r, lab.tls);
  await ensureDaemon(r, changed, log);
  await labHypervisor.ensureStorageRootPool(h.uri, LAB_ROOT_POOL, LAB_STORAGE_ROOT);
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
export async function warmQemuCaps(home: string, hosts: readonly StateHost[], log: (l: string) => void): Promise<void> {
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
    writeHostConfig(r, s?.tls ?? false);
  }
  await spawnDaemon(r);
}
