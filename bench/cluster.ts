/**
 * The real Temporal server (`ferry cluster`: go.temporal.io/server on PostgreSQL) against the dev server
 * (`temporal server start-dev`, SQLite), with the same benchmark adapter as bench/throughput.ts: one worker
 * process on the benchmark hypervisor, the `defaults` worker options, N liveMigration workflows at once, then
 * 20 one at a time. Reported per server: workflows/s, start → first activity (server timestamps) under the burst
 * and idle, start → completion idle, the server's CPU.
 *
 * Then, on the real server: what one in-flight migration costs the worker. The benchmark hypervisor's jobs run
 * `migrationMs` (45 s), so K migrations sit in their migrate activity at once (heartbeating, polling job
 * statistics, signalling progress to their workflow every second); for K = 0, 10, 25, 50, 100 the worker's RSS,
 * V8 heap and CPU are read over a 10 s window once all K run, and a least-squares line through them gives the
 * cost per in-flight migration.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { activeCluster } from '../client/cluster-target';
import { clusterDown, clusterUp } from '../cluster';
import { workflowsPath } from '../worker';
import { WORKFLOW_TYPES } from '../workflows/definitions';
import { startTemporal } from '../test/support/temporal';
import { load1, log, sleep, table } from './common';
import { devServerPid, LIMITS, runConfig, seedInventory, startBenchWorker, type ThroughputConfigResult } from './throughput';

export interface ClusterBenchOptions {
  workflows: number;
  inflight: number[];
  migrationMs: number;
}

export interface InflightPoint {
  inflight: number;
  rssMiB: number;
  heapMiB: number;
  cpuPercent: number;
}

export interface ClusterBenchResult {
  options: ClusterBenchOptions;
  servers: { server: 'dev' | 'real'; what: string; result: ThroughputConfigResult }[];
  inflight: InflightPoint[];
  perMigration: { rssKiB: number; heapKiB: number; cpuPercent: number };
  load: [number, number];
}

const CLUSTER = { prefix: 'fcb', subnet: process.env.FERRY_BENCH_CLUSTER_SUBNET || '10.213.104', pgPort: 5436 };

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += ((xs[i] ?? 0) - mx) * ((ys[i] ?? 0) - my);
    den += ((xs[i] ?? 0) - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

async function inflightCost(env: TestWorkflowEnvironment, bundle: string, o: ClusterBenchOptions): Promise<InflightPoint[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-inflight-'));
  const total = o.inflight.reduce((a, b) => a + b, 0);
  const taskQueue = `bench-inflight-${Date.now()}`;
  try {
    const vms = await seedInventory(path.join(dir, 'inventory.db'), total + 5);
    const worker = await startBenchWorker({ address: env.address, bundle, taskQueue, inventory: path.join(dir, 'inventory.db'), dir, options: {}, migrationMs: o.migrationMs });
    const start = (vm: { uuid: string; name: string; address: string }) =>
      env.client.workflow.start(WORKFLOW_TYPES.liveMigration, {
        taskQueue,
        workflowId: `ferry-migrate-${vm.uuid}`,
        args: [{ sourceHost: vm.address, vmName: vm.name, vmUuid: vm.uuid, limits: LIMITS, timeout: '10m' }],
      });
    // warm-up: the workflow bundle loaded, one migration through
    await (await start(vms[total]!)).result();
    const points: InflightPoint[] = [];
    let next = 0;
    for (const k of o.inflight) {
      const batch = vms.slice(next, next + k);
      next += k;
      const handles = await Promise.all(batch.map(start));
      const deadline = Date.now() + 60_000;
      while ((worker.status()?.running ?? -1) < k) {
        if (Date.now() > deadline) throw new Error(`only ${worker.status()?.running} of ${k} migrations running after 60 s`);
        await sleep(200);
      }
      await sleep(2_000);
      const a = worker.status();
      await sleep(10_000);
      const b = worker.status();
      if (!a || !b) throw new Error('no worker status');
      if (b.running < k) throw new Error(`migrations finished inside the window (${b.running} of ${k} left): raise migrationMs`);
      const p: InflightPoint = {
        inflight: k,
        rssMiB: b.rssBytes / 2 ** 20,
        heapMiB: b.heapUsedBytes / 2 ** 20,
        cpuPercent: ((b.cpuMs - a.cpuMs) / (b.t - a.t)) * 100,
      };
      points.push(p);
      log(`in flight ${k}: worker RSS ${p.rssMiB.toFixed(0)} MiB, heap ${p.heapMiB.toFixed(0)} MiB, CPU ${p.cpuPercent.toFixed(1)} %`);
      await Promise.all(handles.map((h) => h.result()));
    }
    await worker.stop();
    return points;
  } finally {
    fs.writeFileSync(path.join(dir, 'stop'), '');
    await sleep(300);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function clusterBench(o: ClusterBenchOptions): Promise<ClusterBenchResult> {
  const before = load1();
  const bundleDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-bundle-'));
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-cluster-'));
  try {
    const { code } = await bundleWorkflowCode({ workflowsPath: workflowsPath(), logger: new DefaultLogger('WARN') });
    const bundle = path.join(bundleDir, 'workflows.js');
    fs.writeFileSync(bundle, code);
    const servers: ClusterBenchResult['servers'] = [];

    const dev = await startTemporal();
    try {
      log('cluster bench: the dev server');
      servers.push({ server: 'dev', what: '`temporal server start-dev` (CLI 1.9.1, server 1.32.0, in-memory SQLite)', result: await runConfig(dev, bundle, 'defaults', o.workflows) });
    } finally {
      await dev.teardown();
    }

    log('cluster bench: ferry cluster up (real server on PostgreSQL)');
    const status = await clusterUp({ home, workers: 0, ...CLUSTER, log });
    const endpoint = activeCluster(home);
    if (!endpoint || status.temporal.pid === null) throw new Error('the cluster did not come up');
    const real = await TestWorkflowEnvironment.createFromExistingServer({ address: endpoint.temporalAddress, namespace: 'default' });
    let inflight: InflightPoint[];
    try {
      const pid = status.temporal.pid;
      servers.push({
        server: 'real',
        what: `\`ferry cluster\`: server ${status.temporal.version} built from go.temporal.io/server, PostgreSQL ${status.postgres.cluster}, 4 history shards`,
        result: await runConfig(real, bundle, 'defaults', o.workflows, () => pid),
      });
      inflight = await inflightCost(real, bundle, o);
    } finally {
      await real.teardown();
    }
    const ks = inflight.map((p) => p.inflight);
    return {
      options: o,
      servers,
      inflight,
      perMigration: {
        rssKiB: slope(ks, inflight.map((p) => p.rssMiB)) * 1024,
        heapKiB: slope(ks, inflight.map((p) => p.heapMiB)) * 1024,
        cpuPercent: slope(ks, inflight.map((p) => p.cpuPercent)),
      },
      load: [before, load1()],
    };
  } finally {
    await clusterDown({ home, purge: true }).catch((e: unknown) => log(`cluster down: ${String(e)}`));
    fs.rmSync(home, { recursive: true, force: true });
    fs.rmSync(bundleDir, { recursive: true, force: true });
  }
}

export function clusterMarkdown(r: ClusterBenchResult): string {
  const s = (x: { p50: number; max: number } | undefined) => (x ? `${x.p50.toFixed(0)} / ${x.max.toFixed(0)} ms` : '–');
  const rows = r.servers.map(({ server, what, result: x }) => [
    server,
    what,
    `${x.completed}/${x.workflows}`,
    x.perSecond.toFixed(1),
    s(x.firstActivity),
    s(x.idle?.firstActivity),
    s(x.idle?.complete),
    `${x.workerCpuPercent.toFixed(0)} %`,
    x.serverCpuPercent === null ? '–' : `${x.serverCpuPercent.toFixed(0)} %`,
  ]);
  const inflightRows = r.inflight.map((p) => [String(p.inflight), p.rssMiB.toFixed(0), p.heapMiB.toFixed(1), p.cpuPercent.toFixed(1)]);
  return [
    `Same adapter as §5 (one worker process, \`defaults\` options, the benchmark hypervisor, a SQLite inventory): ${r.options.workflows} ` +
      'liveMigration workflows started at once, then 20 one at a time. "First activity" is WorkflowExecutionStarted → the first ' +
      "ActivityTaskStarted, from the server's timestamps; p50 / max. CPU is per cent of one core over the middle 80 % of the burst. " +
      `Load average: ${r.load[0]} → ${r.load[1]}.`,
    '',
    table(['server', 'what', 'migrated', 'workflows/s', 'first activity (burst)', 'first activity (idle)', 'complete (idle)', 'worker CPU', 'server CPU'], rows),
    '',
    `**Worker cost per in-flight migration** (real server; each simulated job runs ${r.options.migrationMs / 1000} s, so K migrations ` +
      'sit in their migrate activity — heartbeating, polling job statistics, signalling progress each second; read over 10 s once all K run):',
    '',
    table(['in flight', 'worker RSS MiB', 'V8 heap MiB', 'worker CPU %'], inflightRows),
    '',
    `Least-squares per migration: **${r.perMigration.rssKiB.toFixed(0)} KiB RSS**, ${r.perMigration.heapKiB.toFixed(0)} KiB of V8 heap, ` +
      `**${r.perMigration.cpuPercent.toFixed(2)} % of a core**.`,
  ].join('\n');
}
