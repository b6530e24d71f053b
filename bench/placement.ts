/**
 * Placement at fleet scale: one target selection with its claim (SqlInventory.claimTarget, then
 * releaseClaim) on a synthetic inventory in the embedded store (a SQLite file, WAL, as the worker uses it),
 * at 100, 1,000 and 10,000 hosts with 10 VMs per host on average (so 100,000 VMs at the top).
 *
 * The fleet is deterministic (seeded PRNG) and mixed: three host sizes, ~2 % of hosts in maintenance and
 * ~0.5 % down, 0–20 VMs per host of four sizes, a few stopped. Three other migrations hold claims during the
 * measurement (so busy targets and the limits are part of every selection), with the default limits.
 *
 * Before/after in the same run: with a baseline git revision (default: the commit before the placement
 * optimisation), that revision's inventory/ and common/ are exported into bench/.baseline/<rev>/ (removed
 * afterwards) and run beside the current code. Each scale gets one database per implementation, seeded
 * identically; the claims run in child processes (run(), no shell), one per block and implementation, in
 * ABBA order over 4 blocks, so machine drift hits both alike and one's garbage never lands in the other's
 * numbers.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { run } from '../hypervisor/exec';
import { openInventory } from '../inventory/index';
import type { Inventory, PlacementRequest } from '../inventory/store';
import { REPO, load1, log, summarize, table, type Summary } from './common';
import { prng } from '../test/support/prng';

/** The last commit with the original placement code (62599fe made claims sublinear in the fleet's size). */
export const PLACEMENT_BASELINE_REV = '62599fe~1';

export interface PlacementOptions {
  scales: number[];
  vmsPerHost: number;
  claims: number;
  /** A git revision to compare against, or null for the current code only. */
  baseline: string | null;
}

export interface PlacementScaleResult {
  hosts: number;
  vms: number;
  seedMs: number;
  byImpl: Record<string, { claim: Summary; claimRelease: Summary; cpu: Summary; resultBytes: number; rejectedListed: number }>;
}

export interface PlacementResult {
  options: PlacementOptions;
  scales: PlacementScaleResult[];
  load: [number, number];
}

const GiB = 1024 ** 3;
const HOST_SIZES = [
  { memoryMiB: 131_072, vcpus: 32 },
  { memoryMiB: 262_144, vcpus: 64 },
  { memoryMiB: 524_288, vcpus: 128 },
];
const VM_SIZES = [
  { memoryMiB: 1024, vcpus: 1 },
  { memoryMiB: 2048, vcpus: 2 },
  { memoryMiB: 4096, vcpus: 2 },
  { memoryMiB: 8192, vcpus: 4 },
];


const hostName = (i: number) => `host${String(i).padStart(5, '0')}`;

interface SyntheticVm {
  uuid: string;
  host: string;
  memoryMiB: number;
  vcpus: number;
  state: 'running' | 'stopped';
}

/** The synthetic fleet: deterministic for (hosts, vmsPerHost). */
function syntheticFleet(hosts: number, vmsPerHost: number) {
  const rnd = prng(hosts * 7 + vmsPerHost);
  const hostRows: { name: string; state: string; memoryMiB: number; vcpus: number }[] = [];
  const vms: SyntheticVm[] = [];
  let v = 0;
  for (let i = 0; i < hosts; i++) {
    const size = HOST_SIZES[Math.floor(rnd() * HOST_SIZES.length)] ?? HOST_SIZES[0]!;
    const r = rnd();
    hostRows.push({ name: hostName(i), state: r < 0.02 ? 'maintenance' : r < 0.025 ? 'down' : 'normal', ...size });
    const count = Math.floor(rnd() * (2 * vmsPerHost + 1));
    for (let k = 0; k < count; k++) {
      const vs = VM_SIZES[Math.floor(rnd() * VM_SIZES.length)] ?? VM_SIZES[0]!;
      const uuid = `00000000-0000-4000-8000-${String(v).padStart(12, '0')}`;
      vms.push({ uuid, host: hostName(i), memoryMiB: vs.memoryMiB, vcpus: vs.vcpus, state: rnd() < 0.03 ? 'stopped' : 'running' });
      v++;
    }
  }
  return { hostRows, vms };
}

