/**
 * The inventory on SQL, written once against the Db port (db.ts). See schema.ts for the tables.
 */
import { uriHasPassword } from '../common/libvirt-uri';
import { HOST_STATES } from '../common/types';
import type {
  Claim,
  DiskFormat,
  DiskRecord,
  HistoryRecord,
  HostRecord,
  HostState,
  MigrationResultKind,
  StorageArtifactRecord,
  VmRecord,
  VmState,
} from '../common/types';
import type { Db, Queryable, SqlValue } from './db';
import {
  checkHost,
  checkLimits,
  compareCandidates,
  computeUsage,
  DEFAULT_LIMITS,
  movabilityRefusal,
  NO_USAGE,
  placeVm,
  PlacementError,
  scoreHost,
  scoredLower,
  type HostScore,
  type HostUsage,
  type Placement,
} from './placement';
import { migrate } from './schema';
import type {
  ArtifactFilter,
  ArtifactKey,
  HistoryFilter,
  HostCapacityUpdate,
  Inventory,
  NewHost,
  PlacementRequest,
  PlacementResult,
  RejectedHost,
  SyncResult,
  VmUpsert,
} from './store';

export const DEFAULT_STORAGE_ROOT = '/var/lib/libvirt/images/ferry';
export const DEFAULT_MEMORY_RATIO = 1.0;
export const DEFAULT_CPU_RATIO = 4.0;

const VM_STATES: readonly VmState[] = ['running', 'migrating', 'stopped', 'paused', 'unknown'];

/** Errors of the non-placement methods: unknown host/VM, duplicates, invalid input. */
export class InventoryError extends Error {
  override readonly name = 'InventoryError';
  constructor(
    readonly code: 'not-found' | 'exists' | 'invalid',
    message: string,
  ) {
    super(message);
  }
}

export interface SqlInventoryOptions {
  /** Clock for updated_at / created_at (tests). */
  now?: () => Date;
  /**
   * Fleets of up to this many hosts are placed by evaluating every host, and the claim's `rejected` lists
   * every host with its reason. Larger fleets take the capacity-class path (see claimTarget). Default 100;
   * tests set 0 to exercise the class path on small fleets.
   */
  fullPlacementMaxHosts?: number;
}

/** Fleets up to this many hosts: every host is evaluated (and listed in `rejected`). */
export const FULL_PLACEMENT_MAX_HOSTS = 100;
/** With more distinct capacity classes than this, placement evaluates every host instead. */
export const MAX_CAPACITY_CLASSES = 64;

// ---- rows (numbers may arrive as strings from PostgreSQL: see num()) ----

type Num = number | string;

interface ArtifactRow {
  host: string;
  kind: StorageArtifactRecord['kind'];
  path: string;
  pool: string;
  vm_uuid: string;
  workflow_id: string;
  run_id: string;
  state: StorageArtifactRecord['state'];
  created_at: string;
  updated_at: string;
}

interface HostRow {
  name: string;
  address: string;
  uri: string;
  state: string;
  memory_mib: Num;
  vcpus: Num;
  storage_root: string;
  storage_free_bytes: Num | null;
  memory_ratio: Num;
  cpu_ratio: Num;
  updated_at: string;
}

/** A host row with the VM totals the triggers keep on it (schema version 2). */
interface HostUsageRow extends HostRow {
  vm_memory_mib: Num;
  vm_vcpus: Num;
}

interface CapacityClassRow {
  memory_mib: Num;
  memory_ratio: Num;
  vcpus: Num;
  cpu_ratio: Num;
}

interface VmDiskRow {
  uuid: string;
  name: string;
  host: string;
  memory_mib: Num;
  vcpus: Num;
  state: string;
  updated_at: string;
  d_target: string | null;
  d_name: string | null;
  d_path: string | null;
  d_format: string | null;
  d_size_bytes: Num | null;
}

interface ClaimRow {
  vm_uuid: string;
  host: string;
  source_host: string;
  workflow_id: string;
  memory_mib: Num;
  vcpus: Num;
  storage_bytes: Num;
  created_at: string;
}

interface HistoryRow {
  id: Num;
  workflow_id: string;
  run_id: string;
  vm_uuid: string;
  vm_name: string;
  source: string;
  target: string | null;
  result: string;
  reason: string | null;
  started_at: string;
  ended_at: string;
  duration_ms: Num;
  downtime_ms: Num | null;
  bytes_transferred: Num | null;
  create_attempts: string;
  phase_ms: string;
}

const HOST_COLUMNS =
  'name, address, uri, state, memory_mib, vcpus, storage_root, storage_free_bytes, memory_ratio, cpu_ratio, updated_at';
