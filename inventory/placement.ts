/**
 * Placement: which host receives a migrating VM. Pure functions (no I/O); the inventory feeds them
 * inside its claim transaction, and unit tests feed them directly.
 *
 * Filters (a host failing any of them is rejected, with a reason an operator can act on):
 *   - it is the VM's source host, or one this migration's storage check refused after claiming it;
 *   - its state is not `normal` (maintenance, down);
 *   - it is already receiving as many migrations as the inbound limit allows (default 1, the patent's rule);
 *   - memory:  memoryMiB × memoryRatio − Σ VMs on it − Σ claims on it  <  requested memory;
 *   - vCPUs:   vcpus × cpuRatio − Σ VMs on it − Σ claims on it          <  requested vCPUs;
 *   - storage: free bytes unknown (never synced), or free bytes − Σ claimed storage < requested bytes.
 * Memory or vCPU totals of 0 mean "never synced" and are reported as unknown capacity.
 * VMs count whatever their state (a stopped VM keeps its reservation, as in Nova).
 */
import type { Claim, HostRecord, VmRecord, VmState } from '../common/types';
import { DEFAULT_LIMITS } from '../common/limits';
import type { PlacementRequest, RejectedHost } from './store';

export { DEFAULT_LIMITS } from '../common/limits';

/**
 * `no-slot` is the one transient refusal: a limit is reached (source outbound, fleet) or every host that
 * would fit is busy receiving migrations. The caller waits and asks again; the others are final.
 */
export type PlacementErrorCode = 'no-host' | 'no-slot' | 'vm-busy' | 'vm-state' | 'unknown-host' | 'unknown-vm';

export class PlacementError extends Error {
  override readonly name = 'PlacementError';
  constructor(
    readonly code: PlacementErrorCode,
    message: string,
    /** Every host considered and why it was not chosen. */
    readonly rejected: RejectedHost[] = [],
    /** For `vm-busy`: the workflow that holds the VM. */
    readonly workflowId?: string,
  ) {
    super(message);
  }
}

/** Running and paused VMs move live (a paused one stays paused), stopped ones cold. */
export const MOVABLE_STATES: readonly VmState[] = ['running', 'paused', 'stopped'];

/**
 * The rule for starting a migration of a VM, checked early by the migration (readVm) and again inside the
 * claim's transaction: no other workflow holds it, it is not marked migrating, it is running, paused or stopped, and it is on
 * the source the migration names. Returns the refusal, or null when the VM may be claimed.
 */
export function movabilityRefusal(vm: Pick<VmRecord, 'name' | 'state' | 'host'>, held: Claim | null, workflowId: string, sourceHost: string): PlacementError | null {
  if (held !== null && held.workflowId !== workflowId) {
    return new PlacementError(
      'vm-busy',
      `${vm.name} is already being migrated to ${held.host} by workflow ${held.workflowId} — wait for it to finish or cancel it`,
      [],
      held.workflowId,
    );
  }
  if (held !== null) return null; // a retry of the same workflow's claim
  if (vm.state === 'migrating') {
    return new PlacementError(
      'vm-busy',
      `${vm.name} is marked migrating but no workflow holds a claim for it (a migration may be finishing) — ` +
        'wait for it; if no migration is running, reset the VM state',
    );
  }
  if (!MOVABLE_STATES.includes(vm.state)) {
    return new PlacementError('vm-state', `${vm.name} is ${vm.state}: Ferry moves running, paused and stopped VMs — run \`ferry inventory sync\` to refresh its state`);
  }
  if (vm.host !== sourceHost) {
    return new PlacementError('vm-state', `${vm.name} is on ${vm.host} according to the inventory, not on ${sourceHost} — run \`ferry inventory sync\` if it moved`);
  }
  return null;
}

/** What a host already carries. */
export interface HostUsage {
  /** Σ over the VMs the inventory has on the host. */
  vmMemoryMiB: number;
  vmVcpus: number;
  /** Σ over the claims targeting the host (migrations on their way in). */
  claimedMemoryMiB: number;
  claimedVcpus: number;
  claimedStorageBytes: number;
  /** VM UUIDs of those claims. */
  inbound: string[];
}

