/**
 * How big a lab and its VMs may be, and are by default. checkLabSize is the one check of a lab's size: labUp
 * and `ferry lab up` both use it.
 */
import { LabError } from './types';

/** Most hosts in one lab: each is a libvirtd in its own namespaces on this one machine. */
export const LAB_MAX_HOSTS = 16;
/** Most VMs labUp creates (all on the first host; TCG guests of 128 MiB by default). */
export const LAB_MAX_VMS = 64;
/** A lab VM's memory unless told otherwise (labUp `vmMemoryMiB`, labAddVm `memoryMiB`). */
export const LAB_VM_MEMORY_MIB = 128;
/** Random data at the start of a lab VM's disk unless told otherwise. */
export const LAB_RANDOM_DATA_MIB = 32;

/** A lab has 1..LAB_MAX_HOSTS hosts and 0..LAB_MAX_VMS VMs, whole numbers; otherwise LabError. */
export function checkLabSize(o: { hosts: number; vms: number }): void {
  if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts > LAB_MAX_HOSTS) {
    throw new LabError(`hosts must be a whole number from 1 to ${LAB_MAX_HOSTS} (got ${o.hosts})`);
  }
  if (!Number.isInteger(o.vms) || o.vms < 0 || o.vms > LAB_MAX_VMS) {
    throw new LabError(`vms must be a whole number from 0 to ${LAB_MAX_VMS} (got ${o.vms})`);
  }
}

/** A VM has at least 16 MiB of memory and 0 or more MiB of random disk data; `memoryOption` names the memory option. */
export function checkVmSize(memoryOption: string, memoryMiB: number, randomDataMiB: number): void {
  if (!Number.isInteger(memoryMiB) || memoryMiB < 16) throw new LabError(`${memoryOption} must be an integer >= 16`);
  if (!Number.isInteger(randomDataMiB) || randomDataMiB < 0) throw new LabError('randomDataMiB must be an integer >= 0');
}