const HOST_USAGE_COLUMNS = `${HOST_COLUMNS}, vm_memory_mib, vm_vcpus`;
const CLAIM_COLUMNS = 'vm_uuid, host, source_host, workflow_id, memory_mib, vcpus, storage_bytes, created_at';
const HISTORY_COLUMNS =
  'id, workflow_id, run_id, vm_uuid, vm_name, source, target, result, reason, started_at, ended_at, duration_ms, ' +
  'downtime_ms, bytes_transferred, create_attempts, phase_ms';

function num(v: Num): number {
  return typeof v === 'number' ? v : Number(v);
}

function numOrNull(v: Num | null): number | null {
  return v === null ? null : num(v);
}

function toHost(r: HostRow): HostRecord {
  return {
    name: r.name,
    address: r.address,
    uri: r.uri,
    state: r.state as HostState,
    memoryMiB: num(r.memory_mib),
    vcpus: num(r.vcpus),
    storageRoot: r.storage_root,
    storageFreeBytes: numOrNull(r.storage_free_bytes),
    memoryRatio: num(r.memory_ratio),
    cpuRatio: num(r.cpu_ratio),
    updatedAt: r.updated_at,
  };
}

function toClaim(r: ClaimRow): Claim {
  return {
    vmUuid: r.vm_uuid,
    host: r.host,
    sourceHost: r.source_host,
    workflowId: r.workflow_id,
    memoryMiB: num(r.memory_mib),
    vcpus: num(r.vcpus),
    storageBytes: num(r.storage_bytes),
    createdAt: r.created_at,
  };
}

function toHistory(r: HistoryRow): HistoryRecord {
  return {
    id: num(r.id),
    workflowId: r.workflow_id,
    runId: r.run_id,
    vmUuid: r.vm_uuid,
    vmName: r.vm_name,
    source: r.source,
    target: r.target,
    result: r.result as MigrationResultKind,
    reason: r.reason,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    durationMs: num(r.duration_ms),
    downtimeMs: numOrNull(r.downtime_ms),
    bytesTransferred: numOrNull(r.bytes_transferred),
    createAttempts: JSON.parse(r.create_attempts) as Record<string, number>,
    phaseMs: JSON.parse(r.phase_ms) as Record<string, number>,
  };
}

const CLASS_COLUMNS = ['memory_mib', 'memory_ratio', 'vcpus', 'cpu_ratio'] as const;

/**
 * The distinct capacity classes of the hosts in state normal with known capacity, or null when there are
 * more than MAX_CAPACITY_CLASSES. A skip scan over the hosts_placement index: from one class, the next one is
 * the first index entry past it (at most one short seek per column), so the cost grows with the number of
 * classes, not of hosts (a GROUP BY reads every index entry: ~1 ms at 10,000 hosts).
 */
async function capacityClasses(tx: Queryable): Promise<CapacityClassRow[] | null> {
  const cols = CLASS_COLUMNS.join(', ');
  const first = (where: string, params: SqlValue[]) =>
    tx.get<CapacityClassRow>(`SELECT ${cols} FROM hosts WHERE state = 'normal'${where} ORDER BY ${cols} LIMIT 1`, params);
  const out: CapacityClassRow[] = [];
  let seen = 0;
  let cur = await first('', []);
  while (cur) {
    if (num(cur.memory_mib) !== 0 && num(cur.vcpus) !== 0) out.push(cur);
    if (out.length > MAX_CAPACITY_CLASSES || ++seen > 2 * MAX_CAPACITY_CLASSES) return null;
    const at: CapacityClassRow = cur;
    let next: CapacityClassRow | undefined;
    // The next class shares the longest possible prefix with this one: try the last column first.
    for (let depth = CLASS_COLUMNS.length - 1; depth >= 0 && !next; depth--) {
      const same = CLASS_COLUMNS.slice(0, depth);
      const where = same.map((c) => ` AND ${c} = ?`).join('') + ` AND ${CLASS_COLUMNS[depth]} > ?`;
      next = await first(where, [...same.map((c) => num(at[c])), num(at[CLASS_COLUMNS[depth]!])]);
    }
    cur = next;
  }
  return out;
}

/** Per-host usage from host rows (their VM totals) and the claims in flight. */
function usageOf(rows: readonly HostUsageRow[], claims: readonly Claim[]): Map<string, HostUsage> {
  return computeUsage(
    rows.map((r) => ({ host: r.name, memoryMiB: num(r.vm_memory_mib), vcpus: num(r.vm_vcpus) })),
    claims,
  );
}

