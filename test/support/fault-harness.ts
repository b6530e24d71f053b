/**
 * The fault tests' lab (test/faults): a real lab (lab/, prefix and subnet from FERRY_LAB_PREFIX /
 * FERRY_LAB_SUBNET), a SQLite inventory FILE shared with the worker, a Temporal dev server on a fixed port
 * and database file (so that it can be stopped and restarted with its history), and the Ferry worker as a
 * CHILD PROCESS (test/support/worker-child.ts) that a test can SIGKILL and restart. No test doubles.
 *
 * assertConsistent(vm) is the invariant every fault case ends with: libvirt runs the VM on exactly one host
 * (and no other host has it defined), the inventory says that host / running with no claim, the workflow is
 * closed, and no `ferry-<uuid>` pool or `<storageRoot>/<uuid>` directory exists on any other host.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { expect } from 'vitest';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode } from '@temporalio/worker';
import { FerryClient } from '../../client';
import type { LiveMigrationInput } from '../../common/validation';
import { CommandError, run } from '../../hypervisor/exec';
import { VirshHypervisor } from '../../hypervisor/virsh';
import { openInventory, type Inventory } from '../../inventory';
import { hostPath, labDown, labUp, LAB_STORAGE_ROOT, type LabHost, type LabStatus, type LabVm } from '../../lab';
import { registerLab } from '../../lab/register';
import { workflowsPath } from '../../worker';
import { labNaming } from './lab-naming';
import { createDevServer } from './temporal';
import type { ChildEvent, ParentCommand } from './worker-child';

export { canRunLab } from './lab-harness';

const REGISTER_TS = path.join(__dirname, 'register-ts.cjs');
const WORKER_CHILD = path.join(__dirname, 'worker-child.ts');

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

// ---- Temporal dev server that can be stopped and restarted on the same database file ---------------

export class DevServer {
  private env: TestWorkflowEnvironment | null = null;
  constructor(
    readonly dbFile: string,
    readonly port: number,
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.env = await createDevServer({
      dbFilename: this.dbFile,
      ip: '127.0.0.1',
      port: this.port,
    });
  }

  /** Stops the server process (its database file stays). */
  async stop(): Promise<void> {
    const env = this.env;
    this.env = null;
    await env?.teardown();
  }
}

// ---- the worker as a child process ---------------------------------------------------------------------

export interface WorkerStartOptions {
  /** TEST HOOK gates "activity:attempt" (see worker-child.ts). */
  gates?: string[];
}

export class WorkerProcess {
  private child: ChildProcess | null = null;
  readonly events: (ChildEvent & { at: number })[] = [];
  private listeners: ((e: ChildEvent) => void)[] = [];
  starts = 0;

