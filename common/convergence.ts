/**
 * Convergence control for live migrations: when to call a migration stuck, how long it may take, and how
 * far to let the switch-over downtime rise. Pure and deterministic (no clock, no I/O, no Node builtins):
 * it runs inside the workflow sandbox, fed with job statistics the migration activity samples
 * (`virsh domjobinfo`: data_remaining, memory_iteration, time).
 *
 * Three pieces, each a reducer over plain JSON state (keep the state in workflow state, show it in queries)
 * plus a small stateful wrapper for callers that prefer one:
 *
 * 1. Progress tracker — "stalled" = no NEW MINIMUM of the remaining data for `stallMs`. A copy that
 *    iterates saw-tooths: remaining falls during a memory pass and jumps back up when the next pass starts
 *    with what the guest dirtied meanwhile. Only the lowest value ever seen matters, so a saw-tooth whose
 *    troughs keep going down is progress, and one whose troughs stay level is a stall however busy it
 *    looks. This is oVirt/vdsm's `lowmark` rule and the intent of KubeVirt's `progressTimeout` (KubeVirt's
 *    older monitor compared each sample with the PREVIOUS one, which a saw-tooth satisfies forever; its
 *    newer stall detection keeps minima over a window with a 4 % margin). It is not a sampled rate:
 *    Nova removed its rate-based progress timeout after false timeouts on saw-tooth progress
 *    (bug 1644248). An optional margin makes a new low count only when it undercuts the old one by a
 *    number of bytes or a fraction, so sampling noise around a level trough is not progress.
 *    The clock starts at the first sample (a job that never reports data also stalls).
 *    Interventions restart the clock (the lowest is kept): a rise of auto-converge's throttle when the
 *    samples carry it, and whatever the caller reports with noteIntervention() (a downtime raise). Seen on
 *    the lab: auto-converge needs ~150-200 s to throttle a 20-100 MiB/s guest down at 10 MiB/s, with
 *    level troughs all along; judged by the remaining data alone, a 60 s (even 150 s) stall limit would
 *    abort migrations it was about to rescue.
 *    Feed pre-copy samples only: after a switch to post-copy the copy always finishes or fails.
 *
 * 2. Completion deadline — per GiB of RAM + disks, never below a floor (KubeVirt's
 *    `completionTimeoutPerGiB`: 150 s; Nova: 800 s), capped.
 *
 * 3. Max-downtime ramp — start at `initialMs`, raise one step each time `stallIterations` memory
 *    iterations in a row end without a new low of the remaining data, up to `maxMs` in `steps` equal
 *    steps (oVirt's convergence schedule: by stalled iteration; Nova raises by time instead). Never
 *    lowered. Once at the cap, `stallIterations` more stalled iterations set `exhausted`: the caller's cue
 *    to escalate (post-copy, abort). Iteration boundaries come from libvirt's `memory_iteration`; when a
 *    sample has none, a rise of the remaining data over the previous sample marks one (vdsm's rule).
 *
 * 4. Switch-over — downtimeToSwitchOver(): the max downtime that lets pre-copy finish now, from QEMU's own
 *    expected downtime, when that fits the caller's budget.
 *
 * All times are on the caller's clock (libvirt's time_elapsed or workflow time), the same for every call.
 */

// ------------------------------------------------------------------------------------------------ samples

/** One sample of a running migration job. */
export interface ConvergenceSample {
  /** Monotonic time of the sample, ms (workflow time, or libvirt's time_elapsed). */
  atMs: number;
  /** data_remaining (memory + disks) in bytes; null when libvirt gave none (e.g. during set-up). */
  remainingBytes: number | null;
  /** memory_iteration; null/absent when unknown (0 while only disks are being copied). */
  iteration?: number | null;
  /**
   * data_total, when known. 0 means the copy is not set up yet: libvirt then reports data_remaining 0,
   * which is no progress, so such a sample counts as one without data.
   */
  totalBytes?: number | null;
  /**
   * auto_converge_throttle (%), when the caller wants auto-converge's escalation to count: a RISE of the
   * throttle restarts the stall clock like a new low does (QEMU is still acting on the guest). Leave it out
   * to judge by the remaining data alone.
   */
  throttlePct?: number | null;
}

