/**
 * Security on a real TLS lab (issue 12): every libvirtd listens with TLS only and wants a client certificate of
 * the lab CA; QEMU's migration TLS is configured on every host (`ferry lab up --tls`, lab/pki.ts).
 *   - plain TCP to a TLS-only host is refused; a client certificate of another CA is refused by the host;
 *   - a live migration over qemu+tls with its disk copied is encrypted by default (streamEncrypted), and a packet
 *     capture on the source's wire never sees the guest's bytes nor QEMU's stream magic — which it does see in
 *     the same migration with encryptStream false;
 *   - post-copy with --tls and a copied disk completes (libvirt 9.0 / QEMU 7.2 allow it: README "Security");
 *   - the one impossible input combination (requireSecure with encryptStream false) is refused, nothing created;
 *   - no key material in the progress query, results, errors, the workflow histories or the hosts' logs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MigrationReport } from '../../common/migration';
import { InputError } from '../../common/validation';
import { LibvirtError } from '../../hypervisor/errors';
import { syncInventory } from '../../inventory/sync';
import { labAddVm, labClientPkiDir, labHostDir, makeForeignClientPki, type LabVm } from '../../lab';
import { canRunLab, startLabHarness, storageEntries, whereRuns, type LabHarness } from '../support/lab-harness';
import { libvirtRejection } from '../support/libvirt-rejection';
import { eventually } from '../support/temporal';
import { sniffWire } from '../support/wire-sniffer';

/** A guest whose boot sector (on its disk, and in its memory at 0x7c00) holds this text (lab/guest/dirty.s). */
const MARKER = 'ferry-dirty';
/** 8 MiB rewritten at 1 MiB/s: converges at once. */
const QUIET = { kind: 'dirty' as const, regionMiB: 8, pagesPerSec: 256 };
/** 16 MiB at 20 MiB/s over a 10 MiB/s link: never converges, post-copy finishes it. */
const BUSY = { kind: 'dirty' as const, regionMiB: 16, pagesPerSec: 5_120 };

