/**
 * The production topology on the real lab: `clusterUp` (a Temporal server built from go.temporal.io/server on
 * PostgreSQL, two Ferry workers each in its own network namespace, the inventory on that PostgreSQL) + a 3-host
 * lab with 4 VMs. Evacuations are started from the `ferry` CLI, which finds the cluster by itself (no
 * TEMPORAL_ADDRESS, no FERRY_INVENTORY). One evacuation has a worker SIGKILLed while it runs a live migration;
 * another has the Temporal server SIGKILLed and started again. Each must end with every VM moved and exit 0, the
 * inventory agreeing with libvirt, no claim, pool or directory left behind, and both workers having run
 * activities.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activeCluster } from '../../client/cluster-target';
import { clusterDown, clusterStatus, clusterUp, restartTemporalServer, type ClusterStatus } from '../../cluster';
import { VirshHypervisor } from '../../hypervisor/virsh';
import { openInventory, type Inventory } from '../../inventory';
import { hostPath, labDown, labUp, LAB_STORAGE_ROOT, type LabStatus } from '../../lab';
import { registerLab } from '../../lab/register';
import { canRunLab, labNaming } from '../support/lab-harness';

const REPO = path.join(__dirname, '..', '..');
const CLUSTER = {
  prefix: process.env.FERRY_CLUSTER_PREFIX || 'fct',
  subnet: process.env.FERRY_CLUSTER_SUBNET || '10.213.102',
};

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `ferry …` as an operator runs it: only FERRY_HOME set, Temporal and the inventory found from the cluster. */
function ferry(home: string, args: string[]): Promise<CliRun> {
  const env: NodeJS.ProcessEnv = { ...process.env, FERRY_HOME: home };
  for (const k of ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'FERRY_INVENTORY']) delete env[k];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(REPO, 'bin', 'ferry.js'), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!canRunLab)('ferry cluster: real Temporal server on PostgreSQL, workers on separate machines', () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-cluster-'));
  const hv = new VirshHypervisor();
  let status: ClusterStatus;
  let lab: LabStatus;
  let inventory: Inventory;
  let connection: Connection;
  let client: Client;
  /** Worker identity → every activity type it started, over all tests (from the histories). */
  const ranBy = new Map<string, Set<string>>();

  beforeAll(async () => {
    status = await clusterUp({ home, workers: 2, ...CLUSTER, pgPort: Number(process.env.FERRY_CLUSTER_PG_PORT || 5434) });
    const endpoint = activeCluster(home);
    if (!endpoint) throw new Error('clusterUp left no endpoint');
    inventory = await openInventory(endpoint.inventoryUrl);
    lab = await labUp({ home, hosts: 3, vms: 4, ...labNaming() });
    const synced = await registerLab(inventory, hv, lab);
    expect(synced.filter((r) => r.error)).toEqual([]);
    connection = await Connection.connect({ address: endpoint.temporalAddress });
    client = new Client({ connection, namespace: 'default' });
  }, 600_000);

  afterAll(async () => {
    await connection?.close();
    await inventory?.close();
    await labDown(home, { prefix: labNaming().prefix }).catch(() => undefined);
    await clusterDown({ home, purge: true });
    fs.rmSync(home, { recursive: true, force: true });
  }, 300_000);

  const hostNames = () => lab.hosts.map((h) => h.name);

  async function whereRuns(uuid: string): Promise<string[]> {
    const out: string[] = [];
    for (const h of lab.hosts) if ((await hv.getDomain(h.uri, uuid))?.state === 'running') out.push(h.name);
    return out;
  }

  /** The inventory says what libvirt says, and nothing of a migration is left anywhere. */
  async function expectConsistentAndClean(): Promise<void> {
    expect(await inventory.listClaims()).toEqual([]);
    for (const vm of lab.vms) {
      const where = await whereRuns(vm.uuid);
      expect(where).toHaveLength(1);
      expect((await inventory.getVm(vm.uuid))?.host).toBe(where[0]);
      expect((await inventory.getVm(vm.uuid))?.state).toBe('running');
    }
    for (const h of lab.hosts) {
      const here = new Set((await inventory.listVms()).filter((v) => v.host === h.name).map((v) => v.uuid));
      const vmPools = new Set(lab.vms.map((v) => `ferry-${v.uuid}`));
      const pools = (await hv.listPools(h.uri)).map((p) => p.name).filter((p) => vmPools.has(p));
      expect(pools.filter((p) => !here.has(p.slice('ferry-'.length))), `pools on ${h.name}; ${await warnings()}`).toEqual([]);
      const dir = hostPath(home, h.name, LAB_STORAGE_ROOT);
      const dirs = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
      expect(dirs.filter((d) => !here.has(d)), `directories on ${h.name}`).toEqual([]);
    }
  }

  /** The migrations' warnings (why something was kept), for failure messages. */
  async function warnings(): Promise<string> {
    const out: string[] = [];
    for (const id of migrationIds()) {
      const r = (await client.workflow.getHandle(id).result().catch((e: unknown) => ({ warnings: [String(e)] }))) as { warnings?: string[] };
      out.push(`${id}: ${(r.warnings ?? []).join(' | ')}`);
    }
    return out.join('; ');
  }

  /** Identities that started activities of this workflow (completed ones, from the history; running ones, from describe). */
  async function activityWorkers(workflowId: string): Promise<{ done: Map<string, string[]>; running: { identity: string; type: string }[] }> {
    const h = client.workflow.getHandle(workflowId);
    const done = new Map<string, string[]>();
    const scheduled = new Map<string, string>();
    const history = await h.fetchHistory();
    for (const e of history.events ?? []) {
      const s = e.activityTaskScheduledEventAttributes;
      if (s) scheduled.set(String(e.eventId), s.activityType?.name ?? '?');
      const st = e.activityTaskStartedEventAttributes;
      if (st?.identity) done.set(st.identity, [...(done.get(st.identity) ?? []), scheduled.get(String(st.scheduledEventId)) ?? '?']);
    }
    const d = await h.describe();
    const running = (d.raw.pendingActivities ?? [])
      .filter((a) => a.state === temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED && a.lastWorkerIdentity)
      .map((a) => ({ identity: a.lastWorkerIdentity ?? '', type: a.activityType?.name ?? '?' }));
    return { done, running };
  }

  async function recordWorkers(workflowIds: string[]): Promise<void> {
    for (const id of workflowIds) {
      for (const [identity, types] of (await activityWorkers(id)).done) {
        const set = ranBy.get(identity) ?? new Set<string>();
        types.forEach((t) => set.add(t));
        ranBy.set(identity, set);
      }
    }
  }

  const migrationIds = () => lab.vms.map((v) => `ferry-migrate-${v.uuid}`);

  /** Polls the 4 migrations until `pred` holds for what they show, returning that snapshot. */
  async function waitFor<T>(what: string, probe: () => Promise<T | null>, timeoutMs = 120_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await probe().catch(() => null);
      if (v !== null) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(200);
    }
  }

  it('status --json names the server, PostgreSQL and two workers in their own network namespaces', async () => {
    const r = await ferry(home, ['cluster', 'status', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as ClusterStatus;
    expect(s.temporal).toMatchObject({ address: `${CLUSTER.subnet}.1:7233`, version: '1.32.0' });
    expect(s.temporal.pid).toBeGreaterThan(0);
    expect(s.postgres.url).toMatch(/^postgres:\/\/ferry:\*\*\*@/);
    expect(s.workers.map((w) => w.netns)).toEqual([`${CLUSTER.prefix}-cw1`, `${CLUSTER.prefix}-cw2`]);
    const rootNet = fs.readlinkSync('/proc/self/ns/net');
    for (const w of s.workers) {
      expect(w.pid).toBeGreaterThan(0);
      // a separate machine: not the root network namespace, and not each other's
      expect(fs.readlinkSync(`/proc/${w.pid}/ns/net`)).not.toBe(rootNet);
    }
    expect(fs.readlinkSync(`/proc/${s.workers[0]!.pid}/ns/net`)).not.toBe(fs.readlinkSync(`/proc/${s.workers[1]!.pid}/ns/net`));
    // the server and PostgreSQL answer on the cluster network, where the workers are
    expect(status.temporal.ui?.url).toBe(`http://${CLUSTER.subnet}.1:8080`);
    const ui = await fetch(`${status.temporal.ui!.url}/namespaces/default/workflows`);
    expect(ui.status).toBe(200);
  });

  it('evacuates a host of 4 VMs while the worker running a live migration is SIGKILLed: all moved, exit 0, both workers worked', async () => {
    const source = hostNames()[0]!;
    const run = ferry(home, ['evacuate', '--host', source, '--bandwidth', '3', '--json']);
    // mid-way: a live migration is running on a worker, and both workers have already completed activities
    const victim = await waitFor('a running migration and activities from both workers', async () => {
      const seen = new Set<string>();
      let migrating: string | null = null;
      for (const id of migrationIds()) {
        const a = await activityWorkers(id).catch(() => null);
        if (!a) continue;
        for (const k of a.done.keys()) seen.add(k);
        migrating ??= a.running.find((x) => /migrat/i.test(x.type))?.identity ?? null;
      }
      return migrating !== null && seen.size >= 2 ? migrating : null;
    });
    const w = status.workers.find((x) => x.identity === victim);
    expect(w, `worker ${victim}`).toBeDefined();
    process.kill(w!.pid!, 'SIGKILL');

    const r = await run;
    expect(r.code, `${r.stderr}\n${r.stdout}`).toBe(0);
    const result = JSON.parse(r.stdout) as { allLeft: boolean; vms: { vm: string; status: string; target: string | null }[] };
    expect(result.allLeft).toBe(true);
    expect(result.vms.map((v) => v.status)).toEqual(['migrated', 'migrated', 'migrated', 'migrated']);
    for (const v of result.vms) {
      const vm = lab.vms.find((x) => x.name === v.vm)!;
      expect(await whereRuns(vm.uuid)).toEqual([v.target]);
    }
    await expectConsistentAndClean();
    await recordWorkers(migrationIds());
    expect([...ranBy.keys()].sort()).toEqual(status.workers.map((x) => x.identity).sort());
    // the killed worker's machine is brought back by the next `cluster up` (idempotent)
    status = await clusterUp({ home });
    expect(status.workers.every((x) => x.pid !== null)).toBe(true);
  }, 600_000);

  it('a Temporal server SIGKILLed and restarted during an evacuation loses nothing and leaks nothing', async () => {
    // every VM is on hosts 2 and 3 now: let host 1 take VMs again and drain the fuller of the other two
    expect((await ferry(home, ['hosts', 'set-state', hostNames()[0]!, 'normal'])).code).toBe(0);
    const counts = await Promise.all(hostNames().map(async (n) => (await inventory.listVms()).filter((v) => v.host === n).length));
    const source = hostNames()[counts.indexOf(Math.max(...counts))]!;
    const moving = (await inventory.listVms()).filter((v) => v.host === source).map((v) => v.uuid);
    expect(moving.length).toBeGreaterThanOrEqual(2);

    const run = ferry(home, ['evacuate', '--host', source, '--bandwidth', '3', '--json']);
    await waitFor('a running live migration', async () => {
      for (const uuid of moving) {
        const a = await activityWorkers(`ferry-migrate-${uuid}`).catch(() => null);
        if (a?.running.some((x) => /migrat/i.test(x.type))) return true;
      }
      return null;
    });
    const before = status.temporal.pid;
    const after = await restartTemporalServer({ home, kill: true });
    expect(after).not.toBe(before);

    const r = await run;
    expect(r.code, `${r.stderr}\n${r.stdout}`).toBe(0);
    const result = JSON.parse(r.stdout) as { allLeft: boolean; vms: { vm: string; status: string; target: string | null }[] };
    expect(result.allLeft).toBe(true);
    expect(result.vms.map((v) => v.status)).toEqual(moving.map(() => 'migrated'));
    for (const uuid of moving) expect((await whereRuns(uuid))[0]).not.toBe(source);
    await expectConsistentAndClean();
    // the histories survived the restart: every migration of this run is complete, in the server's database
    for (const uuid of moving) {
      const d = await client.workflow.getHandle(`ferry-migrate-${uuid}`).describe();
      expect(d.status.name).toBe('COMPLETED');
    }
    status = await clusterStatus(home);
    expect(status.temporal.pid).toBe(after);
  }, 600_000);
});
