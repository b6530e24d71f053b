/** syncInventory: `ferry inventory sync` as a workflow, so a Temporal Schedule keeps capacity current. */
import { proxyActivities } from '@temporalio/workflow';
import type { FerryActivities } from '../activities';
import type { SyncResult } from '../inventory/store';

const acts = proxyActivities<FerryActivities>({
  startToCloseTimeout: '5m',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumAttempts: 3 },
});

export async function syncInventory(input: { hosts?: string[] } = {}): Promise<SyncResult[]> {
  return acts.syncHosts(input?.hosts ? { hosts: input.hosts } : {});
}