export const NO_USAGE: Readonly<HostUsage> = Object.freeze({
  vmMemoryMiB: 0,
  vmVcpus: 0,
  claimedMemoryMiB: 0,
  claimedVcpus: 0,
  claimedStorageBytes: 0,
  inbound: [],
});

/** Per-host usage from per-host VM totals and the claims. */
export function computeUsage(
  vmTotals: readonly { host: string; memoryMiB: number; vcpus: number }[],
  claims: readonly Pick<Claim, 'host' | 'vmUuid' | 'memoryMiB' | 'vcpus' | 'storageBytes'>[],
): Map<string, HostUsage> {
  const usage = new Map<string, HostUsage>();
  const of = (host: string): HostUsage => {
    let u = usage.get(host);
    if (!u) {
      u = { ...NO_USAGE, inbound: [] };
      usage.set(host, u);
    }
    return u;
  };
  for (const t of vmTotals) {
    const u = of(t.host);
    u.vmMemoryMiB += t.memoryMiB;
    u.vmVcpus += t.vcpus;
  }
  for (const c of claims) {
    const u = of(c.host);
    u.claimedMemoryMiB += c.memoryMiB;
    u.claimedVcpus += c.vcpus;
    u.claimedStorageBytes += c.storageBytes;
    u.inbound.push(c.vmUuid);
  }
  return usage;
}

type Need = Pick<PlacementRequest, 'sourceHost' | 'memoryMiB' | 'vcpus' | 'storageBytes' | 'limits' | 'excludeHosts'>;

function memoryCapacity(h: HostRecord): number {
  return h.memoryMiB * h.memoryRatio;
}

function vcpuCapacity(h: HostRecord): number {
  return h.vcpus * h.cpuRatio;
}

/** Why the host cannot take the request (reasons joined with ", "; none contains one), or null when it can. */
export function checkHost(host: HostRecord, usage: HostUsage, req: Need): string | null {
  if (host.name === req.sourceHost) return "is the VM's source host";
  if (req.excludeHosts?.includes(host.name)) return 'was refused by this migration\'s storage check';
  if (host.state === 'maintenance') return 'is in maintenance';
  if (host.state === 'down') return 'is down';

  const reasons: string[] = [];
  const maxInbound = (req.limits ?? DEFAULT_LIMITS).maxInboundPerHost;
  if (usage.inbound.length >= maxInbound) {
    reasons.push(
      `already receiving a migration of ${usage.inbound.join(' and ')}` + (maxInbound === 1 ? '' : ` (limit ${maxInbound})`),
    );
  }

  const memCap = memoryCapacity(host);
  const memFree = memCap - usage.vmMemoryMiB - usage.claimedMemoryMiB;
  if (host.memoryMiB === 0) {
    reasons.push('memory capacity unknown: run `ferry inventory sync`');
  } else if (memFree < req.memoryMiB) {
    reasons.push(
      `not enough memory (needs ${formatMiB(req.memoryMiB)}): ${formatMiB(memFree)} free of ${formatMiB(memCap)}` +
        ratioNote(host.memoryRatio),
    );
  }

  const cpuCap = vcpuCapacity(host);
  const cpuFree = cpuCap - usage.vmVcpus - usage.claimedVcpus;
  if (host.vcpus === 0) {
    reasons.push('vCPU capacity unknown: run `ferry inventory sync`');
  } else if (cpuFree < req.vcpus) {
    reasons.push(
      `not enough vCPUs (needs ${req.vcpus}): ${formatCount(cpuFree)} free of ${formatCount(cpuCap)}` +
        ratioNote(host.cpuRatio),
    );
  }

  if (host.storageFreeBytes === null) {
    reasons.push('storage capacity unknown: run `ferry inventory sync`');
  } else {
    const storageFree = host.storageFreeBytes - usage.claimedStorageBytes;
    if (storageFree < req.storageBytes) {
      reasons.push(
        `not enough storage under ${host.storageRoot} (needs ${formatBytes(req.storageBytes)}): ` +
          `${formatBytes(storageFree)} free` +
          (usage.claimedStorageBytes > 0 ? ` after ${formatBytes(usage.claimedStorageBytes)} claimed` : ''),
      );
    }
  }
  return reasons.length > 0 ? reasons.join(', ') : null;
}

