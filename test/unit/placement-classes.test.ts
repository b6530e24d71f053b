/**
 * Placement on large fleets (inventory.ts, place / placeByClass) chooses exactly what evaluating every
 * host chooses, and the per-host VM totals kept by the schema's triggers always equal the sums over the VMs.
 * On every backend: two inventories on one database, one that always evaluates every host
 * (fullPlacementMaxHosts: Infinity) and one that always takes the capacity-class path (0).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openInventory } from '../../inventory/index';
import { MAX_CAPACITY_CLASSES } from '../../inventory/inventory';
import { MIGRATIONS } from '../../inventory/schema';
import { PlacementError } from '../../inventory/placement';
import type { Inventory, MigrationLimits, PlacementRequest, VmUpsert } from '../../inventory/store';
import { BACKENDS, freshDatabase, skipBackend, type TestDatabase } from '../support/inventory-backends';
import { prng } from '../support/prng';

const GiB = 1024 ** 3;


function vm(uuid: string, host: string, memoryMiB: number, vcpus: number, state: VmUpsert['state'] = 'running'): VmUpsert {
  return {
    uuid,
    name: `vm-${uuid}`,
    host,
    memoryMiB,
    vcpus,
    state,
    disks: [{ target: 'vda', name: 'disk0.qcow2', path: `/var/lib/libvirt/images/ferry/${uuid}/disk0.qcow2`, format: 'qcow2', sizeBytes: GiB }],
  };
}

for (const backend of BACKENDS) {
  describe.skipIf(skipBackend(backend))(`placement by capacity class (${backend})`, () => {
    let db: TestDatabase;
    let full: Inventory;
    let byClass: Inventory;

    beforeEach(async () => {
      db = await freshDatabase(backend);
      full = await openInventory(db.location, { fullPlacementMaxHosts: Number.MAX_SAFE_INTEGER });
      byClass = await openInventory(db.location, { fullPlacementMaxHosts: 0 });
    });

    afterEach(async () => {
      await full?.close();
      await byClass?.close();
      await db?.drop();
    });

    async function expectTotalsMatch(): Promise<void> {
      const kept = await db.query<{ name: string; m: number | string; c: number | string }>(
        'SELECT name, vm_memory_mib AS m, vm_vcpus AS c FROM hosts ORDER BY name',
      );
      const summed = await db.query<{ host: string; m: number | string; c: number | string }>(
        'SELECT host, SUM(memory_mib) AS m, SUM(vcpus) AS c FROM vms GROUP BY host',
      );
      const sums = new Map(summed.map((r) => [r.host, [Number(r.m), Number(r.c)]]));
      for (const r of kept) expect([r.name, Number(r.m), Number(r.c)]).toEqual([r.name, ...(sums.get(r.name) ?? [0, 0])]);
    }

    /** Claims with `inv`, then undoes the claim; the chosen host, or the refusal's code and message. */
    async function choose(inv: Inventory, req: PlacementRequest): Promise<string> {
      try {
        const { claim } = await inv.claimTarget(req);
        await inv.releaseClaim(claim.vmUuid, claim.workflowId);
        await inv.setVmPlacement(claim.vmUuid, req.sourceHost, 'running');
        return claim.host;
      } catch (err) {
        if (err instanceof PlacementError) return `${err.code}: ${err.message}`;
        throw err;
      }
    }

    async function fleet(seed: number, hosts: number, classes: number): Promise<{ vms: VmUpsert[]; hostNames: string[] }> {
      const rnd = prng(seed);
      const sizes = Array.from({ length: classes }, (_, i) => ({
        memoryMiB: 8192 * (1 + (i % 4)) + 1024 * Math.floor(i / 4),
        vcpus: [8, 16, 32][i % 3]!,
        memoryRatio: i % 5 === 4 ? 1.5 : 1,
      }));
      const hostNames: string[] = [];
      for (let i = 0; i < hosts; i++) {
        const s = sizes[Math.floor(rnd() * sizes.length)]!;
        const r = rnd();
        const name = `h${String(i).padStart(3, '0')}`;
        hostNames.push(name);
        await full.addHost({
          name,
          address: `10.1.${Math.floor(i / 250)}.${i % 250}`,
          uri: `qemu+tcp://10.1.${Math.floor(i / 250)}.${i % 250}/system`,
          memoryMiB: r < 0.03 ? 0 : s.memoryMiB, // never synced
          vcpus: s.vcpus,
          memoryRatio: s.memoryRatio,
          storageFreeBytes: r > 0.97 ? null : rnd() < 0.05 ? 2 * GiB : 500 * GiB,
          state: r > 0.03 && r < 0.07 ? 'maintenance' : r > 0.07 && r < 0.09 ? 'down' : 'normal',
        });
      }
      const vms: VmUpsert[] = [];
      for (let i = 0; i < hosts * 4; i++) {
        const host = hostNames[Math.floor(rnd() * hostNames.length)]!;
        const v = vm(`u${i}`, host, [512, 1024, 2048, 4096][Math.floor(rnd() * 4)]!, 1 + Math.floor(rnd() * 4), rnd() < 0.05 ? 'stopped' : 'running');
        await full.upsertVm(v);
        vms.push(v);
      }
      return { vms, hostNames };
    }

    async function compareMany(seed: number, vms: VmUpsert[], hostNames: string[], trials: number): Promise<number> {
      const rnd = prng(seed + 1);
      const running = vms.filter((v) => v.state === 'running');
      // Migrations in flight, so that busy hosts and the limits take part.
      const held = running.slice(0, 3);
      const limits: MigrationLimits = { maxOutboundPerHost: 10, maxInboundPerHost: 2, maxInFlight: 20 };
      for (const h of held) await full.claimTarget({ vmUuid: h.uuid, sourceHost: h.host, workflowId: `held-${h.uuid}`, memoryMiB: h.memoryMiB, vcpus: h.vcpus, storageBytes: GiB, limits });
      let placed = 0;
      for (let k = 0; k < trials; k++) {
        const v = running[3 + Math.floor(rnd() * (running.length - 3))]!;
        const req: PlacementRequest = {
          vmUuid: v.uuid,
          sourceHost: v.host,
          workflowId: `wf-${k}`,
          // sometimes far more than the VM has, so that some requests fit nowhere
          memoryMiB: rnd() < 0.1 ? 40_000 : v.memoryMiB,
          vcpus: v.vcpus,
          storageBytes: rnd() < 0.1 ? 100 * GiB : GiB,
          ...(rnd() < 0.5 ? { limits: rnd() < 0.5 ? limits : { ...limits, maxInboundPerHost: 1 } } : {}),
          ...(rnd() < 0.05 ? { fixedTarget: hostNames[Math.floor(rnd() * hostNames.length)]! } : {}),
        };
        const a = await choose(full, req);
        const b = await choose(byClass, req);
        expect(b, JSON.stringify(req)).toBe(a);
        if (!a.includes(':')) placed++;
      }
      return placed;
    }

    it('chooses what evaluating every host chooses (few classes, busy hosts, refusals)', async () => {
      const { vms, hostNames } = await fleet(7, 120, 6);
      await expectTotalsMatch();
      const placed = await compareMany(7, vms, hostNames, 150);
      expect(placed).toBeGreaterThan(50);
    });

    it(`falls back to evaluating every host beyond ${MAX_CAPACITY_CLASSES} capacity classes, with the same choice`, async () => {
      const { vms, hostNames } = await fleet(11, 150, MAX_CAPACITY_CLASSES + 20);
      const placed = await compareMany(11, vms, hostNames, 40);
      expect(placed).toBeGreaterThan(10);
    });

    it('ties go to the higher vCPU fraction, then to the name, as before', async () => {
      for (const name of ['hc', 'ha', 'hb', 'src']) {
        await full.addHost({ name, address: name, uri: `qemu+tcp://${name}/system`, memoryMiB: 8192, vcpus: 8, storageFreeBytes: 100 * GiB });
      }
      await full.upsertVm(vm('x', 'src', 1024, 1));
      await full.upsertVm(vm('c1', 'hc', 1024, 1));
      await full.upsertVm(vm('a1', 'ha', 1024, 2));
      await full.upsertVm(vm('b1', 'hb', 1024, 1));
      const req = { vmUuid: 'x', sourceHost: 'src', workflowId: 'wf', memoryMiB: 1024, vcpus: 1, storageBytes: GiB };
      expect(await choose(byClass, req)).toBe('hb'); // hb and hc tie on both fractions: the name decides
      expect(await choose(full, req)).toBe('hb');
      const { rejected } = await byClass.claimTarget(req);
      expect(rejected).toEqual([]); // one class: its best host is the only one read
    });

    it('an inventory of schema version 1 gets its totals computed when it is opened', async () => {
      const v1 = await freshDatabase(backend);
      try {
        await v1.run('CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)');
        for (const sql of MIGRATIONS[0]!.statements(backend)) await v1.run(sql);
        await v1.run("INSERT INTO schema_version VALUES (1, 'v1', '2026-01-01T00:00:00Z')");
        for (const h of ['a', 'b', 'c']) {
          await v1.run("INSERT INTO hosts (name, address, uri, updated_at) VALUES (?, ?, 'qemu+tcp://x/system', 'now')", [h, `addr-${h}`]);
        }
        for (const [i, h] of ['a', 'a', 'b'].entries()) {
          await v1.run("INSERT INTO vms (uuid, name, host, memory_mib, vcpus, state, updated_at) VALUES (?, ?, ?, ?, ?, 'running', 'now')", [
            `v${i}`,
            `v${i}`,
            h,
            1000 + i,
            1 + i,
          ]);
        }
        const inv = await openInventory(v1.location);
        await inv.close();
        const rows = await v1.query<{ name: string; m: number | string; c: number | string }>(
          'SELECT name, vm_memory_mib AS m, vm_vcpus AS c FROM hosts ORDER BY name',
        );
        expect(rows.map((r) => [r.name, Number(r.m), Number(r.c)])).toEqual([
          ['a', 2001, 3],
          ['b', 1002, 3],
          ['c', 0, 0],
        ]);
      } finally {
        await v1.drop();
      }
    });

    it('keeps the per-host VM totals right through every kind of write', async () => {
      const { vms, hostNames } = await fleet(3, 30, 3);
      const rnd = prng(99);
      for (let k = 0; k < 60; k++) {
        const v = vms[Math.floor(rnd() * vms.length)]!;
        const to = hostNames[Math.floor(rnd() * hostNames.length)]!;
        const op = k % 4;
        if (op === 0) {
          // the VM may have been removed by an earlier sync of its host
          if ((await full.getVm(v.uuid)) !== null) await full.setVmPlacement(v.uuid, to, 'running');
        }
        else if (op === 1) await full.upsertVm({ ...v, host: to, memoryMiB: v.memoryMiB * 2, vcpus: v.vcpus + 1 });
        else if (op === 2) await full.syncHost(to, [], { memoryMiB: 16384, vcpus: 16, storageFreeBytes: 100 * GiB }); // removes its VMs
        else await full.upsertVm(vm(`new${k}`, to, 768, 3));
      }
      await expectTotalsMatch();
      await full.removeHost(hostNames[0]!);
      await expectTotalsMatch();
    });
  });
}
