/**
 * The `ferry` command as a user runs it: a new process from start to exit, the compiled CLI (dist/, as
 * bin/ferry.js and `npm link` run it). Run `npm run build` first.
 *
 *   startup  `ferry hosts list` and `ferry vms list --json` against a SQLite inventory, wall time of each
 *            process (N runs, median), beside `node -e 0` (Node's own start-up on this machine).
 *   e2e      on a 2-host lab (its 128 MiB VM): `ferry migrate --vm <uuid> --json` (the CLI process, against a
 *            Temporal dev server and a `ferry worker` process, as after `ferry dev up`) vs the same work by hand
 *            with virsh (bench/raw-virsh.ts: directory, pool and volume on the target, `virsh migrate --live
 *            --p2p --copy-storage-all --persistent --undefinesource`, the source's disk, pool and directory
 *            removed), each timed from process start to exit. Rounds alternate the order (ABBA) and the VM
 *            ping-pongs, so both methods go first as often and move the VM in both directions. After a by-hand
 *            migration the inventory is re-synced (untimed), as an operator would.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CommandError, run, startProcess } from '../hypervisor/exec';
import { VirshHypervisor } from '../hypervisor/virsh';
import { openInventory, syncInventory, type Inventory } from '../inventory';
import { labDown, labUp, LAB_DISK_NAME, LAB_STORAGE_ROOT, type LabHost, type LabStatus, type LabVm } from '../lab';
import { registerLab } from '../lab/register';
import { labNaming } from '../test/support/lab-naming';
import { startTemporal } from '../test/support/temporal';
import { abbaOrder, log, median, medRange, ratio, REPO, table } from './common';
import { rawMigration } from './raw-virsh';

const FERRY_BIN = path.join(REPO, 'bin', 'ferry.js');

export interface StartupResult {
  runs: number;
  nodeMs: number[];
  hostsListMs: number[];
  vmsListJsonMs: number[];
}

export interface E2eRound {
  method: 'ferry' | 'virsh';
  direction: string;
  wallMs: number;
  /** Ferry's own report: the workflow's duration and its phases. */
  durationMs?: number;
  phaseMs?: Record<string, number>;
}

export interface E2eResult {
  rounds: number;
  runs: E2eRound[];
}

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
  wallMs: number;
}

