/**
 * Pure parsers for virsh's text outputs (LC_ALL=C). Each one is tested against real virsh 9.0 output
 * under test/fixtures/virsh/.
 */
import type { DiskCopyJob, DomainState, JobInfo } from './port';

export class TextShapeError extends Error {
  override readonly name = 'TextShapeError';
}

/** `Key:   value` lines (nodeinfo, dominfo, pool-info, vol-info, domblkinfo <dev>, domjobinfo): first colon splits. */
export function parseKeyValues(out: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const key = line.slice(0, i).trim();
    if (key === '' || key in fields) continue;
    fields[key] = line.slice(i + 1).trim();
  }
  return fields;
}

/** `virsh domstats` output: its `  key=value` lines (the `Domain: '…'` header skipped). */
export function parseDomStatsFields(out: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const i = line.indexOf('=');
    if (i <= 0) continue;
    fields[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return fields;
}

function requireField(fields: Record<string, string>, key: string, what: string): string {
  const v = fields[key];
  if (v === undefined) throw new TextShapeError(`${what}: no "${key}" line`);
  return v;
}

function intOf(value: string, what: string): number {
  const m = /^(\d+)/.exec(value.trim());
  if (!m?.[1]) throw new TextShapeError(`${what}: not an integer: ${value}`);
  return Number(m[1]);
}

/** `N KiB` (nodeinfo/freecell); anything but KiB is refused rather than guessed. */
function kibOf(value: string, what: string): number {
  const m = /^(\d+)\s*KiB$/.exec(value.trim());
  if (!m?.[1]) throw new TextShapeError(`${what}: expected "<n> KiB", got: ${value}`);
  return Number(m[1]);
}

export interface NodeInfo {
  cpus: number;
  memoryKiB: number;
  cpuModel: string;
}

/** `virsh nodeinfo`. */
export function parseNodeInfo(out: string): NodeInfo {
  const f = parseKeyValues(out);
  return {
    cpus: intOf(requireField(f, 'CPU(s)', 'nodeinfo'), 'nodeinfo CPU(s)'),
    memoryKiB: kibOf(requireField(f, 'Memory size', 'nodeinfo'), 'nodeinfo Memory size'),
    cpuModel: f['CPU model'] ?? '',
  };
}

/**
 * `virsh freecell` ("Total: 3220816 KiB") or `virsh freecell --all` ("    0:    4328432 KiB" lines then
 * "Total:    4328432 KiB"): free memory summed over NUMA cells, in KiB. Same source as nodeinfo's memory size.
 */
export function parseFreecellTotal(out: string): number {
  let total: number | null = null;
  let sum = 0;
  let cells = 0;
  for (const line of out.split('\n')) {
    const m = /^\s*([^:]+):\s*(\d+\s*KiB)\s*$/.exec(line);
    if (!m?.[1] || !m[2]) continue;
    const kib = kibOf(m[2], 'freecell');
    if (m[1].trim() === 'Total') total = kib;
    else {
      sum += kib;
      cells++;
    }
  }
  if (total !== null) return total;
  if (cells > 0) return sum;
  throw new TextShapeError(`freecell: no cell lines in: ${out.trim()}`);
}

/** `virsh hostname`. */
export function parseHostname(out: string): string {
  const name = out.trim();
  if (name === '' || name.includes('\n')) throw new TextShapeError(`hostname: unexpected output: ${out.trim()}`);
  return name;
}

const STATE_WORDS: ReadonlyArray<readonly [string, DomainState]> = [
  ['no state', 'nostate'],
  ['running', 'running'],
  ['idle', 'blocked'],
  ['blocked', 'blocked'],
  ['paused', 'paused'],
  ['in shutdown', 'shutdown'],
  ['shut off', 'shutoff'],
  ['crashed', 'crashed'],
  ['pmsuspended', 'pmsuspended'],
];

/** virsh's state words (domstate, dominfo State:) to DomainState. */
export function domainStateOf(word: string): DomainState {
  const w = word.trim();
  const hit = STATE_WORDS.find(([text]) => text === w);
  if (!hit) throw new TextShapeError(`unknown domain state: ${word}`);
  return hit[1];
}

/** `virsh domstate --reason`: `running (booted)`, `shut off (unknown)`, `paused (migration)`. */
export function parseDomState(out: string): { state: DomainState; reason: string | null } {
  const line = out.trim();
  const m = /^(.*?)\s*(?:\(([^()]*)\))?$/.exec(line);
  if (!m?.[1]) throw new TextShapeError(`domstate: unexpected output: ${line}`);
  const reason = m[2]?.trim();
  return { state: domainStateOf(m[1]), reason: reason ? reason : null };
}

export interface DomInfo {
  name: string;
  uuid: string;
  state: DomainState;
  persistent: boolean;
  autostart: boolean;
  cpus: number;
  maxMemoryKiB: number;
}

/** `virsh dominfo`. */
export function parseDomInfo(out: string): DomInfo {
  const f = parseKeyValues(out);
  return {
    name: requireField(f, 'Name', 'dominfo'),
    uuid: requireField(f, 'UUID', 'dominfo').toLowerCase(),
    state: domainStateOf(requireField(f, 'State', 'dominfo')),
    persistent: requireField(f, 'Persistent', 'dominfo') === 'yes',
    autostart: f['Autostart'] === 'enable',
    cpus: intOf(requireField(f, 'CPU(s)', 'dominfo'), 'dominfo CPU(s)'),
    maxMemoryKiB: kibOf(requireField(f, 'Max memory', 'dominfo'), 'dominfo Max memory'),
  };
}

/**
 * `virsh domblkinfo <dom> --all` (bytes, no --human): target → capacity in bytes, null for `-`
 * (an empty cdrom).
 */
export function parseBlkInfoAll(out: string): Map<string, number | null> {
  const result = new Map<string, number | null>();
  let inBody = false;
  for (const line of out.split('\n')) {
    if (/^-{4,}\s*$/.test(line.trim())) {
      inBody = true;
      continue;
    }
    if (!inBody) continue;
    const cols = line.trim().split(/\s+/);
    const [target, capacity] = cols;
    if (!target || capacity === undefined) continue;
    result.set(target, capacity === '-' ? null : intOf(capacity, `domblkinfo ${target}`));
  }
  if (!inBody) throw new TextShapeError(`domblkinfo --all: no table in: ${out.trim()}`);
  return result;
}

/**
 * `virsh domstats --block --nowait <dom>`: target (block.N.name) → block.N.capacity in bytes, null when
 * absent. --nowait never blocks on the domain's job lock; during an incoming migration (whose job allows no
 * other job) it leaves the capacity out, and so does an empty cdrom or a volume disk of an inactive domain.
 */
export function parseDomStatsBlock(out: string): Map<string, number | null> {
  const fields = new Map<string, string>();
  let domains = 0;
  for (const line of out.split('\n')) {
    if (line.startsWith('Domain: ')) {
      domains++;
      continue;
    }
    const m = /^\s+([^=\s]+)=(.*)$/.exec(line);
    if (m?.[1] && m[2] !== undefined) fields.set(m[1], m[2]);
  }
  if (domains !== 1) throw new TextShapeError(`domstats: expected one domain, got ${domains}`);
  const result = new Map<string, number | null>();
  const count = Number(fields.get('block.count') ?? '0');
  for (let i = 0; i < count; i++) {
    const name = fields.get(`block.${i}.name`);
    if (name === undefined) continue;
    const cap = fields.get(`block.${i}.capacity`);
    result.set(name, cap === undefined ? null : intOf(cap, `domstats block.${i}.capacity`));
  }
  return result;
}

/** `virsh domblkinfo <dom> <dev>` / `virsh vol-info --bytes`: `Capacity: N[ bytes]` in bytes. */
export function parseBlkInfoCapacity(out: string): number {
  return intOf(requireField(parseKeyValues(out), 'Capacity', 'domblkinfo'), 'domblkinfo Capacity');
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/** `virsh list --all --uuid`: one UUID a line (lower-cased), blank lines ignored. */
export function parseUuidList(out: string): string[] {
  const uuids: string[] = [];
  for (const line of out.split('\n')) {
    const t = line.trim();
    if (t === '') continue;
    if (!isUuid(t)) throw new TextShapeError(`list --uuid: not a UUID: ${t}`);
    uuids.push(t.toLowerCase());
  }
  return uuids;
}

/** `virsh pool-list --name` and similar: one name a line, blank lines ignored. */
export function parseNameList(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

/** `virsh iface-list --all` table ("Name State MAC Address" header, dashes, rows): the interface names. */
export function parseIfaceList(out: string): string[] {
  const lines = out.split('\n');
  const dashes = lines.findIndex((l) => /^-{5,}/.test(l.trim()));
  if (dashes < 0) {
    if (out.trim() === '') return [];
    throw new TextShapeError('iface-list: no table header');
  }
  return lines
    .slice(dashes + 1)
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

/**
 * `virsh vol-list <pool>` table ("Name  Path" header, dashes, rows): the volume paths.
 * A volume name never contains '/', so the path is everything from the row's first '/'.
 */
export function parseVolListPaths(out: string): string[] {
  const paths: string[] = [];
  let inBody = false;
  for (const line of out.split('\n')) {
    if (/^-{4,}\s*$/.test(line.trim())) {
      inBody = true;
      continue;
    }
    if (!inBody || line.trim() === '') continue;
    const i = line.indexOf('/');
    if (i < 0) throw new TextShapeError(`vol-list: row without a path: ${line}`);
    paths.push(line.slice(i).trimEnd());
  }
  if (!inBody) throw new TextShapeError(`vol-list: no table in: ${out.trim()}`);
  return paths;
}

export interface PoolInfoText {
  name: string;
  active: boolean;
  autostart: boolean;
  /** Present for active pools with --bytes. */
  capacityBytes: number | null;
  allocationBytes: number | null;
  availableBytes: number | null;
}

/** `virsh pool-info --bytes`: inactive pools print no Capacity/Allocation/Available lines. */
export function parsePoolInfo(out: string): PoolInfoText {
  const f = parseKeyValues(out);
  const state = requireField(f, 'State', 'pool-info');
  const num = (k: string): number | null => (f[k] === undefined ? null : intOf(f[k], `pool-info ${k}`));
  return {
    name: requireField(f, 'Name', 'pool-info'),
    // virsh prints running / building / degraded / inaccessible / inactive
    active: state === 'running' || state === 'degraded',
    autostart: f['Autostart'] === 'yes',
    capacityBytes: num('Capacity'),
    allocationBytes: num('Allocation'),
    availableBytes: num('Available'),
  };
}

const JOB_TYPES: readonly JobInfo['type'][] = ['none', 'bounded', 'unbounded', 'completed', 'failed', 'cancelled'];

/** virDomainJobOperation values, named as virsh's non-raw output names them. */
const JOB_OPERATIONS = [
  'Unknown',
  'Start',
  'Save',
  'Restore',
  'Incoming migration',
  'Outgoing migration',
  'Snapshot',
  'Snapshot revert',
  'Dump',
  'Backup',
  'Snapshot delete',
];

/**
 * `virsh domjobinfo --rawstats` (libvirt ≥ 7.x): `Job type: <n>`, a blank line, then one
 * `<typed param field>: <value>` line per statistic (bytes and milliseconds, unscaled).
 */
export function parseJobInfoRaw(out: string): JobInfo {
  const raw = parseKeyValues(out);
  const typeText = requireField(raw, 'Job type', 'domjobinfo --rawstats');
  const typeNum = intOf(typeText, 'domjobinfo Job type');
  const type = JOB_TYPES[typeNum];
  if (type === undefined) throw new TextShapeError(`domjobinfo: unknown job type ${typeText}`);
  const num = (k: string): number | null => {
    const v = raw[k];
    if (v === undefined || !/^\d+$/.test(v)) return null;
    return Number(v);
  };
  const opNum = num('operation');
  return {
    type,
    operation: opNum === null ? null : (JOB_OPERATIONS[opNum] ?? `operation ${opNum}`),
    timeElapsedMs: num('time_elapsed'),
    dataTotalBytes: num('data_total'),
    dataProcessedBytes: num('data_processed'),
    dataRemainingBytes: num('data_remaining'),
    memoryTotalBytes: num('memory_total'),
    memoryProcessedBytes: num('memory_processed'),
    memoryRemainingBytes: num('memory_remaining'),
    diskTotalBytes: num('disk_total'),
    diskProcessedBytes: num('disk_processed'),
    diskRemainingBytes: num('disk_remaining'),
    memoryIteration: num('memory_iteration'),
    dirtyRatePagesPerSec: num('memory_dirty_rate'),
    autoConvergeThrottlePercent: num('auto_converge_throttle'),
    postcopyRequests: num('memory_postcopy_requests'),
    // A completed job's time_elapsed is its total time.
    totalTimeMs: type === 'completed' || type === 'failed' || type === 'cancelled' ? num('time_elapsed') : null,
    downtimeMs: num('downtime'),
    raw,
  };
}

/**
 * `virsh blockjob <dom> <dev> --info --raw`: ` type=Block Copy`, ` bandwidth=<MiB/s>`, ` cur=<bytes>`,
 * ` end=<bytes>` lines; nothing at all when the device has no block job. null unless it is a copy job (what a
 * migration's disk copy is).
 */
export function parseBlockJobRaw(target: string, out: string): DiskCopyJob | null {
  const f: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const m = /^\s*([a-z]+)=(.*)$/.exec(line);
    if (m?.[1] && m[2] !== undefined) f[m[1]] = m[2].trim();
  }
  if (f['type'] === undefined) return null;
  if (f['type'] !== 'Block Copy') return null;
  const need = (k: string): number => intOf(requireField(f, k, 'blockjob --info --raw'), `blockjob ${k}`);
  const bandwidth = need('bandwidth');
  return { target, processedBytes: need('cur'), totalBytes: need('end'), bandwidthMiBps: bandwidth === 0 ? null : bandwidth };
}

/** A QMP reply through `virsh qemu-monitor-command` (virsh exits 0 for QMP errors: they are in the JSON). */
export type QmpReply = { ok: true } | { ok: false; errorClass: string; desc: string };

export function parseQmpReply(out: string): QmpReply {
  let reply: unknown;
  try {
    reply = JSON.parse(out.trim());
  } catch {
    throw new TextShapeError(`qemu-monitor-command: not JSON: ${out.trim().slice(0, 200)}`);
  }
  if (typeof reply !== 'object' || reply === null) throw new TextShapeError(`qemu-monitor-command: not an object: ${out.trim().slice(0, 200)}`);
  const r = reply as { return?: unknown; error?: { class?: unknown; desc?: unknown } };
  if (r.error !== undefined) return { ok: false, errorClass: String(r.error.class ?? 'unknown'), desc: String(r.error.desc ?? '') };
  if (r.return === undefined) throw new TextShapeError(`qemu-monitor-command: neither return nor error: ${out.trim().slice(0, 200)}`);
  return { ok: true };
}
