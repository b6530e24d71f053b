/**
 * The batch protocol of virsh: several commands in ONE virsh invocation (a one-shot process or a line sent to a
 * persistent session, virsh-session.ts), with per-command results.
 *
 * Every virsh process opens its own connection (~16 ms over TCP), so methods that need several answers send
 * them as one invocation: virsh accepts a single argument holding `;`-separated commands, parsed by virsh's own
 * tokenizer (not a shell; every token is single-quoted here). Each command is followed by `echo <marker>` and
 * `echo --err <marker>` with a random nonce, which splits stdout and stderr per command, so each command's
 * success and error text are known. virsh keeps going after a failed command and only exits non-zero in batch
 * mode when the connection itself failed (the last command is always our echo).
 */
import { randomBytes } from 'node:crypto';
import { classifyVirshError } from './errors';

/** One command's share of a batch. */
export interface BatchStep {
  args: readonly string[];
  ok: boolean;
  stdout: string;
  stderr: string;
}

/** Quotes one token for virsh's command-string tokenizer (shell-like: '...' is literal, \' is a quote). */
export function quoteVirshArg(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The single virsh argument that runs `commands` in order, each followed by its stdout and stderr marker. */
export function buildBatchScript(commands: readonly (readonly string[])[], nonce: string): string {
  return commands
    .map((cmd, i) => {
      const marker = batchMarker(nonce, i);
      return `${cmd.map(quoteVirshArg).join(' ')} ; echo ${marker} ; echo --err ${marker}`;
    })
    .join(' ; ');
}

/**
 * The batch line for a persistent session (virsh-session.ts). Interactive virsh echoes every line it reads
 * on stdout, so the markers are written split in two quoted halves (`'@@ferry-<nonce>''-<i>@@'`, which virsh's
 * tokenizer joins): the marker text itself then never appears in the echo, only in echo's output.
 */
export function buildSessionScript(commands: readonly (readonly string[])[], nonce: string): string {
  return commands
    .map((cmd, i) => {
      const marker = `'@@ferry-${nonce}''-${i}@@'`;
      return `${cmd.map(quoteVirshArg).join(' ')} ; echo ${marker} ; echo --err ${marker}`;
    })
    .join(' ; ');
}

export function batchMarker(nonce: string, i: number): string {
  return `@@ferry-${nonce}-${i}@@`;
}

/**
 * Splits a batch's stdout/stderr at the markers. A marker line may have a prefix on its line (`error: ` on
 * stderr, or the end of a command's output lacking a newline): the text before the marker line's start
 * belongs to the command. Returns null when a marker is missing (virsh died mid-batch).
 */
export function splitBatchOutput(
  stdout: string,
  stderr: string,
  nonce: string,
  count: number,
): { stdout: string; stderr: string }[] | null {
  const split = (text: string): string[] | null => {
    const parts: string[] = [];
    let pos = 0;
    for (let i = 0; i < count; i++) {
      const marker = batchMarker(nonce, i);
      const at = text.indexOf(marker, pos);
      if (at < 0) return null;
      const lineStart = text.lastIndexOf('\n', at - 1) + 1;
      const prefix = text.slice(Math.max(lineStart, pos), at);
      // stdout: a command output without a trailing newline runs into the marker line: keep it.
      const end = prefix === 'error: ' ? Math.max(lineStart, pos) : at;
      parts.push(text.slice(pos, end));
      pos = at + marker.length;
      if (text[pos] === '\n') pos++;
    }
    return parts;
  };
  const out = split(stdout);
  const err = split(stderr);
  if (!out || !err) return null;
  return out.map((o, i) => ({ stdout: o, stderr: err[i] ?? '' }));
}

/** A batch can go through a session when it fits on one line. */
export function sessionSafe(commands: readonly (readonly string[])[]): boolean {
  return commands.every((c) => c.every((a) => !/[\r\n]/.test(a)));
}

/** After a connection-level failure a session is not reused: the next call connects afresh. */
export function sessionBroken(stderr: string): boolean {
  return stderr.split('\n').some((l) => {
    if (!l.startsWith('error:')) return false;
    const k = classifyVirshError(l, false);
    return k === 'connection';
  });
}

/** A command failed when virsh wrote an `error:` line for it. */
function stepFailed(stderr: string): boolean {
  return stderr.split('\n').some((l) => l.startsWith('error:'));
}

/** A fresh nonce for one batch's markers. */
export function batchNonce(): string {
  return randomBytes(8).toString('hex');
}

/** Each command's share of a batch's output, or null when a marker is missing (virsh died mid-batch). */
export function batchSteps(
  commands: readonly (readonly string[])[],
  stdout: string,
  stderr: string,
  nonce: string,
): BatchStep[] | null {
  const parts = splitBatchOutput(stdout, stderr, nonce, commands.length);
  if (!parts) return null;
  return parts.map((p, i) => ({ args: commands[i] ?? [], ok: !stepFailed(p.stderr), ...p }));
}
