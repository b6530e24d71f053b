/**
 * The `ferry` command line. Exit codes: 0 success, 2 bad input (nothing changed), 3 a migration was
 * aborted / timed out / cancelled and compensated, 1 anything else (e.g. Temporal unreachable).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FerryWorkerOptions } from '../worker';
import { Command, CommanderError } from 'commander';
import type { LabStatus } from '../lab';
import { CliContext } from './context';
import { CliExit, EXIT, printJson, printTable } from './output';

const log = (line: string) => process.stderr.write(`${line}\n`);

function wholeNumber(name: string, text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) throw new CliExit(EXIT.badInput, `${name} must be a whole number`);
  return n;
}

type Register = (program: Command, ctx: CliContext) => void;

// Loaded when a command runs, not at start-up (plain CommonJS require: the CLI is compiled to CommonJS).
const devModule = (): typeof import('./dev') => require('./dev');
const labModule = (): typeof import('../lab') => require('../lab');

/**
 * The top-level commands each module registers, in help order. A command line loads only the module of its
 * command (and that module's actions import what they use when they run): `ferry hosts list` never loads the
 * Temporal SDK, the lab or the worker. Unknown commands and bare `ferry` / `ferry --help` load them all.
 * test/unit/cli-startup.test.ts checks that each module registers exactly the names listed here.
 */
export const COMMAND_MODULES: readonly { commands: readonly string[]; load: () => Promise<Register> }[] = [
  { commands: ['dev', 'lab'], load: async () => registerLocalCommands },
  { commands: ['hosts', 'vms', 'inventory', 'reconcile', 'history'], load: async () => (require('./inventory-commands') as typeof import('./inventory-commands')).registerInventoryCommands },
  { commands: ['migrate', 'status', 'tune', 'cancel'], load: async () => (require('./migrate-commands') as typeof import('./migrate-commands')).registerMigrateCommands },
  { commands: ['evacuate', 'schedule'], load: async () => (require('./fleet-commands') as typeof import('./fleet-commands')).registerFleetCommands },
  { commands: ['ui'], load: async () => (require('./ui-command') as typeof import('./ui-command')).registerUiCommand },
  { commands: ['cluster'], load: async () => (require('./cluster-commands') as typeof import('./cluster-commands')).registerClusterCommands },
  { commands: ['worker', 'demo'], load: async () => registerProcessCommands },
];

/** The command a command line runs (its first word that is not an option), if any. */
export function commandName(argv: readonly string[]): string | undefined {
  return argv.slice(2).find((a) => !a.startsWith('-'));
}

/** The program with the commands `argv` needs (all of them without argv). */
export async function buildProgram(ctx: CliContext, argv?: readonly string[]): Promise<Command> {
  const program = new Command('ferry')
    .description('Durable live migration of KVM virtual machines on Temporal and libvirt')
    .showHelpAfterError()
    .exitOverride();
  const name = argv === undefined ? undefined : commandName(argv);
  const needed = COMMAND_MODULES.filter((m) => name !== undefined && m.commands.includes(name));
  for (const m of needed.length > 0 ? needed : COMMAND_MODULES) (await m.load())(program, ctx);
  return program;
}

