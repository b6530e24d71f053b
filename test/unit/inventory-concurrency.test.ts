/**
 * Concurrent placements never over-commit a host nor exceed its inbound limit, on every backend (SQLite
 * and PostgreSQL: test/support/inventory-backends.ts), whether the claims race inside one process or from
 * 4 processes each with its own connection(s).
 *
 * rounds: 20 claims at once against two small target hosts that each have room for exactly 3 of the VMs.
 *   Each round claims every VM still on the source at once; exactly 2 claims can win (one per target
 *   host); the winners are then "migrated" (claim released, VM placed on the target) and the next round
 *   starts. After 3 rounds both targets are full and the 4th round places nothing.
 * drain: 40 VMs on 8 hosts in maintenance, one small target with room for exactly 3, the outbound and
 *   fleet limits out of the way: 40 claims at once from 4 processes. Only the target's capacity (or its
 *   inbound limit) decides: exactly 3 (or 1) win, which no claim can see without the others' commits.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { fork, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import type { MigrationLimits } from '../../common/limits';
import { openInventory } from '../../inventory/index';
import type { Inventory } from '../../inventory/store';
import { BACKENDS, freshDatabase, skipBackend, type TestDatabase } from '../support/inventory-backends';
import {
  claimAll,
  type ChildMessage,
  type ClaimAsk,
  type ClaimOutcome,
  type ParentMessage,
} from '../support/inventory-claims';

const GiB = 1024 ** 3;
const VMS = Array.from({ length: 20 }, (_, i) => `vm${String(i).padStart(2, '0')}`);
const TARGETS = ['t1', 't2'];
const DRAIN_SOURCES = Array.from({ length: 8 }, (_, i) => `s${i}`);
const DRAIN_VMS = DRAIN_SOURCES.flatMap((s) => Array.from({ length: 5 }, (_, j) => `${s}-vm${j}`));
const sourceOfDrainVm = (vm: string): string => vm.split('-')[0] ?? '';

let db: TestDatabase;
let inv: Inventory;

async function expectNoOvercommit(maxInbound: number): Promise<void> {
  const vms = await inv.listVms();
  const claims = await inv.listClaims();
  for (const h of await inv.listHosts()) {
    const mem =
      vms.filter((v) => v.host === h.name).reduce((s, v) => s + v.memoryMiB, 0) +
      claims.filter((c) => c.host === h.name).reduce((s, c) => s + c.memoryMiB, 0);
    expect(mem, `memory on ${h.name}`).toBeLessThanOrEqual(h.memoryMiB * h.memoryRatio);
    expect(claims.filter((c) => c.host === h.name).length, `inbound on ${h.name}`).toBeLessThanOrEqual(maxInbound);
  }
}

/** "Migrates" the winners: claim released, VM running on its target. */
async function land(won: readonly ClaimOutcome[]): Promise<void> {
  for (const w of won) {
    await inv.releaseClaim(w.vm, `wf-${w.vm}`);
    await inv.setVmPlacement(w.vm, w.host ?? '', 'running');
  }
}

async function runRounds(claim: (asks: ClaimAsk[]) => Promise<ClaimOutcome[]>): Promise<void> {
  let pending = [...VMS];
  for (let round = 1; round <= 4; round++) {
    const outcomes = await claim(pending.map((vm) => ({ vm, sourceHost: 'src' })));
    expect(outcomes.map((o) => o.vm).sort()).toEqual(pending);
    const won = outcomes.filter((o) => o.host !== null);
    // losers wait (a target busy, or the source's outbound limit of 2) while targets have room; then none fits
    const lost = outcomes.filter((o) => o.host === null).map((o) => o.code);
    expect(lost.every((c) => c === (round <= 3 ? 'no-slot' : 'no-host')), `round ${round}: ${lost.join(',')}`).toBe(true);
    expect(won.map((o) => o.host).sort(), `round ${round}`).toEqual(round <= 3 ? TARGETS : []);
    const claims = await inv.listClaims();
    expect(claims.map((c) => c.vmUuid).sort()).toEqual(won.map((o) => o.vm).sort());
    await expectNoOvercommit(1);
    await land(won);
    pending = pending.filter((vm) => !won.some((w) => w.vm === vm));
  }
  for (const t of TARGETS) expect(await inv.listVms({ host: t })).toHaveLength(3);
  expect(await inv.listVms({ host: 'src' })).toHaveLength(14);
}

