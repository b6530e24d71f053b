/**
 * Reading back what the Linux guest's workload wrote (lab/guest/linux/record.go has the same layout): 512-byte
 * records in a ring of 65,536 slots from 1 MiB into /dev/vda. Each record is "FERRYREC", seq u64, unix nanos u64,
 * boot u64, a payload derived from seq, and a CRC-32C of the rest at byte 508 (little-endian).
 *
 * verifyRecords() reads an image from the root namespace (`qemu-img convert -U`, so a running VM's image can be
 * read: the records that count were flushed by the guest, so they are in the file) and says which sequence
 * numbers are there, which are missing between the first and the last (holes), and which slots hold a record
 * whose checksum or payload is wrong (bad).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../hypervisor/exec';
import { refs, tmpDir } from './naming';
import { readState } from './state';
import { LabError } from './types';

export const RECORD_BYTES = 512;
export const RING_START = 1 << 20;
export const RING_SLOTS = 65536;
const MAGIC = Buffer.from('FERRYREC');

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = (CRC32C_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The payload of record `seq` (xorshift64 from seq, as the guest writes it). */
function payloadMatches(rec: Buffer, seq: bigint): boolean {
  const M = (1n << 64n) - 1n;
  let x = (seq * 0x9e3779b97f4a7c15n + 1n) & M;
  for (let i = 32; i < 504; i += 8) {
    x ^= (x << 13n) & M;
    x ^= x >> 7n;
    x ^= (x << 17n) & M;
    if (rec.readBigUInt64LE(i) !== x) return false;
  }
  return true;
}

export interface GuestRecord {
  seq: number;
  /** When the guest wrote it (unix ms). */
  writtenAtMs: number;
  /** The guest's boot (unix ns as a string): records of one boot share it. */
  boot: string;
}

export interface RecordCheck {
  /** Valid records, by seq. */
  count: number;
  first: number | null;
  last: number | null;
  /** Sequence numbers missing between first and last, as [from, to] ranges. */
  holes: [number, number][];
  /** Slots that hold the magic but fail the checksum or the payload check. */
  bad: number;
  /** Records written in [fromMs, toMs] when asked (see recordsBetween). */
  records: GuestRecord[];
}

/** Parses a raw image (or its first RING_START + RING_SLOTS * 512 bytes). */
export function checkRecords(raw: Buffer): RecordCheck {
  const seqs: number[] = [];
  const records: GuestRecord[] = [];
  let bad = 0;
  for (let slot = 0; slot < RING_SLOTS; slot++) {
    const off = RING_START + slot * RECORD_BYTES;
    if (off + RECORD_BYTES > raw.length) break;
    const rec = raw.subarray(off, off + RECORD_BYTES);
    if (!rec.subarray(0, 8).equals(MAGIC)) continue;
    const seq = rec.readBigUInt64LE(8);
    if (crc32c(rec.subarray(0, 508)) !== rec.readUInt32LE(508) || !payloadMatches(rec, seq) || Number(seq % BigInt(RING_SLOTS)) !== slot) {
      bad++;
      continue;
    }
    seqs.push(Number(seq));
    records.push({ seq: Number(seq), writtenAtMs: Number(rec.readBigUInt64LE(16) / 1_000_000n), boot: rec.readBigUInt64LE(24).toString() });
  }
  seqs.sort((a, b) => a - b);
  records.sort((a, b) => a.seq - b.seq);
  const holes: [number, number][] = [];
  for (let i = 1; i < seqs.length; i++) {
    const prev = seqs[i - 1] as number;
    const cur = seqs[i] as number;
    if (cur > prev + 1) holes.push([prev + 1, cur - 1]);
  }
  return { count: seqs.length, first: seqs[0] ?? null, last: seqs.at(-1) ?? null, holes, bad, records };
}

/**
 * Reads the records of a disk image (any format qemu-img reads; `-U`: the VM may be running). `mountNs`: a mount
 * namespace handle to read it in (a lab host's, for a path only that host sees, e.g. a shared directory's bind
 * mount); `scratchDir` must be a directory that namespace shares with ours (anything outside the lab's binds).
 */
export async function verifyRecords(image: string, scratchDir: string, o: { format?: string; mountNs?: string } = {}): Promise<RecordCheck> {
  fs.mkdirSync(scratchDir, { recursive: true });
  const raw = path.join(scratchDir, `records.${process.pid}.${Date.now()}.raw`);
  try {
    const args = ['convert', '-U', '-f', o.format ?? 'qcow2', '-O', 'raw', image, raw];
    if (o.mountNs) await run('nsenter', [`--mount=${o.mountNs}`, '--', 'qemu-img', ...args], { timeoutMs: 120_000 });
    else await run('qemu-img', args, { timeoutMs: 120_000 });
    const fd = fs.openSync(raw, 'r');
    try {
      const buf = Buffer.alloc(RING_START + RING_SLOTS * RECORD_BYTES);
      const n = fs.readSync(fd, buf, 0, buf.length, 0);
      return checkRecords(buf.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

/**
 * What a test asserts about the disk a VM uses afterwards: every acknowledged record (0..acked) is there, no hole,
 * no bad record. Returns a description of each violation (empty: all good).
 */
export function recordViolations(check: RecordCheck, acked: number): string[] {
  const out: string[] = [];
  if (check.bad > 0) out.push(`${check.bad} slot(s) hold a damaged record`);
  if (check.holes.length > 0) out.push(`holes: ${check.holes.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(', ')}`);
  if (acked >= 0 && (check.last === null || check.last < acked)) out.push(`acknowledged up to ${acked}, the disk ends at ${check.last ?? 'nothing'}`);
  if (check.first !== null && check.first > 0 && check.last !== null && check.last < RING_SLOTS) out.push(`records 0-${check.first - 1} are missing`);
  return out;
}

/** verifyRecords of a disk as a lab host sees it (`insidePath`: the path in the domain's XML on that host). */
export async function verifyGuestDisk(home: string, host: string, insidePath: string, format = 'qcow2'): Promise<RecordCheck> {
  const st = readState(path.resolve(home));
  const h = st?.hosts.find((x) => x.name === host);
  if (!h) throw new LabError(`no lab host ${host}`);
  return verifyRecords(insidePath, tmpDir(path.resolve(home)), { format, mountNs: refs(path.resolve(home), h).mntFile });
}
