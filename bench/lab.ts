/**
 * The real-lab suites: orchestration overhead and downtime (Ferry vs raw virsh on the same VM, alternating)
 * and evacuation makespan vs the lower bound. Needs root and libvirt; the lab is FERRY_LAB_PREFIX /
 * FERRY_LAB_SUBNET (bench/run.ts defaults them to bch / 10.213.87 so that other labs are never touched).
 *
 * Ferry runs exactly as deployed, minus the process boundary: the real Temporal dev server (started here),
 * one in-process worker with the production defaults (VirshHypervisor, job poll 1 s, progress signal 2 s),
 * a SQLite inventory synced from the lab. Each migration is started with FerryClient.migrate and measured
 * twice: the workflow's own duration (its report) and the client-observed wall time (start call → result).
 * Every virsh invocation Ferry makes is recorded (VirshHypervisor onCall) and attributed to the activity
 * whose run it falls in; activity and workflow-task timings come from the workflow's history.
 *
 * The baseline (bench/raw-virsh.ts) migrates the same VM between the same two hosts. The VM ping-pongs
 * between host 1 and host 2; the methods alternate ABBA, so each goes first as often as second and moves the
 * VM in both directions. Other hosts are put in maintenance so Ferry's placement picks the other host itself.
 * After a raw migration the inventory is re-synced from libvirt (untimed), as an operator would.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { FerryClient, migrationWorkflowId, type MigrationOutcome } from '../client';
import { startEvacuation, type EvacuationResult } from '../client/fleet';
import { peakInFlight } from '../common/evacuation';
import { VirshHypervisor, type VirshCallInfo } from '../hypervisor/virsh';
import { openInventory, syncInventory, type Inventory } from '../inventory';
import { labDown, labUp, LAB_DISK_NAME, LAB_STORAGE_ROOT, type LabHost, type LabStatus, type LabVm } from '../lab';
import { createFerryWorker } from '../worker';
import { startLabWorker } from './lab-worker';
import { startTemporal } from '../test/support/temporal';
import { labNaming } from '../test/support/lab-naming';
import { abbaOrder, load1, log, median, medRange, ms, ratio, sec, table } from './common';
import { historyTimings, type HistoryTimings } from './history';
import { rawCleanup, rawCreate, rawMigrate, rawMigration, type RawTimings, type RawVm } from './raw-virsh';

export interface LabOptions {
  pairs: number;
  /** Also run Ferry with one-shot virsh processes (FERRY_VIRSH_SESSIONS=0) in the same rounds. */
  oneShot: boolean;
  sizes: number[];
  evacVms: number;
  evacRuns: number;
  overhead: boolean;
  evacuation: boolean;
}

interface CallRecord extends VirshCallInfo {
  start: number;
  end: number;
}

interface World {
  home: string;
  lab: LabStatus;
  inv: Inventory;
  hv: VirshHypervisor;
  calls: CallRecord[];
  worker: Worker;
  running: Promise<void>;
  ferry: FerryClient;
  taskQueue: string;
  /** A second worker, same inventory, VirshHypervisor with one-shot virsh processes (sessions off). */
  oneShot: { hv: VirshHypervisor; worker: Worker; running: Promise<void>; ferry: FerryClient } | null;
  memoryMiB: number;
  randomDataMiB: number;
}

export interface FerryRun {
  direction: string;
  wallMs: number;
  outcome: MigrationOutcome;
  history: HistoryTimings;
  /** Per activity type: virsh invocations and their summed time. */
  virsh: Record<string, { calls: number; ms: number }>;
  /** Inside migrateVm: before the `virsh migrate` call, the call, after it. */
  migrateInside: { beforeMs: number; migrateCallMs: number; afterMs: number; polls: number } | null;
}

export interface RawRun extends RawTimings {
  direction: string;
}

