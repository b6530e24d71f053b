/** `ferry evacuate`, `ferry schedule …`. */
import type { Command } from 'commander';
import {
  createEvacuationSchedule,
  createSyncSchedule,
  EvacuationAlreadyRunningError,
  getEvacuation,
  listSchedules,
  startEvacuation,
  type EvacuationHandle,
  type When,
} from '../client/fleet';
import type { EvacuateHostInput, EvacuationProgress, EvacuationResult, VmEvacuation } from '../common/evacuation';
import { formatDuration } from '../common/durations';
import { peakInFlight } from '../common/evacuation';
import { InputError } from '../common/validation';
import type { CliContext } from './context';
import { CliExit, EXIT, printJson, printTable } from './output';

function wholeNumber(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new CliExit(EXIT.badInput, `${name} must be a whole number`);
  return Number(text);
}

export function registerFleetCommands(program: Command, ctx: CliContext): void {
  program
    .command('evacuate')
    .description('drain a host: maintenance, then every VM live-migrated away under the limits')
    .requiredOption('--host <host>', 'host to evacuate (name or address)')
    .option('--max-parallel <n>', 'migrations at once (default: the outbound limit, 2)')
    .option('--deadline <duration>', 'cancel what is still running after this long, e.g. 2h')
    .option('--bandwidth <mibps>', 'bandwidth limit per migration in MiB/s')
    .option('--timeout <duration>', 'per-VM migration timeout')
    .option('--skip-stopped', 'leave stopped VMs on the host (by default they move cold; running and paused VMs move live)')
    .option('--attach', 'follow an evacuation of this host that is already running')
    .option('--no-wait', 'start and return')
    .option('--json', 'print the per-VM outcomes as JSON')
    .action(async (o: { host: string; maxParallel?: string; deadline?: string; bandwidth?: string; timeout?: string; skipStopped?: boolean; attach?: boolean; wait: boolean; json?: boolean }) => {
      const ferry = await ctx.client();
      let handle: EvacuationHandle;
      if (o.attach) handle = getEvacuation(ferry.client, o.host);
      else {
        const maxParallel = wholeNumber('--max-parallel', o.maxParallel);
        const bandwidth = wholeNumber('--bandwidth', o.bandwidth);
        const input: EvacuateHostInput = {
          host: o.host,
          ...(maxParallel !== undefined ? { maxParallel } : {}),
          ...(o.deadline !== undefined ? { deadline: o.deadline } : {}),
          ...(o.skipStopped ? { skipStopped: true } : {}),
          ...(bandwidth !== undefined || o.timeout !== undefined
            ? { migration: { ...(bandwidth !== undefined ? { bandwidthMiBps: bandwidth } : {}), ...(o.timeout !== undefined ? { timeout: o.timeout } : {}) } }
            : {}),
        };
        try {
          handle = await startEvacuation(ferry.client, ferry.taskQueue, input);
        } catch (err) {
          if (err instanceof InputError || err instanceof EvacuationAlreadyRunningError) {
            throw new CliExit(EXIT.badInput, err.message, { status: 'rejected', error: err.message });
          }
          throw err;
        }
      }
      if (!o.wait) {
        if (o.json) printJson({ status: 'started', workflowId: handle.workflowId });
        else process.stdout.write(`started ${handle.workflowId}\n`);
        return;
      }
      const result = o.json ? await handle.result() : await followEvacuation(handle);
      if (o.json) printJson(result);
      else printEvacuation(result);
      if (!result.allLeft) process.exitCode = EXIT.compensated;
    });

  const schedule = program.command('schedule').description('scheduled evacuation batches and inventory syncs (Temporal Schedules)');
  schedule
    .command('evacuate')
    .description('evacuate hosts at a time, on a cron expression or at an interval (hosts one after another)')
    .option('--host <host>', 'a host to evacuate')
    .option('--hosts <list>', 'comma-separated hosts, evacuated one after another')
    .option('--at <iso-time>', 'once, at this time (e.g. 2026-11-28T22:00:00Z)')
    .option('--cron <expr>', 'cron expression, UTC (e.g. "0 2 * * SAT")')
    .option('--every <duration>', 'interval (e.g. 24h)')
    .option('--max-parallel <n>', 'migrations at once per host')
    .option('--deadline <duration>', 'per-host evacuation deadline')
    .option('--skip-stopped', 'leave stopped VMs where they are')
    .option('--id <id>', 'schedule id (default ferry-evacuate-<hosts>)')
    .action(async (o: { host?: string; hosts?: string; at?: string; cron?: string; every?: string; maxParallel?: string; deadline?: string; skipStopped?: boolean; id?: string }) => {
      const hosts = [...(o.host ? [o.host] : []), ...(o.hosts ? o.hosts.split(',').map((h) => h.trim()).filter(Boolean) : [])];
      if (hosts.length === 0) throw new CliExit(EXIT.badInput, 'name the hosts with --host and/or --hosts');
      const whens = [o.at !== undefined ? { at: o.at } : null, o.cron !== undefined ? { cron: o.cron } : null, o.every !== undefined ? { every: o.every } : null].filter(
        (x): x is When => x !== null,
      );
      if (whens.length !== 1) throw new CliExit(EXIT.badInput, 'give exactly one of --at, --cron, --every');
      const maxParallel = wholeNumber('--max-parallel', o.maxParallel);
      const ferry = await ctx.client();
      try {
        const id = await createEvacuationSchedule(ferry.client, ferry.taskQueue, {
          hosts,
          when: whens[0] as When,
          ...(maxParallel !== undefined ? { maxParallel } : {}),
          ...(o.skipStopped ? { skipStopped: true } : {}),
          ...(o.deadline !== undefined ? { deadline: o.deadline } : {}),
          ...(o.id !== undefined ? { scheduleId: o.id } : {}),
        });
        process.stdout.write(`created schedule ${id}\n`);
      } catch (err) {
        if (err instanceof InputError) throw new CliExit(EXIT.badInput, err.message);
        throw err;
      }
    });
  schedule
    .command('sync')
    .description('run `ferry inventory sync` on a schedule so capacity stays current')
    .option('--every <duration>', 'interval', '1m')
    .action(async (o: { every: string }) => {
      const ferry = await ctx.client();
      try {
        process.stdout.write(`schedule ${await createSyncSchedule(ferry.client, ferry.taskQueue, o.every)}: inventory sync every ${o.every}\n`);
      } catch (err) {
        if (err instanceof InputError) throw new CliExit(EXIT.badInput, err.message);
        throw err;
      }
    });
  schedule
    .command('list')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const rows = await listSchedules((await ctx.client()).client);
      if (o.json) return printJson(rows);
      printTable(rows, [
        { header: 'ID', value: (r) => r.id },
        { header: 'WORKFLOW', value: (r) => r.workflowType },
        { header: 'PAUSED', value: (r) => (r.paused ? 'yes' : 'no') },
        { header: 'NEXT', value: (r) => r.next ?? '-' },
        { header: 'LAST', value: (r) => r.recent.at(-1) ?? '-' },
        { header: 'NOTE', value: (r) => r.note },
      ]);
    });
  for (const [verb, what] of [
    ['pause', 'pause a schedule'],
    ['resume', 'resume a paused schedule'],
    ['delete', 'delete a schedule (running batches go on)'],
    ['trigger', 'start the scheduled action now'],
  ] as const) {
    schedule
      .command(verb)
      .description(what)
      .argument('<id>')
      .action(async (id: string) => {
        const handle = (await ctx.client()).client.schedule.getHandle(id);
        if (verb === 'pause') await handle.pause('paused with ferry schedule pause');
        else if (verb === 'resume') await handle.unpause('resumed with ferry schedule resume');
        else if (verb === 'delete') await handle.delete();
        else await handle.trigger();
        process.stdout.write(`${id}: ${verb}${verb.endsWith('e') ? 'd' : 'ed'}\n`);
      });
  }
}