/** Groups the rows of the VM ⟕ disks join (ordered by VM) into records. */
function toVms(rows: readonly VmDiskRow[]): VmRecord[] {
  const vms: VmRecord[] = [];
  let last: VmRecord | undefined;
  for (const r of rows) {
    if (!last || last.uuid !== r.uuid) {
      last = {
        uuid: r.uuid,
        name: r.name,
        host: r.host,
        memoryMiB: num(r.memory_mib),
        vcpus: num(r.vcpus),
        state: r.state as VmState,
        disks: [],
        updatedAt: r.updated_at,
      };
      vms.push(last);
    }
    if (r.d_target !== null) {
      last.disks.push({
        target: r.d_target,
        name: r.d_name ?? '',
        path: r.d_path ?? '',
        format: r.d_format as DiskFormat,
        sizeBytes: num(r.d_size_bytes ?? 0),
      });
    }
  }
  return vms;
}

async function selectVms(q: Queryable, where: string, params: readonly SqlValue[]): Promise<VmRecord[]> {
  const rows = await q.query<VmDiskRow>(
    `SELECT v.uuid, v.name, v.host, v.memory_mib, v.vcpus, v.state, v.updated_at,
            d.target AS d_target, d.name AS d_name, d.path AS d_path, d.format AS d_format, d.size_bytes AS d_size_bytes
       FROM vms v LEFT JOIN disks d ON d.vm_uuid = v.uuid
      WHERE ${where}
      ORDER BY v.name, v.uuid, d.target`,
    params,
  );
  return toVms(rows);
}

function sameVm(a: VmRecord, b: VmUpsert): boolean {
  const disks = (ds: readonly DiskRecord[]): string =>
    JSON.stringify(
      [...ds]
        .sort((x, y) => (x.target < y.target ? -1 : x.target > y.target ? 1 : 0))
        .map((d) => [d.target, d.name, d.path, d.format, d.sizeBytes]),
    );
  return (
    a.name === b.name &&
    a.host === b.host &&
    a.memoryMiB === b.memoryMiB &&
    a.vcpus === b.vcpus &&
    a.state === b.state &&
    disks(a.disks) === disks(b.disks)
  );
}

function requireNonNegative(what: string, v: number | null | undefined): void {
  if (v === null || v === undefined) return;
  if (!Number.isFinite(v) || v < 0) throw new InventoryError('invalid', `${what} must be a number ≥ 0 (got ${v})`);
}

export class SqlInventory implements Inventory {
  private readonly now: () => Date;
  private readonly fullPlacementMaxHosts: number;

  private constructor(
    private readonly db: Db,
    opts: SqlInventoryOptions,
  ) {
    this.now = opts.now ?? (() => new Date());
    this.fullPlacementMaxHosts = Math.max(0, Math.floor(opts.fullPlacementMaxHosts ?? FULL_PLACEMENT_MAX_HOSTS));
  }

  /** Migrates the schema, then returns the inventory. The inventory owns `db` (close() closes it). */
  static async open(db: Db, opts: SqlInventoryOptions = {}): Promise<SqlInventory> {
    await migrate(db, opts.now);
    return new SqlInventory(db, opts);
  }

  close(): Promise<void> {
    return this.db.close();
  }

  private timestamp(): string {
    return this.now().toISOString();
  }

  // ---- hosts ----

  async addHost(host: NewHost): Promise<HostRecord> {
    if (!host.name || !host.address || !host.uri) {
      throw new InventoryError('invalid', 'a host needs a name, an address and a libvirt URI');
    }
    if (uriHasPassword(host.uri)) {
      // The URI is stored here and travels in workflow inputs and histories: no secrets in it.
      throw new InventoryError(
        'invalid',
        `the libvirt URI of ${host.name} carries a password: use SSH keys (qemu+ssh), TLS client certificates (qemu+tls) or libvirt's auth.conf instead`,
      );
    }
    const state = host.state ?? 'normal';
    if (!HOST_STATES.includes(state)) throw new InventoryError('invalid', `unknown host state ${state}`);
    requireNonNegative('memoryMiB', host.memoryMiB);
    requireNonNegative('vcpus', host.vcpus);
    requireNonNegative('storageFreeBytes', host.storageFreeBytes);
    for (const [what, ratio] of [
      ['memoryRatio', host.memoryRatio],
      ['cpuRatio', host.cpuRatio],
    ] as const) {
      if (ratio !== undefined && !(Number.isFinite(ratio) && ratio > 0)) {
        throw new InventoryError('invalid', `${what} must be a number > 0 (got ${ratio})`);
      }
    }
    return this.db.transaction(async (tx) => {
      const clash = await tx.get<{ name: string; address: string }>(
        'SELECT name, address FROM hosts WHERE name = ? OR address = ?',
        [host.name, host.address],
      );
      if (clash) {
        throw new InventoryError(
          'exists',
          clash.name === host.name
            ? `host ${host.name} is already in the inventory`
            : `address ${host.address} already belongs to host ${clash.name}`,
        );
      }
      const row = await tx.get<HostRow>(
        `INSERT INTO hosts (${HOST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ${HOST_COLUMNS}`,
        [
          host.name,
          host.address,
          host.uri,
          state,
          host.memoryMiB ?? 0,
          host.vcpus ?? 0,
          host.storageRoot ?? DEFAULT_STORAGE_ROOT,
          host.storageFreeBytes ?? null,
          host.memoryRatio ?? DEFAULT_MEMORY_RATIO,
          host.cpuRatio ?? DEFAULT_CPU_RATIO,
          this.timestamp(),
        ],
      );
      if (!row) throw new Error(`inserting host ${host.name} returned no row`);
      return toHost(row);
    });
  }

