/**
 * The `shared` suite: what shared storage saves. The same kind of VM (128 MiB memory, one 256 MiB qcow2 disk with
 * 128 MiB of data, defined with plain virsh, nothing boots) migrated back and forth between two lab hosts, once
 * with its disk on a directory both hosts share (/var/lib/libvirt/images/shared, bind-mounted inside both hosts'
 * mount namespaces, a `shared` pool on each: Ferry should move memory only) and once with its disk in libvirt's
 * `default` pool (copied with the memory). The two VMs alternate ABBA, so each goes first as often as second and
 * moves both ways. Measured per migration: client wall time (FerryClient.migrate start → result), the workflow's
 * duration, the report's bytesTransferred, the bytes that really reached the target (its veth's counters) and the
 * downtime. After the last round both disks' guest-visible content is compared with what they were created with.
 *
 * Ferry runs as in bench/lab.ts: the real Temporal dev server, one in-process worker with the production defaults
 * (VirshHypervisor), a SQLite inventory synced from libvirt. Needs root and libvirt; the lab is FERRY_LAB_PREFIX /
 * FERRY_LAB_SUBNET.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { FerryClient, MigrationRejectedError, type MigrationOutcome } from '../client';
import { VirshHypervisor } from '../hypervisor/virsh';
import { openInventory, type Inventory } from '../inventory';
import { labDown, labUp, type LabHost, type LabStatus } from '../lab';
import { startLabWorker } from './lab-worker';
import { labNaming } from '../test/support/lab-naming';
import {
  DEFAULT_POOL_DIR,
  definePlainVm,
  diskDigest,
  ensureDefaultPool,
  ensureDirPool,
  hostNetBytes,
  shareDirectory,
  syncPlainVms,
  type PlainVm,
  type SharedDirectory,
} from '../test/support/plain-vms';
import { startTemporal } from '../test/support/temporal';
import { abbaOrder, load1, log, medRange, mib, summarize, table } from './common';

const MiB = 1024 * 1024;
const SHARED = `${DEFAULT_POOL_DIR}/shared`;

export type DiskLayout = 'shared' | 'copied';

export interface SharedStorageOptions {
  /** Migrations per layout (default 4). */
  rounds: number;
  memoryMiB: number;
  diskMiB: number;
  dataMiB: number;
}

export interface SharedStorageRun {
  layout: DiskLayout;
  /** `migrated`, a compensated ending, or `rejected` (refused before anything changed). */
  status: string;
  reason: string | null;
  direction: string;
  wallMs: number;
  workflowMs: number;
  downtimeMs: number | null;
  bytesTransferred: number | null;
  /** Bytes received by the target host's eth0 during the migration (all traffic, control included). */
  wireBytes: number;
  /** The report's per-disk layout, as Ferry saw it (issue 15's `disks`). */
  reportDisks: unknown;
}

export interface SharedStorageResult {
  options: SharedStorageOptions;
  runs: SharedStorageRun[];
  order: string;
  /** Both disks' guest-visible content after the last migration equals what they were created with. */
  intact: Record<DiskLayout, boolean>;
  load: [number, number];
}

export const SHARED_STORAGE_DEFAULTS: SharedStorageOptions = { rounds: 4, memoryMiB: 128, diskMiB: 256, dataMiB: 128 };

interface World {
  home: string;
  lab: LabStatus;
  env: TestWorkflowEnvironment;
  inv: Inventory;
  hv: VirshHypervisor;
  share: SharedDirectory;
  ferry: FerryClient;
  stop(): Promise<void>;
}

