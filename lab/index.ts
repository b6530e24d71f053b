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
 * Hosts: <prefix>-h1..<prefix>-hN at <subnet>.11, .12, …; URI qemu+tcp://<ip>/system (no auth, no TLS), or
 * with `tls` qemu+tls://<ip>/system?pkipath=<home>/lab/pki/ferry (TLS only, client certificates; lab/pki.ts).
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
 *
 * Files: this one is the public surface (labUp, labDown, labStatus, and re-exports of the rest); the pieces
 * are listed in lab/README.md ("Files").
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../hypervisor/exec';
import { daemonPid } from './daemons';
import { bringUpHost, warmQemuCaps } from './hosts';
import {
  checkLabPrefix,
  checkSubnet,
  existingNsDir,
  labBridgeName,
  labDir,
  labHostDir,
  labHostName,
  labHostUri,
  refs,
  tmpDir,
  LAB_DEFAULT_PREFIX,
  LAB_DEFAULT_SUBNET,
  LAB_STORAGE_ROOT,
} from './naming';
import { ensureGuestNetwork, ensureProber, nextGuestAddress, teardownGuestNetwork } from './guest-net';
import { checkLinuxGuest } from './linux-guest';
import { assertSubnetFree, ensureBridge, ensureNsDir } from './network';
import { ensureLabPki, labClientPkiDir } from './pki';
import { ensureUsers, requireRoot, requireTools } from './preconditions';
import { checkLabSize, checkVmSize, LAB_RANDOM_DATA_MIB, LAB_VM_MEMORY_MIB } from './sizes';
import { readState, writeState, type LabState } from './state';
import { ipLinks } from './sys';
import { removeLabDir, teardownHosts } from './teardown';
import { LabError, type LabHost, type LabStatus, type LabUpOptions } from './types';
import { ensureVmsRunning, labVms, newVmRecord } from './vms';

export { labDomainXml, escapeXml } from './xml';
export type { LabDomainXmlOptions, LabDiskSpec } from './xml';
export type { LabGuestSpec, DirtyGuestSpec, DirtyGuestParams } from './guest';
export { dirtyGuestParams } from './guest';
export type { LabAddVmOptions, LabGuestKind, LabHost, LabStatus, LabUpOptions, LabVm, LabVmState } from './types';
export { LabError } from './types';
export {
  checkLabPrefix,
  hostPath,
  labBridgeName,
  labHostDir,
  labHostName,
  labHostUri,
  LAB_BINDS,
  LAB_BRIDGE,
  LAB_DEFAULT_PREFIX,
  LAB_DEFAULT_SUBNET,
  LAB_DISK_NAME,
  LAB_ROOT_POOL,
  LAB_STORAGE_ROOT,
} from './naming';
export { checkLabSize, LAB_MAX_HOSTS, LAB_MAX_VMS } from './sizes';
export { labAddVm, labSerialLogPath } from './vms';
export { labClientPkiDir, labPkiDir, makeForeignClientPki } from './pki';
export type { LinuxGuestSpec } from './linux-guest';
export { LAB_GUEST_BRIDGE, LAB_GUEST_SUBNET, labGuestObserver, labProbeGuest, longestGapMs, probeSeconds, type ProbeSecond } from './guest-net';
export { linuxGuestBoot, type LinuxGuestBoot } from './linux-guest';
export { guestBootDir } from './naming';
export { verifyGuestDisk, verifyRecords, recordViolations, type RecordCheck, type GuestRecord } from './records';
export { startHostDaemon, stopHostDaemon } from './hosts';

/**
 * Brings the lab up. Idempotent: a healthy lab is left alone, dead daemons are restarted, missing
 * hosts/VMs are added, lab VMs found shut off are started. Never removes hosts or VMs. Pieces of a
 * crashed session (stale netns, veths, namespace handles) are torn down first.
 */