  async getHost(nameOrAddress: string): Promise<HostRecord | null> {
    // A name match wins over an address match (a host may be named like another's address).
    const row = await this.db.get<HostRow>(
      `SELECT ${HOST_COLUMNS} FROM hosts WHERE name = ? OR address = ?
        ORDER BY CASE WHEN name = ? THEN 0 ELSE 1 END LIMIT 1`,
      [nameOrAddress, nameOrAddress, nameOrAddress],
    );
    return row ? toHost(row) : null;
  }

  async listHosts(): Promise<HostRecord[]> {
    return (await this.db.query<HostRow>(`SELECT ${HOST_COLUMNS} FROM hosts ORDER BY name`)).map(toHost);
  }

  async setHostState(name: string, state: HostState): Promise<HostRecord> {
    if (!HOST_STATES.includes(state)) throw new InventoryError('invalid', `unknown host state ${state}`);
    const row = await this.db.get<HostRow>(
      `UPDATE hosts SET state = ?, updated_at = ? WHERE name = ? RETURNING ${HOST_COLUMNS}`,
      [state, this.timestamp(), name],
    );
    if (!row) throw new InventoryError('not-found', `host ${name} is not in the inventory`);
    return toHost(row);
  }

  async removeHost(name: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.db.transaction(async (tx) => {
      const busy = await tx.get<{ n: number }>('SELECT COUNT(*) AS n FROM claims WHERE host = ? OR source_host = ?', [name, name]);
      if (busy && Number(busy.n) > 0 && opts.force !== true) {
        throw new InventoryError(
          'invalid',
          `host ${name} has migrations in flight: wait for them or cancel them; if their workflows were terminated, run \`ferry reconcile\``,
        );
      }
      if (opts.force === true) {
        await tx.run(
          "UPDATE vms SET state = 'unknown', updated_at = ? WHERE host <> ? AND state = 'migrating' AND uuid IN (SELECT vm_uuid FROM claims WHERE host = ? OR source_host = ?)",
          [this.timestamp(), name, name, name],
        );
        await tx.run('DELETE FROM claims WHERE host = ? OR source_host = ?', [name, name]);
      }
      await tx.run('DELETE FROM disks WHERE vm_uuid IN (SELECT uuid FROM vms WHERE host = ?)', [name]);
      await tx.run('DELETE FROM vms WHERE host = ?', [name]);
      await tx.run('DELETE FROM storage_artifacts WHERE host = ?', [name]);
      await tx.run('DELETE FROM hosts WHERE name = ?', [name]);
    });
  }

  async updateHostCapacity(name: string, capacity: HostCapacityUpdate): Promise<void> {
    await this.db.transaction((tx) => this.writeCapacity(tx, name, capacity));
  }

  private async writeCapacity(tx: Queryable, name: string, c: HostCapacityUpdate): Promise<void> {
    requireNonNegative('memoryMiB', c.memoryMiB);
    requireNonNegative('vcpus', c.vcpus);
    requireNonNegative('storageFreeBytes', c.storageFreeBytes);
    const { changes } = await tx.run(
      'UPDATE hosts SET memory_mib = ?, vcpus = ?, storage_free_bytes = ?, updated_at = ? WHERE name = ?',
      [c.memoryMiB, c.vcpus, c.storageFreeBytes, this.timestamp(), name],
    );
    if (changes === 0) throw new InventoryError('not-found', `host ${name} is not in the inventory`);
  }

  // ---- VMs ----

  async upsertVm(vm: VmUpsert): Promise<void> {
    await this.db.transaction(async (tx) => {
      await this.requireHost(tx, vm.host);
      await this.writeVm(tx, vm);
    });
  }

  private async requireHost(tx: Queryable, name: string): Promise<void> {
    const row = await tx.get<{ name: string }>('SELECT name FROM hosts WHERE name = ?', [name]);
    if (!row) throw new InventoryError('not-found', `host ${name} is not in the inventory`);
  }

