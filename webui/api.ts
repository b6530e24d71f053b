/**
 * What the page shows and what it may do, on the inventory (inventory/) and the typed client (client/) — the
 * same calls and validation the CLI makes. Nothing here returns a libvirt URI: the page gets host names,
 * addresses, capacity and state only, and every error message is passed through redactText.
 */
import { InputError, MigrationAlreadyRunningError, MigrationHandle, MigrationRejectedError, WORKFLOW_TYPES, WorkflowNotFoundError, type FerryClient } from '../client';
import { EvacuationAlreadyRunningError, getEvacuation, startEvacuation, type EvacuationProgress } from '../client/fleet';
import { migrationInput, tuneRequest, type MigrationRequestFields } from '../client/requests';
import { TERMINAL_PHASES, type MigrationProgress } from '../common/migration';
import type { HistoryRecord, HostState, VmRecord } from '../common/types';
import { redactText } from '../hypervisor/errors';
import { InventoryError, type Inventory } from '../inventory';

export const PAGE_SIZE = 50;
/** How long a finished migration stays in the live view. */
const KEEP_FINISHED_MS = 10 * 60_000;

/** An action the operator asked for was refused (bad input, nothing changed): HTTP 400 with the message. */
export class Refused extends Error {}

export interface HostView {
  name: string;
  address: string;
  state: HostState;
  memoryMiB: number;
  vcpus: number;
  usedMemoryMiB: number;
  usedVcpus: number;
  storageFreeBytes: number | null;
  vms: number;
  migrationsIn: number;
  migrationsOut: number;
}

export interface VmView {
  uuid: string;
  name: string;
  host: string;
  state: string;
  memoryMiB: number;
  vcpus: number;
  disks: { target: string; name: string; sizeBytes: number }[];
  last: { result: string; endedAt: string; target: string | null } | null;
}

export interface LiveView {
  at: string;
  migrations: MigrationProgress[];
  evacuations: EvacuationProgress[];
  errors: string[];
}

export class UiApi {
  /** Migrations seen running (workflow id → last progress, and when it ended). */
  private readonly tracked = new Map<string, { progress: MigrationProgress | null; endedAt: number | null }>();

  constructor(
    readonly inventory: Inventory,
    readonly ferry: FerryClient,
  ) {}

  async hosts(): Promise<HostView[]> {
    const [hosts, vms, claims] = await Promise.all([this.inventory.listHosts(), this.inventory.listVms(), this.inventory.listClaims()]);
    return hosts.map((h) => {
      const on = vms.filter((v) => v.host === h.name);
      return {
        name: h.name,
        address: h.address,
        state: h.state,
        memoryMiB: h.memoryMiB,
        vcpus: h.vcpus,
        usedMemoryMiB: on.reduce((s, v) => s + v.memoryMiB, 0) + claims.filter((c) => c.host === h.name).reduce((s, c) => s + c.memoryMiB, 0),
        usedVcpus: on.reduce((s, v) => s + v.vcpus, 0),
        storageFreeBytes: h.storageFreeBytes,
        vms: on.length,
        migrationsIn: claims.filter((c) => c.host === h.name).length,
        migrationsOut: claims.filter((c) => c.sourceHost === h.name).length,
      };
    });
  }

  /** One page of VMs (by name), filtered by a substring of name, UUID or host. */
  async vms(o: { page: number; q?: string }): Promise<{ rows: VmView[]; total: number; page: number; pageSize: number }> {
    const q = o.q?.toLowerCase();
    const all = (await this.inventory.listVms()).filter((v) => !q || v.name.toLowerCase().includes(q) || v.uuid.includes(q) || v.host.toLowerCase().includes(q));
    all.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
    const page = all.slice(o.page * PAGE_SIZE, (o.page + 1) * PAGE_SIZE);
    const rows = await Promise.all(page.map(async (v) => vmView(v, (await this.inventory.listHistory({ vm: v.uuid, limit: 1 }))[0])));
    return { rows, total: all.length, page: o.page, pageSize: PAGE_SIZE };
  }

