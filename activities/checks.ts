/**
 * Pre-conditions of a migration, as small named checks (Nova's live_migrate.py style): each looks at one
 * fact and raises ONE typed, non-retryable failure whose message says what is wrong and what to do. The
 * activities call them in order; a new rule is a new function here, called where its facts are known.
 *
 * Source checks (step 2, readVm): the host and VM the request names exist and agree with each other, with
 * the inventory's movability rule (inventory/placement.ts, checked again inside the claim) and with libvirt.
 * Target checks (the directory create task): the target keeps storage where the VM's directory is and
 * does not run the VM already.
 * Pre-flight checks (activities/preflight.ts, after the claim, before any create task): can the target run the
 * VM at all — its bridges and networks, its CPU, its machine type, no host devices, every file it reads but a
 * migration does not copy. These return why not (or null) instead of throwing: a refused target is given back
 * and the next candidate tried.
 */
import type { DiskRecord, HostRecord, VmRecord } from '../common/types';
import type { HostRef, MigrationMode, VmFacts } from '../common/migration';
import { streamEncryption, type TransportPolicy } from '../common/security';
import { FailureType } from '../common/failures';
import { basenameOf, dirnameOf, isStrictlyInside, isVolumeName, normalizeAbsolute } from '../common/names';
import type { DomainInfo, DomainLocalFile, DomainNeeds, NetworkInfo } from '../hypervisor/port';
import { movabilityRefusal } from '../inventory/placement';
import { isMovableState, vmStateOfDomain, type MovableState } from '../common/migration';
import type { Claim } from '../common/types';
import { nonRetryable } from './failures';
import { isRunningOrPaused } from './locate';

export interface VmRef {
  sourceHost: string;
  vmName: string;
  vmUuid: string;
}

// ---- source ------------------------------------------------------------------------------------------

export function sourceHostKnown(req: VmRef, host: HostRecord | null): HostRecord {
  if (host !== null) return host;
  throw nonRetryable(FailureType.InvalidInput, `source host "${req.sourceHost}" is not in the inventory: add it with \`ferry hosts add\` or check the address`);
}

export function vmKnown(req: VmRef, vm: VmRecord | null): VmRecord {
  if (vm !== null) return vm;
  throw nonRetryable(FailureType.VmNotFound, `no VM with UUID ${req.vmUuid} in the inventory: check the UUID or run \`ferry inventory sync\``);
}

export function vmNamed(req: VmRef, vm: VmRecord): void {
  if (vm.name === req.vmName) return;
  throw nonRetryable(FailureType.VmMismatch, `VM ${req.vmUuid} is named "${vm.name}" in the inventory, not "${req.vmName}": check the name and UUID`);
}

export function vmOnSource(vm: VmRecord, host: HostRecord): void {
  if (vm.host === host.name) return;
  throw nonRetryable(
    FailureType.VmMismatch,
    `VM ${vm.name} runs on ${vm.host} according to the inventory, not on ${host.name} (${host.address}): pass the right source`,
  );
}

/** The inventory's movability rule (not held by another migration, running), as the claim will check it. */
export function vmMovable(vm: VmRecord, host: HostRecord, held: Claim | null, workflowId: string): void {
  const refusal = movabilityRefusal(vm, held, workflowId, host.name);
  if (refusal !== null) throw refusal; // guarded() maps it to VmBusy / VmMismatch like the claim's own refusal
}

export function domainPresent(vm: VmRecord, host: HostRecord, dom: DomainInfo | null): DomainInfo {
  if (dom !== null) return dom;
  throw nonRetryable(FailureType.VmMismatch, `libvirt on ${host.name} has no domain with UUID ${vm.uuid}: the inventory is stale, run \`ferry inventory sync\``);
}

/** libvirt agrees with the inventory on the VM's name and state (running, paused or stopped: how it moves). */
export function domainMatches(vm: VmRecord, host: HostRecord, dom: DomainInfo): MovableState {
  const state = vmStateOfDomain(dom.state);
  if (dom.name === vm.name && state === vm.state && isMovableState(state)) return state;
  throw nonRetryable(
    FailureType.VmMismatch,
    `libvirt on ${host.name} reports domain ${vm.uuid} as "${dom.name}" (${dom.state}); the inventory says "${vm.name}" (${vm.state}): run \`ferry inventory sync\``,
  );
}

