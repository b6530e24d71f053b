/**
 * Storage faults on the target (issue 4), real lab: leftovers of an earlier crashed attempt (a pool or volume
 * of the same name already there), another owner's storage where Ferry would put the VM's, and the target's
 * filesystem full while the disk is created (a small loop-mounted ext2 over the target's storage root, mounted
 * inside that host's mount namespace only).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../hypervisor/exec';
import { hostPath, LAB_STORAGE_ROOT, type LabVm } from '../../lab';
import { canRunLab, expectConsistent as expectConsistentIn, migrationInput, startFaultLab, type FaultLab } from '../support/fault-harness';

const MiB = 1024 * 1024;

describe.skipIf(!canRunLab)('storage faults on the target (real lab)', () => {
  let f: FaultLab;
  let vms: LabVm[];

  beforeAll(async () => {
    f = await startFaultLab({ hosts: 2, vms: 3 });
    vms = f.lab.vms;
  }, 300_000);

  afterAll(async () => {
    await f?.stop();
  }, 120_000);

  const expectConsistent = (vm: LabVm, label: string) => expectConsistentIn(f, 'storage', vm, label);

  async function ends(vm: LabVm): Promise<{ source: string; target: string }> {
    const source = (await f.inventory.getVm(vm.uuid))!.host;
    return { source, target: f.lab.hosts.find((h) => h.name !== source)!.name };
  }

  const uriOf = (host: string) => f.host(host).uri;
  const vmDir = (vm: LabVm) => `${LAB_STORAGE_ROOT}/${vm.uuid}`;
  const outside = (host: string, inside: string) => hostPath(f.home, host, inside);
  async function virsh(host: string, args: string[]): Promise<string> {
    return (await run('virsh', ['-c', uriOf(host), ...args], { timeoutMs: 30_000 })).stdout;
  }
  async function virtualSize(file: string): Promise<number> {
    const info = JSON.parse((await run('qemu-img', ['info', '--force-share', '--output=json', file])).stdout) as { 'virtual-size': number };
    return info['virtual-size'];
  }

  /** The provenance records an earlier, crashed Ferry migration of `vm` left in the inventory for what it made on `host`. */
  async function recordedLeftovers(vm: LabVm, host: string, kinds: ('directory' | 'pool' | 'volume')[]): Promise<void> {
    const run = { host, pool: `ferry-${vm.uuid}`, vmUuid: vm.uuid, workflowId: `ferry-migrate-${vm.uuid}`, runId: 'a-crashed-earlier-run' };
    for (const kind of kinds) {
      await f.inventory.recordArtifact({ ...run, kind, path: kind === 'volume' ? `${vmDir(vm)}/disk0.qcow2` : vmDir(vm) }, 'created');
    }
  }

  it("a crashed attempt's pool and stale volume of the same name are replaced, not reused; another VM's leftovers are not touched", async () => {
    const [a, b] = [vms[0]!, vms[1]!];
    const { target } = await ends(a);
    const poolA = `ferry-${a.uuid}`;
    const poolB = `ferry-${b.uuid}`;
    // Ferry replaces a same-name volume only when its provenance record proves it this VM's leftover (issue 15)
    await recordedLeftovers(a, target, ['directory', 'pool', 'volume']);
    await recordedLeftovers(b, target, ['directory', 'pool', 'volume']);
    // A's leftovers: its pool, active, with a 1 MiB "disk0.qcow2" full of junk
    await f.hv.createStorageDirectory(uriOf(target), poolA, vmDir(a));
    await f.hv.startPool(uriOf(target), poolA);
    await f.hv.recreateVolume(uriOf(target), poolA, 'disk0.qcow2', MiB, 'raw');
    fs.writeFileSync(outside(target, `${vmDir(a)}/disk0.qcow2`), Buffer.alloc(MiB, 0x5a));
    // B's leftovers: its pool defined but inactive, its directory with a stale disk file libvirt does not know
    await f.hv.createStorageDirectory(uriOf(target), poolB, vmDir(b));
    const staleB = outside(target, `${vmDir(b)}/disk0.qcow2`);
    fs.writeFileSync(staleB, 'stale bytes of an earlier attempt\n');

    const outcome = await f.ferry.migrate(await migrationInput(f, a));
    expect(outcome.status).toBe('migrated');
    expect(outcome.createAttempts).toEqual({ directory: 1, pool: 1, 'disk:disk0.qcow2': 1 });
    // the volume was recreated with the VM's size and format, and now holds the copied disk
    expect(await virtualSize(outside(target, `${vmDir(a)}/disk0.qcow2`))).toBe(64 * MiB);
    expect(await expectConsistent(a, 'own leftover pool + stale volume on the target')).toBe(target);
    // B's leftovers: exactly as they were
    expect(await virsh(target, ['pool-info', poolB])).toMatch(/^State:\s+inactive/m);
    expect(fs.readFileSync(staleB, 'utf8')).toBe('stale bytes of an earlier attempt\n');

    // and B itself migrates over its own leftovers (inactive pool, unknown stale file)
    const outcomeB = await f.ferry.migrate(await migrationInput(f, b));
    expect(outcomeB.status).toBe('migrated');
    expect(await virtualSize(staleB)).toBe(64 * MiB);
    expect(await expectConsistent(b, 'own leftover inactive pool + stale file on the target')).toBe(target);
  }, 240_000);

  it("a pool of the VM's name on ANOTHER directory of the target: refused, and compensation leaves that pool and its files alone", async () => {
    const c = vms[2]!;
    const { source, target } = await ends(c);
    const pool = `ferry-${c.uuid}`;
    const elsewhere = `${LAB_STORAGE_ROOT}/${c.uuid}-kept`;
    await f.hv.createStorageDirectory(uriOf(target), pool, elsewhere);
    await f.hv.startPool(uriOf(target), pool);
    await f.hv.recreateVolume(uriOf(target), pool, 'precious.img', MiB, 'raw');
    const precious = outside(target, `${elsewhere}/precious.img`);
    fs.writeFileSync(precious, Buffer.alloc(MiB, 0x42));

    const outcome = await f.ferry.migrate(await migrationInput(f, c));
    expect(outcome.status).toBe('aborted');
    expect(outcome.reason).toMatch(/create task directory on .* failed 1 of 3 allowed attempts: .*already defined on/);
    expect(outcome.createAttempts).toEqual({ directory: 1 }); // not retryable: one attempt
    // the other directory, its pool and its file are untouched; the VM is on its source
    expect(fs.readFileSync(precious)).toEqual(Buffer.alloc(MiB, 0x42));
    expect((await f.hv.listPools(uriOf(target))).find((p) => p.name === pool)).toMatchObject({ path: elsewhere, active: true });
    expect(fs.existsSync(outside(target, vmDir(c)))).toBe(false);
    expect((await f.hv.getDomain(uriOf(source), c.uuid))?.state).toBe('running');
    expect(await f.inventory.getVm(c.uuid)).toMatchObject({ host: source, state: 'running' });
    expect(await f.inventory.getClaim(c.uuid)).toBeNull();
    console.log(`FAULT-RESULT ${JSON.stringify({ file: 'storage', label: 'same-name pool on another directory', vm: c.name, outcome: outcome.status, kept: true })}`);
    // remove that pool by hand (as an operator would: its file, then the pool and its directory), then everything is consistent
    await f.hv.deleteVolume(uriOf(target), pool, 'precious.img');
    await f.hv.removeStorageDirectory(uriOf(target), pool);
    expect(await expectConsistent(c, 'same-name pool on another directory (after manual removal)')).toBe(source);
  }, 240_000);

  it("the VM's directory on the target already owned by another pool: refused, the other pool and its files untouched", async () => {
    const c = vms[2]!;
    const { source, target } = await ends(c);
    await f.hv.createStorageDirectory(uriOf(target), 'someone-else', vmDir(c));
    await f.hv.startPool(uriOf(target), 'someone-else');
    const theirs = outside(target, `${vmDir(c)}/theirs.img`);
    fs.writeFileSync(theirs, 'not Ferry\'s\n');

    const outcome = await f.ferry.migrate(await migrationInput(f, c));
    expect(outcome.status).toBe('aborted');
    expect(outcome.reason).toMatch(/already belongs to libvirt pool 'someone-else'/);
    expect(fs.readFileSync(theirs, 'utf8')).toBe('not Ferry\'s\n');
    expect((await f.hv.listPools(uriOf(target))).map((p) => p.name)).toContain('someone-else');
    expect((await f.hv.listPools(uriOf(target))).map((p) => p.name)).not.toContain(`ferry-${c.uuid}`);
    expect((await f.hv.getDomain(uriOf(source), c.uuid))?.state).toBe('running');
    expect(await f.inventory.getVm(c.uuid)).toMatchObject({ host: source, state: 'running' });
    expect(await f.inventory.getClaim(c.uuid)).toBeNull();
    console.log(`FAULT-RESULT ${JSON.stringify({ file: 'storage', label: 'directory owned by another pool', vm: c.name, outcome: outcome.status, kept: true })}`);
    await f.hv.deleteVolume(uriOf(target), 'someone-else', 'theirs.img');
    await f.hv.removeStorageDirectory(uriOf(target), 'someone-else');
    expect(await expectConsistent(c, 'directory owned by another pool (after manual removal)')).toBe(source);
  }, 240_000);

  it("disk full on the target during disk creation: that create task fails its attempts, the abort path cleans the target", async () => {
    const c = vms[2]!;
    const { source, target } = await ends(c);
    // a 1 MiB ext2 over the target's storage root, inside the target's mount namespace only, nearly full
    const img = path.join(f.home, 'small-fs.img');
    fs.writeFileSync(img, Buffer.alloc(0));
    fs.truncateSync(img, MiB);
    await run('mkfs.ext2', ['-q', '-F', '-b', '1024', '-m', '0', img]);
    const mntNs = path.join(fs.realpathSync(path.join(f.home, 'lab', 'ns')), `${target}.mnt`);
    const inTarget = (args: string[]) => run('nsenter', [`--mount=${mntNs}`, ...args], { timeoutMs: 30_000 });
    await inTarget(['mount', '-o', 'loop', img, LAB_STORAGE_ROOT]);
    try {
      // leave ~40 KiB: enough for the directory, not for a qcow2 of 64 MiB (about 200 KiB of metadata)
      const df = (await inTarget(['df', '--output=avail', '-B1024', LAB_STORAGE_ROOT])).stdout.trim().split('\n').pop()!;
      const fill = Number(df) - 40;
      await inTarget(['dd', 'if=/dev/zero', `of=${LAB_STORAGE_ROOT}/filler`, 'bs=1024', `count=${fill}`, 'status=none']);
      const outcome = await f.ferry.migrate(
        await migrationInput(f, c, { createAttempts: 2, options: { createRetryInterval: '500ms' } }),
      );
      expect(outcome.status).toBe('aborted');
      expect(outcome.createAttempts).toEqual({ directory: 1, pool: 1, 'disk:disk0.qcow2': 2 });
      expect(outcome.reason).toMatch(/create task disk:disk0\.qcow2 on .* failed 2 of 2 allowed attempts: .*(no space|No space left)/i);
      // the abort path removed what it created, inside the small filesystem
      expect((await inTarget(['ls', '-A', LAB_STORAGE_ROOT])).stdout.split('\n').filter(Boolean).sort()).toEqual(['filler', 'lost+found']);
      expect((await f.hv.listPools(uriOf(target))).map((p) => p.name)).not.toContain(`ferry-${c.uuid}`);
      expect((await f.hv.getDomain(uriOf(source), c.uuid))?.state).toBe('running');
    } finally {
      await inTarget(['umount', LAB_STORAGE_ROOT]);
    }
    expect(await expectConsistent(c, 'disk full on the target')).toBe(source);
  }, 240_000);
});
