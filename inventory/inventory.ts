/**
 * The inventory on SQL, written once against the Db port (db.ts). See schema.ts for the tables.
 */
import { HOST_STATES } from '../common/types';
import type {
  Claim,
  DiskFormat,
  DiskRecord,
  HistoryRecord,
  HostRecord,
  HostState,
  MigrationResultKind,
  VmRecord,
  VmState,
} from '../common/types';
import type { Db, Queryable, SqlValue } from './db';
import { checkLimits, computeUsage, placeVm, PlacementError } from './placement';
import { migrate } from './schema';
import type {
  HistoryFilter,
  HostCapacityUpdate,
  Inventory,
  NewHost,
  PlacementRequest,
  PlacementResult,
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
}

// ---- rows (numbers may arrive as strings from PostgreSQL: see num()) ----

type Num = number | string;

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

  private constructor(
    private readonly db: Db,
    opts: SqlInventoryOptions,
  ) {
    this.now = opts.now ?? (() => new Date());
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

  async removeHost(name: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const busy = await tx.get<{ n: number }>('SELECT COUNT(*) AS n FROM claims WHERE host = ? OR source_host = ?', [name, name]);
      if (busy && Number(busy.n) > 0) {
        throw new InventoryError('invalid', `host ${name} has migrations in flight: wait for them or cancel them first`);
      }
      await tx.run('DELETE FROM disks WHERE vm_uuid IN (SELECT uuid FROM vms WHERE host = ?)', [name]);
      await tx.run('DELETE FROM vms WHERE host = ?', [name]);
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
      const held = await tx.get<ClaimRow>(`SELECT ${CLAIM_COLUMNS} FROM claims WHERE vm_uuid = ?`, [req.vmUuid]);
      if (held) {
        const claim = toClaim(held);
        if (claim.workflowId === req.workflowId) return { claim, rejected: [] }; // retry of the same workflow
        throw new PlacementError(
          'vm-busy',
          `${vm.name} is already being migrated to ${claim.host} by workflow ${claim.workflowId} — ` +
            'wait for it to finish or cancel it',
          [],
          claim.workflowId,
        );
      }
      if (vm.state === 'migrating') {
        throw new PlacementError(
          'vm-busy',
          `${vm.name} is marked migrating but no workflow holds a claim for it (a migration may be finishing) — ` +
            'wait for it; if no migration is running, reset the VM state',
        );
      }
      if (vm.state !== 'running') {
        throw new PlacementError(
          'vm-state',
          `${vm.name} is ${vm.state}: only running VMs can be live-migrated` +
            (vm.state === 'unknown' ? ' — run `ferry inventory sync` to refresh its state' : ''),
        );
      }
      if (vm.host !== req.sourceHost) {
        throw new PlacementError(
          'vm-state',
          `${vm.name} is on ${vm.host} according to the inventory, not on ${req.sourceHost} — ` +
            'run `ferry inventory sync` if it moved',
        );
      }

      const hosts = (await tx.query<HostRow>(`SELECT ${HOST_COLUMNS} FROM hosts ORDER BY name`)).map(toHost);
      const totals = await tx.query<{ host: string; memory_mib: Num; vcpus: Num }>(
        'SELECT host, COALESCE(SUM(memory_mib), 0) AS memory_mib, COALESCE(SUM(vcpus), 0) AS vcpus FROM vms GROUP BY host',
      );
      const claims = (await tx.query<ClaimRow>(`SELECT ${CLAIM_COLUMNS} FROM claims`)).map(toClaim);
      const wait = checkLimits(claims, req);
      if (wait !== null) throw new PlacementError('no-slot', wait);
      const usage = computeUsage(
        totals.map((t) => ({ host: t.host, memoryMiB: num(t.memory_mib), vcpus: num(t.vcpus) })),
        claims,
      );
      const placement = placeVm(hosts, usage, req, vm.name);

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
    let sql = `SELECT ${HISTORY_COLUMNS} FROM history`;
    if (where.length > 0) sql += ` WHERE ${where.join(' AND ')}`;
    sql += ' ORDER BY started_at DESC, id DESC';
    if (filter.limit !== undefined) {
      if (!Number.isInteger(filter.limit) || filter.limit < 1) {
        throw new InventoryError('invalid', `history limit must be a positive integer (got ${filter.limit})`);
      }
      sql += ' LIMIT ?';
      params.push(filter.limit);
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
