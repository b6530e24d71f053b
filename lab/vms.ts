/**
 * The lab's VMs: new VM records (one qcow2 disk in its own directory and pool), creating them (disk, pool,
 * define, start), finding where each runs, keeping them running (labUp), adding a guest-program VM
 * (labAddVm) and where its serial console log is.
 */
import { randomFillSync, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isVmName, vmPoolName } from '../common/names';
import { run } from '../hypervisor/exec';
import { daemonPid } from './daemons';
import { dirtyBootSector, dirtyGuestParams, type LabGuestSpec } from './guest';
import { ensureProber, LAB_GUEST_BRIDGE, nextGuestAddress } from './guest-net';
import { checkLinuxGuest, linuxGuestBoot } from './linux-guest';
import { labHypervisor, virsh, virshMaybe } from './libvirt';
import { LAB_DISK_NAME, LAB_STORAGE_ROOT, guestBootDir, hostPath, labDir, refs, tmpDir } from './naming';
import { requireRoot } from './preconditions';
import { checkVmSize, LAB_RANDOM_DATA_MIB, LAB_VM_MEMORY_MIB } from './sizes';
import { readState, requireHost, writeState, type LabState, type StateHost, type StateVm } from './state';
import { procInfo } from './sys';
import { LabError, type LabAddVmOptions, type LabVm, type LabVmState } from './types';
import { labDomainXml } from './xml';

const DEFAULT_DISK_MIB = 64;

/** A new VM's state record: its disk in its own directory under the storage root, max(64 MiB, random data). */
export function newVmRecord(o: {
  name: string;
  memoryMiB: number;
  randomDataMiB: number;
  createdOn: string;
  guest?: LabGuestSpec;
}): StateVm {
  const uuid = randomUUID();
  return {
    name: o.name,
    uuid,
    memoryMiB: o.memoryMiB,
    diskPath: `${LAB_STORAGE_ROOT}/${uuid}/${LAB_DISK_NAME}`,
    diskMiB: Math.max(DEFAULT_DISK_MIB, o.randomDataMiB),
    randomDataMiB: o.randomDataMiB,
    createdOn: o.createdOn,
    ...(o.guest ? { guest: { ...o.guest } } : {}),
  };
}

/** virsh start, with time for QEMU to come up. */
async function startVm(uri: string, uuid: string): Promise<void> {
  await virsh(uri, ['start', uuid], 60_000);
}

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
  const pool = vmPoolName(vm.uuid);
  // Defined and built now (the directory exists); started once the disk is in it (start + autostart + refresh).
  await labHypervisor.createStorageDirectory(h.uri, pool, path.posix.dirname(vm.diskPath));
  const dest = hostPath(home, h.name, vm.diskPath);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const linux = vm.guest?.kind === 'linux' ? await linuxGuestBoot(vm.guest, guestBootDir(home)) : null;
  if (linux) {
    // The workload's record ring starts empty; nothing else is on the disk.
    fs.rmSync(dest, { force: true });
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', dest, `${vm.diskMiB}M`], { timeoutMs: 60_000 });
  } else {
    const boot = vm.guest?.kind === 'dirty' ? await dirtyBootSector(vm.guest, vm.memoryMiB, tmpDir(home)) : null;
    await writeRandomQcow2(dest, vm.diskMiB, vm.randomDataMiB, tmpDir(home), boot?.image);
  }
  await labHypervisor.startPool(h.uri, pool);
  const xmlFile = path.join(tmpDir(home), `${vm.uuid}.xml`);
  fs.writeFileSync(
    xmlFile,
    labDomainXml({
      name: vm.name,
      uuid: vm.uuid,
      memoryMiB: vm.memoryMiB,
      vcpus: 1,
      diskPath: vm.diskPath,
      // a guest's console goes to a file on whichever host runs it (labSerialLogPath)
      ...(vm.guest ? { serial: { file: serialLogInside(vm.name) } } : {}),
      ...(linux ? { directBoot: linux, bridges: [LAB_GUEST_BRIDGE] } : {}),
    }),
  );
  log(`${h.name}: defining ${vm.name}`);
  try {
    await virsh(h.uri, ['define', xmlFile]);
  } finally {
    fs.rmSync(xmlFile, { force: true });
  }
  log(`${h.name}: starting ${vm.name}`);
  await startVm(h.uri, vm.uuid);
}

/** The lab's VMs as labStatus reports them: where each one is, in which state. */
export async function labVms(home: string, s: LabState): Promise<LabVm[]> {
  const where = await locateVms(home, s.hosts);
  return s.vms.map((v) => {
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
}

/**
 * Every VM of the lab running (or paused): one found shut off is started where it is, one no host has is
 * created on the host it was made for (or `first`).
 */
export async function ensureVmsRunning(home: string, st: LabState, first: StateHost, log: (l: string) => void): Promise<void> {
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
          await startVm(h.uri, vm.uuid);
          return;
        }
        const h = hostByName.get(vm.createdOn) ?? first;
        await createVm(home, h, vm, log);
      }),
    );
  }
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
  if (!isVmName(o.name)) throw new LabError(`invalid VM name ${JSON.stringify(o.name)}`);
  const memoryMiB = o.memoryMiB ?? LAB_VM_MEMORY_MIB;
  const randomDataMiB = o.randomDataMiB ?? LAB_RANDOM_DATA_MIB;
  checkVmSize('memoryMiB', memoryMiB, randomDataMiB);
  const guest: LabGuestSpec =
    o.guest.kind === 'linux'
      ? { ...o.guest, ip: existingGuestIp(st, o.name) ?? nextGuestAddress(st) }
      : o.guest;
  // validates before anything is recorded
  if (guest.kind === 'linux') checkLinuxGuest(guest, memoryMiB);
  else if (guest.kind === 'dirty') dirtyGuestParams(guest, memoryMiB);
  else throw new LabError(`unknown guest kind ${JSON.stringify((guest as { kind: unknown }).kind)}`);
  const h = o.host === undefined ? st.hosts[0] : requireHost(st, o.host);
  if (!h) throw new LabError('the lab has no hosts');
  let vm = st.vms.find((v) => v.name === o.name);
  if (!vm) {
    vm = newVmRecord({ name: o.name, memoryMiB, randomDataMiB, createdOn: h.name, guest });
    st.vms.push(vm);
    writeState(abs, st); // before creating: a crash mid-way is repaired by the next labUp
  }
  await ensureProber(abs, st);
  const where = (await locateVms(abs, st.hosts)).get(vm.uuid);
  if (!where) await createVm(abs, requireHost(st, vm.createdOn), vm, () => undefined);
  else if (where.state === 'shutoff') await startVm(requireHost(st, where.host).uri, vm.uuid);
  const now = readState(abs);
  const out = now ? (await labVms(abs, now)).find((v) => v.uuid === vm.uuid) : undefined;
  if (!out) throw new LabError(`${o.name} vanished`);
  return out;
}

function serialLogInside(vmName: string): string {
  return `/var/log/libvirt/${vmName}.serial.log`;
}

/** The serial console log of a guest VM (boot-sector program or Linux) on `host`, as a path in the root namespace. */
export function labSerialLogPath(home: string, host: string, vmName: string): string {
  return hostPath(path.resolve(home), host, serialLogInside(vmName));
}

/** The address a Linux guest of that name already has in the state (labAddVm again keeps it). */
function existingGuestIp(st: LabState, name: string): string | undefined {
  const g = st.vms.find((v) => v.name === name)?.guest;
  return g?.kind === 'linux' ? g.ip : undefined;
}
