/**
 * Issue 15's acceptance on the real lab: storage ownership by provenance and shared-storage detection, on VMs
 * defined with plain virsh the way operators define them (test/support/plain-vms.ts), NOT lab VMs:
 *
 *   (a) virt-install's flat `default` pool at /var/lib/libvirt/images holding several VMs' disks;
 *   (b) a directory shared by two hosts (bind mounts inside their mount namespaces, a `shared` pool on each):
 *       migrated without copying the disk; abort (a mixed VM whose local disk cannot be created), timeout and
 *       operator cancel leave the shared file in place and intact and the VM on its source;
 *   (c) a mixed VM (one shared disk, one local): only the local one is copied;
 *   (d) someone else's same-name volume on the target: never touched; a fixed target is refused, automatic
 *       placement picks another host;
 *   (e) a qcow2 backing chain: flattened on the target, the base left alone on the source.
 *
 * 3-host lab (startFaultLab: real Temporal dev server, the worker as a child process, SQLite inventory file);
 * h1 and h2 share /var/lib/libvirt/images/shared, h3 does not. Outcomes are asserted from libvirt and the files
 * (where the VM runs, each host's files as that host sees them, digests of the guest-visible content, inodes,
 * what the VM's QEMU holds open), not only from Ferry's report. The report's `disks` (per disk: target, path,
 * layout 'shared' | 'copied') is what issue 15 adds.
 */
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MigrationRejectedError, type MigrationOutcome } from '../../client';
import { BAD_INPUT_FAILURES } from '../../common/failures';
import type { LiveMigrationInput } from '../../common/validation';
import { LAB_STORAGE_ROOT } from '../../lab';
import { canRunLab, sleep, startFaultLab, type FaultLab } from '../support/fault-harness';
import {
  DEFAULT_POOL,
  DEFAULT_POOL_DIR,
  createPlainVolume,
  definePlainVm,
  diskDigest,
  ensureDefaultPool,
  ensureDirPool,
  existsInside,
  fileStat,
  hostNetBytes,
  imageInfo,
  inHost,
  listInside,
  mountFullFilesystem,
  poolState,
  qemuDeletedFiles,
  removePlainVm,
  shareDirectory,
  syncPlainVms,
  whereIs,
  type FileStat,
  type PlainVm,
  type SharedDirectory,
} from '../support/plain-vms';

const MiB = 1024 * 1024;
const IMAGES = DEFAULT_POOL_DIR; // /var/lib/libvirt/images, the `default` pool
const SHARED = `${IMAGES}/shared`; // shared by h1 and h2, pool `shared` on both
const LOCAL = `${IMAGES}/local`; // a second local directory, pool `local` on h1 and h2
/** What may be transferred on top of the memory for a VM whose disks are not copied. */
const MARGIN = 32 * MiB;

/** What issue 15 adds to the report. */
interface ReportDisk {
  target: string;
  path: string;
  layout: 'shared' | 'copied';
}
type Report = MigrationOutcome & { disks?: ReportDisk[] };
type Ending = Report | { status: 'rejected'; type: string; reason: string };

