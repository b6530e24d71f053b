/**
 * VirshHypervisor: the Hypervisor port on the `virsh` binary (execFile via run(), never a shell).
 *
 * Round trips: every virsh process opens its own connection (~16 ms over TCP), so methods that need several
 * answers send them as ONE virsh invocation with per-command results (the batch protocol: virsh-batch.ts).
 *
 * Sessions (default; FERRY_VIRSH_SESSIONS=0 turns them off): the same batch line goes to a persistent
 * `virsh -c <uri>` per host (virsh-session.ts) instead of a new process, so a round trip costs the libvirt
 * RPC only, not a process start and a new connection (bench/RESULTS.md: ~25 calls per migration). Only
 * `migrate` always runs as its own process (long, and abortable by killing the client).
 *
 * Notes for callers (all seen on libvirt 9.0):
 * - getDomain: 1 round trip (list --persistent, domstate --reason, dumpxml, domstats --block --nowait); a 2nd one
 *   (vol-info by path) only when domstats left a capacity out, i.e. on the TARGET of a running incoming
 *   migration, whose job lock blocks domblkinfo for libvirt's 30 s lock timeout. There the domain is
 *   `paused`/`migrating` and transient. `memoryKiB` is `<memory>` (maximum), `vcpus` the current count.
 *   A disk whose size nobody can tell (file missing on an inactive domain) reports capacityBytes 0.
 * - listDomains: 2 round trips whatever the number of domains (+1 as above).
 * - hostCapacity: memory/cpus from nodeinfo, free memory from `freecell` (free memory summed over NUMA cells,
 *   the same source as nodeinfo; nodememstats reads /proc/meminfo and may disagree; `freecell --all` would
 *   build the host capabilities first, ~3.7 s on a fresh daemon). The storage root pool is refreshed before it is
 *   read; its name is cached per (uri, root): 1 round trip when warm, 3 when cold. Inactive pool → null.
 * - jobInfo on the migration TARGET is refused by libvirt ("migration statistics are available only on the
 *   source host": kind `invalid`); on a shut-off domain it returns type `none`.
 * - completedJobInfo on the target after a migration: total time, downtime and MEMORY bytes only (the disk
 *   copy is not in the target's statistics, and the source's are gone with --undefinesource): sample
 *   jobInfo on the source during the run for disk figures (disk_total = sum of virtual disk sizes).
 *   An aborted migration leaves no completed statistics on the source (null).
 * - migrate rejects with kind `aborted` after abortJob ("operation aborted: migration out: canceled by
 *   client"); with `connection` and a message naming the target when the source daemon cannot reach it.
 * - The default per-call limit (30 s) equals libvirt's own job-lock wait: a call queued behind a domain job
 *   tends to come back as `timeout` rather than `busy`. Both are retryable.
 * - diskCopyJobs / setDiskCopyBandwidth: a migration's NBD mirror of disk <dev> is block job `drive-<alias>`
 *   (type "Block Copy"). `blockjob --info` answers during the migration; `blockjob --bandwidth` (a modify job)
 *   waits for libvirt's 30 s lock and fails, so the speed goes through `qemu-monitor-command` (a query job);
 *   virsh exits 0 for a QMP error, the JSON reply says it.
 * - removeStorageDirectory deletes every volume in the pool without checking whether a domain still uses
 *   it: callers must be sure the VM is not running from that directory on that host.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { posix } from 'node:path';
import type { DiskFormat } from '../common/types';
import { libvirtUriProblem, peerUri } from '../common/libvirt-uri';
import {
  LibvirtError,
  classifyVirshError,
  libvirtErrorFromCommand,
  libvirtErrorFromStderr,
  redactLibvirtError,
  redactUri,
  virshErrorDetail,
} from './errors';
import { DEFAULT_TIMEOUT_MS, run } from './exec';
import {
  type BatchStep,
  batchMarker,
  batchNonce,
  batchSteps,
  buildBatchScript,
  buildSessionScript,
  sessionBroken,
  sessionSafe,
} from './virsh-batch';
import { VirshSessionPool } from './virsh-session';
import { emptyJobInfo } from './port';
import type {
  CopyVolumeOptions,
  DiskCopyJob,
  DomainDisk,
  DomainInfo,
  DomainNeeds,
  HostCapacity,
  Hypervisor,
  JobInfo,
  MigrateOptions,
  NetworkInfo,
  PoolInfo,
  StorageInfo,
  VolumeInfo,
  VolumeRef,
} from './port';
import {
  TextShapeError,
  isUuid,
  parseBlkInfoCapacity,
  parseBlockJobRaw,
  parseDomStatsBlock,
  parseDomState,
  parseFreecellTotal,
  parseHostname,
  parseIfaceList,
  parseDomStatsFields,
  parseJobInfoRaw,
  parseNameList,
  parseNodeInfo,
  parseQmpReply,
  parsePoolInfo,
  parseUuidList,
  parseVolListPaths,
} from './text';
import { XmlShapeError, parseDiskAliases, parseDomainNeeds, parseDomainXml, parsePoolXml, parseVolumeXml } from './xml';
import { streamVolume } from './volume-stream';

/** Default client bound for `migrate`: long enough for any copy; the workflow's own timer is the real bound. */
export const DEFAULT_MIGRATE_CLIENT_TIMEOUT_MS = 6 * 60 * 60 * 1000;

export interface VirshCallInfo {
  uri: string;
  /** virsh command names in this invocation (one, or several for a batch). */
  commands: string[];
  ms: number;
  ok: boolean;
}

export interface VirshHypervisorOptions {
  /** Per virsh invocation (a batch counts as one), ms. Default 30 s. */
  timeoutMs?: number;
  /** virsh binary. Default `virsh` (from PATH). */
  virshPath?: string;
  /** Called after every virsh call (one-shot process or session batch) ends: for metrics and latency measurements. */
  onCall?: (info: VirshCallInfo) => void;
  /**
   * Persistent virsh sessions per host (virsh-session.ts) instead of one virsh process per call: saves the
   * process start and the connection setup of every call. Default on; FERRY_VIRSH_SESSIONS=0 turns it off.
   * `migrate` always runs as its own process (it is long and must be abortable by killing the client).
   */
  sessions?: boolean;
}

