/**
 * Reading failures inside workflows (shared by liveMigration and the evacuations): the message a user
 * should see, the ApplicationFailure at the root, a child migration's report, a create task's attempts.
 */
import { ActivityFailure, ApplicationFailure, TimeoutFailure } from '@temporalio/workflow';
import { RetryState } from '@temporalio/common';
import type { MigrationReport } from '../common/migration';
import type { MigrationResultKind } from '../common/types';
import { FailureType } from '../common/failures';
import { InputError, validateMigrationInput, type LiveMigrationInput, type MigrationRequest } from '../common/validation';

/** How a migration that did not move its VM ends. */
export type Outcome = Exclude<MigrationResultKind, 'migrated'>;

/** A forward step failed: why, and the failure type the workflow ends with after compensating. */
export class StepFailure extends Error {
  constructor(
    readonly outcome: Outcome,
    readonly type: FailureType,
    message: string,
  ) {
    super(message);
  }
}

export function rootApplicationFailure(err: unknown): ApplicationFailure | null {
  let e: unknown = err;
  while (e instanceof Error) {
    if (e instanceof ApplicationFailure) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return null;
}

/**
 * What went wrong, in the words of the innermost failure that has some: the ApplicationFailure or timeout at
 * the root, not Temporal's wrappers ("Activity task failed", "Child Workflow execution failed").
 */
export function rootMessage(err: unknown): string {
  let e: unknown = err;
  let last = err instanceof Error ? err.message : String(err);
  while (e instanceof Error) {
    if (e.message) last = e.message;
    if (e instanceof ApplicationFailure || e instanceof TimeoutFailure) return e.message || last;
    e = (e as { cause?: unknown }).cause;
  }
  return last;
}

/** A migration's report: its result, or the details of its failure or cancellation (a child's, too). */
export function reportOf(err: unknown): MigrationReport | null {
  let e: unknown = err;
  while (e instanceof Error) {
    const details = (e as { details?: unknown[] }).details;
    const first = Array.isArray(details) ? details[0] : undefined;
    if (first && typeof first === 'object' && 'status' in first) return first as MigrationReport;
    e = (e as { cause?: unknown }).cause;
  }
  return null;
}

/** Attempts a create task made before it failed. */
export function attemptsOf(err: unknown, maxAttempts: number): number {
  if (err instanceof ActivityFailure && err.retryState === RetryState.MAXIMUM_ATTEMPTS_REACHED) return maxAttempts;
  const app = rootApplicationFailure(err);
  const detail = app?.details?.[0] as { attempt?: unknown } | undefined;
  if (detail && typeof detail.attempt === 'number') return detail.attempt;
  if (err instanceof ActivityFailure && err.cause instanceof TimeoutFailure) return maxAttempts;
  return 1;
}

/** The migration request, or bad input as a non-retryable `InvalidInput` naming every problem (nothing created). */
export function validatedRequest(input: LiveMigrationInput): MigrationRequest {
  try {
    return validateMigrationInput(input);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    throw ApplicationFailure.create({ type: FailureType.InvalidInput, message: err.message, nonRetryable: true, details: [{ problems: err.problems }] });
  }
}
