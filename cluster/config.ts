/**
 * What a `ferry cluster` is made of and where it lives: the pinned Temporal versions (temporal/versions.env),
 * the binaries scripts/install-deps builds under .tools/, the cluster's names (bridge, worker netns) and subnet,
 * and its files under `<home>/cluster/`.
 */
import fs from 'node:fs';
import path from 'node:path';

export const REPO_ROOT = path.resolve(__dirname, '..', fs.existsSync(path.join(__dirname, '..', 'package.json')) ? '' : '..');

/** KEY=VALUE lines (comments and blanks skipped), as in temporal/*.env. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`not KEY=VALUE: ${line}`);
    out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

export function readEnvFile(name: string): Record<string, string> {
  return parseEnvFile(fs.readFileSync(path.join(REPO_ROOT, 'temporal', name), 'utf8'));
}

export interface TemporalVersions {
  server: string;
  ui: string;
}

export function temporalVersions(): TemporalVersions {
  const v = readEnvFile('versions.env');
  const server = v.TEMPORAL_SERVER_VERSION;
  const ui = v.TEMPORAL_UI_VERSION;
  if (!server || !ui) throw new Error('temporal/versions.env must set TEMPORAL_SERVER_VERSION and TEMPORAL_UI_VERSION');
  return { server, ui };
}

export interface TemporalBinaries {
  server: string;
  sqlTool: string;
  schemaDir: string;
  /** The Temporal UI server and its config directory, when it was built (null otherwise). */
  ui: { binary: string; root: string } | null;
}

/** The binaries scripts/install-deps built for these versions (FERRY_TOOLS overrides .tools/). */
export function temporalBinaries(v = temporalVersions()): TemporalBinaries {
  const tools = process.env.FERRY_TOOLS ?? path.join(REPO_ROOT, '.tools');
  const dir = path.join(tools, 'temporal', `v${v.server}`);
  const b = {
    server: path.join(dir, 'bin', 'server'),
    sqlTool: path.join(dir, 'bin', 'sql'),
    schemaDir: path.join(dir, 'schema'),
  };
  for (const f of [b.server, b.sqlTool, path.join(b.schemaDir, 'postgresql')]) {
    if (!fs.existsSync(f)) {
      throw new Error(`${f} is missing: run scripts/install-deps --cluster (it builds the Temporal server ${v.server} from go.temporal.io/server into ${dir})`);
    }
  }
  const uiDir = path.join(tools, 'temporal-ui', `v${v.ui}`);
  const ui = { binary: path.join(uiDir, 'bin', 'server'), root: uiDir };
  return { ...b, ui: fs.existsSync(ui.binary) && fs.existsSync(path.join(uiDir, 'config', 'docker.yaml')) ? ui : null };
}

export interface ClusterNames {
  prefix: string;
  subnet: string;
  bridge: string;
  /** The root namespace's address on the cluster bridge: Temporal, PostgreSQL and the UI listen here. */
  gateway: string;
}

export function clusterNames(o: { prefix?: string | undefined; subnet?: string | undefined } = {}): ClusterNames {
  const prefix = o.prefix ?? process.env.FERRY_CLUSTER_PREFIX ?? 'fcl';
  const subnet = o.subnet ?? process.env.FERRY_CLUSTER_SUBNET ?? '10.213.100';
  if (!/^[a-z][a-z0-9]{0,5}$/.test(prefix)) throw new Error(`cluster prefix "${prefix}": 1–6 characters of [a-z0-9], starting with a letter`);
  const octets = subnet.split('.');
  if (octets.length !== 3 || octets.some((o2) => !/^\d{1,3}$/.test(o2) || Number(o2) > 255)) {
    throw new Error(`cluster subnet "${subnet}": write the first three octets of a /24, e.g. 10.213.100`);
  }
  return { prefix, subnet, bridge: `${prefix}cbr0`, gateway: `${subnet}.1` };
}

export interface WorkerNames {
  index: number;
  netns: string;
  veth: string;
  address: string;
  /** The worker's Temporal identity (shown on every activity it ran). */
  identity: string;
}

export function workerNames(n: ClusterNames, index: number): WorkerNames {
  const netns = `${n.prefix}-cw${index}`;
  return { index, netns, veth: `${netns}-v`, address: `${n.subnet}.${10 + index}`, identity: `ferry-worker@${netns}` };
}

export interface ClusterPaths {
  dir: string;
  state: string;
  password: string;
  serverLog: string;
  serverPid: string;
  uiLog: string;
  uiPid: string;
  workerLog(i: number): string;
  workerPid(i: number): string;
}

export function clusterPaths(home: string): ClusterPaths {
  const dir = path.join(home, 'cluster');
  return {
    dir,
    state: path.join(dir, 'state.json'),
    password: path.join(dir, 'postgres-password'),
    serverLog: path.join(dir, 'temporal.log'),
    serverPid: path.join(dir, 'temporal.pid'),
    uiLog: path.join(dir, 'temporal-ui.log'),
    uiPid: path.join(dir, 'temporal-ui.pid'),
    workerLog: (i) => path.join(dir, `worker-${i}.log`),
    workerPid: (i) => path.join(dir, `worker-${i}.pid`),
  };
}

/** What `cluster up` chose, kept for status/down and the next up (mode 600 directory). */
export interface ClusterState {
  prefix: string;
  subnet: string;
  workers: number;
  postgres: { version: string; cluster: string; port: number };
  temporalPort: number;
  uiPort: number;
  /** ip_forward was 0 before the cluster turned it on: `cluster down` turns it off again. */
  enabledIpForward: boolean;
}

export function readClusterState(home: string): ClusterState | null {
  try {
    return JSON.parse(fs.readFileSync(clusterPaths(home).state, 'utf8')) as ClusterState;
  } catch {
    return null;
  }
}

export function writeClusterState(home: string, s: ClusterState): void {
  const p = clusterPaths(home);
  fs.mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(p.state, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
}