  private async writeVm(tx: Queryable, vm: VmUpsert): Promise<void> {
    if (!VM_STATES.includes(vm.state)) throw new InventoryError('invalid', `unknown VM state ${vm.state}`);
    await tx.run(
      `INSERT INTO vms (uuid, name, host, memory_mib, vcpus, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, host = excluded.host, memory_mib = excluded.memory_mib,
         vcpus = excluded.vcpus, state = excluded.state, updated_at = excluded.updated_at`,
      [vm.uuid, vm.name, vm.host, vm.memoryMiB, vm.vcpus, vm.state, this.timestamp()],
    );
    await tx.run('DELETE FROM disks WHERE vm_uuid = ?', [vm.uuid]);
    for (const d of vm.disks) {
      await tx.run('INSERT INTO disks (vm_uuid, target, name, path, format, size_bytes) VALUES (?, ?, ?, ?, ?, ?)', [
        vm.uuid,
        d.target,
        d.name,
        d.path,
        d.format,
        d.sizeBytes,
      ]);
    }
  }

  async getVm(uuid: string): Promise<VmRecord | null> {
    return (await selectVms(this.db, 'v.uuid = ?', [uuid]))[0] ?? null;
  }

  async findVms(nameOrUuid: string): Promise<VmRecord[]> {
    return selectVms(this.db, 'v.name = ? OR v.uuid = ?', [nameOrUuid, nameOrUuid]);
  }

  async listVms(filter: { host?: string } = {}): Promise<VmRecord[]> {
    return filter.host === undefined
      ? selectVms(this.db, '1 = 1', [])
      : selectVms(this.db, 'v.host = ?', [filter.host]);
  }

  async setVmPlacement(vmUuid: string, host: string, state: VmState): Promise<void> {
    if (!VM_STATES.includes(state)) throw new InventoryError('invalid', `unknown VM state ${state}`);
    await this.db.transaction(async (tx) => {
      await this.requireHost(tx, host);
      const { changes } = await tx.run('UPDATE vms SET host = ?, state = ?, updated_at = ? WHERE uuid = ?', [
        host,
        state,
        this.timestamp(),
        vmUuid,
      ]);
      if (changes === 0) throw new InventoryError('not-found', `VM ${vmUuid} is not in the inventory`);
    });
  }

  // ---- claims ----

  async claimTarget(req: PlacementRequest): Promise<PlacementResult> {
    if (!req.workflowId) throw new InventoryError('invalid', 'a claim needs a workflowId');
    requireNonNegative('memoryMiB', req.memoryMiB);
    requireNonNegative('vcpus', req.vcpus);
    requireNonNegative('storageBytes', req.storageBytes);

    return this.db.transaction(async (tx) => {
      const vm = (await selectVms(tx, 'v.uuid = ?', [req.vmUuid]))[0];
      if (!vm) {
        throw new PlacementError(
          'unknown-vm',
          `VM ${req.vmUuid} is not in the inventory — run \`ferry inventory sync\` if it was created recently`,
        );
      }
      const row = await tx.get<ClaimRow>(`SELECT ${CLAIM_COLUMNS} FROM claims WHERE vm_uuid = ?`, [req.vmUuid]);
      const held = row ? toClaim(row) : null;
      const refusal = movabilityRefusal(vm, held, req.workflowId, req.sourceHost);
      if (refusal !== null) throw refusal;
      if (held !== null) return { claim: held, rejected: [] }; // retry of the same workflow

      const claims = (await tx.query<ClaimRow>(`SELECT ${CLAIM_COLUMNS} FROM claims`)).map(toClaim);
      const wait = checkLimits(claims, req);
      if (wait !== null) throw new PlacementError('no-slot', wait);
      const placement = await this.place(tx, req, vm.name, claims);

      const claim: Claim = {
        vmUuid: req.vmUuid,
        host: placement.host.name,
        sourceHost: req.sourceHost,
        workflowId: req.workflowId,
        memoryMiB: req.memoryMiB,
        vcpus: req.vcpus,
        storageBytes: req.storageBytes,
        createdAt: this.timestamp(),
      };
      await tx.run(`INSERT INTO claims (${CLAIM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, [
        claim.vmUuid,
        claim.host,
        claim.sourceHost,
        claim.workflowId,
        claim.memoryMiB,
        claim.vcpus,
        claim.storageBytes,
        claim.createdAt,
      ]);
      await tx.run("UPDATE vms SET state = 'migrating', updated_at = ? WHERE uuid = ?", [claim.createdAt, vm.uuid]);
      return { claim, rejected: placement.rejected };
    });
  }

  async previewTarget(req: PlacementRequest): Promise<Placement> {
    return this.db.transaction(async (tx) => {
      const vm = (await selectVms(tx, 'v.uuid = ?', [req.vmUuid]))[0];
      if (!vm) throw new PlacementError('unknown-vm', `VM ${req.vmUuid} is not in the inventory — run \`ferry inventory sync\` if it was created recently`);
      const row = await tx.get<ClaimRow>(`SELECT ${CLAIM_COLUMNS} FROM claims WHERE vm_uuid = ?`, [req.vmUuid]);
      const refusal = movabilityRefusal(vm, row ? toClaim(row) : null, req.workflowId, req.sourceHost);
      if (refusal !== null) throw refusal;
      const claims = (await tx.query<ClaimRow>(`SELECT ${CLAIM_COLUMNS} FROM claims`)).map(toClaim);
      return this.place(tx, req, vm.name, claims);
    });
  }