function syntheticVms(hosts: number, vmsPerHost: number): SyntheticVm[] {
  return syntheticFleet(hosts, vmsPerHost).vms;
}

/** Loads the synthetic fleet straight into the file (after the inventory created its schema). */
export function seed(file: string, hosts: number, vmsPerHost: number): SyntheticVm[] {
  const { hostRows, vms } = syntheticFleet(hosts, vmsPerHost);
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  const now = new Date().toISOString();
  const insertHost = db.prepare(
    'INSERT INTO hosts (name, address, uri, state, memory_mib, vcpus, storage_free_bytes, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const insertVm = db.prepare('INSERT INTO vms (uuid, name, host, memory_mib, vcpus, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const insertDisk = db.prepare('INSERT INTO disks (vm_uuid, target, name, path, format, size_bytes) VALUES (?, ?, ?, ?, ?, ?)');
  db.transaction(() => {
    hostRows.forEach((h, i) => {
      const addr = `10.${Math.floor(i / 65536) % 256}.${Math.floor(i / 256) % 256}.${i % 256}`;
      insertHost.run(h.name, addr, `qemu+tcp://${addr}/system`, h.state, h.memoryMiB, h.vcpus, 8 * 1024 * GiB, now);
    });
    vms.forEach((vm, i) => {
      insertVm.run(vm.uuid, `vm${i}`, vm.host, vm.memoryMiB, vm.vcpus, vm.state, now);
      insertDisk.run(vm.uuid, 'vda', 'disk0.qcow2', `/var/lib/libvirt/images/ferry/${vm.uuid}/disk0.qcow2`, 'qcow2', 20 * GiB);
    });
  })();
  db.close();
  return vms;
}

function request(vm: SyntheticVm, workflowId: string): PlacementRequest {
  return { vmUuid: vm.uuid, sourceHost: vm.host, workflowId, memoryMiB: vm.memoryMiB, vcpus: vm.vcpus, storageBytes: 20 * GiB };
}

/** Exports `rev`'s inventory/ and common/ into bench/.baseline/<rev>/ (git show per file, no shell). */
async function exportRevision(rev: string): Promise<string> {
  const { stdout: full } = await run('git', ['-C', REPO, 'rev-parse', '--short', rev]);
  const short = full.trim();
  const dir = path.join(REPO, 'bench', '.baseline', short);
  if (fs.existsSync(path.join(dir, '.complete'))) return dir;
  const { stdout: list } = await run('git', ['-C', REPO, 'ls-tree', '-r', '--name-only', short, 'inventory', 'common']);
  for (const file of list.split('\n').filter((f) => f.endsWith('.ts'))) {
    const { stdout } = await run('git', ['-C', REPO, 'show', `${short}:${file}`]);
    fs.mkdirSync(path.join(dir, path.dirname(file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), stdout);
  }
  fs.writeFileSync(path.join(dir, '.complete'), `${short}\n`);
  return dir;
}

interface ChildReport {
  claimMs: number[];
  claimReleaseMs: number[];
  cpuMs: number[];
  resultBytes: number[];
  rejectedListed: number[];
  vms?: number;
  seedMs?: number;
}

/** Opens the inventory of `impl` ('current' or a baseline directory) on `file`. */
function opener(impl: string): (file: string) => Promise<Inventory> {
  if (impl === 'current') return (file) => openInventory(file);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const old = require(path.join(impl, 'inventory', 'index.ts')) as typeof import('../inventory/index');
  return (file) => old.openInventory(file);
}

/**
 * A child process: `seed` creates the schema with `impl`'s code and loads the fleet; `measure` runs one
 * block of claims (its own process, so one implementation's garbage never lands in the other's numbers).
 */
async function child(argv: string[]): Promise<void> {
  const get = (k: string) => argv[argv.indexOf(`--${k}`) + 1] ?? '';
  const open = opener(get('impl'));
  const file = get('file');
  const hosts = Number(get('hosts'));
  const vmsPerHost = Number(get('vms-per-host'));
  const report: ChildReport = { claimMs: [], claimReleaseMs: [], cpuMs: [], resultBytes: [], rejectedListed: [] };
  if (get('mode') === 'seed') {
    await (await open(file)).close();
    const t0 = performance.now();
    report.vms = seed(file, hosts, vmsPerHost).length;
    report.seedMs = performance.now() - t0;
  } else {
    const vms = syntheticVms(hosts, vmsPerHost).filter((v) => v.state === 'running');
    const rnd = prng(hosts * 1000 + Number(get('block')));
    const pick = (): SyntheticVm => vms[Math.floor(rnd() * vms.length)] ?? vms[0]!;
    const held: SyntheticVm[] = [];
    while (held.length < 3) {
      const c = pick();
      if (!held.some((h) => h.host === c.host)) held.push(c);
    }
    const inv = await open(file);
    for (const h of held) await inv.claimTarget(request(h, `held-${h.uuid}`));
    const warmup = 10;
    const claims = Number(get('claims'));
    for (let k = 0; k < warmup + claims; k++) {
      let vm = pick();
      while (held.some((h) => h.uuid === vm.uuid || h.host === vm.host)) vm = pick();
      const wf = `wf-${k}`;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const placed = await inv.claimTarget(request(vm, wf));
      const t1 = performance.now();
      await inv.releaseClaim(vm.uuid, wf);
      const t2 = performance.now();
      const cpu = process.cpuUsage(c0);
      await inv.setVmPlacement(vm.uuid, vm.host, 'running'); // untimed: back to where it was
      if (k >= warmup) {
        report.claimMs.push(t1 - t0);
        report.claimReleaseMs.push(t2 - t0);
        report.cpuMs.push((cpu.user + cpu.system) / 1000);
        report.resultBytes.push(Buffer.byteLength(JSON.stringify(placed)));
        report.rejectedListed.push(placed.rejected.length);
      }
    }
    for (const h of held) {
      await inv.releaseClaim(h.uuid, `held-${h.uuid}`);
      await inv.setVmPlacement(h.uuid, h.host, 'running');
    }
    await inv.close();
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

async function spawnChild(args: string[]): Promise<ChildReport> {
  const { stdout } = await run(process.execPath, ['--require', path.join(REPO, 'test/support/register-ts.cjs'), __filename, '--placement-child', ...args], {
    timeoutMs: 30 * 60_000,
  });
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as ChildReport;
}

async function measureScale(impls: { label: string; impl: string }[], hosts: number, o: PlacementOptions): Promise<PlacementScaleResult> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-placement-'));
  try {
    const files = impls.map((x, i) => path.join(tmp, `inventory-${i}.db`));
    let vms = 0;
    let seedMs = 0;
    for (const [i, x] of impls.entries()) {
      const r = await spawnChild(['--mode', 'seed', '--impl', x.impl, '--file', files[i]!, '--hosts', String(hosts), '--vms-per-host', String(o.vmsPerHost)]);
      vms = r.vms ?? 0;
      seedMs = r.seedMs ?? 0;
    }
    log(`placement: ${hosts} hosts, ${vms} VMs seeded (${(seedMs / 1000).toFixed(1)} s per database)`);
    const blocks = impls.length > 1 ? 4 : 1;
    const perBlock = Math.ceil(o.claims / blocks);
    const acc = impls.map(() => ({ claimMs: [] as number[], claimReleaseMs: [] as number[], cpuMs: [] as number[], resultBytes: [] as number[], rejectedListed: [] as number[] }));
    for (let b = 0; b < blocks; b++) {
      // ABBA over blocks: each implementation goes first as often as second
      const order = impls.map((_, i) => i);
      if (b % 2 === 1) order.reverse();
      for (const i of order) {
        const r = await spawnChild([
          '--mode', 'measure', '--impl', impls[i]!.impl, '--file', files[i]!, '--hosts', String(hosts),
          '--vms-per-host', String(o.vmsPerHost), '--claims', String(perBlock), '--block', String(b),
        ]);
        const a = acc[i]!;
        a.claimMs.push(...r.claimMs);
        a.claimReleaseMs.push(...r.claimReleaseMs);
        a.cpuMs.push(...r.cpuMs);
        a.resultBytes.push(...r.resultBytes);
        a.rejectedListed.push(...r.rejectedListed);
      }
    }
    const byImpl: PlacementScaleResult['byImpl'] = {};
    impls.forEach((x, i) => {
      const a = acc[i]!;
      byImpl[x.label] = {
        claim: summarize(a.claimMs),
        claimRelease: summarize(a.claimReleaseMs),
        cpu: summarize(a.cpuMs),
        resultBytes: summarize(a.resultBytes).p50,
        rejectedListed: summarize(a.rejectedListed).p50,
      };
    });
    return { hosts, vms, seedMs, byImpl };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export async function placementBench(o: PlacementOptions): Promise<PlacementResult> {
  const before = load1();
  const impls: { label: string; impl: string }[] = [];
  let exported: string | null = null;
  if (o.baseline !== null && o.baseline.startsWith('dir:')) {
    // a directory holding inventory/ and common/ (e.g. a local experiment), kept afterwards
    const dir = path.resolve(o.baseline.slice('dir:'.length));
    impls.push({ label: `before (${path.basename(dir)})`, impl: dir });
  } else if (o.baseline !== null) {
    exported = await exportRevision(o.baseline);
    impls.push({ label: `before (${path.basename(exported)})`, impl: exported });
  }
  impls.push({ label: o.baseline !== null ? 'after (current)' : 'current', impl: 'current' });
  try {
    const scales: PlacementScaleResult[] = [];
    for (const hosts of o.scales) scales.push(await measureScale(impls, hosts, o));
    return { options: o, scales, load: [before, load1()] };
  } finally {
    if (exported !== null) fs.rmSync(exported, { recursive: true, force: true });
  }
}

export function placementMarkdown(r: PlacementResult): string {
  const f = (v: number) => v.toFixed(2);
  const rows: string[][] = [];
  for (const s of r.scales) {
    for (const [label, x] of Object.entries(s.byImpl)) {
      rows.push([
        s.hosts.toLocaleString('en-US'),
        s.vms.toLocaleString('en-US'),
        label,
        f(x.claimRelease.p50),
        f(x.claimRelease.p99),
        f(x.claimRelease.max),
        f(x.cpu.p50),
        f(x.cpu.p99),
        f(x.claim.p50),
        f(x.claim.p99),
        String(x.rejectedListed),
        `${(x.resultBytes / 1024).toFixed(1)} KiB`,
      ]);
    }
  }
  const top = r.scales[r.scales.length - 1];
  const current = top ? Object.entries(top.byImpl).find(([l]) => l !== undefined && !l.startsWith('before'))?.[1] : undefined;
  const verdict = current
    ? `At ${top!.hosts.toLocaleString('en-US')} hosts the current code's p99 (claim + release) is ${f(current.claimRelease.p99)} ms: ` +
      (current.claimRelease.p99 <= 5 ? '**meets** the 5 ms target.' : '**misses** the 5 ms target.')
    : '';
  return [
    `${r.options.claims} measured claims per scale and implementation, each on a random running VM, default limits, ` +
      `3 other claims held; a SQLite file in WAL mode through \`openInventory\`. Each implementation runs in its own ` +
      `process, in blocks alternating ABBA (10 warm-up claims per block). Wall time per claim (claimTarget + ` +
      `releaseClaim, and claimTarget alone) and the process CPU time of claim + release (user + system, all ` +
      `threads): on a loaded machine the wall-time tail is mostly waiting for a core. ` +
      `Load average during the run: ${r.load[0]} → ${r.load[1]}.`,
    '',
    table(
      ['hosts', 'VMs', 'implementation', 'claim+release p50 (ms)', 'p99', 'max', 'CPU p50 (ms)', 'CPU p99', 'claim alone p50', 'p99', '`rejected` entries', 'result JSON'],
      rows,
    ),
    '',
    verdict,
  ].join('\n');
}

if (process.argv.includes('--placement-child')) {
  child(process.argv).then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
