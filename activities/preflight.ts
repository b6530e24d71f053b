/**
 * The pre-flight checks of a claimed target, Nova-style (conductor/tasks/live_migrate.py): after the claim and
 * before any create task, the facts of the VM (its domain XML on the source) against the facts of the target
 * (its interfaces, networks, CPU, emulator, files), each judged by one named check in checks.ts. A refused
 * target is given back by the workflow and the next candidate tried; with a fixed target the migration is
 * refused with nothing created.
 */
import type { HostRef, MigrationMode, PreflightCheck, PreflightResult, VmFacts } from '../common/migration';
import { basenameOf } from '../common/names';
import { byDirectory } from '../common/storage';
import type { DomainLocalFile, DomainNeeds, Hypervisor } from '../hypervisor/port';
import type { ActivityRuntime } from './context';
import type { TransportPolicy } from '../common/security';
import { bridgesOnTarget, cpuOnTarget, filesOnTarget, machineOnTarget, networksOnTarget, noHostDevices, transportOnTarget } from './checks';
import { guarded } from './failures';
import { probeTag, unreachable, withDirectoryPool } from './storage-plan';

export interface CheckTargetInput {
  vm: VmFacts;
  target: HostRef;
  mode: MigrationMode;
  /** The request's transport policy (absent in runs recorded before it: not checked). */
  transport?: TransportPolicy;
}

/**
 * Files the VM needs on the target that a migration does not bring: read-only disks and cdrom images; for a cold
 * move also the backing files of its copied disks (a cold copy moves the top image only; a live one flattens).
 */
async function filesNeeded(hv: Hypervisor, vm: VmFacts, needs: DomainNeeds, mode: MigrationMode): Promise<DomainLocalFile[]> {
  const files = [...needs.readOnlyFiles];
  if (mode === 'cold') {
    const dom = await hv.getDomain(vm.source.uri, vm.uuid);
    for (const d of dom?.disks ?? []) if (d.backingFile) files.push({ target: d.target, path: d.backingFile, device: 'backing file of' });
  }
  return files;
}

/** Which of `files` the target does not have at the same path (looked for through libvirt pools only). */
async function missingOn(hv: Hypervisor, vm: VmFacts, target: HostRef, files: readonly DomainLocalFile[]): Promise<DomainLocalFile[]> {
  if (files.length === 0) return [];
  const pools = await hv.listPools(target.uri);
  const missing: DomainLocalFile[] = [];
  for (const [dir, inDir] of byDirectory(files)) {
    const names = await withDirectoryPool(hv, target, pools, dir, probeTag(vm), async (pool) => new Set((await hv.listVolumes(target.uri, pool)).map((v) => v.name)));
    missing.push(...inDir.filter((f) => names === null || !names.has(basenameOf(f.path))));
  }
  return missing;
}

export function preflightActivities({ hv }: ActivityRuntime) {
  return {
    /** Can the claimed target run the VM? Every named check with its outcome; `refusal`: the first that failed. */
    async checkTarget(input: CheckTargetInput): Promise<PreflightResult> {
      return guarded(async () => {
        const { vm, target, mode } = input;
        const transport = input.transport ? transportOnTarget(input.transport, mode, vm, target) : null;
        const transportCheck = transport
          ? outcome('transport', transport.refusal, transport.encrypt ? 'both hosts can encrypt the migration stream' : 'migration stream not encrypted')
          : null;
        if (transport?.refusal && transportCheck) return { checks: [transportCheck], refusal: transport.refusal, vmWide: transport.vmWide };
        try {
          const needs = await hv.domainNeeds(vm.source.uri, vm.uuid);
          const wantsNetworks = needs.nics.some((n) => n.type === 'network');
          const [interfaces, networks, cpu, machine, files] = await Promise.all([
            hv.hostInterfaces(target.uri),
            wantsNetworks ? hv.listNetworks(target.uri) : Promise.resolve([]),
            needs.cpuMode === 'custom' ? hv.cpuIncompatibility(target.uri, needs) : Promise.resolve(null),
            hv.machineUnsupported(target.uri, needs),
            filesNeeded(hv, vm, needs, mode),
          ]);
          const missing = await missingOn(hv, vm, target, files);
          const vmWide = noHostDevices(vm.name, needs);
          const checks: PreflightCheck[] = [
            outcome('host-devices', vmWide, 'no host devices passed through'),
            outcome('bridges', bridgesOnTarget(vm.name, target, needs, interfaces), describeNics(needs, 'bridge')),
            outcome('networks', networksOnTarget(vm.name, target, needs, networks), describeNics(needs, 'network')),
            outcome('cpu', cpuOnTarget(vm.name, target, cpu), needs.cpuMode === 'custom' ? 'the target runs the VM\'s CPU model' : `CPU mode ${needs.cpuMode ?? 'default'}: not compared`),
            outcome('machine-type', machineOnTarget(target, needs, machine), `machine type ${needs.machine ?? 'default'} supported`),
            outcome('files', filesOnTarget(vm.name, target, missing), files.length === 0 ? 'no files outside the copied disks' : `${files.length} file(s) present at the same path`),
            ...(transportCheck ? [transportCheck] : []),
          ];
          const failed = checks.find((c) => !c.ok);
          return { checks, refusal: failed?.detail ?? null, vmWide: vmWide !== null };
        } catch (err) {
          if (unreachable(err)) return { checks: [], refusal: null, vmWide: false, deferred: (err as Error).message };
          throw err;
        }
      });
    },
  };
}

function outcome(check: string, refusal: string | null, passed: string): PreflightCheck {
  return refusal === null ? { check, ok: true, detail: passed } : { check, ok: false, detail: refusal };
}

function describeNics(needs: DomainNeeds, type: 'bridge' | 'network'): string {
  const used = needs.nics.filter((n) => (type === 'bridge' ? n.type === 'bridge' || n.type === 'direct' : n.type === 'network')).map((n) => n.source);
  return used.length === 0 ? `no ${type} NICs` : `${used.join(', ')} present`;
}
