/**
 * Validation of the liveMigration input (step 1 of the workflow, also run by the client before it starts one).
 * Pure and deterministic: safe inside the workflow sandbox.
 */
import { z } from 'zod';
import { parseDuration } from './durations';
import { isHostRef, isUuid, isVmName } from './names';
import { DEFAULT_LIMITS, MAX_LIMIT, type MigrationLimits } from './limits';
import { completionDeadlineMs, DEFAULT_COMPLETION_FLOOR_MS, DEFAULT_COMPLETION_MAX_MS, DEFAULT_COMPLETION_PER_GIB_MS } from './convergence';

// The workflow sandbox forbids nothing here, but code generation is not needed: keep zod on its plain path.
z.config({ jitless: true });

export const DEFAULT_CREATE_ATTEMPTS = 3;
export const MAX_CREATE_ATTEMPTS = 10;
/** KubeVirt's completion timeout per GiB of data (RAM + disks); Nova uses 800 s. */
export const DEFAULT_TIMEOUT_PER_GIB_MS = DEFAULT_COMPLETION_PER_GIB_MS;
export const DEFAULT_TIMEOUT_FLOOR_MS = DEFAULT_COMPLETION_FLOOR_MS;
export const MIN_TIMEOUT_MS = 1_000;
export const MAX_TIMEOUT_MS = DEFAULT_COMPLETION_MAX_MS;
export const DEFAULT_CREATE_RETRY_INTERVAL_MS = 1_000;
export const MAX_BANDWIDTH_MIBPS = 100_000;
/** How long a migration may wait for a free slot (limits, busy targets) before it gives up. */
export const DEFAULT_QUEUE_TIMEOUT_MS = 30 * 60_000;

/** The workflow's single argument, as the CLI, the client and the Web UI's start form pass it. */
export interface LiveMigrationInput {
  /** Address (or inventory name) of the host the VM runs on. */
  sourceHost: string;
  vmName: string;
  vmUuid: string;
  /** Fixed target host (name or address); it is still checked. */
  targetHost?: string;
  /** Failure threshold of each create task = its retry policy's maximumAttempts. Default 3. */
  createAttempts?: number;
  /** Migration deadline, e.g. "90s", "10m". Default: max(floor, per-GiB × (memory + disks)). */
  timeout?: string;
  /** Migration bandwidth limit in MiB/s. Default: unlimited. */
  bandwidthMiBps?: number;
  /**
   * Encrypt the migration stream (libvirt's --tls: QEMU's migration TLS, memory and disk copies). Default: on when
   * both hosts are qemu+tls hosts (or requireSecure), else off. A pair of hosts that cannot is refused before
   * anything is created (common/security.ts). The result's `streamEncrypted` says what happened.
   */
  encryptStream?: boolean;
  /** Refuse source and target hosts reached over plain qemu+tcp, and encrypt the stream. Default false. */
  requireSecure?: boolean;
  /** Concurrency limits (defaults 2 outbound per host, 1 inbound per host, 5 in the fleet). */
  limits?: Partial<MigrationLimits>;
  /** Controls for migrations of busy VMs that may not converge. */
  convergence?: ConvergenceInput;
  options?: LiveMigrationOptions;
}

/** What to do when the completion timeout or the progress timeout passes. */
export type DeadlineAction = 'abort' | 'post-copy';

export interface ConvergenceInput {
  /** QEMU throttles the guest's vCPUs while memory iterations do not converge. Default off. */
  autoConverge?: boolean;
  /** Allow switching to post-copy (on a deadline with onDeadline "post-copy", or by the tune update). Default off. */
  postCopy?: boolean;
  /**
   * Copied disks: every guest write also goes to the target before the guest sees it complete (libvirt's
   * `--copy-storage-synchronous-writes`, QEMU's write-blocking mirror), so a guest writing faster than the
   * bandwidth cannot keep the disk copy from converging; its writes slow down to the copy's pace instead. Default off.
   */
  syncDiskWrites?: boolean;
  /** Initial maximum downtime of the switch-over, ms. Default libvirt's (300). */
  maxDowntimeMs?: number;
  /** Raise the max downtime in steps while memory iterations stall (never lowered). */
  maxDowntimeRamp?: { maxMs: number; steps?: number; stallIterations?: number };
  /** Progress deadline: no new minimum of the remaining data for this long. Default "150s" (KubeVirt). */
  progressTimeout?: string;
  /** What a passed deadline (completion or progress) does: "abort" (default) or "post-copy" (if allowed, else abort). */
  onDeadline?: DeadlineAction;
}

