/**
 * Turning what went wrong below (libvirt, the inventory) into Temporal failures whose retryability
 * matches the cause, with the attempt number attached so the workflow can report attempts per task.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { LibvirtError } from '../hypervisor/errors';
import { PlacementError, type PlacementErrorCode } from '../inventory/placement';
import { InventoryError } from '../inventory/inventory';
import { FailureType } from '../common/failures';

export interface FailureDetails {
  attempt: number;
  kind?: string;
}

function attempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1;
  }
}

export function nonRetryable(type: FailureType, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true, details: [{ attempt: attempt() }] });
}

const PLACEMENT_FAILURE: Record<PlacementErrorCode, FailureType> = {
  'no-host': FailureType.NoTargetHost,
  'no-slot': FailureType.NoTargetHost,
  'unknown-host': FailureType.NoTargetHost,
  'vm-busy': FailureType.VmBusy,
  'vm-state': FailureType.VmMismatch,
  'unknown-vm': FailureType.VmNotFound,
};

/** Maps any error to an ApplicationFailure (unknown errors stay retryable: the retry policy bounds them). */
export function toFailure(err: unknown): ApplicationFailure | CancelledFailure {
  // A cancelled activity must report cancellation, not a failure.
  if (err instanceof ApplicationFailure || err instanceof CancelledFailure) return err;
  if (err instanceof LibvirtError) {
    return ApplicationFailure.create({
      type: `Libvirt.${err.kind}`,
      message: err.message,
      nonRetryable: !err.retryable,
      details: [{ attempt: attempt(), kind: err.kind } satisfies FailureDetails],
    });
  }
  if (err instanceof PlacementError) {
    const type = PLACEMENT_FAILURE[err.code];
    return ApplicationFailure.create({
      type,
      message: err.message,
      nonRetryable: true,
      details: [{ attempt: attempt(), kind: err.code, rejected: err.rejected }],
    });
  }
  if (err instanceof InventoryError && err.code !== 'exists') {
    // An unknown host/VM or an invalid record does not get better by retrying.
    return ApplicationFailure.create({
      type: err.code === 'not-found' ? FailureType.VmNotFound : FailureType.InvalidInput,
      message: err.message,
      nonRetryable: true,
      details: [{ attempt: attempt(), kind: err.code } satisfies FailureDetails],
    });
  }
  const e = err instanceof Error ? err : new Error(String(err));
  return ApplicationFailure.create({
    type: e.name || 'Error',
    message: e.message,
    nonRetryable: false,
    details: [{ attempt: attempt() } satisfies FailureDetails],
  });
}

/** How often a running activity tells Temporal it is alive (its heartbeat timeout is a few times this). */
export const KEEPALIVE_MS = 2_000;

/**
 * Runs an activity body and converts whatever it throws. While it runs it heartbeats every KEEPALIVE_MS,
 * so a short heartbeat timeout notices a dead worker in seconds instead of waiting for start-to-close
 * (the migration activities heartbeat with their own details and pass `keepAlive: false`).
 */
export async function guarded<T>(body: () => Promise<T>, opts: { keepAlive?: boolean } = {}): Promise<T> {
  let ctx: Context | null = null;
  try {
    ctx = Context.current();
  } catch {
    ctx = null; // called outside an activity (tests)
  }
  const ticker = opts.keepAlive !== false && ctx !== null ? setInterval(() => ctx?.heartbeat(), KEEPALIVE_MS) : null;
  try {
    return await body();
  } catch (err) {
    throw toFailure(err);
  } finally {
    if (ticker !== null) clearInterval(ticker);
  }
}
