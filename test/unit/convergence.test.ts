/**
 * common/convergence.ts on synthetic series (shapes chosen to break naive rules) and on job statistics
 * recorded from the lab (test/fixtures/convergence/*.json: `virsh domjobinfo --rawstats` sampled every
 * ~1 s while a dirtying guest — lab/guest.ts — was migrated with --copy-storage-all --bandwidth 10).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type ConvergenceSample,
  completionDeadlineMs,
  createProgressTracker,
  downtimeAtStep,
  downtimeOf,
  downtimeRamp,
  downtimeSchedule,
  downtimeToSwitchOver,
  firstStallAtMs,
  initialProgressState,
  observeProgress,
  progressOf,
  DEFAULT_DOWNTIME_RAMP,
} from '../../common/convergence';
import { defaultMigrationTimeoutMs } from '../../common/validation';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/**
 * A pre-copy saw-tooth sampled every `stepMs`: iteration k starts at peaks[k] and falls at `bw` bytes/s
 * to troughs[k] (its last sample); iteration numbers start at `firstIteration` (default 1).
 */
function sawtooth(o: { peaks: number[]; troughs: number[]; bw: number; stepMs?: number; t0?: number; firstIteration?: number }): ConvergenceSample[] {
  const step = o.stepMs ?? 1000;
  const out: ConvergenceSample[] = [];
  let t = o.t0 ?? 0;
  o.peaks.forEach((peak, k) => {
    const trough = o.troughs[k] ?? 0;
    const iteration = (o.firstIteration ?? 1) + k;
    for (let rem = peak; rem > trough; rem -= (o.bw * step) / 1000) {
      out.push({ atMs: t, remainingBytes: Math.round(rem), iteration });
      t += step;
    }
    out.push({ atMs: t, remainingBytes: trough, iteration }); // the trough itself ends the iteration
    t += step;
  });
  return out;
}

// -------------------------------------------------------------------------------------------- progress