const NAME_RE = /^[^/\s\x00-\x1f\x7f](?:[^/\x00-\x1f\x7f]*[^/\s\x00-\x1f\x7f])?$/;

function checkName(kind: string, name: string): void {
  if (!NAME_RE.test(name)) throw new LibvirtError('invalid', `invalid ${kind} name ${JSON.stringify(name)}`);
}

function checkUuid(uuid: string): void {
  if (!isUuid(uuid)) throw new LibvirtError('invalid', `invalid domain UUID ${JSON.stringify(uuid)}`);
}

/** Absolute, no control characters, and no `.`/`..` segment (a path may never climb out of where it points). */
function checkPath(path: string): void {
  if (!path.startsWith('/') || /[\x00-\x1f\x7f]/.test(path) || path.split('/').some((seg) => seg === '.' || seg === '..')) {
    throw new LibvirtError('invalid', `invalid absolute path ${JSON.stringify(path)}: it must be absolute, without "." or ".." segments`);
  }
}

/**
 * Only the URIs of common/libvirt-uri.ts (qemu over tcp/tls/ssh/unix to /system, harmless parameters): no
 * parameter that makes libvirt run a program (`command`, `netcat`). A password is tolerated here (the
 * inventory and the CLI refuse it) but never shown: every message carries the URI through redactUri().
 */
