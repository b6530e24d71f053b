/**
 * The lab's Linux guest: a Debian kernel booted directly (`<kernel>`, `<initrd>`, `<cmdline>`) under TCG, with an
 * initramfs made of busybox (busybox-static), the virtio modules the cloud kernel needs, an /init script
 * (lab/guest/linux/init.sh) and the workload `ferry-guest agent` (Go, lab/guest/linux, built static).
 *
 * The workload writes sequence-numbered, checksummed 512-byte records to a ring on /dev/vda, each one flushed
 * (O_DIRECT|O_DSYNC) before the next: a record counts as acknowledged only once its write returned (lab/records.ts
 * reads them back). It answers UDP probes on port 7007 with the last acknowledged record; the lab's prober
 * (lab/guest-net.ts) asks every 10 ms from its own network namespace.
 *
 * The kernel (linux-image-cloud-amd64's image package) and busybox-static come from Debian: scripts/install-deps
 * downloads and unpacks them under .tools/guest/ (`apt-get download` + `dpkg-deb -x`; nothing is installed into the
 * machine's /boot). The agent binary and the initramfs are built on first use and cached there by content hash.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { run } from '../hypervisor/exec';
import { guestSourcePath, GuestError } from './guest';

export interface LinuxGuestSpec {
  kind: 'linux';
  /** The guest's address on the lab's guest network (set by the lab when the VM is recorded). */
  ip: string;
  /** Records written (and flushed) per second; default 100. */
  recordsPerSec?: number;
  /** Bulk data written to the disk past the record ring, MiB/s; default 0. */
  writeMiBPerSec?: number;
}

/** Record rates the workload accepts. */
export const LINUX_GUEST_MAX_RECORDS_PER_SEC = 1000;
export const LINUX_GUEST_MAX_WRITE_MIB_PER_SEC = 200;
/** Memory a Linux guest needs at least (kernel, initramfs unpacked in RAM, the workload). */
export const LINUX_GUEST_MIN_MEMORY_MIB = 96;

/** The guests' /24 on the lab's guest network (lab/guest-net.ts), and the prober's address in it. */
export const LAB_GUEST_SUBNET = '192.168.213';
/** Where the guests send their keep-alive datagrams: the prober. */
export const PROBER_ADDRESS = `${LAB_GUEST_SUBNET}.2`;

/** The modules the cloud kernel needs for a virtio disk and NIC; their dependencies come from modules.dep. */
const MODULES = ['virtio_pci', 'virtio_blk', 'virtio_net'];

export interface LinuxGuestBoot {
  kernel: string;
  initrd: string;
  cmdline: string;
}

export function checkLinuxGuest(spec: LinuxGuestSpec, memoryMiB: number): void {
  const records = spec.recordsPerSec ?? 100;
  const write = spec.writeMiBPerSec ?? 0;
  if (!Number.isFinite(records) || records <= 0 || records > LINUX_GUEST_MAX_RECORDS_PER_SEC) {
    throw new GuestError(`linux guest: recordsPerSec must be in (0, ${LINUX_GUEST_MAX_RECORDS_PER_SEC}], got ${records}`);
  }
  if (!Number.isFinite(write) || write < 0 || write > LINUX_GUEST_MAX_WRITE_MIB_PER_SEC) {
    throw new GuestError(`linux guest: writeMiBPerSec must be 0..${LINUX_GUEST_MAX_WRITE_MIB_PER_SEC}, got ${write}`);
  }
  if (memoryMiB < LINUX_GUEST_MIN_MEMORY_MIB) {
    throw new GuestError(`linux guest: needs at least ${LINUX_GUEST_MIN_MEMORY_MIB} MiB of memory, got ${memoryMiB}`);
  }
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(spec.ip)) throw new GuestError(`linux guest: not an IPv4 address: ${spec.ip}`);
}