describe('progress tracker: no new low of the remaining data for stallMs', () => {
  it('a converging saw-tooth (troughs keep falling) never stalls, although remaining rises at every iteration', () => {
    const s = sawtooth({ peaks: [128, 60, 40, 28, 20, 14].map((x) => x * MiB), troughs: [40, 28, 20, 14, 9, 5].map((x) => x * MiB), bw: 10 * MiB });
    // half the samples show remaining going UP or staying above the last low: a rate rule would fire
    expect(firstStallAtMs(s, { stallMs: 10_000 })).toBeNull();
    const v = progressOf(s, { stallMs: 10_000 });
    expect(v.stalled).toBe(false);
    expect(v.lowestRemaining).toBe(5 * MiB);
  });

  it('a level saw-tooth stalls exactly stallMs after its last new low', () => {
    const s = sawtooth({ peaks: [128, 84, 84, 84, 84, 84].map((x) => x * MiB), troughs: [4, 4, 4, 4, 4, 4].map((x) => x * MiB), bw: 10 * MiB });
    const t = createProgressTracker({ stallMs: 20_000 });
    let stallAt: number | null = null;
    let lastLow = 0;
    for (const x of s) {
      const v = t.observe(x);
      if (v.newLow) lastLow = x.atMs;
      if (v.stalled && stallAt === null) stallAt = x.atMs;
    }
    expect(lastLow).toBe(13_000); // the first trough: 128 → 8 MiB in 12 s at 10 MiB/s, then 4 MiB
    expect(stallAt).not.toBeNull();
    expect((stallAt ?? 0) - lastLow).toBeGreaterThanOrEqual(20_000);
    expect((stallAt ?? 0) - lastLow).toBeLessThan(21_000);
  });

  it('stalls when the troughs stop falling after making progress for a while', () => {
    const s = sawtooth({
      peaks: [128, 80, 60, 50, 50, 50, 50, 50].map((x) => x * MiB),
      troughs: [30, 20, 10, 10, 10, 10, 10, 10].map((x) => x * MiB),
      bw: 10 * MiB,
    });
    const stall = firstStallAtMs(s, { stallMs: 15_000 });
    const v = progressOf(s, { stallMs: 15_000 });
    expect(v.lowestRemaining).toBe(10 * MiB);
    expect(stall).toBe((v.lastNewLowAtMs ?? 0) + 15_000);
  });

  it('the disk copy running down to 0 does not count against the memory copy', () => {
    // --copy-storage-all: memory_iteration 0 while the disks are mirrored (data_remaining = disks), then 1..
    const disk: ConvergenceSample[] = [64, 48, 32, 16, 0].map((m, i) => ({ atMs: i * 1000, remainingBytes: m * MiB, iteration: 0 }));
    const mem = sawtooth({ peaks: [128, 60, 30].map((x) => x * MiB), troughs: [40, 20, 2].map((x) => x * MiB), bw: 10 * MiB, t0: 5000 });
    expect(firstStallAtMs([...disk, ...mem], { stallMs: 10_000 })).toBeNull();
    const v = progressOf([...disk, ...mem], { stallMs: 10_000 });
    expect(v.lowestRemaining).toBe(2 * MiB);
    expect(v.state.phase).toBe('memory');
  });

  it('the clock starts at the first sample, data or not (a job stuck in set-up stalls too)', () => {
    const t = createProgressTracker({ stallMs: 5_000 });
    expect(t.observe({ atMs: 1000, remainingBytes: null }).stalled).toBe(false);
    expect(t.observe({ atMs: 5999, remainingBytes: null }).stalled).toBe(false);
    expect(t.observe({ atMs: 6000, remainingBytes: null })).toMatchObject({ stalled: true, lowestRemaining: null, sinceNewLowMs: 5000 });
    expect(t.observe({ atMs: 7000, remainingBytes: 10 })).toMatchObject({ stalled: false, newLow: true, stallAtMs: 12_000 });
  });

  it('at(): a stall is seen without a new sample (polls failing)', () => {
    const t = createProgressTracker({ stallMs: 5_000 });
    t.observe({ atMs: 0, remainingBytes: 100 });
    expect(t.at(4_999).stalled).toBe(false);
    expect(t.at(5_000)).toMatchObject({ stalled: true, sinceNewLowMs: 5_000 });
    expect(t.state().lastAtMs).toBe(0); // at() does not change the state
  });

  it('ignores samples not newer than the last one', () => {
    const t = createProgressTracker({ stallMs: 5_000 });
    t.observe({ atMs: 1000, remainingBytes: 100 });
    expect(t.observe({ atMs: 1000, remainingBytes: 1 })).toMatchObject({ ignored: true, lowestRemaining: 100 });
    expect(t.observe({ atMs: 500, remainingBytes: 1 })).toMatchObject({ ignored: true, lowestRemaining: 100 });
    expect(t.state().samples).toBe(1);
  });

  it('a margin keeps sampling noise around a level trough from counting as progress', () => {
    // troughs wobble ±1 % around 8 MiB: without a margin a slightly lower one resets the clock now and then
    const wobble = [1.0, 0.995, 1.004, 0.99, 1.01, 0.985, 1.0, 0.98, 1.002, 0.975, 1.0, 0.97];
    const withTroughs = sawtooth({ peaks: wobble.map(() => 60 * MiB), troughs: wobble.map((w) => Math.round(8 * MiB * w)), bw: 10 * MiB });
    expect(firstStallAtMs(withTroughs, { stallMs: 20_000 })).toBeNull(); // fooled by the noise
    expect(firstStallAtMs(withTroughs, { stallMs: 20_000, minImprovementRatio: 0.04 })).not.toBeNull();
    expect(firstStallAtMs(withTroughs, { stallMs: 20_000, minImprovementBytes: MiB })).not.toBeNull();
  });

  it('is a pure reducer: same samples, same verdicts; the state is plain JSON', () => {
    const s = sawtooth({ peaks: [128, 84, 84].map((x) => x * MiB), troughs: [4, 4, 4].map((x) => x * MiB), bw: 10 * MiB });
    let st = initialProgressState();
    const verdicts = s.map((x) => {
      const r = observeProgress(st, x, { stallMs: 10_000 });
      st = JSON.parse(JSON.stringify(r.state)) as typeof st; // survives a round trip through workflow state
      return r.verdict;
    });
    const again = createProgressTracker({ stallMs: 10_000 });
    expect(s.map((x) => again.observe(x))).toEqual(verdicts);
    expect(again.state()).toEqual(st);
  });

  it('a sample with data_total 0 (copy not set up: libvirt says remaining 0) is no low', () => {
    const t = createProgressTracker({ stallMs: 5_000 });
    expect(t.observe({ atMs: 0, remainingBytes: 0, totalBytes: 0, iteration: 0 })).toMatchObject({ newLow: false, lowestRemaining: null });
    expect(t.observe({ atMs: 1000, remainingBytes: 48 * MiB, totalBytes: 64 * MiB, iteration: 0 })).toMatchObject({ newLow: true });
    expect(t.observe({ atMs: 2000, remainingBytes: 32 * MiB, totalBytes: 64 * MiB, iteration: 0 }).newLow).toBe(true);
  });

  it('without totalBytes, a 0 before any data of the disk copy is no low either (libvirt set-up)', () => {
    const t = createProgressTracker({ stallMs: 5_000 });
    expect(t.observe({ atMs: 25, remainingBytes: 0, iteration: 0 })).toMatchObject({ newLow: false, lowestRemaining: null });
    expect(t.observe({ atMs: 1000, remainingBytes: 48 * MiB, iteration: 0 }).newLow).toBe(true);
    expect(t.observe({ atMs: 4000, remainingBytes: 0, iteration: 0 })).toMatchObject({ newLow: true, lowestRemaining: 0 }); // the end of the copy
    // the recorded series without data_total: a 60 s disk copy is not called stalled by a 5 s limit early on
    const noTotals = samplesOf('precopy-20mibps-bw10-never').map(({ totalBytes: _t, ...rest }) => rest);
    const diskPhase = noTotals.filter((x) => x.iteration === 0);
    expect(firstStallAtMs(diskPhase, { stallMs: 4_000 })).toBeNull();
  });

  it('interventions restart the clock and keep the lowest: a throttle rise, or one the caller notes', () => {
    const t = createProgressTracker({ stallMs: 10_000 });
    t.observe({ atMs: 0, remainingBytes: 10 * MiB, throttlePct: null });
    expect(t.observe({ atMs: 8_000, remainingBytes: 50 * MiB, throttlePct: 20 })).toMatchObject({ intervention: true, stalled: false });
    expect(t.observe({ atMs: 16_000, remainingBytes: 50 * MiB, throttlePct: 20 })).toMatchObject({
      intervention: false,
      stalled: false,
      sinceNewLowMs: 16_000,
      sinceProgressMs: 8_000,
      stallAtMs: 18_000,
    });
    expect(t.observe({ atMs: 18_000, remainingBytes: 50 * MiB, throttlePct: 10 }).stalled).toBe(true); // a fall is no rise
    expect(t.intervene(19_000)).toMatchObject({ stalled: false, lowestRemaining: 10 * MiB, stallAtMs: 29_000 });
    expect(t.at(29_000).stalled).toBe(true);
    expect(t.observe({ atMs: 30_000, remainingBytes: 9 * MiB }).newLow).toBe(true);
  });

  it('rejects bad options and samples', () => {
    expect(() => createProgressTracker({ stallMs: 1000 }).observe({ atMs: 1, remainingBytes: 1, throttlePct: 120 })).toThrow(/throttlePct/);
    expect(() => createProgressTracker({ stallMs: 1000 }).observe({ atMs: 1, remainingBytes: 1, totalBytes: -1 })).toThrow(/totalBytes/);
    expect(() => createProgressTracker({ stallMs: 0 })).toThrow(RangeError);
    expect(() => createProgressTracker({ stallMs: 1000, minImprovementRatio: 1 })).toThrow(/minImprovementRatio/);
    const t = createProgressTracker({ stallMs: 1000 });
    expect(() => t.observe({ atMs: Number.NaN, remainingBytes: 1 })).toThrow(/atMs/);
    expect(() => t.observe({ atMs: 1, remainingBytes: -1 })).toThrow(/remainingBytes/);
    expect(() => t.observe({ atMs: 1, remainingBytes: 1, iteration: 1.5 })).toThrow(/iteration/);
  });
});

