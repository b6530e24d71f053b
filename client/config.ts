/**
 * Where Ferry keeps its state and how it reaches Temporal. Environment first, then defaults.
 *
 *   FERRY_HOME         state directory (inventory, dev server database, lab), default ~/.ferry
 *   FERRY_INVENTORY    inventory location: a SQLite file path (default $FERRY_HOME/inventory.db) or a
 *                      postgres://user:password@host/db URL (its password is never printed)
 *   FERRY_TASK_QUEUE   task queue of the worker, default "ferry"
 *   TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_* (and a TOML profile):
 *                      read by @temporalio/envconfig; default localhost:7233, namespace "default"
 * While `ferry cluster up`'s Temporal server runs (client/cluster-target.ts), the address and the inventory
 * default to the cluster's instead.
 */
import os from 'node:os';
import path from 'node:path';
import type { ConnectionOptions } from '@temporalio/client';
import type { NativeConnectionOptions } from '@temporalio/worker';
import { activeCluster } from './cluster-target';

export const DEFAULT_TASK_QUEUE = 'ferry';

export function ferryHome(): string {
  return process.env.FERRY_HOME ?? path.join(os.homedir(), '.ferry');
}

export function inventoryLocation(): string {
  return process.env.FERRY_INVENTORY ?? activeCluster(ferryHome())?.inventoryUrl ?? path.join(ferryHome(), 'inventory.db');
}

export function taskQueue(): string {
  return process.env.FERRY_TASK_QUEUE ?? DEFAULT_TASK_QUEUE;
}

export interface TemporalTarget {
  connectionOptions: NativeConnectionOptions;
  namespace: string;
}

/** Temporal connection from the standard TEMPORAL_* environment (mTLS and API keys included). */
export function temporalTarget(): TemporalTarget {
  // Loaded here, not at start-up: commands that only read the inventory never need it.
  const { loadClientConnectConfig } = require('@temporalio/envconfig') as typeof import('@temporalio/envconfig');
  const cfg = loadClientConnectConfig();
  const connectionOptions: NativeConnectionOptions = { ...cfg.connectionOptions };
  if (!connectionOptions.address) connectionOptions.address = activeCluster(ferryHome())?.temporalAddress ?? 'localhost:7233';
  return { connectionOptions, namespace: cfg.namespace ?? 'default' };
}

/** The same target for the (non-native) client connection: address, TLS, API key, metadata. */
export function clientConnectionOptions(t: TemporalTarget): ConnectionOptions {
  const c = t.connectionOptions;
  return {
    ...(c.address !== undefined ? { address: c.address } : {}),
    ...(c.tls !== undefined ? { tls: c.tls } : {}),
    ...(c.apiKey !== undefined ? { apiKey: c.apiKey } : {}),
    ...(c.metadata !== undefined ? { metadata: c.metadata } : {}),
  };
}

/** The address only, for messages (never credentials). */
export function describeTarget(t: TemporalTarget): string {
  return `${t.connectionOptions.address} (namespace ${t.namespace})`;
}
