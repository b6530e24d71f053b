/** `ferry migrate`, `ferry status`, `ferry cancel`. */
import type { Command } from 'commander';
import { MigrationAlreadyRunningError, MigrationRejectedError, WorkflowNotFoundError, type FerryClient, type MigrationHandle } from '../client';
import { printPlan } from './plan-output';
import type { LiveMigrationInput } from '../common/validation';
import { migrationInput, tuneRequest, type MigrationRequestFields } from '../client/requests';
import { InputError } from '../common/validation';
import type { MigrationProgress, MigrationReport, MigrationStats } from '../common/migration';
import { TERMINAL_PHASES } from '../common/migration';
import { formatDuration } from '../common/durations';
import type { CliContext } from './context';
import { CliExit, EXIT, copyFigures, envFlag, mib, mibPerSec, printJson } from './output';

export interface MigrateOptions extends MigrationRequestFields {
  vm: string;
  source?: string;
  /** --encrypt-stream / --no-encrypt-stream; absent: FERRY_ENCRYPT_STREAM, else the hosts' default. */
  encryptStream?: boolean;
  requireSecure?: boolean;
  wait: boolean;
  json?: boolean;
  dryRun?: boolean;
}

/** --encrypt-stream / --require-secure, or the fleet-wide defaults FERRY_ENCRYPT_STREAM / FERRY_REQUIRE_SECURE. */
function transportOptions(o: MigrateOptions): Pick<LiveMigrationInput, 'encryptStream' | 'requireSecure'> {
  const encryptStream = o.encryptStream ?? envFlag('FERRY_ENCRYPT_STREAM');
  const requireSecure = o.requireSecure ?? envFlag('FERRY_REQUIRE_SECURE');
  return { ...(encryptStream !== undefined ? { encryptStream } : {}), ...(requireSecure ? { requireSecure: true } : {}) };
}

export function exitCodeFor(status: MigrationReport['status']): number {
  if (status === 'migrated') return EXIT.ok;
  if (status === 'failed') return EXIT.failure;
  return EXIT.compensated;
}

