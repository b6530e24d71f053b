/**
 * Ferry's benchmark suite: `npm run bench [-- options]` (never part of `npm test`).
 *
 *   --only a,b,…       suites to run (default all): overhead, downtime, evacuation, placement, throughput, shared,
 *                      startup, e2e, guest, ui, cluster (startup, e2e and ui need `npm run build` first; cluster
 *                      needs root and the Temporal server scripts/install-deps builds)
 *                      (overhead and downtime come from the same migrations; evacuation shares their lab)
 *   --pairs N          rounds per VM size in `overhead` (default 5): each round runs Ferry, raw virsh and Ferry with
 *                      one-shot virsh processes (FERRY_VIRSH_SESSIONS=0) once; --no-one-shot leaves the last out
 *   --sizes 128,512    VM memory sizes (MiB) for `overhead` (default 128,512)
 *   --evac-vms N       VMs on the evacuated host (default 6); --evac-runs N evacuations (default 2)
 *   --scales 100,1000,10000   hosts per placement scale (10 VMs per host); --claims N (default 200)
 *   --placement-baseline REV  compare with REV's inventory (default the pre-optimisation commit; "none";
 *                      "dir:PATH" for a directory holding inventory/ and common/, e.g. a local experiment)
 *   --workflows N      workflows per throughput configuration (default 150); --configs a,b (see throughput.ts)
 *   --shared-rounds N  migrations per disk layout in `shared` (default 4): a VM with its disk on a directory two hosts
 *                      share vs one with its disk in the `default` pool (copied), alternating ABBA
 *   --startup-runs N   processes per command in `startup` (default 20)
 *   --e2e-rounds N     rounds in `e2e` (default 4): `ferry migrate` (CLI process) vs the same work by hand with virsh
 *   --guest-migrations N  live migrations of the Linux guest in `guest` (default 6): libvirt's downtime vs the guest's
 *   --ui-loads N       page loads in `ui` (default 10; headless Chromium); --ui-history N rows (default 10000)
 *   --out FILE         the Markdown report (default bench/RESULTS.md); raw numbers go to FILE.json
 *
 * Sections of suites that did not run are kept from the previous report (each says when it was measured).
 * Lab suites need root and libvirt; they use FERRY_LAB_PREFIX / FERRY_LAB_SUBNET (default bch / 10.213.87).
 */
import fs from 'node:fs';
import path from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { log, machineInfo, machineMarkdown, REPO } from './common';
import { placementBench, placementMarkdown, PLACEMENT_BASELINE_REV } from './placement';
import { throughputBench, throughputMarkdown } from './throughput';
import { downtimeMarkdown, evacuationMarkdown, labBench, overheadMarkdown, singleMedians } from './lab';
import { sharedStorageBench, sharedStorageMarkdown, SHARED_STORAGE_DEFAULTS } from './shared-storage';
import { e2eBench, e2eMarkdown, startupBench, startupMarkdown } from './cli';
import { guestDowntimeBench, guestDowntimeMarkdown } from './guest-downtime';
import { uiBench, uiMarkdown } from './ui';
import { clusterBench, clusterMarkdown } from './cluster';

const SUITES = ['overhead', 'downtime', 'evacuation', 'placement', 'throughput', 'shared', 'startup', 'e2e', 'guest', 'ui', 'cluster'] as const;
type Suite = (typeof SUITES)[number];

const TITLES: Record<Suite, string> = {
  overhead: '1. Orchestration overhead on the real lab: Ferry vs raw virsh',
  downtime: '2. Downtime: Ferry vs raw virsh',
  evacuation: '3. Evacuation makespan vs the lower bound',
  placement: '4. Placement at fleet scale',
  throughput: '5. Workflow throughput (benchmark hypervisor)',
  shared: '6. Shared storage vs a copied disk (real lab, plain-virsh VMs)',
  startup: '7. CLI start-up: `ferry hosts list`, `ferry vms list --json`',
  e2e: '8. End to end as a user: `ferry migrate` (CLI process) vs the same work by hand with virsh',
  guest: "9. Guest-observed downtime (a real Linux guest, probed every 10 ms) vs libvirt's",
  ui: '10. `ferry ui` page load at fleet scale (1,000 VMs, 10,000 history rows, 20 migrations running)',
  cluster: '11. The real Temporal server on PostgreSQL (`ferry cluster`) vs the dev server; worker cost per in-flight migration',
};

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
  return v;
}

function numArg(name: string, dflt: number): number {
  const v = arg(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer (got ${v})`);
  return n;
}

function listArg(name: string, dflt: number[]): number[] {
  const v = arg(name);
  return v === undefined ? dflt : v.split(',').map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: ${x} is not a positive integer`);
    return n;
  });
}

const SECTION_RE = /<!-- bench:(\w+) -->\n([\s\S]*?)<!-- \/bench:\1 -->/g;

function previousSections(file: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!fs.existsSync(file)) return out;
  const text = fs.readFileSync(file, 'utf8');
  for (const m of text.matchAll(SECTION_RE)) out.set(m[1] ?? '', m[2] ?? '');
  return out;
}

