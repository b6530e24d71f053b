/**
 * `ferry cluster up|down|status`: Ferry's production topology on one machine, in the background, idempotently.
 *
 *   root namespace   bridge <prefix>cbr0 = <subnet>.1/24; IPv4 forwarding on, so the worker machines reach the
 *                    lab's hosts (whose default route is their own bridge's gateway) through this namespace
 *     PostgreSQL     Debian cluster `ferry` on 127.0.0.1 + <subnet>.1 (cluster/postgres.ts)
 *     Temporal       the server built from go.temporal.io/server (temporal/versions.env) with the config template
 *                    embedded in it, driven by temporal/server.env — what docker-compose.yml runs — bound on
 *                    <subnet>.1:<port>; its schema from temporal/setup-schema.sh; namespace `default` and
 *                    Ferry's search attributes registered
 *     Temporal UI    the UI server built from github.com/temporalio/ui-server (when scripts/install-deps built it)
 *   netns <prefix>-cwK  worker machine K: eth0 = <subnet>.(10+K), default route via <subnet>.1, one `ferry worker`
 *                    (identity ferry-worker@<prefix>-cwK) reaching Temporal, PostgreSQL and libvirt over the network
 *
 * While the server runs, `<home>/cluster/endpoint.json` points every other command at it (client/cluster-target.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { clusterEndpointFile, writeClusterEndpoint } from '../client/cluster-target';
import { ferryHome, taskQueue } from '../client/config';
import { waitForTemporal } from '../client/wait';
import { livePid, startDetached, stopPid } from '../hypervisor/processes';
import { redactUrl } from '../inventory/pg-db';
import { run } from '../hypervisor/exec';
import { ensureBridge, ensureNsEth0, ensureVeth } from '../lab/network';
import { ipLinks, isNsfsMount, nsInodeOfFile, nsInodeOfPid, tryRun } from '../lab/sys';
import { ensureSearchAttributes } from '../worker';
import {
  clusterNames,
  clusterPaths,
  readClusterState,
  readEnvFile,
  REPO_ROOT,
  temporalBinaries,
  temporalVersions,
  workerNames,
  writeClusterState,
  type ClusterNames,
  type ClusterState,
  type TemporalBinaries,
  type WorkerNames,
} from './config';
import { clusterPassword, dropPostgres, ensurePostgres, inventoryUrl, pgClusterName, pgVersion, setupTemporalSchema, stopPostgres } from './postgres';

export { clusterNames, temporalVersions, workerNames } from './config';

export interface ClusterUpOptions {
  workers?: number;
  subnet?: string;
  prefix?: string;
  /** PostgreSQL's port when the cluster is created (default 5433, FERRY_CLUSTER_PG_PORT). */
  pgPort?: number;
  log?: (line: string) => void;
  home?: string;
}

export interface ClusterStatus {
  up: boolean;
  temporal: { address: string; pid: number | null; version: string; ui: { url: string; pid: number | null } | null };
  postgres: { url: string; cluster: string; port: number };
  workers: { index: number; pid: number | null; netns: string; address: string; identity: string }[];
  logs: { temporal: string; ui: string; workers: string[] };
}

const NAMESPACE = 'default';
const RETENTION_DAYS = 30;

function ipForwardPath(): string {
  return '/proc/sys/net/ipv4/ip_forward';
}