/** The normalised convergence controls. */
export interface ConvergencePolicy {
  autoConverge: boolean;
  postCopy: boolean;
  syncDiskWrites: boolean;
  maxDowntimeMs: number | null;
  ramp: { initialMs: number; maxMs: number; steps: number; stallIterations: number } | null;
  progressTimeoutMs: number;
  onDeadline: DeadlineAction;
}

export const DEFAULT_PROGRESS_TIMEOUT_MS = 150_000;
export const LIBVIRT_DEFAULT_MAX_DOWNTIME_MS = 300;
export const MAX_DOWNTIME_LIMIT_MS = 60_000;

export interface LiveMigrationOptions {
  /** Leave the source's disks, pool and directory in place after success. Default false. */
  keepSourceStorage?: boolean;
  /** First retry interval of the create tasks (doubles each retry, at most 30 s). Default "1s". */
  createRetryInterval?: string;
  /** Default-timeout parameters. Defaults "150s" per GiB, floor "2m". */
  timeoutPerGiB?: string;
  timeoutFloor?: string;
  /** How long to wait for a slot when limits are reached or targets are busy. Default "30m". */
  queueTimeout?: string;
}

/** The validated, normalised request the workflow works with. */
export interface MigrationRequest {
  sourceHost: string;
  vmName: string;
  vmUuid: string;
  targetHost: string | null;
  createAttempts: number;
  /** null: derive from the VM's size once its disks are known. */
  timeoutMs: number | null;
  bandwidthMiBps: number | null;
  /** null: the hosts' default (common/security.ts). */
  encryptStream: boolean | null;
  requireSecure: boolean;
  keepSourceStorage: boolean;
  createRetryIntervalMs: number;
  timeoutPerGiBMs: number;
  timeoutFloorMs: number;
  limits: MigrationLimits;
  queueTimeoutMs: number;
  convergence: ConvergencePolicy;
}

function duration(what: string, minMs: number, maxMs: number) {
  return z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === null) {
      ctx.addIssue({ code: 'custom', message: `${what} "${text}" is not a duration like "90s", "10m" or "1h30m"` });
      return z.NEVER;
    }
    if (ms < minMs || ms > maxMs) {
      ctx.addIssue({ code: 'custom', message: `${what} ${text} is out of range (${minMs / 1000} s to ${maxMs / 1000} s)` });
      return z.NEVER;
    }
    return ms;
  });
}

const limit = (what: string) =>
  z
    .number({ error: `${what} must be a whole number` })
    .int(`${what} must be a whole number`)
    .min(1, `${what} must be at least 1`)
    .max(MAX_LIMIT, `${what} must be at most ${MAX_LIMIT}`);

const downtime = (what: string) =>
  z
    .number({ error: `${what} must be a whole number of ms` })
    .int(`${what} must be a whole number of ms`)
    .min(1, `${what} must be at least 1`)
    .max(MAX_DOWNTIME_LIMIT_MS, `${what} must be at most ${MAX_DOWNTIME_LIMIT_MS}`);

const hostRef = (what: string) =>
  z
    .string({ error: `${what} must be a host name or address` })
    .refine(isHostRef, { message: `${what} must be a host name or address (letters, digits, ".", "-", "_", ":")` });

