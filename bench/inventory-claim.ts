/**
 * Quick measurement (not a test) of claimTarget on a large inventory, SQLite vs PostgreSQL:
 *
 *   node --require ./test/support/register-ts.cjs bench/inventory-claim.ts [--hosts 1000] [--vms 20000]
 *        [--claims 30] [--procs 4] [--per-proc 5] [--backends sqlite,postgres]
 *
 * PostgreSQL: FERRY_TEST_PG_URL (a fresh schema is created there and dropped afterwards).
 *  1. sequential: one claimTarget at a time on a `hosts`-host / `vms`-VM inventory (each VM with one disk);
 *     each claim is released afterwards, so every claim sees the same inventory. Latency of claimTarget alone.
 *  2. concurrent: `procs` processes (each warmed up by one claim + release) fire `per-proc` claims each at
 *     the same instant (a file barrier); per-claim latency and the wall time from the start to the last
 *     answer; checks that every claim got a host of its own (inbound limit 1).
 * The child processes are started with run() (argv, no shell) and get the location in their environment.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../hypervisor/exec';
import { describeInventoryLocation, openInventory } from '../inventory/index';
import type { Db } from '../inventory/db';
import { PgDb } from '../inventory/pg-db';
import { SqliteDb } from '../inventory/sqlite-db';
import type { Inventory, MigrationLimits } from '../inventory/store';
import { freshDatabase, type Backend, type TestDatabase } from '../test/support/inventory-backends';

const LIMITS: MigrationLimits = { maxOutboundPerHost: 100, maxInboundPerHost: 1, maxInFlight: 100 };
const GiB = 1024 ** 3;
const REPO = path.resolve(__dirname, '..');

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}

function stats(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return `n=${s.length} min ${s[0]?.toFixed(1)} p50 ${q(0.5).toFixed(1)} p95 ${q(0.95).toFixed(1)} max ${s[s.length - 1]?.toFixed(1)} mean ${mean.toFixed(1)} ms`;
}

const hostName = (i: number): string => `h${String(i).padStart(4, '0')}`;
const vmName = (i: number): string => `vm${String(i).padStart(5, '0')}`;

/** Bulk load through the Db port in one transaction, multi-row INSERTs (the inventory API would take minutes). */
async function seed(db: Db, hosts: number, vms: number): Promise<void> {
  const now = new Date().toISOString();
  const insert = async (tx: Parameters<Parameters<Db['transaction']>[0]>[0], table: string, cols: string[], rows: (string | number | null)[][]) => {
    const per = Math.floor(30_000 / cols.length);
    for (let i = 0; i < rows.length; i += per) {
      const chunk = rows.slice(i, i + per);
      const values = chunk.map(() => `(${cols.map(() => '?').join(', ')})`).join(', ');
      await tx.run(`INSERT INTO ${table} (${cols.join(', ')}) VALUES ${values}`, chunk.flat());
    }
  };
  await db.transaction(async (tx) => {
    await insert(
      tx,
      'hosts',
      ['name', 'address', 'uri', 'state', 'memory_mib', 'vcpus', 'storage_free_bytes', 'updated_at'],
      Array.from({ length: hosts }, (_, i) => {
        const addr = `10.${Math.floor(i / 65536) % 256}.${Math.floor(i / 256) % 256}.${i % 256}`;
        return [hostName(i), addr, `qemu+tcp://${addr}/system`, 'normal', 262_144, 64, 10 * 1024 * GiB, now];
      }),
    );
    const vmRows = Array.from({ length: vms }, (_, i) => [vmName(i), vmName(i), hostName(i % hosts), 4096, 2, 'running', now]);
    await insert(tx, 'vms', ['uuid', 'name', 'host', 'memory_mib', 'vcpus', 'state', 'updated_at'], vmRows);
    await insert(
      tx,
      'disks',
      ['vm_uuid', 'target', 'name', 'path', 'format', 'size_bytes'],
      Array.from({ length: vms }, (_, i) => [vmName(i), 'vda', 'disk0.qcow2', `/var/lib/libvirt/images/ferry/${vmName(i)}/disk0.qcow2`, 'qcow2', 20 * GiB]),
    );
  });
  if (db.dialect === 'postgres') await db.run('ANALYZE');
}

function request(vm: number, hosts: number) {
  return {
    vmUuid: vmName(vm),
    sourceHost: hostName(vm % hosts),
    workflowId: `wf-${vmName(vm)}`,
    memoryMiB: 4096,
    vcpus: 2,
    storageBytes: 20 * GiB,
    limits: LIMITS,
  };
}

async function sequential(inv: Inventory, claims: number, hosts: number, vms: number): Promise<number[]> {
  const ms: number[] = [];
  for (let k = 0; k < claims + 3; k++) {
    const vm = (k * 7919) % vms; // spread over hosts
    const t0 = performance.now();
    const { claim } = await inv.claimTarget(request(vm, hosts));
    const dt = performance.now() - t0;
    if (k >= 3) ms.push(dt); // 3 warm-up claims
    await inv.releaseClaim(claim.vmUuid, claim.workflowId);
    await inv.setVmPlacement(claim.vmUuid, hostName(vm % hosts), 'running');
  }
  return ms;
}