export function registerMigrateCommands(program: Command, ctx: CliContext): void {
  program
    .command('migrate')
    .description('migrate one VM: live when running or paused (it stays paused), cold when stopped (waits with a progress bar unless --no-wait or --json)')
    .requiredOption('--vm <vm>', 'VM name or UUID')
    .option('--source <host>', 'host the VM runs on (name or address; default: from the inventory)')
    .option('--target <host>', 'fixed target host (still checked)')
    .option('--create-attempts <n>', 'failure threshold of each create task (default 3)')
    .option('--timeout <duration>', 'migration deadline, e.g. 90s, 10m (default: 150 s per GiB, at least 2m)')
    .option('--bandwidth <mibps>', 'bandwidth limit in MiB/s')
    .option('--keep-source', "keep the source's old disks after success")
    .option('--auto-converge', 'throttle the guest while memory does not converge')
    .option('--post-copy', 'allow switching to post-copy (on a deadline with --on-deadline post-copy, or by `ferry tune`)')
    .option('--sync-disk-writes', "copied disks: guest writes reach the target before they complete, so a busy writer cannot stop the disk copy converging (it slows to the copy's pace)")
    .option('--max-downtime <ms>', 'initial maximum downtime of the switch-over (default 300)')
    .option('--max-downtime-ramp <ms>', 'raise the max downtime in steps up to this while memory iterations stall')
    .option('--progress-timeout <duration>', 'deadline: no new low of the remaining data for this long (default 150s)')
    .option('--on-deadline <action>', 'abort (default) or post-copy, when a deadline passes')
    .option('--encrypt-stream', "encrypt the migration stream (libvirt --tls; default: on when both hosts are qemu+tls, or FERRY_ENCRYPT_STREAM=1)")
    .option('--no-encrypt-stream', 'do not encrypt the migration stream (FERRY_ENCRYPT_STREAM=0 sets this default)')
    .option('--require-secure', 'refuse hosts reached over plain qemu+tcp and encrypt the stream (FERRY_REQUIRE_SECURE=1 sets this default)')
    .option('--dry-run', 'run the checks and placement, claim nothing, print the plan (exit 0: it would go, 2: it would not)')
    .option('--no-wait', 'start and return')
    .option('--json', 'print one final JSON object')
    .action(async (o: MigrateOptions) => runMigrate(ctx, o));

  program
    .command('status')
    .description("a VM's current or last migration")
    .argument('<vm>', 'VM name or UUID')
    .option('--json', 'print JSON')
    .action(async (ref: string, o: { json?: boolean }) => {
      const vm = await ctx.resolveVm(ref);
      const handle = await findMigration(ctx, vm.uuid);
      if (handle === null) {
        if (o.json) return printJson({ vm: vm.name, vmUuid: vm.uuid, host: vm.host, state: vm.state, migration: null });
        process.stdout.write(`${vm.name} (${vm.uuid}) is ${vm.state} on ${vm.host}; it has never been migrated\n`);
        return;
      }
      const running = await handle.isRunning();
      if (running) {
        const p = await handle.progress();
        if (o.json) return printJson({ vm: vm.name, vmUuid: vm.uuid, running: true, progress: p });
        printProgress(p);
      } else {
        const report = await handle.outcome().catch((err: unknown) => (err instanceof Error ? err.message : String(err)));
        if (o.json) return printJson({ vm: vm.name, vmUuid: vm.uuid, running: false, inventory: { host: vm.host, state: vm.state }, last: report });
        if (typeof report === 'string') process.stdout.write(`last migration of ${vm.name} was refused: ${report}\n`);
        else printReport(report);
      }
    });

  program
    .command('tune')
    .description("tune a VM's running migration: raise the max downtime, change the bandwidth, switch to post-copy")
    .argument('<vm>', 'VM name or UUID')
    .option('--max-downtime <ms>', 'new maximum downtime of the switch-over')
    .option('--bandwidth <mibps>', 'new bandwidth limit')
    .option('--post-copy-now', 'switch to post-copy now (the migration must allow post-copy)')
    .option('--json', 'print the convergence view as JSON')
    .action(async (ref: string, o: { maxDowntime?: string; bandwidth?: string; postCopyNow?: boolean; json?: boolean }) => {
      const vm = await ctx.resolveVm(ref);
      const handle = await findMigration(ctx, vm.uuid);
      if (handle === null || !(await handle.isRunning())) throw new CliExit(EXIT.badInput, `${vm.name} has no running migration to tune`);
      const req = tuneRequest(o);
      let view;
      try {
        view = await handle.tune(req);
      } catch (err) {
        throw new CliExit(EXIT.badInput, (err as Error).message);
      }
      if (o.json) printJson(view);
      else {
        const applied = view.events.at(-1)?.what ?? '';
        process.stdout.write(`${vm.name}: max downtime ${view.maxDowntimeMs ?? 'default'} ms, bandwidth ${view.bandwidthMiBps ?? 'unlimited'} MiB/s${view.postCopyActive ? ', post-copy' : ''}\n`);
        if (applied.startsWith('operator:')) process.stdout.write(`  applied: ${applied.slice('operator: '.length)}\n`);
      }
    });

  program
    .command('cancel')
    .description("cancel a VM's running migration (it compensates: VM stays on the source, target cleaned)")
    .argument('<vm>', 'VM name or UUID')
    .option('--reason <text>', 'recorded in the history (sent as a signal)')
    .option('--wait', 'wait until compensation has finished')
    .option('--json', 'with --wait: print the final report as JSON')
    .action(async (ref: string, o: { reason?: string; wait?: boolean; json?: boolean }) => {
      const vm = await ctx.resolveVm(ref);
      const handle = await findMigration(ctx, vm.uuid);
      if (handle === null) throw new CliExit(EXIT.badInput, `${vm.name} has no migration to cancel`);
      if (!(await handle.isRunning())) throw new CliExit(EXIT.badInput, `${vm.name}'s last migration has already ended`);
      if (o.reason) await handle.cancelWithReason(o.reason);
      else await handle.cancel();
      if (!o.wait) {
        process.stdout.write(`cancellation of ${handle.workflowId} requested; compensation runs now (\`ferry status ${vm.name}\`)\n`);
        return;
      }
      const report = await handle.outcome();
      if (o.json) printJson(report);
      else printReport(report);
    });
}

/** The workflow input for `ferry migrate`'s flags (validated by the workflow's own rules, not here). */
export function migrateInputOf(o: MigrateOptions, vm: { name: string; uuid: string }, sourceHost: string): LiveMigrationInput {
  return { ...migrationInput(vm, sourceHost, o), ...transportOptions(o) };
}