/** The repository (where .tools/ is), from lab/ or dist/lab/. */
function repoRoot(): string {
  for (const up of ['..', path.join('..', '..')]) {
    const dir = path.resolve(__dirname, up);
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new GuestError(`cannot find the repository above ${__dirname}`);
}

/** .tools/guest: what scripts/install-deps unpacked, and the build cache. */
export function guestToolsDir(): string {
  return process.env.FERRY_GUEST_TOOLS ?? path.join(repoRoot(), '.tools', 'guest');
}

interface KernelAssets {
  version: string;
  vmlinuz: string;
  modulesDir: string;
  busybox: string;
}

function kernelAssets(): KernelAssets {
  const dir = guestToolsDir();
  const missing = (what: string) =>
    new GuestError(`${what} is missing under ${dir}: run scripts/install-deps (it downloads linux-image-cloud-amd64 and busybox-static)`);
  const boot = path.join(dir, 'linux-image', 'boot');
  const vmlinuz = fs.existsSync(boot) ? fs.readdirSync(boot).find((f) => f.startsWith('vmlinuz-')) : undefined;
  if (!vmlinuz) throw missing('the Debian kernel');
  const version = vmlinuz.slice('vmlinuz-'.length);
  const modulesDir = path.join(dir, 'linux-image', 'lib', 'modules', version);
  if (!fs.existsSync(modulesDir)) throw missing(`the modules of kernel ${version}`);
  const busybox = path.join(dir, 'busybox-static', 'bin', 'busybox');
  if (!fs.existsSync(busybox)) throw missing('busybox (busybox-static)');
  return { version, vmlinuz: path.join(boot, vmlinuz), modulesDir, busybox };
}

function hashOf(parts: readonly (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex').slice(0, 16);
}

/** Builds `ferry-guest` (static, linux/amd64) from lab/guest/linux when its sources changed; returns its path. */
export async function guestAgentBinary(): Promise<string> {
  const src = guestSourcePath('linux');
  const files = fs.readdirSync(src).filter((f) => f.endsWith('.go') || f === 'go.mod').sort();
  const hash = hashOf(files.flatMap((f) => [f, fs.readFileSync(path.join(src, f))]));
  const out = path.join(guestToolsDir(), 'build', `ferry-guest-${hash}`);
  if (fs.existsSync(out)) return out;
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    await run('go', ['build', '-trimpath', '-ldflags=-s -w', '-o', tmp, '.'], {
      cwd: src,
      timeoutMs: 300_000,
      env: { CGO_ENABLED: '0', GOOS: 'linux', GOARCH: 'amd64', GOTOOLCHAIN: 'local', GOFLAGS: '-mod=mod', ...goCacheEnv() },
    });
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new GuestError(`cannot build the guest workload in ${src} (is Go installed?): ${e instanceof Error ? e.message : String(e)}`);
  }
  fs.renameSync(tmp, out);
  return out;
}

/** Go needs a cache directory; root without HOME (e.g. under some CI runners) has none by default. */
function goCacheEnv(): Record<string, string> {
  return process.env.GOCACHE || process.env.HOME ? {} : { GOCACHE: path.join(guestToolsDir(), 'gocache') };
}

/** One entry of a newc cpio archive (what the kernel unpacks as its initramfs). */
interface CpioEntry {
  name: string;
  mode: number;
  data?: Buffer;
  /** Symlink target. */
  link?: string;
}

/** The "new ASCII" (newc) cpio format: a 110-byte hex header per entry, name and data padded to 4 bytes. */
function newcArchive(entries: readonly CpioEntry[]): Buffer {
  const chunks: Buffer[] = [];
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  const all = [...entries, { name: 'TRAILER!!!', mode: 0 }];
  all.forEach((e, i) => {
    const body = e.link !== undefined ? Buffer.from(e.link) : (e.data ?? Buffer.alloc(0));
    const name = Buffer.from(`${e.name}\0`);
    const fields = [i + 1, e.mode, 0, 0, 1, 0, body.length, 0, 0, 0, 0, name.length, 0];
    const header = Buffer.from(`070701${fields.map(hex).join('')}`);
    chunks.push(header, name, pad(header.length + name.length), body, pad(body.length));
  });
  return Buffer.concat(chunks);
}

/** modules.dep lines → the module files `wanted` need, dependencies first. */
function moduleClosure(modulesDep: string, wanted: readonly string[]): string[] {
  const deps = new Map<string, string[]>();
  for (const line of modulesDep.split('\n')) {
    const [mod, rest] = line.split(':');
    if (mod && rest !== undefined) deps.set(mod.trim(), rest.trim().split(/\s+/).filter(Boolean));
  }
  const byName = new Map([...deps.keys()].map((m) => [path.basename(m, '.ko'), m]));
  const out: string[] = [];
  const visit = (m: string) => {
    if (out.includes(m)) return;
    for (const d of deps.get(m) ?? []) visit(d);
    out.push(m);
  };
  for (const w of wanted) {
    const m = byName.get(w);
    if (!m) throw new GuestError(`kernel module ${w} not found in modules.dep`);
    visit(m);
  }
  return out;
}

/**
 * The initramfs (gzip'd newc cpio): busybox, /init, the workload, and the virtio modules with a modules.dep
 * made by busybox's depmod. Cached by content.
 */
export async function guestInitrd(): Promise<{ path: string; kernel: string }> {
  const k = kernelAssets();
  const agent = await guestAgentBinary();
  const init = fs.readFileSync(guestSourcePath(path.join('linux', 'init.sh')));
  const hash = hashOf([k.version, path.basename(agent), init, fs.readFileSync(k.busybox), MODULES.join(',')]);
  const out = path.join(guestToolsDir(), 'build', `initrd-${hash}.gz`);
  if (fs.existsSync(out)) return { path: out, kernel: k.vmlinuz };

  // busybox's depmod needs the module tree on disk: stage the closure and let it write modules.dep.
  const full = await run(k.busybox, ['depmod', '-n', '-b', path.join(guestToolsDir(), 'linux-image'), k.version], { timeoutMs: 120_000 });
  const modules = moduleClosure(full.stdout, MODULES);
  const stage = fs.mkdtempSync(path.join(guestToolsDir(), 'build', 'stage-'));
  try {
    const modRoot = path.join(stage, 'lib', 'modules', k.version);
    for (const m of modules) {
      fs.mkdirSync(path.dirname(path.join(modRoot, m)), { recursive: true });
      fs.copyFileSync(path.join(k.modulesDir, m), path.join(modRoot, m));
    }
    await run(k.busybox, ['depmod', '-b', stage, k.version], { timeoutMs: 60_000 });
    const entries: CpioEntry[] = [
      ...['bin', 'dev', 'proc', 'sys', 'tmp', 'lib', 'lib/modules'].map((d) => ({ name: d, mode: 0o040755 })),
      { name: 'bin/busybox', mode: 0o100755, data: fs.readFileSync(k.busybox) },
      { name: 'bin/sh', mode: 0o120777, link: 'busybox' },
      { name: 'bin/ferry-guest', mode: 0o100755, data: fs.readFileSync(agent) },
      { name: 'init', mode: 0o100755, data: init },
    ];
    const walk = (rel: string) => {
      for (const f of fs.readdirSync(path.join(stage, rel)).sort()) {
        const r = path.posix.join(rel, f);
        if (fs.statSync(path.join(stage, r)).isDirectory()) {
          entries.push({ name: r, mode: 0o040755 });
          walk(r);
        } else entries.push({ name: r, mode: 0o100644, data: fs.readFileSync(path.join(stage, r)) });
      }
    };
    walk(path.posix.join('lib', 'modules'));
    const tmp = `${out}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, zlib.gzipSync(newcArchive(entries), { level: 6 }));
    fs.renameSync(tmp, out);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
  return { path: out, kernel: k.vmlinuz };
}

/**
 * Kernel, initramfs and command line for one guest, with the kernel and initramfs copied to `dir` (a path every
 * lab host sees: QEMU opens them on the host that starts the VM and again on every migration target).
 */
export async function linuxGuestBoot(spec: LinuxGuestSpec, dir: string): Promise<LinuxGuestBoot> {
  const built = await guestInitrd();
  fs.mkdirSync(dir, { recursive: true });
  const kernel = path.join(dir, path.basename(built.kernel));
  const initrd = path.join(dir, path.basename(built.path));
  for (const [from, to] of [
    [built.kernel, kernel],
    [built.path, initrd],
  ] as const) {
    if (!fs.existsSync(to)) {
      fs.copyFileSync(from, `${to}.${process.pid}.tmp`);
      fs.renameSync(`${to}.${process.pid}.tmp`, to);
    }
  }
  const cmdline = [
    'console=ttyS0',
    'quiet',
    'panic=-1',
    `ferry.ip=${spec.ip}/24`,
    `ferry.records=${spec.recordsPerSec ?? 100}`,
    `ferry.write=${spec.writeMiBPerSec ?? 0}`,
    `ferry.peer=${PROBER_ADDRESS}`,
  ].join(' ');
  return { kernel, initrd, cmdline };
}