/*
 * Score. Among the hosts that pass the filters, prefer the one with the largest fraction of its memory
 * capacity (memoryMiB × memoryRatio) left free AFTER the VM is placed. This spreads load, like Nova's
 * default RAM weigher; being a fraction, it compares a small host and a big one by how full they are, not
 * by absolute MiB. Ties (difference ≤ 1e-9) go to the larger fraction of vCPU capacity (vcpus × cpuRatio)
 * left free after placement, then to the host name in ascending order, so the result is deterministic.
 */
export interface HostScore {
  /** Fraction of memory capacity free after placement, 0..1 (0 when the host reports no capacity). */
  memoryFree: number;
  /** Same for vCPUs. */
  vcpuFree: number;
}

export function scoreHost(host: HostRecord, usage: HostUsage, req: Need): HostScore {
  const fraction = (cap: number, used: number): number => (cap > 0 ? (cap - used) / cap : 0);
  return {
    memoryFree: fraction(memoryCapacity(host), usage.vmMemoryMiB + usage.claimedMemoryMiB + req.memoryMiB),
    vcpuFree: fraction(vcpuCapacity(host), usage.vmVcpus + usage.claimedVcpus + req.vcpus),
  };
}

const EPSILON = 1e-9;

/** Orders candidates best first: negative when `a` is better than `b`. */
export function compareCandidates(
  a: { host: HostRecord; score: HostScore },
  b: { host: HostRecord; score: HostScore },
): number {
  const mem = b.score.memoryFree - a.score.memoryFree;
  if (Math.abs(mem) > EPSILON) return mem;
  const cpu = b.score.vcpuFree - a.score.vcpuFree;
  if (Math.abs(cpu) > EPSILON) return cpu;
  return a.host.name < b.host.name ? -1 : a.host.name > b.host.name ? 1 : 0;
}

export interface Placement {
  host: HostRecord;
  score: HostScore;
  /** Every other host considered, with why it was filtered out or lost. */
  rejected: RejectedHost[];
}

/**
 * Chooses a target for `req` or throws PlacementError (`unknown-host` for a fixedTarget that is neither a
 * host name nor an address; `no-host` when nothing fits). `vmName` is only used in messages.
 */
export function placeVm(
  hosts: readonly HostRecord[],
  usage: ReadonlyMap<string, HostUsage>,
  req: Need & Pick<PlacementRequest, 'vmUuid' | 'fixedTarget'>,
  vmName: string = req.vmUuid,
): Placement {
  const what = `${vmName} (${describeNeed(req)})`;
  let candidates: readonly HostRecord[] = hosts;
  if (req.fixedTarget !== undefined) {
    const t = req.fixedTarget;
    const fixed = hosts.find((h) => h.name === t) ?? hosts.find((h) => h.address === t);
    if (!fixed) {
      throw new PlacementError(
        'unknown-host',
        `target host ${t} is not in the inventory (no host has that name or address) — check the name or add the host`,
      );
    }
    candidates = [fixed];
  }

  const rejected: RejectedHost[] = [];
  const fit: { host: HostRecord; score: HostScore }[] = [];
  for (const host of candidates) {
    const u = usage.get(host.name) ?? NO_USAGE;
    const reason = checkHost(host, u, req);
    if (reason === null) fit.push({ host, score: scoreHost(host, u, req) });
    else rejected.push({ host: host.name, reason });
  }

  fit.sort(compareCandidates);
  const best = fit[0];
  if (!best) {
    const why = rejected.map((r) => `${r.host}: ${r.reason}`).join('; ');
    // Would a host fit once the migrations now arriving have landed? Then this is a wait, not a refusal.
    const busy = candidates.filter((h) => {
      const u = usage.get(h.name);
      return u !== undefined && u.inbound.length > 0 && checkHost(h, { ...u, claimedMemoryMiB: 0, claimedVcpus: 0, claimedStorageBytes: 0, inbound: [] }, req) === null;
    });
    if (busy.length > 0) {
      throw new PlacementError(
        'no-slot',
        `waiting for a target: ${busy.map((h) => h.name).join(', ')} would fit ${what} but ${
          busy.length === 1 ? 'is' : 'are'
        } busy receiving migrations`,
        rejected,
      );
    }
    if (req.fixedTarget !== undefined) {
      throw new PlacementError(
        'no-host',
        `${rejected[0]?.host ?? req.fixedTarget} cannot take ${what}: ${rejected[0]?.reason ?? 'unknown'}` +
          ' — fix that host, choose another --target, or leave --target out to let Ferry choose',
        rejected,
      );
    }
    if (rejected.length === 0) {
      throw new PlacementError('no-host', `no host can take ${what}: the inventory has no hosts — add hosts first`);
    }
    throw new PlacementError(
      'no-host',
      `no host can take ${what}: ${why} — add capacity, finish or cancel running migrations, or pass --target`,
      rejected,
    );
  }
  for (const other of fit.slice(1)) rejected.push(scoredLower(other, best));
  return { host: best.host, score: best.score, rejected };
}