async function ensureWorkerNetwork(n: ClusterNames, w: WorkerNames): Promise<void> {
  if (!isNsfsMount(`/run/netns/${w.netns}`)) {
    await tryRun('ip', ['netns', 'delete', w.netns]);
    await run('ip', ['netns', 'add', w.netns]);
  }
  await ensureVeth(w.veth, w.netns, 'eth0', n.bridge);
  await ensureNsEth0(w.netns, `${w.address}/24`);
  await run('ip', ['-n', w.netns, 'route', 'replace', 'default', 'via', n.gateway]);
  // `ip netns exec` puts /etc/netns/<ns>/* over /etc/* for the worker. The cluster network has no DNS server
  // (nothing NATs the machine's resolver into it) and a query to an unreachable one waits 5 s per try, which
  // libvirt's client pays inside a migration's switch-over (measured: 10 s of downtime). Ferry reaches hosts by
  // address: the worker gets a resolver that answers "refused" at once, and a hosts file naming this machine.
  const etc = path.join('/etc/netns', w.netns);
  fs.mkdirSync(etc, { recursive: true });
  fs.writeFileSync(path.join(etc, 'resolv.conf'), '# ferry cluster: no DNS on the cluster network (fail at once)\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
  fs.writeFileSync(path.join(etc, 'hosts'), `127.0.0.1\tlocalhost ${os.hostname()}\n${w.address}\t${w.netns}\n`);
}

async function removeWorkerNetwork(w: WorkerNames): Promise<void> {
  if ((await ipLinks()).some((l) => l.ifname === w.veth)) await tryRun('ip', ['link', 'delete', 'dev', w.veth]);
  await tryRun('ip', ['netns', 'delete', w.netns]);
  fs.rmSync(path.join('/etc/netns', w.netns), { recursive: true, force: true });
}

function serverEnv(home: string, n: ClusterNames, s: ClusterState): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ...readEnvFile('server.env'),
    POSTGRES_SEEDS: '127.0.0.1',
    DB_PORT: String(s.postgres.port),
    POSTGRES_PWD: clusterPassword(home),
    BIND_ON_IP: n.gateway,
    FRONTEND_GRPC_PORT: String(s.temporalPort),
    DYNAMIC_CONFIG_FILE_PATH: path.join(REPO_ROOT, 'temporal', 'dynamicconfig', 'ferry.yaml'),
  };
}


/** Namespace `default` (30 days' retention) exists and the frontend's namespace cache knows it. */
async function ensureNamespace(c: Connection, log: (l: string) => void): Promise<void> {
  try {
    await c.workflowService.describeNamespace({ namespace: NAMESPACE });
  } catch {
    await c.workflowService.registerNamespace({
      namespace: NAMESPACE,
      workflowExecutionRetentionPeriod: msToTs(`${RETENTION_DAYS} days`),
    });
    log(`registered namespace ${NAMESPACE} (retention ${RETENTION_DAYS} days)`);
  }
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await c.workflowService.listWorkflowExecutions({ namespace: NAMESPACE, pageSize: 1 });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`namespace ${NAMESPACE} is not usable after 60 s: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

function serverAddress(n: ClusterNames, s: ClusterState): string {
  return `${n.gateway}:${s.temporalPort}`;
}

/** Starts the Temporal server when it is not running; returns its pid once it answers. */
async function ensureServer(home: string, n: ClusterNames, s: ClusterState, bins: TemporalBinaries, log: (l: string) => void): Promise<number> {
  const p = clusterPaths(home);
  let pid = livePid(p.serverPid, bins.server);
  if (pid === null) {
    pid = startDetached(bins.server, ['start'], p.serverLog, p.serverPid, serverEnv(home, n, s), p.dir);
    log(`started the Temporal server ${temporalVersions().server} (pid ${pid}) on ${serverAddress(n, s)}, log ${p.serverLog}`);
  }
  writeClusterEndpoint(home, { temporalAddress: serverAddress(n, s), inventoryUrl: inventoryUrl(home, n, s.postgres.port), serverPid: pid, serverBinary: bins.server });
  return pid;
}

async function ensureUi(home: string, n: ClusterNames, s: ClusterState, bins: TemporalBinaries, log: (l: string) => void): Promise<void> {
  if (!bins.ui) {
    log('the Temporal UI server is not built (scripts/install-deps --cluster builds it): no Web UI for the cluster');
    return;
  }
  const p = clusterPaths(home);
  if (livePid(p.uiPid, bins.ui.binary) !== null) return;
  // The temporalio/ui image's config template (docker.yaml, driven by TEMPORAL_* variables) plus the one key it
  // has no variable for: listen on the cluster's address only, not on every interface of the machine.
  const root = path.join(p.dir, 'ui');
  fs.mkdirSync(path.join(root, 'config'), { recursive: true });
  const template = fs.readFileSync(path.join(bins.ui.root, 'config', 'docker.yaml'), 'utf8');
  fs.writeFileSync(path.join(root, 'config', 'docker.yaml'), `${template.trimEnd()}\nhost: ${n.gateway}\n`);
  const url = `http://${n.gateway}:${s.uiPort}`;
  const env = {
    ...process.env,
    TEMPORAL_ADDRESS: serverAddress(n, s),
    TEMPORAL_UI_PORT: String(s.uiPort),
    TEMPORAL_DEFAULT_NAMESPACE: NAMESPACE,
    TEMPORAL_CORS_ORIGINS: url,
  };
  const pid = startDetached(bins.ui.binary, ['--root', root, '--env', 'docker', 'start'], p.uiLog, p.uiPid, env, root);
  log(`started the Temporal UI server ${temporalVersions().ui} (pid ${pid}) on ${url}`);
}

