/**
 * Workflow throughput: how many liveMigration workflows per second ONE Ferry worker drives through the full
 * step sequence (validate, read the VM, claim, 3 create tasks, migrate, locate, record, clean the source,
 * refresh capacity, history) when libvirt is replaced by the benchmark hypervisor (bench/benchmark-hypervisor.ts).
 * Everything else is real: the Temporal dev server, the bundled workflow in the SDK sandbox, the activities,
 * the SQLite inventory file.
 *
 * Per worker configuration: a fresh inventory (10 hosts, one VM per workflow, spread over the hosts), a
 * fresh worker process (bench/throughput-worker.ts), 10 warm-up workflows, then N workflows started at once;
 * throughput = N / (first start → last completion). The worker's CPU and RSS are sampled every 250 ms and
 * reported over the steady window (the middle 80 % of the run), as is the dev server's CPU (/proc). Limits are
 * raised to 100/100/100 (the default 5 in flight would measure the limit, not the worker).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import type { WorkerOptions } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { run } from '../hypervisor/exec';
import { openInventory } from '../inventory';
import { workflowsPath } from '../worker';
import type { MigrationReport } from '../common/migration';
import { WORKFLOW_TYPES } from '../workflows/definitions';
import { startTemporal } from '../test/support/temporal';
import { load1, log, REPO, sleep, summarize, table, type Summary } from './common';
import type { WorkerSample } from './throughput-worker';

export const THROUGHPUT_CONFIGS: Record<string, { what: string; options: Partial<WorkerOptions> }> = {
  defaults: { what: 'SDK defaults (what `ferry worker` runs): 40 workflow tasks / 100 activities at once, 10+10 pollers', options: {} },
  small: {
    what: 'fewer slots: 4 workflow tasks / 16 activities at once',
    options: { maxConcurrentWorkflowTaskExecutions: 4, maxConcurrentActivityTaskExecutions: 16 },
  },
  large: {
    what: 'more slots: 200 workflow tasks / 400 activities at once, cache 2000',
    options: { maxConcurrentWorkflowTaskExecutions: 200, maxConcurrentActivityTaskExecutions: 400, maxCachedWorkflows: 2000 },
  },
  autoscale: {
    what: 'autoscaling pollers (1..100, initial 5) for workflow and activity tasks',
    options: {
      workflowTaskPollerBehavior: { type: 'autoscaling', minimum: 1, initial: 5, maximum: 100 },
      activityTaskPollerBehavior: { type: 'autoscaling', minimum: 1, initial: 5, maximum: 100 },
    } as Partial<WorkerOptions>,
  },
  'no-cache': {
    what: 'workflow cache off (maxCachedWorkflows 0): every task replays the history',
    options: { maxCachedWorkflows: 0 },
  },
};

export interface ThroughputOptions {
  workflows: number;
  configs: string[];
}

export interface ThroughputConfigResult {
  config: string;
  what: string;
  workflows: number;
  completed: number;
  failed: number;
  wallMs: number;
  perSecond: number;
  latency: Summary;
  /** Workflow started → its first activity started (server timestamps), under the burst. */
  firstActivity?: Summary;
  /** The same and start → completion for workflows run one at a time after the burst. */
  idle?: { firstActivity: Summary; complete: Summary };
  workerCpuPercent: number;
  workerRssMiB: { steady: number; max: number };
  serverCpuPercent: number | null;
  historyEvents: number;
  activities: number;
}

export interface ThroughputResult {
  options: ThroughputOptions;
  results: ThroughputConfigResult[];
  load: [number, number];
}

const ROOT = '/var/lib/libvirt/images/ferry';
const HOSTS = 10;
export const LIMITS = { maxOutboundPerHost: 100, maxInboundPerHost: 100, maxInFlight: 100 };

/** The dev server's pid, from /proc (the process whose command line has start-dev and our port). */
function serverPid(port: string): number | null {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (cmd.includes('start-dev') && cmd.includes(port)) return Number(d);
    } catch {
      /* gone */
    }
  }
  return null;
}

export function procCpuMs(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]); // utime + stime
    return (ticks * 1000) / 100; // USER_HZ = 100 on Linux
  } catch {
    return null;
  }
}

export async function seedInventory(file: string, vms: number): Promise<{ uuid: string; name: string; address: string }[]> {
  const inv = await openInventory(file);
  try {
    for (let i = 1; i <= HOSTS; i++) {
      await inv.addHost({
        name: `b${i}`,
        address: `10.99.0.${i}`,
        uri: `mem://b${i}/system`,
        storageRoot: ROOT,
        memoryMiB: 1024 * 1024,
        vcpus: 256,
        storageFreeBytes: 100 * 2 ** 40,
      });
    }
    const out: { uuid: string; name: string; address: string }[] = [];
    for (let i = 0; i < vms; i++) {
      const uuid = `bbbbbbbb-0000-4000-8000-${String(i).padStart(12, '0')}`;
      const host = (i % HOSTS) + 1;
      await inv.upsertVm({
        uuid,
        name: `tvm${i}`,
        host: `b${host}`,
        memoryMiB: 128,
        vcpus: 1,
        state: 'running',
        disks: [{ target: 'vda', name: 'disk0.qcow2', path: `${ROOT}/${uuid}/disk0.qcow2`, format: 'qcow2', sizeBytes: 64 * 2 ** 20 }],
      });
      out.push({ uuid, name: `tvm${i}`, address: `10.99.0.${host}` });
    }
    return out;
  } finally {
    await inv.close();
  }
}

