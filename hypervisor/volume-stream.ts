/**
 * A volume's bytes from one libvirt host into a volume on another, through this process: `virsh vol-download`
 * writes into a FIFO, this process reads it (counting, and pacing to the bandwidth), and writes into a second
 * FIFO that `virsh vol-upload` reads. No shell, no temporary copy on disk. (virsh cannot write to a socket, which
 * is what Node gives a child as stdout, and it prints a newline on stdout after the data: hence FIFOs.)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { libvirtErrorFromStderr } from './errors';
import { run, startProcess } from './exec';
import type { CopyVolumeOptions } from './port';

type Child = ReturnType<typeof startProcess>;

const MiB = 1024 * 1024;
const DEFAULT_COPY_TIMEOUT_MS = 6 * 60 * 60 * 1000;

/** Counts the bytes that pass, reports them, and holds them back to stay at `bytesPerSec` (null: no limit). */
class Meter extends Transform {
  copied = 0;
  private readonly started = Date.now();
  private lastReport = 0;

  constructor(
    private readonly bytesPerSec: number | null,
    private readonly onProgress: ((bytes: number) => void) | undefined,
    private readonly everyMs: number,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.copied += chunk.length;
    const due = this.bytesPerSec === null ? 0 : this.started + (this.copied / this.bytesPerSec) * 1000 - Date.now();
    const pass = () => {
      this.report(false);
      done(null, chunk);
    };
    if (due > 0) void delay(due).then(pass);
    else pass();
  }

  override _flush(done: TransformCallback): void {
    this.report(true);
    done();
  }

  private report(final: boolean): void {
    const now = Date.now();
    if (!final && now - this.lastReport < this.everyMs) return;
    this.lastReport = now;
    this.onProgress?.(this.copied);
  }
}

interface Exited {
  code: number | null;
  stderr: string;
}

function exited(p: Child): Promise<Exited> {
  let stderr = '';
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  p.stdout.resume();
  p.stdin.end();
  return new Promise((resolve) => {
    p.on('error', (e) => resolve({ code: -1, stderr: stderr || e.message }));
    p.on('close', (code) => resolve({ code, stderr }));
  });
}

/** A FIFO end this process waits to open: opening the other end ourselves lets that open return. */
async function unblock(fifo: string, flags: 'r' | 'w'): Promise<void> {
  const fd = await fs.promises.open(fifo, `${flags}`).catch(() => null);
  await fd?.close();
}

/**
 * Runs `virsh <downloadArgs> <fifo>` and `virsh <uploadArgs> <fifo>` with the bytes streamed between them.
 * Resolves with the bytes copied; rejects with a LibvirtError (either virsh's error) or an AbortError.
 */
export async function streamVolume(virsh: string, downloadArgs: readonly string[], uploadArgs: readonly string[], opts: CopyVolumeOptions = {}): Promise<number> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'ferry-copy-'));
  const down = path.join(dir, 'download');
  const up = path.join(dir, 'upload');
  const kill: Child[] = [];
  const stop = () => {
    for (const p of kill) p.kill('SIGKILL');
  };
  opts.signal?.addEventListener('abort', stop, { once: true });
  const timer = setTimeout(stop, opts.timeoutMs ?? DEFAULT_COPY_TIMEOUT_MS);
  try {
    opts.signal?.throwIfAborted();
    await run('mkfifo', ['-m', '600', down, up]);
    const downloader = startProcess(virsh, [...downloadArgs, down]);
    const uploader = startProcess(virsh, [...uploadArgs, up]);
    kill.push(downloader, uploader);
    const meter = new Meter(opts.bandwidthMiBps ? opts.bandwidthMiBps * MiB : null, opts.onProgress, opts.progressEveryMs ?? 500);
    // Either client failing before it opened its FIFO would leave our open waiting: open the other end then.
    const downloaded = exited(downloader).then(async (r) => (r.code !== 0 && (await unblock(down, 'w')), r));
    const uploaded = exited(uploader).then(async (r) => (r.code !== 0 && (await unblock(up, 'r')), r));
    const piped = pipeline(fs.createReadStream(down), meter, fs.createWriteStream(up)).then(
      () => null,
      (e: unknown) => e,
    );
    const [d, u, pipeErr] = await Promise.all([downloaded, uploaded, piped]);
    opts.signal?.throwIfAborted();
    for (const [r, args] of [
      [d, downloadArgs],
      [u, uploadArgs],
    ] as const) {
      if (r.code !== 0) throw libvirtErrorFromStderr(r.stderr, r.code === null, { uri: args[1] ?? '', what: args[2] ?? 'copy', timeoutMs: opts.timeoutMs ?? DEFAULT_COPY_TIMEOUT_MS }, args);
    }
    if (pipeErr) throw pipeErr;
    return meter.copied;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', stop);
    stop();
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}