function registerLocalCommands(program: Command, ctx: CliContext): void {
  const devCmd = program.command('dev').description('local Temporal dev server + one worker, in the background');
  devCmd
    .command('up')
    .description('start them (idempotent) and print the Web UI URL')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const { devUp } = devModule();
      const s = await devUp(log, ctx.home);
      if (o.json) printJson(s);
      else process.stdout.write(`Temporal ${s.address} (pid ${s.serverPid}), worker pid ${s.workerPid}\nWeb UI: ${s.webUi}\n`);
    });
  devCmd
    .command('down')
    .description('stop them (the database file stays)')
    .action(async () => devModule().devDown(log, ctx.home));
  devCmd
    .command('status')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const s = devModule().devStatus(ctx.home);
      if (o.json) printJson(s);
      else process.stdout.write(`server pid ${s.serverPid ?? '(down)'}, worker pid ${s.workerPid ?? '(down)'}, Web UI ${s.webUi}\n`);
    });

  const labCmd = program.command('lab').description('a local lab of libvirt hosts in network namespaces (root only)');
  labCmd
    .command('up')
    .description('start N hosts with M small TCG VMs on the first one, registered in the inventory')
    .option('--hosts <n>', 'number of hosts', '2')
    .option('--vms <m>', 'number of VMs on the first host', '1')
    .option('--prefix <p>', 'names of hosts (<p>-h1…), bridge (<p>br0) and veths; 1-8 of [a-z0-9]', 'ferry')
    .option('--subnet <a.b.c>', 'the lab\'s /24 (first three octets)', '10.213.77')
    .option('--guest <kind>', "what new VMs run: tiny (nothing boots) or linux (a Debian kernel writing checksummed records, on the guest network)", 'tiny')
    .option('--tls', 'TLS-only hosts (qemu+tls, client certificates from a lab CA, migration TLS configured)')
    .option('--json', 'print the lab status as JSON')
    .action(async (o: { hosts: string; vms: string; prefix: string; subnet: string; guest: string; tls?: boolean; json?: boolean }) => {
      if (o.guest !== 'tiny' && o.guest !== 'linux') throw new CliExit(EXIT.badInput, `--guest must be tiny or linux (got ${o.guest})`);
      const hosts = wholeNumber('--hosts', o.hosts);
      const vms = wholeNumber('--vms', o.vms);
      const { checkLabPrefix, checkLabSize, LabError } = labModule();
      try {
        checkLabSize({ hosts, vms });
        checkLabPrefix(o.prefix);
      } catch (e) {
        if (e instanceof LabError) throw new CliExit(EXIT.badInput, e.message);
        throw e;
      }
      const status = await upLab(ctx, hosts, vms, { prefix: o.prefix, subnet: o.subnet, guest: o.guest, tls: o.tls ?? false });
      if (o.json) printJson(status);
      else printLab(status);
    });
  labCmd
    .command('down')
    .description('stop every lab host and VM and forget them in the inventory')
    .option('--force', 'stop it whatever the inventory says (claims of migrations from or to lab hosts are dropped)')
    .action(async (o: { force?: boolean }) => {
      const { labDown, labStatus } = labModule();
      const before = await labStatus(ctx.home);
      const inv = await ctx.inventory();
      const names = before.hosts.map((h) => h.name);
      const busy = (await inv.listClaims()).filter((c) => names.includes(c.host) || names.includes(c.sourceHost));
      if (busy.length > 0 && !o.force) {
        throw new CliExit(
          EXIT.badInput,
          `lab hosts have migrations in flight (${busy.map((c) => `${c.vmUuid} ${c.sourceHost} → ${c.host}, ${c.workflowId}`).join('; ')}): ` +
            'wait for them or cancel them, run `ferry reconcile` if their workflows were terminated, or `ferry lab down --force`',
        );
      }
      await labDown(ctx.home);
      for (const name of names) {
        if ((await inv.getHost(name)) !== null) await inv.removeHost(name, { force: o.force === true });
      }
      log(`lab down (${names.length} hosts removed${busy.length > 0 ? `, ${busy.length} claims dropped` : ''})`);
    });
  labCmd
    .command('status')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const status = await labModule().labStatus(ctx.home);
      if (o.json) printJson(status);
      else printLab(status);
    });
}

