/**
 * Workflow tests' world: the real Temporal dev server, the real activities over a real SQLite inventory,
 * and the in-memory hypervisor double (memory-hypervisor.ts) with hosts h1..hN (h1 = source).
 */
import type { LiveMigrationInput } from '../../common/validation';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { FerryClient } from '../../client';
import type { DiskFormat } from '../../common/types';
import { openInventory, type Inventory } from '../../inventory';
import { createFerryWorker } from '../../worker';
import { MemoryHypervisor } from './memory-hypervisor';
import { startTemporal } from './temporal';

export const ROOT = '/var/lib/libvirt/images/ferry';
export const DISK = 'disk0.qcow2';
export const memUri = (host: string) => `mem://${host}/system`;
export const memAddress = (i: number) => `10.0.0.${i}`;

export interface TestDisk {
  name: string;
  target: string;
  dir: string;
  pool: string;
  sizeBytes?: number;
}

export interface TestVm {
  uuid: string;
  name: string;
  dir: string;
  pool: string;
}

/** A migration of `vm` from h1 (10.0.0.1), create tasks retried after 100 ms, with `extra` on top. */
export function migrationOf(vm: TestVm, extra: Partial<LiveMigrationInput> = {}): LiveMigrationInput {
  return { sourceHost: '10.0.0.1', vmName: vm.name, vmUuid: vm.uuid, options: { createRetryInterval: '100ms' }, ...extra };
}

export interface WorkflowWorld {
  env: TestWorkflowEnvironment;
  inventory: Inventory;
  hv: MemoryHypervisor;
  ferry: FerryClient;
  taskQueue: string;
  /**
   * A fresh running VM on `host` (default h1), in the inventory and the hypervisor: one disk in its per-VM
   * directory, or the given disks (each in its own directory and pool, e.g. the flat `default` pool).
   */
  newVm(host?: string, o?: { disks?: TestDisk[] }): Promise<TestVm>;
  stop(): Promise<void>;
}

let counter = 0;

export async function startWorkflowWorld(o: {
  hosts: number;
  taskQueue: string;
  uuidPrefix: string;
  /** Each host's URI (default memUri): e.g. qemu+tls:// ones for transport tests (the double ignores the scheme). */
  uriOf?: (host: string) => string;
}): Promise<WorkflowWorld> {
  const uriOf = o.uriOf ?? memUri;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-wf-'));
  const env = await startTemporal();
  const inventory = await openInventory(path.join(tmp, 'inventory.db'));
  const hv = new MemoryHypervisor();
  for (let i = 1; i <= o.hosts; i++) {
    const name = `h${i}`;
    hv.addHost(uriOf(name), name);
    await inventory.addHost({
      name,
      address: memAddress(i),
      uri: uriOf(name),
      storageRoot: ROOT,
      memoryMiB: 16384,
      vcpus: 8,
      storageFreeBytes: 50 * 2 ** 30,
    });
  }
  const worker: Worker = await createFerryWorker({
    connection: env.nativeConnection,
    namespace: env.namespace ?? 'default',
    taskQueue: o.taskQueue,
    inventory,
    hypervisor: hv,
    client: env.client,
    activityOptions: { jobPollIntervalMs: 50, progressSignalIntervalMs: 100 },
  });
  const running = worker.run();
  return {
    env,
    inventory,
    hv,
    ferry: FerryClient.fromClient(env.client, o.taskQueue),
    taskQueue: o.taskQueue,
    async newVm(host = 'h1', opts: { disks?: TestDisk[] } = {}) {
      counter += 1;
      const uuid = `${o.uuidPrefix}-0000-4000-8000-${counter.toString(16).padStart(12, '0')}`;
      const vm = { uuid, name: `vm${counter}`, dir: `${ROOT}/${uuid}`, pool: `ferry-${uuid}` };
      const given = opts.disks ?? [{ name: DISK, target: 'vda', dir: vm.dir, pool: vm.pool }];
      const disks = given.map((d) => ({ ...d, sizeBytes: d.sizeBytes ?? 64 * 2 ** 20, format: 'qcow2' as DiskFormat }));
      hv.addVm(uriOf(host), { ...vm, memoryMiB: 128, vcpus: 1, disks });
      await inventory.upsertVm({
        uuid,
        name: vm.name,
        host,
        memoryMiB: 128,
        vcpus: 1,
        state: 'running',
        disks: disks.map((d) => ({ name: d.name, target: d.target, sizeBytes: d.sizeBytes, format: d.format, path: `${d.dir}/${d.name}` })),
      });
      return vm;
    },
    async stop() {
      worker.shutdown();
      await running.catch(() => undefined);
      await inventory.close();
      await env.teardown();
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}
