/**
 * The inventory on every backend: each test below runs on SQLite and on PostgreSQL (see
 * test/support/inventory-backends.ts: FERRY_TEST_PG_URL, FERRY_SKIP_PG).
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { HistoryRecord } from '../../common/types';
import {
  defaultInventoryLocation,
  describeInventoryLocation,
  openInventory,
  parseInventoryLocation,
  sqlitePath,
} from '../../inventory/index';
import { InventoryError } from '../../inventory/inventory';
import { PlacementError } from '../../inventory/placement';
import { MIGRATIONS, SCHEMA_VERSION } from '../../inventory/schema';
import type { Inventory, PlacementRequest, VmUpsert } from '../../inventory/store';
import { BACKENDS, freshDatabase, skipBackend, type TestDatabase } from '../support/inventory-backends';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

let db: TestDatabase;
let inv: Inventory;

async function addHosts(...names: string[]): Promise<void> {
  for (const [i, name] of names.entries()) {
    await inv.addHost({
      name,
      address: `10.0.0.${i + 1}`,
      uri: `qemu+tcp://10.0.0.${i + 1}/system`,
      memoryMiB: 4096,
      vcpus: 4,
      storageFreeBytes: 100 * GiB,
    });
  }
}

function vm(uuid: string, host: string, over: Partial<VmUpsert> = {}): VmUpsert {
  return {
    uuid,
    name: `vm-${uuid}`,
    host,
    memoryMiB: 512,
    vcpus: 1,
    state: 'running',
    disks: [
      {
        target: 'vda',
        name: 'disk0.qcow2',
        path: `/var/lib/libvirt/images/ferry/${uuid}/disk0.qcow2`,
        format: 'qcow2',
        sizeBytes: GiB,
      },
    ],
    ...over,
  };
}

function request(vmUuid: string, over: Partial<PlacementRequest> = {}): PlacementRequest {
  return { vmUuid, sourceHost: 'h1', workflowId: `wf-${vmUuid}`, memoryMiB: 512, vcpus: 1, storageBytes: GiB, ...over };
}

async function rejects<E extends Error>(p: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(type);
  return err as E;
}

describe('inventory locations', () => {
  it('SQLite paths and sqlite: locations, PostgreSQL URLs; others are refused without echoing credentials', () => {
    expect(sqlitePath('/var/lib/ferry/inventory.db')).toBe('/var/lib/ferry/inventory.db');
    expect(sqlitePath('sqlite:/var/lib/ferry/inventory.db')).toBe('/var/lib/ferry/inventory.db');
    expect(sqlitePath('sqlite:///var/lib/ferry/inventory.db')).toBe('/var/lib/ferry/inventory.db');
    expect(sqlitePath('sqlite:rel.db')).toBe('rel.db');
    expect(sqlitePath('C:\\ferry\\inventory.db')).toBe('C:\\ferry\\inventory.db');
    expect(parseInventoryLocation('postgres://ferry:secret@db/ferry')).toEqual({ kind: 'postgres', url: 'postgres://ferry:secret@db/ferry' });
    expect(parseInventoryLocation('postgresql://db/ferry').kind).toBe('postgres');
    expect(parseInventoryLocation('PostgreSQL://db/ferry').kind).toBe('postgres');
    expect(() => sqlitePath('postgresql://ferry:secret@db/ferry')).toThrow(
      'the inventory postgresql://ferry:***@db/ferry is a PostgreSQL database, not a SQLite file',
    );
    expect(() => parseInventoryLocation('postgres:secret@db')).toThrow('inventory location postgres:… is not a URL');
    expect(() => sqlitePath('mysql://root:secret@db/ferry')).toThrow(/^unsupported inventory location mysql:\/\/…: use/);
    expect(() => sqlitePath('mysql://root:secret@db/ferry')).not.toThrow(/secret/);
    expect(describeInventoryLocation('postgres://ferry:s3cr%40t@db:5432/ferry?sslpassword=k3y&application_name=x')).toBe(
      'postgres://ferry:***@db:5432/ferry?sslpassword=***&application_name=x',
    );
    expect(describeInventoryLocation('postgres://db/ferry')).toBe('postgres://db/ferry');
    expect(describeInventoryLocation('/var/lib/ferry/inventory.db')).toBe('/var/lib/ferry/inventory.db');
    expect(defaultInventoryLocation('/home/op/.ferry')).toBe('/home/op/.ferry/inventory.db');
  });

  it('SQLite: creates the parent directory, and uses WAL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-inv-'));
    try {
      const nested = await openInventory(`sqlite:${join(dir, 'a', 'b', 'inventory.db')}`);
      await nested.close();
      const raw = new Database(join(dir, 'a', 'b', 'inventory.db'), { readonly: true });
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      raw.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

for (const backend of BACKENDS) {
  describe.skipIf(skipBackend(backend))(backend, () => {
    beforeEach(async () => {
      db = await freshDatabase(backend);
      inv = await openInventory(db.location);
    });

    afterEach(async () => {
      try {
        await inv?.close();
      } finally {
        await db?.drop();
      }
    });

    describe('opening', () => {
      it('creates the schema once, records its version, and keeps data across reopen', async () => {
        await addHosts('h1');
        await inv.close();
        inv = await openInventory(db.location);
        expect((await inv.listHosts()).map((h) => h.name)).toEqual(['h1']);
        expect((await db.query<{ version: number }>('SELECT version FROM schema_version ORDER BY version')).map((r) => Number(r.version))).toEqual(
          MIGRATIONS.map((m) => m.version),
        );
        expect(MIGRATIONS[MIGRATIONS.length - 1]?.version).toBe(SCHEMA_VERSION);
      });

      it('applies the schema once when several processes open a new inventory at the same time', async () => {
        const fresh = await freshDatabase(db.backend);
        try {
          const opened = await Promise.all([1, 2, 3, 4].map(() => openInventory(fresh.location)));
          await Promise.all(opened.map((i) => i.close()));
          expect(await fresh.query('SELECT version FROM schema_version')).toHaveLength(MIGRATIONS.length);
        } finally {
          await fresh.drop();
        }
      });

      it('refuses a database from a newer Ferry', async () => {
        await db.run("INSERT INTO schema_version VALUES (999, 'future', '2030-01-01T00:00:00Z')");
        await expect(openInventory(db.location)).rejects.toThrow(/schema version 999 .* upgrade Ferry/);
      });

      it('sorts names byte by byte on every backend', async () => {
        const names = ['b', 'B', 'a-2', 'a10', 'a1', 'a_1', 'é'];
        for (const [i, name] of names.entries()) await inv.addHost({ name, address: `10.0.9.${i}`, uri: 'qemu+tcp://x/system' });
        expect((await inv.listHosts()).map((h) => h.name)).toEqual([...names].sort());
      });
    });

    describe('hosts', () => {
      it('adds with defaults and looks up by name or address', async () => {
        const h = await inv.addHost({ name: 'h1', address: '10.0.0.1', uri: 'qemu+tcp://10.0.0.1/system' });
        expect(h).toMatchObject({
          name: 'h1',
          state: 'normal',
          memoryMiB: 0,
          vcpus: 0,
          storageRoot: '/var/lib/libvirt/images/ferry',
          storageFreeBytes: null,
          memoryRatio: 1,
          cpuRatio: 4,
        });
        expect(await inv.getHost('h1')).toEqual(h);
        expect(await inv.getHost('10.0.0.1')).toEqual(h);
        expect(await inv.getHost('nope')).toBeNull();
      });

      it('prefers a name match over an address match', async () => {
        await inv.addHost({ name: 'h1', address: 'h2', uri: 'qemu+tcp://a/system' });
        await inv.addHost({ name: 'h2', address: '10.0.0.2', uri: 'qemu+tcp://b/system' });
        expect((await inv.getHost('h2'))?.name).toBe('h2');
      });

      it('rejects duplicate names and addresses', async () => {
        await addHosts('h1');
        const byName = await rejects(inv.addHost({ name: 'h1', address: 'x', uri: 'u' }), InventoryError);
        expect(byName.code).toBe('exists');
        const byAddress = await rejects(inv.addHost({ name: 'hx', address: '10.0.0.1', uri: 'u' }), InventoryError);
        expect(byAddress.message).toBe('address 10.0.0.1 already belongs to host h1');
        await expect(inv.addHost({ name: 'hy', address: 'y', uri: 'u', cpuRatio: 0 })).rejects.toThrow(/cpuRatio/);
      });

      it('sets state and capacity; unknown hosts are errors', async () => {
        await addHosts('h2', 'h1');
        expect((await inv.setHostState('h1', 'maintenance')).state).toBe('maintenance');
        await inv.updateHostCapacity('h2', { memoryMiB: 8192, vcpus: 16, storageFreeBytes: null });
        const hosts = await inv.listHosts();
        expect(hosts.map((h) => [h.name, h.state, h.memoryMiB, h.vcpus, h.storageFreeBytes])).toEqual([
          ['h1', 'maintenance', 4096, 4, 100 * GiB],
          ['h2', 'normal', 8192, 16, null],
        ]);
        expect((await rejects(inv.setHostState('nope', 'down'), InventoryError)).code).toBe('not-found');
        await expect(inv.updateHostCapacity('nope', { memoryMiB: 1, vcpus: 1, storageFreeBytes: 1 })).rejects.toThrow(
          /host nope is not in the inventory/,
        );
      });
    });

    describe('VMs', () => {
      beforeEach(() => addHosts('h1', 'h2'));

      it('round-trips a VM with its disks', async () => {
        const two = vm('u1', 'h1', {
          disks: [
            { target: 'vdb', name: 'data.raw', path: '/srv/u1/data.raw', format: 'raw', sizeBytes: 5 * GiB },
            { target: 'vda', name: 'disk0.qcow2', path: '/srv/u1/disk0.qcow2', format: 'qcow2', sizeBytes: 20 * GiB },
          ],
        });
        await inv.upsertVm(two);
        const got = await inv.getVm('u1');
        expect(got).toMatchObject({ ...two, disks: [two.disks[1], two.disks[0]] });
        expect(typeof got?.updatedAt).toBe('string');

        await inv.upsertVm({ ...two, memoryMiB: 1024, disks: [] });
        expect(await inv.getVm('u1')).toMatchObject({ memoryMiB: 1024, disks: [] });
        expect(await inv.getVm('nope')).toBeNull();
      });

      it('finds by name or UUID and lists by host', async () => {
        await inv.upsertVm(vm('u1', 'h1', { name: 'web' }));
        await inv.upsertVm(vm('u2', 'h2', { name: 'web' }));
        await inv.upsertVm(vm('u3', 'h2', { name: 'db' }));
        expect((await inv.findVms('web')).map((v) => v.uuid)).toEqual(['u1', 'u2']);
        expect((await inv.findVms('u3')).map((v) => v.name)).toEqual(['db']);
        expect((await inv.listVms({ host: 'h2' })).map((v) => v.uuid)).toEqual(['u3', 'u2']);
        expect(await inv.listVms()).toHaveLength(3);
      });

      it('refuses a VM on an unknown host', async () => {
        await expect(inv.upsertVm(vm('u1', 'nope'))).rejects.toThrow(/host nope is not in the inventory/);
      });

      it('setVmPlacement moves and changes state', async () => {
        await inv.upsertVm(vm('u1', 'h1'));
        await inv.setVmPlacement('u1', 'h2', 'paused');
        expect(await inv.getVm('u1')).toMatchObject({ host: 'h2', state: 'paused' });
        await expect(inv.setVmPlacement('nope', 'h2', 'running')).rejects.toThrow(/VM nope is not in the inventory/);
        await expect(inv.setVmPlacement('u1', 'nope', 'running')).rejects.toThrow(/host nope/);
      });
    });

    describe('claims', () => {
      beforeEach(async () => {
        await addHosts('h1', 'h2', 'h3');
        await inv.upsertVm(vm('u1', 'h1'));
        await inv.upsertVm(vm('u2', 'h1'));
        await inv.upsertVm(vm('big', 'h3', { memoryMiB: 3000 })); // h3 is the fuller host
      });

      it('claims the best host and marks the VM migrating', async () => {
        const { claim, rejected } = await inv.claimTarget(request('u1'));
        expect(claim).toMatchObject({ vmUuid: 'u1', host: 'h2', sourceHost: 'h1', workflowId: 'wf-u1', storageBytes: GiB });
        expect(rejected.map((r) => r.host)).toEqual(['h1', 'h3']);
        expect(rejected[1]?.reason).toMatch(/^fits but scored lower/);
        expect((await inv.getVm('u1'))?.state).toBe('migrating');
        expect(await inv.getClaim('u1')).toEqual(claim);
        expect(await inv.listClaims()).toEqual([claim]);
      });

      it('is idempotent for the same workflow', async () => {
        const first = await inv.claimTarget(request('u1'));
        const again = await inv.claimTarget(request('u1'));
        expect(again.claim).toEqual(first.claim);
        expect(await inv.listClaims()).toHaveLength(1);
      });

      it('refuses a VM another workflow holds, naming it', async () => {
        await inv.claimTarget(request('u1'));
        const e = await rejects(inv.claimTarget(request('u1', { workflowId: 'wf-other' })), PlacementError);
        expect(e.code).toBe('vm-busy');
        expect(e.workflowId).toBe('wf-u1');
        expect(e.message).toBe(
          'vm-u1 is already being migrated to h2 by workflow wf-u1 — wait for it to finish or cancel it',
        );
      });

      it('release by the wrong workflow is a no-op; by the owner it frees the VM and host', async () => {
        const { claim } = await inv.claimTarget(request('u1'));
        await inv.releaseClaim('u1', 'wf-other');
        expect(await inv.getClaim('u1')).toEqual(claim);
        await inv.releaseClaim('u1', 'wf-u1');
        await inv.releaseClaim('u1', 'wf-u1');
        expect(await inv.getClaim('u1')).toBeNull();
        // The workflow resets the VM; a new migration can claim again.
        await inv.setVmPlacement('u1', 'h1', 'running');
        expect((await inv.claimTarget(request('u1', { workflowId: 'wf-2' }))).claim.host).toBe('h2');
      });

      it('refuses VMs in an unknown state, not on the source, unknown, or migrating without a claim', async () => {
        await inv.setVmPlacement('u1', 'h1', 'unknown');
        const unknown = await rejects(inv.claimTarget(request('u1')), PlacementError);
        expect([unknown.code, unknown.message]).toEqual([
          'vm-state',
          'vm-u1 is unknown: Ferry moves running, paused and stopped VMs — run `ferry inventory sync` to refresh its state',
        ]);

        const elsewhere = await rejects(inv.claimTarget(request('u2', { sourceHost: 'h2' })), PlacementError);
        expect(elsewhere.code).toBe('vm-state');
        expect(elsewhere.message).toMatch(/vm-u2 is on h1 according to the inventory, not on h2/);

        expect((await rejects(inv.claimTarget(request('nope')), PlacementError)).code).toBe('unknown-vm');

        await inv.setVmPlacement('u2', 'h1', 'migrating');
        expect((await rejects(inv.claimTarget(request('u2')), PlacementError)).code).toBe('vm-busy');
        expect(await inv.listClaims()).toEqual([]);
      });

      it('one inbound migration per host; a failed claim changes nothing', async () => {
        await inv.claimTarget(request('u1'));
        const second = await inv.claimTarget(request('u2'));
        expect(second.claim.host).toBe('h3');
        expect(second.rejected.find((r) => r.host === 'h2')?.reason).toBe('already receiving a migration of u1');

        await inv.upsertVm(vm('u4', 'h1'));
        // h1 already sends 2 migrations: the outbound limit (2) makes the third wait
        const limited = await rejects(inv.claimTarget(request('u4')), PlacementError);
        expect(limited.code).toBe('no-slot');
        expect(limited.message).toMatch(/h1 is already sending 2 migrations \(limit 2 per source host\)/);
        // with room in the limits, both targets that would fit are busy receiving: also a wait, not a refusal
        const busy = await rejects(
          inv.claimTarget(request('u4', { limits: { maxOutboundPerHost: 5, maxInboundPerHost: 1, maxInFlight: 5 } })),
          PlacementError,
        );
        expect(busy.code).toBe('no-slot');
        expect(busy.message).toMatch(/^waiting for a target: h2, h3 would fit vm-u4 .* but are busy receiving migrations$/);
        // the fleet limit
        const fleet = await rejects(
          inv.claimTarget(request('u4', { limits: { maxOutboundPerHost: 5, maxInboundPerHost: 5, maxInFlight: 2 } })),
          PlacementError,
        );
        expect(fleet.message).toMatch(/2 migrations are in flight in the fleet \(limit 2\)/);
        // a higher inbound limit lets h2 take a second one
        const second2 = await inv.claimTarget(request('u4', { limits: { maxOutboundPerHost: 5, maxInboundPerHost: 2, maxInFlight: 5 } }));
        expect(['h2', 'h3']).toContain(second2.claim.host);
        await inv.releaseClaim('u4', 'wf-u4');
        await inv.setVmPlacement('u4', 'h1', 'running');
        expect((await inv.getVm('u4'))?.state).toBe('running');
        expect(await inv.listClaims()).toHaveLength(2);
      });

      it('fixed target: checked, by name or address; unknown is an error', async () => {
        expect((await inv.claimTarget(request('u1', { fixedTarget: '10.0.0.3' }))).claim.host).toBe('h3');
        const busy = await rejects(inv.claimTarget(request('u2', { fixedTarget: 'h3' })), PlacementError);
        expect(busy.code).toBe('no-slot');
        expect(busy.rejected).toEqual([{ host: 'h3', reason: 'already receiving a migration of u1' }]);
        const unknown = await rejects(inv.claimTarget(request('u2', { fixedTarget: 'h9' })), PlacementError);
        expect(unknown.code).toBe('unknown-host');
      });

      it('counts VMs and claims against capacity', async () => {
        // h2: 4096 MiB; put 3584 MiB of VMs there: 512 left, exactly one more 512 MiB VM.
        await inv.upsertVm(vm('fill', 'h2', { memoryMiB: 3584 }));
        await inv.setHostState('h3', 'down');
        expect((await inv.claimTarget(request('u1'))).claim.host).toBe('h2');
        await inv.releaseClaim('u1', 'wf-u1');
        await inv.setVmPlacement('u1', 'h2', 'running');
        const e = await rejects(inv.claimTarget(request('u2')), PlacementError);
        expect(e.rejected.find((r) => r.host === 'h2')?.reason).toBe('not enough memory (needs 512 MiB): 0 B free of 4 GiB');
      });
    });

    describe('syncHost', () => {
      const cap = { memoryMiB: 16384, vcpus: 8, storageFreeBytes: 50 * GiB };

      beforeEach(async () => {
        await addHosts('h1', 'h2', 'h3');
        await inv.upsertVm(vm('keep', 'h1'));
        await inv.upsertVm(vm('change', 'h1'));
        await inv.upsertVm(vm('gone', 'h1'));
        await inv.upsertVm(vm('leaving', 'h1')); // being migrated away from h1
        await inv.upsertVm(vm('arriving', 'h2')); // being migrated to h1
        await inv.upsertVm(vm('moved', 'h2')); // moved to h1 behind Ferry's back
        await inv.upsertVm(vm('stale', 'h1', { state: 'migrating' })); // migrating without a claim
        await inv.claimTarget(request('leaving', { sourceHost: 'h1', fixedTarget: 'h3' }));
        await inv.claimTarget(request('arriving', { sourceHost: 'h2', fixedTarget: 'h1' }));
      });

      it('adds, updates, moves and removes, leaving in-flight VMs alone', async () => {
        const r = await inv.syncHost(
          'h1',
          [
            vm('keep', 'h1'),
            vm('change', 'h1', { state: 'paused', memoryMiB: 1024 }),
            vm('new', 'h1'),
            vm('moved', 'h1'),
            vm('arriving', 'h1', { state: 'paused' }), // libvirt shows the incoming domain: still in flight
          ],
          cap,
        );
        expect(r).toEqual({
          host: 'h1',
          added: ['vm-new'],
          updated: ['vm-change', 'vm-moved'],
          removed: ['vm-gone'],
          skipped: ['vm-arriving', 'vm-leaving', 'vm-stale'],
        });
        const vms = Object.fromEntries((await inv.listVms()).map((v) => [v.uuid, v]));
        expect(Object.keys(vms).sort()).toEqual(['arriving', 'change', 'keep', 'leaving', 'moved', 'new', 'stale']);
        expect(vms.change).toMatchObject({ state: 'paused', memoryMiB: 1024 });
        expect(vms.moved?.host).toBe('h1');
        expect(vms.arriving).toMatchObject({ host: 'h2', state: 'migrating' });
        expect(vms.leaving).toMatchObject({ host: 'h1', state: 'migrating' });
        expect(await inv.getHost('h1')).toMatchObject(cap);
      });

      it('replaces disk rows', async () => {
        const disks = [{ target: 'vdb', name: 'x.raw', path: '/p/x.raw', format: 'raw' as const, sizeBytes: 7 }];
        await inv.syncHost('h1', [vm('keep', 'h1', { disks })], cap);
        expect((await inv.getVm('keep'))?.disks).toEqual(disks);
      });

      it('an unchanged host is a no-op; an unknown host is an error', async () => {
        await inv.syncHost('h3', [], cap);
        expect(await inv.syncHost('h3', [], cap)).toEqual({ host: 'h3', added: [], updated: [], removed: [], skipped: [] });
        await expect(inv.syncHost('h9', [], cap)).rejects.toThrow(/host h9 is not in the inventory/);
      });
    });

    describe('history', () => {
      function row(n: number, over: Partial<HistoryRecord> = {}): HistoryRecord {
        return {
          workflowId: `wf-${n}`,
          runId: `run-${n}`,
          vmUuid: 'u1',
          vmName: 'web',
          source: 'h1',
          target: 'h2',
          result: 'migrated',
          reason: null,
          startedAt: `2025-01-0${n}T00:00:00.000Z`,
          endedAt: `2025-01-0${n}T00:01:00.000Z`,
          durationMs: 60_000,
          downtimeMs: 42,
          bytesTransferred: 5 * GiB,
          createAttempts: { 'h2:disk0.qcow2': 2 },
          phaseMs: { prepare: 1000, migrate: 58_000 },
          ...over,
        };
      }

      it('round-trips every field', async () => {
        const id = await inv.recordHistory(row(1));
        expect(await inv.listHistory()).toEqual([{ ...row(1), id }]);
      });

      it('rewrites the row of a retried (workflowId, runId)', async () => {
        const id = await inv.recordHistory(row(1));
        expect(await inv.recordHistory(row(1, { result: 'failed', reason: 'boom' }))).toBe(id);
        expect(await inv.listHistory()).toMatchObject([{ id, result: 'failed', reason: 'boom' }]);
      });

      it('filters by VM name or UUID and host as source or target, newest first, limited', async () => {
        await inv.recordHistory(row(1));
        await inv.recordHistory(row(3, { vmUuid: 'u2', vmName: 'db', source: 'h2', target: 'h3' }));
        await inv.recordHistory(row(2, { result: 'aborted', target: null, reason: 'cancelled', downtimeMs: null }));
        const ids = (rows: HistoryRecord[]): string[] => rows.map((r) => r.workflowId);
        expect(ids(await inv.listHistory())).toEqual(['wf-3', 'wf-2', 'wf-1']);
        expect(ids(await inv.listHistory({ vm: 'web' }))).toEqual(['wf-2', 'wf-1']);
        expect(ids(await inv.listHistory({ vm: 'u2' }))).toEqual(['wf-3']);
        expect(ids(await inv.listHistory({ host: 'h3' }))).toEqual(['wf-3']);
        expect(ids(await inv.listHistory({ host: 'h2' }))).toEqual(['wf-3', 'wf-1']);
        expect(ids(await inv.listHistory({ host: 'h2', vm: 'web' }))).toEqual(['wf-1']);
        expect(ids(await inv.listHistory({ limit: 2 }))).toEqual(['wf-3', 'wf-2']);
        await expect(inv.listHistory({ limit: 0 })).rejects.toThrow(/positive integer/);
      });

      it('filters by result and time range, and pages with an offset (ferry ui)', async () => {
        for (const n of [1, 2, 3, 4]) await inv.recordHistory(row(n, n === 2 ? { result: 'cancelled' } : {}));
        const ids = (rows: HistoryRecord[]): string[] => rows.map((r) => r.workflowId);
        expect(ids(await inv.listHistory({ result: 'cancelled' }))).toEqual(['wf-2']);
        expect(ids(await inv.listHistory({ since: '2025-01-02T00:00:00.000Z', until: '2025-01-04T00:00:00.000Z' }))).toEqual(['wf-3', 'wf-2']);
        expect(ids(await inv.listHistory({ limit: 2, offset: 2 }))).toEqual(['wf-2', 'wf-1']);
        await expect(inv.listHistory({ limit: 2, offset: -1 })).rejects.toThrow(/offset must be a whole number/);
      });
    });
  });
}
