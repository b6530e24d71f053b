/**
 * Persistent virsh sessions: `virsh -c <uri>` kept running, fed one batch line at a time on stdin.
 *
 * Why: every one-shot virsh invocation pays a process start plus a new connection to libvirtd (~16 ms on an
 * idle machine, 40–80 ms of wall time on a loaded 2-core one), and one migration makes ~25 of them. In a
 * session a command costs only its libvirt RPC (a few ms).
 *
 * Protocol: the same batch line as one-shot mode (virsh-batch.ts buildBatchScript: every command followed by
 * `echo <marker>` and `echo --err <marker>`), written as one line. Interactive virsh echoes the prompt and the
 * line on stdout ("virsh # <line>"), which is cut off; the batch is complete when the last marker has
 * arrived on both stdout and stderr. Everything else (splitting per command, error classification) is
 * virsh-batch.ts's and virsh.ts's, unchanged.
 *
 * Rules:
 * - at most `maxPerUri` sessions per URI (a batch waits for a free one), at most `maxSessions` in all (the
 *   least recently used idle session is closed), sessions idle for `idleMs` are closed;
 * - a batch that exceeds its time limit kills its session and fails like a timed-out one-shot call
 *   (CommandError with timedOut, so the classification is the same);
 * - a session whose batch reported a connection-level failure, that printed anything while idle (e.g.
 *   "Disconnected from … due to end of file" after a daemon restart), or that exited, is never reused: the next
 *   batch starts a fresh one, with a fresh connection;
 * - lines containing a newline cannot be sent (the caller falls back to one-shot mode);
 * - the line must not contain its own markers literally (virsh-batch.ts buildSessionScript writes them split).
 * The processes are unref'd: they never keep Node alive, and they exit when their stdin closes.
 */
import { CommandError, startProcess } from './exec';

export interface VirshSessionOptions {
  /** virsh binary. */
  virsh: string;
  /** Sessions per URI at most. Default 4. */
  maxPerUri?: number;
  /** Sessions in all at most. Default 32. */
  maxSessions?: number;
  /** A session idle this long is closed. Default 30 s. */
  idleMs?: number;
}

const PROMPT = 'virsh # ';

interface Pending {
  lastMarker: string;
  line: string;
  resolve: (r: { stdout: string; stderr: string }) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

/** One `virsh -c <uri>` process. */
class Session {
  readonly proc: ReturnType<typeof startProcess>;
  private out = '';
  private err = '';
  private pending: Pending | null = null;
  dead = false;
  /** Handed to a caller (between acquire and release): not to be handed to another. */
  claimed = false;
  lastUsed = Date.now();

  constructor(
    readonly virsh: string,
    readonly uri: string,
  ) {
    // TERM=dumb: readline's echo of each line stays one line (redrawn with \r), whatever the caller's terminal.
    // Not -q: quiet mode drops the header of list tables, which the parsers expect as in one-shot mode.
    this.proc = startProcess(virsh, ['-c', uri], { env: { TERM: 'dumb' } });
    this.proc.stdout.setEncoding('utf8');
    this.proc.stderr.setEncoding('utf8');
    this.proc.stdout.on('data', (d: string) => {
      this.out += d;
      this.check();
    });
    this.proc.stderr.on('data', (d: string) => {
      this.err += d;
      this.check();
    });
    this.proc.stdin.on('error', () => undefined); // EPIPE after the process died: reported through 'exit'
    this.proc.on('error', (e) => this.die(e));
    this.proc.on('close', (code, signal) => this.die(null, code, signal)); // after stdout/stderr are drained
    for (const s of [this.proc.stdin, this.proc.stdout, this.proc.stderr]) (s as unknown as { unref?: () => void }).unref?.();
    this.proc.unref();
  }

  get busy(): boolean {
    return this.claimed || this.pending !== null;
  }

  /** Output that arrived while no batch was running (a disconnect notice): the session is not to be trusted. */
  get tainted(): boolean {
    return this.pending === null && this.err.trim() !== '';
  }