/** A stopped VM that libvirt forgets when it is stopped cannot be moved cold: there is no definition to move. */
export function definitionPersists(vm: VmRecord, host: HostRecord, dom: DomainInfo, state: MovableState): void {
  if (state !== 'stopped' || dom.persistent) return;
  throw nonRetryable(FailureType.UnsupportedVm, `${vm.name} on ${host.name} is a transient domain: define it (\`virsh define\`) before moving it`);
}

export function disksMatch(vm: VmRecord, host: HostRecord, dom: DomainInfo): void {
  const problems = compareDisks(vm.disks, dom);
  if (problems.length === 0) return;
  throw nonRetryable(
    FailureType.VmMismatch,
    `the disks of ${vm.name} in the inventory do not match libvirt on ${host.name}: ${problems.join('; ')}. Run \`ferry inventory sync\``,
  );
}

/** Differences between the inventory's disks and libvirt's, in words. */
export function compareDisks(known: DiskRecord[], dom: DomainInfo): string[] {
  const problems: string[] = [];
  const actual = new Map(dom.disks.map((d) => [d.target, d]));
  for (const k of known) {
    const a = actual.get(k.target);
    if (!a) {
      problems.push(`${k.target} (${k.path}) is not attached`);
      continue;
    }
    actual.delete(k.target);
    if (a.path !== k.path) problems.push(`${k.target} is ${a.path}, inventory says ${k.path}`);
    if (a.capacityBytes !== k.sizeBytes) problems.push(`${k.target} has ${a.capacityBytes} bytes, inventory says ${k.sizeBytes}`);
    if (a.format !== k.format) problems.push(`${k.target} is ${a.format}, inventory says ${k.format}`);
  }
  for (const a of actual.values()) problems.push(`${a.target} (${a.path}) is attached but not in the inventory`);
  return problems;
}

/**
 * The VM's disks as Ferry can move them: file-backed, at clean absolute paths (libvirt copies each to the same
 * path on the target), with safe volume names. Any layout: per-VM directories, flat pools holding many VMs'
 * disks (libvirt's `default`), several directories. Returns the first disk's directory.
 */
export function checkDiskPaths(vmName: string, disks: DiskRecord[]): string {
  const [first] = disks;
  if (first === undefined) {
    throw nonRetryable(FailureType.UnsupportedVm, `VM ${vmName} has no file-backed disks; Ferry migrates VMs with local disks`);
  }
  for (const d of disks) {
    if (normalizeAbsolute(d.path) !== d.path) {
      throw nonRetryable(FailureType.UnsupportedVm, `disk ${d.path} of ${vmName} is not a clean absolute path`);
    }
    if (!isVolumeName(d.name) || basenameOf(d.path) !== d.name) {
      throw nonRetryable(FailureType.UnsupportedVm, `disk ${d.path} of ${vmName} has an unsafe or inconsistent volume name "${d.name}"`);
    }
  }
  return dirnameOf(first.path);
}

// ---- target ------------------------------------------------------------------------------------------

/**
 * The VM's directory was checked against the SOURCE's storage root; it must sit directly under the TARGET's
 * configured root too (libvirt copies disks to the same path), or Ferry would create storage outside what
 * the target's operator gave it.
 */
export function targetKeepsStorageThere(target: HostRef, host: HostRecord | null, path: string): void {
  if (host === null) return;
  const root = normalizeAbsolute(host.storageRoot);
  const dir = normalizeAbsolute(path);
  if (root !== null && dir !== null && isStrictlyInside(dir, root) && dirnameOf(dir) === root) return;
  throw nonRetryable(
    FailureType.UnsupportedVm,
    `${target.name} keeps VM storage under ${host.storageRoot}, but the VM's directory is ${path}: ` +
      'libvirt copies disks to the same path, so source and target need the same storage root (`ferry hosts add --storage-root`)',
  );
}

export function targetDoesNotRunVm(target: HostRef, vmUuid: string, present: DomainInfo | null): void {
  if (!isRunningOrPaused(present)) return;
  throw nonRetryable(FailureType.VmMismatch, `${target.name} already runs a domain with UUID ${vmUuid}: run \`ferry inventory sync\` and check where the VM is`);
}

