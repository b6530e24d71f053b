/**
 * The lab's dirtying guest (lab/guest.ts, lab/guest/dirty.s): parameters for a rate, the boot image's
 * layout, and — when binutils and QEMU are installed — that the assembled sector boots under TCG and
 * dirties at about the rate it was given (one '.' on the serial port per pass over its region).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CommandError, run } from '../../hypervisor/exec';
import {
  BOOT_SECTOR_BYTES,
  DIRTY_MIN_PAGES_PER_SEC,
  DIRTY_OFF_MAGIC,
  GuestError,
  PIT_HZ,
  buildDirtyBootSector,
  dirtyGuestParams,
  patchDirtyBootSector,
  readDirtyBootSector,
} from '../../lab/guest';

const onPath = (bin: string) =>
  (process.env['PATH'] ?? '').split(':').some((d) => d && fs.existsSync(path.join(d, bin)));
const canBuild = onPath('as') && onPath('ld');
const canBoot = canBuild && onPath('qemu-system-x86_64');

describe('dirtyGuestParams', () => {
  it.each([19, 100, 256, 1000, 1024, 2560, 5120, 12_800, 25_600, 102_400, 1_000_000])(
    '%i pages/s: at most 100 ticks/s, rate within 0.5 %',
    (rate) => {
      const p = dirtyGuestParams({ kind: 'dirty', regionMiB: 96, pagesPerSec: rate }, 128);
      expect(p.regionPages).toBe(96 * 256);
      expect(p.pitDivisor).toBeGreaterThanOrEqual(1);
      expect(p.pitDivisor).toBeLessThanOrEqual(65535);
      expect(PIT_HZ / p.pitDivisor).toBeLessThanOrEqual(100.01);
      expect(p.pagesPerTick).toBeGreaterThanOrEqual(1);
      expect(p.ratePagesPerSec).not.toBeNull();
      expect(Math.abs((p.ratePagesPerSec ?? 0) - rate) / rate).toBeLessThan(0.005);
      expect(p.ratePagesPerSec).toBeCloseTo((p.pagesPerTick * PIT_HZ) / p.pitDivisor, 6);
    },
  );

  it('10 MiB/s is 26 pages per tick at divisor 12118', () => {
    expect(dirtyGuestParams({ kind: 'dirty', regionMiB: 96, pagesPerSec: 2560 }, 128)).toMatchObject({
      pagesPerTick: 26,
      pitDivisor: 12118,
    });
  });

  it("'max' is unpaced", () => {
    expect(dirtyGuestParams({ kind: 'dirty', regionMiB: 8, pagesPerSec: 'max' }, 128)).toEqual({
      regionPages: 2048,
      pagesPerTick: 0,
      pitDivisor: 0,
      ratePagesPerSec: null,
    });
  });

  it('refuses rates and regions it cannot do', () => {
    const bad = (regionMiB: number, pagesPerSec: number, memoryMiB = 128) => () =>
      dirtyGuestParams({ kind: 'dirty', regionMiB, pagesPerSec }, memoryMiB);
    expect(bad(96, DIRTY_MIN_PAGES_PER_SEC - 1)).toThrow(GuestError);
    expect(bad(96, 1_000_001)).toThrow(/pagesPerSec/);
    expect(bad(96, Number.NaN)).toThrow(/pagesPerSec/);
    expect(bad(0, 1000)).toThrow(/regionMiB/);
    expect(bad(1.5, 1000)).toThrow(/regionMiB/);
    expect(bad(127, 1000)).toThrow(/regionMiB must be an integer from 1 to 126/);
    expect(bad(126, 1000)).not.toThrow();
  });
});

describe.skipIf(!canBuild)('the boot image (binutils)', () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-guest-'));
  afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('is one 512-byte sector with the signature and the parameter block', async () => {
    const image = await buildDirtyBootSector(scratch);
    expect(image.length).toBe(BOOT_SECTOR_BYTES);
    expect([image[510], image[511]]).toEqual([0x55, 0xaa]);
    expect(image.toString('latin1', DIRTY_OFF_MAGIC, DIRTY_OFF_MAGIC + 4)).toBe('FDG1');
    // the source's defaults: 96 MiB at 10 MiB/s
    expect(readDirtyBootSector(image)).toMatchObject({ regionPages: 24576, pagesPerTick: 26, pitDivisor: 12118 });
    expect(fs.readdirSync(scratch)).toEqual([]); // its object files are gone
  });

  it('is patched per VM, the rest unchanged', async () => {
    const image = await buildDirtyBootSector(scratch);
    const p = dirtyGuestParams({ kind: 'dirty', regionMiB: 4, pagesPerSec: 512 }, 64);
    const patched = patchDirtyBootSector(image, p);
    expect(readDirtyBootSector(patched)).toEqual(p);
    expect(readDirtyBootSector(image).regionPages).toBe(24576); // a copy
    const diff = [...patched].map((b, i) => (b !== image[i] ? i : -1)).filter((i) => i >= 0);
    expect(diff.every((i) => i >= 0x1e4 && i < 0x1f0)).toBe(true);
    expect(() => patchDirtyBootSector(Buffer.alloc(512), p)).toThrow(/signature/);
    expect(() => patchDirtyBootSector(image, { ...p, pitDivisor: 70000 })).toThrow(/pitDivisor/);
  });
});

describe.skipIf(!canBoot)('the guest under QEMU TCG', () => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-guest-boot-'));
  afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

  /** Boots the image for `ms` and returns what it wrote on its serial port. */
  async function boot(image: Buffer, ms: number): Promise<string> {
    const disk = path.join(scratch, 'disk.raw');
    const serial = path.join(scratch, 'serial.txt');
    fs.writeFileSync(disk, Buffer.concat([image, Buffer.alloc(1024 * 1024 - image.length)]));
    fs.rmSync(serial, { force: true });
    try {
      await run(
        'qemu-system-x86_64',
        ['-accel', 'tcg', '-m', '64', '-display', 'none', '-nodefaults', '-no-user-config',
          '-drive', `file=${disk},format=raw,if=virtio`, '-serial', `file:${serial}`, '-monitor', 'none'],
        { timeoutMs: ms },
      );
    } catch (e) {
      if (!(e instanceof CommandError) || !e.timedOut) throw e;
    }
    return fs.existsSync(serial) ? fs.readFileSync(serial, 'latin1') : '';
  }

  it('boots and dirties 1 MiB at 2560 pages/s: ~10 passes per second', async () => {
    const image = patchDirtyBootSector(
      await buildDirtyBootSector(scratch),
      dirtyGuestParams({ kind: 'dirty', regionMiB: 1, pagesPerSec: 2560 }, 64),
    );
    const out = await boot(image, 5_000);
    expect(out.startsWith('ferry-dirty\r\n')).toBe(true);
    const passes = (out.match(/\./g) ?? []).length;
    // ~4.5 s after boot at 10/s; lenient below for a loaded machine (lost ticks), strict above
    expect(passes).toBeGreaterThanOrEqual(15);
    expect(passes).toBeLessThanOrEqual(52);
  }, 30_000);
});