  /** A page of history rows and, for the charts, every matching row as compact series (oldest first). */
  async history(f: { vm?: string; host?: string; result?: string; since?: string; until?: string; page: number }) {
    const filter = {
      ...(f.vm ? { vm: f.vm } : {}),
      ...(f.host ? { host: f.host } : {}),
      ...(f.result ? { result: f.result } : {}),
      ...(f.since ? { since: f.since } : {}),
      ...(f.until ? { until: f.until } : {}),
    };
    const [rows, all] = await Promise.all([
      this.inventory.listHistory({ ...filter, limit: PAGE_SIZE + 1, offset: f.page * PAGE_SIZE }),
      this.inventory.listHistory(filter),
    ]);
    const chart = all.reverse();
    const counts: Record<string, number> = {};
    for (const r of chart) counts[r.result] = (counts[r.result] ?? 0) + 1;
    return {
      rows: rows.slice(0, PAGE_SIZE).map(historyView),
      more: rows.length > PAGE_SIZE,
      page: f.page,
      total: chart.length,
      counts,
      series: {
        t: chart.map((r) => Math.floor(Date.parse(r.startedAt) / 1000)),
        durationMs: chart.map((r) => r.durationMs),
        downtimeMs: chart.map((r) => r.downtimeMs),
        bytes: chart.map((r) => r.bytesTransferred),
      },
    };
  }

  /**
   * Running migrations (Temporal's list of running liveMigration workflows — waiting for a slot, copying or
   * compensating — and those the UI started) with their progress; finished ones stay a while with their end.
   * Running evacuations with theirs.
   */
  async live(): Promise<LiveView> {
    const errors: string[] = [];
    try {
      for await (const w of this.ferry.client.workflow.list({ query: `WorkflowType = '${WORKFLOW_TYPES.liveMigration}' AND ExecutionStatus = 'Running'` })) {
        if (!this.tracked.has(w.workflowId)) this.tracked.set(w.workflowId, { progress: null, endedAt: null });
      }
    } catch (err) {
      errors.push(`migrations: ${message(err)}`);
    }
    const now = Date.now();
    await Promise.all(
      [...this.tracked].map(async ([id, t]) => {
        if (t.endedAt !== null) {
          if (now - t.endedAt > KEEP_FINISHED_MS) this.tracked.delete(id);
          return;
        }
        try {
          t.progress = await new MigrationHandle(this.ferry.client.workflow.getHandle(id)).progress();
          if (TERMINAL_PHASES.includes(t.progress.phase)) t.endedAt = now;
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) this.tracked.delete(id);
          else errors.push(`${id}: ${message(err)}`);
        }
      }),
    );
    const evacuations: EvacuationProgress[] = [];
    try {
      for await (const w of this.ferry.client.workflow.list({ query: `WorkflowType = '${WORKFLOW_TYPES.evacuateHost}' AND ExecutionStatus = 'Running'` })) {
        evacuations.push(await getEvacuation(this.ferry.client, w.workflowId.replace(/^ferry-evacuate-/, '')).progress());
      }
    } catch (err) {
      errors.push(`evacuations: ${message(err)}`);
    }
    const migrations = [...this.tracked.values()].flatMap((t) => (t.progress ? [t.progress] : []));
    migrations.sort((a, b) => b.startedAt.localeCompare(a.startedAt));
    return { at: new Date(now).toISOString(), migrations, evacuations, errors };
  }

  // ---- actions: the CLI's calls, the CLI's validation ----

  async migrate(body: { vm?: unknown; dryRun?: unknown } & Record<string, unknown>): Promise<unknown> {
    const vm = await this.vm(body.vm);
    const source = (await this.inventory.getHost(vm.host))?.address ?? vm.host;
    const input = migrationInput(vm, source, fields(body));
    return refusedAs(async () => {
      if (body.dryRun === true) return { plan: await this.ferry.planMigration(input) };
      const handle = await this.ferry.startMigration(input);
      this.tracked.set(handle.workflowId, { progress: null, endedAt: null });
      return { workflowId: handle.workflowId };
    });
  }

  async cancel(body: { vm?: unknown; reason?: unknown }): Promise<unknown> {
    const handle = await this.running(body.vm);
    const reason = typeof body.reason === 'string' && body.reason.trim() !== '' ? body.reason.trim() : 'cancelled from ferry ui';
    await handle.cancelWithReason(reason);
    return { workflowId: handle.workflowId };
  }

  async tune(body: Record<string, unknown>): Promise<unknown> {
    const handle = await this.running(body['vm']);
    const req = tuneRequest({ ...text(body, 'maxDowntime'), ...text(body, 'bandwidth'), ...(body['postCopyNow'] === true ? { postCopyNow: true } : {}) });
    if (Object.keys(req).length === 0) throw new Refused('say what to tune: max downtime, bandwidth or post-copy now');
    return refusedAs(() => handle.tune(req), true);
  }

  async setHostState(body: { host?: unknown; state?: unknown }): Promise<unknown> {
    if (typeof body.host !== 'string' || typeof body.state !== 'string') throw new Refused('host and state are required');
    return refusedAs(() => this.inventory.setHostState(body.host as string, body.state as HostState).then((h) => ({ name: h.name, state: h.state })));
  }

  async evacuate(body: { host?: unknown; maxParallel?: unknown }): Promise<unknown> {
    const input = { host: body.host, ...(body.maxParallel !== undefined && body.maxParallel !== '' ? { maxParallel: Number(body.maxParallel) } : {}) };
    return refusedAs(async () => ({ workflowId: (await startEvacuation(this.ferry.client, this.ferry.taskQueue, input as { host: string })).workflowId }));
  }

  async evacuationSignal(body: { host?: unknown; signal?: unknown }): Promise<unknown> {
    if (typeof body.host !== 'string') throw new Refused('host is required');
    const e = getEvacuation(this.ferry.client, body.host);
    if (body.signal === 'pause') await e.pause();
    else if (body.signal === 'resume') await e.resume();
    else if (body.signal === 'cancel') await e.cancel({ restoreHostState: true });
    else throw new Refused('signal must be pause, resume or cancel');
    return { workflowId: e.workflowId };
  }

  private async vm(ref: unknown): Promise<VmRecord> {
    if (typeof ref !== 'string' || ref === '') throw new Refused('vm (name or UUID) is required');
    const vms = await this.inventory.findVms(ref);
    if (vms.length !== 1) {
      throw new Refused(vms.length === 0 ? `no VM "${ref}" in the inventory: check the name or UUID, or run \`ferry inventory sync\`` : `"${ref}" names ${vms.length} VMs: pick one by UUID`);
    }
    return vms[0] as VmRecord;
  }

  private async running(ref: unknown) {
    const vm = await this.vm(ref);
    try {
      const handle = await this.ferry.getMigration(vm.uuid);
      if (await handle.isRunning()) return handle;
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
    throw new Refused(`${vm.name} has no running migration`);
  }
}

