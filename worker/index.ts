/**
 * The Ferry worker: runs the workflows (bundled, sandboxed) and the activities (inventory + libvirt).
 * `ferry worker` runs it in the foreground; `ferry dev up` runs one in the background.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { createActivities, type ActivityDeps } from '../activities';
import { FERRY_SEARCH_ATTRIBUTES } from '../common/search-attributes';
import type { ProgressSignal } from '../common/migration';
import { progressSignal } from '../workflows/definitions';
import type { Hypervisor } from '../hypervisor/port';
import { VirshHypervisor } from '../hypervisor/virsh';
import { describeInventoryLocation, openInventory, type Inventory } from '../inventory';
import { workflowStatusOf } from '../client';
import { clientConnectionOptions, describeTarget, inventoryLocation, taskQueue, temporalTarget, type TemporalTarget } from '../client/config';

/** The workflows module: compiled JS in dist/, TypeScript source under vitest. */
export function workflowsPath(): string {
  const dir = path.join(__dirname, '..', 'workflows');
  for (const f of ['index.js', 'index.ts']) {
    const p = path.join(dir, f);
    if (fs.existsSync(p)) return p;
  }
  throw new Error(`no workflows module in ${dir}`);
}

/** Registers Ferry's search attributes in the namespace when they are missing (idempotent). */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const have = new Set(Object.keys(existing.customAttributes ?? {}));
  const missing = Object.keys(FERRY_SEARCH_ATTRIBUTES).filter((k) => !have.has(k));
  if (missing.length === 0) return [];
  const keyword = temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(missing.map((k) => [k, keyword])),
  });
  return missing;
}

export interface FerryWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  inventory: Inventory;
  hypervisor: Hypervisor;
  /** Client used by activities to send live progress to their workflow. */
  client?: Client;
  activityOptions?: Omit<ActivityDeps, 'inventory' | 'hypervisor' | 'signalProgress' | 'workflowStatus'>;
  workerOptions?: Partial<WorkerOptions>;
}

export async function createFerryWorker(o: FerryWorkerOptions): Promise<Worker> {
  const client = o.client;
  const activities = createActivities({
    inventory: o.inventory,
    hypervisor: o.hypervisor,
    ...o.activityOptions,
    ...(client
      ? {
          signalProgress: async (workflowId: string, progress: ProgressSignal) => {
            await client.workflow.getHandle(workflowId).signal(progressSignal, progress);
          },
          workflowStatus: (workflowId: string) => workflowStatusOf(client, workflowId),
        }
      : {}),
  });
  return Worker.create({
    connection: o.connection,
    namespace: o.namespace,
    taskQueue: o.taskQueue,
    workflowsPath: workflowsPath(),
    activities,
    // Cancellation reaches an activity only in a heartbeat response: do not let the SDK hold heartbeats back
    // for 80 % of the heartbeat timeout, or a timed-out migration would be aborted seconds late.
    maxHeartbeatThrottleInterval: '1s',
    ...o.workerOptions,
  });
}

/**
 * Temporal's runtime metrics and Ferry's own on one Prometheus endpoint: FERRY_METRICS_ADDRESS
 * (default 127.0.0.1:9464; "off" disables it). Must run before any connection is made.
 */
export function installMetrics(address = process.env.FERRY_METRICS_ADDRESS ?? '127.0.0.1:9464'): string | null {
  if (address === 'off' || address === '') return null;
  Runtime.install({ telemetryOptions: { metrics: { prometheus: { bindAddress: address } } } });
  return address;
}

/** A Ferry worker connected from the environment (TEMPORAL_*, FERRY_INVENTORY, FERRY_TASK_QUEUE), over virsh. */
export interface ConnectedWorker {
  worker: Worker;
  target: TemporalTarget;
  /** The client connection (activities signal progress through it). */
  clientConnection: Connection;
  close(): Promise<void>;
}

export async function connectFerryWorker(
  o: { target?: TemporalTarget } & Pick<FerryWorkerOptions, 'activityOptions' | 'workerOptions'> = {},
): Promise<ConnectedWorker> {
  const target = o.target ?? temporalTarget();
  const connection = await NativeConnection.connect(target.connectionOptions);
  const clientConnection = await Connection.connect(clientConnectionOptions(target));
  const inventory = await openInventory(inventoryLocation());
  const worker = await createFerryWorker({
    connection,
    namespace: target.namespace,
    taskQueue: taskQueue(),
    inventory,
    hypervisor: new VirshHypervisor(),
    client: new Client({ connection: clientConnection, namespace: target.namespace }),
    ...(o.activityOptions ? { activityOptions: o.activityOptions } : {}),
    // FERRY_WORKER_IDENTITY: the name each activity's history event shows (`ferry cluster` names its machines)
    workerOptions: { ...(process.env.FERRY_WORKER_IDENTITY ? { identity: process.env.FERRY_WORKER_IDENTITY } : {}), ...o.workerOptions },
  });
  return {
    worker,
    target,
    clientConnection,
    async close() {
      await inventory.close();
      await clientConnection.close();
      await connection.close();
    },
  };
}

/** `ferry worker`: connect from the environment, register search attributes, run until SIGINT/SIGTERM. */
export async function runWorker(
  opts: { target?: TemporalTarget; log?: (line: string) => void } & Pick<FerryWorkerOptions, 'activityOptions'> = {},
): Promise<void> {
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const metrics = installMetrics();
  if (metrics) log(`Prometheus metrics on http://${metrics}/metrics`);
  const w = await connectFerryWorker({ ...(opts.target ? { target: opts.target } : {}), ...(opts.activityOptions ? { activityOptions: opts.activityOptions } : {}) });
  try {
    const added = await ensureSearchAttributes(w.clientConnection, w.target.namespace);
    if (added.length > 0) log(`registered search attributes ${added.join(', ')}`);
  } catch (err) {
    log(`warning: could not check or register search attributes (${(err as Error).message}); register ${Object.keys(FERRY_SEARCH_ATTRIBUTES).join(', ')} as Keyword`);
  }
  log(`ferry worker: task queue "${taskQueue()}" on ${describeTarget(w.target)}, inventory ${describeInventoryLocation(inventoryLocation())}`);
  try {
    await w.worker.run(); // the SDK shuts down gracefully on SIGINT/SIGTERM
  } finally {
    await w.close();
  }
}
