/**
 * Host evacuation: its input (one object, as the CLI, schedules and the Web UI pass it), progress and result.
 * Sandbox-safe.
 */
import { z } from 'zod';
import type { Phase } from './migration';
import type { HostState, VmState } from './types';
import { DEFAULT_LIMITS, MAX_LIMIT, type MigrationLimits } from './limits';
import { parseDuration } from './durations';
import { isHostRef } from './names';
import { InputError, MAX_TIMEOUT_MS, validateMigrationInput, type LiveMigrationOptions } from './validation';

export interface EvacuateHostInput {
  /** Host to drain (name or address). It is put in maintenance and never chosen as a target. */
  host: string;
  /** Migrations this evacuation runs at once (default: the outbound limit per host). */
  maxParallel?: number;
  /** Concurrency limits for every migration (defaults 2 out / 1 in / 5 in the fleet). */
  limits?: Partial<MigrationLimits>;
  /** Options for each VM's migration. */
  migration?: { createAttempts?: number; timeout?: string; bandwidthMiBps?: number; options?: LiveMigrationOptions };
  /** Deadline of the whole evacuation ("2h"): when it passes, running migrations are cancelled and compensate. */
  deadline?: string;
  /** Leave stopped VMs where they are (by default they move cold, running and paused ones live). */
  skipStopped?: boolean;
}

export interface EvacuateHostsInput extends Omit<EvacuateHostInput, 'host'> {
  /** Hosts evacuated one after another (a scheduled batch). */
  hosts: string[];
}

export type VmEvacuationStatus = 'pending' | 'running' | 'migrated' | 'failed' | 'skipped' | 'cancelled';

export interface VmEvacuation {
  vm: string;
  vmUuid: string;
  status: VmEvacuationStatus;
  workflowId: string;
  /** The child migration's phase (live). */
  phase: Phase | null;
  target: string | null;
  waitingFor: string | null;
  reason: string | null;
  startedAt: string | null;
  endedAt: string | null;
  /** When the child held its target claim: its in-flight interval. */
  claimedAt: string | null;
  releasedAt: string | null;
  durationMs: number | null;
  downtimeMs: number | null;
}

export interface EvacuationProgress {
  host: string;
  state: 'starting' | 'running' | 'paused' | 'cancelling' | 'done';
  maxParallel: number;
  deadline: string | null;
  vms: VmEvacuation[];
  counts: Record<VmEvacuationStatus, number>;
}

export interface EvacuationResult {
  host: string;
  /** The host's state at the end (maintenance after a drain; as chosen after a cancel). */
  hostState: HostState;
  /** Every VM left the host (none remains on it in the inventory). */
  allLeft: boolean;
  remainingOnHost: string[];
  cancelled: boolean;
  vms: VmEvacuation[];
  durationMs: number;
}

/**
 * The most migrations of an evacuation that held a target claim at the same moment, from their recorded
 * in-flight intervals (claimedAt → releasedAt). Evacuation reports, tests and benchmarks check limits with it.
 */
export function peakInFlight(vms: readonly Pick<VmEvacuation, 'claimedAt' | 'releasedAt'>[]): number {
  const edges: [number, number][] = [];
  for (const v of vms) {
    if (v.claimedAt && v.releasedAt) edges.push([Date.parse(v.claimedAt), 1], [Date.parse(v.releasedAt), -1]);
  }
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]); // a release before a claim at the same instant
  let now = 0;
  let peak = 0;
  for (const [, d] of edges) peak = Math.max(peak, (now += d));
  return peak;
}

export interface EvacuationRequest {
  host: string;
  maxParallel: number;
  limits: MigrationLimits;
  migration: NonNullable<EvacuateHostInput['migration']>;
  deadlineMs: number | null;
  skipStopped: boolean;
}

const migrationOptions = z
  .strictObject({
    createAttempts: z.unknown().optional(),
    timeout: z.unknown().optional(),
    bandwidthMiBps: z.unknown().optional(),
    options: z.unknown().optional(),
  })
  .optional();

const schema = z.strictObject({
  host: z.string({ error: 'host must be a host name or address' }).refine(isHostRef, { message: 'host must be a host name or address' }),
  maxParallel: z.number({ error: 'maxParallel must be a whole number' }).int('maxParallel must be a whole number').min(1).max(MAX_LIMIT).optional(),
  limits: z.unknown().optional(),
  migration: migrationOptions,
  deadline: z.string({ error: 'deadline must be a duration like "2h"' }).optional(),
  skipStopped: z.boolean({ error: 'skipStopped must be true or false' }).optional(),
});

const PROBE_UUID = '00000000-0000-4000-8000-000000000000';

/** Validates an evacuation (including the per-VM migration options, checked once up front). */
export function validateEvacuation(input: unknown): EvacuationRequest {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new InputError(['the input must be one JSON object like {"host": "ferry-h1"}']);
  }
  const parsed = schema.safeParse(input);
  const problems: string[] = [];
  if (!parsed.success) {
    for (const i of parsed.error.issues) {
      const where = i.path.join('.');
      problems.push(i.code === 'unrecognized_keys' ? `unknown option ${i.keys.map((k) => (where ? `${where}.${k}` : k)).join(', ')}` : i.message.startsWith(where) ? i.message : `${where}: ${i.message}`);
    }
    throw new InputError(problems);
  }
  const v = parsed.data;
  let deadlineMs: number | null = null;
  if (v.deadline !== undefined) {
    deadlineMs = parseDuration(v.deadline);
    if (deadlineMs === null || deadlineMs < 1_000 || deadlineMs > MAX_TIMEOUT_MS) {
      throw new InputError([`deadline "${v.deadline}" is not a duration between 1s and 24h like "2h"`]);
    }
  }
  // The per-VM options and limits are the liveMigration's own: validate them with its rules.
  const migration = (v.migration ?? {}) as NonNullable<EvacuateHostInput['migration']>;
  const probe = validateMigrationInput({
    sourceHost: 'probe',
    vmName: 'probe',
    vmUuid: PROBE_UUID,
    ...migration,
    ...(v.limits !== undefined ? { limits: v.limits } : {}),
  });
  return {
    host: v.host,
    maxParallel: v.maxParallel ?? probe.limits.maxOutboundPerHost,
    limits: probe.limits,
    migration,
    deadlineMs,
    skipStopped: v.skipStopped === true,
  };
}

/**
 * Why an evacuation leaves this VM where it is, or null when it moves it: running and paused VMs live, stopped
 * ones cold (unless `skipStopped`). `movesStopped` false: a run recorded before, which moved running VMs only.
 */
export function evacuationSkip(state: VmState, skipStopped: boolean, movesStopped: boolean): string | null {
  if (!movesStopped) return state === 'running' ? null : `the VM is ${state}: live migration moves running VMs only (move it cold or start it)`;
  if (state === 'running' || state === 'paused') return null;
  if (state === 'stopped') return skipStopped ? 'the VM is stopped and this evacuation skips stopped VMs (skipStopped)' : null;
  return `the VM is ${state}: run \`ferry inventory sync\` to refresh its state, then evacuate again`;
}