  constructor(
    private readonly env: Record<string, string>,
    private readonly logFile: string,
  ) {}

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  async start(o: WorkerStartOptions = {}): Promise<void> {
    if (this.child) throw new Error('worker already running');
    const out = fs.openSync(this.logFile, 'a');
    const child = fork(WORKER_CHILD, [], {
      execArgv: ['-r', REGISTER_TS],
      env: { ...process.env, ...this.env, FERRY_TEST_GATES: (o.gates ?? []).join(',') },
      stdio: ['ignore', out, out, 'ipc'],
    });
    fs.closeSync(out);
    this.child = child;
    this.starts += 1;
    child.on('message', (e: ChildEvent) => {
      this.events.push({ ...e, at: Date.now() });
      for (const l of [...this.listeners]) l(e);
    });
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code, signal) => reject(new Error(`worker child exited (${code ?? signal}) before it was ready; see ${this.logFile}`))),
    );
    exited.catch(() => undefined);
    child.once('exit', () => {
      if (this.child === child) this.child = null;
    });
    await Promise.race([this.next((e) => e.type === 'ready', 120_000), exited]);
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await gone;
    this.child = null;
  }

  /** Graceful stop (end of a file). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await gone;
    clearTimeout(t);
    this.child = null;
  }

  /** The next event matching `pred` (already-seen events do not count). */
  next<E extends ChildEvent>(pred: (e: ChildEvent) => e is E, timeoutMs?: number): Promise<E>;
  next(pred: (e: ChildEvent) => boolean, timeoutMs?: number): Promise<ChildEvent>;
  next(pred: (e: ChildEvent) => boolean, timeoutMs = 120_000): Promise<ChildEvent> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.listeners = this.listeners.filter((l) => l !== listener);
        reject(new Error(`no matching worker event within ${timeoutMs} ms; see ${this.logFile}`));
      }, timeoutMs);
      const listener = (e: ChildEvent) => {
        if (!pred(e)) return;
        clearTimeout(t);
        this.listeners = this.listeners.filter((l) => l !== listener);
        resolve(e);
      };
      this.listeners.push(listener);
    });
  }

  /** Waits until the child holds `activity` (attempt) at its gate. */
  gateReached(activity: string, attempt = 1, timeoutMs = 120_000): Promise<ChildEvent> {
    return this.next((e) => e.type === 'gate' && e.activity === activity && e.attempt === attempt, timeoutMs);
  }

  release(activity: string, attempt = 1): void {
    const cmd: ParentCommand = { type: 'go', activity, attempt };
    this.child?.send(cmd);
  }
}

// ---- the lab --------------------------------------------------------------------------------------------

export interface FaultLab {
  home: string;
  lab: LabStatus;
  hv: VirshHypervisor;
  /** The parent's own handle on the worker's inventory file. */
  inventory: Inventory;
  server: DevServer;
  client: Client;
  ferry: FerryClient;
  taskQueue: string;
  worker: WorkerProcess;
  host(name: string): LabHost;
  stop(): Promise<void>;
}