export interface SizeResult {
  memoryMiB: number;
  randomDataMiB: number;
  diskMiB: number;
  ferry: FerryRun[];
  /** Ferry with one-shot virsh processes (sessions off), same rounds. */
  ferryOneShot: FerryRun[];
  raw: RawRun[];
  order: string;
  load: [number, number];
}

export interface EvacuationRun {
  result: EvacuationResult;
  wallMs: number;
  childMs: number[];
  maxConcurrent: number;
}

export interface EvacuationBench {
  vms: number;
  targets: number;
  runs: EvacuationRun[];
  /** Raw virsh migrations (create + migrate + cleanup), two at once from host 1 to two targets and back. */
  rawParallelMs: number[];
  rawParallelMigrateMs: number[];
  load: [number, number];
}

export interface LabResult {
  options: LabOptions;
  sizes: SizeResult[];
  evacuation: EvacuationBench | null;
}

// ---- world ---------------------------------------------------------------------------------------------

async function startWorld(
  env: TestWorkflowEnvironment,
  hosts: number,
  vms: number,
  memoryMiB: number,
  randomDataMiB: number,
  withOneShot: boolean,
): Promise<World> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-lab-'));
  log(`lab: ${hosts} hosts, ${vms} VMs of ${memoryMiB} MiB (${randomDataMiB} MiB of random disk data), prefix ${labNaming().prefix}`);
  const lab = await labUp({ home, hosts, vms, vmMemoryMiB: memoryMiB, randomDataMiB, ...labNaming() });
  const calls: CallRecord[] = [];
  const hv = new VirshHypervisor({
    onCall: (info) => {
      const end = Date.now();
      calls.push({ ...info, start: end - info.ms, end });
    },
  });
  const inv = await openInventory(path.join(home, 'inventory.db'));
  const taskQueue = `ferry-bench-${Date.now()}`;
  const { worker, running } = await startLabWorker(env, inv, hv, lab, taskQueue);
  let oneShot: World['oneShot'] = null;
  if (withOneShot) {
    const hv1 = new VirshHypervisor({
      sessions: false,
      onCall: (info) => {
        const end = Date.now();
        calls.push({ ...info, start: end - info.ms, end });
      },
    });
    const queue1 = `${taskQueue}-oneshot`;
    const worker1 = await createFerryWorker({
      connection: env.nativeConnection,
      namespace: env.namespace ?? 'default',
      taskQueue: queue1,
      inventory: inv,
      hypervisor: hv1,
      client: env.client,
    });
    oneShot = { hv: hv1, worker: worker1, running: worker1.run(), ferry: FerryClient.fromClient(env.client, queue1) };
  }
  return { home, lab, inv, hv, calls, worker, running, ferry: FerryClient.fromClient(env.client, taskQueue), taskQueue, oneShot, memoryMiB, randomDataMiB };
}

async function stopWorld(w: World): Promise<void> {
  w.worker.shutdown();
  await w.running.catch(() => undefined);
  if (w.oneShot) {
    w.oneShot.worker.shutdown();
    await w.oneShot.running.catch(() => undefined);
  }
  w.hv.close();
  await w.inv.close();
  await labDown(w.home, { prefix: labNaming().prefix });
  fs.rmSync(w.home, { recursive: true, force: true });
}

/** Where libvirt runs the VM, asked of each lab host. */
async function whereRuns(w: World, uuid: string): Promise<LabHost> {
  for (const h of w.lab.hosts) {
    const d = await w.hv.getDomain(h.uri, uuid);
    if (d?.state === 'running') return h;
  }
  throw new Error(`VM ${uuid} runs nowhere`);
}

async function sync(w: World): Promise<void> {
  const r = await syncInventory(w.inv, w.hv, { hosts: w.lab.hosts.map((h) => h.name) });
  const bad = r.filter((x) => x.error);
  if (bad.length) throw new Error(`inventory sync failed: ${bad.map((x) => x.error).join('; ')}`);
}

