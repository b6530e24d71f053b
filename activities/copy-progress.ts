/**
 * The copy's own progress while libvirt migrates: memory and disk figures from the job statistics, each copied
 * disk's figures from its mirror job, and their rates measured over the last few samples (QEMU's mirror moves
 * in 16 MiB steps, so a rate from two neighbouring samples would jump between 0 and 16 MiB/s).
 */
import type { CopyFigures, DiskCopyProgress, MigrationStats } from '../common/migration';
import type { DiskCopyJob, JobInfo } from '../hypervisor/port';
import { migrationStats } from './locate';

/** Rates average over this much history. */
const RATE_WINDOW_MS = 8_000;

interface Sample {
  at: number;
  bytes: Record<string, number>;
}

/** Bytes per second of named byte counters, over a sliding window of samples. */
export class RateWindow {
  private samples: Sample[] = [];

  constructor(private readonly windowMs = RATE_WINDOW_MS) {}

  /** Records the counters at `at` (ms) and returns each one's rate since the oldest sample in the window. */
  add(at: number, bytes: Record<string, number>): Record<string, number | null> {
    this.samples.push({ at, bytes });
    while (this.samples.length > 2 && at - (this.samples[1]?.at ?? at) >= this.windowMs) this.samples.shift();
    const first = this.samples[0];
    const rates: Record<string, number | null> = {};
    for (const [name, now] of Object.entries(bytes)) {
      const then = first?.bytes[name];
      const span = first ? (at - first.at) / 1000 : 0;
      rates[name] = then === undefined || span <= 0 || now < then ? null : Math.round((now - then) / span);
    }
    return rates;
  }
}

/** One migration's progress samples: the job statistics plus memory, disk and per-disk figures with rates. */
export class CopyProgress {
  private readonly rates = new RateWindow();

  sample(job: JobInfo, copies: readonly DiskCopyJob[], now = new Date()): MigrationStats {
    const counters: Record<string, number> = {};
    if (job.memoryProcessedBytes !== null) counters['memory'] = job.memoryProcessedBytes;
    if (job.diskProcessedBytes !== null) counters['disk'] = job.diskProcessedBytes;
    for (const c of copies) counters[`disk:${c.target}`] = c.processedBytes;
    const rate = this.rates.add(now.getTime(), counters);
    const stats: MigrationStats = {
      ...migrationStats(job, now),
      memory: figures(job.memoryProcessedBytes, job.memoryTotalBytes, rate['memory']),
    };
    if ((job.diskTotalBytes ?? 0) > 0 || copies.length > 0) stats.disk = figures(job.diskProcessedBytes, job.diskTotalBytes, rate['disk']);
    stats.disks = copies.map((c): DiskCopyProgress => ({
      target: c.target,
      ...figures(c.processedBytes, c.totalBytes, rate[`disk:${c.target}`]),
      bandwidthMiBps: c.bandwidthMiBps,
    }));
    return stats;
  }
}

function figures(processed: number | null, total: number | null, rate: number | null | undefined): CopyFigures {
  return { processedBytes: processed, totalBytes: total, bytesPerSec: rate ?? null };
}