/** The sample's remaining data, or null when it says nothing about progress. */
export function remainingOf(s: ConvergenceSample): number | null {
  return s.totalBytes === 0 ? null : s.remainingBytes;
}

/**
 * remainingOf() for a tracker that has seen no data of this phase yet: a 0 at the start of the disk copy
 * (iteration 0) is libvirt's "not set up yet" even when the caller did not pass totalBytes. (A 0 after
 * real data is the end of the disk copy: a genuine low.)
 */
function remainingFor(s: ConvergenceSample, lowestSoFar: number | null): number | null {
  const r = remainingOf(s);
  return r === 0 && lowestSoFar === null && s.iteration === 0 ? null : r;
}

/** How much lower than the lowest so far a value must be to count as a new low. */
export interface ImprovementMargin {
  /** Default 0. */
  minImprovementBytes?: number;
  /** Fraction of the lowest so far, 0..1; default 0. The larger of the two margins applies. */
  minImprovementRatio?: number;
}

/**
 * libvirt's memory_iteration is 0 while a copy-storage migration mirrors the disks (data_* then counts the
 * disks only) and 1, 2, … once memory is being copied (data_* = memory + disks, the disks' part ~0).
 */
export type CopyPhase = 'disk' | 'memory';

export function phaseOf(s: ConvergenceSample): CopyPhase | null {
  const it = s.iteration;
  if (it === undefined || it === null) return null;
  return it === 0 ? 'disk' : 'memory';
}

function isNewLow(value: number, lowest: number | null, m: ImprovementMargin): boolean {
  if (lowest === null) return true;
  const margin = Math.max(m.minImprovementBytes ?? 0, (m.minImprovementRatio ?? 0) * lowest);
  return margin > 0 ? value <= lowest - margin : value < lowest;
}

function checkMargin(where: string, m: ImprovementMargin): void {
  const b = m.minImprovementBytes ?? 0;
  const r = m.minImprovementRatio ?? 0;
  if (!Number.isFinite(b) || b < 0) throw new RangeError(`${where}: minImprovementBytes must be >= 0, got ${b}`);
  if (!Number.isFinite(r) || r < 0 || r >= 1) throw new RangeError(`${where}: minImprovementRatio must be in [0, 1), got ${r}`);
}

function checkSample(where: string, s: ConvergenceSample): void {
  if (!Number.isFinite(s.atMs)) throw new RangeError(`${where}: atMs must be a finite number, got ${s.atMs}`);
  if (s.remainingBytes !== null && (!Number.isFinite(s.remainingBytes) || s.remainingBytes < 0)) {
    throw new RangeError(`${where}: remainingBytes must be null or >= 0, got ${s.remainingBytes}`);
  }
  const it = s.iteration;
  if (it !== undefined && it !== null && (!Number.isInteger(it) || it < 0)) {
    throw new RangeError(`${where}: iteration must be null or an integer >= 0, got ${it}`);
  }
  const total = s.totalBytes;
  if (total !== undefined && total !== null && (!Number.isFinite(total) || total < 0)) {
    throw new RangeError(`${where}: totalBytes must be null or >= 0, got ${total}`);
  }
  const th = s.throttlePct;
  if (th !== undefined && th !== null && (!Number.isFinite(th) || th < 0 || th > 100)) {
    throw new RangeError(`${where}: throttlePct must be null or 0..100, got ${th}`);
  }
}

// ------------------------------------------------------------------------------------------------ progress

