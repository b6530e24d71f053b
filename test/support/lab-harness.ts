/**
 * A real lab for end-to-end tests: N libvirt hosts in namespaces with M TCG VMs (lab/), registered in a
 * fresh SQLite inventory, a real Temporal dev server and an in-process Ferry worker on VirshHypervisor.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { FerryClient } from '../../client';
import { VirshHypervisor } from '../../hypervisor/virsh';
import { openInventory, type Inventory } from '../../inventory';
import { hostPath, labDown, labUp, LAB_STORAGE_ROOT, type LabStatus } from '../../lab';
import { registerLab } from '../../lab/register';
import { createFerryWorker } from '../../worker';
import { labNaming } from './lab-naming';
import { startTemporal } from './temporal';

export { labNaming } from './lab-naming';

export const canRunLab = process.getuid?.() === 0 && fs.existsSync('/usr/sbin/libvirtd');

export interface LabHarness {
  home: string;
  lab: LabStatus;
  inventory: Inventory;
  hv: VirshHypervisor;
  env: TestWorkflowEnvironment;
  ferry: FerryClient;
  taskQueue: string;
  /** The Temporal Web UI (http://127.0.0.1:<port>) when started with `webUi: true`; else undefined. */
  webUi: string | undefined;
  stop(): Promise<void>;
}

/** A TCP port free on 127.0.0.1 right now (the kernel picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

export async function startLabHarness(o: {
  hosts: number;
  vms: number;
  taskQueue?: string;
  webUi?: boolean;
  /** Random data at the start of each VM's disk (the disk is max(64, this) MiB); default the lab's 32. */
  randomDataMiB?: number;
  /** A TLS lab (qemu+tls hosts); default FERRY_LAB_TLS. */
  tls?: boolean;
}): Promise<LabHarness> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-lab-'));
  const lab = await labUp({ home, hosts: o.hosts, vms: o.vms, ...labNaming(), ...(o.tls !== undefined ? { tls: o.tls } : {}), ...(o.randomDataMiB !== undefined ? { randomDataMiB: o.randomDataMiB } : {}) });
  const hv = new VirshHypervisor();
  const inventory = await openInventory(path.join(home, 'inventory.db'));
  const synced = await registerLab(inventory, hv, lab);
  const failed = synced.filter((r) => r.error);
  if (failed.length > 0) throw new Error(`lab sync failed: ${failed.map((r) => `${r.host}: ${r.error}`).join('; ')}`);
  const uiPort = o.webUi ? await freePort() : undefined;
  const env = await startTemporal({ uiPort });
  const taskQueue = o.taskQueue ?? 'ferry-lab-test';
  const worker: Worker = await createFerryWorker({
    connection: env.nativeConnection,
    namespace: env.namespace ?? 'default',
    taskQueue,
    inventory,
    hypervisor: hv,
    client: env.client,
    activityOptions: { progressSignalIntervalMs: 1000 },
  });
  const running = worker.run();
  return {
    home,
    lab,
    inventory,
    hv,
    env,
    ferry: FerryClient.fromClient(env.client, taskQueue),
    taskQueue,
    webUi: uiPort !== undefined ? `http://127.0.0.1:${uiPort}` : undefined,
    async stop() {
      worker.shutdown();
      await running.catch(() => undefined);
      await inventory.close();
      await env.teardown();
      await labDown(home, { prefix: labNaming().prefix });
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Entries under the storage root of a lab host, as seen from outside (the host's real files). */
export function storageEntries(home: string, host: string): string[] {
  const dir = hostPath(home, host, LAB_STORAGE_ROOT);
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
}

export function vmDirExists(home: string, host: string, uuid: string): boolean {
  return fs.existsSync(hostPath(home, host, `${LAB_STORAGE_ROOT}/${uuid}`));
}

/** Every lab host on which libvirt says the domain is running (asked of each host). */
export async function whereRuns(h: LabHarness, uuid: string): Promise<string[]> {
  const out: string[] = [];
  for (const host of h.lab.hosts) {
    const d = await h.hv.getDomain(host.uri, uuid);
    if (d?.state === 'running') out.push(host.name);
  }
  return out;
}

/** Names of the storage pools defined on a lab host. */
export async function poolsOn(h: LabHarness, host: string): Promise<string[]> {
  const uri = h.lab.hosts.find((x) => x.name === host)?.uri;
  if (!uri) throw new Error(`no lab host ${host}`);
  return (await h.hv.listPools(uri)).map((p) => p.name).sort();
}
