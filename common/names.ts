/**
 * The charsets Ferry accepts for names that end up in libvirt calls, XML, pool/volume names or paths.
 * Anything else is refused up front (see README "Names and paths"). Sandbox-safe.
 */

/** VM names: letters, digits, `_`, `.`, `-`; starts with a letter or digit; at most 64 characters. */
export const VM_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** Host names and addresses (DNS names, IPv4, IPv6): at most 253 characters. */
export const HOST_REF = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}$/;
/** Volume (disk file) names. */
export const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$/;
/** RFC 4122 textual UUID. */
export const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export function isVmName(s: string): boolean {
  return VM_NAME.test(s) && !s.includes('..');
}
export function isHostRef(s: string): boolean {
  return HOST_REF.test(s) && !s.includes('..');
}
export function isVolumeName(s: string): boolean {
  return VOLUME_NAME.test(s) && !s.includes('..');
}
export function isUuid(s: string): boolean {
  return UUID.test(s);
}

/** Name of the per-VM storage pool Ferry creates on a target (and expects on Ferry-managed sources). */
export function vmPoolName(vmUuid: string): string {
  return `ferry-${vmUuid.toLowerCase()}`;
}

/** Workflow ID of a VM's migration: one running migration per VM. */
export function migrationWorkflowId(vmUuid: string): string {
  return `ferry-migrate-${vmUuid.toLowerCase()}`;
}

/** POSIX path helpers that do not need node:path (the workflow sandbox has no Node builtins). */
export function dirnameOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}
export function basenameOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/**
 * Normalises an absolute path lexically ("//" and "." removed, ".." resolved); null when not absolute.
 */
export function normalizeAbsolute(path: string): string | null {
  if (!path.startsWith('/')) return null;
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return '/' + out.join('/');
}

/** True when `path` lies strictly inside `root` (both absolute; compared after normalisation). */
export function isStrictlyInside(path: string, root: string): boolean {
  const p = normalizeAbsolute(path);
  const r = normalizeAbsolute(root);
  if (p === null || r === null) return false;
  const prefix = r === '/' ? '/' : r + '/';
  return p !== r && p.startsWith(prefix);
}