interface ChildReport {
  latenciesMs: number[];
  startAt: number;
  endAt: number;
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

async function concurrent(db: TestDatabase, inv: Inventory, procs: number, perProc: number, hosts: number, vms: number): Promise<void> {
  const barrier = mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-'));
  const vmsOf = (p: number): number[] => Array.from({ length: perProc + 1 }, (_, j) => ((p * (perProc + 1) + j) * 104_729 + 17) % vms);
  try {
    const children = Array.from({ length: procs }, async (_, p) => {
      const { stdout } = await run(
        process.execPath,
        ['--require', path.join(REPO, 'test/support/register-ts.cjs'), __filename, '--child', ...vmsOf(p).map(String)],
        { env: { FERRY_BENCH_INVENTORY: db.location, FERRY_BENCH_BARRIER: barrier, FERRY_BENCH_HOSTS: String(hosts) }, timeoutMs: 120_000 },
      );
      return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as ChildReport;
    });
    while (readdirSync(barrier).filter((f) => f.startsWith('ready-')).length < procs) await sleep(5);
    writeFileSync(path.join(barrier, 'go'), '');
    const reports = await Promise.all(children);
    const claims = await inv.listClaims();
    const distinct = new Set(claims.map((c) => c.host)).size;
    const ok = claims.length === procs * perProc && distinct === claims.length;
    const startAt = Math.min(...reports.map((r) => r.startAt));
    console.log(`  concurrent: ${procs} processes × ${perProc} claims: ${claims.length} claims on ${distinct} distinct hosts${ok ? '' : '  <-- UNEXPECTED'}`);
    console.log(`    latency per claim: ${stats(reports.flatMap((r) => r.latenciesMs))}`);
    console.log(`    wall time from the start to the last answer: ${Math.max(...reports.map((r) => r.endAt)) - startAt} ms` +
      ` (children started within ${Math.max(...reports.map((r) => r.startAt)) - startAt} ms of each other)`);
    for (const c of claims) {
      await inv.releaseClaim(c.vmUuid, c.workflowId);
      await inv.setVmPlacement(c.vmUuid, c.sourceHost, 'running');
    }
  } finally {
    rmSync(barrier, { recursive: true, force: true });
  }
}

async function child(): Promise<void> {
  const location = process.env.FERRY_BENCH_INVENTORY ?? '';
  const hosts = Number(process.env.FERRY_BENCH_HOSTS);
  const barrier = process.env.FERRY_BENCH_BARRIER ?? '';
  const [warm, ...vms] = process.argv.slice(process.argv.indexOf('--child') + 1).map(Number);
  const inv = await openInventory(location);
  // Warm up the code paths and the connection(s): one claim of a VM that is not measured, released again.
  const w = await inv.claimTarget(request(warm ?? 0, hosts));
  await inv.releaseClaim(w.claim.vmUuid, w.claim.workflowId);
  await inv.setVmPlacement(w.claim.vmUuid, w.claim.sourceHost, 'running');
  writeFileSync(path.join(barrier, `ready-${process.pid}`), '');
  while (!existsSync(path.join(barrier, 'go'))) await sleep(1);
  const startAt = Date.now();
  const latenciesMs = await Promise.all(
    vms.map(async (vm) => {
      const t0 = performance.now();
      await inv.claimTarget(request(vm, hosts));
      return performance.now() - t0;
    }),
  );
  const endAt = Date.now();
  await inv.close();
  process.stdout.write(`${JSON.stringify({ latenciesMs, startAt, endAt } satisfies ChildReport)}\n`);
}

async function main(): Promise<void> {
  const hosts = Number(arg('hosts', '1000'));
  const vms = Number(arg('vms', '20000'));
  const claims = Number(arg('claims', '30'));
  const procs = Number(arg('procs', '4'));
  const perProc = Number(arg('per-proc', '5'));
  const backends = arg('backends', 'sqlite,postgres').split(',') as Backend[];
  console.log(`inventory: ${hosts} hosts, ${vms} VMs (one disk each); ${os.cpus().length} CPUs, node ${process.version}`);
  for (const backend of backends) {
    const db = await freshDatabase(backend);
    try {
      const inv = await openInventory(db.location);
      const raw: Db = backend === 'postgres' ? await PgDb.connect(db.location) : new SqliteDb(db.location);
      const t0 = performance.now();
      await seed(raw, hosts, vms);
      await raw.close();
      console.log(`${backend} (${describeInventoryLocation(db.location)}): loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      console.log(`  sequential claimTarget: ${stats(await sequential(inv, claims, hosts, vms))}`);
      await concurrent(db, inv, procs, perProc, hosts, vms);
      await inv.close();
    } finally {
      await db.drop();
    }
  }
}

if (process.argv.includes('--child')) {
  child().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