function rawVm(w: World, vm: LabVm): RawVm {
  return {
    uuid: vm.uuid,
    dir: `${LAB_STORAGE_ROOT}/${vm.uuid}`,
    diskName: LAB_DISK_NAME,
    diskBytes: Math.max(64, w.randomDataMiB) * 1024 * 1024,
  };
}

/** The VM's disk capacity as the inventory knows it (what Ferry creates on the target). */
async function diskBytes(w: World, vm: LabVm): Promise<number> {
  const rec = await w.inv.getVm(vm.uuid);
  return rec?.disks[0]?.sizeBytes ?? rawVm(w, vm).diskBytes;
}

// ---- one Ferry migration, measured ----------------------------------------------------------------------

async function ferryMigration(w: World, vm: LabVm, from: LabHost, to: LabHost | null, ferry: FerryClient = w.ferry): Promise<FerryRun> {
  w.calls.length = 0;
  const t0 = Date.now();
  const outcome = await ferry.migrate({
    sourceHost: from.address,
    vmName: vm.name,
    vmUuid: vm.uuid,
    ...(to ? { targetHost: to.name } : {}),
  });
  const wallMs = Date.now() - t0;
  if (outcome.status !== 'migrated') throw new Error(`Ferry migration of ${vm.name} ended ${outcome.status}: ${outcome.reason}`);
  const history = await w.ferry.client.workflow.getHandle(migrationWorkflowId(vm.uuid), outcome.runId).fetchHistory();
  const h = historyTimings(history.events ?? []);
  const virsh: FerryRun['virsh'] = {};
  for (const c of w.calls) {
    const a = h.activities.find((x) => c.start >= x.startedAt - 5 && c.start <= x.closedAt + 5);
    const key = a?.type ?? '(outside activities)';
    const v = (virsh[key] ??= { calls: 0, ms: 0 });
    v.calls++;
    v.ms += c.ms;
  }
  const act = h.activities.find((x) => x.type === 'migrateVm');
  const mig = w.calls.find((c) => c.commands[0] === 'migrate');
  const migrateInside =
    act && mig
      ? {
          beforeMs: mig.start - act.startedAt,
          migrateCallMs: mig.ms,
          afterMs: act.closedAt - mig.end,
          polls: w.calls.filter((c) => c.commands[0] === 'domjobinfo' && c.start > mig.start && c.start < mig.end).length,
        }
      : null;
  return { direction: `${from.name}→${outcome.target}`, wallMs, outcome, history: h, virsh, migrateInside };
}

// ---- overhead + downtime --------------------------------------------------------------------------------

async function overhead(w: World, vm: LabVm, pairs: number): Promise<SizeResult> {
  const before = load1();
  const [h1, h2, ...others] = w.lab.hosts;
  if (!h1 || !h2) throw new Error('the lab needs two hosts');
  for (const o of others) await w.inv.setHostState(o.name, 'maintenance');
  const r = rawVm(w, vm);
  r.diskBytes = await diskBytes(w, vm);
  const other = (h: LabHost) => (h.name === h1.name ? h2 : h1);

  const runFerry = async (client: FerryClient = w.ferry): Promise<FerryRun> => {
    await sync(w); // untimed: the inventory learns where the last raw run left the VM
    const from = await whereRuns(w, vm.uuid);
    return ferryMigration(w, vm, from, null, client);
  };
  const runRaw = async (): Promise<RawRun> => {
    const from = await whereRuns(w, vm.uuid);
    const to = other(from);
    return { direction: `${from.name}→${to.name}`, ...(await rawMigration(from.uri, to.uri, r)) };
  };

  log(`overhead ${w.memoryMiB} MiB: warm-up (one of each, not counted)`);
  await runFerry();
  if (w.oneShot) await runFerry(w.oneShot.ferry);
  await runRaw();
  const order = w.oneShot ? rotations(pairs) : abbaOrder(pairs);
  const ferry: FerryRun[] = [];
  const ferryOneShot: FerryRun[] = [];
  const raw: RawRun[] = [];
  for (const [i, m] of order.entries()) {
    if (m === 'A' || m === 'C') {
      const one = m === 'C' && w.oneShot;
      const f = await runFerry(one ? w.oneShot!.ferry : w.ferry);
      (one ? ferryOneShot : ferry).push(f);
      log(
        `  ${i + 1}/${order.length} Ferry${one ? ' (one-shot virsh)' : ''} ${f.direction}: workflow ${f.outcome.durationMs} ms, ` +
          `client ${f.wallMs} ms, downtime ${f.outcome.downtimeMs} ms`,
      );
    } else {
      const x = await runRaw();
      raw.push(x);
      log(`  ${i + 1}/${order.length} raw   ${x.direction}: ${Math.round(x.createMs + x.migrateMs)} ms (+ cleanup ${Math.round(x.cleanupMs)} ms), downtime ${x.downtimeMs} ms`);
    }
  }
  await sync(w);
  for (const o of others) await w.inv.setHostState(o.name, 'normal');
  return {
    memoryMiB: w.memoryMiB,
    randomDataMiB: w.randomDataMiB,
    diskMiB: Math.round(r.diskBytes / 2 ** 20),
    ferry,
    ferryOneShot,
    raw,
    order: order.join(''),
    load: [before, load1()],
  };
}

