/**
 * Concurrent placements never over-commit a host nor give one host two inbound migrations: 20 claims at
 * once, in one process (two Inventory instances on the same file) and from 4 processes, against two small
 * target hosts that each have room for exactly 3 of the VMs. Each round claims every VM still on the
 * source at once; exactly 2 claims can win (one per target host); the winners are then "migrated"
 * (claim released, VM placed on the target) and the next round starts. After 3 rounds both targets are
 * full and the 4th round places nothing.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openInventory } from '../../inventory/index';
import type { Inventory } from '../../inventory/store';
import { claimAll, type ChildMessage, type ClaimOutcome, type ParentMessage } from '../support/inventory-claims';

const GiB = 1024 ** 3;
const VMS = Array.from({ length: 20 }, (_, i) => `vm${String(i).padStart(2, '0')}`);
const TARGETS = ['t1', 't2'];

let dir: string;
let file: string;
let inv: Inventory;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-conc-'));
  file = join(dir, 'inventory.db');
  inv = await openInventory(file);
  await inv.addHost({ name: 'src', address: '10.0.0.1', uri: 'qemu+tcp://10.0.0.1/system', memoryMiB: 65536, vcpus: 64, storageFreeBytes: 1000 * GiB });
  for (const [i, name] of TARGETS.entries()) {
    // 1536 MiB = exactly three 512 MiB VMs; vCPUs and storage are plentiful.
    await inv.addHost({ name, address: `10.0.1.${i}`, uri: `qemu+tcp://10.0.1.${i}/system`, memoryMiB: 1536, vcpus: 4, storageFreeBytes: 100 * GiB });
  }
  for (const uuid of VMS) {
    await inv.upsertVm({ uuid, name: uuid, host: 'src', memoryMiB: 512, vcpus: 1, state: 'running', disks: [] });
  }
});

afterEach(async () => {
  await inv.close();
  rmSync(dir, { recursive: true, force: true });
});

async function expectNoOvercommit(): Promise<void> {
  const vms = await inv.listVms();
  const claims = await inv.listClaims();
  for (const h of await inv.listHosts()) {
    const mem =
      vms.filter((v) => v.host === h.name).reduce((s, v) => s + v.memoryMiB, 0) +
      claims.filter((c) => c.host === h.name).reduce((s, c) => s + c.memoryMiB, 0);
    expect(mem, `memory on ${h.name}`).toBeLessThanOrEqual(h.memoryMiB * h.memoryRatio);
    expect(claims.filter((c) => c.host === h.name).length, `inbound on ${h.name}`).toBeLessThanOrEqual(1);
  }
}

async function runRounds(claim: (vms: string[]) => Promise<ClaimOutcome[]>): Promise<void> {
  let pending = [...VMS];
  for (let round = 1; round <= 4; round++) {
    const outcomes = await claim(pending);
    expect(outcomes.map((o) => o.vm).sort()).toEqual(pending);
    const won = outcomes.filter((o) => o.host !== null);
    // losers wait (a target busy, or the source's outbound limit of 2) while targets have room; then none fits
    const lost = outcomes.filter((o) => o.host === null).map((o) => o.code);
    expect(lost.every((c) => c === (round <= 3 ? 'no-slot' : 'no-host')), `round ${round}: ${lost.join(',')}`).toBe(true);
    expect(won.map((o) => o.host).sort(), `round ${round}`).toEqual(round <= 3 ? TARGETS : []);
    const claims = await inv.listClaims();
    expect(claims.map((c) => c.vmUuid).sort()).toEqual(won.map((o) => o.vm).sort());
    await expectNoOvercommit();

    for (const w of won) {
      await inv.releaseClaim(w.vm, `wf-${w.vm}`);
      await inv.setVmPlacement(w.vm, w.host ?? '', 'running');
    }
    pending = pending.filter((vm) => !won.some((w) => w.vm === vm));
  }
  for (const t of TARGETS) expect(await inv.listVms({ host: t })).toHaveLength(3);
  expect(await inv.listVms({ host: 'src' })).toHaveLength(14);
}

describe('concurrent claims', () => {
  it('in one process (Promise.all over two Inventory instances on the same file)', async () => {
    const other = await openInventory(file);
    try {
      await runRounds(async (vms) => {
        const halves = [vms.filter((_, i) => i % 2 === 0), vms.filter((_, i) => i % 2 === 1)];
        const [a, b] = await Promise.all([claimAll(inv, halves[0] ?? [], 'src'), claimAll(other, halves[1] ?? [], 'src')]);
        return [...a, ...b];
      });
    } finally {
      await other.close();
    }
  });

  it('from 4 processes', async () => {
    const children: ChildProcess[] = [];
    const exited: Promise<void>[] = [];
    try {
      const ready: Promise<void>[] = [];
      for (let i = 0; i < 4; i++) {
        const child = fork(resolve('test/support/inventory-claim-child.ts'), [file], {
          execArgv: ['--require', resolve('test/support/register-ts.cjs')],
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

      await runRounds(async (vms) => {
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
              const msg: ParentMessage = { type: 'claim', vms: vms.filter((_, j) => j % 4 === i), sourceHost: 'src' };
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
  }, 60_000);
});
