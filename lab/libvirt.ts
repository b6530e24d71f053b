/**
 * How the lab talks to its hosts' libvirtd. Storage pools go through the Hypervisor port (the VirshHypervisor
 * Ferry itself uses). What the port does not offer is a plain virsh call: whether a daemon answers (`uri`),
 * which domains a host has in which state (`list`), define and start a domain, probe QEMU's capabilities.
 */
import { run, CommandError } from '../hypervisor/exec';
import type { Hypervisor } from '../hypervisor/port';
import { VirshHypervisor } from '../hypervisor/virsh';

/** One virsh process per call, as the lab's own virsh calls (no persistent sessions to daemons it restarts). */
export const labHypervisor: Hypervisor = new VirshHypervisor({ sessions: false });

export function virsh(uri: string, args: readonly string[], timeoutMs = 30_000) {
  return run('virsh', ['-c', uri, ...args], { timeoutMs });
}

/** Like virsh(), but null on any failure (exit code or time-out). */
export async function virshMaybe(uri: string, args: readonly string[], timeoutMs = 10_000) {
  try {
    return await virsh(uri, args, timeoutMs);
  } catch (e) {
    if (e instanceof CommandError) return null;
    throw e;
  }
}