function registerProcessCommands(program: Command, ctx: CliContext): void {
  program
    .command('worker')
    .description('run a worker in the foreground (connection from TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TLS env)')
    .action(async () => (require('../worker') as typeof import('../worker')).runWorker({ activityOptions: { guestObserver: labGuestObserverOf(ctx.home) } }));

  program
    .command('demo')
    .description('the quick start: dev server + worker, a 3-host lab, one live migration, the result')
    .option('--json', 'print the migration report as JSON')
    .action(async (o: { json?: boolean }) => {
      const { devUp } = devModule();
      const { runMigrate } = require('./migrate-commands') as typeof import('./migrate-commands');
      const dev = await devUp(log, ctx.home);
      const lab = await upLab(ctx, 3, 2);
      printLab(lab);
      const first = lab.hosts[0]?.name ?? 'ferry-h1';
      const vm = lab.vms.find((v) => v.host === first);
      if (!vm) throw new CliExit(EXIT.failure, `the lab has no VM on ${first} to migrate`);
      log(`\nmigrating ${vm.name} away from ${first} …`);
      await runMigrate(ctx, { vm: vm.uuid, wait: true, ...(o.json ? { json: true } : {}) });
      process.stdout.write(`\nWeb UI: ${dev.webUi}/namespaces/default/workflows\n`);
    });

}


/**
 * The lab's guest prober (lab/guest-net.ts) as the worker's guest observer (`guestDowntimeMs`): it answers for the
 * Linux guests of a lab in this home and says nothing (null) for every other VM; the lab module loads when first
 * asked about a home that has a prober.
 */
type GuestObserver = NonNullable<NonNullable<FerryWorkerOptions['activityOptions']>['guestObserver']>;

function labGuestObserverOf(home: string): GuestObserver {
  let observer: GuestObserver | undefined;
  return {
    longestGapMs(vmUuid, fromMs, toMs) {
      if (!fs.existsSync(path.join(home, 'lab', 'probe'))) return Promise.resolve(null);
      observer ??= (require('../lab/guest-net') as typeof import('../lab/guest-net')).labGuestObserver(home);
      return observer.longestGapMs(vmUuid, fromMs, toMs);
    },
  };
}

/** Starts (or completes) the lab and registers its hosts and VMs in the inventory. */
async function upLab(
  ctx: CliContext,
  hosts: number,
  vms: number,
  naming: { prefix?: string; subnet?: string; guest?: 'tiny' | 'linux'; tls?: boolean } = {},
): Promise<LabStatus> {
  const { labUp } = labModule();
  const { registerLab } = require('../lab/register') as typeof import('../lab/register');
  const status = await labUp({ home: ctx.home, hosts, vms, log, ...naming });
  const results = await registerLab(await ctx.inventory(), await ctx.hypervisor(), status);
  for (const r of results) if (r.error) log(`warning: ${r.host} not synced: ${r.error}`);
  return status;
}

function printLab(s: LabStatus): void {
  printTable(s.hosts, [
    { header: 'HOST', value: (h) => h.name },
    { header: 'ADDRESS', value: (h) => h.address },
    { header: 'URI', value: (h) => h.uri },
    { header: 'LIBVIRTD PID', value: (h) => h.pid || '(down)', align: 'right' },
  ], '(no lab)');
  if (s.vms.length > 0) {
    process.stdout.write('\n');
    printTable(s.vms, [
      { header: 'VM', value: (v) => v.name },
      { header: 'UUID', value: (v) => v.uuid },
      { header: 'HOST', value: (v) => v.host },
      { header: 'GUEST', value: (v) => (v.guest?.kind === 'linux' ? `linux ${v.guest.ip}` : (v.guest?.kind ?? 'tiny')) },
    ]);
  }
}

export async function main(argv: string[]): Promise<void> {
  const ctx = new CliContext();
  const program = await buildProgram(ctx, argv);
  const json = argv.includes('--json');
  try {
    await program.parseAsync(argv);
  } catch (err) {
    process.exitCode = handleError(err, json);
  } finally {
    await ctx.close().catch(() => undefined);
  }
}

function handleError(err: unknown, json: boolean): number {
  if (err instanceof CommanderError) {
    // help and version are not errors; usage errors are bad input
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.ok;
    return EXIT.badInput;
  }
  if (err instanceof CliExit) {
    if (json && err.json !== undefined) printJson(err.json);
    else process.stderr.write(`ferry: ${err.message}\n`);
    return err.code;
  }
  const message = err instanceof Error ? err.message : String(err);
  if (json) printJson({ status: 'error', error: message });
  else process.stderr.write(`ferry: ${message}\n`);
  return EXIT.failure;
}
