/**
 * The bandwidth governs the disk copy, on the real lab: a VM with a 128 MiB disk full of random data, copied by
 * libvirt's NBD mirror (`--copy-storage-all --migrate-disks vda`).
 *   - started slow, then `tune`d up: the rest of the copy finishes far sooner than the slow rate allows;
 *   - started faster, then `tune`d down: the rest takes far longer than the start rate would.
 * Along the way the progress query shows the disk copy per disk (bytes copied of the total, its limit, its
 * rate) rising. Outcomes with wide margins, not benchmarks: the copy moves in 16 MiB steps and the machine is
 * shared. The measured times are printed for the report.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConvergenceView, MigrationProgress, MigrationReport } from '../../common/migration';
import type { MigrationHandle } from '../../client';
import { progressLine } from '../../cli/migrate-commands';
import { canRunLab, startLabHarness, whereRuns, type LabHarness } from '../support/lab-harness';

const MiB = 2 ** 20;
const DISK_MIB = 128;

interface Watched {
  samples: MigrationProgress[];
  /** The latest sample's bytes copied of vda (0 before its copy shows). */
  copied(): number;
  stop(): Promise<void>;
}

/** Polls the progress query every 300 ms, keeping every sample taken while the migration copies. */
function watch(handle: MigrationHandle): Watched {
  const samples: MigrationProgress[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const p = await handle.progress().catch(() => null);
      if (p?.phase === 'migrating' && p.migration) samples.push(p);
      await new Promise((r) => setTimeout(r, 300));
    }
  })();
  return {
    samples,
    copied: () => samples.at(-1)?.migration?.disks?.find((d) => d.target === 'vda')?.processedBytes ?? 0,
    async stop() {
      running = false;
      await loop;
    },
  };
}

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** vda's copy as the samples showed it: bytes copied, in order, and the limits seen. */
function vdaCopy(samples: MigrationProgress[]): { copied: number[]; limits: (number | null)[] } {
  const vda = samples.map((p) => p.migration?.disks?.find((d) => d.target === 'vda')).filter((d) => d !== undefined);
  return { copied: vda.map((d) => d.processedBytes ?? 0), limits: [...new Set(vda.map((d) => d.bandwidthMiBps))] };
}

describe.skipIf(!canRunLab)('bandwidth during the disk copy, on the real lab', () => {
  let h: LabHarness;
  const vm = () => h.lab.vms[0]!;
  const host = (i: number) => h.lab.hosts[i]!;

  beforeAll(async () => {
    h = await startLabHarness({ hosts: 2, vms: 1, randomDataMiB: DISK_MIB });
  }, 300_000);

  afterAll(async () => {
    await h?.stop();
  }, 120_000);

  /** Starts the migration from host `from` at `startMiBps`, tunes it to `tunedMiBps` once vda's copy passed `tuneAfterMiB`. */
  async function migrateAndTune(from: number, startMiBps: number, tuneAfterMiB: number, tunedMiBps: number) {
    const handle = await h.ferry.startMigration({ sourceHost: host(from).address, vmName: vm().name, vmUuid: vm().uuid, bandwidthMiBps: startMiBps, timeout: '5m' });
    const w = watch(handle);
    await until(`vda's copy passes ${tuneAfterMiB} MiB`, () => w.copied() >= tuneAfterMiB * MiB, 120_000);
    const view: ConvergenceView = await handle.tune({ bandwidthMiBps: tunedMiBps });
    const tunedAt = Date.now();
    const remainingBytes = DISK_MIB * MiB - w.copied();
    const report: MigrationReport = await handle.outcome();
    const afterTuneMs = Date.now() - tunedAt;
    await w.stop();
    console.log(
      `disk copy ${startMiBps} → ${tunedMiBps} MiB/s: tuned at ${(DISK_MIB - remainingBytes / MiB).toFixed(0)} MiB, ` +
        `the rest (${(remainingBytes / MiB).toFixed(0)} MiB) took ${(afterTuneMs / 1000).toFixed(1)} s; migration ${report.migrationMs} ms`,
    );
    return { report, view, samples: w.samples, remainingBytes, afterTuneMs };
  }

  /** Both directions: migrated to the other host, the tune reached vda's copy, whose progress rose step by step. */
  async function expectTuned(r: Awaited<ReturnType<typeof migrateAndTune>>, to: number, mibps: number, minSteps: number) {
    expect(r.report.status).toBe('migrated');
    expect(await whereRuns(h, vm().uuid)).toEqual([host(to).name]);
    expect(r.view.bandwidthMiBps).toBe(mibps);
    expect(r.view.events.at(-1)?.what).toContain(`bandwidth ${mibps} MiB/s (memory and the disk copy of vda)`);
    const vda = vdaCopy(r.samples);
    expect(new Set(vda.copied).size).toBeGreaterThanOrEqual(minSteps);
    expect(vda.copied).toEqual([...vda.copied].sort((a, b) => a - b));
    return vda;
  }

  it('raising the bandwidth by tune during the disk copy shortens it accordingly', async () => {
    const r = await migrateAndTune(0, 2, 32, 500);
    const vda = await expectTuned(r, 1, 500, 2);
    // At 2 MiB/s the rest would take remaining / 2 MiB/s (≥ 40 s): it took well under half of that.
    expect(r.afterTuneMs).toBeLessThan((r.remainingBytes / (2 * MiB)) * 1000 * 0.5);
    expect(vda.limits).toContain(2);
    const last = r.samples.at(-1)!;
    expect(last.migration?.disk?.totalBytes).toBe(DISK_MIB * MiB);
    expect(last.migration?.memory).toBeDefined();
    const line = progressLine(vm().name, r.samples.find((p) => (p.migration?.disk?.processedBytes ?? 0) < DISK_MIB * MiB)!);
    expect(line).toMatch(/disk \d+ MiB of 128 MiB at /);
  }, 240_000);

  it('lowering the bandwidth by tune during the disk copy slows it', async () => {
    const r = await migrateAndTune(1, 8, 32, 2);
    const vda = await expectTuned(r, 0, 2, 4);
    // At 8 MiB/s the rest would take remaining / 8 MiB/s; at 2 MiB/s four times as long: it took over twice as long.
    expect(r.afterTuneMs).toBeGreaterThan((r.remainingBytes / (8 * MiB)) * 1000 * 2);
    expect(vda.limits).toEqual(expect.arrayContaining([8, 2]));
    const rates = r.samples.map((p) => p.migration?.disks?.[0]?.bytesPerSec).filter((x): x is number => typeof x === 'number');
    expect(rates.length).toBeGreaterThan(0);
  }, 300_000);
});