// -------------------------------------------------------------------------------------------- deadline

describe('completion deadline', () => {
  it('is per GiB of RAM + disks with a floor and a cap', () => {
    expect(completionDeadlineMs({ memoryBytes: 128 * MiB, diskBytes: 64 * MiB })).toBe(120_000); // floor
    expect(completionDeadlineMs({ memoryBytes: 4 * GiB, diskBytes: 20 * GiB })).toBe(24 * 150_000);
    expect(completionDeadlineMs({ memoryBytes: 1 * GiB, diskBytes: 0, perGiBMs: 800_000 })).toBe(800_000);
    expect(completionDeadlineMs({ memoryBytes: 1024 * GiB, diskBytes: 0 })).toBe(24 * 3_600_000); // cap
    expect(completionDeadlineMs({ memoryBytes: 1.5 * GiB, diskBytes: 0, floorMs: 0 })).toBe(225_000);
  });

  it('agrees with the workflow default timeout', () => {
    for (const [m, d] of [[128 * MiB, 64 * MiB], [2 * GiB, 40 * GiB], [16 * GiB, 100 * GiB]] as const) {
      expect(completionDeadlineMs({ memoryBytes: m, diskBytes: d })).toBe(defaultMigrationTimeoutMs(m + d));
    }
  });

  it('rejects nonsense', () => {
    expect(() => completionDeadlineMs({ memoryBytes: -1, diskBytes: 0 })).toThrow(RangeError);
    expect(() => completionDeadlineMs({ memoryBytes: 1, diskBytes: Number.NaN })).toThrow(/diskBytes/);
    expect(() => completionDeadlineMs({ memoryBytes: 1, diskBytes: 0, floorMs: 10, maxMs: 5 })).toThrow(/floorMs/);
  });
});