/** `ferry migrate`: resolve the VM, start, wait (progress bar or --json), exit by outcome. */
export async function runMigrate(ctx: CliContext, o: MigrateOptions): Promise<void> {
  const vm = await ctx.resolveVm(o.vm, o.source);
  const inv = await ctx.inventory();
  const source = o.source ? ((await inv.getHost(o.source))?.address ?? o.source) : (await inv.getHost(vm.host))?.address ?? vm.host;
  const input = migrateInputOf(o, vm, source);

  const ferry = await ctx.client();
  if (o.dryRun) return dryRun(ferry, input, o.json === true);
  let handle: MigrationHandle;
  try {
    handle = await ferry.startMigration(input);
  } catch (err) {
    if (err instanceof InputError) throw new CliExit(EXIT.badInput, err.message, { status: 'rejected', error: err.message, problems: err.problems });
    if (err instanceof MigrationAlreadyRunningError) throw new CliExit(EXIT.badInput, err.message, { status: 'rejected', error: err.message, workflowId: err.workflowId });
    throw err;
  }
  if (!o.wait) {
    if (o.json) printJson({ status: 'started', workflowId: handle.workflowId, vm: vm.name, vmUuid: vm.uuid, source: vm.host });
    else process.stdout.write(`started ${handle.workflowId}: follow it with \`ferry status ${vm.name}\`\n`);
    return;
  }
  let report: MigrationReport;
  try {
    report = o.json ? await handle.outcome() : await withProgressBar(handle, vm.name);
  } catch (err) {
    if (err instanceof MigrationRejectedError) {
      throw new CliExit(EXIT.badInput, err.message, { status: 'rejected', type: err.type, error: err.message });
    }
    throw err;
  }
  if (o.json) printJson(report);
  else printReport(report);
  if (report.status !== 'migrated') process.exitCode = exitCodeFor(report.status);
}

async function dryRun(ferry: FerryClient, input: LiveMigrationInput, json: boolean): Promise<void> {
  try {
    printPlan(await ferry.planMigration(input), json);
  } catch (err) {
    if (err instanceof InputError || err instanceof MigrationRejectedError) {
      throw new CliExit(EXIT.badInput, err.message, { status: 'rejected', error: err.message });
    }
    throw err;
  }
}

/** The VM's latest migration, or null when it never had one. */
async function findMigration(ctx: CliContext, vmUuid: string): Promise<MigrationHandle | null> {
  try {
    return await (await ctx.client()).getMigration(vmUuid);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    throw err;
  }
}

async function withProgressBar(handle: MigrationHandle, vmName: string): Promise<MigrationReport> {
  const tty = process.stderr.isTTY === true;
  let done = false;
  const result = handle.outcome().finally(() => {
    done = true;
  });
  let lastLine = '';
  while (!done) {
    try {
      const p = await handle.progress();
      const line = progressLine(vmName, p);
      if (tty) process.stderr.write(`\r\x1b[2K${line}`);
      else if (line !== lastLine) process.stderr.write(`${line}\n`);
      lastLine = line;
    } catch {
      // the query can fail briefly while the worker restarts; the result decides
    }
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 500))]);
  }
  if (tty) process.stderr.write('\r\x1b[2K');
  return result;
}

export function progressLine(vmName: string, p: MigrationProgress): string {
  const width = 30;
  const pct = p.migration?.percent ?? (TERMINAL_PHASES.includes(p.phase) ? 100 : 0);
  const filled = Math.round((pct / 100) * width);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
  const where = `${p.source} → ${p.target ?? '?'}`;
  const extra =
    p.phase === 'migrating' && p.migration
      ? ` ${pct.toFixed(0)}% remaining ${mib(p.migration.dataRemainingBytes)}${copyRates(p.migration)}`
      : p.waitingFor
        ? ` ${p.waitingFor}`
        : '';
  return `${vmName} ${where} ${bar} ${p.phase}${extra}`;
}

/** The progress line's rates: the disk copy's while it runs, then memory's. */
function copyRates(m: MigrationStats): string {
  const disk = m.disk;
  if (disk && disk.processedBytes !== null && disk.totalBytes !== null && disk.processedBytes < disk.totalBytes) {
    return `, disk ${mib(disk.processedBytes)} of ${mib(disk.totalBytes)} at ${mibPerSec(disk.bytesPerSec)}`;
  }
  return m.memory?.bytesPerSec != null ? `, memory at ${mibPerSec(m.memory.bytesPerSec)}` : '';
}

/** `ferry status`: the disk copy (all disks, then each one with its speed limit) and the memory copy. */
function copyLines(m: MigrationStats): string[] {
  const lines: string[] = [];
  if (m.disk) lines.push(`  disk copy: ${copyFigures(m.disk)}`);
  for (const d of m.disks ?? []) lines.push(`    ${d.target}: ${copyFigures(d)}, limit ${d.bandwidthMiBps === null ? 'none' : `${d.bandwidthMiBps} MiB/s`}`);
  if (m.memory) lines.push(`  memory copy: ${copyFigures(m.memory)}, iteration ${m.memoryIteration ?? '-'}`);
  return lines;
}

