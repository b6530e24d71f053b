/**
 * Lab guest programs: tiny boot sectors assembled from source in lab/guest/ at VM-creation time (GNU `as`
 * + `ld` from binutils, run through run(), no shell) and written into the first sector of the VM's disk.
 *
 * `dirty` (lab/guest/dirty.s): keeps dirtying memory at a set rate so that a live migration converges only
 * when it outruns the guest. It `incl`s one dword in each 4 KiB page of the region [2 MiB, 2 MiB + regionMiB)
 * in order, wrapping around, paced by the PIT: `pagesPerTick` pages per tick of a PIT channel 0 programmed
 * with `pitDivisor` (1193182 / pitDivisor ticks/s), idling in `hlt` between ticks, so a paced guest costs
 * little host CPU. `pagesPerSec: 'max'` dirties as fast as the vCPU can (no timer, 100 % of a host core).
 * Serial (COM1): "ferry-dirty" at boot, then one '.' per pass over the region.
 *
 * The parameters live at fixed offsets of the 512-byte image (see dirty.s) and are patched per VM.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../hypervisor/exec';
import type { LinuxGuestSpec } from './linux-guest';

export const PIT_HZ = 1_193_182;
export const PAGE_BYTES = 4096;
/** Where the dirtied region starts in guest-physical memory. */
export const DIRTY_REGION_START_MIB = 2;
/** The slowest paced rate: one page per tick at the largest PIT divisor (65535). */
export const DIRTY_MIN_PAGES_PER_SEC = 19;
export const DIRTY_MAX_PAGES_PER_SEC = 1_000_000;
/** Ticks per second never exceed this: at 100 Hz a vCPU descheduled for < 10 ms loses no tick. */
const MAX_TICK_HZ = 100;

/** Offsets in the boot image (dirty.s). */
export const DIRTY_MAGIC = 'FDG1';
export const DIRTY_OFF_MAGIC = 0x1e0;
export const DIRTY_OFF_REGION_PAGES = 0x1e4;
export const DIRTY_OFF_PAGES_PER_TICK = 0x1e8;
export const DIRTY_OFF_PIT_DIVISOR = 0x1ec;
export const BOOT_SECTOR_BYTES = 512;

export interface DirtyGuestSpec {
  kind: 'dirty';
  /** Size of the dirtied region, MiB (1 MiB = 256 pages); at most the VM's memory minus 2 MiB. */
  regionMiB: number;
  /** Pages dirtied per second (MiB/s = pages/s / 256), 19..1,000,000, or 'max' (unpaced). */
  pagesPerSec: number | 'max';
}

export type LabGuestSpec = DirtyGuestSpec | LinuxGuestSpec;

/** What the guest is patched with, and the rate that gives. */
export interface DirtyGuestParams {
  regionPages: number;
  /** 0 with pitDivisor 0 (unpaced). */
  pagesPerTick: number;
  /** 0 = unpaced. */
  pitDivisor: number;
  /** pagesPerTick * PIT_HZ / pitDivisor (null when unpaced): what the guest aims at. */
  ratePagesPerSec: number | null;
}

export class GuestError extends Error {
  override readonly name = 'GuestError';
}

/** The boot-sector parameters for a spec (validated against the VM's memory). */
export function dirtyGuestParams(spec: DirtyGuestSpec, memoryMiB: number): DirtyGuestParams {
  if (!Number.isInteger(spec.regionMiB) || spec.regionMiB < 1 || spec.regionMiB + DIRTY_REGION_START_MIB > memoryMiB) {
    throw new GuestError(
      `dirty guest: regionMiB must be an integer from 1 to ${memoryMiB - DIRTY_REGION_START_MIB} (memory ${memoryMiB} MiB ` +
        `minus the ${DIRTY_REGION_START_MIB} MiB below the region), got ${spec.regionMiB}`,
    );
  }
  const regionPages = spec.regionMiB * 256;
  if (spec.pagesPerSec === 'max') return { regionPages, pagesPerTick: 0, pitDivisor: 0, ratePagesPerSec: null };
  const rate = spec.pagesPerSec;
  if (!Number.isFinite(rate) || rate < DIRTY_MIN_PAGES_PER_SEC || rate > DIRTY_MAX_PAGES_PER_SEC) {
    throw new GuestError(
      `dirty guest: pagesPerSec must be ${DIRTY_MIN_PAGES_PER_SEC}..${DIRTY_MAX_PAGES_PER_SEC} or 'max', got ${rate}`,
    );
  }
  const pagesPerTick = Math.ceil(rate / MAX_TICK_HZ);
  const pitDivisor = Math.min(65535, Math.max(1, Math.round((pagesPerTick * PIT_HZ) / rate)));
  return { regionPages, pagesPerTick, pitDivisor, ratePagesPerSec: (pagesPerTick * PIT_HZ) / pitDivisor };
}

