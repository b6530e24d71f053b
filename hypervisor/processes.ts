/**
 * Beside exec.ts (programs Ferry runs and waits for): background processes Ferry starts and finds again later
 * (`ferry dev`, `ferry cluster`): detached, no shell, output appended to a log, pid in a file; found again only
 * when that pid is alive and still the same program.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';

/** The pid in `file` when that process is alive and its command line contains `marker`; else null. */
export function livePid(file: string, marker: string): number | null {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return null;
  }
  return pidAlive(pid, marker) ? pid : null;
}

/** `pid` is alive (not a zombie) and its command line contains `marker`. */
export function pidAlive(pid: number, marker: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return cmdline.includes(marker) && state !== 'Z';
  } catch {
    return false;
  }
}

/** Starts `file args` detached (its own session), output appended to `logFile`; writes and returns its pid. */
export function startDetached(
  file: string,
  args: readonly string[],
  logFile: string,
  pidFile: string,
  env: NodeJS.ProcessEnv = process.env,
  cwd?: string,
): number {
  const log = fs.openSync(logFile, 'a');
  let child;
  try {
    child = spawn(file, args, { detached: true, stdio: ['ignore', log, log], env, ...(cwd !== undefined ? { cwd } : {}) });
  } finally {
    fs.closeSync(log);
  }
  child.on('error', () => undefined);
  if (child.pid === undefined) throw new Error(`could not start ${file}`);
  child.unref();
  fs.writeFileSync(pidFile, `${child.pid}\n`);
  return child.pid;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stopPid(pid: number, graceMs: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  const alive = () => {
    try {
      process.kill(pid, 0);
      return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
    } catch {
      return false;
    }
  };
  while (Date.now() < deadline) {
    if (!alive()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  while (alive()) await new Promise((r) => setTimeout(r, 50));
}
