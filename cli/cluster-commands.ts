/**
 * `ferry cluster up|down|status`: a real Temporal server on PostgreSQL with N workers, each in its own network
 * namespace (cluster/). While it is up, every other command uses its Temporal and its inventory.
 */
import type { Command } from 'commander';
import type { ClusterStatus } from '../cluster';
import type { CliContext } from './context';
import { CliExit, EXIT, printJson } from './output';

const clusterModule = (): typeof import('../cluster') => require('../cluster');
const log = (line: string) => process.stderr.write(`${line}\n`);

function printStatus(s: ClusterStatus): void {
  const lines = [
    `Temporal ${s.temporal.version} on ${s.temporal.address} (${s.temporal.pid === null ? 'down' : `pid ${s.temporal.pid}`})`,
    s.temporal.ui ? `Web UI ${s.temporal.ui.url}/namespaces/default/workflows (${s.temporal.ui.pid === null ? 'down' : `pid ${s.temporal.ui.pid}`})` : 'Web UI: not built',
    `PostgreSQL ${s.postgres.cluster} on port ${s.postgres.port}, inventory ${s.postgres.url}`,
    ...s.workers.map((w) => `worker ${w.index}: ${w.pid === null ? 'down' : `pid ${w.pid}`}, netns ${w.netns} (${w.address}), identity ${w.identity}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function registerClusterCommands(program: Command, ctx: CliContext): void {
  const cmd = program.command('cluster').description('a Temporal server on PostgreSQL + N workers in their own network namespaces (root only)');
  cmd
    .command('up')
    .description('start it in the background (idempotent: restarts what is down)')
    .option('--workers <n>', 'worker machines (1-8; default 2, or as last time)')
    .option('--subnet <a.b.c>', "the cluster network's /24 (default 10.213.100, FERRY_CLUSTER_SUBNET)")
    .option('--json', 'print the status as JSON')
    .action(async (o: { workers?: string; subnet?: string; json?: boolean }) => {
      const workers = o.workers === undefined ? undefined : Number(o.workers);
      if (workers !== undefined && (!/^\d+$/.test(o.workers ?? '') || workers < 1 || workers > 8)) {
        throw new CliExit(EXIT.badInput, `--workers must be a whole number from 1 to 8 (got ${o.workers})`);
      }
      const s = await clusterModule().clusterUp({ home: ctx.home, log, ...(workers !== undefined ? { workers } : {}), ...(o.subnet ? { subnet: o.subnet } : {}) });
      if (o.json) printJson(s);
      else printStatus(s);
    });
  cmd
    .command('down')
    .description('stop the workers, the server, the UI and PostgreSQL (its data stays)')
    .option('--purge', 'also drop the PostgreSQL cluster and its data')
    .action(async (o: { purge?: boolean }) => clusterModule().clusterDown({ home: ctx.home, log, purge: o.purge === true }));
  cmd
    .command('status')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const s = await clusterModule().clusterStatus(ctx.home);
      if (o.json) printJson(s);
      else printStatus(s);
    });
}