export async function labUp(o: LabUpOptions): Promise<LabStatus> {
  const log = o.log ?? (() => undefined);
  const subnet = checkSubnet(o.subnet ?? LAB_DEFAULT_SUBNET);
  const prefix = checkLabPrefix(o.prefix ?? LAB_DEFAULT_PREFIX);
  const vmMemoryMiB = o.vmMemoryMiB ?? LAB_VM_MEMORY_MIB;
  const randomDataMiB = o.randomDataMiB ?? LAB_RANDOM_DATA_MIB;
  checkLabSize(o);
  checkVmSize('vmMemoryMiB', vmMemoryMiB, randomDataMiB);
  requireRoot();
  requireTools(o.tls ?? false);
  await ensureUsers();

  const home = path.resolve(o.home);
  let state = readState(home);
  await assertSubnetFree(labBridgeName(prefix), subnet); // before anything is written or torn down
  const tls = o.tls ?? false;
  if (state && (state.subnet !== subnet || state.prefix !== prefix || state.tls !== tls)) {
    throw new LabError(
      `the lab in ${labDir(home)} uses prefix ${state.prefix}, subnet ${state.subnet} and ${state.tls ? 'TLS' : 'plain TCP'}; ` +
        'run `ferry lab down` first',
    );
  }
  if (!state) {
    // Fresh start: remove whatever a crashed session of this prefix left, including this home's old lab dir.
    await teardownHosts(prefix, new Set(), existingNsDir(home), log);
    await teardownGuestNetwork(prefix);
    await removeLabDir(home);
    state = {
      version: 1,
      home,
      prefix,
      subnet,
      bridge: labBridgeName(prefix),
      tls,
      hosts: [],
      vms: [],
      probedGuests: [],
      createdAt: new Date().toISOString(),
    };
  }
  fs.mkdirSync(tmpDir(home), { recursive: true });
  for (let i = state.hosts.length + 1; i <= o.hosts; i++) {
    const name = labHostName(i, prefix);
    const address = `${subnet}.${10 + i}`;
    const uri = labHostUri(address, tls ? labClientPkiDir(home) : undefined);
    state.hosts.push({ name, address, uri, netns: name, hostUuid: randomUUID() });
  }
  writeState(home, state);
  const st: LabState = state;
  if (tls) await ensureLabPki(home, prefix, st.hosts);

  // Stray hosts of this prefix that are not ours (another home, a crashed session).
  const nsReal = await ensureNsDir(home);
  await teardownHosts(prefix, new Set(st.hosts.map((h) => h.name)), nsReal, log);
  await ensureBridge(st.bridge, subnet);
  await Promise.all(st.hosts.map((h) => bringUpHost(home, h, nsReal, st, log)));
  await ensureGuestNetwork(st);
  await warmQemuCaps(home, st.hosts, log);

  const first = st.hosts[0];
  if (!first) throw new LabError('no hosts');
  for (let k = 1; k <= o.vms; k++) {
    const name = `vm${k}`;
    if (st.vms.some((v) => v.name === name)) continue;
    const guest = o.guest === 'linux' ? { kind: 'linux' as const, ip: nextGuestAddress(st) } : undefined;
    if (guest) checkLinuxGuest(guest, vmMemoryMiB);
    st.vms.push(newVmRecord({ name, memoryMiB: vmMemoryMiB, randomDataMiB, createdOn: first.name, ...(guest ? { guest } : {}) }));
  }
  writeState(home, st); // before creating: a crash mid-way is repaired by the next labUp

  await ensureVmsRunning(home, st, first, log);
  await ensureProber(home, st);
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
  const state = readState(path.resolve(home));
  const prefix = checkLabPrefix(state?.prefix ?? opts.prefix ?? LAB_DEFAULT_PREFIX);
  const bridge = state?.bridge ?? labBridgeName(prefix);
  await teardownHosts(prefix, new Set(), existingNsDir(home), log);
  await teardownGuestNetwork(prefix);
  if ((await ipLinks()).some((l) => l.ifname === bridge)) {
    await run('ip', ['link', 'delete', 'dev', bridge]);
  }
  await removeLabDir(home);
}

export async function labStatus(home: string): Promise<LabStatus> {
  const s = readState(path.resolve(home));
  if (!s) return { tls: false, hosts: [], vms: [] };
  const hosts: LabHost[] = s.hosts.map((h) => ({
    name: h.name,
    address: h.address,
    uri: h.uri,
    netns: h.netns,
    pid: daemonPid(refs(home, h)),
    dir: labHostDir(home, h.name),
    storageRoot: LAB_STORAGE_ROOT,
  }));
  return { tls: s.tls, hosts, vms: await labVms(home, s) };
}