function checkUri(uri: string): void {
  const problem = libvirtUriProblem(uri.replace(/^([a-z0-9+.-]+:\/\/[^/?#@:]*):[^/?#@]*@/i, '$1@'));
  if (problem !== null) {
    throw new LibvirtError('invalid', `invalid libvirt URI ${JSON.stringify(redactUri(uri))}: ${problem}`);
  }
}

/** `/a/b/` and `/a//b` compare equal to `/a/b`. */
export function samePath(a: string, b: string): boolean {
  const norm = (p: string): string => {
    const n = posix.normalize(p);
    return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
  };
  return norm(a) === norm(b);
}

function checkPositiveInt(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n <= 0) throw new LibvirtError('invalid', `${what} must be a positive whole number, got ${n}`);
}

function noJob(): JobInfo {
  return emptyJobInfo('none');
}

/**
 * Not dominfo: it asks for the node's security model, which makes a fresh daemon build its host capabilities
 * (~3.6 s in the lab); the persistent flag comes from this list instead, once per batch.
 */
const PERSISTENT_LIST: string[] = ['list', '--all', '--persistent', '--uuid'];

const DOMAIN_COMMANDS = (uuid: string): string[][] => [
  ['domstate', `--domain=${uuid}`, '--reason'],
  ['dumpxml', `--domain=${uuid}`],
  // not domblkinfo: it waits for the domain's job lock, which an incoming migration holds for its whole run
  ['domstats', '--block', '--nowait', uuid],
];

interface PartialDomain {
  info: DomainInfo;
  /** Disks whose capacity domstats did not give (an incoming migration holds the domain's job). */
  missing: DomainDisk[];
}

/** Host part of a libvirt URI (`qemu+tcp://10.0.0.2:16509/system` → `10.0.0.2`), '' when none. */
export function uriHost(uri: string): string {
  const m = /^[a-z0-9+.-]+:\/\/(?:[^@/]*@)?(\[[^\]]*\]|[^:/?#]*)/i.exec(uri);
  return (m?.[1] ?? '').replace(/^\[|\]$/g, '');
}

/**
 * With --p2p the SOURCE daemon connects to the target: when it cannot, virsh prints the target's address
 * ("unable to connect to server at '10.0.0.3:16509': Connection refused") although the source answered.
 * Say which side was unreachable.
 */
function migrateError(raw: unknown, sourceUri: string, targetUri: string, what: string): unknown {
  if (!(raw instanceof LibvirtError)) return raw;
  // libvirt quotes the destination URI in its errors ("Failed to connect to remote libvirt URI …")
  const e = redactLibvirtError(raw, [sourceUri, targetUri]);
  if (e.kind !== 'connection') return e;
  const server = /unable to connect to server at '(\[[^\]]*\]|[^':]*)(?::\d+)?'/.exec(e.stderr)?.[1]?.replace(/^\[|\]$/g, '');
  const fromSource = /Failed to connect to remote libvirt URI/i.test(e.stderr);
  const targetSide =
    fromSource || (server !== undefined && server === uriHost(targetUri) && server !== uriHost(sourceUri));
  if (!targetSide) return e;
  const cause = /Connection refused/i.test(e.stderr) ? 'connection refused' : 'connection failed';
  return new LibvirtError(
    'connection',
    `${what}: the source ${redactUri(sourceUri)} cannot reach the target's libvirtd (${cause}); with --p2p the ` +
      `source daemon connects to ${redactUri(peerUri(targetUri))} itself, with the source host's own credentials: is the ` +
      `target's libvirtd running and listening (${/^qemu\+tls:/i.test(targetUri) ? 'TLS, port 16514' : 'TCP'}), reachable from the source? (${virshErrorDetail(e.stderr)})`,
    e.args,
    e.stderr,
  );
}

export class VirshHypervisor implements Hypervisor {
  private readonly timeoutMs: number;
  private readonly virsh: string;
  private readonly onCall: ((info: VirshCallInfo) => void) | undefined;
  /** `${uri}\n${storageRoot}` → pool name found for it last time (saves a round trip per hostCapacity). */
  private readonly rootPools = new Map<string, string>();
  private readonly sessions: VirshSessionPool | null;

  constructor(opts: VirshHypervisorOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.virsh = opts.virshPath ?? 'virsh';
    this.onCall = opts.onCall;
    const sessions = opts.sessions ?? process.env['FERRY_VIRSH_SESSIONS'] !== '0';
    this.sessions = sessions ? new VirshSessionPool({ virsh: this.virsh }) : null;
  }

  /** Ends the persistent virsh sessions (they also end on their own when idle, or when this process exits). */
  close(): void {
    this.sessions?.close();
  }

  /** Persistent virsh sessions alive now (0 with sessions off). */
  get sessionCount(): number {
    return this.sessions?.size ?? 0;
  }

  // ---------------------------------------------------------------------------------------------- plumbing

  /** One virsh command (argv mode). Throws LibvirtError. */
  private async exec(
    uri: string,
    args: readonly string[],
    what: string,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<string> {
    checkUri(uri);
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    if (this.sessions && opts.signal === undefined && opts.timeoutMs === undefined && sessionSafe([args])) {
      const [step] = await this.batch(uri, [args], what);
      if (!step) throw new LibvirtError('unknown', `${what}: virsh returned no result`);
      if (!step.ok) throw libvirtErrorFromStderr(step.stderr, false, { uri, what, timeoutMs }, ['-c', uri, ...args]);
      return step.stdout;
    }
    const started = performance.now();
    let ok = false;
    try {
      const { stdout } = await run(this.virsh, ['-c', uri, ...args], { timeoutMs, signal: opts.signal });
      ok = true;
      return stdout;
    } catch (e) {
      throw libvirtErrorFromCommand(e, { uri, what, timeoutMs });
    } finally {
      this.onCall?.({ uri, commands: [args[0] ?? ''], ms: performance.now() - started, ok });
    }
  }

  /** Several commands over one connection; per-command results. Throws LibvirtError only for the whole call. */
  private async batch(uri: string, commands: readonly (readonly string[])[], what: string): Promise<BatchStep[]> {
    checkUri(uri);
    if (commands.length === 0) return [];
    const nonce = batchNonce();
    const script = buildBatchScript(commands, nonce);
    const started = performance.now();
    let ok = false;
    try {
      const { stdout, stderr } =
        this.sessions && sessionSafe(commands)
          ? await this.sessions.run(uri, buildSessionScript(commands, nonce), batchMarker(nonce, commands.length - 1), this.timeoutMs, (err) =>
              sessionBroken(err),
            )
          : await run(this.virsh, ['-c', uri, script], { timeoutMs: this.timeoutMs });
      const steps = batchSteps(commands, stdout, stderr, nonce);
      if (!steps) {
        throw libvirtErrorFromStderr(stderr, false, { uri, what }, ['-c', uri, script]);
      }
      ok = true;
      return steps;
    } catch (e) {
      throw libvirtErrorFromCommand(e, { uri, what, timeoutMs: this.timeoutMs });
    } finally {
      this.onCall?.({ uri, commands: commands.map((c) => c[0] ?? ''), ms: performance.now() - started, ok });
    }
  }

  private stepError(uri: string, step: BatchStep, what: string): LibvirtError {
    return libvirtErrorFromStderr(step.stderr, false, { uri, what }, step.args);
  }

  /** The step's stdout; throws its LibvirtError when it failed. */
  private need(uri: string, step: BatchStep | undefined, what: string): string {
    if (!step) throw new LibvirtError('unknown', `${what}: virsh batch returned too few results`);
    if (!step.ok) throw this.stepError(uri, step, what);
    return step.stdout;
  }

  private kindOf(step: BatchStep): ReturnType<typeof classifyVirshError> {
    return classifyVirshError(step.stderr, false);
  }

  /** Parser failures become LibvirtError `unknown` (retryable: usually a truncated answer) with the context. */
  private parse<T>(uri: string, what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof XmlShapeError || e instanceof TextShapeError) {
        throw new LibvirtError('unknown', `${what} on ${redactUri(uri)}: unexpected virsh output: ${e.message}`);
      }
      throw e;
    }
  }

  // ---------------------------------------------------------------------------------------------- host

  async hostCapacity(uri: string, storageRoot: string): Promise<HostCapacity> {
    checkPath(storageRoot);
    const what = `hostCapacity ${storageRoot}`;
    const key = `${uri}\n${storageRoot}`;
    const cached = this.rootPools.get(key);
    const cmds: string[][] = [
      ['nodeinfo'],
      ['hostname'],
      // not --all: that one builds the host capabilities first (~3.7 s on a fresh daemon in the lab)
      ['freecell'],
      ['pool-list', '--all', '--name'],
      ['pool-list', '--inactive', '--name'],
    ];
    if (cached) cmds.push(...this.rootPoolReadCommands(cached));
    const steps = await this.batch(uri, cmds, what);
    const [nodeinfo, hostname, freecell, all, inactive] = steps;
    const node = this.parse(uri, what, () => parseNodeInfo(this.need(uri, nodeinfo, what)));
    const host = this.parse(uri, what, () => parseHostname(this.need(uri, hostname, what)));
    const free = this.parse(uri, what, () => parseFreecellTotal(this.need(uri, freecell, what)));
    const pools = parseNameList(this.need(uri, all, what));
    const inactivePools = new Set(parseNameList(this.need(uri, inactive, what)));

    let storage: StorageInfo | null | undefined;
    if (cached) storage = this.rootPoolFromSteps(uri, steps.slice(5), storageRoot, what);
    if (storage === undefined) {
      this.rootPools.delete(key);
      storage = null;
      const candidates = pools.filter((p) => p !== cached);
      const xmls = await this.batch(uri, candidates.map((p) => ['pool-dumpxml', `--pool=${p}`]), what);
      const match = candidates.find((p, i) => {
        const step = xmls[i];
        if (!step?.ok) return false; // undefined meanwhile
        return samePath(this.parse(uri, what, () => parsePoolXml(step.stdout)).path, storageRoot);
      });
      if (match !== undefined) {
        this.rootPools.set(key, match);
        if (!inactivePools.has(match)) {
          const again = await this.batch(uri, this.rootPoolReadCommands(match), what);
          storage = this.rootPoolFromSteps(uri, again, storageRoot, what) ?? null;
        }
      }
    }
    return { hostname: host, memoryKiB: node.memoryKiB, cpus: node.cpus, freeMemoryKiB: free, storage };
  }

  private rootPoolReadCommands(pool: string): string[][] {
    // refresh so capacity/available are current (libvirt only re-measures on refresh / volume changes)
    return [
      ['pool-refresh', `--pool=${pool}`],
      ['pool-dumpxml', `--pool=${pool}`],
      ['pool-info', `--pool=${pool}`, '--bytes'],
    ];
  }

  /** StorageInfo, null when the pool is inactive, undefined when it is gone or no longer on `root`. */
  private rootPoolFromSteps(uri: string, steps: BatchStep[], root: string, what: string): StorageInfo | null | undefined {
    const [, xmlStep, infoStep] = steps;
    if (!xmlStep?.ok || !infoStep?.ok) {
      const failed = !xmlStep?.ok ? xmlStep : infoStep;
      if (failed && this.kindOf(failed) === 'not-found') return undefined;
      if (failed) throw this.stepError(uri, failed, what);
      return undefined;
    }
    const xml = this.parse(uri, what, () => parsePoolXml(xmlStep.stdout));
    if (!samePath(xml.path, root)) return undefined;
    const info = this.parse(uri, what, () => parsePoolInfo(infoStep.stdout));
    if (!info.active) return null;
    return {
      pool: xml.name,
      path: xml.path,
      capacityBytes: info.capacityBytes ?? xml.capacityBytes,
      availableBytes: info.availableBytes ?? xml.availableBytes,
    };
  }

  async ensureStorageRootPool(uri: string, pool: string, storageRoot: string): Promise<void> {
    await this.createStorageDirectory(uri, pool, storageRoot);
    await this.startPool(uri, pool);
  }

  // ---------------------------------------------------------------------------------------------- domains

  async getDomain(uri: string, uuid: string): Promise<DomainInfo | null> {
    checkUuid(uuid);
    const what = `getDomain ${uuid}`;
    const [persistentStep, ...steps] = await this.batch(uri, [PERSISTENT_LIST, ...DOMAIN_COMMANDS(uuid)], what);
    const persistent = new Set(this.parse(uri, what, () => parseUuidList(this.need(uri, persistentStep, what))));
    const partial = this.domainFromSteps(uri, steps, persistent, what);
    if (!partial) return null;
    await this.fillCapacities(uri, [partial], what);
    return partial.info;
  }

  async listDomains(uri: string): Promise<DomainInfo[]> {
    const what = 'listDomains';
    const out = await this.exec(uri, ['list', '--all', '--uuid'], what);
    const listed = this.parse(uri, what, () => parseUuidList(out));
    if (listed.length === 0) return [];
    const [persistentStep, ...steps] = await this.batch(
      uri,
      [PERSISTENT_LIST, ...listed.flatMap((u) => DOMAIN_COMMANDS(u))],
      what,
    );
    const persistent = new Set(this.parse(uri, what, () => parseUuidList(this.need(uri, persistentStep, what))));
    const n = DOMAIN_COMMANDS(listed[0] ?? '').length;
    const partials: PartialDomain[] = [];
    listed.forEach((u, i) => {
      const p = this.domainFromSteps(uri, steps.slice(i * n, i * n + n), persistent, `${what}: ${u}`);
      if (p) partials.push(p); // null: undefined between the list and the batch
    });
    await this.fillCapacities(uri, partials, what);
    return partials.map((p) => p.info);
  }

  /** null when the domain does not exist (any of its lookups said not-found). */
  private domainFromSteps(
    uri: string,
    steps: BatchStep[],
    persistent: ReadonlySet<string>,
    what: string,
  ): PartialDomain | null {
    const [stateStep, xmlStep, blkStep] = steps;
    for (const step of [stateStep, xmlStep]) {
      if (!step) throw new LibvirtError('unknown', `${what}: virsh batch returned too few results`);
      if (!step.ok) {
        if (this.kindOf(step) === 'not-found') return null;
        throw this.stepError(uri, step, what);
      }
    }
    const state = this.parse(uri, what, () => parseDomState(stateStep?.stdout ?? ''));
    const xml = this.parse(uri, what, () => parseDomainXml(xmlStep?.stdout ?? ''));
    if (blkStep && !blkStep.ok && this.isConnectionLevel(blkStep)) throw this.stepError(uri, blkStep, what);
    const sizes = blkStep?.ok ? this.parse(uri, what, () => parseDomStatsBlock(blkStep.stdout)) : new Map<string, number | null>();
    const disks: DomainDisk[] = [];
    const missing: DomainDisk[] = [];
    for (const d of xml.disks) {
      const size = sizes.get(d.target);
      const backingFile = xml.backingFiles[d.target];
      const disk: DomainDisk = { target: d.target, path: d.path, format: d.format, capacityBytes: size ?? 0, ...(backingFile ? { backingFile } : {}) };
      disks.push(disk);
      if (size === undefined || size === null) missing.push(disk);
    }
    return {
      info: {
        uuid: xml.uuid,
        name: xml.name,
        state: state.state,
        stateReason: state.reason,
        persistent: persistent.has(xml.uuid),
        memoryKiB: xml.memoryKiB,
        vcpus: xml.vcpus,
        disks,
        files: xml.files,
      },
      missing,
    };
  }

  /**
   * One more round trip, only when domstats left capacities out: `vol-info --bytes` by path asks the storage
   * driver (no domain job), which knows the file when it is in an active pool. Unknown stays 0.
   */
  private async fillCapacities(uri: string, partials: PartialDomain[], what: string): Promise<void> {
    const jobs = partials.flatMap((p) => p.missing.map((disk) => ({ uuid: p.info.uuid, disk })));
    if (jobs.length === 0) return;
    const steps = await this.batch(
      uri,
      jobs.map((j) => ['vol-info', '--bytes', `--vol=${j.disk.path}`]),
      what,
    );
    jobs.forEach((j, i) => {
      const step = steps[i];
      if (!step?.ok) {
        if (step && this.isConnectionLevel(step)) throw this.stepError(uri, step, what);
        return; // e.g. the file is missing on an inactive domain: capacity unknown (0)
      }
      j.disk.capacityBytes = this.parse(uri, what, () => parseBlkInfoCapacity(step.stdout));
    });
  }

  private isConnectionLevel(step: BatchStep): boolean {
    const k = this.kindOf(step);
    return k === 'connection' || k === 'timeout';
  }

  // ---------------------------------------------------------------------------------------------- storage

  async createStorageDirectory(uri: string, pool: string, path: string): Promise<void> {
    const what = `createStorageDirectory ${pool} ${path}`;
    if (await this.definePoolOn(uri, pool, path, what)) return; // an active dir pool has its directory
    await this.exec(uri, ['pool-build', `--pool=${pool}`], what);
  }

  /**
   * `pool-define-as` a dir pool on `path`, idempotently: our pool already there on the same path is fine, our
   * name on another path or another owner's pool on that directory is refused. True when it is active already.
   */
  private async definePoolOn(uri: string, pool: string, path: string, what: string): Promise<boolean> {
    checkName('pool', pool);
    checkPath(path);
    try {
      await this.exec(uri, ['pool-define-as', `--name=${pool}`, '--type=dir', `--target=${path}`], what);
      return false;
    } catch (e) {
      if (!(e instanceof LibvirtError) || e.kind !== 'exists') throw e;
      const other = /Storage source conflict with pool: '([^']*)'/.exec(e.stderr)?.[1];
      if (other !== undefined) {
        throw new LibvirtError(
          'exists',
          `${what} on ${redactUri(uri)}: directory ${path} already belongs to libvirt pool '${other}'; ` +
            'refusing to adopt or touch another owner\'s pool',
          e.args,
          e.stderr,
        );
      }
      // Our pool name is already defined (a retry): it must be on the same path.
      const steps = await this.batch(uri, [['pool-dumpxml', `--pool=${pool}`], ['pool-info', `--pool=${pool}`]], what);
      const xml = this.parse(uri, what, () => parsePoolXml(this.need(uri, steps[0], what)));
      const info = this.parse(uri, what, () => parsePoolInfo(this.need(uri, steps[1], what)));
      if (!samePath(xml.path, path)) {
        throw new LibvirtError(
          'exists',
          `${what} on ${redactUri(uri)}: pool '${pool}' is already defined on ${xml.path}, not ${path}`,
          e.args,
          e.stderr,
        );
      }
      return info.active;
    }
  }

  async forgetPool(uri: string, pool: string): Promise<void> {
    checkName('pool', pool);
    const what = `forgetPool ${pool}`;
    await this.stopPool(uri, pool);
    await this.undefinePool(uri, pool, what);
  }

  async startPool(uri: string, pool: string, opts: { autostart?: boolean } = {}): Promise<void> {
    checkName('pool', pool);
    const what = `startPool ${pool}`;
    const autostart = opts.autostart !== false;
    const steps = await this.batch(
      uri,
      [['pool-start', `--pool=${pool}`], ...(autostart ? [['pool-autostart', `--pool=${pool}`]] : []), ['pool-refresh', `--pool=${pool}`]],
      what,
    );
    const [start] = steps;
    if (start && !start.ok && !/is already active/.test(start.stderr)) throw this.stepError(uri, start, what);
    for (const step of steps.slice(1)) this.need(uri, step, what);
  }

  async definePool(uri: string, pool: string, path: string): Promise<void> {
    await this.definePoolOn(uri, pool, path, `definePool ${pool} ${path}`);
  }

  async createTransientPool(uri: string, pool: string, path: string): Promise<void> {
    checkName('pool', pool);
    checkPath(path);
    const what = `createTransientPool ${pool} ${path}`;
    try {
      await this.exec(uri, ['pool-create-as', `--name=${pool}`, '--type=dir', `--target=${path}`], what);
    } catch (e) {
      if (e instanceof LibvirtError && /No such file or directory/.test(e.stderr)) {
        throw new LibvirtError('not-found', `${what} on ${redactUri(uri)}: no directory ${path} there`, e.args, e.stderr);
      }
      throw e;
    }
  }

  async recreateVolume(
    uri: string,
    pool: string,
    name: string,
    capacityBytes: number,
    format: DiskFormat,
    opts: { replace?: boolean } = {},
  ): Promise<void> {
    checkName('pool', pool);
    checkName('volume', name);
    if (!Number.isSafeInteger(capacityBytes) || capacityBytes <= 0) {
      throw new LibvirtError('invalid', `recreateVolume ${pool}/${name}: capacity must be a positive integer, got ${capacityBytes}`);
    }
    if (format !== 'qcow2' && format !== 'raw') {
      throw new LibvirtError('invalid', `recreateVolume ${pool}/${name}: unsupported format ${String(format)}`);
    }
    const what = `recreateVolume ${pool}/${name}`;
    const create = ['vol-create-as', `--pool=${pool}`, `--name=${name}`, `--capacity=${capacityBytes}`, `--format=${format}`];
    // refresh first: a file on disk must be known to libvirt, to be deleted (replace) or to make the create fail
    const steps = await this.batch(
      uri,
      [['pool-refresh', `--pool=${pool}`], ...(opts.replace ? [['vol-delete', `--pool=${pool}`, `--vol=${name}`]] : []), create],
      what,
    );
    const [refresh, del, made] = opts.replace ? steps : [steps[0], undefined, steps[1]];
    this.need(uri, refresh, what);
    if (del && !del.ok && this.kindOf(del) !== 'not-found') throw this.stepError(uri, del, what);
    this.need(uri, made, what);
  }

  async deleteVolume(uri: string, pool: string, name: string): Promise<boolean> {
    checkName('pool', pool);
    checkName('volume', name);
    const what = `deleteVolume ${pool}/${name}`;
    const [refresh, del] = await this.batch(
      uri,
      [['pool-refresh', `--pool=${pool}`], ['vol-delete', `--pool=${pool}`, `--vol=${name}`]],
      what,
    );
    if (refresh && !refresh.ok) {
      if (this.kindOf(refresh) === 'not-found') return false;
      throw this.stepError(uri, refresh, what);
    }
    if (del && !del.ok) {
      if (this.kindOf(del) === 'not-found') return false;
      throw this.stepError(uri, del, what);
    }
    return true;
  }

  async stopPool(uri: string, pool: string): Promise<void> {
    checkName('pool', pool);
    const what = `stopPool ${pool}`;
    try {
      await this.exec(uri, ['pool-destroy', `--pool=${pool}`], what);
    } catch (e) {
      if (e instanceof LibvirtError && (e.kind === 'not-found' || /is not active/.test(e.stderr))) return;
      throw e;
    }
  }

  async removeStorageDirectory(uri: string, pool: string): Promise<void> {
    checkName('pool', pool);
    const what = `removeStorageDirectory ${pool}`;
    // The pool must be active to see what it holds.
    const [start, refresh, list] = await this.batch(
      uri,
      [['pool-start', `--pool=${pool}`], ['pool-refresh', `--pool=${pool}`], ['vol-list', `--pool=${pool}`]],
      what,
    );
    if (start && !start.ok) {
      if (this.kindOf(start) === 'not-found') return; // nothing to do
      if (/cannot open directory .*No such file or directory/.test(start.stderr)) {
        await this.undefinePool(uri, pool, what); // the directory is gone already
        return;
      }
      if (!/is already active/.test(start.stderr)) throw this.stepError(uri, start, what);
    }
    this.need(uri, refresh, what);
    const held = this.parse(uri, what, () => parseVolListPaths(this.need(uri, list, what)));
    if (held.length > 0) {
      throw new LibvirtError('invalid', `${what} on ${redactUri(uri)}: the directory still holds ${held.join(', ')}; kept with its pool`);
    }
    const [destroy, del] = await this.batch(uri, [['pool-destroy', `--pool=${pool}`], ['pool-delete', `--pool=${pool}`]], what);
    if (destroy && !destroy.ok && !/is not active/.test(destroy.stderr)) throw this.stepError(uri, destroy, what);
    // pool-delete of a dir pool is rmdir: it fails on anything libvirt did not list (hidden files) and keeps it.
    if (del && !del.ok && !/No such file or directory/.test(del.stderr)) throw this.stepError(uri, del, what);
    // Only now: undefining while the directory still exists would orphan it (libvirt is our only channel).
    await this.undefinePool(uri, pool, what);
  }

  private async undefinePool(uri: string, pool: string, what: string): Promise<void> {
    try {
      await this.exec(uri, ['pool-undefine', `--pool=${pool}`], what);
    } catch (e) {
      if (e instanceof LibvirtError && e.kind === 'not-found') return;
      throw e;
    }
  }

  async listPools(uri: string): Promise<PoolInfo[]> {
    const what = 'listPools';
    const [all, inactive] = await this.batch(
      uri,
      [
        ['pool-list', '--all', '--name'],
        ['pool-list', '--inactive', '--name'],
      ],
      what,
    );
    const names = parseNameList(this.need(uri, all, what));
    const inactiveNames = new Set(parseNameList(this.need(uri, inactive, what)));
    const xmls = await this.batch(uri, names.map((p) => ['pool-dumpxml', `--pool=${p}`]), what);
    const pools: PoolInfo[] = [];
    names.forEach((name, i) => {
      const step = xmls[i];
      if (!step) return;
      if (!step.ok) {
        if (this.kindOf(step) === 'not-found') return; // undefined meanwhile
        throw this.stepError(uri, step, what);
      }
      const xml = this.parse(uri, what, () => parsePoolXml(step.stdout));
      pools.push({ name, path: xml.path, active: !inactiveNames.has(name) });
    });
    return pools;
  }

  async listVolumes(uri: string, pool: string): Promise<VolumeInfo[]> {
    checkName('pool', pool);
    const what = `listVolumes ${pool}`;
    const [refresh, list] = await this.batch(
      uri,
      [['pool-refresh', `--pool=${pool}`], ['vol-list', `--pool=${pool}`]],
      what,
    );
    this.need(uri, refresh, what);
    const paths = this.parse(uri, what, () => parseVolListPaths(this.need(uri, list, what)));
    const xmls = await this.batch(uri, paths.map((p) => ['vol-dumpxml', `--pool=${pool}`, `--vol=${p}`]), what);
    const vols: VolumeInfo[] = [];
    paths.forEach((_, i) => {
      const step = xmls[i];
      if (!step) return;
      if (!step.ok) {
        if (this.kindOf(step) === 'not-found') return; // deleted meanwhile
        throw this.stepError(uri, step, what);
      }
      const v = this.parse(uri, what, () => parseVolumeXml(step.stdout));
      vols.push({ name: v.name, path: v.path, capacityBytes: v.capacityBytes });
    });
    return vols;
  }

  async poolOfVolume(uri: string, path: string): Promise<string | null> {
    checkPath(path);
    const what = `poolOfVolume ${path}`;
    try {
      const out = await this.exec(uri, ['vol-pool', `--vol=${path}`], what);
      const name = out.trim();
      return name === '' ? null : name;
    } catch (e) {
      if (e instanceof LibvirtError && e.kind === 'not-found') return null;
      throw e;
    }
  }

  // ---------------------------------------------------------------------------------------------- migration

  async migrate(sourceUri: string, uuid: string, targetUri: string, opts: MigrateOptions): Promise<void> {
    checkUuid(uuid);
    checkUri(targetUri);
    const args = ['migrate', '--live', '--p2p', '--persistent', '--undefinesource'];
    if (opts.copyDisks === undefined) args.push('--copy-storage-all');
    else if (opts.copyDisks.length > 0) {
      for (const dev of opts.copyDisks) checkName('disk', dev);
      args.push('--copy-storage-all', `--migrate-disks=${opts.copyDisks.join(',')}`);
    }
    if (opts.sharedStorageProven) args.push('--unsafe');
    if (opts.bandwidthMiBps !== undefined) {
      if (!Number.isSafeInteger(opts.bandwidthMiBps) || opts.bandwidthMiBps <= 0) {
        throw new LibvirtError('invalid', `migrate ${uuid}: bandwidth must be a positive integer MiB/s, got ${opts.bandwidthMiBps}`);
      }
      args.push(`--bandwidth=${opts.bandwidthMiBps}`);
    }
    if (opts.autoConverge) args.push('--auto-converge');
    if (opts.postCopy) args.push('--postcopy');
    if (opts.syncDiskWrites && args.includes('--copy-storage-all')) args.push('--copy-storage-synchronous-writes');
    if (opts.encryptStream) args.push('--tls');
    args.push(`--domain=${uuid}`, `--desturi=${peerUri(targetUri)}`);
    const what = `migrate ${uuid} to ${redactUri(targetUri)}`;
    try {
      await this.exec(sourceUri, args, what, {
        timeoutMs: opts.clientTimeoutMs ?? DEFAULT_MIGRATE_CLIENT_TIMEOUT_MS,
        signal: opts.signal,
      });
    } catch (e) {
      throw migrateError(e, sourceUri, targetUri, what);
    }
  }

  async jobInfo(uri: string, uuid: string): Promise<JobInfo> {
    checkUuid(uuid);
    const what = `jobInfo ${uuid}`;
    try {
      const out = await this.exec(uri, ['domjobinfo', `--domain=${uuid}`, '--rawstats'], what);
      return this.parse(uri, what, () => parseJobInfoRaw(out));
    } catch (e) {
      if (e instanceof LibvirtError && e.kind === 'invalid' && /domain is not running/.test(e.stderr)) return noJob();
      throw e;
    }
  }

  async completedJobInfo(uri: string, uuid: string): Promise<JobInfo | null> {
    checkUuid(uuid);
    const what = `completedJobInfo ${uuid}`;
    const out = await this.exec(uri, ['domjobinfo', `--domain=${uuid}`, '--completed', '--keep-completed', '--rawstats'], what);
    const info = this.parse(uri, what, () => parseJobInfoRaw(out));
    return info.type === 'none' ? null : info;
  }

  async setMaxDowntime(uri: string, uuid: string, ms: number): Promise<void> {
    checkUuid(uuid);
    checkPositiveInt('max downtime (ms)', ms);
    await this.exec(uri, ['migrate-setmaxdowntime', `--domain=${uuid}`, `--downtime=${ms}`], `setMaxDowntime ${uuid}`);
  }

  async getMaxDowntime(uri: string, uuid: string): Promise<number> {
    checkUuid(uuid);
    const what = `getMaxDowntime ${uuid}`;
    const out = (await this.exec(uri, ['migrate-getmaxdowntime', `--domain=${uuid}`], what)).trim();
    if (!/^\d+$/.test(out)) throw new LibvirtError('unknown', `${what}: unexpected answer "${out}"`);
    return Number(out);
  }

  async setMigrationBandwidth(uri: string, uuid: string, mibps: number): Promise<void> {
    checkUuid(uuid);
    checkPositiveInt('bandwidth (MiB/s)', mibps);
    await this.exec(uri, ['migrate-setspeed', `--domain=${uuid}`, `--bandwidth=${mibps}`], `setMigrationBandwidth ${uuid}`);
  }

  async diskCopyJobs(uri: string, uuid: string, devs: readonly string[]): Promise<DiskCopyJob[]> {
    checkUuid(uuid);
    for (const dev of devs) checkName('disk', dev);
    if (devs.length === 0) return [];
    const what = `diskCopyJobs ${uuid}`;
    const steps = await this.batch(uri, devs.map((dev) => ['blockjob', `--domain=${uuid}`, `--path=${dev}`, '--info', '--raw']), what);
    const jobs: DiskCopyJob[] = [];
    devs.forEach((dev, i) => {
      const step = steps[i];
      // The domain is gone (the migration just ended) or has no such device: no copy of that disk runs.
      if (step && !step.ok && (this.kindOf(step) === 'not-found' || /domain is not running|not found in domain/.test(step.stderr))) return;
      const job = this.parse(uri, what, () => parseBlockJobRaw(dev, this.need(uri, step, what)));
      if (job !== null) jobs.push(job);
    });
    return jobs;
  }

  async setDiskCopyBandwidth(uri: string, uuid: string, mibps: number): Promise<DiskCopyJob[]> {
    checkUuid(uuid);
    checkPositiveInt('bandwidth (MiB/s)', mibps);
    const what = `setDiskCopyBandwidth ${uuid}`;
    const [xmlStep] = await this.batch(uri, [['dumpxml', `--domain=${uuid}`]], what);
    const aliases = this.parse(uri, what, () => parseDiskAliases(this.need(uri, xmlStep, what)));
    const running = await this.diskCopyJobs(uri, uuid, Object.keys(aliases));
    if (running.length === 0) return [];
    const speed = { speed: mibps * 2 ** 20 };
    const commands = running.map((j) => [
      'qemu-monitor-command',
      `--domain=${uuid}`,
      `--cmd=${JSON.stringify({ execute: 'block-job-set-speed', arguments: { device: `drive-${aliases[j.target]}`, ...speed } })}`,
    ]);
    const steps = await this.batch(uri, commands, what);
    running.forEach((j, i) => {
      const reply = this.parse(uri, what, () => parseQmpReply(this.need(uri, steps[i], what)));
      // DeviceNotActive: that copy ended between the listing and the change (the switch-over): nothing to slow down.
      if (!reply.ok && reply.errorClass !== 'DeviceNotActive') {
        throw new LibvirtError('invalid', `${what}: QEMU refused the new speed of the copy of ${j.target} (drive-${aliases[j.target]}): ${reply.errorClass}: ${reply.desc}`);
      }
    });
    return this.diskCopyJobs(uri, uuid, running.map((j) => j.target));
  }

  async startPostCopy(uri: string, uuid: string): Promise<void> {
    checkUuid(uuid);
    await this.exec(uri, ['migrate-postcopy', `--domain=${uuid}`], `startPostCopy ${uuid}`);
  }

  // ---------------------------------------------------------------------------------------------- pre-flight facts

  async domainNeeds(uri: string, uuid: string): Promise<DomainNeeds> {
    checkUuid(uuid);
    const what = `domainNeeds ${uuid}`;
    const xml = await this.exec(uri, ['dumpxml', `--domain=${uuid}`, '--inactive', '--migratable'], what);
    return { ...this.parse(uri, what, () => parseDomainNeeds(xml)), xml };
  }

  async hostInterfaces(uri: string): Promise<string[]> {
    const what = 'hostInterfaces';
    const out = await this.exec(uri, ['iface-list', '--all'], what);
    return this.parse(uri, what, () => parseIfaceList(out));
  }

  async listNetworks(uri: string): Promise<NetworkInfo[]> {
    const what = 'listNetworks';
    const [all, active] = await this.batch(uri, [['net-list', '--all', '--name'], ['net-list', '--name']], what);
    const on = new Set(parseNameList(this.need(uri, active, what)));
    return parseNameList(this.need(uri, all, what)).map((name) => ({ name, active: on.has(name) }));
  }

  async cpuIncompatibility(uri: string, needs: DomainNeeds): Promise<string | null> {
    const what = 'cpuIncompatibility';
    const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'ferry-cpu-'));
    try {
      const file = path.join(dir, 'domain.xml');
      await fs.promises.writeFile(file, needs.xml, { mode: 0o600 });
      const args = ['hypervisor-cpu-compare', '--error', `--virttype=${needs.virtType}`];
      if (needs.arch) args.push(`--arch=${needs.arch}`);
      if (needs.machine) args.push(`--machine=${needs.machine}`);
      await this.exec(uri, [...args, file], what, { timeoutMs: this.timeoutMs });
      return null;
    } catch (e) {
      if (e instanceof LibvirtError && /incompatible/i.test(e.stderr)) return virshErrorDetail(e.stderr);
      throw e;
    } finally {
      await fs.promises.rm(dir, { recursive: true, force: true });
    }
  }

  async machineUnsupported(uri: string, needs: DomainNeeds): Promise<string | null> {
    if (needs.machine === null) return null;
    const args = ['domcapabilities', `--virttype=${needs.virtType}`, `--machine=${needs.machine}`];
    if (needs.arch) args.push(`--arch=${needs.arch}`);
    try {
      await this.exec(uri, args, `machineUnsupported ${needs.machine}`);
      return null;
    } catch (e) {
      if (e instanceof LibvirtError && /not supported|unsupported/i.test(e.stderr)) return virshErrorDetail(e.stderr);
      throw e;
    }
  }

  async measureDirtyRate(uri: string, uuid: string, seconds: number): Promise<number | null> {
    checkUuid(uuid);
    checkPositiveInt('dirty-rate period (s)', seconds);
    const what = `measureDirtyRate ${uuid}`;
    try {
      await this.exec(uri, ['domdirtyrate-calc', `--domain=${uuid}`, `--seconds=${seconds}`], what);
    } catch (e) {
      if (e instanceof LibvirtError && e.kind === 'invalid') return null; // not running, or no support
      throw e;
    }
    const until = Date.now() + seconds * 1000 + 10_000;
    for (;;) {
      await new Promise((r) => setTimeout(r, 250));
      const stats = parseDomStatsFields(await this.exec(uri, ['domstats', '--dirtyrate', uuid], what));
      // calc_status: 0 unstarted, 1 measuring, 2 measured
      if (stats['dirtyrate.calc_status'] === '2') {
        const rate = Number(stats['dirtyrate.megabytes_per_second']);
        return Number.isFinite(rate) ? rate : null;
      }
      if (Date.now() > until) return null;
    }
  }

  // ---------------------------------------------------------------------------------------------- cold migration

  async copyVolume(from: VolumeRef, to: VolumeRef, opts: CopyVolumeOptions = {}): Promise<number> {
    checkUri(from.uri);
    checkUri(to.uri);
    for (const v of [from, to]) {
      checkName('pool', v.pool);
      checkName('volume', v.name);
    }
    const what = `copyVolume ${from.pool}/${from.name} to ${redactUri(to.uri)} ${to.pool}/${to.name}`;
    try {
      return await streamVolume(
        this.virsh,
        ['-c', from.uri, 'vol-download', `--pool=${from.pool}`, `--vol=${from.name}`],
        ['-c', to.uri, 'vol-upload', `--pool=${to.pool}`, `--vol=${to.name}`],
        opts,
      );
    } catch (e) {
      throw e instanceof LibvirtError ? redactLibvirtError(e, [from.uri, to.uri]) : libvirtErrorFromCommand(e, { uri: from.uri, what, timeoutMs: opts.timeoutMs ?? 0 });
    }
  }

  async migrateOffline(sourceUri: string, uuid: string, targetUri: string): Promise<void> {
    checkUuid(uuid);
    checkUri(targetUri);
    const what = `migrateOffline ${uuid} to ${redactUri(targetUri)}`;
    try {
      await this.exec(sourceUri, ['migrate', '--offline', '--persistent', '--undefinesource', '--p2p', `--domain=${uuid}`, `--desturi=${peerUri(targetUri)}`], what);
    } catch (e) {
      throw migrateError(e, sourceUri, targetUri, what);
    }
  }

  async undefineDomain(uri: string, uuid: string): Promise<boolean> {
    checkUuid(uuid);
    const what = `undefineDomain ${uuid}`;
    const dom = await this.getDomain(uri, uuid);
    if (dom === null || !dom.persistent) return false;
    if (dom.state !== 'shutoff') throw new LibvirtError('invalid', `${what}: the domain is ${dom.state}; only a shut-off domain is undefined`);
    await this.exec(uri, ['undefine', `--domain=${uuid}`, '--keep-nvram'], what); // never a file: NVRAM stays
    return true;
  }

  async abortJob(uri: string, uuid: string): Promise<boolean> {
    checkUuid(uuid);
    const what = `abortJob ${uuid}`;
    try {
      await this.exec(uri, ['domjobabort', `--domain=${uuid}`], what);
      return true;
    } catch (e) {
      if (e instanceof LibvirtError && /no job is active|domain is not running/.test(e.stderr)) return false;
      throw e;
    }
  }
}