/** The worker's pid when it runs in its own netns, else null. */
function workerPid(home: string, w: WorkerNames): number | null {
  const pid = livePid(clusterPaths(home).workerPid(w.index), 'worker');
  if (pid === null) return null;
  const ns = nsInodeOfFile(`/run/netns/${w.netns}`);
  return ns !== null && nsInodeOfPid(pid, 'net') === ns ? pid : null;
}

async function ensureWorker(home: string, n: ClusterNames, s: ClusterState, w: WorkerNames, log: (l: string) => void): Promise<void> {
  if (workerPid(home, w) !== null) return;
  const p = clusterPaths(home);
  const env = {
    ...process.env,
    TEMPORAL_ADDRESS: serverAddress(n, s),
    TEMPORAL_NAMESPACE: NAMESPACE,
    FERRY_INVENTORY: inventoryUrl(home, n, s.postgres.port),
    FERRY_HOME: home,
    FERRY_WORKER_IDENTITY: w.identity,
    // its own loopback is its own: scrape http://<worker address>:9464/metrics from the cluster subnet
    FERRY_METRICS_ADDRESS: '0.0.0.0:9464',
  };
  const bin = path.join(REPO_ROOT, 'bin', 'ferry.js');
  // ip netns exec: the worker's network namespace and its /etc/netns files; it execs, so the pid is the worker's
  const pid = startDetached('ip', ['netns', 'exec', w.netns, process.execPath, bin, 'worker'], p.workerLog(w.index), p.workerPid(w.index), env);
  log(`started worker ${w.index} (pid ${pid}) in netns ${w.netns} (${w.address}), log ${p.workerLog(w.index)}`);
}

async function waitForPollers(c: Connection, identities: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let seen: string[] = [];
  while (Date.now() < deadline) {
    const r = await c.workflowService.describeTaskQueue({
      namespace: NAMESPACE,
      taskQueue: { name: taskQueue() },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    });
    seen = (r.pollers ?? []).map((x) => x.identity ?? '');
    if (identities.every((i) => seen.includes(i))) return;
    await new Promise((r2) => setTimeout(r2, 300));
  }
  throw new Error(`workers ${identities.filter((i) => !seen.includes(i)).join(', ')} do not poll task queue "${taskQueue()}" after ${timeoutMs / 1000} s`);
}

function enableIpForward(): boolean {
  const before = fs.readFileSync(ipForwardPath(), 'utf8').trim();
  if (before === '1') return false;
  fs.writeFileSync(ipForwardPath(), '1\n');
  return true;
}