/** A copy of the boot image with the parameters written in. */
export function patchDirtyBootSector(image: Buffer, p: DirtyGuestParams): Buffer {
  checkDirtyImage(image);
  for (const [what, v] of [
    ['regionPages', p.regionPages],
    ['pagesPerTick', p.pagesPerTick],
    ['pitDivisor', p.pitDivisor],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new GuestError(`dirty guest: ${what} out of range: ${v}`);
  }
  if (p.pitDivisor > 65535) throw new GuestError(`dirty guest: pitDivisor must be <= 65535, got ${p.pitDivisor}`);
  if (p.regionPages < 1) throw new GuestError('dirty guest: regionPages must be >= 1');
  const out = Buffer.from(image);
  out.writeUInt32LE(p.regionPages, DIRTY_OFF_REGION_PAGES);
  out.writeUInt32LE(p.pagesPerTick, DIRTY_OFF_PAGES_PER_TICK);
  out.writeUInt32LE(p.pitDivisor, DIRTY_OFF_PIT_DIVISOR);
  return out;
}

/** The parameters a boot image carries. */
export function readDirtyBootSector(image: Buffer): DirtyGuestParams {
  checkDirtyImage(image);
  const regionPages = image.readUInt32LE(DIRTY_OFF_REGION_PAGES);
  const pagesPerTick = image.readUInt32LE(DIRTY_OFF_PAGES_PER_TICK);
  const pitDivisor = image.readUInt32LE(DIRTY_OFF_PIT_DIVISOR);
  return { regionPages, pagesPerTick, pitDivisor, ratePagesPerSec: pitDivisor === 0 ? null : (pagesPerTick * PIT_HZ) / pitDivisor };
}

function checkDirtyImage(image: Buffer): void {
  if (image.length !== BOOT_SECTOR_BYTES) throw new GuestError(`boot image must be ${BOOT_SECTOR_BYTES} bytes, got ${image.length}`);
  if (image[510] !== 0x55 || image[511] !== 0xaa) throw new GuestError('boot image lacks the 0x55 0xaa signature');
  if (image.toString('latin1', DIRTY_OFF_MAGIC, DIRTY_OFF_MAGIC + 4) !== DIRTY_MAGIC) {
    throw new GuestError(`boot image lacks the ${DIRTY_MAGIC} parameter block at 0x${DIRTY_OFF_MAGIC.toString(16)}`);
  }
}

/** lab/guest/<name> from the sources (lab/) or the compiled tree (dist/lab/). */
export function guestSourcePath(name: string): string {
  const candidates = [path.join(__dirname, 'guest', name), path.join(__dirname, '..', '..', 'lab', 'guest', name)];
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) throw new GuestError(`guest source ${name} not found (looked in ${candidates.join(', ')})`);
  return found;
}

/**
 * Assembles lab/guest/dirty.s into its 512-byte boot image (default parameters) in `scratchDir`.
 * Needs binutils (`as`, `ld`).
 */
export async function buildDirtyBootSector(scratchDir: string): Promise<Buffer> {
  const src = guestSourcePath('dirty.s');
  fs.mkdirSync(scratchDir, { recursive: true });
  const obj = path.join(scratchDir, `dirty.${process.pid}.o`);
  const bin = path.join(scratchDir, `dirty.${process.pid}.bin`);
  try {
    try {
      await run('as', ['--32', '-o', obj, src], { timeoutMs: 30_000 });
      await run('ld', ['-m', 'elf_i386', '-Ttext=0x7c00', '--oformat=binary', '-o', bin, obj], { timeoutMs: 30_000 });
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new GuestError(`cannot assemble ${src} (binutils installed?): ${msg}`);
    }
    const image = fs.readFileSync(bin);
    checkDirtyImage(image);
    return image;
  } finally {
    fs.rmSync(obj, { force: true });
    fs.rmSync(bin, { force: true });
  }
}

/** The boot image for a spec: built, then patched. */
export async function dirtyBootSector(spec: DirtyGuestSpec, memoryMiB: number, scratchDir: string): Promise<{ image: Buffer; params: DirtyGuestParams }> {
  const params = dirtyGuestParams(spec, memoryMiB);
  const image = patchDirtyBootSector(await buildDirtyBootSector(scratchDir), params);
  return { image, params };
}
