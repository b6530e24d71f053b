/**
 * The `guest` suite: downtime as the guest's network clients see it, next to libvirt's figure. One Linux guest
 * (lab/linux-guest.ts: Debian kernel, busybox initramfs, 100 flushed records/s, UDP answers), defined with plain
 * virsh with its disk in the `default` pool and a NIC on the guest network that spans the hosts, migrated back and
 * forth between two lab hosts by FerryClient.migrate. The lab's prober (its own network namespace) asks it every
 * 10 ms; per migration: libvirt's `downtimeMs`, Ferry's `guestDowntimeMs` (the longest gap between two replies
 * over the migration), the workflow's duration. After the last migration the disk the VM runs on is read back:
 * every acknowledged record there, no hole, no damaged record.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FerryClient } from '../client';
import { VirshHypervisor } from '../hypervisor/virsh';
import { openInventory } from '../inventory';
import {
  guestBootDir,
  labDown,
  labGuestObserver,
  labProbeGuest,
  labUp,
  linuxGuestBoot,
  LAB_GUEST_BRIDGE,
  probeSeconds,
  recordViolations,
  verifyGuestDisk,
} from '../lab';
import { labNaming } from '../test/support/lab-naming';
import { DEFAULT_POOL_DIR, definePlainVm, ensureDefaultPool, syncPlainVms } from '../test/support/plain-vms';
import { startTemporal } from '../test/support/temporal';
import { load1, log, medRange, sleep, summarize, table } from './common';
import { startLabWorker } from './lab-worker';

export interface GuestDowntimeRun {
  direction: string;
  status: string;
  downtimeMs: number | null;
  guestDowntimeMs: number | null;
  workflowMs: number;
}

export interface GuestDowntimeResult {
  migrations: number;
  runs: GuestDowntimeRun[];
  records: { acked: number; last: number | null; holes: number; bad: number; violations: string[] };
  load: [number, number];
}

export async function guestDowntimeBench(o: { migrations: number }): Promise<GuestDowntimeResult> {
  const before = load1();
  const env = await startTemporal();
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-guest-'));
  const hv = new VirshHypervisor();
  const inv = await openInventory(path.join(home, 'inventory.db'));
  let stopWorker = async () => undefined;
  try {
    log(`guest: lab of 2 hosts, prefix ${labNaming().prefix}`);
    const lab = await labUp({ home, hosts: 2, vms: 0, ...labNaming() });
    for (const h of lab.hosts) await ensureDefaultPool(h.uri);
    const taskQueue = `ferry-bench-guest-${Date.now()}`;
    const { worker, running } = await startLabWorker(env, inv, hv, lab, taskQueue, { guestObserver: labGuestObserver(home) });
    stopWorker = async () => {
      worker.shutdown();
      await running.catch(() => undefined);
    };
    const ferry = FerryClient.fromClient(env.client, taskQueue);
    const uuid = randomUUID();
    const name = 'bench-linux';
    const ip = await labProbeGuest(home, { name, uuid });
    const linux = await linuxGuestBoot({ kind: 'linux', ip }, guestBootDir(home));
    const [h1, h2] = lab.hosts as [(typeof lab.hosts)[0], (typeof lab.hosts)[0]];
    const vm = await definePlainVm({ home, lab }, h1.name, {
      name,
      uuid,
      memoryMiB: 128,
      disks: [{ path: `${DEFAULT_POOL_DIR}/${name}.qcow2`, sizeMiB: 64, dataMiB: 0 }],
      bridge: LAB_GUEST_BRIDGE,
      linux,
    });
    await syncPlainVms(inv, { home, lab });
    while ((probeSeconds(home, name).at(-1)?.lastAck ?? -1) < 200) await sleep(250);
    const runs: GuestDowntimeRun[] = [];
    let at = h1;
    for (let i = 0; i < o.migrations; i++) {
      const to = at === h1 ? h2 : h1;
      const out = await ferry.migrate({ sourceHost: at.address, vmName: name, vmUuid: uuid, targetHost: to.name });
      const r = { direction: `${at.name}→${to.name}`, status: out.status, downtimeMs: out.downtimeMs, guestDowntimeMs: out.guestDowntimeMs, workflowMs: out.durationMs };
      runs.push(r);
      log(`  ${i + 1}/${o.migrations} ${r.direction}: ${r.status}, libvirt downtime ${r.downtimeMs} ms, guest saw ${r.guestDowntimeMs} ms, workflow ${r.workflowMs} ms`);
      if (out.status === 'migrated') at = to;
      await sleep(3000); // let the guest settle between moves (and the prober write its seconds)
    }
    const since = Date.now();
    while ((probeSeconds(home, name).at(-1)?.t ?? 0) < since) await sleep(250);
    const acked = probeSeconds(home, name).at(-1)?.lastAck ?? -1;
    const check = await verifyGuestDisk(home, at.name, vm.disks[0]!.path);
    return {
      migrations: o.migrations,
      runs,
      records: { acked, last: check.last, holes: check.holes.length, bad: check.bad, violations: recordViolations(check, acked) },
      load: [before, load1()],
    };
  } finally {
    await stopWorker();
    hv.close();
    await inv.close();
    await labDown(home, { prefix: labNaming().prefix }).catch(() => undefined);
    fs.rmSync(home, { recursive: true, force: true });
    await env.teardown();
  }
}

export function guestDowntimeMarkdown(r: GuestDowntimeResult): string {
  const ok = r.runs.filter((x) => x.status === 'migrated');
  const num = (v: (number | null)[]) => v.filter((x): x is number => x !== null);
  const stat = (v: number[]) => (v.length === 0 ? '–' : `${summarize(v).p50} ms`);
  const max = (v: number[]) => (v.length === 0 ? '–' : `${Math.max(...v)} ms`);
  const lib = num(ok.map((x) => x.downtimeMs));
  const guest = num(ok.map((x) => x.guestDowntimeMs));
  const excess = ok.flatMap((x) => (x.downtimeMs !== null && x.guestDowntimeMs !== null ? [x.guestDowntimeMs - x.downtimeMs] : []));
  return [
    `One Linux guest (Debian 6.1 cloud kernel, busybox initramfs; 128 MiB, one 64 MiB qcow2 disk in the \`default\` pool, ` +
      'defined with plain virsh; writing 100 flushed records/s) migrated live back and forth between two lab hosts ' +
      `${r.migrations} times by \`FerryClient.migrate\` (memory and disk copied, no bandwidth limit). libvirt's figure is the ` +
      "completed job's `downtime`; the guest's is the longest gap between two replies to the lab's prober, which sends a UDP " +
      'probe every 10 ms from its own network namespace across the bridge that spans the hosts (so it includes the ' +
      "switch-over, QEMU's announcement of the guest's MAC from the target and the bridges relearning it). " +
      `${ok.length} of ${r.runs.length} migrated. Load ${r.load[0]} → ${r.load[1]}.`,
    '',
    table(
      ['', 'median', 'max', 'all'],
      [
        ["libvirt's downtime", stat(lib), max(lib), lib.join(', ')],
        ['guest-observed (`guestDowntimeMs`)', stat(guest), max(guest), guest.join(', ')],
        ['guest minus libvirt', stat(excess), max(excess), excess.join(', ')],
        ['workflow', medRange(ok.map((x) => x.workflowMs)), '', ''],
      ],
    ),
    '',
    `Records on the disk the VM ran on afterwards: acknowledged up to ${r.records.acked}, the disk holds 0–${r.records.last}, ` +
      `${r.records.holes} holes, ${r.records.bad} damaged${r.records.violations.length ? ` — **${r.records.violations.join('; ')}**` : ' (every acknowledged record there)'}.`,
  ].join('\n');
}