export async function startFaultLab(o: { hosts: number; vms: number; taskQueue?: string }): Promise<FaultLab> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-faults-'));
  const t0 = Date.now();
  const [lab, bundle, server] = await Promise.all([
    labUp({ home, hosts: o.hosts, vms: o.vms, ...labNaming() }),
    bundleWorkflowCode({ workflowsPath: workflowsPath(), logger: quietLogger }).then(({ code }) => {
      const file = path.join(home, 'workflow-bundle.js');
      fs.writeFileSync(file, code);
      return file;
    }),
    (async () => {
      const s = new DevServer(path.join(home, 'temporal.db'), await freePort());
      await s.start();
      return s;
    })(),
  ]);
  const hv = new VirshHypervisor();
  const inventoryFile = path.join(home, 'inventory.db');
  const inventory = await openInventory(inventoryFile);
  const synced = await registerLab(inventory, hv, lab);
  const failed = synced.filter((r) => r.error);
  if (failed.length > 0) throw new Error(`lab sync failed: ${failed.map((r) => `${r.host}: ${r.error}`).join('; ')}`);
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, namespace: 'default' });
  const taskQueue = o.taskQueue ?? 'ferry-faults';
  const worker = new WorkerProcess(
    {
      TEMPORAL_ADDRESS: server.address,
      TEMPORAL_NAMESPACE: 'default',
      FERRY_INVENTORY: inventoryFile,
      FERRY_TASK_QUEUE: taskQueue,
      FERRY_TEST_WORKFLOW_BUNDLE: bundle,
      // the worker reports guestDowntimeMs for the lab's probed Linux guests (worker/index.ts labGuestObserverOf)
      FERRY_HOME: home,
    },
    path.join(home, 'worker.log'),
  );
  await worker.start();
  console.log(`fault lab up in ${Date.now() - t0} ms (home ${home})`);
  return {
    home,
    lab,
    hv,
    inventory,
    server,
    client,
    ferry: FerryClient.fromClient(client, taskQueue),
    taskQueue,
    worker,
    host(name: string) {
      const h = lab.hosts.find((x) => x.name === name);
      if (!h) throw new Error(`no lab host ${name}`);
      return h;
    },
    async stop() {
      await worker.stop().catch(() => undefined);
      await inventory.close().catch(() => undefined);
      await connection.close().catch(() => undefined);
      await server.stop().catch(() => undefined);
      await labDown(home, { prefix: labNaming().prefix });
      if (!process.env['FERRY_KEEP_FAULT_HOME']) fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

const quietLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: (m: string) => console.error(m),
};

// ---- observing and asserting ------------------------------------------------------------------------------

/** The migration input for moving `vm` away from wherever the inventory says it runs. */
export async function migrationInput(f: FaultLab, vm: LabVm, extra: Partial<LiveMigrationInput> = {}): Promise<LiveMigrationInput> {
  const rec = await f.inventory.getVm(vm.uuid);
  if (!rec) throw new Error(`${vm.name} is not in the inventory`);
  return { sourceHost: f.host(rec.host).address, vmName: vm.name, vmUuid: vm.uuid, ...extra };
}

/** Pending activities of a workflow, as Temporal's describe shows them. */
export async function pendingActivities(
  handle: WorkflowHandle,
): Promise<{ type: string; state: number; attempt: number; lastFailure: string | null }[]> {
  const d = await handle.describe();
  return (d.raw.pendingActivities ?? []).map((a) => ({
    type: a.activityType?.name ?? '',
    state: Number(a.state ?? 0),
    attempt: a.attempt ?? 0,
    lastFailure: a.lastFailure?.message ?? null,
  }));
}

/** PENDING_ACTIVITY_STATE_SCHEDULED: waiting for its next attempt (no attempt running on any worker). */
export const PENDING_SCHEDULED = 1;

/**
 * Waits until `activity` failed at least `failedAttempts` times and is in its retry back-off, with no attempt
 * running anywhere: the moment to kill the worker without losing an attempt in flight.
 */
export async function waitForBackoff(handle: WorkflowHandle, activity: string, failedAttempts = 1, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = (await pendingActivities(handle)).find((a) => a.type === activity);
    if (p && p.state === PENDING_SCHEDULED && p.attempt > failedAttempts && p.lastFailure !== null) return;
    if (Date.now() > deadline) throw new Error(`${activity} did not reach its retry back-off within ${timeoutMs} ms (${JSON.stringify(p)})`);
    await sleep(50);
  }
}

export interface Consistency {
  runsOn: string[];
  definedOn: string[];
  problems: string[];
}

/**
 * The invariant after every fault: libvirt runs the VM on exactly one host and no other host has it
 * defined; the inventory agrees (host, running, no claim); that host holds the VM's pool and directory;
 * no other host holds a `ferry-<uuid>` pool or a `<storageRoot>/<uuid>` directory. Returns every problem
 * found (empty = consistent).
 */
/**
 * Asserts the consistency invariants for a VM after a fault (exactly one host runs it, the inventory agrees,
 * no claim, no leftover storage), prints a FAULT-RESULT line for the report, and returns where it runs.
 */
export async function expectConsistent(f: FaultLab, file: string, vm: LabVm, label: string): Promise<string> {
  const c = await checkConsistent(f, vm.uuid);
  console.log(`FAULT-RESULT ${JSON.stringify({ file, label, vm: vm.name, runsOn: c.runsOn, problems: c.problems })}`);
  expect(c.problems).toEqual([]);
  return c.runsOn[0]!;
}

