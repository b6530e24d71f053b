/**
 * VMs the way operators make them, on a running lab (lab/): defined with plain virsh from a virt-install style
 * XML, disks in libvirt's flat `default` pool at /var/lib/libvirt/images, in other directories, on a directory
 * shared by several hosts, raw and qcow2, qcow2 backing chains, read-only disks, cdroms, a NIC on a bridge.
 * Not lab VMs: the lab's state file does not know them, so labUp/labStatus never touch them.
 *
 * Everything goes through run() (execFile, argument array, no shell): virsh with `-c <host uri>`, and for what
 * must be seen from INSIDE a host (its mount namespace: its /var/lib/libvirt and the bind mounts of
 * shareDirectory) `nsenter --mount=<home>/lab/ns/<host>.mnt -- <program>`. The namespace handle file is the
 * host's persistent mount namespace (the one its libvirtd and QEMUs run in), so these helpers work whether or
 * not the host's libvirtd is up. hostPath() only maps the lab's own bind mounts (/var/lib/libvirt …) to the
 * root namespace; a directory shared with shareDirectory is a mount inside the hosts only, so use the helpers
 * here (fileStat, readInside, diskDigest …) or share.backing to look at it.
 *
 * Disk content is deterministic (test/support/prng.ts, one seed per disk): a disk's expected guest-visible
 * digest is known before it is written, and diskDigest() tells whether the content survived a move.
 */
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CommandError, run } from '../../hypervisor/exec';
import { VirshHypervisor } from '../../hypervisor/virsh';
import type { Inventory, SyncResult } from '../../inventory/store';
import { syncInventory } from '../../inventory/sync';
import { escapeXml, hostPath, type LabHost, type LabStatus } from '../../lab';
import { dirtyBootSector, type DirtyGuestSpec } from '../../lab/guest';
import type { LinuxGuestBoot } from '../../lab/linux-guest';
import { nsDir } from '../../lab/naming';
import { allPids, nsInodeOfFile, nsInodeOfPid } from '../../lab/sys';
import { prng } from './prng';

const MiB = 1024 * 1024;

/** What these helpers need of a running lab: its home and status (FaultLab and LabHarness both fit). */
export interface LabRef {
  home: string;
  lab: LabStatus;
}

/** libvirt's default pool, as virt-install / virt-manager create it. */
export const DEFAULT_POOL = 'default';
export const DEFAULT_POOL_DIR = '/var/lib/libvirt/images';

/** One virsh call per process (no sessions), so nothing lingers between tests. */
const hv = new VirshHypervisor({ sessions: false });

export function virsh(uri: string, args: readonly string[], timeoutMs = 60_000): Promise<{ stdout: string; stderr: string }> {
  return run('virsh', ['-c', uri, ...args], { timeoutMs });
}

/** Like virsh(), but null when virsh exits non-zero (still throws on a time-out). */
export async function virshMaybe(uri: string, args: readonly string[], timeoutMs = 60_000): Promise<string | null> {
  try {
    return (await virsh(uri, args, timeoutMs)).stdout;
  } catch (e) {
    if (e instanceof CommandError && !e.timedOut) return null;
    throw e;
  }
}

export function labHost(l: LabRef, hostOrUri: string): LabHost {
  const h = l.lab.hosts.find((x) => x.name === hostOrUri || x.uri === hostOrUri || x.address === hostOrUri);
  if (!h) throw new Error(`no lab host ${hostOrUri}`);
  return h;
}

// ---- inside a host's mount namespace ----------------------------------------------------------------------

/** The host's persistent mount namespace handle (<home>/lab/ns/<host>.mnt, real path). */
export function mountNsFile(home: string, host: string): string {
  return path.join(fs.realpathSync(nsDir(home)), `${host}.mnt`);
}

/** Runs `file args` inside the host's mount namespace (nsenter execs it: no shell). */
export function inHost(home: string, host: string, file: string, args: readonly string[], timeoutMs = 120_000) {
  return run('nsenter', [`--mount=${mountNsFile(home, host)}`, '--', file, ...args], { timeoutMs, maxBuffer: 256 * MiB });
}

async function inHostMaybe(home: string, host: string, file: string, args: readonly string[]): Promise<string | null> {
  try {
    return (await inHost(home, host, file, args)).stdout;
  } catch (e) {
    if (e instanceof CommandError && !e.timedOut) return null;
    throw e;
  }
}

/** A scratch directory in the root namespace, under the lab's home (visible inside every host too). */
export function scratchDir(home: string): string {
  const d = path.join(path.resolve(home), 'plain-tmp');
  fs.mkdirSync(d, { recursive: true });
  return d;
}

export interface FileStat {
  dev: number;
  ino: number;
  size: number;
  /** mtime in nanoseconds since the epoch, as a string (exact). */
  mtimeNs: string;
  links: number;
}