export interface ProgressTrackerOptions extends ImprovementMargin {
  /** No new low for this long (ms) = stalled. KubeVirt's progressTimeout default: 150 s. */
  stallMs: number;
}

/** Plain JSON: keep it in workflow state. */
export interface ProgressState {
  samples: number;
  firstAtMs: number | null;
  lastAtMs: number | null;
  lowestRemaining: number | null;
  /** When the current lowest was seen (or the first sample's time, before any data). */
  lastNewLowAtMs: number | null;
  lastRemaining: number | null;
  /** Copy phase of the last sample that told: `disk` (memory_iteration 0) or `memory` (>= 1). */
  phase: CopyPhase | null;
  /** Highest auto-converge throttle seen (samples with throttlePct only). */
  throttlePct: number | null;
  /** Last intervention: a throttle rise, or noteIntervention() (e.g. Ferry raised the max downtime). */
  lastInterventionAtMs: number | null;
}

export interface ProgressVerdict {
  /** No new low for at least stallMs (sticky only as long as no new low arrives). */
  stalled: boolean;
  /** This sample set a new low. */
  newLow: boolean;
  /** This sample carried a throttle rise (an intervention). */
  intervention: boolean;
  /** The sample was older than (or as old as) the previous one and was ignored. */
  ignored: boolean;
  lowestRemaining: number | null;
  lastNewLowAtMs: number | null;
  lastInterventionAtMs: number | null;
  /** Time since the last new low (0 on a new low). */
  sinceNewLowMs: number;
  /** Time since the stall clock last restarted (new low or intervention). */
  sinceProgressMs: number;
  /** When the tracker calls the migration stalled if no new low (or intervention) comes first. */
  stallAtMs: number | null;
}

export const DEFAULT_PROGRESS_STALL_MS = 150_000;

export function initialProgressState(): ProgressState {
  return {
    samples: 0,
    firstAtMs: null,
    lastAtMs: null,
    lowestRemaining: null,
    lastNewLowAtMs: null,
    lastRemaining: null,
    phase: null,
    throttlePct: null,
    lastInterventionAtMs: null,
  };
}

function checkProgressOptions(o: ProgressTrackerOptions): void {
  if (!Number.isFinite(o.stallMs) || o.stallMs <= 0) throw new RangeError(`progress tracker: stallMs must be > 0, got ${o.stallMs}`);
  checkMargin('progress tracker', o);
}

function progressVerdict(
  s: ProgressState,
  o: ProgressTrackerOptions,
  flags: { newLow?: boolean; intervention?: boolean; ignored?: boolean } = {},
): ProgressVerdict {
  const clock =
    s.lastNewLowAtMs === null ? null : Math.max(s.lastNewLowAtMs, s.lastInterventionAtMs ?? Number.NEGATIVE_INFINITY);
  const since = (from: number | null) => (s.lastAtMs !== null && from !== null ? Math.max(0, s.lastAtMs - from) : 0);
  return {
    stalled: clock !== null && since(clock) >= o.stallMs,
    newLow: flags.newLow ?? false,
    intervention: flags.intervention ?? false,
    ignored: flags.ignored ?? false,
    lowestRemaining: s.lowestRemaining,
    lastNewLowAtMs: s.lastNewLowAtMs,
    lastInterventionAtMs: s.lastInterventionAtMs,
    sinceNewLowMs: since(s.lastNewLowAtMs),
    sinceProgressMs: since(clock),
    stallAtMs: clock === null ? null : clock + o.stallMs,
  };
}

