/**
 * The lab's guest network: one layer-2 segment that spans every lab host, so a Linux guest keeps its address
 * when it moves (QEMU announces the guest's MAC from the target after a migration), and a prober in its own
 * network namespace that asks every guest every 10 ms what it has acknowledged.
 *
 *   root namespace:  bridge <prefix>gbr0 (no address: nothing routes to the guests)
 *                      ├─ <prefix>-hK-g ══ veth ══ gveth0 ─ bridge br-guest   (inside host K's netns; the VMs' NICs)
 *                      └─ <prefix>-gp-v ══ veth ══ eth0 192.168.213.2/24       (netns <prefix>-gp: the prober)
 *   guests: 192.168.213.(10 + n)/24, one address per Linux guest, recorded in state.json.
 *
 * The prober is `ferry-guest probe` (lab/guest/linux/probe.go): it reads <home>/lab/probe/targets.json (re-read
 * when it changes) and appends one JSON line per guest and second to <home>/lab/probe/<vm>.jsonl: probes sent,
 * replies, the longest gap between two replies, the last acknowledged record. `guestDowntimeMs` is the longest
 * gap over a migration (labGuestObserver).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../hypervisor/exec';
import { spawnLabDaemon } from './daemons';
import { guestAgentBinary, LAB_GUEST_SUBNET, PROBER_ADDRESS } from './linux-guest';

export { LAB_GUEST_SUBNET } from './linux-guest';
import { checkLabPrefix, labDir } from './naming';
import { ensureNsEth0, ensureVeth } from './network';
import { readState, writeState, type LabState } from './state';
import { ipLinks, isAlive, killAndWait, nsInodeOfFile, pidsInNamespaces, procInfo, safeReaddir, sleep, tryRun } from './sys';
import { LabError } from './types';

/** The bridge inside every host that the Linux guests' NICs are on. */
export const LAB_GUEST_BRIDGE = 'br-guest';
const HOST_SIDE = 'gveth0';

export function guestRootBridge(prefix: string): string {
  return `${checkLabPrefix(prefix)}gbr0`;
}
export function proberNetns(prefix: string): string {
  return `${checkLabPrefix(prefix)}-gp`;
}
function hostGuestVeth(host: string): string {
  return `${host}-g`;
}
function proberVeth(prefix: string): string {
  return `${proberNetns(prefix)}-v`;
}

/** The address of the n-th Linux guest (n from 1). */
export function guestAddress(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 240) throw new LabError(`guest number must be 1..240, got ${n}`);
  return `${LAB_GUEST_SUBNET}.${10 + n}`;
}

/** Every Linux guest the prober watches: the lab's own and those added with labProbeGuest. */
export function probeTargets(st: LabState): { name: string; uuid: string; ip: string }[] {
  return [
    ...st.vms.flatMap((v) => (v.guest?.kind === 'linux' ? [{ name: v.name, uuid: v.uuid, ip: v.guest.ip }] : [])),
    ...st.probedGuests,
  ];
}

/** The first address no Linux guest of the lab has. */
export function nextGuestAddress(st: LabState): string {
  const used = new Set(probeTargets(st).map((t) => t.ip));
  for (let n = 1; n <= 240; n++) if (!used.has(guestAddress(n))) return guestAddress(n);
  throw new LabError('the lab has no guest address left (240 Linux guests)');
}

async function ensureBridgeIn(bridge: string, netns?: string): Promise<void> {
  const ns = netns ? ['-n', netns] : [];
  const br = (await ipLinks(netns)).find((l) => l.ifname === bridge);
  if (br && br.linkinfo?.info_kind !== 'bridge') throw new LabError(`${bridge} exists and is not a bridge`);
  if (!br) await run('ip', [...ns, 'link', 'add', 'name', bridge, 'type', 'bridge']);
  await run('ip', [...ns, 'link', 'set', 'dev', bridge, 'up']);
}

/** The segment, every host's br-guest on it, and the prober's namespace. Idempotent. */
export async function ensureGuestNetwork(st: LabState): Promise<void> {
  const root = guestRootBridge(st.prefix);
  await ensureBridgeIn(root);
  for (const h of st.hosts) {
    await ensureBridgeIn(LAB_GUEST_BRIDGE, h.netns);
    await ensureVeth(hostGuestVeth(h.name), h.netns, HOST_SIDE, root);
    await run('ip', ['-n', h.netns, 'link', 'set', 'dev', HOST_SIDE, 'master', LAB_GUEST_BRIDGE, 'up']);
  }
  const ns = proberNetns(st.prefix);
  if (!fs.existsSync(`/run/netns/${ns}`)) await run('ip', ['netns', 'add', ns]);
  await ensureVeth(proberVeth(st.prefix), ns, 'eth0', root);
  await ensureNsEth0(ns, `${PROBER_ADDRESS}/24`);
}

/** Removes the prober (and anything else in its namespace), its namespace, the segment's bridge and veths. */
export async function teardownGuestNetwork(prefix: string): Promise<void> {
  const ns = proberNetns(prefix);
  const ino = nsInodeOfFile(`/run/netns/${ns}`);
  if (ino !== null) {
    const left = await killAndWait(pidsInNamespaces(new Set([ino]), new Set()));
    if (left.length) throw new LabError(`processes in ${ns} do not die: ${left.join(' ')}`);
    await tryRun('ip', ['netns', 'delete', ns]);
  }
  const vethRe = new RegExp(`^${checkLabPrefix(prefix)}-(h\\d+-g|gp-v)$`);
  for (const l of await ipLinks()) {
    if (vethRe.test(l.ifname) || l.ifname === guestRootBridge(prefix)) await tryRun('ip', ['link', 'delete', 'dev', l.ifname]);
  }
}

