/** The copy's own progress: memory, disk and per-disk figures, with rates over a sliding window. */
import { describe, expect, it } from 'vitest';
import { CopyProgress, RateWindow } from '../../activities/copy-progress';
import { emptyJobInfo, type JobInfo } from '../../hypervisor/port';

const MiB = 2 ** 20;

function diskPhase(diskProcessed: number): JobInfo {
  return { ...emptyJobInfo('unbounded'), dataTotalBytes: 128 * MiB, dataProcessedBytes: diskProcessed, diskTotalBytes: 128 * MiB, diskProcessedBytes: diskProcessed, memoryTotalBytes: 0, memoryProcessedBytes: 0, memoryIteration: 0 };
}

describe('RateWindow', () => {
  it('averages over the window, so 16 MiB steps every 16 s read as 1 MiB/s, not 16 or 0', () => {
    const w = new RateWindow(32_000);
    expect(w.add(0, { d: 16 * MiB }).d).toBeNull();
    for (let t = 1; t <= 32; t++) {
      const bytes = (16 + 16 * Math.floor(t / 16)) * MiB;
      const r = w.add(t * 1000, { d: bytes }).d ?? 0;
      if (t >= 16) expect(r).toBeGreaterThan(0.4 * MiB);
    }
    expect(w.add(33_000, { d: 48 * MiB }).d).toBeCloseTo(MiB, -5);
  });

  it('a counter that went back (a new job) has no rate rather than a negative one', () => {
    const w = new RateWindow();
    w.add(0, { d: 10 });
    expect(w.add(1000, { d: 5 }).d).toBeNull();
  });
});

describe('CopyProgress', () => {
  it('shows the disk copy and each disk with its limit and rate, and memory apart', () => {
    const p = new CopyProgress();
    const t0 = new Date('2026-01-01T00:00:00Z');
    p.sample(diskPhase(16 * MiB), [{ target: 'vda', processedBytes: 16 * MiB, totalBytes: 128 * MiB, bandwidthMiBps: 2 }], t0);
    const s = p.sample(diskPhase(32 * MiB), [{ target: 'vda', processedBytes: 32 * MiB, totalBytes: 128 * MiB, bandwidthMiBps: 200 }], new Date(t0.getTime() + 2000));
    expect(s.disk).toEqual({ processedBytes: 32 * MiB, totalBytes: 128 * MiB, bytesPerSec: 8 * MiB });
    expect(s.disks).toEqual([{ target: 'vda', processedBytes: 32 * MiB, totalBytes: 128 * MiB, bytesPerSec: 8 * MiB, bandwidthMiBps: 200 }]);
    expect(s.memory).toEqual({ processedBytes: 0, totalBytes: 0, bytesPerSec: 0 });
    expect(s.percent).toBe(25);
  });

  it('no disk copied: no disk figures', () => {
    const s = new CopyProgress().sample({ ...emptyJobInfo('unbounded'), memoryTotalBytes: 128 * MiB, memoryProcessedBytes: MiB }, []);
    expect(s.disk).toBeUndefined();
    expect(s.disks).toEqual([]);
  });
});