  run(line: string, lastMarker: string, timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
    if (this.dead || this.pending) return Promise.reject(new Error('virsh session not available (internal error)'));
    this.lastUsed = Date.now();
    // Anything left over from before (a prompt) belongs to no batch.
    this.out = '';
    this.err = '';
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const stderr = this.err;
        const stdout = this.out;
        this.pending = null;
        this.kill();
        reject(
          new CommandError(
            `${this.virsh} timed out after ${timeoutMs} ms: ${stderr.trim()}`,
            this.virsh,
            ['-c', this.uri, line],
            stdout,
            stderr,
            null,
            true,
            false,
          ),
        );
      }, timeoutMs);
      this.pending = { lastMarker, line, resolve, reject, timer };
      this.proc.stdin.write(`${line}\n`);
    });
  }

  private check(): void {
    const p = this.pending;
    if (!p) return;
    // stdout begins with (the welcome banner of a new session,) the prompt and readline's echo of the line,
    // redrawn with \r when wider than the terminal but always ending with the line's last characters, then
    // one \n: cut all that off. The line's tail (`…''-<n>@@'`) appears nowhere else: the markers are written
    // split (buildSessionScript) and virsh prints them joined. A virsh that does not echo: cut through the prompt.
    const tail = this.out.indexOf(p.line.slice(-24));
    let skip: number;
    if (tail >= 0) {
      const nl = this.out.indexOf('\n', tail);
      if (nl < 0) return; // the echo is still arriving (no output comes before its end)
      skip = nl + 1;
    } else {
      const prompt = this.out.indexOf(PROMPT);
      skip = prompt >= 0 ? prompt + PROMPT.length : 0;
    }
    const o = this.out.indexOf(p.lastMarker, skip);
    const e = this.err.indexOf(p.lastMarker);
    if (o < 0 || e < 0) return;
    let oEnd = o + p.lastMarker.length;
    if (this.out[oEnd] === '\n') oEnd++;
    let eEnd = e + p.lastMarker.length;
    if (this.err[eEnd] === '\n') eEnd++;
    const stdout = this.out.slice(skip, oEnd);
    const stderr = this.err.slice(0, eEnd);
    this.out = this.out.slice(oEnd);
    this.err = this.err.slice(eEnd);
    clearTimeout(p.timer);
    this.pending = null;
    this.lastUsed = Date.now();
    p.resolve({ stdout, stderr });
  }

  private die(error: Error | null, code: number | null = null, signal: NodeJS.Signals | null = null): void {
    if (this.dead) return;
    this.dead = true;
    const p = this.pending;
    if (!p) return;
    clearTimeout(p.timer);
    this.pending = null;
    const what = error ? `could not start (${(error as NodeJS.ErrnoException).code ?? error.message})` : `exited with ${code ?? signal}`;
    p.reject(new CommandError(`${this.virsh} ${what}: ${this.err.trim()}`, this.virsh, ['-c', this.uri, p.line], this.out, this.err, code, false, false));
  }

  kill(): void {
    this.dead = true;
    try {
      this.proc.stdin.end();
      this.proc.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export class VirshSessionPool {
  private readonly sessions: Session[] = [];
  private readonly waiting = new Map<string, (() => void)[]>();
  private readonly maxPerUri: number;
  private readonly maxSessions: number;
  private readonly idleMs: number;
  private reaper: NodeJS.Timeout | null = null;

  constructor(private readonly opts: VirshSessionOptions) {
    this.maxPerUri = Math.max(1, opts.maxPerUri ?? 4);
    this.maxSessions = Math.max(1, opts.maxSessions ?? 32);
    this.idleMs = opts.idleMs ?? 30_000;
  }

  /**
   * Runs one batch line on a session of `uri`; resolves to the batch's stdout (without the echoed line) and
   * stderr, through the last marker. `unhealthy(stderr)` says whether the session must not be reused.
   */
  async run(
    uri: string,
    line: string,
    lastMarker: string,
    timeoutMs: number,
    unhealthy: (stderr: string) => boolean,
  ): Promise<{ stdout: string; stderr: string }> {
    const started = Date.now();
    const s = await this.acquire(uri, timeoutMs);
    try {
      const r = await s.run(line, lastMarker, Math.max(1, timeoutMs - (Date.now() - started)));
      if (unhealthy(r.stderr)) s.kill();
      return r;
    } finally {
      s.claimed = false;
      this.release(uri);
    }
  }

  /** Sessions alive now (tests). */
  get size(): number {
    this.prune();
    return this.sessions.length;
  }

  /** Closes every session. */
  close(): void {
    for (const s of this.sessions.splice(0)) s.kill();
    if (this.reaper) clearInterval(this.reaper);
    this.reaper = null;
  }

  private prune(): void {
    for (let i = this.sessions.length - 1; i >= 0; i--) {
      const s = this.sessions[i]!;
      if (s.dead || (!s.busy && (s.tainted || Date.now() - s.lastUsed > this.idleMs))) {
        s.kill();
        this.sessions.splice(i, 1);
      }
    }
  }

  private async acquire(uri: string, timeoutMs: number): Promise<Session> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.prune();
      const idle = this.sessions.find((s) => s.uri === uri && !s.busy && !s.dead);
      if (idle) {
        idle.claimed = true;
        return idle;
      }
      const mine = this.sessions.filter((s) => s.uri === uri).length;
      if (mine < this.maxPerUri) {
        if (this.sessions.length >= this.maxSessions) {
          const lru = this.sessions.filter((s) => !s.busy).sort((a, b) => a.lastUsed - b.lastUsed)[0];
          if (lru) {
            lru.kill();
            this.prune();
          }
        }
        if (this.sessions.length < this.maxSessions) {
          const s = new Session(this.opts.virsh, uri);
          s.claimed = true;
          this.sessions.push(s);
          this.startReaper();
          return s;
        }
      }
      // Wait for a session of this URI (or any, for the global limit) to be released.
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new CommandError(`${this.opts.virsh} timed out after ${timeoutMs} ms waiting for a free session`, this.opts.virsh, ['-c', uri], '', '', null, true, false);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.min(left, 1000));
        function done() {
          clearTimeout(t);
          resolve();
        }
        const q = this.waiting.get(uri) ?? [];
        q.push(done);
        this.waiting.set(uri, q);
      });
    }
  }

  private release(uri: string): void {
    const q = this.waiting.get(uri);
    const next = q?.shift();
    if (q && q.length === 0) this.waiting.delete(uri);
    if (next) next();
    else for (const [, others] of this.waiting) others.shift()?.();
  }

  private startReaper(): void {
    if (this.reaper) return;
    this.reaper = setInterval(() => {
      this.prune();
      if (this.sessions.length === 0 && this.reaper) {
        clearInterval(this.reaper);
        this.reaper = null;
      }
    }, 5_000);
    this.reaper.unref();
  }
}