/** One step of the progress tracker: the new state and the verdict after `sample`. */
export function observeProgress(
  state: ProgressState,
  sample: ConvergenceSample,
  o: ProgressTrackerOptions,
): { state: ProgressState; verdict: ProgressVerdict } {
  checkProgressOptions(o);
  checkSample('progress tracker', sample);
  if (state.lastAtMs !== null && sample.atMs <= state.lastAtMs) {
    return { state, verdict: progressVerdict(state, o, { ignored: true }) };
  }
  const s: ProgressState = { ...state, samples: state.samples + 1, lastAtMs: sample.atMs };
  if (s.firstAtMs === null) s.firstAtMs = sample.atMs;
  if (s.lastNewLowAtMs === null) s.lastNewLowAtMs = sample.atMs; // the clock starts with the first sample
  const phase = phaseOf(sample);
  if (phase !== null) {
    // With --copy-storage-all, data_remaining runs down to ~0 over the disk copy, then jumps to the whole
    // RAM when the memory copy starts: the lows of the disk copy say nothing about the memory copy.
    if (phase === 'memory' && s.phase === 'disk') s.lowestRemaining = null;
    s.phase = phase;
  }
  const remaining = remainingFor(sample, s.lowestRemaining);
  s.lastRemaining = remaining;
  let newLow = false;
  if (remaining !== null && isNewLow(remaining, s.lowestRemaining, o)) {
    s.lowestRemaining = remaining;
    s.lastNewLowAtMs = sample.atMs;
    newLow = true;
  }
  let intervention = false;
  const th = sample.throttlePct;
  if (th !== undefined && th !== null) {
    if (th > (s.throttlePct ?? 0)) {
      s.lastInterventionAtMs = sample.atMs;
      intervention = true;
    }
    s.throttlePct = Math.max(th, s.throttlePct ?? 0);
  }
  return { state: s, verdict: progressVerdict(s, o, { newLow, intervention }) };
}

/**
 * Records an intervention at `atMs` (e.g. Ferry raised the max downtime or the bandwidth): the stall clock
 * restarts, the lowest remaining is kept. Same clock as the samples.
 */
export function noteIntervention(state: ProgressState, atMs: number): ProgressState {
  if (!Number.isFinite(atMs)) throw new RangeError(`progress tracker: atMs must be finite, got ${atMs}`);
  const s = { ...state, lastInterventionAtMs: Math.max(atMs, state.lastInterventionAtMs ?? atMs) };
  if (s.lastNewLowAtMs === null) s.lastNewLowAtMs = atMs;
  if (s.firstAtMs === null) s.firstAtMs = atMs;
  if (s.lastAtMs === null || atMs > s.lastAtMs) s.lastAtMs = atMs;
  return s;
}

export interface ProgressTracker {
  observe(sample: ConvergenceSample): ProgressVerdict;
  /** The verdict at a later time without a new sample (e.g. when a poll failed): stalls still happen. */
  at(atMs: number): ProgressVerdict;
  /** See noteIntervention(). */
  intervene(atMs: number): ProgressVerdict;
  state(): ProgressState;
}

export function createProgressTracker(o: ProgressTrackerOptions, from: ProgressState = initialProgressState()): ProgressTracker {
  checkProgressOptions(o);
  let st = from;
  return {
    observe(sample) {
      const r = observeProgress(st, sample, o);
      st = r.state;
      return r.verdict;
    },
    at(atMs) {
      if (!Number.isFinite(atMs)) throw new RangeError(`progress tracker: atMs must be finite, got ${atMs}`);
      const later = st.lastAtMs !== null && atMs > st.lastAtMs ? { ...st, lastAtMs: atMs } : st;
      return progressVerdict(later, o);
    },
    intervene(atMs) {
      st = noteIntervention(st, atMs);
      return progressVerdict(st, o, { intervention: true });
    },
    state: () => st,
  };
}

/** The tracker's verdict after a whole series (replays, tests). */
export function progressOf(samples: readonly ConvergenceSample[], o: ProgressTrackerOptions): ProgressVerdict & { state: ProgressState } {
  let st = initialProgressState();
  let v = progressVerdict(st, o);
  for (const s of samples) ({ state: st, verdict: v } = observeProgress(st, s, o));
  return { ...v, state: st };
}