export async function checkConsistent(f: FaultLab, uuid: string): Promise<Consistency> {
  const problems: string[] = [];
  const runsOn: string[] = [];
  const definedOn: string[] = [];
  for (const h of f.lab.hosts) {
    const d = await f.hv.getDomain(h.uri, uuid);
    if (d) definedOn.push(h.name);
    if (d?.state === 'running') runsOn.push(h.name);
  }
  if (runsOn.length !== 1) problems.push(`libvirt runs the VM on ${runsOn.length} hosts: [${runsOn.join(', ')}]`);
  const home = runsOn[0];
  const others = definedOn.filter((n) => n !== home);
  if (others.length > 0) problems.push(`the VM is also defined on ${others.join(', ')}`);
  const rec = await f.inventory.getVm(uuid);
  if (!rec) problems.push('the VM is not in the inventory');
  else {
    if (home !== undefined && rec.host !== home) problems.push(`the inventory says ${rec.host}, libvirt says ${home}`);
    if (rec.state !== 'running') problems.push(`the inventory says the VM is ${rec.state}`);
  }
  const claim = await f.inventory.getClaim(uuid);
  if (claim) problems.push(`a claim remains: ${JSON.stringify(claim)}`);
  const pool = `ferry-${uuid}`;
  for (const h of f.lab.hosts) {
    const pools = (await f.hv.listPools(h.uri)).map((p) => p.name);
    const dir = fs.existsSync(hostPath(f.home, h.name, `${LAB_STORAGE_ROOT}/${uuid}`));
    if (h.name === home) {
      if (!pools.includes(pool)) problems.push(`${h.name} runs the VM but has no pool ${pool}`);
      if (!dir) problems.push(`${h.name} runs the VM but has no directory ${LAB_STORAGE_ROOT}/${uuid}`);
    } else {
      if (pools.includes(pool)) problems.push(`leak: pool ${pool} on ${h.name}`);
      if (dir) problems.push(`leak: directory ${LAB_STORAGE_ROOT}/${uuid} on ${h.name}`);
    }
  }
  return { runsOn, definedOn, problems };
}

/** Every lab host's pools and storage-root entries (to compare before/after). */
export async function storageSnapshot(f: FaultLab): Promise<Record<string, { pools: string[]; entries: string[] }>> {
  const out: Record<string, { pools: string[]; entries: string[] }> = {};
  for (const h of f.lab.hosts) {
    const dir = hostPath(f.home, h.name, LAB_STORAGE_ROOT);
    out[h.name] = {
      pools: (await f.hv.listPools(h.uri)).map((p) => `${p.name}${p.active ? '' : ' (inactive)'}`).sort(),
      entries: fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [],
    };
  }
  return out;
}

/** Hosts, VMs, claims and history of the inventory (to compare before/after). */
export async function inventorySnapshot(inv: Inventory): Promise<unknown> {
  const [hosts, vms, claims, history] = await Promise.all([inv.listHosts(), inv.listVms(), inv.listClaims(), inv.listHistory({})]);
  return {
    hosts: hosts.map((h) => ({ ...h, updatedAt: undefined })),
    vms: vms.map((v) => ({ ...v, updatedAt: undefined })),
    claims,
    history,
  };
}

const REPO = path.join(__dirname, '..', '..');

/** The `ferry` command itself (the TypeScript sources), against this lab's Temporal, inventory and home. */
export async function runFerryCli(f: FaultLab, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    TEMPORAL_ADDRESS: f.server.address,
    TEMPORAL_NAMESPACE: 'default',
    FERRY_HOME: f.home,
    FERRY_INVENTORY: path.join(f.home, 'inventory.db'),
    FERRY_TASK_QUEUE: f.taskQueue,
  };
  const script = "require('./cli/main.ts').main(process.argv)";
  try {
    const r = await run(process.execPath, ['-r', REGISTER_TS, '-e', script, 'ferry', ...args], { cwd: REPO, env, timeoutMs: 120_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    return { code: err.exitCode ?? 1, stdout: err.stdout, stderr: err.stderr };
  }
}

/** Polls a migration's progress (every 200 ms, at most ~30 s) until its copy has moved `bytes`; returns what it moved. */
export async function waitForCopied(handle: { progress(): Promise<{ migration: { dataProcessedBytes: number | null } | null }> }, bytes: number): Promise<number> {
  let copied = 0;
  for (let i = 0; i < 150 && copied < bytes; i++) {
    await sleep(200);
    copied = (await handle.progress()).migration?.dataProcessedBytes ?? 0;
  }
  return copied;
}