  /**
   * Chooses the target inside the claim's transaction. The filters, the score and the messages are
   * placement.ts's; what differs with the fleet's size is how many host rows are read:
   *   - a fixed target: that host only;
   *   - up to `fullPlacementMaxHosts` hosts: every host (placeVm), and `rejected` lists every other host;
   *   - more: by capacity class. Hosts of one class (same memory, vCPUs and ratios) rank by their VM totals
   *     alone, so one indexed query per class returns its best fitting host (hosts_placement index); the
   *     hosts receiving migrations are checked separately with their claims; placeVm's comparison picks
   *     among the class winners. `rejected` then lists only those hosts (busy ones and runner-ups). With no
   *     fitting host, or more than MAX_CAPACITY_CLASSES classes, every host is evaluated as above (the
   *     refusal's message names every host).
   * Within a class a host with fewer MiB in use always scores higher: the scores of two hosts of a class
   * differ by at least 1 / capacity, more than placement's 1e-9 tie margin below 10^9 MiB of capacity.
   */
  private async place(tx: Queryable, req: PlacementRequest, vmName: string, claims: readonly Claim[]): Promise<Placement> {
    if (req.fixedTarget !== undefined) {
      const rows = await tx.query<HostUsageRow>(
        `SELECT ${HOST_USAGE_COLUMNS} FROM hosts WHERE name = ? OR address = ? ORDER BY name`,
        [req.fixedTarget, req.fixedTarget],
      );
      return placeVm(rows.map(toHost), usageOf(rows, claims), req, vmName);
    }
    const max = this.fullPlacementMaxHosts;
    if (max > 0) {
      const rows = await tx.query<HostUsageRow>(`SELECT ${HOST_USAGE_COLUMNS} FROM hosts ORDER BY name LIMIT ?`, [max + 1]);
      if (rows.length <= max) return placeVm(rows.map(toHost), usageOf(rows, claims), req, vmName);
    }
    const byClass = await this.placeByClass(tx, req, claims);
    if (byClass) return byClass;
    const rows = await tx.query<HostUsageRow>(`SELECT ${HOST_USAGE_COLUMNS} FROM hosts ORDER BY name`);
    return placeVm(rows.map(toHost), usageOf(rows, claims), req, vmName);
  }

  /** The capacity-class path of place(); null when it cannot decide (then every host is evaluated). */
  private async placeByClass(tx: Queryable, req: PlacementRequest, claims: readonly Claim[]): Promise<Placement | null> {
    if (!((req.limits ?? DEFAULT_LIMITS).maxInboundPerHost >= 1)) return null;
    const candidates: { host: HostRecord; score: HostScore }[] = [];
    const rejected: RejectedHost[] = [];

    // Hosts receiving migrations: their claims count against them, so they are checked one by one.
    const busy = [...new Set(claims.map((c) => c.host))].sort();
    if (busy.length > 0) {
      const rows = await tx.query<HostUsageRow>(
        `SELECT ${HOST_USAGE_COLUMNS} FROM hosts WHERE name IN (${busy.map(() => '?').join(', ')}) ORDER BY name`,
        busy,
      );
      const usage = usageOf(rows, claims);
      for (const row of rows) {
        const host = toHost(row);
        const u = usage.get(host.name) ?? NO_USAGE;
        const reason = checkHost(host, u, req);
        if (reason === null) candidates.push({ host, score: scoreHost(host, u, req) });
        else rejected.push({ host: host.name, reason });
      }
    }

    const classes = await capacityClasses(tx);
    if (classes === null) return null;
    const notBusy = busy.length > 0 ? ` AND name NOT IN (${busy.map(() => '?').join(', ')})` : '';
    for (const c of classes) {
      const memoryMiB = num(c.memory_mib);
      const memoryRatio = num(c.memory_ratio);
      const vcpus = num(c.vcpus);
      const cpuRatio = num(c.cpu_ratio);
      if (memoryMiB * memoryRatio < req.memoryMiB || vcpus * cpuRatio < req.vcpus) continue; // fits on no host of it
      // The same arithmetic as checkHost (no claims on these hosts): capacity × ratio − VM totals ≥ request.
      const row = await tx.get<HostUsageRow>(
        `SELECT ${HOST_USAGE_COLUMNS} FROM hosts
          WHERE state = 'normal' AND memory_mib = ? AND memory_ratio = ? AND vcpus = ? AND cpu_ratio = ?
            AND memory_mib * memory_ratio - vm_memory_mib >= ? AND vcpus * cpu_ratio - vm_vcpus >= ?
            AND storage_free_bytes >= ? AND name <> ?${notBusy}
          ORDER BY vm_memory_mib, vm_vcpus, name LIMIT 1`,
        [memoryMiB, memoryRatio, vcpus, cpuRatio, req.memoryMiB, req.vcpus, req.storageBytes, req.sourceHost, ...busy],
      );
      if (!row) continue;
      const host = toHost(row);
      const u = usageOf([row], []).get(host.name) ?? NO_USAGE;
      if (checkHost(host, u, req) !== null) return null; // never expected: let the full evaluation decide
      candidates.push({ host, score: scoreHost(host, u, req) });
    }
    if (candidates.length === 0) return null;
    candidates.sort(compareCandidates);
    const [best, ...others] = candidates;
    if (!best) return null;
    for (const other of others) rejected.push(scoredLower(other, best));
    return { host: best.host, score: best.score, rejected };
  }