export async function runConfig(
  env: TestWorkflowEnvironment,
  bundle: string,
  config: string,
  n: number,
  serverPidOf: (env: TestWorkflowEnvironment) => number | null = devServerPid,
): Promise<ThroughputConfigResult> {
  const spec = THROUGHPUT_CONFIGS[config];
  if (!spec) throw new Error(`unknown throughput configuration ${config}; known: ${Object.keys(THROUGHPUT_CONFIGS).join(', ')}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-tp-'));
  const taskQueue = `bench-tp-${config}-${Date.now()}`;
  const warm = 10;
  try {
    const vms = await seedInventory(path.join(dir, 'inventory.db'), warm + n + IDLE_RUNS);
    const worker = await startBenchWorker({ address: env.address, bundle, taskQueue, inventory: path.join(dir, 'inventory.db'), dir, options: spec.options });
    const client = env.client;
    const start = (vm: { uuid: string; name: string; address: string }) =>
      client.workflow.start(WORKFLOW_TYPES.liveMigration, {
        taskQueue,
        workflowId: `ferry-migrate-${vm.uuid}`,
        args: [{ sourceHost: vm.address, vmName: vm.name, vmUuid: vm.uuid, limits: LIMITS }],
      });
    // warm-up
    await Promise.all(vms.slice(0, warm).map(async (vm) => (await start(vm)).result()));

    const pid = serverPidOf(env);
    const serverSamples: { t: number; cpuMs: number }[] = [];
    const sampler = setInterval(() => {
      const c = pid === null ? null : procCpuMs(pid);
      if (c !== null) serverSamples.push({ t: Date.now(), cpuMs: c });
    }, 250);
    const t0 = Date.now();
    const latencies: number[] = [];
    let failed = 0;
    let lastEnd = t0;
    let sampleHistory = '';
    await Promise.all(
      vms.slice(warm, warm + n).map(async (vm) => {
        const s = Date.now();
        try {
          const handle = await start(vm);
          const report = (await handle.result()) as MigrationReport;
          if (report.status !== 'migrated') failed++;
          sampleHistory ||= handle.workflowId;
        } catch {
          failed++;
        }
        const e = Date.now();
        lastEnd = Math.max(lastEnd, e);
        latencies.push(e - s);
      }),
    );
    clearInterval(sampler);
    const wallMs = lastEnd - t0;
    const firstActivity = summarize(await Promise.all(vms.slice(warm, warm + n).map((vm) => firstActivityMs(client, `ferry-migrate-${vm.uuid}`))));
    // Idle: one workflow at a time (nothing else in flight), what an operator's single `ferry migrate` sees.
    const idleFirst: number[] = [];
    const idleComplete: number[] = [];
    for (const vm of vms.slice(warm + n)) {
      const s0 = Date.now();
      const handle = await start(vm);
      await handle.result();
      idleComplete.push(Date.now() - s0);
      idleFirst.push(await firstActivityMs(client, handle.workflowId));
    }
    const samples = await worker.stop();

    // steady window: the middle 80 % of the measured run
    const w0 = t0 + wallMs * 0.1;
    const w1 = t0 + wallMs * 0.9;
    const inWindow = samples.filter((x) => x.t >= w0 && x.t <= w1);
    const first = inWindow[0];
    const last = inWindow[inWindow.length - 1];
    const workerCpuPercent = first && last && last.t > first.t ? ((last.cpuMs - first.cpuMs) / (last.t - first.t)) * 100 : NaN;
    const sw = serverSamples.filter((x) => x.t >= w0 && x.t <= w1);
    const s0 = sw[0];
    const s1 = sw[sw.length - 1];
    const serverCpuPercent = s0 && s1 && s1.t > s0.t ? ((s1.cpuMs - s0.cpuMs) / (s1.t - s0.t)) * 100 : null;

    let historyEvents = 0;
    let activities = 0;
    if (sampleHistory) {
      const history = await client.workflow.getHandle(sampleHistory).fetchHistory();
      historyEvents = history.events?.length ?? 0;
      activities = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes).length;
    }
    const result: ThroughputConfigResult = {
      config,
      what: spec.what,
      workflows: n,
      completed: n - failed,
      failed,
      wallMs,
      perSecond: ((n - failed) / wallMs) * 1000,
      latency: summarize(latencies),
      firstActivity,
      idle: { firstActivity: summarize(idleFirst), complete: summarize(idleComplete) },
      workerCpuPercent,
      workerRssMiB: {
        steady: inWindow.length ? Math.round(summarize(inWindow.map((x) => x.rssBytes)).p50 / 2 ** 20) : NaN,
        max: samples.length ? Math.round(Math.max(...samples.map((x) => x.rssBytes)) / 2 ** 20) : NaN,
      },
      serverCpuPercent,
      historyEvents,
      activities,
    };
    log(
      `throughput ${config}: ${result.perSecond.toFixed(1)} workflows/s (${result.completed}/${n} in ${(wallMs / 1000).toFixed(1)} s), ` +
        `worker CPU ${workerCpuPercent.toFixed(0)} %, RSS ${result.workerRssMiB.steady} MiB, server CPU ${serverCpuPercent?.toFixed(0)} %`,
    );
    return result;
  } finally {
    fs.writeFileSync(path.join(dir, 'stop'), '');
    await sleep(300);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const IDLE_RUNS = 20;

/** The dev server's pid for an environment on its port. */
export function devServerPid(env: TestWorkflowEnvironment): number | null {
  return serverPid(env.address.split(':').pop() ?? '');
}

/** Milliseconds from WorkflowExecutionStarted to the first ActivityTaskStarted (the server's own timestamps). */
export async function firstActivityMs(client: TestWorkflowEnvironment['client'], workflowId: string): Promise<number> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const ms = (e: { eventTime?: { seconds?: unknown; nanos?: number | null } | null } | undefined) =>
    e?.eventTime ? Number(e.eventTime.seconds) * 1000 + (e.eventTime.nanos ?? 0) / 1e6 : NaN;
  const events = history.events ?? [];
  return ms(events.find((e) => e.activityTaskStartedEventAttributes)) - ms(events[0]);
}

export interface BenchWorker {
  stop(): Promise<WorkerSample[]>;
  /** The worker's last sample (DIR/status.json). */
  status(): WorkerSample | null;
}

/** bench/throughput-worker.ts in its own process, polling once this resolves. */
export async function startBenchWorker(o: {
  address: string;
  bundle: string;
  taskQueue: string;
  inventory: string;
  dir: string;
  options: Partial<WorkerOptions>;
  migrationMs?: number;
}): Promise<BenchWorker> {
  const child = run(
    process.execPath,
    [
      '--require', path.join(REPO, 'test/support/register-ts.cjs'), path.join(__dirname, 'throughput-worker.ts'),
      '--address', o.address, '--task-queue', o.taskQueue, '--inventory', o.inventory,
      '--bundle', o.bundle, '--options', JSON.stringify(o.options), '--dir', o.dir,
      ...(o.migrationMs !== undefined ? ['--migration-ms', String(o.migrationMs)] : []),
    ],
    { timeoutMs: 60 * 60_000, maxBuffer: 256 * 1024 * 1024 },
  );
  let failed: unknown = null;
  child.catch((e: unknown) => (failed = e));
  while (!fs.existsSync(path.join(o.dir, 'ready'))) {
    if (failed) throw failed;
    await sleep(50);
  }
  return {
    async stop() {
      fs.writeFileSync(path.join(o.dir, 'stop'), '');
      const { stdout } = await child;
      return JSON.parse(stdout.trim().split('\n').pop() ?? '[]') as WorkerSample[];
    },
    status() {
      try {
        return JSON.parse(fs.readFileSync(path.join(o.dir, 'status.json'), 'utf8')) as WorkerSample;
      } catch {
        return null;
      }
    },
  };
}

export async function throughputBench(o: ThroughputOptions): Promise<ThroughputResult> {
  const before = load1();
  const env = await startTemporal();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-bundle-'));
  try {
    const { code } = await bundleWorkflowCode({ workflowsPath: workflowsPath(), logger: new DefaultLogger('WARN') });
    const bundle = path.join(dir, 'workflows.js');
    fs.writeFileSync(bundle, code);
    const results: ThroughputConfigResult[] = [];
    for (const config of o.configs) results.push(await runConfig(env, bundle, config, o.workflows));
    return { options: o, results, load: [before, load1()] };
  } finally {
    await env.teardown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function throughputMarkdown(r: ThroughputResult): string {
  const first = r.results[0];
  const rows = r.results.map((x) => [
    `\`${x.config}\``,
    x.what,
    `${x.completed}/${x.workflows}`,
    x.perSecond.toFixed(1),
    `${(x.latency.p50 / 1000).toFixed(1)} / ${(x.latency.max / 1000).toFixed(1)} s`,
    `${x.workerCpuPercent.toFixed(0)} %`,
    `${x.workerRssMiB.steady} MiB (max ${x.workerRssMiB.max})`,
    x.serverCpuPercent === null ? '–' : `${x.serverCpuPercent.toFixed(0)} %`,
  ]);
  return [
    `One worker process, ${r.options.workflows} liveMigration workflows started at once per configuration (after 10 warm-up ` +
      `workflows), each through the full step sequence on the benchmark hypervisor ` +
      `(${first ? `${first.activities} activities, ${first.historyEvents} history events per workflow` : ''}). ` +
      'CPU is per cent of one core (200 % = both cores of this machine), over the middle 80 % of the run. ' +
      `Load average during the run: ${r.load[0]} → ${r.load[1]}.`,
    '',
    table(['config', 'worker options', 'migrated', 'workflows/s', 'latency p50 / max', 'worker CPU', 'worker RSS (steady)', 'dev server CPU'], rows),
  ].join('\n');
}