describe.skipIf(!canRunLab)('TLS lab: certificates, encrypted streams, refusals', () => {
  let h: LabHarness;
  let marked: LabVm;
  let busy: LabVm;
  /** Everything Ferry showed during the tests: scanned for key material at the end. */
  const shown: string[] = [];
  const workflowIds: string[] = [];
  const h1 = () => h.lab.hosts[0]!;
  const h2 = () => h.lab.hosts[1]!;

  beforeAll(async () => {
    h = await startLabHarness({ hosts: 2, vms: 0, tls: true });
    marked = await labAddVm(h.home, { name: 'marked', guest: QUIET });
    busy = await labAddVm(h.home, { name: 'busy', guest: BUSY });
    const [r] = await syncInventory(h.inventory, h.hv, { hosts: [h1().name] });
    expect(r?.error).toBeUndefined();
  }, 300_000);

  afterAll(async () => {
    await h?.stop();
  }, 120_000);

  it('hosts are qemu+tls only: plain TCP is refused, and so is a client certificate of another CA', async () => {
    expect(h.lab.tls).toBe(true);
    for (const host of h.lab.hosts) expect(host.uri).toBe(`qemu+tls://${host.address}/system?pkipath=${labClientPkiDir(h.home)}`);

    const plain = await libvirtRejection(h.hv.hostCapacity(`qemu+tcp://${h1().address}/system`, '/'));
    expect(plain.kind).toBe('connection');
    expect(plain.message).toMatch(/connection refused/);
    shown.push(plain.message);

    const foreign = await makeForeignClientPki(h.home, path.join(h.home, 'foreign-pki'));
    const refused = await libvirtRejection(h.hv.hostCapacity(`qemu+tls://${h1().address}/system?pkipath=${foreign}`, '/'));
    expect(refused).toBeInstanceOf(LibvirtError);
    expect(refused.kind).toBe('tls');
    expect(refused.retryable).toBe(false);
    expect(refused.message).toMatch(/refused the TLS client certificate/);
    shown.push(refused.message, refused.stderr);
    // the host is the one that refused it
    const log = fs.readFileSync(path.join(labHostDir(h.home, h1().name), 'log', 'libvirtd.log'), 'utf8');
    expect(log).toMatch(/Failed to verify peer's certificate/);

    // Ferry's own certificate works
    expect((await h.hv.hostCapacity(h1().uri, '/')).cpus).toBeGreaterThan(0);
  });

  async function migrateWatched(vm: LabVm, from: string, extra: Record<string, unknown>) {
    const sniffer = await sniffWire(`${h1().name}-v`, [MARKER, 'QEVM']);
    const source = h.lab.hosts.find((x) => x.name === from)!;
    const started = Date.now();
    const handle = await h.ferry.startMigration({ sourceHost: source.address, vmName: vm.name, vmUuid: vm.uuid, ...extra });
    workflowIds.push(handle.workflowId);
    const progress = await eventually(async () => {
      const p = await handle.progress();
      return p.phase === 'migrating' ? p : null;
    }, 60_000, 50);
    shown.push(JSON.stringify(progress));
    const r = await handle.outcome();
    const ms = Date.now() - started;
    const wire = await sniffer.stop();
    shown.push(JSON.stringify(r));
    return { r, ms, wire, progress };
  }

  it('a live migration over qemu+tls with its disk copied is encrypted: nothing of the guest on the wire', async () => {
    const enc = await migrateWatched(marked, h1().name, {});
    console.log(`encrypted: ${enc.r.status} in ${enc.ms} ms (migration ${enc.r.migrationMs} ms), ${enc.wire.frames} frames, ${JSON.stringify(enc.wire.counts)}`);
    expect(enc.r).toMatchObject({ status: 'migrated', target: h2().name, streamEncrypted: true, mode: 'live' });
    expect(enc.r.disks).toEqual([expect.objectContaining({ target: 'vda', layout: 'copied' })]);
    expect(enc.progress.streamEncrypted).toBe(true);
    expect(await whereRuns(h, marked.uuid)).toEqual([h2().name]);
    expect(enc.wire.frames).toBeGreaterThan(1000); // the copy did pass this wire
    expect(enc.wire.counts).toEqual({ [MARKER]: 0, QEVM: 0 });

    // The same VM back without encryption: the capture does see the guest (so the zero above means something).
    const plain = await migrateWatched(marked, h2().name, { encryptStream: false });
    console.log(`not encrypted: ${plain.r.status} in ${plain.ms} ms (migration ${plain.r.migrationMs} ms), ${plain.wire.frames} frames, ${JSON.stringify(plain.wire.counts)}`);
    expect(plain.r).toMatchObject({ status: 'migrated', target: h1().name, streamEncrypted: false });
    expect(plain.wire.counts[MARKER]).toBeGreaterThan(0);
    expect(plain.wire.counts['QEVM']).toBeGreaterThan(0);
  });

  it('post-copy with --tls and a copied disk completes (the deadline switches it after the disk copy)', async () => {
    const r: MigrationReport = await h.ferry.migrate({
      sourceHost: h1().address,
      vmName: busy.name,
      vmUuid: busy.uuid,
      bandwidthMiBps: 10,
      encryptStream: true,
      convergence: { progressTimeout: '8s', postCopy: true, onDeadline: 'post-copy' },
    });
    console.log(`post-copy over TLS: ${r.status} in ${r.durationMs} ms (migration ${r.migrationMs} ms), limit ${r.limitFired?.limit}→${r.limitFired?.action}`);
    workflowIds.push(r.workflowId);
    shown.push(JSON.stringify(r));
    expect(r).toMatchObject({ status: 'migrated', streamEncrypted: true, target: h2().name });
    expect(r.limitFired).toMatchObject({ action: 'post-copy' });
    expect(await whereRuns(h, busy.uuid)).toEqual([h2().name]);
  }, 180_000);

  it('requireSecure with encryptStream false is refused before anything is created', async () => {
    const before = storageEntries(h.home, h2().name);
    const err = await h.ferry
      .startMigration({ sourceHost: h1().address, vmName: marked.name, vmUuid: marked.uuid, requireSecure: true, encryptStream: false })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/requireSecure demands an encrypted migration stream: drop encryptStream: false/);
    shown.push((err as Error).message);
    expect(storageEntries(h.home, h2().name)).toEqual(before);
    expect(await h.inventory.getClaim(marked.uuid)).toBeNull();
    expect(await whereRuns(h, marked.uuid)).toEqual([h1().name]);
  });

  it('no key material in the progress query, results, errors, workflow histories or the hosts\' logs', async () => {
    const keyFiles = [
      path.join(labClientPkiDir(h.home), 'clientkey.pem'),
      ...h.lab.hosts.map((x) => path.join(labHostDir(h.home, x.name), 'pki', 'libvirt', 'private', 'serverkey.pem')),
      path.join(h.home, 'lab', 'pki', 'ca', 'cakey.pem'),
    ];
    // every base64 line of every private key (64 characters; the last one shorter)
    const secrets = keyFiles.flatMap((f) =>
      fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----')),
    );
    expect(secrets.length).toBeGreaterThanOrEqual(keyFiles.length);
    const histories = await Promise.all(workflowIds.map(async (id) => JSON.stringify(await h.env.client.workflow.getHandle(id).fetchHistory())));
    const logs = h.lab.hosts.flatMap((x) => {
      const dir = path.join(labHostDir(h.home, x.name), 'log');
      const files = [path.join(dir, 'libvirtd.log'), path.join(dir, 'libvirtd.stdout.log')];
      const qemu = path.join(dir, 'qemu');
      if (fs.existsSync(qemu)) files.push(...fs.readdirSync(qemu).map((f) => path.join(qemu, f)));
      return files.filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f, 'utf8'));
    });
    const history = JSON.stringify(await h.inventory.listHistory({}));
    const everything = [...shown, ...histories, ...logs, history];
    expect(histories.length).toBe(workflowIds.length);
    for (const text of everything) {
      expect(text).not.toContain('PRIVATE KEY');
      for (const s of secrets) expect(text.includes(s)).toBe(false);
    }
  });
});
