/** The lab's virsh calls: one virsh process per call, with a time limit; dir pools defined, built, started, autostarted. */
import { run, CommandError } from '../hypervisor/exec';

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

async function poolInfo(uri: string, pool: string): Promise<{ active: boolean; autostart: boolean } | null> {
  const r = await virshMaybe(uri, ['pool-info', pool], 30_000);
  if (!r) return null;
  return {
    active: /^State:\s+running\s*$/m.test(r.stdout),
    autostart: /^Autostart:\s+yes\s*$/m.test(r.stdout),
  };
}

/** Defines (if needed), builds, starts and autostarts a dir pool. */
export async function ensureDirPool(uri: string, pool: string, target: string): Promise<void> {
  let info = await poolInfo(uri, pool);
  if (!info) {
    await virsh(uri, ['pool-define-as', pool, 'dir', '--target', target]);
    info = { active: false, autostart: false };
  }
  if (!info.active) {
    await virsh(uri, ['pool-build', pool]);
    await virsh(uri, ['pool-start', pool]);
  }
  if (!info.autostart) await virsh(uri, ['pool-autostart', pool]);
}