/**
 * Three methods A (Ferry), B (raw), C (Ferry, one-shot virsh), `rounds` rounds, each round every method once, in
 * the six orders in turn (ABC, CBA, BCA, ACB, CAB, BAC): each method is first, second and last equally often.
 */
function rotations(rounds: number): ('A' | 'B' | 'C')[] {
  const orders: ('A' | 'B' | 'C')[][] = [
    ['A', 'B', 'C'],
    ['C', 'B', 'A'],
    ['B', 'C', 'A'],
    ['A', 'C', 'B'],
    ['C', 'A', 'B'],
    ['B', 'A', 'C'],
  ];
  return Array.from({ length: rounds }, (_, i) => orders[i % orders.length]!).flat();
}

// ---- evacuation -----------------------------------------------------------------------------------------


async function evacuation(w: World, vms: LabVm[], runs: number): Promise<EvacuationBench> {
  const before = load1();
  const [h1, h2, h3] = w.lab.hosts;
  if (!h1 || !h2 || !h3) throw new Error('the evacuation needs at least 3 hosts');

  // Raw virsh, two at once from h1 (the outbound limit), to two targets and back: the physical single time
  // under the evacuation's parallelism.
  log('evacuation: raw virsh migrations two at a time (h1 → two targets, and back)');
  const rawParallelMs: number[] = [];
  const rawParallelMigrateMs: number[] = [];
  const pair = vms.slice(0, 2);
  const targets = [h2, h3];
  for (let round = 0; round < 2; round++) {
    for (const back of [false, true]) {
      const done = await Promise.all(
        pair.map(async (vm, i) => {
          const r = rawVm(w, vm);
          r.diskBytes = await diskBytes(w, vm);
          const [from, to] = back ? [targets[i]!, h1] : [h1, targets[i]!];
          const t0 = performance.now();
          await rawCreate(to.uri, r);
          const t1 = performance.now();
          await rawMigrate(from.uri, to.uri, r);
          const t2 = performance.now();
          await rawCleanup(from.uri, r);
          return { full: performance.now() - t0, migrate: t2 - t1 };
        }),
      );
      for (const d of done) {
        rawParallelMs.push(d.full);
        rawParallelMigrateMs.push(d.migrate);
      }
    }
  }
  await sync(w);

  const out: EvacuationRun[] = [];
  for (let k = 0; k < runs; k++) {
    log(`evacuation ${k + 1}/${runs}: evacuateHost ${h1.name} (${vms.length} VMs) with the default limits`);
    const t0 = Date.now();
    const handle = await startEvacuation(w.ferry.client, w.taskQueue, { host: h1.name });
    const result = await handle.result();
    const wallMs = Date.now() - t0;
    const childMs = result.vms.flatMap((v) => (v.status === 'migrated' && v.durationMs !== null ? [v.durationMs] : []));
    out.push({ result, wallMs, childMs, maxConcurrent: peakInFlight(result.vms) });
    log(
      `  makespan ${result.durationMs} ms (client ${wallMs} ms), ${childMs.length}/${vms.length} migrated, ` +
        `single ${median(childMs).toFixed(0)} ms median, at most ${peakInFlight(result.vms)} at once`,
    );
    // Put everything back on h1 (untimed), with Ferry, one at a time.
    await w.inv.setHostState(h1.name, 'normal');
    for (const vm of vms) {
      const from = await whereRuns(w, vm.uuid);
      if (from.name === h1.name) continue;
      await w.ferry.migrate({ sourceHost: from.address, vmName: vm.name, vmUuid: vm.uuid, targetHost: h1.name });
    }
  }
  return { vms: vms.length, targets: w.lab.hosts.length - 1, runs: out, rawParallelMs, rawParallelMigrateMs, load: [before, load1()] };
}