export function safeVolumeName(disk: DiskRecord): void {
  if (isVolumeName(disk.name)) return;
  throw nonRetryable(FailureType.UnsupportedVm, `disk name "${disk.name}" is not a safe volume name`);
}

// ---- pre-flight: can the target run the VM? (why not, or null) ---------------------------------------------

/** Each bridge (and macvtap device) the VM's NICs attach to exists on the target. */
export function bridgesOnTarget(vmName: string, target: HostRef, needs: DomainNeeds, interfaces: readonly string[]): string | null {
  const have = new Set(interfaces);
  const missing = needs.nics.filter((n) => (n.type === 'bridge' || n.type === 'direct') && n.source !== null && !have.has(n.source));
  if (missing.length === 0) return null;
  const names = [...new Set(missing.map((n) => n.source))].join(', ');
  return `${target.name} has no ${missing.length === 1 ? 'bridge' : 'bridges'} ${names}, which ${vmName}'s NIC${missing.length === 1 ? ' uses' : 's use'}: create ${names} on ${target.name}, or choose another target`;
}

/** Each libvirt network the VM's NICs use is defined and active on the target. */
export function networksOnTarget(vmName: string, target: HostRef, needs: DomainNeeds, networks: readonly NetworkInfo[]): string | null {
  for (const n of needs.nics) {
    if (n.type !== 'network' || n.source === null) continue;
    const net = networks.find((x) => x.name === n.source);
    if (!net) return `${target.name} has no libvirt network ${n.source}, which ${vmName}'s NIC uses: define it there (virsh net-define), or choose another target`;
    if (!net.active) return `libvirt network ${n.source} on ${target.name} is not active: start it (virsh net-start ${n.source}), or choose another target`;
  }
  return null;
}

/** libvirt's comparison of the VM's CPU with what the target's hypervisor provides. */
export function cpuOnTarget(vmName: string, target: HostRef, incompatibility: string | null): string | null {
  if (incompatibility === null) return null;
  return `${target.name} cannot run ${vmName}'s CPU (${incompatibility}): choose a target with that CPU, or give the VM a CPU model every host provides`;
}

/** The target's emulator supports the VM's machine type. */
export function machineOnTarget(target: HostRef, needs: DomainNeeds, unsupported: string | null): string | null {
  if (unsupported === null) return null;
  return `${target.name} does not support machine type ${needs.machine} (${unsupported}): upgrade QEMU there, or choose another target`;
}

/** Host devices passed through tie the VM to its host: no target can take it (the VM itself fails this check). */
export function noHostDevices(vmName: string, needs: DomainNeeds): string | null {
  if (needs.hostDevices.length === 0) return null;
  return `${vmName} has host devices passed through (${needs.hostDevices.join(', ')}), which exist only on its host: detach them (virsh detach-device) before moving it`;
}

/** Every file the VM reads but a migration does not copy (cdrom images, read-only disks, backing files) is on the target. */
export function filesOnTarget(vmName: string, target: HostRef, missing: readonly DomainLocalFile[]): string | null {
  if (missing.length === 0) return null;
  const each = missing.map((f) => `${f.device} ${f.target} ${f.path}`).join(', ');
  const eject = missing.find((f) => f.device === 'cdrom');
  return (
    `${target.name} lacks ${missing.length === 1 ? 'a file' : 'files'} ${vmName} reads but a migration does not copy (${each}): ` +
    `copy ${missing.length === 1 ? 'it' : 'them'} to the same path on ${target.name}` +
    (eject ? `, or eject the cdrom (virsh change-media ${vmName} ${eject.target} --eject)` : '') +
    ', or choose another target'
  );
}

/**
 * The hosts' transports against the request's policy (common/security.ts: requireSecure, encryptStream): why
 * this pair cannot honour it, or null. Pure, so the check runs even when the target does not answer.
 */
export function transportOnTarget(policy: TransportPolicy, mode: MigrationMode, vm: VmFacts, target: HostRef): { refusal: string | null; vmWide: boolean; encrypt: boolean } {
  const d = streamEncryption(policy, mode, vm.source, target);
  return { refusal: d.refusal, vmWide: d.vmWide, encrypt: d.encrypt };
}