function printProgress(p: MigrationProgress): void {
  const lines = [
    `${p.vm.name} (${p.vm.uuid}): ${p.phase}${p.mode ? ` (${p.mode})` : ''}${p.streamEncrypted ? ', stream encrypted' : ''}`,
    ...(p.rejectedTargets ?? []).map((t) => `  target ${t.host} refused${t.check ? ` (${t.check})` : ''}: ${t.reason}`),
    `  ${p.source} → ${p.target ?? '(choosing)'}; started ${p.startedAt}${p.deadline ? `, deadline ${p.deadline}` : ''}`,
    `  create attempts: ${Object.entries(p.createAttempts).map(([t, n]) => `${t}=${n}`).join(' ') || '-'}`,
    `  artifacts: ${p.artifacts.map((a) => (a.kind === 'volume' ? `volume ${a.name}` : a.kind === 'pool' ? `pool ${a.pool}` : `dir ${a.path}`)).join(', ') || '-'}`,
    ...diskLines(p.disks),
  ];
  if (p.migration) {
    lines.push(
      `  migration: ${p.migration.percent ?? '?'}% (${mib(p.migration.dataProcessedBytes)} of ${mib(p.migration.dataTotalBytes)}), iteration ${p.migration.memoryIteration ?? '-'}`,
      ...copyLines(p.migration),
    );
  }
  const c = p.convergence;
  if (c) {
    lines.push(
      `  convergence: max downtime ${c.maxDowntimeMs ?? 'default'} ms, auto-converge ${c.autoConverge ? `on (throttle ${c.throttlePercent ?? 0} %)` : 'off'}, ` +
        `post-copy ${c.postCopyActive ? 'ACTIVE' : c.postCopyAllowed ? 'allowed' : 'off'}, no new low for ${c.sinceNewLowMs === null ? '-' : formatDuration(c.sinceNewLowMs)} of ${formatDuration(c.progressTimeoutMs)}`,
    );
    if (c.limitFired) lines.push(`  deadline: ${c.limitFired.limit} → ${c.limitFired.action} (${c.limitFired.detail})`);
    for (const e of c.events.slice(-5)) lines.push(`  ${e.at}: ${e.what}`);
  }
  if (p.waitingFor) lines.push(`  waiting for: ${p.waitingFor}`);
  if (p.lastError) lines.push(`  last error: ${p.lastError}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Per disk: shared with the target (nothing copied) or copied (flattened when it had a backing chain). */
function diskLines(disks: MigrationProgress['disks'] | undefined): string[] {
  return (disks ?? []).map((d) => `  disk ${d.target} ${d.path}: ${d.layout === 'shared' ? 'shared storage, not copied' : d.flattened ? 'copied (backing chain flattened)' : 'copied'}`);
}

function printReport(r: MigrationReport): void {
  const head =
    r.status === 'migrated'
      ? r.mode === 'cold'
        ? `${r.vm} migrated cold ${r.source} → ${r.target} in ${formatDuration(r.durationMs)} (stopped: no downtime)`
        : `${r.vm} migrated ${r.source} → ${r.target} in ${formatDuration(r.durationMs)} (downtime ${r.downtimeMs ?? '?'} ms${r.guestDowntimeMs !== null && r.guestDowntimeMs !== undefined ? `, the guest did not answer for ${r.guestDowntimeMs} ms` : ''})`
      : `${r.vm} ${r.status}: ${r.reason ?? ''}`;
  const stream = r.status === 'migrated' ? [`  stream ${r.streamEncrypted ? 'encrypted' : 'not encrypted'}`] : [];
  const lines = [head, ...stream, `  create attempts: ${Object.entries(r.createAttempts).map(([t, n]) => `${t}=${n}`).join(' ') || '-'}`, ...diskLines(r.disks)];
  if (r.bytesTransferred !== null) lines.push(`  bytes transferred: ${mib(r.bytesTransferred)}`);
  for (const t of r.rejectedTargets ?? []) lines.push(`  target ${t.host} refused: ${t.reason}`);
  if (r.status === 'migrated') lines.push(`  source storage ${r.sourceCleaned ? 'removed' : 'kept'}`);
  if (r.limitFired) lines.push(`  deadline: ${r.limitFired.limit} → ${r.limitFired.action}`);
  for (const w of r.warnings) lines.push(`  warning: ${w}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