// ---- the suite ------------------------------------------------------------------------------------------

/** Random disk data per VM size: 32 MiB for 128 MiB of RAM, a quarter of the RAM above. */
function dataFor(memoryMiB: number): number {
  return memoryMiB <= 128 ? 32 : Math.round(memoryMiB / 4);
}

export async function labBench(o: LabOptions): Promise<LabResult> {
  if (process.getuid?.() !== 0 || !fs.existsSync('/usr/sbin/libvirtd')) throw new Error('the lab suites need root and libvirtd');
  const env = await startTemporal();
  const sizes: SizeResult[] = [];
  let evac: EvacuationBench | null = null;
  try {
    const sizeList = o.overhead ? o.sizes : [];
    // The evacuation shares the 128 MiB world (4 hosts) when both run; otherwise each size gets 2 hosts.
    const evacSize = o.evacuation ? 128 : null;
    const worlds = [...new Set([...sizeList, ...(evacSize !== null ? [evacSize] : [])])];
    for (const size of worlds) {
      const withEvac = evacSize === size;
      const vmCount = withEvac ? o.evacVms + (sizeList.includes(size) ? 1 : 0) : 1;
      const w = await startWorld(env, withEvac ? 4 : 2, vmCount, size, dataFor(size), o.oneShot && sizeList.includes(size));
      try {
        const evacVms = withEvac ? w.lab.vms.slice(0, o.evacVms) : [];
        if (sizeList.includes(size)) {
          const vm = w.lab.vms[vmCount - 1]!;
          sizes.push(await overhead(w, vm, o.pairs));
          // keep the overhead VM out of the evacuated host
          if (withEvac && (await whereRuns(w, vm.uuid)).name === w.lab.hosts[0]!.name) {
            const r = rawVm(w, vm);
            r.diskBytes = await diskBytes(w, vm);
            await rawMigration(w.lab.hosts[0]!.uri, w.lab.hosts[1]!.uri, r);
            await sync(w);
          }
        }
        if (withEvac) evac = await evacuation(w, evacVms, o.evacRuns);
      } finally {
        await stopWorld(w);
      }
    }
  } finally {
    await env.teardown();
  }
  return { options: o, sizes, evacuation: evac };
}

// ---- reports --------------------------------------------------------------------------------------------

const PHASES = ['reading-vm', 'selecting-target', 'creating-storage', 'migrating', 'finishing'] as const;

function medianOf<T>(xs: readonly T[], f: (x: T) => number | null | undefined): number {
  return median(xs.map(f).filter((v): v is number => typeof v === 'number' && Number.isFinite(v)));
}

