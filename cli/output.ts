/** Terminal output for the CLI: aligned tables, JSON, and exit codes that mean something. */

export const EXIT = {
  ok: 0,
  failure: 1,
  badInput: 2,
  compensated: 3,
} as const;

/** Thrown by commands to end the process with a message and a code. */
export class CliExit extends Error {
  constructor(
    readonly code: number,
    message: string,
    /** Printed to stdout as JSON instead of the message when the command runs with --json. */
    readonly json?: unknown,
  ) {
    super(message);
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export interface Column<T> {
  header: string;
  value: (row: T) => string | number | null | undefined;
  align?: 'left' | 'right';
}

export function formatTable<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = rows.map((r) => columns.map((c) => String(c.value(r) ?? '-')));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => (row[i] ?? '').length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => (columns[i]?.align === 'right' ? v.padStart(widths[i] ?? 0) : v.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n');
}

export function printTable<T>(rows: readonly T[], columns: readonly Column<T>[], empty = '(none)'): void {
  process.stdout.write(rows.length === 0 ? `${empty}\n` : `${formatTable(rows, columns)}\n`);
}

export function mib(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? '-' : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

export function gib(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? '-' : `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

export function mibPerSec(bytesPerSec: number | null | undefined): string {
  return bytesPerSec === null || bytesPerSec === undefined ? '-' : `${(bytesPerSec / 2 ** 20).toFixed(1)} MiB/s`;
}

/** One copy stream: `48 MiB of 128 MiB (38%), 2.0 MiB/s`. */
export function copyFigures(f: { processedBytes: number | null; totalBytes: number | null; bytesPerSec: number | null }): string {
  const pct = f.processedBytes !== null && f.totalBytes ? ` (${Math.floor((f.processedBytes / f.totalBytes) * 100)}%)` : '';
  return `${mib(f.processedBytes)} of ${mib(f.totalBytes)}${pct}, ${mibPerSec(f.bytesPerSec)}`;
}

/** A yes/no environment default: 1/true/yes/on or 0/false/no/off; anything else is bad input. */
export function envFlag(name: string): boolean | undefined {
  const v = process.env[name]?.trim().toLowerCase();
  if (v === undefined || v === '') return undefined;
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new CliExit(EXIT.badInput, `${name}=${process.env[name]} is not 1 or 0`);
}
