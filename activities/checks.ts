/**
 * Pre-conditions of a migration, as small named checks (Nova's live_migrate.py style): each looks at one
 * fact and raises ONE typed, non-retryable failure whose message says what is wrong and what to do. The
 * activities call them in order; a new rule is a new function here, called where its facts are known.
 *
 * Source checks (step 2, readVm): the host and VM the request names exist and agree with each other, with
 * the inventory's movability rule (inventory/placement.ts, checked again inside the claim) and with libvirt.
 * Target checks (the directory create task): the target keeps storage where the VM's directory is and
 * does not run the VM already.
 */
import type { DiskRecord, HostRecord, VmRecord } from '../common/types';
import type { HostRef } from '../common/migration';
import { FailureType } from '../common/failures';
import { basenameOf, dirnameOf, isStrictlyInside, isVolumeName, normalizeAbsolute } from '../common/names';
import type { DomainInfo } from '../hypervisor/port';
import { movabilityRefusal } from '../inventory/placement';
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

export function domainMatches(vm: VmRecord, host: HostRecord, dom: DomainInfo): void {
  if (dom.name === vm.name && dom.state === 'running') return;
  throw nonRetryable(
    FailureType.VmMismatch,
    `libvirt on ${host.name} reports domain ${vm.uuid} as "${dom.name}" (${dom.state}); the inventory says "${vm.name}" (running): run \`ferry inventory sync\``,
  );
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
