/**
 * The one way Ferry runs external programs: execFile with an argument array (never a shell),
 * LC_ALL=C so messages are parseable, and a time limit on every call.
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

export interface RunOptions {
  /** Kill the process after this many ms (SIGKILL). Default 30 s. */
  timeoutMs?: number;
  /** Extra environment variables (merged over the current environment, LC_ALL=C always wins). */
  env?: Record<string, string>;
  signal?: AbortSignal;
  /** Max bytes of stdout/stderr kept. Default 64 MiB. */
  maxBuffer?: number;
  cwd?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    message: string,
    readonly file: string,
    readonly args: readonly string[],
    readonly stdout: string,
    readonly stderr: string,
    /** Exit code, or null when killed by a signal. */
    readonly exitCode: number | null,
    readonly timedOut: boolean,
    readonly aborted: boolean,
  ) {
    super(message);
  }
}

export const DEFAULT_TIMEOUT_MS = 30_000;

export function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        env: { ...process.env, ...opts.env, LC_ALL: 'C', LANG: 'C' },
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: opts.maxBuffer ?? 64 * 1024 * 1024,
        signal: opts.signal,
        cwd: opts.cwd,
        encoding: 'utf8',
        windowsHide: true,
      },
      (error, stdout, stderr) => {
        if (!error) {
          resolve({ stdout, stderr });
          return;
        }
        const e = error as NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string };
        const aborted = e.name === 'AbortError';
        const timedOut = !aborted && e.killed === true && e.signal === 'SIGKILL';
        const exitCode = typeof e.code === 'number' ? e.code : null;
        const what = timedOut
          ? `timed out after ${timeoutMs} ms`
          : aborted
            ? 'aborted'
            : typeof e.code === 'string'
              ? `could not start (${e.code})`
              : `exited with ${exitCode ?? e.signal}`;
        reject(
          new CommandError(
            `${file} ${what}: ${(stderr || e.message).trim()}`,
            file,
            args,
            stdout ?? '',
            stderr ?? '',
            exitCode,
            timedOut,
            aborted,
          ),
        );
      },
    );
  });
}

/**
 * A long-lived process with piped stdin/stdout/stderr, for programs driven line by line (a virsh session,
 * hypervisor/virsh-session.ts). Same rules as run(): an argument array, never a shell, LC_ALL=C. The caller
 * owns the process: it enforces its own time limits and kills it.
 */
export function startProcess(file: string, args: readonly string[], opts: { env?: Record<string, string> } = {}): ChildProcessWithoutNullStreams {
  return spawn(file, args, {
    env: { ...process.env, ...opts.env, LC_ALL: 'C', LANG: 'C' },
    stdio: ['pipe', 'pipe', 'pipe'],
    windowsHide: true,
  });
}
