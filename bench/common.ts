/**
 * Shared pieces of the benchmark suite (bench/run.ts): statistics, the machine's description, Markdown
 * helpers and the alternation order that cancels machine drift. No shell: versions come from run().
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../hypervisor/exec';

export const REPO = path.resolve(__dirname, '..');

// ---- statistics ---------------------------------------------------------------------------------------

export interface Summary {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile (p in 0..1) of sorted values. */
function rank(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i] ?? NaN;
}

/** Median: the mean of the two middle values for an even count. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

export function summarize(values: readonly number[]): Summary {
  const s = [...values].sort((a, b) => a - b);
  return {
    n: s.length,
    min: s[0] ?? NaN,
    p50: median(s),
    p90: rank(s, 0.9),
    p99: rank(s, 0.99),
    max: s[s.length - 1] ?? NaN,
    mean: s.length === 0 ? NaN : s.reduce((a, b) => a + b, 0) / s.length,
  };
}

/**
 * The order of `pairs` pairs of two methods A and B, alternating as ABBA ABBA …: each method runs first as
 * often as second, and (for migrations that ping-pong between two hosts) in each direction about equally.
 */
export function abbaOrder(pairs: number): ('A' | 'B')[] {
  const out: ('A' | 'B')[] = [];
  for (let i = 0; i < pairs; i++) out.push(...(i % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const)));
  return out;
}

// ---- formatting ---------------------------------------------------------------------------------------

export function ms(v: number | null | undefined, digits = 0): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return `${v.toFixed(digits)} ms`;
}

export function sec(vMs: number | null | undefined, digits = 2): string {
  if (vMs === null || vMs === undefined || !Number.isFinite(vMs)) return '–';
  return `${(vMs / 1000).toFixed(digits)} s`;
}

export function ratio(a: number, b: number, digits = 2): string {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '–';
  return `${(a / b).toFixed(digits)}`;
}

/** "p50 (min–max)" in ms or s. */
export function medRange(values: readonly number[], unit: 's' | 'ms' = 's', digits?: number): string {
  if (values.length === 0) return '–';
  const s = summarize(values);
  const f = (v: number) => (unit === 's' ? (v / 1000).toFixed(digits ?? 2) : v.toFixed(digits ?? 0));
  return `${f(s.p50)} (${f(s.min)}–${f(s.max)}) ${unit}`;
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
}

// ---- the machine --------------------------------------------------------------------------------------

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  os: string;
  libvirt: string;
  qemu: string;
  node: string;
  temporalCli: string;
  temporalSdk: string;
  sqlite: string;
  loadAverage: number[];
}

async function firstLine(file: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(file, args, { timeoutMs: 15_000 });
    return (stdout.trim() || stderr.trim()).split('\n')[0]?.trim() ?? 'unknown';
  } catch {
    return 'not installed';
  }
}

export function temporalBin(): string {
  const candidates = [process.env.FERRY_TEMPORAL_BIN, path.join(REPO, '.tools', 'bin', 'temporal')].filter(
    (p): p is string => typeof p === 'string' && p !== '',
  );
  return candidates.find((p) => fs.existsSync(p)) ?? 'temporal';
}

export async function machineInfo(): Promise<MachineInfo> {
  const cpuinfo = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const osRelease = fs.existsSync('/etc/os-release') ? fs.readFileSync('/etc/os-release', 'utf8') : '';
  const pretty = /^PRETTY_NAME="?([^"\n]+)"?$/m.exec(osRelease)?.[1] ?? os.type();
  const sdkPkg = path.join(REPO, 'node_modules', '@temporalio', 'worker', 'package.json');
  const sdk = fs.existsSync(sdkPkg) ? (JSON.parse(fs.readFileSync(sdkPkg, 'utf8')) as { version: string }).version : 'unknown';
  let sqlite = 'unknown';
  try {
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(':memory:');
    sqlite = String((db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v);
    db.close();
  } catch {
    /* not installed */
  }
  return {
    cpuModel,
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    os: pretty,
    libvirt: await firstLine('virsh', ['--version']),
    qemu: await firstLine('qemu-system-x86_64', ['--version']),
    node: process.version,
    temporalCli: await firstLine(temporalBin(), ['--version']),
    temporalSdk: sdk,
    sqlite,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

export function machineMarkdown(m: MachineInfo): string {
  return table(
    ['', ''],
    [
      ['CPU', `${m.cpuModel}, ${m.cores} cores`],
      ['memory', `${m.memoryGiB} GiB`],
      ['kernel / OS', `${m.kernel} / ${m.os}`],
      ['libvirt (virsh)', m.libvirt],
      ['QEMU', m.qemu],
      ['Node.js', m.node],
      ['Temporal CLI (dev server)', m.temporalCli],
      ['Temporal TypeScript SDK', m.temporalSdk],
      ['SQLite (better-sqlite3)', m.sqlite],
      ['load average at start (1/5/15 min)', m.loadAverage.join(' / ')],
    ],
  );
}

/** 1-minute load average now, for each section's "machine was busy" note. */
export function load1(): number {
  return Math.round((os.loadavg()[0] ?? 0) * 100) / 100;
}

export function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

export function sleep(msToWait: number): Promise<void> {
  return new Promise((r) => setTimeout(r, msToWait));
}
