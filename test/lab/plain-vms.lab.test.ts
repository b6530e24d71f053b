/**
 * The plain-virsh VM fixtures (test/support/plain-vms.ts) on a real 2-host lab, without Ferry: the `default`
 * pool, a directory shared by both hosts, VMs defined the way virt-install defines them (running, paused, shut
 * off; qcow2, raw, read-only, cdrom, bridged NIC, backing chain), digests, the deleted-file check and what
 * `inventory sync` records for such VMs. Then what libvirt itself does with a disk on the shared directory
 * (raw `virsh migrate`): the facts storage-safety.lab.test.ts and the implementation rely on, printed as
 * PLAIN-FACT lines.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandError, run } from '../../hypervisor/exec';
import { VirshHypervisor } from '../../hypervisor/virsh';
import { openInventory, type Inventory } from '../../inventory';
import { labDown, labUp, type LabStatus } from '../../lab';
import { registerLab } from '../../lab/register';
import { canRunLab, labNaming } from '../support/lab-harness';
import {
  DEFAULT_POOL,
  DEFAULT_POOL_DIR,
  definePlainVm,
  diskDigest,
  domState,
  ensureDefaultPool,
  ensureDirPool,
  ensureGuestBridge,
  existsInside,
  fileStat,
  hostNetBytes,
  imageInfo,
  inHost,
  listInside,
  mountFullFilesystem,
  poolState,
  poolVolumes,
  qemuDeletedFiles,
  qemuHoldsDeletedFile,
  qemuOpenFiles,
  readInside,
  removePlainVm,
  shareDirectory,
  syncPlainVms,
  virsh,
  whereIs,
  writeInside,
  type PlainVm,
  type SharedDirectory,
} from '../support/plain-vms';

const MiB = 1024 * 1024;
const SHARED = `${DEFAULT_POOL_DIR}/shared`;

function fact(what: string, detail: unknown): void {
  console.log(`PLAIN-FACT ${JSON.stringify({ what, detail })}`);
}

describe.skipIf(!canRunLab)('plain-virsh VM fixtures on the real lab', () => {
  let home = '';
  let lab: LabStatus;
  let inventory: Inventory;
  const hv = new VirshHypervisor({ sessions: false });
  let H1 = '';
  let H2 = '';
  let share: SharedDirectory;
  const l = () => ({ home, lab });
  const uri = (h: string) => lab.hosts.find((x) => x.name === h)!.uri;

  beforeAll(async () => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-plain-'));
    lab = await labUp({ home, hosts: 2, vms: 0, ...labNaming() });
    H1 = lab.hosts[0]!.name;
    H2 = lab.hosts[1]!.name;
    inventory = await openInventory(path.join(home, 'inventory.db'));
    await registerLab(inventory, hv, lab);
  }, 300_000);

  afterAll(async () => {
    await inventory?.close().catch(() => undefined);
    if (home) {
      await labDown(home, { prefix: labNaming().prefix });
      fs.rmSync(home, { recursive: true, force: true });
    }
  }, 120_000);

  it('ensureDefaultPool: the default dir pool on /var/lib/libvirt/images, active and autostarted; idempotent', async () => {
    for (const h of [H1, H2]) {
      expect(await poolState(uri(h), DEFAULT_POOL)).toBeNull();
      const first = await ensureDefaultPool(uri(h));
      expect(first).toEqual({ name: 'default', active: true, autostart: true, path: DEFAULT_POOL_DIR });
      expect(await ensureDefaultPool(uri(h))).toEqual(first);
      // the lab's own storage root is a subdirectory of it: libvirt lists it as a volume of the default pool
      expect(await poolVolumes(uri(h), DEFAULT_POOL)).toContain('ferry');
    }
    // a pool of that name on another directory is refused, not redefined
    await expect(ensureDirPool(uri(H1), DEFAULT_POOL, '/var/lib/libvirt/elsewhere')).rejects.toThrow(/is on \/var\/lib\/libvirt\/images/);
  });

  it('shareDirectory: one directory behind /var/lib/libvirt/images/shared on both hosts; undo unmounts it', async () => {
    share = await shareDirectory(l(), [H1, H2], SHARED);
    await writeInside(home, H1, `${SHARED}/hello`, 'from h1\n');
    expect((await readInside(home, H2, `${SHARED}/hello`)).toString()).toBe('from h1\n');
    const [s1, s2] = [await fileStat(home, H1, `${SHARED}/hello`), await fileStat(home, H2, `${SHARED}/hello`)];
    expect(s1!.ino).toBe(s2!.ino);
    expect(s1!.ino).toBe(fs.statSync(share.backingPath(`${SHARED}/hello`)).ino);
    // the root namespace's view of the host's /var/lib/libvirt does not have it: the mount is inside the hosts only
    expect(fs.existsSync(path.join(lab.hosts[0]!.dir, 'lib', 'images', 'shared', 'hello'))).toBe(false);
    await share.undo();
    expect(await existsInside(home, H2, `${SHARED}/hello`)).toBe(false);
    expect(fs.existsSync(share.backingPath(`${SHARED}/hello`))).toBe(true);
    share = await shareDirectory(l(), [H1, H2], SHARED); // again, for the rest of the file
    share = await shareDirectory(l(), [H1, H2], SHARED); // idempotent
    expect(await listInside(home, H2, SHARED)).toEqual(['hello']);
    fs.rmSync(share.backingPath(`${SHARED}/hello`));
    for (const h of [H1, H2]) await ensureDirPool(uri(h), 'shared', SHARED);
  });

  let web1: PlainVm;

  it('definePlainVm: a running virt-install style VM (qcow2 + raw + read-only disk, cdrom, bridged NIC) with known content', async () => {
    for (const h of [H1, H2]) await ensureGuestBridge(l(), h, 'br0');
    await inHost(home, H1, 'mkdir', ['-p', `${DEFAULT_POOL_DIR}/isos`]);
    await ensureDirPool(uri(H1), 'isos', `${DEFAULT_POOL_DIR}/isos`);
    web1 = await definePlainVm(l(), uri(H1), {
      name: 'web1',
      disks: [
        { path: `${DEFAULT_POOL_DIR}/web1.qcow2`, sizeMiB: 64, dataMiB: 8 },
        { path: `${DEFAULT_POOL_DIR}/web1-data.img`, format: 'raw', sizeMiB: 16, dataMiB: 4 },
        { path: `${DEFAULT_POOL_DIR}/web1-ro.img`, format: 'raw', sizeMiB: 4, dataMiB: 1, readonly: true },
      ],
      cdrom: { path: `${DEFAULT_POOL_DIR}/isos/install.iso` },
      bridge: 'br0',
    });
    expect(await domState(uri(H1), web1.uuid)).toBe('running');
    const xml = (await virsh(uri(H1), ['dumpxml', web1.uuid])).stdout;
    expect(xml).toMatch(/<domain type='qemu'/);
    expect(xml).toMatch(/<interface type='bridge'>[\s\S]*<source bridge='br0'\/>/);
    expect(xml).toMatch(/device='cdrom'[\s\S]*isos\/install\.iso/);
    expect(xml).toMatch(/web1-ro\.img'[\s\S]{0,200}<readonly\/>/);
    expect(await imageInfo(home, H1, web1.disks[0]!.path)).toMatchObject({ format: 'qcow2', virtualSize: 64 * MiB, backingFilename: null });
    for (const d of web1.disks) expect(await diskDigest(home, H1, d.path)).toBe(d.expectedDigest);
    // the volumes are libvirt's: the default pool lists them
    expect(await poolVolumes(uri(H1), DEFAULT_POOL)).toEqual(expect.arrayContaining(['web1.qcow2', 'web1-data.img', 'web1-ro.img', 'isos', 'shared', 'ferry']));
    expect(qemuOpenFiles(home, H1, 'web1')).toEqual(expect.arrayContaining(web1.disks.map((d) => d.path)));
    expect(qemuHoldsDeletedFile(home, H1, 'web1')).toBe(false);
    // the tap device is on the host's bridge
    const links = (await run('ip', ['-n', lab.hosts[0]!.netns, '-o', 'link', 'show', 'master', 'br0'])).stdout;
    expect(links).toMatch(/vnet\d+/);
  });

  it('definePlainVm: paused, shut off, and a disk on the shared directory seen identically from both hosts', async () => {
    const paused = await definePlainVm(l(), H1, { name: 'paused1', disks: [{ path: `${DEFAULT_POOL_DIR}/paused1.qcow2` }], state: 'paused' });
    const off = await definePlainVm(l(), H1, { name: 'off1', disks: [{ path: `${DEFAULT_POOL_DIR}/off1.img`, format: 'raw' }], state: 'shutoff' });
    expect(await domState(uri(H1), paused.uuid)).toBe('paused');
    expect(await domState(uri(H1), off.uuid)).toBe('shut off');
    expect(await diskDigest(home, H1, off.disks[0]!.path)).toBe(off.disks[0]!.expectedDigest);
    const sh = await definePlainVm(l(), H1, { name: 'sh1', disks: [{ path: `${SHARED}/sh1.qcow2`, sizeMiB: 32, dataMiB: 4 }], state: 'shutoff' });
    expect(await diskDigest(home, H2, `${SHARED}/sh1.qcow2`)).toBe(sh.disks[0]!.expectedDigest);
    await virsh(uri(H2), ['pool-refresh', 'shared']);
    expect(await poolVolumes(uri(H2), 'shared')).toEqual(['sh1.qcow2']);
    for (const vm of [paused, off, sh]) await removePlainVm(l(), vm, { removeDisks: true });
    expect(await whereIs(l(), paused.uuid)).toEqual({});
    expect(await existsInside(home, H2, `${SHARED}/sh1.qcow2`)).toBe(false);
  });

  it('a qcow2 backing chain in the default pool: the overlay shows base + its own writes', async () => {
    const base = await definePlainVm(l(), H1, { name: 'base-holder', disks: [{ path: `${DEFAULT_POOL_DIR}/base.qcow2`, sizeMiB: 32, dataMiB: 8 }], state: 'shutoff' });
    await removePlainVm(l(), base); // the base image stays, owned by no domain
    const top = await definePlainVm(l(), H1, {
      name: 'chain1',
      disks: [{ path: `${DEFAULT_POOL_DIR}/chain1.qcow2`, backing: `${DEFAULT_POOL_DIR}/base.qcow2`, overlayData: { offsetMiB: 4, lengthMiB: 2, pattern: 0x5a } }],
    });
    const info = await imageInfo(home, H1, top.disks[0]!.path);
    expect(info).toMatchObject({ format: 'qcow2', virtualSize: 32 * MiB, backingFilename: `${DEFAULT_POOL_DIR}/base.qcow2`, backingFormat: 'qcow2' });
    const topDigest = await diskDigest(home, H1, top.disks[0]!.path);
    expect(topDigest).not.toBe(base.disks[0]!.expectedDigest);
    expect(await diskDigest(home, H1, `${DEFAULT_POOL_DIR}/base.qcow2`)).toBe(base.disks[0]!.expectedDigest);
    const xml = (await virsh(uri(H1), ['dumpxml', top.uuid])).stdout;
    expect(xml).toMatch(/<backingStore type='file'[^>]*>[\s\S]*base\.qcow2/);
    expect(qemuOpenFiles(home, H1, 'chain1')).toEqual(expect.arrayContaining([`${DEFAULT_POOL_DIR}/chain1.qcow2`, `${DEFAULT_POOL_DIR}/base.qcow2`]));
    await removePlainVm(l(), top, { removeDisks: true });
    await inHost(home, H1, 'rm', ['-f', `${DEFAULT_POOL_DIR}/base.qcow2`]);
  });

  it('qemuHoldsDeletedFile: false while the disk is linked, true once it is unlinked under the running VM', async () => {
    const vm = await definePlainVm(l(), H1, { name: 'victim', disks: [{ path: `${DEFAULT_POOL_DIR}/victim.qcow2`, dataMiB: 1 }] });
    expect(qemuHoldsDeletedFile(home, H1, 'victim')).toBe(false);
    await inHost(home, H1, 'rm', ['--', vm.disks[0]!.path]);
    expect(qemuHoldsDeletedFile(home, H1, 'victim')).toBe(true);
    expect(qemuDeletedFiles(home, H1, 'victim')).toEqual([`${vm.disks[0]!.path} (deleted)`]);
    expect(() => qemuHoldsDeletedFile(home, H2, 'victim')).toThrow(/no QEMU of victim runs on/);
    await removePlainVm(l(), vm);
  });

  it('mountFullFilesystem: a 64 MiB qcow2 volume no longer fits, a small probe file does; undo restores the directory', async () => {
    const LOCAL = `${DEFAULT_POOL_DIR}/local`;
    await ensureDirPool(uri(H2), 'local', LOCAL);
    await writeInside(home, H2, `${LOCAL}/kept`, 'kept\n');
    const full = await mountFullFilesystem(l(), H2, LOCAL);
    try {
      const err = await virsh(uri(H2), ['vol-create-as', '--pool=local', '--name=big.qcow2', `--capacity=${64 * MiB}`, '--format=qcow2']).then(
        () => 'created',
        (e: unknown) => (e instanceof CommandError ? e.stderr.trim() : String(e)),
      );
      fact('vol-create-as qcow2 64 MiB on the full filesystem', err);
      expect(err).toMatch(/space/i);
      await writeInside(home, H2, `${LOCAL}/probe`, 'x'.repeat(100));
      expect((await listInside(home, H2, LOCAL)).filter((n) => n !== 'big.qcow2')).toEqual(['filler', 'lost+found', 'probe']);
    } finally {
      await full.undo();
    }
    expect(await listInside(home, H2, LOCAL)).toEqual(['kept']);
    await inHost(home, H2, 'rm', ['-f', `${LOCAL}/kept`]);
  });

  it('a guest dirtying its memory keeps a shared-storage migration at 1 MiB/s running (the timeout and cancel fixture); an idle one finishes', async () => {
    const idle = await definePlainVm(l(), H1, { name: 'idle1', disks: [{ path: `${SHARED}/idle1.qcow2`, dataMiB: 1 }] });
    const t0 = Date.now();
    await virsh(uri(H1), ['migrate', '--live', '--p2p', '--persistent', '--undefinesource', '--unsafe', '--bandwidth', '1', idle.uuid, lab.hosts[1]!.uri], 120_000);
    fact('idle VM, shared disk, --bandwidth 1: wall time of virsh migrate (ms)', Date.now() - t0);
    await removePlainVm(l(), idle, { removeDisks: true });

    const busy = await definePlainVm(l(), H1, {
      name: 'busy1',
      guest: { kind: 'dirty', regionMiB: 64, pagesPerSec: 2560 },
      disks: [{ path: `${SHARED}/busy1.qcow2`, dataMiB: 1 }],
    });
    const ino = (await fileStat(home, H1, busy.disks[0]!.path))!.ino;
    const job = virsh(uri(H1), ['migrate', '--live', '--p2p', '--persistent', '--undefinesource', '--unsafe', '--bandwidth', '1', busy.uuid, lab.hosts[1]!.uri], 120_000).then(
      () => 'completed',
      (e: unknown) => (e instanceof CommandError ? e.stderr.trim() : String(e)),
    );
    await new Promise((r) => setTimeout(r, 6000));
    const info = (await virsh(uri(H1), ['domjobinfo', busy.uuid])).stdout;
    fact('dirtying VM at --bandwidth 1 after 6 s', info.split('\n').filter((x) => /Job type|Memory remaining|Dirty rate|Iteration/.test(x)));
    expect(info).toMatch(/Job type:\s+Unbounded/);
    await virsh(uri(H1), ['domjobabort', busy.uuid]);
    fact('virsh migrate after domjobabort', await job);
    expect(await whereIs(l(), busy.uuid)).toEqual({ [H1]: 'running' });
    expect((await fileStat(home, H1, busy.disks[0]!.path))!.ino).toBe(ino);
    expect(qemuHoldsDeletedFile(home, H1, 'busy1')).toBe(false);
    expect(await diskDigest(home, H1, busy.disks[0]!.path)).toBe(busy.disks[0]!.expectedDigest);
    await removePlainVm(l(), busy, { removeDisks: true });
  }, 240_000);

  it('inventory sync records plain VMs with their writable file disks (no check of the layout)', async () => {
    await syncPlainVms(inventory, l());
    const rec = await inventory.getVm(web1.uuid);
    fact('inventory sync of a virt-install VM', rec);
    expect(rec).toMatchObject({ name: 'web1', host: H1, state: 'running', memoryMiB: 128 });
    expect(rec!.disks.map((d) => d.path).sort()).toEqual([`${DEFAULT_POOL_DIR}/web1-data.img`, `${DEFAULT_POOL_DIR}/web1.qcow2`]);
  });

  describe('libvirt itself, raw virsh migrate of a VM whose disk is on the shared directory', () => {
    const migrate = async (src: string, dst: string, uuid: string, extra: string[]) => {
      const host = lab.hosts.find((x) => x.name === dst)!;
      const args = ['migrate', '--live', '--p2p', '--persistent', '--undefinesource', ...extra, uuid, host.uri];
      try {
        await virsh(uri(src), args, 120_000);
        return 'ok';
      } catch (e) {
        return e instanceof CommandError ? e.stderr.trim() : String(e);
      }
    };

    it('--copy-storage-all, no copy, --unsafe, and a mixed VM with --migrate-disks', async () => {
      const vm = await definePlainVm(l(), H1, { name: 'shm1', disks: [{ path: `${SHARED}/shm1.qcow2`, sizeMiB: 64, dataMiB: 16 }] });
      const before = await fileStat(home, H1, vm.disks[0]!.path);

      const copyAll = await migrate(H1, H2, vm.uuid, ['--copy-storage-all']);
      fact('virsh migrate --copy-storage-all, disk on a bind-mounted shared dir', copyAll);
      fact('after it: where', await whereIs(l(), vm.uuid));
      fact('after it: deleted files held by the source QEMU', qemuDeletedFiles(home, H1, 'shm1'));
      expect(await diskDigest(home, H1, vm.disks[0]!.path)).toBe(vm.disks[0]!.expectedDigest);

      if ((await domState(uri(H1), vm.uuid)) === 'running') {
        const plain = await migrate(H1, H2, vm.uuid, []);
        fact('virsh migrate (no storage copy), disk on a bind-mounted shared dir', plain);
      }
      if ((await domState(uri(H1), vm.uuid)) === 'running') {
        const net0 = hostNetBytes(H2);
        const unsafe = await migrate(H1, H2, vm.uuid, ['--unsafe']);
        fact('virsh migrate --unsafe (no storage copy)', { result: unsafe, bytesIntoTarget: hostNetBytes(H2).rx - net0.rx });
      }
      const where = await whereIs(l(), vm.uuid);
      fact('where shm1 runs now', where);
      const runsOn = Object.entries(where).find(([, s]) => s === 'running')?.[0];
      if (runsOn) {
        fact('deleted files held by its QEMU', qemuDeletedFiles(home, runsOn, 'shm1'));
        const after = await fileStat(home, runsOn, vm.disks[0]!.path);
        fact('same inode', { before: before?.ino, after: after?.ino });
      }
      expect(await diskDigest(home, H2, vm.disks[0]!.path)).toBe(vm.disks[0]!.expectedDigest);
      await removePlainVm(l(), vm, { removeDisks: true });

      // mixed: vda shared, vdb local in the default pool
      const mixed = await definePlainVm(l(), H1, {
        name: 'mix1',
        disks: [
          { path: `${SHARED}/mix1-os.qcow2`, sizeMiB: 64, dataMiB: 8 },
          { path: `${DEFAULT_POOL_DIR}/mix1-data.qcow2`, sizeMiB: 32, dataMiB: 8 },
        ],
      });
      const r1 = await migrate(H1, H2, mixed.uuid, ['--copy-storage-all', '--migrate-disks', 'vdb']);
      fact('mixed: --copy-storage-all --migrate-disks vdb (target has no mix1-data.qcow2, default pool present)', r1);
      if ((await domState(uri(H1), mixed.uuid)) === 'running') {
        const net0 = hostNetBytes(H2);
        const r2 = await migrate(H1, H2, mixed.uuid, ['--copy-storage-all', '--migrate-disks', 'vdb', '--unsafe']);
        fact('mixed: same + --unsafe', { result: r2, bytesIntoTarget: hostNetBytes(H2).rx - net0.rx });
      }
      const w2 = await whereIs(l(), mixed.uuid);
      fact('where mix1 runs now', w2);
      fact('target default pool files', await listInside(home, H2, DEFAULT_POOL_DIR));
      const on = Object.entries(w2).find(([, s]) => s === 'running')?.[0];
      if (on === H2) {
        fact('mix1 deleted files on target', qemuDeletedFiles(home, H2, 'mix1'));
        fact('mix1 data on target', {
          digestEqual: (await diskDigest(home, H2, mixed.disks[1]!.path)) === mixed.disks[1]!.expectedDigest,
          info: await imageInfo(home, H2, mixed.disks[1]!.path),
          sourceStillHasIt: await existsInside(home, H1, mixed.disks[1]!.path),
        });
      }
      await removePlainVm(l(), mixed, { removeDisks: true });
    }, 300_000);
  });
});