  async getClaim(vmUuid: string): Promise<Claim | null> {
    const row = await this.db.get<ClaimRow>(`SELECT ${CLAIM_COLUMNS} FROM claims WHERE vm_uuid = ?`, [vmUuid]);
    return row ? toClaim(row) : null;
  }

  async listClaims(): Promise<Claim[]> {
    return (await this.db.query<ClaimRow>(`SELECT ${CLAIM_COLUMNS} FROM claims ORDER BY created_at, vm_uuid`)).map(
      toClaim,
    );
  }

  async releaseClaim(vmUuid: string, workflowId: string): Promise<void> {
    await this.db.run('DELETE FROM claims WHERE vm_uuid = ? AND workflow_id = ?', [vmUuid, workflowId]);
  }

  // ---- history ----

  // ---- storage provenance ----

  async recordArtifact(a: ArtifactKey & Pick<StorageArtifactRecord, 'pool' | 'vmUuid'>, state: 'creating' | 'created' = 'creating'): Promise<void> {
    const now = this.timestamp();
    await this.db.transaction(async (tx) => {
      await tx.run(
        `INSERT INTO storage_artifacts (host, kind, path, pool, vm_uuid, workflow_id, run_id, state, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (workflow_id, run_id, host, kind, path) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
        [a.host, a.kind, a.path, a.pool, a.vmUuid, a.workflowId, a.runId, state, now, now],
      );
    });
  }

  async markArtifact(a: ArtifactKey, state: 'created' | 'removed'): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.run('UPDATE storage_artifacts SET state = ?, updated_at = ? WHERE workflow_id = ? AND run_id = ? AND host = ? AND kind = ? AND path = ?', [
        state,
        this.timestamp(),
        a.workflowId,
        a.runId,
        a.host,
        a.kind,
        a.path,
      ]);
    });
  }

  async listArtifacts(filter: ArtifactFilter): Promise<StorageArtifactRecord[]> {
    const where = ["state <> 'removed'"];
    const params: SqlValue[] = [];
    const columns: Record<keyof ArtifactFilter, string> = {
      host: 'host',
      kind: 'kind',
      path: 'path',
      vmUuid: 'vm_uuid',
      workflowId: 'workflow_id',
      runId: 'run_id',
    };
    for (const [key, column] of Object.entries(columns) as [keyof ArtifactFilter, string][]) {
      const v = filter[key];
      if (v === undefined) continue;
      where.push(`${column} = ?`);
      params.push(v);
    }
    const rows = await this.db.query<ArtifactRow>(
      `SELECT host, kind, path, pool, vm_uuid, workflow_id, run_id, state, created_at, updated_at FROM storage_artifacts
       WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC`,
      params,
    );
    return rows.map((r) => ({
      host: r.host,
      kind: r.kind,
      path: r.path,
      pool: r.pool,
      vmUuid: r.vm_uuid,
      workflowId: r.workflow_id,
      runId: r.run_id,
      state: r.state,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
    }));
  }

  async recordHistory(h: HistoryRecord): Promise<number> {
    // Keyed by (workflowId, runId): a retried activity rewrites its own row instead of adding one.
    const row = await this.db.get<{ id: Num }>(
      `INSERT INTO history (workflow_id, run_id, vm_uuid, vm_name, source, target, result, reason, started_at, ended_at,
                            duration_ms, downtime_ms, bytes_transferred, create_attempts, phase_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (workflow_id, run_id) DO UPDATE SET vm_uuid = excluded.vm_uuid, vm_name = excluded.vm_name,
         source = excluded.source, target = excluded.target, result = excluded.result, reason = excluded.reason,
         started_at = excluded.started_at, ended_at = excluded.ended_at, duration_ms = excluded.duration_ms,
         downtime_ms = excluded.downtime_ms, bytes_transferred = excluded.bytes_transferred,
         create_attempts = excluded.create_attempts, phase_ms = excluded.phase_ms
       RETURNING id`,
      [
        h.workflowId,
        h.runId,
        h.vmUuid,
        h.vmName,
        h.source,
        h.target,
        h.result,
        h.reason,
        h.startedAt,
        h.endedAt,
        h.durationMs,
        h.downtimeMs,
        h.bytesTransferred,
        JSON.stringify(h.createAttempts),
        JSON.stringify(h.phaseMs),
      ],
    );
    if (!row) throw new Error(`recording history of ${h.workflowId} returned no id`);
    return num(row.id);
  }

  async listHistory(filter: HistoryFilter = {}): Promise<HistoryRecord[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (filter.vm !== undefined) {
      where.push('(vm_name = ? OR vm_uuid = ?)');
      params.push(filter.vm, filter.vm);
    }
    if (filter.host !== undefined) {
      where.push('(source = ? OR target = ?)');
      params.push(filter.host, filter.host);
    }
    if (filter.result !== undefined) {
      where.push('result = ?');
      params.push(filter.result);
    }
    if (filter.since !== undefined) {
      where.push('started_at >= ?');
      params.push(filter.since);
    }
    if (filter.until !== undefined) {
      where.push('started_at < ?');
      params.push(filter.until);
    }
    let sql = `SELECT ${HISTORY_COLUMNS} FROM history`;
    if (where.length > 0) sql += ` WHERE ${where.join(' AND ')}`;
    sql += ' ORDER BY started_at DESC, id DESC';
    if (filter.limit !== undefined) {
      if (!Number.isInteger(filter.limit) || filter.limit < 1) {
        throw new InventoryError('invalid', `history limit must be a positive integer (got ${filter.limit})`);
      }
      sql += ' LIMIT ?';
      params.push(filter.limit);
      if (filter.offset !== undefined) {
        if (!Number.isInteger(filter.offset) || filter.offset < 0) {
          throw new InventoryError('invalid', `history offset must be a whole number (got ${filter.offset})`);
        }
        sql += ' OFFSET ?';
        params.push(filter.offset);
      }
    }
    return (await this.db.query<HistoryRow>(sql, params)).map(toHistory);
  }

  // ---- sync ----

  async syncHost(host: string, vms: VmUpsert[], capacity: HostCapacityUpdate): Promise<SyncResult> {
    return this.db.transaction(async (tx) => {
      await this.requireHost(tx, host);
      const reported = new Map<string, VmUpsert>();
      for (const vm of vms) reported.set(vm.uuid, { ...vm, host });

      const uuids = [...reported.keys()];
      const known = new Map<string, VmRecord>();
      const where =
        uuids.length === 0 ? 'v.host = ?' : `v.host = ? OR v.uuid IN (${uuids.map(() => '?').join(', ')})`;
      for (const vm of await selectVms(tx, where, [host, ...uuids])) known.set(vm.uuid, vm);
      const claimed = new Set(
        (await tx.query<{ vm_uuid: string }>('SELECT vm_uuid FROM claims')).map((r) => r.vm_uuid),
      );
      const inFlight = (vm: VmRecord): boolean => vm.state === 'migrating' || claimed.has(vm.uuid);

      const result: SyncResult = { host, added: [], updated: [], removed: [], skipped: [] };
      for (const vm of reported.values()) {
        const old = known.get(vm.uuid);
        if (!old) {
          await this.writeVm(tx, vm);
          result.added.push(vm.name);
        } else if (inFlight(old)) {
          result.skipped.push(old.name);
        } else if (!sameVm(old, vm)) {
          await this.writeVm(tx, vm);
          result.updated.push(vm.name);
        }
      }
      for (const old of known.values()) {
        if (old.host !== host || reported.has(old.uuid)) continue;
        if (inFlight(old)) {
          result.skipped.push(old.name);
        } else {
          await tx.run('DELETE FROM vms WHERE uuid = ?', [old.uuid]);
          result.removed.push(old.name);
        }
      }
      await this.writeCapacity(tx, host, capacity);
      return result;
    });
  }
}