const schema = z
  .strictObject({
    sourceHost: hostRef('sourceHost'),
    vmName: z.string({ error: 'vmName must be a string' }).refine(isVmName, {
      message: 'vmName must be 1-64 characters of letters, digits, "_", "." and "-", starting with a letter or digit',
    }),
    vmUuid: z
      .string({ error: 'vmUuid must be a string' })
      .refine(isUuid, { message: 'vmUuid must be a UUID like 6f1c0b5e-8d2a-4c11-9a5e-2b7d3c4e5f60' }),
    targetHost: hostRef('targetHost').optional(),
    createAttempts: z
      .number({ error: 'createAttempts must be a whole number' })
      .int('createAttempts must be a whole number')
      .min(1, 'createAttempts must be at least 1')
      .max(MAX_CREATE_ATTEMPTS, `createAttempts must be at most ${MAX_CREATE_ATTEMPTS}`)
      .optional(),
    timeout: duration('timeout', MIN_TIMEOUT_MS, MAX_TIMEOUT_MS).optional(),
    bandwidthMiBps: z
      .number({ error: 'bandwidthMiBps must be a whole number of MiB/s' })
      .int('bandwidthMiBps must be a whole number of MiB/s')
      .min(1, 'bandwidthMiBps must be at least 1')
      .max(MAX_BANDWIDTH_MIBPS, `bandwidthMiBps must be at most ${MAX_BANDWIDTH_MIBPS}`)
      .optional(),
    encryptStream: z.boolean({ error: 'encryptStream must be true or false' }).optional(),
    requireSecure: z.boolean({ error: 'requireSecure must be true or false' }).optional(),
    limits: z
      .strictObject({
        maxOutboundPerHost: limit('limits.maxOutboundPerHost').optional(),
        maxInboundPerHost: limit('limits.maxInboundPerHost').optional(),
        maxInFlight: limit('limits.maxInFlight').optional(),
      })
      .optional(),
    convergence: z
      .strictObject({
        autoConverge: z.boolean({ error: 'convergence.autoConverge must be true or false' }).optional(),
        postCopy: z.boolean({ error: 'convergence.postCopy must be true or false' }).optional(),
        syncDiskWrites: z.boolean({ error: 'convergence.syncDiskWrites must be true or false' }).optional(),
        maxDowntimeMs: downtime('convergence.maxDowntimeMs').optional(),
        maxDowntimeRamp: z
          .strictObject({
            maxMs: downtime('convergence.maxDowntimeRamp.maxMs'),
            steps: z.number().int().min(1).max(100).optional(),
            stallIterations: z.number().int().min(1).max(100).optional(),
          })
          .optional(),
        progressTimeout: duration('convergence.progressTimeout', 1_000, MAX_TIMEOUT_MS).optional(),
        onDeadline: z.enum(['abort', 'post-copy'], { error: 'convergence.onDeadline must be "abort" or "post-copy"' }).optional(),
      })
      .optional(),
    options: z
      .strictObject({
        keepSourceStorage: z.boolean().optional(),
        createRetryInterval: duration('options.createRetryInterval', 100, 300_000).optional(),
        timeoutPerGiB: duration('options.timeoutPerGiB', 1_000, 3_600_000).optional(),
        timeoutFloor: duration('options.timeoutFloor', MIN_TIMEOUT_MS, MAX_TIMEOUT_MS).optional(),
        queueTimeout: duration('options.queueTimeout', 1_000, MAX_TIMEOUT_MS).optional(),
      })
      .optional(),
  })
  .refine((v) => !(v.convergence?.maxDowntimeRamp && v.convergence.maxDowntimeRamp.maxMs < (v.convergence.maxDowntimeMs ?? LIBVIRT_DEFAULT_MAX_DOWNTIME_MS)), {
    message: 'convergence.maxDowntimeRamp.maxMs must be at least the initial max downtime',
    path: ['convergence', 'maxDowntimeRamp', 'maxMs'],
  })
  .refine((v) => !(v.requireSecure === true && v.encryptStream === false), {
    message: 'requireSecure demands an encrypted migration stream: drop encryptStream: false (--no-encrypt-stream) or requireSecure (--require-secure)',
    path: ['encryptStream'],
  })
  .refine((v) => v.targetHost === undefined || v.targetHost !== v.sourceHost, {
    message: 'targetHost is the source host: a VM cannot be migrated to the host it runs on',
    path: ['targetHost'],
  });

export class InputError extends Error {
  override readonly name = 'InputError';
  constructor(readonly problems: string[]) {
    super(`invalid migration request: ${problems.join('; ')}`);
  }
}