/** A host that fits but lost to `best`, with both scores. */
export function scoredLower(
  other: { host: HostRecord; score: HostScore },
  best: { host: HostRecord; score: HostScore },
): RejectedHost {
  return {
    host: other.host.name,
    reason:
      `fits but scored lower: ${formatPercent(other.score.memoryFree)} memory / ` +
      `${formatPercent(other.score.vcpuFree)} vCPUs free after placement, vs ` +
      `${formatPercent(best.score.memoryFree)} / ${formatPercent(best.score.vcpuFree)} on ${best.host.name}`,
  };
}

/**
 * Checks the source-outbound and fleet-wide limits against the claims in flight (not counting the VM's own).
 * Returns why the migration must wait, or null.
 */
export function checkLimits(
  claims: readonly Pick<Claim, 'vmUuid' | 'sourceHost'>[],
  req: Pick<PlacementRequest, 'vmUuid' | 'sourceHost' | 'limits'>,
): string | null {
  const limits = req.limits ?? DEFAULT_LIMITS;
  const others = claims.filter((c) => c.vmUuid !== req.vmUuid);
  const outbound = others.filter((c) => c.sourceHost === req.sourceHost).length;
  if (outbound >= limits.maxOutboundPerHost) {
    return `waiting for a slot: ${req.sourceHost} is already sending ${outbound} migration${outbound === 1 ? '' : 's'} (limit ${limits.maxOutboundPerHost} per source host)`;
  }
  if (others.length >= limits.maxInFlight) {
    return `waiting for a slot: ${others.length} migrations are in flight in the fleet (limit ${limits.maxInFlight})`;
  }
  return null;
}

export function describeNeed(req: Pick<PlacementRequest, 'memoryMiB' | 'vcpus' | 'storageBytes'>): string {
  return `${formatMiB(req.memoryMiB)}, ${req.vcpus} vCPU${req.vcpus === 1 ? '' : 's'}, ${formatBytes(req.storageBytes)} disk`;
}

function ratioNote(ratio: number): string {
  return ratio === 1 ? '' : ` (overcommit ×${ratio})`;
}

function formatCount(n: number): string {
  return String(Math.max(0, Math.floor(n)));
}

function formatMiB(mib: number): string {
  return formatBytes(mib * 1024 * 1024);
}

function formatPercent(f: number): string {
  return `${Math.round(f * 100)}%`;
}

/** 1536 MiB -> "1.5 GiB"; negative values print as 0 B. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = Math.max(0, bytes);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const text = Number.isInteger(v) ? String(v) : v.toFixed(1).replace(/\.0$/, '');
  return `${text} ${units[i]}`;
}
