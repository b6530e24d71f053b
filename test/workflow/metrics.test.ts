/**
 * The worker's Prometheus endpoint carries Temporal's runtime metrics and Ferry's own (migrations by result,
 * duration, bytes, downtime, create-task attempts, evacuation progress). Scraped over HTTP.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installMetrics } from '../../worker';
import { dashboardPanels, metricNames } from '../support/grafana';
import { startWorkflowWorld, type WorkflowWorld } from '../support/workflow-env';

let w: WorkflowWorld;
let address: string;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

beforeAll(async () => {
  address = `127.0.0.1:${await freePort()}`;
  installMetrics(address); // before any Temporal connection exists
  w = await startWorkflowWorld({ hosts: 3, taskQueue: 'ferry-metrics-test', uuidPrefix: '22222222' });
}, 120_000);

afterAll(async () => {
  await w?.stop();
}, 120_000);

describe('Prometheus metrics', () => {
  it('exposes Temporal runtime metrics and Ferry migration and evacuation metrics', async () => {
    const ok = await w.newVm('h1');
    const stuck = await w.newVm('h1');
    w.hv.fail('recreateVolume', Infinity, { match: stuck.pool });
    const handle = await w.env.client.workflow.start('evacuateHost', {
      taskQueue: w.taskQueue,
      workflowId: 'ferry-evacuate-h1-metrics',
      args: [{ host: 'h1', migration: { options: { createRetryInterval: '100ms' } } }],
    });
    await handle.result();
    expect((await w.inventory.getVm(ok.uuid))?.host).not.toBe('h1');

    let text = '';
    for (let i = 0; i < 20; i++) {
      text = await (await fetch(`http://${address}/metrics`)).text();
      if (/ferry_migrations/.test(text) && /ferry_evacuation_vms/.test(text)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(text).toMatch(/temporal_/); // the SDK's own metrics
    expect(text).toMatch(/ferry_migrations\w*\{[^}]*result="migrated"[^}]*\} 1/);
    expect(text).toMatch(/ferry_migrations\w*\{[^}]*result="aborted"[^}]*\} 1/);
    expect(text).toMatch(/ferry_migration_duration\w*_bucket/);
    expect(text).toMatch(/ferry_migration_downtime\w*_bucket/);
    expect(text).toMatch(/ferry_migration_bytes\w*\{[^}]*result="migrated"/);
    expect(text).toMatch(/ferry_create_task_attempts\w*\{[^}]*task="disk"/);
    expect(text).toMatch(/ferry_evacuation_vms\w*\{[^}]*host="h1"[^}]*status="migrated"[^}]*\} 1/);
    // every metric the Grafana dashboard queries is on this endpoint
    const exported = new Set(text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]));
    const queried = dashboardPanels().flatMap((p) => (p.targets ?? []).flatMap((t) => metricNames(t.expr ?? '')));
    expect(queried.filter((n) => !exported.has(n))).toEqual([]);
  });
});