// -------------------------------------------------------------------------------------------- downtime

describe('max-downtime ramp', () => {
  const o = { initialMs: 300, maxMs: 1000, steps: 7, stallIterations: 2 };

  it('steps evenly from initial to max', () => {
    expect(downtimeSchedule(o)).toEqual([300, 400, 500, 600, 700, 800, 900, 1000]);
    expect(downtimeSchedule({ initialMs: 50, maxMs: 500, steps: 10, stallIterations: 1 })).toEqual([
      50, 95, 140, 185, 230, 275, 320, 365, 410, 455, 500,
    ]);
    expect(downtimeAtStep(99, o)).toBe(1000);
    expect(downtimeSchedule(DEFAULT_DOWNTIME_RAMP)[0]).toBe(300);
  });

  it('raises one step per stallIterations stalled iterations, then reports exhaustion at the cap', () => {
    // iteration 1 makes the first low; 2.. are level: each one stalls
    const s = sawtooth({ peaks: [128, ...Array(20).fill(84)].map((x) => x * MiB), troughs: Array(21).fill(4 * MiB), bw: 10 * MiB });
    const r = downtimeOf(s, o);
    expect(r.raises.map((x) => x.downtimeMs)).toEqual([400, 500, 600, 700, 800, 900, 1000]);
    // raise k happens when iteration 1 + 2k ends, i.e. at the first sample of iteration 2 + 2k
    const firstOf = (it: number) => s.find((x) => x.iteration === it)?.atMs;
    expect(r.raises.map((x) => x.atMs)).toEqual([4, 6, 8, 10, 12, 14, 16].map(firstOf));
    expect(r.exhaustedAtMs).toBe(firstOf(18));
    expect(r.state).toMatchObject({ step: 7, downtimeMs: 1000, exhausted: true, iterationsEnded: 20, iterationsStalled: 19 });
  });

  it('does not raise while iterations keep making new lows, and a progressing iteration resets the count', () => {
    const converging = sawtooth({ peaks: [128, 60, 40, 28, 20].map((x) => x * MiB), troughs: [40, 28, 20, 14, 9].map((x) => x * MiB), bw: 10 * MiB });
    expect(downtimeOf(converging, o).raises).toEqual([]);
    // stalled, progress, stalled, progress …: never two stalls in a row
    const alternating = sawtooth({
      peaks: [128, 84, 84, 84, 84, 84, 84].map((x) => x * MiB),
      troughs: [20, 20, 10, 10, 5, 5, 2].map((x) => x * MiB),
      bw: 10 * MiB,
    });
    const r = downtimeOf(alternating, o);
    expect(r.raises).toEqual([]);
    expect(r.state.iterationsStalled).toBe(3);
  });

  it('the disk copy (iteration 0) is not a memory iteration and its lows do not count', () => {
    const disk: ConvergenceSample[] = [64, 32, 0].map((m, i) => ({ atMs: i * 1000, remainingBytes: m * MiB, iteration: 0 }));
    const mem = sawtooth({ peaks: [128, 60, 40].map((x) => x * MiB), troughs: [40, 28, 20].map((x) => x * MiB), bw: 10 * MiB, t0: 3000 });
    const r = downtimeOf([...disk, ...mem], o);
    expect(r.raises).toEqual([]);
    expect(r.state).toMatchObject({ iterationsEnded: 2, iterationsStalled: 0 });
  });

  it('without iteration numbers, a rise of the remaining data marks an iteration (vdsm)', () => {
    const s = sawtooth({ peaks: [128, 84, 84, 84, 84].map((x) => x * MiB), troughs: Array(5).fill(4 * MiB), bw: 10 * MiB }).map(
      ({ atMs, remainingBytes }) => ({ atMs, remainingBytes }),
    );
    const r = downtimeOf(s, o);
    // 5 iterations, 4 boundaries seen: iteration 1 made the low, 2..4 stalled (the 5th has not ended)
    expect(r.state).toMatchObject({ iterationsEnded: 4, iterationsStalled: 3, stalledInARow: 1 });
    expect(r.raises.map((x) => x.downtimeMs)).toEqual([400]);
  });

  it('an iteration jump seen in one sample is one iteration (nothing is known about the skipped ones)', () => {
    const ramp = downtimeRamp({ ...o, stallIterations: 1 });
    ramp.observe({ atMs: 0, remainingBytes: 100 * MiB, iteration: 1 });
    ramp.observe({ atMs: 1000, remainingBytes: 10 * MiB, iteration: 1 });
    const v = ramp.observe({ atMs: 2000, remainingBytes: 50 * MiB, iteration: 4 });
    expect(v).toMatchObject({ iterationEnded: true, iterationStalled: false, changed: false });
    expect(ramp.observe({ atMs: 3000, remainingBytes: 50 * MiB, iteration: 7 })).toMatchObject({
      iterationEnded: true,
      iterationStalled: true,
      changed: true,
      downtimeMs: 400,
    });
  });

  it('downtimeToSwitchOver: the estimate plus headroom when within the budget, else null', () => {
    expect(downtimeToSwitchOver(601, { maxMs: 2000 })).toBe(752);
    expect(downtimeToSwitchOver(601, { maxMs: 700 })).toBeNull();
    expect(downtimeToSwitchOver(601, { maxMs: 700, headroomRatio: 1 })).toBe(601);
    expect(downtimeToSwitchOver(0, { maxMs: 500 })).toBe(1);
    expect(downtimeToSwitchOver(null, { maxMs: 500 })).toBeNull();
    expect(() => downtimeToSwitchOver(100, { maxMs: 500, headroomRatio: 0.5 })).toThrow(/headroomRatio/);
  });

  it('rejects bad options', () => {
    expect(() => downtimeRamp({ ...o, maxMs: 200 })).toThrow(/maxMs/);
    expect(() => downtimeRamp({ ...o, steps: 0 })).toThrow(/steps/);
    expect(() => downtimeRamp({ ...o, stallIterations: 0 })).toThrow(/stallIterations/);
    expect(() => downtimeRamp({ ...o, initialMs: 0.5 })).toThrow(/initialMs/);
  });
});