export function overheadMarkdown(r: LabResult): string {
  const out: string[] = [];
  const summary: string[][] = [];
  for (const s of r.sizes) {
    const core = s.raw.map((x) => x.createMs + x.migrateMs);
    const full = s.raw.map((x) => x.createMs + x.migrateMs + x.cleanupMs);
    for (const [label, runs] of [
      ['Ferry', s.ferry],
      ['Ferry, one-shot virsh (`FERRY_VIRSH_SESSIONS=0`)', s.ferryOneShot ?? []],
    ] as const) {
      if (runs.length === 0) continue;
      const wf = runs.map((f) => f.outcome.durationMs);
      const wall = runs.map((f) => f.wallMs);
      summary.push([
        `${s.memoryMiB} MiB RAM, ${s.diskMiB} MiB disk (${s.randomDataMiB} MiB data)`,
        label,
        String(runs.length),
        medRange(wf),
        medRange(wall),
        medRange(core),
        medRange(full),
        `**${ratio(median(wf), median(full))}**`,
        ratio(median(wall), median(full)),
        ratio(median(wf), median(core)),
      ]);
    }
  }
  out.push(
    'Methods alternate (ABBA for two; for three, rounds in the six orders ABC, CBA, BCA, ACB, CAB, BAC): the VM ping-pongs ' +
      'between host 1 and host 2, so each method moves it both ways about equally; one unmeasured warm-up migration of each ' +
      'first. "Ferry" is the default (persistent virsh sessions per host, hypervisor/virsh-session.ts); "one-shot virsh" is ' +
      'the same worker code with a virsh process per call, as before that optimisation. ' +
      '"raw" = bench/raw-virsh.ts: create (pool-define-as, pool-build, pool-start, vol-create-as: 4 virsh invocations) + ' +
      '`virsh migrate --live --p2p --copy-storage-all --persistent --undefinesource`; "raw + cleanup" adds the source cleanup ' +
      "Ferry also does (vol-delete, pool-destroy, pool-delete, pool-undefine): that is the like-for-like baseline. " +
      'Target: median ratio ≤ 1.10.',
    '',
    table(
      ['VM', 'Ferry', 'runs each', 'Ferry workflow', 'Ferry client wall', 'raw create+migrate', 'raw + cleanup', 'ratio workflow / raw+cleanup', 'ratio client / raw+cleanup', 'ratio workflow / raw create+migrate'],
      summary,
    ),
  );
  for (const s of r.sizes) {
    out.push('', `### ${s.memoryMiB} MiB VM: where Ferry's time goes (medians over ${s.ferry.length} runs; load ${s.load[0]} → ${s.load[1]})`, '');
    const raws = s.raw;
    const one = s.ferryOneShot ?? [];
    const col1 = (f: (x: FerryRun) => number | null | undefined) => (one.length ? [ms(medianOf(one, f))] : []);
    out.push(
      table(
        ['step', 'Ferry', ...(one.length ? ['Ferry, one-shot virsh'] : []), 'raw virsh'],
        [
          ...PHASES.map((p) => [
            `phase \`${p}\``,
            ms(medianOf(s.ferry, (f) => f.outcome.phaseMs[p])),
            ...col1((f) => f.outcome.phaseMs[p]),
            p === 'creating-storage'
              ? ms(medianOf(raws, (x) => x.createMs))
              : p === 'migrating'
                ? ms(medianOf(raws, (x) => x.migrateMs))
                : p === 'finishing'
                  ? `${ms(medianOf(raws, (x) => x.cleanupMs))} (cleanup)`
                  : '–',
          ]),
          [
            'workflow total (report `durationMs`)',
            ms(medianOf(s.ferry, (f) => f.outcome.durationMs)),
            ...col1((f) => f.outcome.durationMs),
            ms(medianOf(raws, (x) => x.createMs + x.migrateMs + x.cleanupMs)),
          ],
          ['client wall (start → result)', ms(medianOf(s.ferry, (f) => f.wallMs)), ...col1((f) => f.wallMs), ''],
          [
            'Σ activity scheduled → started (Temporal scheduling)',
            ms(medianOf(s.ferry, (f) => f.history.activityScheduleToStartMs)),
            ...col1((f) => f.history.activityScheduleToStartMs),
            '',
          ],
          [
            'Σ activity closed → next scheduled (workflow-task round trips)',
            ms(medianOf(s.ferry, (f) => f.history.betweenActivitiesMs)),
            ...col1((f) => f.history.betweenActivitiesMs),
            '',
          ],
          [
            'Σ activity run time',
            ms(medianOf(s.ferry, (f) => f.history.activities.reduce((a, x) => a + x.runMs, 0))),
            ...col1((f) => f.history.activities.reduce((a, x) => a + x.runMs, 0)),
            '',
          ],
          [
            'activities / workflow tasks / history events',
            `${medianOf(s.ferry, (f) => f.history.activities.length)} / ${medianOf(s.ferry, (f) => f.history.workflowTasks.length)} / ${medianOf(s.ferry, (f) => f.history.events)}`,
            ...(one.length ? [''] : []),
            '',
          ],
          [
            'virsh calls (invocations or session batches)',
            String(medianOf(s.ferry, (f) => Object.values(f.virsh).reduce((a, v) => a + v.calls, 0))),
            ...(one.length ? [String(medianOf(one, (f) => Object.values(f.virsh).reduce((a, v) => a + v.calls, 0)))] : []),
            '9',
          ],
        ],
      ),
    );
    // per activity
    const types = [...new Set(s.ferry.flatMap((f) => f.history.activities.map((a) => a.type)))];
    out.push(
      '',
      table(
        ['activity (in order)', 'scheduled → started', 'run', 'virsh calls', 'virsh time', ...(one.length ? ['run, one-shot virsh'] : [])],
        types.map((t) => [
          `\`${t}\``,
          ms(medianOf(s.ferry, (f) => f.history.activities.filter((a) => a.type === t).reduce((x, a) => x + a.scheduleToStartMs, 0))),
          ms(medianOf(s.ferry, (f) => f.history.activities.filter((a) => a.type === t).reduce((x, a) => x + a.runMs, 0))),
          String(medianOf(s.ferry, (f) => f.virsh[t]?.calls ?? 0)),
          ms(medianOf(s.ferry, (f) => f.virsh[t]?.ms ?? 0)),
          ...col1((f) => f.history.activities.filter((a) => a.type === t).reduce((x, a) => x + a.runMs, 0)),
        ]),
      ),
    );
    const inside = s.ferry.flatMap((f) => (f.migrateInside ? [f.migrateInside] : []));
    if (inside.length) {
      out.push(
        '',
        `Inside \`migrateVm\` (medians): ${ms(median(inside.map((x) => x.beforeMs)))} before \`virsh migrate\` starts (reconciliation: locate + job check), ` +
          `${ms(median(inside.map((x) => x.migrateCallMs)))} in \`virsh migrate\` (raw: ${ms(medianOf(raws, (x) => x.migrateMs))}), ` +
          `${ms(median(inside.map((x) => x.afterMs)))} after it (completed-job statistics), ${median(inside.map((x) => x.polls))} job polls during it.`,
      );
    }
  }
  return out.join('\n');
}

