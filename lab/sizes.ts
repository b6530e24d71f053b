/** How big a lab and its VMs may be, and are by default. */
import { LabError } from './types';

/** A lab VM's memory unless told otherwise (labUp `vmMemoryMiB`, labAddVm `memoryMiB`). */
export const LAB_VM_MEMORY_MIB = 128;
/** Random data at the start of a lab VM's disk unless told otherwise. */
export const LAB_RANDOM_DATA_MIB = 32;

/** labUp's hosts and VMs. */
export function checkLabSize(o: { hosts: number; vms: number }): void {
  if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts > 200) throw new LabError('hosts must be 1..200');
  if (!Number.isInteger(o.vms) || o.vms < 0 || o.vms > 1000) throw new LabError('vms must be 0..1000');
}

/** A VM has at least 16 MiB of memory and 0 or more MiB of random disk data; `memoryOption` names the memory option. */
export function checkVmSize(memoryOption: string, memoryMiB: number, randomDataMiB: number): void {
  if (!Number.isInteger(memoryMiB) || memoryMiB < 16) throw new LabError(`${memoryOption} must be an integer >= 16`);
  if (!Number.isInteger(randomDataMiB) || randomDataMiB < 0) throw new LabError('randomDataMiB must be an integer >= 0');
}