/** The time of the first sample at which the tracker calls the series stalled, or null. */
export function firstStallAtMs(samples: readonly ConvergenceSample[], o: ProgressTrackerOptions): number | null {
  let st = initialProgressState();
  for (const s of samples) {
    const r = observeProgress(st, s, o);
    st = r.state;
    if (r.verdict.stalled) return s.atMs;
  }
  return null;
}

// ------------------------------------------------------------------------------------------------ deadline

export interface CompletionDeadlineOptions {
  /** Guest RAM in bytes. */
  memoryBytes: number;
  /** Sum of the virtual sizes of the disks copied (0 with shared storage). */
  diskBytes: number;
  /** Default 150 s per GiB (KubeVirt). */
  perGiBMs?: number;
  /** Default 2 min. */
  floorMs?: number;
  /** Default 24 h. */
  maxMs?: number;
}

export const DEFAULT_COMPLETION_PER_GIB_MS = 150_000;
export const DEFAULT_COMPLETION_FLOOR_MS = 120_000;
export const DEFAULT_COMPLETION_MAX_MS = 24 * 3_600_000;

/** How long the whole migration may take: per GiB of RAM + disks, at least the floor, at most the cap. */
export function completionDeadlineMs(o: CompletionDeadlineOptions): number {
  const perGiB = o.perGiBMs ?? DEFAULT_COMPLETION_PER_GIB_MS;
  const floor = o.floorMs ?? DEFAULT_COMPLETION_FLOOR_MS;
  const max = o.maxMs ?? DEFAULT_COMPLETION_MAX_MS;
  for (const [k, v] of [
    ['memoryBytes', o.memoryBytes],
    ['diskBytes', o.diskBytes],
    ['perGiBMs', perGiB],
    ['floorMs', floor],
    ['maxMs', max],
  ] as const) {
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`completion deadline: ${k} must be a finite number >= 0, got ${v}`);
  }
  if (floor > max) throw new RangeError(`completion deadline: floorMs ${floor} exceeds maxMs ${max}`);
  const gib = (o.memoryBytes + o.diskBytes) / 1024 ** 3;
  return Math.min(max, Math.max(floor, Math.ceil(gib * perGiB)));
}

/** What a passed deadline (completion or progress) does: post-copy when the migration allows it and asks for it, else abort. */
export function deadlineAction(policy: { postCopy: boolean; onDeadline: 'abort' | 'post-copy' }): 'abort' | 'post-copy' {
  return policy.postCopy && policy.onDeadline === 'post-copy' ? 'post-copy' : 'abort';
}

// ------------------------------------------------------------------------------------------------ downtime

export interface DowntimeRampOptions extends ImprovementMargin {
  /** First max downtime, ms (QEMU's default is 300). */
  initialMs: number;
  /** The cap, ms (>= initialMs). */
  maxMs: number;
  /** Number of raises from initialMs to maxMs (>= 1); step k is initial + (max - initial) * k / steps. */
  steps: number;
  /** Consecutive stalled memory iterations per raise (>= 1). */
  stallIterations: number;
}

/** Plain JSON: keep it in workflow state. */
export interface DowntimeRampState {
  step: number;
  downtimeMs: number;
  /** Iteration seen in the last sample (null before any, or when samples carry none). */
  iteration: number | null;
  lastRemaining: number | null;
  /** Lowest remaining over the iterations that have ended. */
  lowestBefore: number | null;
  /** Lowest remaining in the current iteration so far. */
  iterationLowest: number | null;
  /** Stalled iterations in a row since the last raise or the last progressing iteration. */
  stalledInARow: number;
  /** Iterations that ended, and how many of them stalled (for reports). */
  iterationsEnded: number;
  iterationsStalled: number;
  exhausted: boolean;
}