async function startWorld(env: TestWorkflowEnvironment): Promise<World> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-shared-'));
  log(`shared: lab of 2 hosts, prefix ${labNaming().prefix}`);
  const lab = await labUp({ home, hosts: 2, vms: 0, ...labNaming() });
  for (const h of lab.hosts) await ensureDefaultPool(h.uri);
  const share = await shareDirectory({ home, lab }, lab.hosts.map((h) => h.name), SHARED);
  for (const h of lab.hosts) await ensureDirPool(h.uri, 'shared', SHARED);
  const hv = new VirshHypervisor();
  const inv = await openInventory(path.join(home, 'inventory.db'));
  const taskQueue = `ferry-bench-shared-${Date.now()}`;
  const { worker, running } = await startLabWorker(env, inv, hv, lab, taskQueue);
  return {
    home,
    lab,
    env,
    inv,
    hv,
    share,
    ferry: FerryClient.fromClient(env.client, taskQueue),
    async stop() {
      worker.shutdown();
      await running.catch(() => undefined);
      hv.close();
      await inv.close();
      await share.undo().catch(() => undefined);
      await labDown(home, { prefix: labNaming().prefix });
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

async function whereRuns(w: World, uuid: string): Promise<LabHost> {
  for (const h of w.lab.hosts) {
    if ((await w.hv.getDomain(h.uri, uuid))?.state === 'running') return h;
  }
  throw new Error(`VM ${uuid} runs nowhere`);
}

async function migrateOnce(w: World, vm: PlainVm, layout: DiskLayout): Promise<SharedStorageRun> {
  const from = await whereRuns(w, vm.uuid);
  const to = w.lab.hosts.find((h) => h.name !== from.name)!;
  const net0 = hostNetBytes(to.name).rx;
  const t0 = Date.now();
  let outcome: MigrationOutcome & { disks?: unknown };
  try {
    outcome = await w.ferry.migrate({ sourceHost: from.address, vmName: vm.name, vmUuid: vm.uuid, targetHost: to.name });
  } catch (e) {
    if (!(e instanceof MigrationRejectedError)) throw e;
    const wallMs = Date.now() - t0;
    return { layout, status: 'rejected', reason: e.message, direction: `${from.name}→${to.name}`, wallMs, workflowMs: wallMs, downtimeMs: null, bytesTransferred: null, wireBytes: hostNetBytes(to.name).rx - net0, reportDisks: null };
  }
  const wallMs = Date.now() - t0;
  const wireBytes = hostNetBytes(to.name).rx - net0;
  return {
    layout,
    status: outcome.status,
    reason: outcome.reason,
    direction: `${from.name}→${to.name}`,
    wallMs,
    workflowMs: outcome.durationMs,
    downtimeMs: outcome.downtimeMs,
    bytesTransferred: outcome.bytesTransferred,
    wireBytes,
    reportDisks: outcome.disks ?? null,
  };
}

export async function sharedStorageBench(o: SharedStorageOptions): Promise<SharedStorageResult> {
  const before = load1();
  const env = await startTemporal();
  let w: World | null = null;
  try {
    w = await startWorld(env);
    const world = w;
    const H1 = world.lab.hosts[0]!.name;
    const disk = { sizeMiB: o.diskMiB, dataMiB: o.dataMiB };
    const vms: Record<DiskLayout, PlainVm> = {
      shared: await definePlainVm(world, H1, { name: 'bench-shared', memoryMiB: o.memoryMiB, disks: [{ path: `${SHARED}/bench-shared.qcow2`, ...disk }] }),
      copied: await definePlainVm(world, H1, { name: 'bench-local', memoryMiB: o.memoryMiB, disks: [{ path: `${DEFAULT_POOL_DIR}/bench-local.qcow2`, ...disk }] }),
    };
    await syncPlainVms(world.inv, world);
    log('shared: warm-up (one of each, not counted)');
    await migrateOnce(world, vms.shared, 'shared');
    await migrateOnce(world, vms.copied, 'copied');
    const order = abbaOrder(o.rounds);
    const runs: SharedStorageRun[] = [];
    for (const [i, m] of order.entries()) {
      const layout: DiskLayout = m === 'A' ? 'shared' : 'copied';
      const r = await migrateOnce(world, vms[layout], layout);
      runs.push(r);
      if (r.status !== 'migrated') {
        log(`  ${i + 1}/${order.length} ${layout.padEnd(6)} ${r.direction}: ${r.status}: ${r.reason}`);
        continue;
      }
      log(
        `  ${i + 1}/${order.length} ${layout.padEnd(6)} ${r.direction}: client ${r.wallMs} ms, workflow ${r.workflowMs} ms, ` +
          `reported ${r.bytesTransferred === null ? '–' : mib(r.bytesTransferred)}, wire ${mib(r.wireBytes)}, downtime ${r.downtimeMs} ms`,
      );
    }
    const intact = {} as Record<DiskLayout, boolean>;
    for (const layout of ['shared', 'copied'] as const) {
      const vm = vms[layout];
      const at = await whereRuns(world, vm.uuid);
      intact[layout] = (await diskDigest(world.home, at.name, vm.disks[0]!.path)) === vm.disks[0]!.expectedDigest;
    }
    return { options: o, runs, order: order.join(''), intact, load: [before, load1()] };
  } finally {
    await w?.stop();
    await env.teardown();
  }
}

export function sharedStorageMarkdown(r: SharedStorageResult): string {
  const { options: o } = r;
  const rows = (['shared', 'copied'] as const).map((layout) => {
    const all = r.runs.filter((x) => x.layout === layout);
    const runs = all.filter((x) => x.status === 'migrated');
    const failed = all.filter((x) => x.status !== 'migrated');
    const bytes = runs.map((x) => x.bytesTransferred).filter((x): x is number => x !== null);
    const mibRange = (v: number[]) => {
      if (v.length === 0) return '–';
      const s = summarize(v);
      return `${(s.p50 / MiB).toFixed(1)} (${(s.min / MiB).toFixed(1)}–${(s.max / MiB).toFixed(1)}) MiB`;
    };
    return [
      layout === 'shared' ? `shared (\`${SHARED}\`)` : `copied (\`default\` pool)`,
      failed.length === 0 ? String(runs.length) : `${runs.length} (+ ${failed.length} not migrated: ${[...new Set(failed.map((x) => `${x.status}: ${x.reason}`))].join('; ')})`,
      medRange(runs.map((x) => x.wallMs)),
      medRange(runs.map((x) => x.workflowMs)),
      mibRange(bytes),
      mibRange(runs.map((x) => x.wireBytes)),
      medRange(runs.map((x) => x.downtimeMs).filter((x): x is number => x !== null), 'ms'),
      r.intact[layout] ? 'yes' : '**NO**',
    ];
  });
  return [
    `The same VM kind (${o.memoryMiB} MiB memory, one ${o.diskMiB} MiB qcow2 disk with ${o.dataMiB} MiB of deterministic data, ` +
      'defined with plain virsh, nothing boots) migrated back and forth between two lab hosts by `FerryClient.migrate` with a fixed ' +
      `target, ${o.rounds} times per layout, alternating ABBA (order ${r.order}) after one unmeasured warm-up of each. "shared": the ` +
      'disk on a directory both hosts see (bind mounts inside their mount namespaces, a `shared` dir pool on each); "copied": the ' +
      "disk in libvirt's `default` pool. \"reported\" is the report's bytesTransferred; \"wire\" what the target host's eth0 " +
      'received during the migration (everything, libvirt control traffic included; the disk mirror sends zeros cheaply). ' +
      `"intact": the disk's guest-visible content after the last migration equals what it was created with. Load ${r.load[0]} → ${r.load[1]}.`,
    '',
    table(['disk', 'migrated runs', 'client wall', 'workflow', 'reported bytes', 'wire bytes into target', 'downtime', 'intact'], rows),
  ].join('\n');
}