export async function clusterUp(o: ClusterUpOptions = {}): Promise<ClusterStatus> {
  const log = o.log ?? (() => undefined);
  const home = o.home ?? ferryHome();
  if (process.getuid?.() !== 0) throw new Error('ferry cluster up needs root (network namespaces, PostgreSQL, the lab)');
  const previous = readClusterState(home);
  const n = clusterNames({ prefix: o.prefix ?? previous?.prefix, subnet: o.subnet ?? previous?.subnet });
  const workers = o.workers ?? previous?.workers ?? 2;
  // 0: the server alone (bench/cluster.ts runs its own worker against it)
  if (!Number.isInteger(workers) || workers < 0 || workers > 8) throw new Error(`--workers ${workers}: 1 to 8 workers`);
  const bins = temporalBinaries();

  await ensureBridge(n.bridge, n.subnet);
  const enabledIpForward = enableIpForward() || (previous?.enabledIpForward ?? false);
  const pg = await ensurePostgres(home, n, previous?.postgres.port ?? o.pgPort ?? Number(process.env.FERRY_CLUSTER_PG_PORT ?? 5433), log);
  const state: ClusterState = {
    prefix: n.prefix,
    subnet: n.subnet,
    workers,
    postgres: { version: pg.version, cluster: pg.cluster, port: pg.port },
    temporalPort: previous?.temporalPort ?? Number(process.env.FERRY_CLUSTER_TEMPORAL_PORT ?? 7233),
    uiPort: previous?.uiPort ?? Number(process.env.FERRY_CLUSTER_UI_PORT ?? 8080),
    enabledIpForward,
  };
  writeClusterState(home, state);
  await setupTemporalSchema(home, pg.port, bins, REPO_ROOT);
  await ensureServer(home, n, state, bins, log);
  const c = await waitForTemporal(serverAddress(n, state), 120_000, 'the Temporal server', clusterPaths(home).serverLog);
  try {
    await ensureNamespace(c, log);
    const added = await ensureSearchAttributes(c, NAMESPACE);
    if (added.length > 0) log(`registered search attributes ${added.join(', ')}`);
    await ensureUi(home, n, state, bins, log);
    const names = Array.from({ length: workers }, (_, i) => workerNames(n, i + 1));
    for (const w of names) {
      await ensureWorkerNetwork(n, w);
      await ensureWorker(home, n, state, w, log);
    }
    // fewer workers than last time: stop the extra ones
    for (let i = workers + 1; i <= (previous?.workers ?? 0); i++) await stopWorker(home, workerNames(n, i), log);
    if (names.length > 0) await waitForPollers(c, names.map((w) => w.identity), 90_000);
  } finally {
    await c.close();
  }
  return clusterStatus(home);
}

async function stopWorker(home: string, w: WorkerNames, log: (l: string) => void): Promise<void> {
  const pid = workerPid(home, w);
  if (pid !== null) {
    await stopPid(pid, 15_000);
    log(`stopped worker ${w.index} (pid ${pid})`);
  }
  fs.rmSync(clusterPaths(home).workerPid(w.index), { force: true });
  await removeWorkerNetwork(w);
}

/** Stops the Temporal server (SIGTERM, or SIGKILL with `kill`) and starts it again; resolves once it answers. */
export async function restartTemporalServer(o: { kill?: boolean; home?: string; log?: (l: string) => void } = {}): Promise<number> {
  const home = o.home ?? ferryHome();
  const log = o.log ?? (() => undefined);
  const s = readClusterState(home);
  if (!s) throw new Error('no cluster: run ferry cluster up');
  const n = clusterNames(s);
  const bins = temporalBinaries();
  const p = clusterPaths(home);
  const pid = livePid(p.serverPid, bins.server);
  if (pid !== null) {
    if (o.kill) process.kill(pid, 'SIGKILL');
    await stopPid(pid, 30_000);
    log(`stopped the Temporal server (pid ${pid}${o.kill ? ', SIGKILL' : ''})`);
  }
  const next = await ensureServer(home, n, s, bins, log);
  const c = await waitForTemporal(serverAddress(n, s), 120_000, 'the Temporal server', p.serverLog);
  await c.close();
  return next;
}

