/**
 * Every activity proxy Ferry's workflows use, with its timeouts and retry policy — declared once, here.
 *
 * Every activity heartbeats every 2 s while it runs (activities/failures.ts): a heartbeat timeout of 10 s
 * notices a dead worker quickly, so the step is retried within seconds, not minutes.
 */
import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type { FerryActivities } from '../activities';
import type { MigrationRequest } from '../common/validation';

const HEARTBEAT = '10s';

/** Retried until done (no maximumAttempts): compensation and bookkeeping that must happen. */
const UNTIL_DONE = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' } as const;

/** Inventory reads/writes and libvirt reads: quick, a few retries for transient errors. */
export const quick = proxyActivities<FerryActivities>({
  startToCloseTimeout: '1m',
  heartbeatTimeout: HEARTBEAT,
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 5 },
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});

/** Compensation and bookkeeping of a migration. */
export const mustComplete = proxyActivities<FerryActivities>({ startToCloseTimeout: '2m', heartbeatTimeout: HEARTBEAT, retry: UNTIL_DONE });

/**
 * Compensation's deletions on the target: retried for about 4.5 minutes (14 attempts; a target libvirtd restarting), not for
 * ever — an unreachable target must not hold the VM's claim, and the inbound slot of that host, indefinitely.
 * What is left stays recorded in the inventory (provenance); a later migration of the VM there removes it.
 */
export const targetCleanup = proxyActivities<FerryActivities>({
  startToCloseTimeout: '2m',
  heartbeatTimeout: HEARTBEAT,
  retry: { ...UNTIL_DONE, maximumAttempts: 14 },
});

/** Aborting libvirt's job waits for it to end, heartbeating meanwhile. */
export const aborting = proxyActivities<FerryActivities>({ startToCloseTimeout: '10m', heartbeatTimeout: '30s', retry: UNTIL_DONE });

/** Source cleanup is retried a bounded number of times: a dead source must not hold a finished migration. */
export const cleanup = proxyActivities<FerryActivities>({
  startToCloseTimeout: '2m',
  heartbeatTimeout: HEARTBEAT,
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 8 },
});

/** Create tasks: the failure threshold is the retry policy's maximumAttempts. */
export function createTasks(req: MigrationRequest) {
  return proxyActivities<FerryActivities>({
    startToCloseTimeout: '1m',
    heartbeatTimeout: HEARTBEAT,
    retry: {
      initialInterval: req.createRetryIntervalMs,
      backoffCoefficient: 2,
      maximumInterval: '30s',
      maximumAttempts: req.createAttempts,
    },
    // A create task in flight finishes (or fails) before compensation starts: nothing appears behind its back.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });
}

/** The live migration itself: its own heartbeat (job statistics), bounded by the workflow's timer. */
export function migration(timeoutMs: number) {
  return proxyActivities<FerryActivities>({
    startToCloseTimeout: timeoutMs + 10 * 60_000,
    heartbeatTimeout: '20s',
    retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 },
    // Wait until the activity has stopped: a cancelled attempt must not start a copy after we aborted.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });
}

/** An evacuation's inventory steps (maintenance, listing VMs, restoring the host state): retried until done. */
export const evacuationSteps = proxyActivities<FerryActivities>({ startToCloseTimeout: '1m', heartbeatTimeout: HEARTBEAT, retry: UNTIL_DONE });

/** `ferry inventory sync` as a workflow. */
export const inventorySync = proxyActivities<FerryActivities>({
  startToCloseTimeout: '5m',
  heartbeatTimeout: HEARTBEAT,
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumAttempts: 3 },
});