/** Forks `n` claim children on the inventory, runs `body` with a function that fans asks out to them. */
async function withChildren(
  n: number,
  body: (claim: (asks: ClaimAsk[], limits?: MigrationLimits) => Promise<ClaimOutcome[]>) => Promise<void>,
): Promise<void> {
  const children: ChildProcess[] = [];
  const exited: Promise<void>[] = [];
  try {
    const ready: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const child = fork(resolve('test/support/inventory-claim-child.ts'), [], {
        execArgv: ['--require', resolve('test/support/register-ts.cjs')],
        env: { ...process.env, FERRY_TEST_INVENTORY: db.location },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.push(child);
      exited.push(new Promise((res) => child.once('exit', () => res())));
      ready.push(
        new Promise((res, rej) => {
          child.once('error', rej);
          child.once('exit', (code) => rej(new Error(`child exited early with code ${code}`)));
          child.once('message', (m: ChildMessage) => (m.type === 'ready' ? res() : rej(new Error('unexpected message'))));
        }),
      );
    }
    await Promise.all(ready);

    await body(async (asks, limits) => {
      const answers = children.map(
        (child, i) =>
          new Promise<ClaimOutcome[]>((res, rej) => {
            const onExit = (code: number | null): void => rej(new Error(`child ${i} died (exit code ${code})`));
            child.once('exit', onExit);
            child.once('message', (m: ChildMessage) => {
              child.off('exit', onExit);
              if (m.type === 'result') res(m.results);
              else rej(new Error(`unexpected message ${m.type}`));
            });
            const msg: ParentMessage = { type: 'claim', asks: asks.filter((_, j) => j % n === i), ...(limits ? { limits } : {}) };
            child.send(msg);
          }),
      );
      return (await Promise.all(answers)).flat();
    });
  } finally {
    for (const child of children) {
      if (child.connected) child.send({ type: 'exit' } satisfies ParentMessage);
    }
    const timer = setTimeout(() => children.forEach((c) => c.kill()), 10_000);
    await Promise.all(exited);
    clearTimeout(timer);
  }
}

for (const backend of BACKENDS) {
  describe.skipIf(skipBackend(backend))(`concurrent claims on ${backend}`, () => {
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

    describe('rounds: one source, two small targets', () => {
      beforeEach(async () => {
        await inv.addHost({ name: 'src', address: '10.0.0.1', uri: 'qemu+tcp://10.0.0.1/system', memoryMiB: 65536, vcpus: 64, storageFreeBytes: 1000 * GiB });
        for (const [i, name] of TARGETS.entries()) {
          // 1536 MiB = exactly three 512 MiB VMs; vCPUs and storage are plentiful.
          await inv.addHost({ name, address: `10.0.1.${i}`, uri: `qemu+tcp://10.0.1.${i}/system`, memoryMiB: 1536, vcpus: 4, storageFreeBytes: 100 * GiB });
        }
        for (const uuid of VMS) {
          await inv.upsertVm({ uuid, name: uuid, host: 'src', memoryMiB: 512, vcpus: 1, state: 'running', disks: [] });
        }
      });

      it('in one process (Promise.all over two Inventory instances on the same database)', async () => {
        const other = await openInventory(db.location);
        try {
          await runRounds(async (asks) => {
            const halves = [asks.filter((_, i) => i % 2 === 0), asks.filter((_, i) => i % 2 === 1)];
            const [a, b] = await Promise.all([claimAll(inv, halves[0] ?? []), claimAll(other, halves[1] ?? [])]);
            return [...a, ...b];
          });
        } finally {
          await other.close();
        }
      });

      it('from 4 processes', () => withChildren(4, (claim) => runRounds((asks) => claim(asks))), 60_000);
    });

    describe('drain: 40 VMs from 8 hosts in maintenance into one small host', () => {
      const asks = DRAIN_VMS.map((vm) => ({ vm, sourceHost: sourceOfDrainVm(vm) }));

      beforeEach(async () => {
        for (const [i, name] of DRAIN_SOURCES.entries()) {
          await inv.addHost({ name, address: `10.0.2.${i}`, uri: `qemu+tcp://10.0.2.${i}/system`, memoryMiB: 65536, vcpus: 64, storageFreeBytes: 1000 * GiB });
        }
        for (const vm of DRAIN_VMS) {
          await inv.upsertVm({ uuid: vm, name: vm, host: sourceOfDrainVm(vm), memoryMiB: 512, vcpus: 1, state: 'running', disks: [] });
        }
        for (const name of DRAIN_SOURCES) await inv.setHostState(name, 'maintenance');
        await inv.addHost({ name: 'small', address: '10.0.3.1', uri: 'qemu+tcp://10.0.3.1/system', memoryMiB: 1536, vcpus: 64, storageFreeBytes: 1000 * GiB });
      });

      it('capacity decides: exactly 3 of 40 claims from 4 processes win, then the host is full', () =>
        withChildren(4, async (claim) => {
          const limits = { maxOutboundPerHost: 100, maxInboundPerHost: 100, maxInFlight: 100 };
          const first = await claim(asks, limits);
          const won = first.filter((o) => o.host !== null);
          expect(won.map((o) => o.host)).toEqual(['small', 'small', 'small']);
          expect(first.filter((o) => o.host === null).every((o) => o.code === 'no-host' || o.code === 'no-slot')).toBe(true);
          expect((await inv.listClaims()).map((c) => c.vmUuid).sort()).toEqual(won.map((o) => o.vm).sort());
          await expectNoOvercommit(100);

          await land(won);
          const rest = asks.filter((a) => !won.some((w) => w.vm === a.vm));
          const second = await claim(rest, limits);
          expect(second.every((o) => o.host === null && o.code === 'no-host')).toBe(true);
          expect(await inv.listClaims()).toEqual([]);
          expect(await inv.listVms({ host: 'small' })).toHaveLength(3);
          await expectNoOvercommit(100);
        }), 60_000);

      it('one inbound migration per host: exactly 1 of 40 claims from 4 processes wins', () =>
        withChildren(4, async (claim) => {
          const outcomes = await claim(asks, { maxOutboundPerHost: 100, maxInboundPerHost: 1, maxInFlight: 100 });
          expect(outcomes.filter((o) => o.host !== null).map((o) => o.host)).toEqual(['small']);
          expect(outcomes.filter((o) => o.host === null).every((o) => o.code === 'no-slot')).toBe(true);
          expect(await inv.listClaims()).toHaveLength(1);
          await expectNoOvercommit(1);
          expect((await inv.listVms()).filter((v) => v.state === 'migrating')).toHaveLength(1);
        }), 60_000);
    });
  });
}