/** stat of a path as the host sees it; null when it does not exist there. */
export async function fileStat(home: string, host: string, insidePath: string): Promise<FileStat | null> {
  const out = await inHostMaybe(home, host, 'stat', ['--format=%d %i %s %.9Y %h', '--', insidePath]);
  if (out === null) return null;
  const [dev, ino, size, mtime, links] = out.trim().split(' ');
  return { dev: Number(dev), ino: Number(ino), size: Number(size), mtimeNs: (mtime ?? '').replace('.', ''), links: Number(links) };
}

export async function existsInside(home: string, host: string, insidePath: string): Promise<boolean> {
  return (await fileStat(home, host, insidePath)) !== null;
}

/** The names in a directory as the host sees it (sorted); [] when it does not exist. */
export async function listInside(home: string, host: string, dir: string): Promise<string[]> {
  const out = await inHostMaybe(home, host, 'ls', ['-A', '--', dir]);
  return out === null ? [] : out.split('\n').filter(Boolean).sort();
}

export async function readInside(home: string, host: string, insidePath: string): Promise<Buffer> {
  const tmp = path.join(scratchDir(home), `read-${randomUUID()}`);
  try {
    await inHost(home, host, 'cp', ['--', insidePath, tmp]);
    return fs.readFileSync(tmp);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Writes `data` to `insidePath` as the host sees it (through a scratch file and `cp` inside the host). */
export async function writeInside(home: string, host: string, insidePath: string, data: Buffer | string): Promise<void> {
  const tmp = path.join(scratchDir(home), `write-${randomUUID()}`);
  fs.writeFileSync(tmp, data);
  try {
    await inHost(home, host, 'cp', ['--', tmp, insidePath]);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

// ---- pools ----------------------------------------------------------------------------------------------------

export interface PoolState {
  name: string;
  active: boolean;
  autostart: boolean;
  path: string;
}

/** pool-info + target path of one pool; null when it is not defined. */
export async function poolState(uri: string, pool: string): Promise<PoolState | null> {
  const info = await virshMaybe(uri, ['pool-info', pool]);
  if (info === null) return null;
  const xml = (await virsh(uri, ['pool-dumpxml', pool])).stdout;
  const p = /<target>\s*<path>([^<]+)<\/path>/.exec(xml)?.[1] ?? '';
  return {
    name: pool,
    active: /^State:\s+running/m.test(info),
    autostart: /^Autostart:\s+yes/m.test(info),
    path: p,
  };
}

/**
 * A dir pool `name` on `dir`, defined, built, started, autostarted and refreshed, the way an operator makes one
 * (`pool-define-as NAME dir --target DIR`, `pool-build`, `pool-start`, `pool-autostart`). Idempotent. Refuses a
 * pool of that name on another directory.
 */
export async function ensureDirPool(uri: string, name: string, dir: string): Promise<PoolState> {
  let st = await poolState(uri, name);
  if (st && st.path.replace(/\/+$/, '') !== dir.replace(/\/+$/, '')) {
    throw new Error(`pool ${name} on ${uri} is on ${st.path}, not ${dir}`);
  }
  if (!st) await virsh(uri, ['pool-define-as', name, 'dir', '--target', dir]);
  st = await poolState(uri, name);
  if (!st?.active) {
    await virsh(uri, ['pool-build', name]);
    await virsh(uri, ['pool-start', name]);
  }
  if (!st?.autostart) await virsh(uri, ['pool-autostart', name]);
  await virsh(uri, ['pool-refresh', name]);
  const done = await poolState(uri, name);
  if (!done?.active || !done.autostart) throw new Error(`pool ${name} on ${uri} is not active+autostart: ${JSON.stringify(done)}`);
  return done;
}

/** libvirt's `default` dir pool at /var/lib/libvirt/images, exactly as virt-install creates it. Idempotent. */
export function ensureDefaultPool(uri: string): Promise<PoolState> {
  return ensureDirPool(uri, DEFAULT_POOL, DEFAULT_POOL_DIR);
}

/** Names of the volumes in a pool (after a refresh). */
export async function poolVolumes(uri: string, pool: string): Promise<string[]> {
  await virsh(uri, ['pool-refresh', pool]);
  return (await hv.listVolumes(uri, pool)).map((v) => v.name).sort();
}

/** The active pool whose target is `dir`, or null. */
export async function poolOnDir(uri: string, dir: string): Promise<string | null> {
  const want = dir.replace(/\/+$/, '');
  const pools = await hv.listPools(uri);
  return pools.find((p) => p.active && p.path.replace(/\/+$/, '') === want)?.name ?? null;
}

// ---- shared storage -----------------------------------------------------------------------------------------

export interface SharedDirectory {
  /** The directory as every sharing host sees it, e.g. /var/lib/libvirt/images/shared. */
  dir: string;
  /** The one real directory behind it, in the root namespace (under the lab's home). */
  backing: string;
  hosts: string[];
  /** Root-namespace path of `insidePath` (a path under `dir`). */
  backingPath(insidePath: string): string;
  /** Unmounts `dir` on every sharing host (the backing directory and its files stay). */
  undo(): Promise<void>;
}

/**
 * Makes `dir` the SAME storage on several lab hosts: one backing directory in the root namespace
 * (<home>/shared-storage/<dir with / as _>), bind-mounted at `dir` inside each host's mount namespace (`mkdir -p`
 * and `mount --bind` through nsenter). Checked: a file written through one host's `dir` is read back through
 * every other's. Idempotent (a host that already has it mounted is left alone).
 */
export async function shareDirectory(l: LabRef, hosts: readonly string[], dir: string): Promise<SharedDirectory> {
  if (!path.posix.isAbsolute(dir) || path.posix.normalize(dir) !== dir) throw new Error(`not a normalized absolute path: ${dir}`);
  if (hosts.length < 2) throw new Error('share a directory between at least two hosts');
  const backing = path.join(path.resolve(l.home), 'shared-storage', dir.replace(/^\/+/, '').replace(/\//g, '_'));
  fs.mkdirSync(backing, { recursive: true, mode: 0o755 });
  const want = fs.statSync(backing);
  for (const host of hosts) {
    labHost(l, host);
    await inHost(l.home, host, 'mkdir', ['-p', '--', dir]);
    const seen = await fileStat(l.home, host, dir);
    if (seen && seen.dev === want.dev && seen.ino === want.ino) continue;
    await inHost(l.home, host, 'mount', ['--bind', backing, dir]);
  }
  const share: SharedDirectory = {
    dir,
    backing,
    hosts: [...hosts],
    backingPath(insidePath: string) {
      const p = path.posix.normalize(insidePath);
      if (p !== dir && !p.startsWith(dir + '/')) throw new Error(`${insidePath} is not under ${dir}`);
      return path.join(backing, p.slice(dir.length));
    },
    async undo() {
      for (const host of hosts) {
        const seen = await fileStat(l.home, host, dir);
        if (!seen || seen.dev !== want.dev || seen.ino !== want.ino) continue;
        if ((await inHostMaybe(l.home, host, 'umount', ['--', dir])) === null) await inHost(l.home, host, 'umount', ['--lazy', '--', dir]);
      }
    },
  };
  // A file written through one host is there, byte for byte, through every other.
  const probe = `${dir}/.ferry-share-probe-${randomUUID()}`;
  const token = `shared ${randomUUID()}\n`;
  await writeInside(l.home, hosts[0]!, probe, token);
  try {
    for (const host of hosts.slice(1)) {
      const got = (await readInside(l.home, host, probe)).toString('utf8');
      if (got !== token) throw new Error(`${dir} is not shared between ${hosts[0]} and ${host}`);
    }
  } finally {
    await inHost(l.home, hosts[hosts.length - 1]!, 'rm', ['-f', '--', probe]);
  }
  return share;
}

// ---- a full filesystem -----------------------------------------------------------------------------------------

/**
 * Mounts a 1 MiB ext2 (loop, scratch image under the lab's home) over `dir` inside the host's mount namespace
 * only, filled up to `freeKiB` KiB free (default 40: room for a small probe file, not for a 64 MiB qcow2's ~200
 * KiB of metadata). The pools on `dir` are refreshed. Returns the undo (unmount, refresh). As
 * test/faults/storage.test.ts does over the lab's storage root.
 */
export async function mountFullFilesystem(l: LabRef, host: string, dir: string, freeKiB = 40): Promise<{ undo(): Promise<void> }> {
  const h = labHost(l, host);
  const img = path.join(scratchDir(l.home), `full-${host}-${randomUUID()}.img`);
  fs.writeFileSync(img, Buffer.alloc(0));
  fs.truncateSync(img, MiB);
  await run('mkfs.ext2', ['-q', '-F', '-b', '1024', '-m', '0', img]);
  await inHost(l.home, h.name, 'mount', ['-o', 'loop', img, dir]);
  const refresh = async () => {
    const pool = await poolOnDir(h.uri, dir);
    if (pool !== null) await virsh(h.uri, ['pool-refresh', pool]);
  };
  try {
    const avail = (await inHost(l.home, h.name, 'df', ['--output=avail', '-B1024', dir])).stdout.trim().split('\n').pop()!;
    await inHost(l.home, h.name, 'dd', ['if=/dev/zero', `of=${dir}/filler`, 'bs=1024', `count=${Number(avail) - freeKiB}`, 'status=none']);
    await refresh();
  } catch (e) {
    await inHost(l.home, h.name, 'umount', [dir]);
    throw e;
  }
  return {
    async undo() {
      await inHost(l.home, h.name, 'umount', [dir]);
      fs.rmSync(img, { force: true });
      await refresh();
    },
  };
}

// ---- bridges in a host's network namespace ----------------------------------------------------------------

/** A Linux bridge `name` (up) inside the host's network namespace, for `<interface type='bridge'>`. Idempotent. */
export async function ensureGuestBridge(l: LabRef, host: string, name: string): Promise<void> {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) throw new Error(`bad bridge name ${name}`);
  const netns = labHost(l, host).netns;
  let exists = true;
  try {
    await run('ip', ['-n', netns, 'link', 'show', 'dev', name], { timeoutMs: 15_000 });
  } catch (e) {
    if (!(e instanceof CommandError)) throw e;
    exists = false;
  }
  if (!exists) await run('ip', ['-n', netns, 'link', 'add', name, 'type', 'bridge'], { timeoutMs: 15_000 });
  await run('ip', ['-n', netns, 'link', 'set', name, 'up'], { timeoutMs: 15_000 });
}

// ---- disk content -------------------------------------------------------------------------------------------

/** Deterministic content: `dataMiB` MiB from prng(seed), then zeros up to `sizeBytes`; optional boot sector. */
export interface DiskContent {
  sizeBytes: number;
  dataMiB: number;
  seed: number;
  bootSector?: Buffer;
}

/**
 * Writes the raw image of `c` to `file` (sparse after the data) and returns the sha256 of its guest-visible
 * content (the whole raw image).
 */
export function writeRawContent(file: string, c: DiskContent): string {
  if (c.dataMiB * MiB > c.sizeBytes) throw new Error(`${c.dataMiB} MiB of data do not fit ${c.sizeBytes} bytes`);
  if (c.bootSector && c.dataMiB < 1) throw new Error('a boot sector needs at least 1 MiB of data');
  const next = prng(c.seed);
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'w');
  try {
    const chunk = Buffer.alloc(MiB);
    const words = new Uint32Array(chunk.buffer, chunk.byteOffset, MiB / 4);
    for (let i = 0; i < c.dataMiB; i++) {
      for (let w = 0; w < words.length; w++) words[w] = (next() * 4294967296) >>> 0;
      if (i === 0 && c.bootSector) c.bootSector.copy(chunk, 0);
      fs.writeSync(fd, chunk, 0, MiB, i * MiB);
      hash.update(chunk);
    }
    fs.ftruncateSync(fd, c.sizeBytes); // the rest: a hole, zeros to the guest
    const zeros = Buffer.alloc(MiB);
    for (let done = c.dataMiB * MiB; done < c.sizeBytes; ) {
      const n = Math.min(MiB, c.sizeBytes - done);
      hash.update(n === MiB ? zeros : zeros.subarray(0, n));
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return `sha256:${hash.digest('hex')}/${c.sizeBytes}`;
}

export interface ImageInfo {
  format: string;
  virtualSize: number;
  backingFilename: string | null;
  backingFormat: string | null;
}

/** `qemu-img info -U` as the host sees the image (works while a QEMU holds it). */
export async function imageInfo(home: string, host: string, insidePath: string): Promise<ImageInfo> {
  const out = (await inHost(home, host, 'qemu-img', ['info', '-U', '--output=json', '--', insidePath])).stdout;
  const j = JSON.parse(out) as { format: string; 'virtual-size': number; 'backing-filename'?: string; 'backing-filename-format'?: string };
  return { format: j.format, virtualSize: j['virtual-size'], backingFilename: j['backing-filename'] ?? null, backingFormat: j['backing-filename-format'] ?? null };
}

/**
 * `sha256:<hex>/<virtual size>` of the guest-visible content of the image at `insidePath` on `host`: for raw
 * files the file itself, for qcow2 (backing chain included) `qemu-img convert -U -O raw` into a scratch file.
 * `-U` (force share): works while a QEMU has the image open. Two images with the same digest show the guest
 * the same bytes.
 */
export async function diskDigest(home: string, host: string, insidePath: string): Promise<string> {
  const info = await imageInfo(home, host, insidePath);
  if (info.format === 'raw') {
    const out = (await inHost(home, host, 'sha256sum', ['--', insidePath])).stdout;
    const hex = out.trim().split(/\s+/)[0] ?? '';
    return `sha256:${hex}/${info.virtualSize}`;
  }
  const tmp = path.join(scratchDir(home), `digest-${randomUUID()}.raw`);
  try {
    await inHost(home, host, 'qemu-img', ['convert', '-U', '-O', 'raw', '--', insidePath, tmp], 300_000);
    const hash = createHash('sha256');
    const fd = fs.openSync(tmp, 'r');
    try {
      const buf = Buffer.alloc(4 * MiB);
      for (;;) {
        const n = fs.readSync(fd, buf, 0, buf.length, null);
        if (n === 0) break;
        hash.update(buf.subarray(0, n));
      }
    } finally {
      fs.closeSync(fd);
    }
    const size = fs.statSync(tmp).size;
    if (size !== info.virtualSize) throw new Error(`converted ${insidePath} to ${size} bytes, virtual size ${info.virtualSize}`);
    return `sha256:${hash.digest('hex')}/${size}`;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

// ---- plain VMs ------------------------------------------------------------------------------------------------

export interface PlainDiskSpec {
  /** Absolute path of the image inside the host, e.g. /var/lib/libvirt/images/web1.qcow2. */
  path: string;
  /** Default qcow2. */
  format?: 'qcow2' | 'raw';
  /** Virtual size, default 64 MiB. */
  sizeMiB?: number;
  /** Deterministic data at the start, default 8 MiB (0: an empty disk). */
  dataMiB?: number;
  /** PRNG seed of the data; default derived from the path. */
  seed?: number;
  /** Pool to create the volume in; default the active pool whose target is the image's directory. */
  pool?: string;
  /** Guest device; default vda, vdb, … in order. */
  target?: string;
  bus?: 'virtio' | 'sata' | 'scsi';
  readonly?: boolean;
  /**
   * A qcow2 overlay on this existing image (inside path): `qemu-img create -f qcow2 -F <its format> -b BASE TOP`,
   * then `pool-refresh`. `overlayData` is written into the overlay only (qemu-io), so the chain matters.
   */
  backing?: string;
  overlayData?: { offsetMiB: number; lengthMiB: number; pattern: number };
  /** The file already exists (made by the caller, e.g. a disk already on shared storage): used as it is. */
  existing?: boolean;
}

export interface PlainVmSpec {
  name: string;
  uuid?: string;
  /** Default 128. */
  memoryMiB?: number;
  disks: PlainDiskSpec[];
  /** A cdrom with this image (created as a small raw file of deterministic bytes when missing). */
  cdrom?: { path: string; bus?: 'ide' | 'sata'; pool?: string };
  /** A virtio NIC on this bridge (made inside the host's network namespace first). */
  bridge?: string;
  /** A guest program in the first disk's boot sector (lab/guest.ts, e.g. a memory-dirtying loop). */
  guest?: DirtyGuestSpec;
  /** Direct kernel boot of the lab's Linux guest (lab/linux-guest.ts linuxGuestBoot): kernel, initramfs, command line. */
  linux?: LinuxGuestBoot;
  /** Default running. */
  state?: 'running' | 'paused' | 'shutoff';
  /** A custom CPU: qemu64 with these features required (e.g. one TCG cannot provide, for a stopped VM). */
  cpuFeatures?: string[];
}

export interface PlainDisk {
  target: string;
  path: string;
  format: 'qcow2' | 'raw';
  sizeBytes: number;
  readonly: boolean;
  /** The guest-visible digest it was created with (diskDigest's format); null for existing/backed images. */
  expectedDigest: string | null;
}

export interface PlainVm {
  name: string;
  uuid: string;
  host: string;
  memoryMiB: number;
  disks: PlainDisk[];
  cdrom: string | null;
  xml: string;
}

function seedOf(s: string): number {
  return createHash('sha256').update(s).digest().readUInt32LE(0);
}

function nextTarget(used: Set<string>): string {
  for (let i = 0; i < 26; i++) {
    const t = `vd${String.fromCharCode(97 + i)}`;
    if (!used.has(t)) return t;
  }
  throw new Error('too many disks');
}

/**
 * Domain XML the way virt-install writes one for `--virt-type qemu --graphics none --import`: TCG, the memory
 * in KiB, one vCPU, acpi/apic, utc clock, file disks with `<driver name='qemu' type=…/>`, a cdrom, a bridged
 * virtio NIC, a pty serial console, a virtio balloon. Every value escaped. The NIC's boot ROM is off: this
 * machine has no iPXE ROMs (ipxe-qemu), without which QEMU refuses to start a virtio NIC with a ROM.
 */
export function plainDomainXml(o: {
  name: string;
  uuid: string;
  memoryMiB: number;
  disks: PlainDisk[];
  cdrom?: { path: string; bus: 'ide' | 'sata' } | null;
  bridge?: string | null;
  busOf?: Record<string, string>;
  cpuFeatures?: string[];
  linux?: LinuxGuestBoot;
}): string {
  const kib = o.memoryMiB * 1024;
  const disk = (d: PlainDisk) => [
    `    <disk type='file' device='disk'>`,
    `      <driver name='qemu' type='${escapeXml(d.format)}'/>`,
    `      <source file='${escapeXml(d.path)}'/>`,
    `      <target dev='${escapeXml(d.target)}' bus='${escapeXml(o.busOf?.[d.target] ?? 'virtio')}'/>`,
    ...(d.readonly ? [`      <readonly/>`] : []),
    `    </disk>`,
  ];
  return [
    `<domain type='qemu'>`,
    `  <name>${escapeXml(o.name)}</name>`,
    `  <uuid>${escapeXml(o.uuid)}</uuid>`,
    `  <metadata>`,
    `    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">`,
    `      <libosinfo:os id="http://libosinfo.org/linux/2022"/>`,
    `    </libosinfo:libosinfo>`,
    `  </metadata>`,
    `  <memory unit='KiB'>${kib}</memory>`,
    `  <currentMemory unit='KiB'>${kib}</currentMemory>`,
    `  <vcpu placement='static'>1</vcpu>`,
    `  <os>`,
    `    <type arch='x86_64' machine='pc'>hvm</type>`,
    ...(o.linux
      ? [`    <kernel>${escapeXml(o.linux.kernel)}</kernel>`, `    <initrd>${escapeXml(o.linux.initrd)}</initrd>`, `    <cmdline>${escapeXml(o.linux.cmdline)}</cmdline>`]
      : [`    <boot dev='hd'/>`]),
    `  </os>`,
    `  <features>`,
    `    <acpi/>`,
    `    <apic/>`,
    `  </features>`,
    ...(o.cpuFeatures
      ? [`  <cpu mode='custom' match='exact' check='full'>`, `    <model fallback='forbid'>qemu64</model>`, ...o.cpuFeatures.map((f) => `    <feature policy='require' name='${escapeXml(f)}'/>`), `  </cpu>`]
      : []),
    `  <clock offset='utc'/>`,
    `  <on_poweroff>destroy</on_poweroff>`,
    `  <on_reboot>restart</on_reboot>`,
    `  <on_crash>destroy</on_crash>`,
    `  <devices>`,
    ...o.disks.flatMap(disk),
    ...(o.cdrom
      ? [
          `    <disk type='file' device='cdrom'>`,
          `      <driver name='qemu' type='raw'/>`,
          `      <source file='${escapeXml(o.cdrom.path)}'/>`,
          `      <target dev='${o.cdrom.bus === 'ide' ? 'hdc' : 'sda'}' bus='${escapeXml(o.cdrom.bus)}'/>`,
          `      <readonly/>`,
          `    </disk>`,
        ]
      : []),
    ...(o.bridge
      ? [
          `    <interface type='bridge'>`,
          `      <source bridge='${escapeXml(o.bridge)}'/>`,
          `      <model type='virtio'/>`,
          `      <rom enabled='no'/>`,
          `    </interface>`,
        ]
      : []),
    `    <serial type='pty'>`,
    `      <target port='0'/>`,
    `    </serial>`,
    `    <console type='pty'>`,
    `      <target type='serial' port='0'/>`,
    `    </console>`,
    `    <memballoon model='virtio'/>`,
    `  </devices>`,
    `</domain>`,
    '',
  ].join('\n');
}

async function poolFor(uri: string, file: string, given: string | undefined): Promise<string> {
  if (given !== undefined) return given;
  const dir = path.posix.dirname(file);
  const pool = await poolOnDir(uri, dir);
  if (pool === null) throw new Error(`no active pool on ${dir} (${uri}): make one first (ensureDefaultPool / ensureDirPool)`);
  return pool;
}

/** Creates one volume through libvirt (vol-create-as in the pool holding its directory) and fills it. */
async function createDisk(l: LabRef, host: LabHost, d: PlainDiskSpec, target: string, bootSector: Buffer | undefined): Promise<PlainDisk> {
  const format = d.format ?? 'qcow2';
  const sizeBytes = (d.sizeMiB ?? 64) * MiB;
  const readonly = d.readonly ?? false;
  if (d.existing) {
    const info = await imageInfo(l.home, host.name, d.path);
    return { target, path: d.path, format: info.format as 'qcow2' | 'raw', sizeBytes: info.virtualSize, readonly, expectedDigest: null };
  }
  const pool = await poolFor(host.uri, d.path, d.pool);
  const name = path.posix.basename(d.path);
  if (await existsInside(l.home, host.name, d.path)) throw new Error(`${d.path} already exists on ${host.name}`);
  if (d.backing !== undefined) {
    if (format !== 'qcow2') throw new Error('a backing chain needs a qcow2 top');
    const base = await imageInfo(l.home, host.name, d.backing);
    await inHost(l.home, host.name, 'qemu-img', ['create', '-q', '-f', 'qcow2', '-F', base.format, '-b', d.backing, '--', d.path]);
    if (d.overlayData) {
      const { offsetMiB, lengthMiB, pattern } = d.overlayData;
      await inHost(l.home, host.name, 'qemu-io', ['-f', 'qcow2', '-c', `write -P ${pattern} ${offsetMiB}M ${lengthMiB}M`, '--', d.path]);
    }
    await virsh(host.uri, ['pool-refresh', pool]);
    return { target, path: d.path, format, sizeBytes: base.virtualSize, readonly, expectedDigest: null };
  }
  await virsh(host.uri, ['vol-create-as', `--pool=${pool}`, `--name=${name}`, `--capacity=${sizeBytes}`, `--format=${format}`]);
  const raw = path.join(scratchDir(l.home), `${name}.${randomUUID()}.raw`);
  try {
    const expectedDigest = writeRawContent(raw, {
      sizeBytes,
      dataMiB: d.dataMiB ?? 8,
      seed: d.seed ?? seedOf(d.path),
      ...(bootSector ? { bootSector } : {}),
    });
    // into the volume libvirt made (-n: no new image), as the host sees it
    await inHost(l.home, host.name, 'qemu-img', ['convert', '-n', '-f', 'raw', '-O', format, '--', raw, d.path], 300_000);
    await virsh(host.uri, ['pool-refresh', pool]);
    return { target, path: d.path, format, sizeBytes, readonly, expectedDigest };
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

/**
 * Defines a VM with plain virsh (`virsh define` of plainDomainXml), its disks created through libvirt first
 * (see PlainDiskSpec), then starts it (`state` running, default), starts and suspends it (paused) or leaves it
 * shut off. `hostOrUri`: the lab host's name or its libvirt URI. Nothing boots unless `guest` is given: a VM
 * whose disk has no boot sector sits in SeaBIOS and is still a running domain libvirt can live-migrate.
 */
export async function definePlainVm(l: LabRef, hostOrUri: string, spec: PlainVmSpec): Promise<PlainVm> {
  const host = labHost(l, hostOrUri);
  const uuid = spec.uuid ?? randomUUID();
  const memoryMiB = spec.memoryMiB ?? 128;
  if ((await virshMaybe(host.uri, ['domuuid', spec.name])) !== null) throw new Error(`${host.name} already has a domain ${spec.name}`);
  const boot = spec.guest ? (await dirtyBootSector(spec.guest, memoryMiB, scratchDir(l.home))).image : undefined;
  const used = new Set(spec.disks.map((d) => d.target).filter((t): t is string => t !== undefined));
  const disks: PlainDisk[] = [];
  const busOf: Record<string, string> = {};
  for (const [i, d] of spec.disks.entries()) {
    const target = d.target ?? nextTarget(used);
    used.add(target);
    if (d.bus) busOf[target] = d.bus;
    disks.push(await createDisk(l, host, d, target, i === 0 ? boot : undefined));
  }
  let cdrom: { path: string; bus: 'ide' | 'sata' } | null = null;
  if (spec.cdrom) {
    if (!(await existsInside(l.home, host.name, spec.cdrom.path))) {
      const pool = await poolFor(host.uri, spec.cdrom.path, spec.cdrom.pool);
      await virsh(host.uri, ['vol-create-as', `--pool=${pool}`, `--name=${path.posix.basename(spec.cdrom.path)}`, `--capacity=${MiB}`, '--format=raw']);
      const raw = path.join(scratchDir(l.home), `cdrom-${randomUUID()}.raw`);
      writeRawContent(raw, { sizeBytes: MiB, dataMiB: 1, seed: seedOf(spec.cdrom.path) });
      try {
        await inHost(l.home, host.name, 'cp', ['--', raw, spec.cdrom.path]);
      } finally {
        fs.rmSync(raw, { force: true });
      }
      await virsh(host.uri, ['pool-refresh', pool]);
    }
    cdrom = { path: spec.cdrom.path, bus: spec.cdrom.bus ?? 'ide' };
  }
  if (spec.bridge) await ensureGuestBridge(l, host.name, spec.bridge);
  const xml = plainDomainXml({
    name: spec.name,
    uuid,
    memoryMiB,
    disks,
    cdrom,
    bridge: spec.bridge ?? null,
    busOf,
    ...(spec.cpuFeatures ? { cpuFeatures: spec.cpuFeatures } : {}),
    ...(spec.linux ? { linux: spec.linux } : {}),
  });
  const file = path.join(scratchDir(l.home), `${spec.name}-${uuid}.xml`);
  fs.writeFileSync(file, xml);
  try {
    await virsh(host.uri, ['define', file]);
  } finally {
    fs.rmSync(file, { force: true });
  }
  const state = spec.state ?? 'running';
  if (state !== 'shutoff') await virsh(host.uri, ['start', uuid], 90_000);
  if (state === 'paused') await virsh(host.uri, ['suspend', uuid]);
  return { name: spec.name, uuid, host: host.name, memoryMiB, disks, cdrom: cdrom?.path ?? null, xml };
}

/**
 * One volume made through libvirt the way definePlainVm makes a VM's disk (vol-create-as in the pool holding its
 * directory, deterministic content; or a qcow2 overlay), owned by no domain: "someone else's" file, a base image.
 */
export async function createPlainVolume(l: LabRef, hostOrUri: string, d: PlainDiskSpec): Promise<PlainDisk> {
  return createDisk(l, labHost(l, hostOrUri), d, d.target ?? 'vda', undefined);
}

/** `virsh domstate` on the host, or null when the host has no such domain. */
export async function domState(uri: string, uuidOrName: string): Promise<string | null> {
  const out = await virshMaybe(uri, ['domstate', uuidOrName]);
  return out === null ? null : out.trim();
}

/** Every lab host whose libvirt has the domain, with its state. */
export async function whereIs(l: LabRef, uuid: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const h of l.lab.hosts) {
    const s = await domState(h.uri, uuid);
    if (s !== null) out[h.name] = s;
  }
  return out;
}

/** Destroys and undefines the VM wherever it is (its disks stay unless `removeDisks`, deleted inside the host). */
export async function removePlainVm(l: LabRef, vm: { uuid: string; disks?: { path: string }[] }, o: { removeDisks?: boolean } = {}): Promise<void> {
  for (const h of l.lab.hosts) {
    const s = await domState(h.uri, vm.uuid);
    if (s === null) continue;
    if (s !== 'shut off') await virshMaybe(h.uri, ['destroy', vm.uuid]);
    await virshMaybe(h.uri, ['undefine', vm.uuid]);
  }
  if (o.removeDisks) {
    for (const h of l.lab.hosts) {
      for (const d of vm.disks ?? []) await inHostMaybe(l.home, h.name, 'rm', ['-f', '--', d.path]);
    }
  }
}

// ---- the QEMU process ----------------------------------------------------------------------------------------

/** Pids of the QEMU processes of domain `vmName` in the host's namespaces (`-name guest=<name>,…`). */
export function qemuPids(home: string, host: string, vmName: string): number[] {
  const mnt = nsInodeOfFile(mountNsFile(home, host));
  if (mnt === null) throw new Error(`${host} has no mount namespace`);
  const out: number[] = [];
  for (const pid of allPids()) {
    let args: string[];
    try {
      args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!/qemu-system/.test(path.basename(args[0] ?? ''))) continue;
    const i = args.indexOf('-name');
    const name = i >= 0 ? args[i + 1] ?? '' : '';
    if (name !== `guest=${vmName}` && !name.startsWith(`guest=${vmName},`)) continue;
    if (nsInodeOfPid(pid, 'mnt') !== mnt) continue;
    out.push(pid);
  }
  return out;
}

/**
 * What the VM's QEMU on `host` holds open that is unlinked: every /proc/<pid>/fd/* link ending in ` (deleted)`
 * (memfds excluded: they are never linked). Throws when no QEMU of that VM runs there.
 */
export function qemuDeletedFiles(home: string, host: string, vmName: string): string[] {
  const pids = qemuPids(home, host, vmName);
  if (pids.length === 0) throw new Error(`no QEMU of ${vmName} runs on ${host}`);
  const out: string[] = [];
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (link.endsWith(' (deleted)') && !link.startsWith('/memfd:')) out.push(link);
    }
  }
  return [...new Set(out)].sort();
}

/** The rule "the VM never runs on an unlinked file": true when the VM's QEMU on `host` holds a deleted file. */
export function qemuHoldsDeletedFile(home: string, host: string, vmName: string): boolean {
  return qemuDeletedFiles(home, host, vmName).length > 0;
}

/** The image files the VM's QEMU on `host` has open (its fd links, deleted ones included). */
export function qemuOpenFiles(home: string, host: string, vmName: string): string[] {
  const out = new Set<string>();
  for (const pid of qemuPids(home, host, vmName)) {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        const link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (link.startsWith('/')) out.add(link);
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return [...out].sort();
}

// ---- traffic -----------------------------------------------------------------------------------------------------

/** Bytes the host received and sent on its eth0 so far (the root-side veth's counters, seen from the bridge). */
export function hostNetBytes(host: string): { rx: number; tx: number } {
  const dir = `/sys/class/net/${host}-v/statistics`;
  // the root-side veth's tx is what the host received
  return {
    rx: Number(fs.readFileSync(`${dir}/tx_bytes`, 'utf8').trim()),
    tx: Number(fs.readFileSync(`${dir}/rx_bytes`, 'utf8').trim()),
  };
}

// ---- inventory -------------------------------------------------------------------------------------------------

/** `inventory sync` of the lab's hosts (what `ferry inventory sync` does), failing on a host that could not be read. */
export async function syncPlainVms(inventory: Inventory, l: LabRef, hypervisor = hv): Promise<SyncResult[]> {
  const r = await syncInventory(inventory, hypervisor, { hosts: l.lab.hosts.map((h) => h.name) });
  const bad = r.filter((x) => x.error);
  if (bad.length > 0) throw new Error(`inventory sync failed: ${bad.map((x) => `${x.host}: ${x.error}`).join('; ')}`);
  return r;
}

/** hostPath re-exported for callers that look at the lab's own bind mounts (/var/lib/libvirt …) from the root. */
export { hostPath };