// -------------------------------------------------------------------------------------------- recorded

interface RecordedSample {
  t: number;
  type: number;
  elapsedMs: number | null;
  dataTotal: number | null;
  dataRemaining: number | null;
  iteration: number | null;
  dirtyRate: number | null;
  throttle: number | null;
  expectedDowntimeMs: number | null;
}
interface Recording {
  name: string;
  description: string;
  guest: { regionMiB: number; pagesPerSec: number | 'max' };
  argv: string[];
  outcome: 'completed' | 'aborted';
  wallMs: number;
  samples: RecordedSample[];
}

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'convergence');
function recording(name: string): Recording {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.json`), 'utf8')) as Recording;
}
/**
 * Running-job samples as the workflow would feed them: libvirt's time_elapsed as the clock, data_remaining,
 * data_total, memory_iteration and (withThrottle) auto_converge_throttle.
 */
function samplesOf(name: string, withThrottle = false): ConvergenceSample[] {
  return recording(name)
    .samples.filter((s) => s.type === 2 && s.elapsedMs !== null)
    .map((s) => ({
      atMs: s.elapsedMs ?? 0,
      remainingBytes: s.dataRemaining,
      totalBytes: s.dataTotal,
      iteration: s.iteration,
      ...(withThrottle ? { throttlePct: s.throttle } : {}),
    }));
}
const endOf = (s: ConvergenceSample[]) => s[s.length - 1]?.atMs ?? 0;
const memoryStartOf = (s: ConvergenceSample[]) => s.find((x) => (x.iteration ?? 0) >= 1)?.atMs ?? 0;

const CONVERGING = ['precopy-4mibps-bw10-converges', 'precopy-8mibps-bw10-converges'];
const RESCUED = ['autoconverge-20mibps-bw10-rescued', 'autoconverge-100mibps-bw10-rescued'];
const STUCK = ['precopy-20mibps-bw10-never', 'precopy-10mibps-bw10-aborted'];

describe('recorded lab series', () => {
  it('are well formed', () => {
    const files = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(7);
    for (const f of files) {
      const name = f.replace(/\.json$/, '');
      const r = recording(name);
      expect(r.name).toBe(name);
      const s = samplesOf(name);
      expect(s.length, f).toBeGreaterThan(10);
      for (let i = 1; i < s.length; i++) expect((s[i]?.atMs ?? 0) >= (s[i - 1]?.atMs ?? 0), f).toBe(true);
      // the disk copy (iteration 0) comes first and runs to ~0 before the memory copy starts
      expect(s[0]?.iteration, f).toBe(0);
      expect(memoryStartOf(s), f).toBeGreaterThan(0);
    }
  });

  it('show the saw-tooth: remaining rises at new memory iterations, even in a migration that converges', () => {
    for (const name of ['precopy-8mibps-bw10-converges', ...STUCK]) {
      const s = samplesOf(name).filter((x) => (x.iteration ?? 0) >= 1);
      const rises = s.filter((x, i) => i > 0 && (x.remainingBytes ?? 0) > (s[i - 1]?.remainingBytes ?? 0)).length;
      expect(rises, name).toBeGreaterThanOrEqual(2);
      // a windowed rate rule ("less remaining than 10 s ago?") says "no progress" somewhere in every one
      const flat = s.some((x) => {
        const before = [...s].reverse().find((y) => y.atMs <= x.atMs - 10_000);
        return before !== undefined && (x.remainingBytes ?? 0) >= (before.remainingBytes ?? 0);
      });
      expect(flat, name).toBe(true);
    }
  });

  it.each(CONVERGING)('%s: converging pre-copy never stalls (30 s, 60 s limits)', (name) => {
    const s = samplesOf(name);
    expect(recording(name).outcome).toBe('completed');
    for (const stallMs of [30_000, 60_000]) expect(firstStallAtMs(s, { stallMs })).toBeNull();
  });

  it.each(STUCK)('%s: stalls exactly stallMs after the last new low, not during the first iterations', (name) => {
    const s = samplesOf(name);
    const stall = firstStallAtMs(s, { stallMs: 30_000 });
    expect(stall).not.toBeNull();
    const before = s.filter((x) => x.atMs < (stall ?? 0));
    const v = progressOf(before, { stallMs: 30_000 });
    expect((stall ?? 0) - (v.lastNewLowAtMs ?? 0)).toBeGreaterThanOrEqual(30_000);
    expect((stall ?? 0) - (v.lastNewLowAtMs ?? 0)).toBeLessThan(32_000); // the next ~1 s sample
    expect(stall ?? 0).toBeGreaterThan(memoryStartOf(s) + 30_000);
    expect(stall ?? 0).toBeLessThan(endOf(s));
  });

  it.each(RESCUED)('%s: auto-converge at work is not a stall when the throttle is fed in', (name) => {
    expect(recording(name).outcome).toBe('completed');
    const s = samplesOf(name, true);
    expect(s.some((x) => (x.throttlePct ?? 0) >= 90)).toBe(true);
    expect(firstStallAtMs(s, { stallMs: 30_000 })).toBeNull();
  });

  it('judged by the remaining data alone, a 60 s limit would abort what auto-converge rescues (100 MiB/s)', () => {
    const name = 'autoconverge-100mibps-bw10-rescued';
    const alone = firstStallAtMs(samplesOf(name), { stallMs: 60_000 });
    expect(alone).not.toBeNull();
    expect(endOf(samplesOf(name)) - (alone ?? 0)).toBeGreaterThan(60_000); // a minute before it completed
  });

  it('auto-converge at 99 % that still cannot keep up stalls once the throttle stops rising (400 MiB/s)', () => {
    const s = samplesOf('autoconverge-400mibps-bw10-not-rescued', true);
    const at99 = s.find((x) => (x.throttlePct ?? 0) >= 99)?.atMs ?? Number.POSITIVE_INFINITY;
    const stall = firstStallAtMs(s, { stallMs: 30_000 });
    expect(stall).not.toBeNull();
    expect(stall ?? 0).toBeGreaterThanOrEqual(at99 + 30_000);
  });

  it('post-copy (recorded): after the switch the remaining data only falls, pages are requested on demand', () => {
    const r = recording('postcopy-10mibps-bw10-switched') as Recording & { events: { t: number; what: string }[] };
    const switchedAt = (r.events.find((e) => e.what === 'migrate-postcopy')?.t ?? 0) * 1000;
    expect(switchedAt).toBeGreaterThan(0);
    const after = r.samples.filter((x) => x.type === 2 && x.t > switchedAt + 1000);
    expect(after.length).toBeGreaterThan(5);
    for (let i = 1; i < after.length; i++) expect(after[i]?.dataRemaining ?? 0).toBeLessThanOrEqual(after[i - 1]?.dataRemaining ?? 0);
    expect(after.every((x) => (x as RecordedSample & { postcopyRequests: number }).postcopyRequests > 0)).toBe(true);
    expect(r.outcome).toBe('completed');
  });

  it('QEMU\'s expected downtime says when a raise finishes the job (200 MiB/s under auto-converge)', () => {
    const r = recording('autoconverge-200mibps-bw10-downtime2000-rescued') as Recording & { events: { t: number; what: string }[] };
    expect(r.outcome).toBe('completed');
    const raisedAt = (r.events.find((e) => e.what.startsWith('migrate-setmaxdowntime'))?.t ?? 0) * 1000;
    const running = r.samples.filter((x) => x.type === 2 && x.expectedDowntimeMs !== null && (x.iteration ?? 0) >= 1);
    // before the throttle bites, the estimate is ~10 s: no raise within a 2 s budget would help
    const early = running.filter((x) => (x.throttle ?? 0) < 90 && (x.iteration ?? 0) >= 3);
    expect(early.length).toBeGreaterThan(10);
    expect(early.every((x) => downtimeToSwitchOver(x.expectedDowntimeMs, { maxMs: 2000 }) === null)).toBe(true);
    // at 99 % it settles below the budget (yet above QEMU's default 300 ms): the helper proposes a value
    const late = running.filter((x) => (x.throttle ?? 0) >= 99 && x.t < raisedAt);
    const proposals = late.map((x) => downtimeToSwitchOver(x.expectedDowntimeMs, { maxMs: 2000 })).filter((v) => v !== null);
    expect(proposals.length).toBeGreaterThan(0);
    expect(Math.min(...proposals.map(Number))).toBeGreaterThan(300);
    // and the recorded raise (to 2000) ended the migration within a few seconds
    expect(r.wallMs - raisedAt).toBeLessThan(10_000);
  });

  it('the downtime ramp raises on stuck pre-copy and stays put on a quickly converging one', () => {
    const stuck = downtimeOf(samplesOf('precopy-20mibps-bw10-never'), DEFAULT_DOWNTIME_RAMP);
    expect(stuck.raises.length).toBeGreaterThanOrEqual(1);
    expect(stuck.raises[0]?.downtimeMs).toBe(400);
    expect(stuck.state.iterationsStalled).toBeGreaterThanOrEqual(2);
    const fast = downtimeOf(samplesOf('precopy-4mibps-bw10-converges'), DEFAULT_DOWNTIME_RAMP);
    expect(fast.raises).toEqual([]);
    // 30+ iterations of a 400 MiB/s guest under auto-converge: the ramp reaches its cap and says so
    const long = downtimeOf(samplesOf('autoconverge-400mibps-bw10-not-rescued'), DEFAULT_DOWNTIME_RAMP);
    expect(long.raises.map((r) => r.downtimeMs)).toEqual(downtimeSchedule(DEFAULT_DOWNTIME_RAMP).slice(1));
    expect(long.exhaustedAtMs).not.toBeNull();
  });
});