export function probeDir(home: string): string {
  return path.join(labDir(home), 'probe');
}
function proberPidFile(home: string): string {
  return path.join(probeDir(home), 'prober.pid');
}

function proberPid(home: string): number {
  try {
    const pid = Number.parseInt(fs.readFileSync(proberPidFile(home), 'utf8'), 10);
    const p = procInfo(pid);
    return p && isAlive(pid) && p.comm.startsWith('ferry-guest') ? pid : 0;
  } catch {
    return 0;
  }
}

/**
 * Writes the prober's targets (every Linux guest of the lab) and starts the prober when it is not running.
 * Does nothing for a lab without Linux guests.
 */
export async function ensureProber(home: string, st: LabState): Promise<void> {
  const targets = probeTargets(st).map((t) => ({ name: t.name, ip: t.ip }));
  if (targets.length === 0) return;
  const dir = probeDir(home);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'targets.json');
  const text = JSON.stringify(targets, null, 2) + '\n';
  if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== text) {
    fs.writeFileSync(`${file}.tmp`, text);
    fs.renameSync(`${file}.tmp`, file);
  }
  if (proberPid(home)) return;
  const bin = await guestAgentBinary();
  // `ip netns exec` enters the namespace and execs the prober: the spawned pid is the prober's.
  const pid = spawnLabDaemon('ip', ['netns', 'exec', proberNetns(st.prefix), bin, 'probe', file, dir], path.join(dir, 'prober.log'));
  fs.writeFileSync(proberPidFile(home), `${pid}\n`);
}

/** One second of probing one guest (a line of <vm>.jsonl). */
export interface ProbeSecond {
  /** Unix ms at the start of the second. */
  t: number;
  sent: number;
  recv: number;
  /** Longest time between two replies, for the replies that came in this second. */
  maxGapMs: number;
  /** The guest's last acknowledged record (-1: none yet; -2: no reply yet). */
  lastAck: number;
}

/** Every second the prober recorded for `vm` (oldest first). */
export function probeSeconds(home: string, vm: string): ProbeSecond[] {
  let text: string;
  try {
    text = fs.readFileSync(path.join(probeDir(home), `${vm}.jsonl`), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as ProbeSecond];
      } catch {
        return []; // a line being written
      }
    });
}

/** Names of the guests that have probe logs. */
export function probedGuests(home: string): string[] {
  return safeReaddir(probeDir(home))
    .filter((f) => f.endsWith('.jsonl'))
    .map((f) => f.slice(0, -'.jsonl'.length));
}

/**
 * The longest gap between two replies of `vm` from `fromMs` to `toMs` (plus `graceMs` after it, for the reply
 * that ends a gap opened by the switch-over), null when the prober saw no reply in that window (no prober, or
 * the guest did not answer at all).
 */
export function longestGapMs(home: string, vm: string, fromMs: number, toMs: number, graceMs = 3000): number | null {
  const secs = probeSeconds(home, vm).filter((s) => s.t + 1000 > fromMs && s.t <= toMs + graceMs);
  const answered = secs.filter((s) => s.recv > 0);
  if (answered.length === 0) return null;
  return Math.max(...answered.map((s) => s.maxGapMs));
}

/**
 * A Linux guest defined outside the lab (plain virsh, booting linuxGuestBoot's kernel with `ferry.ip=<ip>`): the
 * prober watches it from now on under `name`. Returns the address to give it (a new one, or the one it has).
 */
export async function labProbeGuest(home: string, g: { name: string; uuid: string }): Promise<string> {
  const abs = path.resolve(home);
  const st = readState(abs);
  if (!st) throw new LabError(`no lab in ${labDir(abs)} (run labUp first)`);
  const known = probeTargets(st).find((t) => t.uuid === g.uuid || t.name === g.name);
  if (known) {
    if (known.uuid !== g.uuid || known.name !== g.name) throw new LabError(`the prober already watches a guest named ${known.name} (${known.uuid})`);
    return known.ip;
  }
  const ip = nextGuestAddress(st);
  st.probedGuests.push({ name: g.name, uuid: g.uuid, ip });
  writeState(abs, st);
  await ensureProber(abs, st);
  return ip;
}

/**
 * The lab as a GuestObserver (activities/context.ts): the longest gap in a probed guest's replies over a
 * migration. Waits (at most 6 s) for the prober to write the seconds after the migration ended, so that a gap
 * the switch-over opened is closed and counted; null for a VM the prober does not watch.
 */
export function labGuestObserver(home: string, graceMs = 2000): { longestGapMs(uuid: string, fromMs: number, toMs: number): Promise<number | null> } {
  return {
    async longestGapMs(uuid, fromMs, toMs) {
      const st = readState(path.resolve(home));
      const t = st ? probeTargets(st).find((x) => x.uuid === uuid) : undefined;
      if (!t) return null;
      const deadline = Date.now() + graceMs + 4000;
      while (Date.now() < deadline && (probeSeconds(home, t.name).at(-1)?.t ?? 0) < toMs + graceMs) await sleep(250);
      return longestGapMs(home, t.name, fromMs, toMs, graceMs);
    },
  };
}