/** Live multi-line view: one line per VM, redrawn in place on a terminal. */
async function followEvacuation(handle: EvacuationHandle): Promise<EvacuationResult> {
  const tty = process.stderr.isTTY === true;
  let done = false;
  const result = handle.result().finally(() => {
    done = true;
  });
  let drawn = 0;
  let last = '';
  while (!done) {
    try {
      const text = renderProgress(await handle.progress());
      if (tty) {
        process.stderr.write(`${drawn > 0 ? `\x1b[${drawn}A` : ''}\x1b[0J${text}\n`);
        drawn = text.split('\n').length;
      } else if (text !== last) {
        process.stderr.write(`${text}\n`);
      }
      last = text;
    } catch {
      // not queryable yet (or a worker restart): the result decides
    }
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
  }
  return result;
}

export function renderProgress(p: EvacuationProgress): string {
  const c = p.counts;
  const head = `evacuating ${p.host} [${p.state}] ${c.migrated} migrated, ${c.running} running, ${c.pending} pending, ${c.failed} failed, ${c.skipped} skipped, ${c.cancelled} cancelled`;
  return [head, ...p.vms.map((v) => `  ${v.vm.padEnd(16)} ${v.status.padEnd(9)} ${describeVm(v)}`)].join('\n');
}

function describeVm(v: VmEvacuation): string {
  if (v.status === 'running') return `${v.phase ?? 'starting'}${v.target ? ` → ${v.target}` : ''}${v.waitingFor ? ` (${v.waitingFor})` : ''}`;
  if (v.status === 'migrated') return `→ ${v.target} in ${v.durationMs === null ? '?' : formatDuration(v.durationMs)}`;
  return v.reason ?? '';
}

function printEvacuation(r: EvacuationResult): void {
  printTable(r.vms, [
    { header: 'VM', value: (v) => v.vm },
    { header: 'RESULT', value: (v) => v.status },
    { header: 'TARGET', value: (v) => v.target },
    { header: 'DURATION', value: (v) => (v.durationMs === null ? '-' : formatDuration(v.durationMs)), align: 'right' },
    { header: 'DOWNTIME', value: (v) => (v.downtimeMs === null ? '-' : `${v.downtimeMs} ms`), align: 'right' },
    { header: 'REASON', value: (v) => v.reason ?? '' },
  ]);
  process.stdout.write(
    `${r.host}: ${r.allLeft ? 'every VM left' : `still holds ${r.remainingOnHost.join(', ')}`}; host is ${r.hostState}; took ${formatDuration(r.durationMs)}, ` +
      `at most ${peakInFlight(r.vms)} migration${peakInFlight(r.vms) === 1 ? '' : 's'} at once\n`,
  );
}