export async function clusterDown(o: { purge?: boolean; home?: string; log?: (l: string) => void } = {}): Promise<void> {
  const home = o.home ?? ferryHome();
  const log = o.log ?? (() => undefined);
  const s = readClusterState(home);
  const p = clusterPaths(home);
  fs.rmSync(clusterEndpointFile(home), { force: true });
  if (!s) return;
  const n = clusterNames(s);
  for (let i = 1; i <= s.workers; i++) await stopWorker(home, workerNames(n, i), log);
  for (const [file, marker, what] of [
    [p.uiPid, 'start', 'the Temporal UI server'],
    [p.serverPid, 'start', 'the Temporal server'],
  ] as const) {
    const pid = livePid(file, marker);
    if (pid !== null) {
      await stopPid(pid, 30_000);
      log(`stopped ${what} (pid ${pid})`);
    }
    fs.rmSync(file, { force: true });
  }
  if (o.purge) {
    await dropPostgres(s.postgres.version, s.postgres.cluster);
    log(`dropped the PostgreSQL cluster ${s.postgres.version}/${s.postgres.cluster} and its data`);
  } else {
    await stopPostgres(s.postgres.version, s.postgres.cluster);
    log(`stopped PostgreSQL ${s.postgres.version}/${s.postgres.cluster}; its data stays (cluster down --purge drops it)`);
  }
  if ((await ipLinks()).some((l) => l.ifname === n.bridge)) await tryRun('ip', ['link', 'delete', 'dev', n.bridge]);
  if (s.enabledIpForward) fs.writeFileSync(ipForwardPath(), '0\n');
  if (o.purge) fs.rmSync(p.dir, { recursive: true, force: true });
  else fs.rmSync(p.state, { force: true });
}

export async function clusterStatus(home = ferryHome()): Promise<ClusterStatus> {
  const s = readClusterState(home);
  const v = temporalVersions();
  const p = clusterPaths(home);
  const n = clusterNames(s ?? {});
  const port = s?.postgres.port ?? 5433;
  let bins: TemporalBinaries | null = null;
  try {
    bins = temporalBinaries(v);
  } catch {
    bins = null;
  }
  const serverPid = bins ? livePid(p.serverPid, bins.server) : null;
  let version = v.server;
  if (serverPid !== null && s) {
    try {
      const c = await Connection.connect({ address: serverAddress(n, s), connectTimeout: '2s' });
      try {
        version = (await c.workflowService.getSystemInfo({})).serverVersion || version;
      } finally {
        await c.close();
      }
    } catch {
      // not answering: the pinned version
    }
  }
  const uiPid = bins?.ui ? livePid(p.uiPid, bins.ui.binary) : null;
  const workers = Array.from({ length: s?.workers ?? 0 }, (_, i) => workerNames(n, i + 1)).map((w) => ({
    index: w.index,
    pid: workerPid(home, w),
    netns: w.netns,
    address: w.address,
    identity: w.identity,
  }));
  return {
    up: s !== null && serverPid !== null,
    temporal: {
      address: `${n.gateway}:${s?.temporalPort ?? 7233}`,
      pid: serverPid,
      version,
      ui: bins?.ui ? { url: `http://${n.gateway}:${s?.uiPort ?? 8080}`, pid: uiPid } : null,
    },
    postgres: {
      url: redactUrl(`postgres://ferry:x@${n.gateway}:${port}/ferry`),
      cluster: `${s?.postgres.version ?? safePgVersion()}/${s?.postgres.cluster ?? pgClusterName(n)}`,
      port,
    },
    workers,
    logs: { temporal: p.serverLog, ui: p.uiLog, workers: workers.map((w) => p.workerLog(w.index)) },
  };
}

function safePgVersion(): string {
  try {
    return pgVersion();
  } catch {
    return '?';
  }
}