/** Runs a program to its exit (hypervisor/exec.ts run: argv, no shell); wall time from spawn to exit. */
async function timed(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Exit> {
  const t0 = performance.now();
  try {
    const r = await run(cmd, args, { env, timeoutMs: 10 * 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr, wallMs: performance.now() - t0 };
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    return { code: err.exitCode, stdout: err.stdout, stderr: err.stderr, wallMs: performance.now() - t0 };
  }
}

function requireBuild(): void {
  if (!fs.existsSync(path.join(REPO, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` before the cli suites');
}

// ---- startup --------------------------------------------------------------------------------------------

export async function startupBench(o: { runs: number }): Promise<StartupResult> {
  requireBuild();
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-cli-'));
  const env = { FERRY_HOME: home, FERRY_INVENTORY: path.join(home, 'inventory.db') };
  const inv = await openInventory(env.FERRY_INVENTORY);
  for (let i = 1; i <= 3; i++) await inv.addHost({ name: `h${i}`, address: `10.0.0.${i}`, uri: `qemu+tcp://10.0.0.${i}/system`, memoryMiB: 4096, vcpus: 4 });
  await inv.close();
  const out: StartupResult = { runs: o.runs, nodeMs: [], hostsListMs: [], vmsListJsonMs: [] };
  try {
    await timed(process.execPath, [FERRY_BIN, 'hosts', 'list'], env); // warm the page cache
    for (let i = 0; i < o.runs; i++) {
      out.nodeMs.push((await timed(process.execPath, ['-e', '0'], env)).wallMs);
      const hosts = await timed(process.execPath, [FERRY_BIN, 'hosts', 'list'], env);
      if (hosts.code !== 0) throw new Error(`ferry hosts list exited ${hosts.code}: ${hosts.stderr}`);
      out.hostsListMs.push(hosts.wallMs);
      const vms = await timed(process.execPath, [FERRY_BIN, 'vms', 'list', '--json'], env);
      if (vms.code !== 0) throw new Error(`ferry vms list --json exited ${vms.code}: ${vms.stderr}`);
      out.vmsListJsonMs.push(vms.wallMs);
    }
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
  log(`startup: hosts list ${median(out.hostsListMs).toFixed(0)} ms, vms list --json ${median(out.vmsListJsonMs).toFixed(0)} ms, node -e 0 ${median(out.nodeMs).toFixed(0)} ms`);
  return out;
}

export function startupMarkdown(r: StartupResult): string {
  const row = (what: string, xs: number[]) => [what, medRange(xs, 'ms', 0)];
  return [
    `Each a new process, wall time from spawn to exit, ${r.runs} runs each (median, min–max); the compiled CLI (\`node bin/ferry.js\`, dist/), a SQLite inventory of 3 hosts. Target ≤ 150 ms.`,
    '',
    table(['command', 'wall'], [row('`ferry hosts list`', r.hostsListMs), row('`ferry vms list --json`', r.vmsListJsonMs), row('`node -e 0` (Node itself)', r.nodeMs)]),
    '',
    'A command loads only the module that registers it (cli/main.ts `COMMAND_MODULES`), and its actions load what they use when they run: the inventory commands never load the Temporal SDK, the lab, the worker, virsh\'s parsers or node-postgres.',
  ].join('\n');
}

// ---- end to end -------------------------------------------------------------------------------------------

interface E2eWorld {
  home: string;
  lab: LabStatus;
  inv: Inventory;
  hv: VirshHypervisor;
  env: Record<string, string>;
  worker: ReturnType<typeof startProcess>;
  stop(): Promise<void>;
}

async function startE2eWorld(): Promise<E2eWorld> {
  requireBuild();
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-e2e-'));
  log(`e2e: lab of 2 hosts, 1 VM, prefix ${labNaming().prefix}`);
  const [lab, temporal] = await Promise.all([labUp({ home, hosts: 2, vms: 1, ...labNaming() }), startTemporal()]);
  const hv = new VirshHypervisor();
  const inventoryFile = path.join(home, 'inventory.db');
  const inv = await openInventory(inventoryFile);
  await registerLab(inv, hv, lab);
  const env: Record<string, string> = {
    FERRY_HOME: home,
    FERRY_INVENTORY: inventoryFile,
    FERRY_TASK_QUEUE: `ferry-e2e-${Date.now()}`,
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_NAMESPACE: temporal.namespace ?? 'default',
    FERRY_METRICS_ADDRESS: 'off',
  };
  // The worker as `ferry dev up` runs it: its own process, `ferry worker`.
  const worker = startProcess(process.execPath, [FERRY_BIN, 'worker'], { env });
  worker.stderr.pipe(process.stderr);
  await new Promise<void>((resolve, reject) => {
    worker.once('exit', (code) => reject(new Error(`ferry worker exited ${code}`)));
    worker.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('ferry worker: task queue')) resolve();
    });
  });
  return {
    home,
    lab,
    inv,
    hv,
    env,
    worker,
    async stop() {
      worker.kill('SIGTERM');
      await new Promise((r) => worker.once('exit', r));
      hv.close();
      await inv.close();
      await temporal.teardown();
      await labDown(home, { prefix: labNaming().prefix });
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

async function runsOn(w: E2eWorld, uuid: string): Promise<LabHost> {
  for (const h of w.lab.hosts) if ((await w.hv.getDomain(h.uri, uuid))?.state === 'running') return h;
  throw new Error(`VM ${uuid} runs nowhere`);
}

async function ferryMigrate(w: E2eWorld, vm: LabVm, from: LabHost): Promise<E2eRound> {
  const r = await timed(process.execPath, [FERRY_BIN, 'migrate', '--vm', vm.uuid, '--json'], w.env);
  if (r.code !== 0) throw new Error(`ferry migrate exited ${r.code}: ${r.stderr}${r.stdout}`);
  const report = JSON.parse(r.stdout) as { target: string; durationMs: number; phaseMs: Record<string, number> };
  return { method: 'ferry', direction: `${from.name}→${report.target}`, wallMs: r.wallMs, durationMs: report.durationMs, phaseMs: report.phaseMs };
}

async function virshMigrate(w: E2eWorld, vm: LabVm, from: LabHost, to: LabHost): Promise<E2eRound> {
  const disk = (await w.inv.getVm(vm.uuid))?.disks[0];
  if (!disk) throw new Error(`${vm.name} has no disk in the inventory`);
  const t0 = performance.now();
  await rawMigration(from.uri, to.uri, { uuid: vm.uuid, dir: `${LAB_STORAGE_ROOT}/${vm.uuid}`, diskName: LAB_DISK_NAME, diskBytes: disk.sizeBytes });
  const wallMs = performance.now() - t0;
  const synced = await syncInventory(w.inv, w.hv, { hosts: w.lab.hosts.map((h) => h.name) });
  if (synced.some((s) => s.error)) throw new Error(`inventory sync failed: ${synced.map((s) => s.error ?? '').join(' ')}`);
  return { method: 'virsh', direction: `${from.name}→${to.name}`, wallMs };
}

export async function e2eBench(o: { rounds: number }): Promise<E2eResult> {
  if (process.getuid?.() !== 0 || !fs.existsSync('/usr/sbin/libvirtd')) throw new Error('the e2e suite needs root and libvirtd');
  const w = await startE2eWorld();
  const runs: E2eRound[] = [];
  try {
    const vm = w.lab.vms[0]!;
    const other = (h: LabHost) => w.lab.hosts.find((x) => x.name !== h.name)!;
    await ferryMigrate(w, vm, await runsOn(w, vm.uuid)); // warm-up (first incoming migration on a host, caches), not counted
    for (const first of abbaOrder(Math.ceil(o.rounds / 2)).slice(0, o.rounds)) {
      for (const method of first === 'A' ? (['ferry', 'virsh'] as const) : (['virsh', 'ferry'] as const)) {
        const from = await runsOn(w, vm.uuid);
        const run = method === 'ferry' ? await ferryMigrate(w, vm, from) : await virshMigrate(w, vm, from, other(from));
        log(`e2e ${run.method} ${run.direction}: ${(run.wallMs / 1000).toFixed(2)} s`);
        runs.push(run);
      }
    }
  } finally {
    await w.stop();
  }
  return { rounds: o.rounds, runs };
}

/** Per round: Ferry's wall time over virsh's (the round's two migrations, in whichever order they ran). */
export function e2eRatios(r: E2eResult): number[] {
  const out: number[] = [];
  for (let i = 0; i + 1 < r.runs.length; i += 2) {
    const pair = r.runs.slice(i, i + 2);
    const f = pair.find((x) => x.method === 'ferry');
    const v = pair.find((x) => x.method === 'virsh');
    if (f && v) out.push(f.wallMs / v.wallMs);
  }
  return out;
}

export function e2eMarkdown(r: E2eResult): string {
  const ferry = r.runs.filter((x) => x.method === 'ferry');
  const virsh = r.runs.filter((x) => x.method === 'virsh');
  const ratios = e2eRatios(r);
  const phases = [...new Set(ferry.flatMap((x) => Object.keys(x.phaseMs ?? {})))];
  return [
    `The lab's 128 MiB VM (64 MiB qcow2, 32 MiB of random data) between 2 hosts, ${r.rounds} rounds (ABBA order, the VM ping-pongs), after one uncounted Ferry warm-up migration. Wall time of each process from spawn to exit.`,
    '',
    table(
      ['method', 'wall', 'runs'],
      [
        ['`ferry migrate --vm <uuid> --json` (CLI process; worker process; dev server)', medRange(ferry.map((x) => x.wallMs)), ferry.map((x) => x.direction).join(', ')],
        ['by hand with virsh: pool-define-as/build/start + vol-create-as, migrate, vol-delete + pool-destroy/delete/undefine', medRange(virsh.map((x) => x.wallMs)), virsh.map((x) => x.direction).join(', ')],
      ],
    ),
    '',
    `Ratio Ferry / virsh per round: median **${ratios.length ? median(ratios).toFixed(2) : '-'}** (${ratios.map((x) => x.toFixed(2)).join(', ')}); ratio of the medians ${ratio(median(ferry.map((x) => x.wallMs)), median(virsh.map((x) => x.wallMs)))}. Target ≤ 1.10.`,
    '',
    `Ferry's own phases (median ms, from its report): ${phases.map((p) => `${p} ${median(ferry.map((x) => x.phaseMs?.[p] ?? 0)).toFixed(0)}`).join(', ')}; workflow duration ${medRange(ferry.map((x) => x.durationMs ?? 0))}.`,
  ].join('\n');
}