async function main(): Promise<void> {
  const only = arg('only');
  const selected = new Set<Suite>(
    only === undefined
      ? SUITES
      : only.split(',').map((s) => {
          if (!(SUITES as readonly string[]).includes(s)) throw new Error(`unknown suite ${s}; known: ${SUITES.join(', ')}`);
          return s as Suite;
        }),
  );
  const out = path.resolve(arg('out') ?? path.join(REPO, 'bench', 'RESULTS.md'));
  // Workers and the dev server log at INFO by default: only warnings and errors here.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  process.env.FERRY_LAB_PREFIX ||= 'bch';
  process.env.FERRY_LAB_SUBNET ||= '10.213.87';

  const machine = await machineInfo();
  log(`machine: ${machine.cpuModel}, ${machine.cores} cores, load ${machine.loadAverage.join('/')}`);
  const stamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const sections = new Map<Suite, string>();
  const raw: Record<string, unknown> = { machine, startedAt: stamp, argv: process.argv.slice(2) };
  const section = (suite: Suite, body: string) => sections.set(suite, `_Measured ${stamp}._\n\n${body}\n`);

  const overhead = selected.has('overhead') || selected.has('downtime');
  if (overhead || selected.has('evacuation')) {
    const r = await labBench({
      pairs: numArg('pairs', 5),
      oneShot: !process.argv.includes('--no-one-shot'),
      sizes: listArg('sizes', [128, 512]),
      evacVms: numArg('evac-vms', 6),
      evacRuns: numArg('evac-runs', 2),
      overhead,
      evacuation: selected.has('evacuation'),
    });
    raw.lab = r;
    if (overhead) {
      section('overhead', overheadMarkdown(r));
      section('downtime', downtimeMarkdown(r));
    }
    if (r.evacuation) {
      const single = singleMedians(r, 128);
      section('evacuation', evacuationMarkdown(r, single.ferry, single.raw));
    }
  }

  if (selected.has('placement')) {
    const baseline = arg('placement-baseline') ?? PLACEMENT_BASELINE_REV;
    const r = await placementBench({
      scales: listArg('scales', [100, 1000, 10000]),
      vmsPerHost: 10,
      claims: numArg('claims', 200),
      baseline: baseline === 'none' ? null : baseline,
    });
    raw.placement = r;
    section('placement', placementMarkdown(r));
  }

  if (selected.has('throughput')) {
    const configs = arg('configs')?.split(',') ?? ['defaults', 'small', 'large', 'autoscale'];
    const r = await throughputBench({ workflows: numArg('workflows', 150), configs });
    raw.throughput = r;
    section('throughput', throughputMarkdown(r));
  }

  if (selected.has('shared')) {
    const r = await sharedStorageBench({ ...SHARED_STORAGE_DEFAULTS, rounds: numArg('shared-rounds', SHARED_STORAGE_DEFAULTS.rounds) });
    raw.shared = r;
    section('shared', sharedStorageMarkdown(r));
  }

  if (selected.has('startup')) {
    const r = await startupBench({ runs: numArg('startup-runs', 20) });
    raw.startup = r;
    section('startup', startupMarkdown(r));
  }

  if (selected.has('e2e')) {
    const r = await e2eBench({ rounds: numArg('e2e-rounds', 4) });
    raw.e2e = r;
    section('e2e', e2eMarkdown(r));
  }

  if (selected.has('guest')) {
    const r = await guestDowntimeBench({ migrations: numArg('guest-migrations', 6) });
    raw.guest = r;
    section('guest', guestDowntimeMarkdown(r));
  }

  if (selected.has('ui')) {
    const r = await uiBench({ hosts: 105, vmsPerHost: 10, historyRows: numArg('ui-history', 10_000), migrations: 20, loads: numArg('ui-loads', 10) });
    raw.ui = r;
    section('ui', uiMarkdown(r));
  }

  if (selected.has('cluster')) {
    const r = await clusterBench({ workflows: numArg('workflows', 150), inflight: [0, 10, 25, 50, 100], migrationMs: 45_000 });
    raw.cluster = r;
    section('cluster', clusterMarkdown(r));
  }

  const old = previousSections(out);
  const parts: string[] = [
    '# Ferry benchmarks',
    '',
    `Written by \`npm run bench\` (bench/run.ts); last run ${stamp} (\`${['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ')}\`). ` +
      'Medians with min–max unless stated otherwise. Sections not re-run keep their earlier numbers and date.',
    '',
    '## Machine',
    '',
    machineMarkdown(machine),
    '',
  ];
  for (const suite of SUITES) {
    const body = sections.get(suite) ?? old.get(suite);
    if (body === undefined) continue;
    parts.push(`## ${TITLES[suite]}`, '', `<!-- bench:${suite} -->`, body.trimEnd(), `<!-- /bench:${suite} -->`, '');
  }
  const extra = old.get('analysis');
  if (extra !== undefined) parts.push('## Analysis', '', '<!-- bench:analysis -->', extra.trimEnd(), '<!-- /bench:analysis -->', '');
  fs.writeFileSync(out, parts.join('\n'));
  // Raw numbers of suites not re-run are kept, as their sections are.
  const previousRaw = fs.existsSync(`${out}.json`) ? (JSON.parse(fs.readFileSync(`${out}.json`, 'utf8')) as Record<string, unknown>) : {};
  fs.writeFileSync(`${out}.json`, JSON.stringify({ ...previousRaw, ...raw }, null, 2) + '\n');
  log(`wrote ${path.relative(process.cwd(), out)} and ${path.relative(process.cwd(), out)}.json`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