export interface DowntimeVerdict {
  downtimeMs: number;
  step: number;
  /** The sample raised the downtime: apply it (virsh migrate-setmaxdowntime). */
  changed: boolean;
  /** The sample ended an iteration, and whether that iteration stalled. */
  iterationEnded: boolean;
  iterationStalled: boolean;
  stalledInARow: number;
  /** At the cap and still stalling: escalate (post-copy, abort). */
  exhausted: boolean;
}

export const DEFAULT_DOWNTIME_RAMP: DowntimeRampOptions = { initialMs: 300, maxMs: 1_000, steps: 7, stallIterations: 2 };

function checkRampOptions(o: DowntimeRampOptions): void {
  if (!Number.isInteger(o.initialMs) || o.initialMs < 1) throw new RangeError(`downtime ramp: initialMs must be an integer >= 1, got ${o.initialMs}`);
  if (!Number.isInteger(o.maxMs) || o.maxMs < o.initialMs) {
    throw new RangeError(`downtime ramp: maxMs must be an integer >= initialMs (${o.initialMs}), got ${o.maxMs}`);
  }
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new RangeError(`downtime ramp: steps must be an integer >= 1, got ${o.steps}`);
  if (!Number.isInteger(o.stallIterations) || o.stallIterations < 1) {
    throw new RangeError(`downtime ramp: stallIterations must be an integer >= 1, got ${o.stallIterations}`);
  }
  checkMargin('downtime ramp', o);
}

/** The max downtime at step k (0..steps), whole ms. */
export function downtimeAtStep(step: number, o: DowntimeRampOptions): number {
  checkRampOptions(o);
  const k = Math.max(0, Math.min(o.steps, Math.floor(step)));
  return Math.round(o.initialMs + ((o.maxMs - o.initialMs) * k) / o.steps);
}

/** Every value of the ramp, step 0..steps. */
export function downtimeSchedule(o: DowntimeRampOptions): number[] {
  return Array.from({ length: o.steps + 1 }, (_, k) => downtimeAtStep(k, o));
}

export function initialDowntimeState(o: DowntimeRampOptions): DowntimeRampState {
  checkRampOptions(o);
  return {
    step: 0,
    downtimeMs: o.initialMs,
    iteration: null,
    lastRemaining: null,
    lowestBefore: null,
    iterationLowest: null,
    stalledInARow: 0,
    iterationsEnded: 0,
    iterationsStalled: 0,
    exhausted: false,
  };
}

/** One step of the ramp: the new state and what to do after `sample`. */
export function observeDowntime(
  state: DowntimeRampState,
  sample: ConvergenceSample,
  o: DowntimeRampOptions,
): { state: DowntimeRampState; verdict: DowntimeVerdict } {
  checkRampOptions(o);
  checkSample('downtime ramp', sample);
  const s: DowntimeRampState = { ...state };
  const rem = remainingOf(sample);
  const it = sample.iteration ?? null;
  // Did an iteration end between the previous sample and this one?
  let ended = false;
  if (it !== null && s.iteration !== null) ended = it > s.iteration;
  else if (it === null && rem !== null && s.lastRemaining !== null) ended = rem > s.lastRemaining;
  // Iteration 0 is the disk copy (no memory pass yet): its end is not a memory iteration.
  // (its lows are about the disks, so they do not count either).
  const memoryIterationEnded = ended && !(it !== null && s.iteration === 0);
  let stalled = false;
  let changed = false;
  if (ended) {
    const low = s.iterationLowest;
    const progressed = low !== null && isNewLow(low, s.lowestBefore, o);
    if (memoryIterationEnded) {
      if (low !== null && (s.lowestBefore === null || low < s.lowestBefore)) s.lowestBefore = low;
      s.iterationsEnded += 1;
      if (progressed) {
        s.stalledInARow = 0;
      } else {
        stalled = true;
        s.iterationsStalled += 1;
        s.stalledInARow += 1;
        if (s.stalledInARow >= o.stallIterations) {
          s.stalledInARow = 0;
          if (s.step < o.steps) {
            s.step += 1;
            const next = downtimeAtStep(s.step, o);
            changed = next !== s.downtimeMs;
            s.downtimeMs = next;
          } else {
            s.exhausted = true;
          }
        }
      }
    }
    s.iterationLowest = null;
  }
  if (rem !== null && (s.iterationLowest === null || rem < s.iterationLowest)) s.iterationLowest = rem;
  if (it !== null) s.iteration = it;
  if (rem !== null) s.lastRemaining = rem;
  return {
    state: s,
    verdict: {
      downtimeMs: s.downtimeMs,
      step: s.step,
      changed,
      iterationEnded: memoryIterationEnded,
      iterationStalled: stalled,
      stalledInARow: s.stalledInARow,
      exhausted: s.exhausted,
    },
  };
}