describe.skipIf(!canRunLab)('storage safety on VMs defined with plain virsh (issue 15, real lab)', () => {
  let f: FaultLab;
  let share: SharedDirectory;
  let H1 = '';
  let H2 = '';
  let H3 = '';
  const uri = (h: string) => f.host(h).uri;

  beforeAll(async () => {
    f = await startFaultLab({ hosts: 3, vms: 0, taskQueue: 'ferry-storage-safety' });
    [H1, H2, H3] = f.lab.hosts.map((h) => h.name) as [string, string, string];
    for (const h of [H1, H2, H3]) await ensureDefaultPool(uri(h));
    share = await shareDirectory(f, [H1, H2], SHARED);
    for (const h of [H1, H2]) {
      await ensureDirPool(uri(h), 'shared', SHARED);
      await ensureDirPool(uri(h), 'local', LOCAL);
    }
  }, 300_000);

  afterAll(async () => {
    await share?.undo().catch(() => undefined);
    await f?.stop();
  }, 120_000);

  // ---- helpers ----------------------------------------------------------------------------------------------

  /** What the running case made: removed after it, whatever its result, so that cases stay independent. */
  const made: PlainVm[] = [];
  const madeFiles: { host: string; path: string }[] = [];
  const def = async (...a: Parameters<typeof definePlainVm>): Promise<PlainVm> => {
    const vm = await definePlainVm(...a);
    made.push(vm);
    return vm;
  };
  const vol = async (...a: Parameters<typeof createPlainVolume>) => {
    const d = await createPlainVolume(...a);
    madeFiles.push({ host: f.host(a[1]).name, path: d.path });
    return d;
  };

  afterEach(async () => {
    const vms = made.splice(0);
    const files = madeFiles.splice(0);
    if (vms.length === 0 && files.length === 0) return;
    await cleanup(...vms);
    for (const x of files) await inHost(f.home, x.host, 'rm', ['-f', '--', x.path]);
  }, 120_000);

  function input(vm: PlainVm, extra: Partial<LiveMigrationInput> = {}): LiveMigrationInput {
    return { sourceHost: f.host(vm.host).address, vmName: vm.name, vmUuid: vm.uuid, ...extra };
  }

  async function ending(p: Promise<MigrationOutcome>): Promise<Ending> {
    try {
      return (await p) as Report;
    } catch (e) {
      if (e instanceof MigrationRejectedError) return { status: 'rejected', type: e.type, reason: e.message };
      throw e;
    }
  }

  /** The report's disks as issue 15 names them (target, path, layout; further fields such as `flattened` aside), by target. */
  const layoutOf = (o: Report) =>
    (o.disks ?? []).map((d) => ({ target: d.target, path: d.path, layout: d.layout })).sort((a, b) => a.target.localeCompare(b.target));

  function report(e: Ending): Report {
    expect(e.status, `refused: ${e.reason}`).not.toBe('rejected');
    return e as Report;
  }

  const isShared = (p: string) => p.startsWith(`${SHARED}/`);
  const sharingHosts = () => share.hosts;

  /** The file's identity and content, as `host` sees it. */
  async function snapshotFile(host: string, p: string): Promise<{ stat: FileStat | null; digest: string | null }> {
    const stat = await fileStat(f.home, host, p);
    return { stat, digest: stat ? await diskDigest(f.home, host, p) : null };
  }

  /** Same file (device, inode), same size and mtime, same guest-visible content. */
  async function expectUntouched(host: string, p: string, before: { stat: FileStat | null; digest: string | null }, what: string) {
    const now = await snapshotFile(host, p);
    expect(now.stat, `${what}: ${p} on ${host} is gone`).not.toBeNull();
    expect({ dev: now.stat!.dev, ino: now.stat!.ino, size: now.stat!.size, mtimeNs: now.stat!.mtimeNs }, `${what}: ${p} on ${host}`).toEqual({
      dev: before.stat!.dev,
      ino: before.stat!.ino,
      size: before.stat!.size,
      mtimeNs: before.stat!.mtimeNs,
    });
    expect(now.digest, `${what}: content of ${p} on ${host}`).toBe(before.digest);
  }

  /** Pools (with state), the default pool's directory and the lab storage root of a host, as it sees them. */
  async function hostStorage(host: string): Promise<unknown> {
    return {
      pools: (await f.hv.listPools(uri(host))).map((p) => `${p.name}${p.active ? '' : ' (inactive)'} ${p.path}`).sort(),
      images: await listInside(f.home, host, IMAGES),
      local: await listInside(f.home, host, LOCAL),
      ferryRoot: await listInside(f.home, host, LAB_STORAGE_ROOT),
    };
  }

  /**
   * The end state every case must reach: libvirt runs the VM on `at` only (defined nowhere else), the
   * inventory agrees (running, no claim), every disk is on `at`, no non-shared disk of it is left on another
   * host (but `foreign`: files of that path that are someone else's), no `ferry-<uuid>` pool elsewhere, and
   * its QEMU holds no deleted file.
   */
  async function expectPlainConsistent(vm: PlainVm, at: string, label: string, foreign: { host: string; path: string }[] = []) {
    const problems: string[] = [];
    const where = await whereIs(f, vm.uuid);
    if (JSON.stringify(where) !== JSON.stringify({ [at]: 'running' })) problems.push(`libvirt: ${JSON.stringify(where)}, expected running on ${at} only`);
    const rec = await f.inventory.getVm(vm.uuid);
    if (rec?.host !== at || rec.state !== 'running') problems.push(`inventory: ${rec?.host}/${rec?.state}`);
    const claim = await f.inventory.getClaim(vm.uuid);
    if (claim) problems.push(`claim left: ${JSON.stringify(claim)}`);
    for (const d of vm.disks) {
      if (!(await existsInside(f.home, at, d.path))) problems.push(`${d.path} missing on ${at}`);
      if (isShared(d.path)) continue;
      for (const h of f.lab.hosts.map((x) => x.name).filter((n) => n !== at)) {
        if (foreign.some((x) => x.host === h && x.path === d.path)) continue;
        if (await existsInside(f.home, h, d.path)) problems.push(`leak: ${d.path} on ${h}`);
      }
    }
    for (const h of f.lab.hosts.map((x) => x.name).filter((n) => n !== at)) {
      if ((await f.hv.listPools(uri(h))).some((p) => p.name === `ferry-${vm.uuid}`)) problems.push(`leak: pool ferry-${vm.uuid} on ${h}`);
    }
    if (where[at] === 'running') {
      const deleted = qemuDeletedFiles(f.home, at, vm.name);
      if (deleted.length > 0) problems.push(`QEMU of ${vm.name} on ${at} holds deleted files: ${deleted.join(', ')}`);
    }
    console.log(`STORAGE-RESULT ${JSON.stringify({ label, vm: vm.name, at, problems })}`);
    expect(problems).toEqual([]);
  }

  async function expectDefaultPoolsIntact(): Promise<void> {
    for (const h of [H1, H2, H3]) {
      expect(await poolState(uri(h), DEFAULT_POOL), `default pool on ${h}`).toEqual({ name: DEFAULT_POOL, active: true, autostart: true, path: IMAGES });
    }
    for (const h of [H1, H2]) expect((await poolState(uri(h), 'shared'))?.active, `shared pool on ${h}`).toBe(true);
  }

  async function cleanup(...vms: PlainVm[]): Promise<void> {
    for (const vm of vms) await removePlainVm(f, vm, { removeDisks: true });
    await syncPlainVms(f.inventory, f);
  }

  function logOutcome(label: string, o: Ending): void {
    const r = o as Report;
    console.log(
      `STORAGE-OUTCOME ${JSON.stringify({ label, status: o.status, target: r.target, bytesTransferred: r.bytesTransferred, disks: r.disks, createAttempts: r.createAttempts, reason: 'reason' in o ? o.reason : null, warnings: r.warnings })}`,
    );
  }

  // ---- (d) first: h2 and h3 carry no migrated VMs yet, so only the conflict can keep placement off h2 -----------

  it("(d) someone else's same-name volume on the target is never touched: a fixed target is refused, placement picks the other host", async () => {
    // ballast on h3, so that placement (most memory left free, then name) would prefer h2 but for the conflict
    const ballast = await def(f, H3, { name: 'ballast', disks: [{ path: `${IMAGES}/ballast.qcow2`, dataMiB: 1 }] });
    const web3 = await def(f, H1, { name: 'web3', disks: [{ path: `${IMAGES}/web3.qcow2`, sizeMiB: 64, dataMiB: 16 }] });
    const theirs = await vol(f, H2, { path: `${IMAGES}/web3.qcow2`, sizeMiB: 64, dataMiB: 4, seed: 4242 });
    expect(theirs.expectedDigest).not.toBe(web3.disks[0]!.expectedDigest);
    await syncPlainVms(f.inventory, f);
    expect(await f.inventory.getVm(ballast.uuid)).toMatchObject({ host: H3, state: 'running' });
    const theirsBefore = await snapshotFile(H2, theirs.path);
    const h2Before = await hostStorage(H2);
    const h3Before = await hostStorage(H3);

    const fixed = await ending(f.ferry.migrate(input(web3, { targetHost: H2 })));
    logOutcome('(d) fixed target holding a same-name volume', fixed);
    expect(fixed.status).toBe('rejected');
    expect(BAD_INPUT_FAILURES).toContain((fixed as { type: string }).type);
    expect(await hostStorage(H2)).toEqual(h2Before); // nothing created, nothing removed
    await expectUntouched(H2, theirs.path, theirsBefore, '(d) after the refused fixed-target migration');
    expect(await hostStorage(H3)).toEqual(h3Before);
    await expectPlainConsistent(web3, H1, '(d) refused: VM stays on its source', [{ host: H2, path: theirs.path }]);

    const auto = report(await ending(f.ferry.migrate(input(web3))));
    logOutcome('(d) automatic placement', auto);
    expect(auto.status, auto.reason ?? '').toBe('migrated');
    expect(auto.target).toBe(H3);
    expect(await diskDigest(f.home, H3, web3.disks[0]!.path)).toBe(web3.disks[0]!.expectedDigest);
    await expectUntouched(H2, theirs.path, theirsBefore, '(d) after the automatic migration');
    expect(await hostStorage(H2)).toEqual(h2Before);
    await expectPlainConsistent({ ...web3, host: H3 }, H3, '(d) automatic placement', [{ host: H2, path: theirs.path }]);
    await expectDefaultPoolsIntact();

  }, 300_000);

  // ---- (a) -------------------------------------------------------------------------------------------------

  it('(a) virt-install layout: web1 leaves the default pool, web2 and the pool stay on the source untouched', async () => {
    const web1 = await def(f, H1, { name: 'web1', disks: [{ path: `${IMAGES}/web1.qcow2`, sizeMiB: 64, dataMiB: 16 }] });
    const web2 = await def(f, H1, { name: 'web2', disks: [{ path: `${IMAGES}/web2.qcow2`, sizeMiB: 64, dataMiB: 16 }] });
    await syncPlainVms(f.inventory, f);
    const web2Before = await snapshotFile(H1, web2.disks[0]!.path);

    const o = report(await ending(f.ferry.migrate(input(web1, { targetHost: H2 }))));
    logOutcome('(a) web1 from the default pool', o);
    expect(o.status, o.reason ?? '').toBe('migrated');
    expect(o.target).toBe(H2);
    expect(layoutOf(o)).toEqual([{ target: 'vda', path: web1.disks[0]!.path, layout: 'copied' }]);
    expect(await whereIs(f, web1.uuid)).toEqual({ [H2]: 'running' });
    expect(await diskDigest(f.home, H2, web1.disks[0]!.path)).toBe(web1.disks[0]!.expectedDigest);
    expect(await existsInside(f.home, H1, web1.disks[0]!.path)).toBe(false);
    expect(await listInside(f.home, H1, IMAGES)).toContain('web2.qcow2');
    await expectUntouched(H1, web2.disks[0]!.path, web2Before, '(a) web2');
    expect(await whereIs(f, web2.uuid)).toEqual({ [H1]: 'running' });
    expect(qemuDeletedFiles(f.home, H1, 'web2')).toEqual([]);
    await expectDefaultPoolsIntact();
    await expectPlainConsistent({ ...web1, host: H2 }, H2, '(a) web1 migrated');
    await expectPlainConsistent(web2, H1, '(a) web2 stays');
  }, 300_000);

  // ---- (b) shared storage ----------------------------------------------------------------------------------

  it('(b) a VM on the shared directory migrates without copying its disk: same file, same content, memory only', async () => {
    const vm = await def(f, H1, { name: 'sh-ok', disks: [{ path: `${SHARED}/sh-ok.qcow2`, sizeMiB: 256, dataMiB: 32 }] });
    await syncPlainVms(f.inventory, f);
    const before = await snapshotFile(H1, vm.disks[0]!.path);
    const disksBefore = await snapshotDisks(vm);
    const backingIno = fs.statSync(share.backingPath(vm.disks[0]!.path)).ino;
    const net0 = hostNetBytes(H2);

    const o = report(await ending(f.ferry.migrate(input(vm, { targetHost: H2 }))));
    const intoTarget = hostNetBytes(H2).rx - net0.rx;
    logOutcome('(b) all-shared VM', o);
    console.log(`STORAGE-BYTES ${JSON.stringify({ label: '(b) all-shared', reported: o.bytesTransferred, intoTarget, memory: vm.memoryMiB * MiB })}`);
    if (o.status !== 'migrated') await expectSharedSafe(vm, disksBefore, '(b) shared, after a failed migration');
    expect(o.status, o.reason ?? '').toBe('migrated');
    expect(layoutOf(o)).toEqual([{ target: 'vda', path: vm.disks[0]!.path, layout: 'shared' }]);
    expect(o.bytesTransferred).not.toBeNull();
    expect(o.bytesTransferred!).toBeLessThan(vm.memoryMiB * MiB + MARGIN);
    expect(intoTarget).toBeLessThan(vm.memoryMiB * MiB + MARGIN); // the wire agrees: the 256 MiB disk did not travel
    expect(await whereIs(f, vm.uuid)).toEqual({ [H2]: 'running' });
    await expectUntouched(H2, vm.disks[0]!.path, before, '(b) shared disk seen from the target');
    expect(fs.statSync(share.backingPath(vm.disks[0]!.path)).ino).toBe(backingIno);
    expect(await existsInside(f.home, H1, vm.disks[0]!.path)).toBe(true); // the source's cleanup did not remove it
    await expectDefaultPoolsIntact();
    await expectPlainConsistent({ ...vm, host: H2 }, H2, '(b) shared, migrated');
  }, 300_000);

  /** After a compensated ending: the VM on its source, the shared file the same file with the same content. */
  async function expectSharedSafe(vm: PlainVm, before: Map<string, { stat: FileStat | null; digest: string | null }>, label: string) {
    for (const [p, b] of before) {
      await expectUntouched(H1, p, b, label);
      if (isShared(p)) {
        for (const h of sharingHosts()) expect((await fileStat(f.home, h, p))?.ino, `${label}: ${p} on ${h}`).toBe(b.stat!.ino);
      }
    }
    await expectPlainConsistent(vm, H1, label);
    await expectDefaultPoolsIntact();
  }

  async function snapshotDisks(vm: PlainVm) {
    const m = new Map<string, { stat: FileStat | null; digest: string | null }>();
    for (const d of vm.disks) m.set(d.path, await snapshotFile(H1, d.path));
    return m;
  }

  it("(b) abort: a mixed VM whose local disk's create task fails every attempt (target's local directory full); the shared file stays", async () => {
    const vm = await def(f, H1, {
      name: 'mix-abort',
      disks: [
        { path: `${SHARED}/mix-abort-os.qcow2`, sizeMiB: 64, dataMiB: 8 },
        { path: `${LOCAL}/mix-abort-data.qcow2`, sizeMiB: 64, dataMiB: 8 },
      ],
    });
    await syncPlainVms(f.inventory, f);
    const before = await snapshotDisks(vm);
    // a full filesystem over the target's /var/lib/libvirt/images/local, inside its mount namespace only: room
    // for a probe file, not for the 64 MiB qcow2 (plain-vms.lab.test.ts checks both)
    const full = await mountFullFilesystem(f, H2, LOCAL);
    let o: Report;
    try {
      o = report(await ending(f.ferry.migrate(input(vm, { targetHost: H2, createAttempts: 2, options: { createRetryInterval: '500ms' } }))));
      logOutcome('(b) abort: mixed VM, local disk cannot be created', o);
      // what Ferry made on the full filesystem is gone again
      expect((await listInside(f.home, H2, LOCAL)).sort()).toEqual(['filler', 'lost+found']);
    } finally {
      await full.undo();
    }
    expect.soft(o.status, o.reason ?? '').toBe('aborted'); // whatever the ending, the checks below must hold
    expect.soft(o.reason).toMatch(/space/i);
    await expectSharedSafe(vm, before, '(b) abort');
  }, 300_000);

  describe('(b) timeout and cancel of an all-shared VM whose guest dirties its memory', () => {
    let busy: PlainVm;
    let before: Map<string, { stat: FileStat | null; digest: string | null }>;

    beforeAll(async () => {
      // dirties 64 MiB at 10 MiB/s: at --bandwidth 1 the memory copy never converges
      busy = await definePlainVm(f, H1, {
        name: 'sh-busy',
        guest: { kind: 'dirty', regionMiB: 64, pagesPerSec: 2560 },
        disks: [{ path: `${SHARED}/sh-busy.qcow2`, sizeMiB: 64, dataMiB: 8 }],
      });
      await syncPlainVms(f.inventory, f);
      before = await snapshotDisks(busy);
    }, 120_000);

    afterAll(async () => {
      if (busy) await cleanup(busy);
    }, 120_000);

    it('timeout (bandwidth 1 MiB/s, timeout 4 s): timed out, the shared file in place and intact, the VM on its source', async () => {
      const o = report(await ending(f.ferry.migrate(input(busy, { targetHost: H2, bandwidthMiBps: 1, timeout: '4s' }))));
      logOutcome('(b) timeout', o);
      expect.soft(o.status, o.reason ?? '').toBe('timed-out'); // whatever the ending, the checks below must hold
      await expectSharedSafe(busy, before, '(b) timeout');
    }, 240_000);

    it('operator cancel while migrating: cancelled, the shared file in place and intact, the VM on its source', async () => {
      const handle = await f.ferry.startMigration(input(busy, { targetHost: H2, bandwidthMiBps: 1 }));
      // until the libvirt job runs (phase migrating); a workflow that ends before that is checked, then fails the case
      let early: Ending | null = null;
      for (const deadline = Date.now() + 60_000; ; await sleep(200)) {
        if ((await handle.progress()).phase === 'migrating') break;
        if (!(await handle.isRunning())) {
          early = await ending(handle.outcome());
          break;
        }
        if (Date.now() > deadline) expect.fail('not migrating within 60 s');
      }
      if (early !== null) {
        logOutcome('(b) cancel: ended before it could be cancelled', early);
        await expectSharedSafe(busy, before, '(b) cancel: after the early ending');
        expect.fail(`ended ${early.status} before migrating: ${early.reason}`);
      }
      await sleep(1500); // the libvirt job is running
      await handle.cancelWithReason('operator cancel (storage-safety test)');
      const o = report(await ending(handle.outcome()));
      logOutcome('(b) cancel', o);
      expect.soft(o.status, o.reason ?? '').toBe('cancelled'); // whatever the ending, the checks below must hold
      await expectSharedSafe(busy, before, '(b) cancel');
    }, 240_000);
  });

  // ---- (c) -------------------------------------------------------------------------------------------------

  it('(c) a mixed VM: only the local disk is copied, the shared one is the same file afterwards', async () => {
    const vm = await def(f, H1, {
      name: 'mix-ok',
      disks: [
        { path: `${SHARED}/mix-ok-os.qcow2`, sizeMiB: 256, dataMiB: 16 },
        { path: `${IMAGES}/mix-ok-data.qcow2`, sizeMiB: 64, dataMiB: 16 },
      ],
    });
    await syncPlainVms(f.inventory, f);
    const [os, data] = [vm.disks[0]!, vm.disks[1]!];
    const osBefore = await snapshotFile(H1, os.path);
    const disksBefore = await snapshotDisks(vm);
    const net0 = hostNetBytes(H2);

    const o = report(await ending(f.ferry.migrate(input(vm, { targetHost: H2 }))));
    const intoTarget = hostNetBytes(H2).rx - net0.rx;
    logOutcome('(c) mixed VM', o);
    console.log(`STORAGE-BYTES ${JSON.stringify({ label: '(c) mixed', reported: o.bytesTransferred, intoTarget, memory: vm.memoryMiB * MiB, local: data.sizeBytes })}`);
    if (o.status !== 'migrated') await expectSharedSafe(vm, disksBefore, '(c) mixed, after a failed migration');
    expect(o.status, o.reason ?? '').toBe('migrated');
    expect(layoutOf(o)).toEqual([
      { target: 'vda', path: os.path, layout: 'shared' },
      { target: 'vdb', path: data.path, layout: 'copied' },
    ]);
    // memory + the local disk (the mirror counts its whole virtual size), not the 256 MiB shared one
    expect(o.bytesTransferred!).toBeGreaterThanOrEqual(data.sizeBytes);
    expect(o.bytesTransferred!).toBeLessThan(data.sizeBytes + vm.memoryMiB * MiB + MARGIN);
    expect(intoTarget).toBeLessThan(data.sizeBytes + vm.memoryMiB * MiB + MARGIN);
    expect(await whereIs(f, vm.uuid)).toEqual({ [H2]: 'running' });
    await expectUntouched(H2, os.path, osBefore, '(c) shared disk');
    expect(await diskDigest(f.home, H2, data.path)).toBe(data.expectedDigest);
    expect(await existsInside(f.home, H1, data.path)).toBe(false);
    expect(await existsInside(f.home, H1, os.path)).toBe(true);
    await expectDefaultPoolsIntact();
    await expectPlainConsistent({ ...vm, host: H2 }, H2, '(c) mixed, migrated');
  }, 300_000);

  // ---- (e) -------------------------------------------------------------------------------------------------

  it('(e) a qcow2 with a backing chain in the default pool: flattened on the target, the base left on the source', async () => {
    const base = await vol(f, H1, { path: `${IMAGES}/base-e.qcow2`, sizeMiB: 64, dataMiB: 16 });
    const vm = await def(f, H1, {
      name: 'web5',
      disks: [{ path: `${IMAGES}/web5.qcow2`, backing: base.path, overlayData: { offsetMiB: 8, lengthMiB: 4, pattern: 0xa5 } }],
    });
    await syncPlainVms(f.inventory, f);
    const topDigest = await diskDigest(f.home, H1, vm.disks[0]!.path);
    expect(topDigest).not.toBe(base.expectedDigest);
    const baseBefore = await snapshotFile(H1, base.path);

    const o = report(await ending(f.ferry.migrate(input(vm, { targetHost: H2 }))));
    logOutcome('(e) backing chain', o);
    expect(o.status, o.reason ?? '').toBe('migrated');
    expect(layoutOf(o)).toEqual([{ target: 'vda', path: vm.disks[0]!.path, layout: 'copied' }]);
    expect(await imageInfo(f.home, H2, vm.disks[0]!.path)).toMatchObject({ format: 'qcow2', virtualSize: 64 * MiB, backingFilename: null });
    expect(await diskDigest(f.home, H2, vm.disks[0]!.path)).toBe(topDigest);
    expect(await existsInside(f.home, H2, base.path)).toBe(false);
    await expectUntouched(H1, base.path, baseBefore, '(e) base image');
    expect(await existsInside(f.home, H1, vm.disks[0]!.path)).toBe(false);
    await expectDefaultPoolsIntact();
    await expectPlainConsistent({ ...vm, host: H2 }, H2, '(e) backing chain, migrated');
  }, 300_000);
});