function valueAt(input: object, path: readonly PropertyKey[]): unknown {
  let v: unknown = input;
  for (const k of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

/** Validates and normalises; throws InputError listing every problem. */
export function validateMigrationInput(input: unknown): MigrationRequest {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new InputError([
      'the input must be one JSON object like {"sourceHost": "10.0.0.11", "vmName": "vm1", "vmUuid": "…"}',
    ]);
  }
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    throw new InputError(
      parsed.error.issues.map((i) => {
        const where = i.path.length > 0 ? i.path.join('.') : '';
        if (i.code === 'unrecognized_keys') {
          const keys = i.keys.map((k) => (where ? `${where}.${k}` : k));
          return `unknown option${keys.length > 1 ? 's' : ''} ${keys.join(', ')}`;
        }
        if (i.code === 'invalid_type' && valueAt(input, i.path) === undefined) return `${where} is required`;
        return i.message.startsWith(where) || where === '' ? i.message : `${where}: ${i.message}`;
      }),
    );
  }
  const v = parsed.data;
  return {
    sourceHost: v.sourceHost,
    vmName: v.vmName,
    vmUuid: v.vmUuid.toLowerCase(),
    targetHost: v.targetHost ?? null,
    createAttempts: v.createAttempts ?? DEFAULT_CREATE_ATTEMPTS,
    timeoutMs: v.timeout ?? null,
    bandwidthMiBps: v.bandwidthMiBps ?? null,
    encryptStream: v.encryptStream ?? null,
    requireSecure: v.requireSecure ?? false,
    keepSourceStorage: v.options?.keepSourceStorage ?? false,
    createRetryIntervalMs: v.options?.createRetryInterval ?? DEFAULT_CREATE_RETRY_INTERVAL_MS,
    timeoutPerGiBMs: v.options?.timeoutPerGiB ?? DEFAULT_TIMEOUT_PER_GIB_MS,
    timeoutFloorMs: v.options?.timeoutFloor ?? DEFAULT_TIMEOUT_FLOOR_MS,
    limits: { ...DEFAULT_LIMITS, ...v.limits },
    queueTimeoutMs: v.options?.queueTimeout ?? DEFAULT_QUEUE_TIMEOUT_MS,
    convergence: convergencePolicy(v.convergence),
  };
}

/** The parsed convergence input (durations already in ms). */
type ParsedConvergence = Omit<ConvergenceInput, 'progressTimeout'> & { progressTimeout?: number };

function convergencePolicy(c: ParsedConvergence | undefined): ConvergencePolicy {
  const initial = c?.maxDowntimeMs ?? LIBVIRT_DEFAULT_MAX_DOWNTIME_MS;
  return {
    autoConverge: c?.autoConverge ?? false,
    postCopy: c?.postCopy ?? false,
    syncDiskWrites: c?.syncDiskWrites ?? false,
    maxDowntimeMs: c?.maxDowntimeMs ?? null,
    ramp: c?.maxDowntimeRamp
      ? { initialMs: initial, maxMs: c.maxDowntimeRamp.maxMs, steps: c.maxDowntimeRamp.steps ?? 5, stallIterations: c.maxDowntimeRamp.stallIterations ?? 2 }
      : null,
    progressTimeoutMs: c?.progressTimeout ?? DEFAULT_PROGRESS_TIMEOUT_MS,
    onDeadline: c?.onDeadline ?? 'abort',
  };
}

/** Default migration deadline: per-GiB of (memory + disk virtual sizes), never below the floor (completionDeadlineMs). */
export function defaultMigrationTimeoutMs(
  dataBytes: number,
  perGiBMs = DEFAULT_TIMEOUT_PER_GIB_MS,
  floorMs = DEFAULT_TIMEOUT_FLOOR_MS,
): number {
  return completionDeadlineMs({ memoryBytes: dataBytes, diskBytes: 0, perGiBMs, floorMs });
}

/** The migration step's deadline: the request's timeout, or the default for the VM's memory + disks. */
export function migrationTimeoutMs(request: MigrationRequest, dataBytes: number): number {
  return request.timeoutMs ?? defaultMigrationTimeoutMs(dataBytes, request.timeoutPerGiBMs, request.timeoutFloorMs);
}
