/** The lab's hosts registered in a bench inventory (synced from libvirt) and a Ferry worker over them. */
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import type { ActivityDeps } from '../activities';
import type { Hypervisor } from '../hypervisor/port';
import type { Inventory } from '../inventory';
import type { LabStatus } from '../lab';
import { registerLab } from '../lab/register';
import { createFerryWorker } from '../worker';

export async function startLabWorker(
  env: TestWorkflowEnvironment,
  inv: Inventory,
  hv: Hypervisor,
  lab: LabStatus,
  taskQueue: string,
  activityOptions: Pick<ActivityDeps, 'guestObserver'> = {},
): Promise<{ worker: Worker; running: Promise<void> }> {
  const synced = await registerLab(inv, hv, lab);
  const failed = synced.filter((r) => r.error);
  if (failed.length > 0) throw new Error(`lab sync failed: ${failed.map((r) => `${r.host}: ${r.error}`).join('; ')}`);
  const worker = await createFerryWorker({ connection: env.nativeConnection, namespace: env.namespace ?? 'default', taskQueue, inventory: inv, hypervisor: hv, client: env.client, activityOptions });
  return { worker, running: worker.run() };
}
