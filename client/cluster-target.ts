/**
 * Where a running `ferry cluster` is, for every other command: `<home>/cluster/endpoint.json` (mode 600; it holds
 * the inventory URL with its password), written by `ferry cluster up`, removed by `cluster down`. While the
 * cluster's Temporal server is alive, the CLI and workers default to its address and its inventory
 * (TEMPORAL_ADDRESS / FERRY_INVENTORY still win).
 */
import fs from 'node:fs';
import path from 'node:path';

export interface ClusterEndpoint {
  /** host:port of the cluster's Temporal frontend. */
  temporalAddress: string;
  /** postgres://… URL of the inventory on the cluster's PostgreSQL (with its password: never print it). */
  inventoryUrl: string;
  /** The Temporal server's pid and binary (the endpoint counts only while that process lives). */
  serverPid: number;
  serverBinary: string;
}

export function clusterEndpointFile(home: string): string {
  return path.join(home, 'cluster', 'endpoint.json');
}

export function writeClusterEndpoint(home: string, e: ClusterEndpoint): void {
  const file = clusterEndpointFile(home);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(e, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
}

/** The endpoint of this home's cluster when its Temporal server is alive, else null. */
export function activeCluster(home: string): ClusterEndpoint | null {
  let e: ClusterEndpoint;
  try {
    e = JSON.parse(fs.readFileSync(clusterEndpointFile(home), 'utf8')) as ClusterEndpoint;
  } catch {
    return null;
  }
  if (!Number.isInteger(e.serverPid) || e.serverPid <= 0) return null;
  try {
    const stat = fs.readFileSync(`/proc/${e.serverPid}/stat`, 'utf8');
    const zombie = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
    return !zombie && fs.readlinkSync(`/proc/${e.serverPid}/exe`) === e.serverBinary ? e : null;
  } catch {
    return null;
  }
}