export interface DowntimeRamp {
  observe(sample: ConvergenceSample): DowntimeVerdict;
  state(): DowntimeRampState;
}

/** The ramp as an object: `observe(sample)` → the max downtime to use now (apply it when `changed`). */
export function downtimeRamp(o: DowntimeRampOptions, from?: DowntimeRampState): DowntimeRamp {
  let st = from ?? initialDowntimeState(o);
  return {
    observe(sample) {
      const r = observeDowntime(st, sample, o);
      st = r.state;
      return r.verdict;
    },
    state: () => st,
  };
}

/** The ramp after a whole series (replays, tests): final state and every raise with its sample time. */
export function downtimeOf(
  samples: readonly ConvergenceSample[],
  o: DowntimeRampOptions,
): { state: DowntimeRampState; raises: { atMs: number; downtimeMs: number; step: number }[]; exhaustedAtMs: number | null } {
  let st = initialDowntimeState(o);
  const raises: { atMs: number; downtimeMs: number; step: number }[] = [];
  let exhaustedAtMs: number | null = null;
  for (const s of samples) {
    const r = observeDowntime(st, s, o);
    st = r.state;
    if (r.verdict.changed) raises.push({ atMs: s.atMs, downtimeMs: r.verdict.downtimeMs, step: r.verdict.step });
    if (r.verdict.exhausted && exhaustedAtMs === null) exhaustedAtMs = s.atMs;
  }
  return { state: st, raises, exhaustedAtMs };
}

// ------------------------------------------------------------------------------------------------ switch-over

export interface SwitchOverOptions {
  /** The most downtime the caller accepts, ms. */
  maxMs: number;
  /** Margin over QEMU's estimate, default 1.25 (the estimate moves between samples). */
  headroomRatio?: number;
}

/**
 * The max downtime that lets pre-copy finish now, from QEMU's own estimate of the downtime it would need
 * (domjobinfo's `downtime` / "Expected downtime" while the job runs: the remaining dirty data over the
 * measured bandwidth), or null when that exceeds the budget. KubeVirt's stall handling does the same with
 * its "implied downtime". Seen on the lab: a 200 MiB/s guest under auto-converge at 99 % sat at an expected
 * 601 ms for minutes with the default 300 ms limit; raising the limit completed it at once (34 ms actual).
 */
export function downtimeToSwitchOver(expectedDowntimeMs: number | null, o: SwitchOverOptions): number | null {
  const headroom = o.headroomRatio ?? 1.25;
  if (!Number.isFinite(o.maxMs) || o.maxMs < 1) throw new RangeError(`switch-over: maxMs must be >= 1, got ${o.maxMs}`);
  if (!Number.isFinite(headroom) || headroom < 1) throw new RangeError(`switch-over: headroomRatio must be >= 1, got ${headroom}`);
  if (expectedDowntimeMs === null || !Number.isFinite(expectedDowntimeMs) || expectedDowntimeMs < 0) return null;
  const want = Math.max(1, Math.ceil(expectedDowntimeMs * headroom));
  return want <= o.maxMs ? want : null;
}
