/** `ferry hosts …`, `ferry vms list`, `ferry inventory sync`, `ferry history`. */
import type { Command } from 'commander';
import { HOST_STATES, type HostState } from '../common/types';
import { isHostRef } from '../common/names';
import { isSecureTransport, uriTransport } from '../common/libvirt-uri';
import { hostUri, transportLabel, type HostCredentialOptions } from './host-credentials';
import { formatDuration } from '../common/durations';
import { syncInventory } from '../inventory';
import type { CliContext } from './context';
import { CliExit, EXIT, envFlag, gib, printJson, printTable } from './output';
import { diskLayout } from '../common/storage';
import type { ReconciledVm } from '../common/reconcile';

export const ROOT_POOL = 'ferry-root';
export const DEFAULT_STORAGE_ROOT = '/var/lib/libvirt/images/ferry';

export function registerInventoryCommands(program: Command, ctx: CliContext): void {
  const hosts = program.command('hosts').description('hypervisor hosts in the inventory');

  hosts
    .command('add')
    .description('add a libvirt host, prepare its storage root pool and read its capacity and VMs')
    .argument('<name>', 'host name (unique)')
    .requiredOption('--address <address>', 'IP or DNS name of the host')
    .option(
      '--uri <uri>',
      'libvirt URI (default qemu+tcp://<address>/system); qemu+tls://<host>/system[?pkipath=DIR] and ' +
        'qemu+ssh://[user@]<host>/system[?keyfile=FILE&known_hosts=FILE] too; never a password in the URI',
    )
    .option('--tls-dir <dir>', "Ferry's TLS client certificate directory (cacert.pem, clientcert.pem, clientkey.pem): the URI's pkipath; default URI qemu+tls://<address>/system")
    .option('--ssh-key <file>', "SSH private key (the URI's keyfile); default URI qemu+ssh://root@<address>/system")
    .option('--known-hosts <file>', "SSH known_hosts file (the URI's known_hosts)")
    .option('--require-secure', 'refuse a plain qemu+tcp URI (FERRY_REQUIRE_SECURE=1 sets this default)')
    .option('--storage-root <dir>', 'directory for per-VM storage directories', DEFAULT_STORAGE_ROOT)
    .option('--state <state>', `initial state (${HOST_STATES.join(', ')})`, 'normal')
    .option('--no-prepare', 'do not define the storage root pool or sync (add the record only)')
    .option('--json', 'print the host as JSON')
    .action(async (name: string, o: HostCredentialOptions & { storageRoot: string; state: string; prepare: boolean; json?: boolean }) => {
      if (!isHostRef(name) || !isHostRef(o.address)) throw new CliExit(EXIT.badInput, 'host name and address must be letters, digits, ".", "-", "_" or ":"');
      if (!HOST_STATES.includes(o.state as HostState)) throw new CliExit(EXIT.badInput, `state must be one of ${HOST_STATES.join(', ')}`);
      if (!o.storageRoot.startsWith('/')) throw new CliExit(EXIT.badInput, '--storage-root must be an absolute path');
      const inv = await ctx.inventory();
      const uri = hostUri({ ...o, requireSecure: o.requireSecure ?? envFlag('FERRY_REQUIRE_SECURE') ?? false });
      // Reach the host first: a refused certificate or key adds nothing to the inventory.
      const hv = o.prepare ? await ctx.hypervisor() : null;
      if (hv) await hv.ensureStorageRootPool(uri, ROOT_POOL, o.storageRoot);
      await inv.addHost({ name, address: o.address, uri, storageRoot: o.storageRoot, state: o.state as HostState });
      if (hv) {
        const [r] = await syncInventory(inv, hv, { hosts: [name] });
        if (r?.error) process.stderr.write(`warning: ${name} added but not synced: ${r.error}\n`);
      }
      const host = await inv.getHost(name);
      if (o.json) printJson(host);
      else process.stdout.write(`added ${name} (${uri}, ${transportLabel(uriTransport(uri))})\n`);
    });

  hosts
    .command('list')
    .description('list hosts')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const inv = await ctx.inventory();
      const [list, vms, claims] = await Promise.all([inv.listHosts(), inv.listVms(), inv.listClaims()]);
      if (o.json) return printJson(list.map((h) => ({ ...h, transport: uriTransport(h.uri), secure: isSecureTransport(uriTransport(h.uri)) })));
      printTable(list, [
        { header: 'NAME', value: (h) => h.name },
        { header: 'ADDRESS', value: (h) => h.address },
        { header: 'STATE', value: (h) => h.state },
        { header: 'VMS', value: (h) => vms.filter((v) => v.host === h.name).length, align: 'right' },
        { header: 'MEMORY', value: (h) => `${h.memoryMiB} MiB`, align: 'right' },
        { header: 'VCPUS', value: (h) => h.vcpus, align: 'right' },
        { header: 'FREE STORAGE', value: (h) => gib(h.storageFreeBytes), align: 'right' },
        { header: 'RECEIVING', value: (h) => claims.filter((c) => c.host === h.name).map((c) => c.vmUuid).join(',') },
        { header: 'SECURITY', value: (h) => transportLabel(uriTransport(h.uri)) },
        { header: 'URI', value: (h) => h.uri },
      ]);
      const plain = list.filter((h) => !isSecureTransport(uriTransport(h.uri)));
      if (plain.length > 0) {
        process.stderr.write(
          `warning: ${plain.map((h) => h.name).join(', ')} reached over plain qemu+tcp: anyone on the network can drive ` +
            `${plain.length > 1 ? 'them' : 'it'} and migration streams cross in clear (re-add with qemu+tls:// --tls-dir, or qemu+ssh://)\n`,
        );
      }
    });

  hosts
    .command('set-state')
    .description(`set a host's state (${HOST_STATES.join(', ')}); only normal hosts receive migrations`)
    .argument('<name>')
    .argument('<state>')
    .action(async (name: string, state: string) => {
      if (!HOST_STATES.includes(state as HostState)) throw new CliExit(EXIT.badInput, `state must be one of ${HOST_STATES.join(', ')}`);
      const h = await (await ctx.inventory()).setHostState(name, state as HostState);
      process.stdout.write(`${h.name} is now ${h.state}\n`);
    });

  program
    .command('vms')
    .description('VMs in the inventory')
    .command('list')
    .option('--host <host>', 'only VMs on this host')
    .option('--json', 'print JSON')
    .action(async (o: { host?: string; json?: boolean }) => {
      const inv = await ctx.inventory();
      const host = o.host ? ((await inv.getHost(o.host))?.name ?? o.host) : undefined;
      const list = await inv.listVms(host ? { host } : {});
      const roots = new Map((await inv.listHosts()).map((h) => [h.name, h.storageRoot]));
      const layout = (v: (typeof list)[number]) => diskLayout(v.disks, roots.get(v.host) ?? '/');
      if (o.json) return printJson(list.map((v) => ({ ...v, layout: layout(v) })));
      printTable(list, [
        { header: 'NAME', value: (v) => v.name },
        { header: 'UUID', value: (v) => v.uuid },
        { header: 'HOST', value: (v) => v.host },
        { header: 'STATE', value: (v) => v.state },
        { header: 'MEMORY', value: (v) => `${v.memoryMiB} MiB`, align: 'right' },
        { header: 'VCPUS', value: (v) => v.vcpus, align: 'right' },
        { header: 'DISKS', value: (v) => v.disks.map((d) => `${d.target}:${d.name}(${gib(d.sizeBytes)})`).join(' ') },
        { header: 'LAYOUT', value: layout },
      ]);
    });

  program
    .command('inventory')
    .description('inventory maintenance')
    .command('sync')
    .description("read VMs, disks and host capacity from libvirt into the inventory")
    .option('--host <host...>', 'only these hosts')
    .option('--json', 'print JSON')
    .action(async (o: { host?: string[]; json?: boolean }) => {
      const inv = await ctx.inventory();
      const results = await syncInventory(inv, await ctx.hypervisor(), o.host ? { hosts: o.host } : {});
      if (o.json) printJson(results);
      else {
        printTable(results, [
          { header: 'HOST', value: (r) => r.host },
          { header: 'ADDED', value: (r) => r.added.join(',') },
          { header: 'UPDATED', value: (r) => r.updated.join(',') },
          { header: 'REMOVED', value: (r) => r.removed.join(',') },
          { header: 'IN FLIGHT', value: (r) => r.skipped.join(',') },
          { header: 'ERROR', value: (r) => r.error ?? '' },
        ]);
      }
      if (results.some((r) => r.error)) throw new CliExit(EXIT.failure, 'some hosts could not be read');
    });

  program
    .command('reconcile')
    .description('fix what migrations closed from outside (terminated) left: VM record, target claim, storage they created on the target')
    .option('--host <host...>', 'only migrations from or to these hosts')
    .option('--dry-run', 'report what would be done; change nothing')
    .option('--json', 'print JSON')
    .action(async (o: { host?: string[]; dryRun?: boolean; json?: boolean }) => {
      const ferry = await ctx.client();
      const reconciled = await ferry.reconcile({ ...(o.host ? { hosts: o.host } : {}), ...(o.dryRun ? { dryRun: true } : {}) });
      if (o.json) printJson({ dryRun: o.dryRun === true, reconciled });
      else printReconciled(reconciled, o.dryRun === true);
      const failed = reconciled.flatMap((r) => r.actions.filter((a) => a.error !== undefined));
      if (failed.length > 0) throw new CliExit(EXIT.failure, `${failed.length} action(s) failed; see ERROR above and run \`ferry reconcile\` again once the cause is fixed`);
    });

  program
    .command('history')
    .description('migration history (newest first)')
    .option('--vm <vm>', 'name or UUID')
    .option('--host <host>', 'as source or target')
    .option('--limit <n>', 'at most this many rows', '50')
    .option('--json', 'print JSON')
    .action(async (o: { vm?: string; host?: string; limit: string; json?: boolean }) => {
      const inv = await ctx.inventory();
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new CliExit(EXIT.badInput, '--limit must be a positive whole number');
      const rows = await inv.listHistory({ ...(o.vm ? { vm: o.vm } : {}), ...(o.host ? { host: o.host } : {}), limit });
      if (o.json) return printJson(rows);
      printTable(rows, [
        { header: 'WHEN', value: (r) => r.startedAt.replace('T', ' ').slice(0, 19) },
        { header: 'VM', value: (r) => r.vmName },
        { header: 'FROM', value: (r) => r.source },
        { header: 'TO', value: (r) => r.target },
        { header: 'RESULT', value: (r) => r.result },
        { header: 'DURATION', value: (r) => formatDuration(r.durationMs), align: 'right' },
        { header: 'DOWNTIME', value: (r) => (r.downtimeMs === null ? '-' : `${r.downtimeMs} ms`), align: 'right' },
        { header: 'ATTEMPTS', value: (r) => Object.entries(r.createAttempts).filter(([, n]) => n > 1).map(([t, n]) => `${t}=${n}`).join(' ') },
        { header: 'REASON', value: (r) => r.reason ?? '' },
      ]);
    });
}

function printReconciled(reconciled: readonly ReconciledVm[], dryRun: boolean): void {
  if (reconciled.length === 0) {
    process.stdout.write('nothing to reconcile: every claim and migrating VM belongs to a running workflow\n');
    return;
  }
  const rows = reconciled.flatMap((r) => r.actions.map((a) => ({ r, a })));
  printTable(rows, [
    { header: 'VM', value: ({ r }) => r.vm },
    { header: 'WORKFLOW', value: ({ r }) => `${r.workflowId} (${r.workflow})` },
    { header: 'RUNS ON', value: ({ r }) => (r.location === 'source' ? r.source : r.location === 'target' ? r.target : r.location) },
    { header: 'ACTION', value: ({ a }) => a.action },
    { header: dryRun ? 'WOULD' : 'DONE', value: ({ a }) => (dryRun ? 'yes' : a.done ? 'yes' : 'no') },
    { header: 'DETAIL', value: ({ a }) => a.detail },
    { header: 'ERROR', value: ({ a }) => a.error ?? '' },
  ]);
}
