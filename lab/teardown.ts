/**
 * Taking a lab apart: the stray hosts of one prefix (processes in their namespaces, netns, veths, namespace
 * handles; crashed sessions', other homes') and <home>/lab itself.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkLabPrefix, labDir } from './naming';
import { readStateFile } from './state';
import { ipLinks, killAndWait, nsInodeOfFile, pidsInNamespaces, rootMounts, safeReaddir, tryRun, unmountUnder } from './sys';
import { LabError } from './types';

/**
 * Tears down every host of lab `prefix` not in `keep`: processes in its network or mount namespace, the
 * netns, the root-side veth, and namespace handles bound under any `…/lab/ns/` directory (ours or a
 * crashed session's). Only names of this prefix (`<prefix>-h<k>`) are ever touched: other labs' pieces
 * are left alone. `ourNs` is the real path of this home's ns dir (or null).
 */
export async function teardownHosts(
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

/** Unmounts everything under <home>/lab and removes it; LabError when something stays mounted there. */
export async function removeLabDir(home: string): Promise<void> {
  if (!fs.existsSync(labDir(home))) return;
  const real = fs.realpathSync(labDir(home));
  await unmountUnder(real);
  if (rootMounts().some((m) => m.mountPoint === real || m.mountPoint.startsWith(real + '/'))) {
    throw new LabError(`cannot unmount everything under ${real}`);
  }
  fs.rmSync(real, { recursive: true, force: true });
}
