/**
 * One Ferry worker in its own process for bench/throughput.ts, on the benchmark hypervisor (no libvirt),
 * so that its CPU time and memory are the worker's alone. Started with run() (argv, no shell):
 *
 *   node -r test/support/register-ts.cjs bench/throughput-worker.ts --address HOST:PORT --task-queue Q
 *        --inventory FILE --bundle FILE --options JSON --dir DIR [--migration-ms MS]
 *
 * --migration-ms: how long each simulated migration job runs (default 0: the next timer tick); bench/cluster.ts
 * holds migrations in flight with it. DIR/status.json is rewritten with each sample (and the jobs running).
 * The benchmark hypervisor's hosts and VMs are built from the inventory (every VM running where the inventory
 * says). Writes DIR/ready when polling; every 250 ms it samples its CPU time and RSS; when DIR/stop appears it
 * shuts down and prints its samples as one JSON line.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type WorkerOptions } from '@temporalio/worker';
import { openInventory } from '../inventory';
import { createFerryWorker } from '../worker';
import { benchmarkHypervisorFor } from './benchmark-hypervisor';

export interface WorkerSample {
  t: number;
  /** Process CPU time since start, ms (user + system, every thread incl. the Rust core). */
  cpuMs: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** Migration jobs running in the benchmark hypervisor at that moment. */
  running: number;
}

function optArg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (v === undefined) throw new Error(`--${name} is required`);
  return v;
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const dir = arg('dir');
  const options = JSON.parse(arg('options')) as Partial<WorkerOptions>;
  const inventory = await openInventory(arg('inventory'));
  const hv = await benchmarkHypervisorFor(inventory);
  hv.migrationMs = Number(optArg('migration-ms') ?? 0);
  const address = arg('address');
  const connection = await NativeConnection.connect({ address });
  const clientConnection = await Connection.connect({ address });
  const worker = await createFerryWorker({
    connection,
    namespace: 'default',
    taskQueue: arg('task-queue'),
    inventory,
    hypervisor: hv,
    client: new Client({ connection: clientConnection, namespace: 'default' }),
    workerOptions: { ...options, workflowBundle: { codePath: arg('bundle') } },
  });
  const samples: WorkerSample[] = [];
  const sample = () => {
    const cpu = process.cpuUsage();
    const mem = process.memoryUsage();
    const running = [...hv.hosts.values()].reduce((n, h) => n + h.jobs.size, 0);
    const s: WorkerSample = { t: Date.now(), cpuMs: (cpu.user + cpu.system) / 1000, rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, running };
    samples.push(s);
    fs.writeFileSync(path.join(dir, 'status.json.tmp'), JSON.stringify(s));
    fs.renameSync(path.join(dir, 'status.json.tmp'), path.join(dir, 'status.json'));
  };
  const running = worker.run();
  sample();
  fs.writeFileSync(path.join(dir, 'ready'), '');
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      sample();
      if (fs.existsSync(path.join(dir, 'stop'))) {
        clearInterval(timer);
        resolve();
      }
    }, 250);
  });
  worker.shutdown();
  await running;
  await inventory.close();
  await clientConnection.close();
  await connection.close();
  process.stdout.write(`${JSON.stringify(samples)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error('throughput worker failed:', err);
    process.exit(1);
  },
);