function fields(body: Record<string, unknown>): MigrationRequestFields {
  return {
    ...text(body, 'target'),
    ...text(body, 'createAttempts'),
    ...text(body, 'timeout'),
    ...text(body, 'bandwidth'),
    ...text(body, 'maxDowntime'),
    ...text(body, 'onDeadline'),
    ...(body['autoConverge'] === true ? { autoConverge: true } : {}),
    ...(body['postCopy'] === true ? { postCopy: true } : {}),
    ...(body['keepSource'] === true ? { keepSource: true } : {}),
  };
}

/** A form field as the text a CLI flag would be (empty = not given). */
function text(body: Record<string, unknown>, key: string): Record<string, string> {
  const v = body[key];
  if (v === undefined || v === null || v === '') return {};
  return { [key]: String(v) };
}

/** Runs an action; the refusals the CLI reports as bad input (exit 2) become Refused. */
async function refusedAs<T>(f: () => Promise<T>, anyError = false): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (
      anyError ||
      err instanceof InputError ||
      err instanceof MigrationRejectedError ||
      err instanceof MigrationAlreadyRunningError ||
      err instanceof EvacuationAlreadyRunningError ||
      err instanceof InventoryError
    ) {
      throw new Refused(message(err));
    }
    throw err;
  }
}

export function message(err: unknown): string {
  return redactText(err instanceof Error ? err.message : String(err));
}

function vmView(v: VmRecord, last: HistoryRecord | undefined): VmView {
  return {
    uuid: v.uuid,
    name: v.name,
    host: v.host,
    state: v.state,
    memoryMiB: v.memoryMiB,
    vcpus: v.vcpus,
    disks: v.disks.map((d) => ({ target: d.target, name: d.name, sizeBytes: d.sizeBytes })),
    last: last ? { result: last.result, endedAt: last.endedAt, target: last.target } : null,
  };
}

function historyView(r: HistoryRecord) {
  return {
    workflowId: r.workflowId,
    runId: r.runId,
    vm: r.vmName,
    vmUuid: r.vmUuid,
    source: r.source,
    target: r.target,
    result: r.result,
    reason: r.reason === null ? null : redactText(r.reason),
    startedAt: r.startedAt,
    durationMs: r.durationMs,
    downtimeMs: r.downtimeMs,
    bytes: r.bytesTransferred,
  };
}
