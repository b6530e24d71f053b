/**
 * Operator requests (the CLI's flags, the web UI's form fields) as the workflows' input: one mapping for
 * every front end, so `ferry migrate --bandwidth 20` and the UI's "bandwidth 20" start the same workflow and
 * are validated by the same rules (validateMigrationInput, in startMigration / planMigration).
 */
import type { LiveMigrationInput } from '../common/validation';
import type { TuneRequest } from '../common/migration';

/** What an operator may ask of one migration; numbers arrive as text from flags and form fields. */
export interface MigrationRequestFields {
  target?: string;
  createAttempts?: string;
  timeout?: string;
  bandwidth?: string;
  keepSource?: boolean;
  autoConverge?: boolean;
  postCopy?: boolean;
  syncDiskWrites?: boolean;
  maxDowntime?: string;
  maxDowntimeRamp?: string;
  progressTimeout?: string;
  onDeadline?: string;
}

/** A number when the text is one; the text itself otherwise, so validation names the problem. */
export function numeric(text: string | undefined): number | string | undefined {
  if (text === undefined) return undefined;
  return /^-?\d+(\.\d+)?$/.test(text.trim()) ? Number(text) : text;
}

/** The convergence flags as the workflow's `convergence` object (validated there). */
function convergence(o: MigrationRequestFields): Record<string, unknown> | undefined {
  const c: Record<string, unknown> = {
    ...(o.autoConverge ? { autoConverge: true } : {}),
    ...(o.postCopy ? { postCopy: true } : {}),
    ...(o.syncDiskWrites ? { syncDiskWrites: true } : {}),
    ...(o.maxDowntime !== undefined ? { maxDowntimeMs: numeric(o.maxDowntime) } : {}),
    ...(o.maxDowntimeRamp !== undefined ? { maxDowntimeRamp: { maxMs: numeric(o.maxDowntimeRamp) } } : {}),
    ...(o.progressTimeout !== undefined ? { progressTimeout: o.progressTimeout } : {}),
    ...(o.onDeadline !== undefined ? { onDeadline: o.onDeadline } : {}),
  };
  return Object.keys(c).length > 0 ? c : undefined;
}

/** The liveMigration input for a VM (known by the inventory) on the source address, with the operator's fields. */
export function migrationInput(vm: { name: string; uuid: string }, sourceHost: string, o: MigrationRequestFields): LiveMigrationInput {
  const c = convergence(o);
  return {
    sourceHost,
    vmName: vm.name,
    vmUuid: vm.uuid,
    ...(o.target !== undefined ? { targetHost: o.target } : {}),
    ...(o.createAttempts !== undefined ? { createAttempts: numeric(o.createAttempts) } : {}),
    ...(o.timeout !== undefined ? { timeout: o.timeout } : {}),
    ...(o.bandwidth !== undefined ? { bandwidthMiBps: numeric(o.bandwidth) } : {}),
    ...(o.keepSource ? { options: { keepSourceStorage: true } } : {}),
    ...(c !== undefined ? { convergence: c } : {}),
  } as LiveMigrationInput;
}

/** `ferry tune` / the UI's tune form as the tune update's request (checked by the workflow). */
export function tuneRequest(o: { maxDowntime?: string; bandwidth?: string; postCopyNow?: boolean }): TuneRequest {
  return {
    ...(o.maxDowntime !== undefined ? { maxDowntimeMs: numeric(o.maxDowntime) as number } : {}),
    ...(o.bandwidth !== undefined ? { bandwidthMiBps: numeric(o.bandwidth) as number } : {}),
    ...(o.postCopyNow ? { postCopyNow: true } : {}),
  };
}