export function downtimeMarkdown(r: LabResult): string {
  const rows = r.sizes.map((s) => {
    const f = [...s.ferry, ...(s.ferryOneShot ?? [])].map((x) => x.outcome.downtimeMs).filter((v): v is number => v !== null);
    const x = s.raw.map((y) => y.downtimeMs).filter((v): v is number => v !== null);
    const xt = s.raw.map((y) => y.totalTimeMs).filter((v): v is number => v !== null);
    return [`${s.memoryMiB} MiB`, medRange(f, 'ms'), medRange(x, 'ms'), ratio(median(f), median(x)), medRange(xt, 'ms')];
  });
  return [
    "libvirt's own downtime figure (`domjobinfo --completed --keep-completed` on the target after each migration: Ferry's " +
      'report reads the same statistic) for the same runs as section 1 (both Ferry variants pooled). Target: Ferry no worse than raw.',
    '',
    table(['VM', 'Ferry downtime', 'raw virsh downtime', 'ratio', 'raw: libvirt total job time'], rows),
  ].join('\n');
}

export function evacuationMarkdown(r: LabResult, singleFerryMs: number | null, singleRawMs: number | null): string {
  const e = r.evacuation;
  if (!e) return 'not run';
  const k = Math.min(2, e.targets, 5); // outbound per host, targets (1 inbound each), in flight
  const n = e.vms;
  const rounds = Math.ceil(n / k);
  const makespans = e.runs.map((x) => x.result.durationMs);
  const walls = e.runs.map((x) => x.wallMs);
  const childMedian = median(e.runs.flatMap((x) => x.childMs));
  const rawPar = median(e.rawParallelMs);
  const bounds: [string, number | null][] = [
    ['Ferry single migration, measured alone (section 1, 128 MiB)', singleFerryMs],
    ['Ferry single migration under the evacuation (its children, 2 at a time)', childMedian],
    ['raw virsh single migration + cleanup, alone (section 1, 128 MiB)', singleRawMs],
    ['raw virsh single migration + cleanup, 2 at a time', rawPar],
  ];
  const m = median(makespans);
  return [
    `Evacuate host 1 (${n} running 128 MiB VMs) to ${e.targets} targets with the default limits (2 outbound per host, ` +
      `1 inbound per target, 5 in flight; evacuation maxParallel defaults to the outbound limit). ${e.runs.length} runs; between runs ` +
      'the VMs go back to host 1 (untimed). ' +
      `Load average ${e.load[0]} → ${e.load[1]}.`,
    '',
    table(
      ['', 'value'],
      [
        ['makespan (workflow `durationMs`)', medRange(makespans)],
        ['client wall (start → result)', medRange(walls)],
        ['VMs migrated per run', e.runs.map((x) => `${x.childMs.length}/${n}`).join(', ')],
        ['most migrations holding a claim at once', e.runs.map((x) => String(x.maxConcurrent)).join(', ')],
        ['child migration duration (median, min–max)', medRange(e.runs.flatMap((x) => x.childMs))],
      ],
    ),
    '',
    `**The bound.** Every VM has to be moved, and no more than k = min(2 outbound from the host, ${e.targets} targets × 1 inbound, ` +
      `5 in flight) = ${k} migrations can run at once, so the makespan is at least ⌈n / k⌉ = ⌈${n} / ${k}⌉ = ${rounds} ` +
      'single-migration times back to back. Which single time is honest matters on this 2-core machine: two TCG VMs migrating ' +
      'at once compete for the same cores, so a migration measured alone understates the time it takes under the ' +
      'evacuation\'s parallelism. Both are shown; the "2 at a time" rows are the tighter, honest bounds.',
    '',
    table(
      ['single-migration time used', 'single', `bound = ${rounds} × single`, 'makespan / bound'],
      bounds.map(([label, v]) => [label, v === null ? '–' : sec(v), v === null ? '–' : sec(rounds * v), v === null ? '–' : ratio(m, rounds * v)]),
    ),
    '',
    'Target: makespan ≤ 1.2 × bound.',
  ].join('\n');
}

export function singleMedians(r: LabResult, memoryMiB: number): { ferry: number | null; raw: number | null } {
  const s = r.sizes.find((x) => x.memoryMiB === memoryMiB);
  if (!s) return { ferry: null, raw: null };
  return {
    ferry: median(s.ferry.map((f) => f.outcome.durationMs)),
    raw: median(s.raw.map((x) => x.createMs + x.migrateMs + x.cleanupMs)),
  };
}

