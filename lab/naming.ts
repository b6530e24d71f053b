/**
 * Names and paths of a lab's pieces: prefix and subnet, host names, addresses and URIs, bridge and veths,
 * the directories under <home>/lab, and where one host's namespace handles, pid file and log are (HostRefs).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { StateHost } from './state';
import { LabError } from './types';

export const LAB_DEFAULT_PREFIX = 'ferry';
/** The default lab's bridge. */
export const LAB_BRIDGE = 'ferrybr0';
export const LAB_DEFAULT_SUBNET = '10.213.77';
export const LAB_STORAGE_ROOT = '/var/lib/libvirt/images/ferry';
export const LAB_ROOT_POOL = 'ferry-root';
export const LAB_DISK_NAME = 'disk0.qcow2';
/** The daemon every lab host runs. */
export const LIBVIRTD = '/usr/sbin/libvirtd';

/** What is bind-mounted where inside every host. */
export const LAB_BINDS: readonly { inside: string; sub: string }[] = [
  { inside: '/run/libvirt', sub: 'run' },
  { inside: '/var/lib/libvirt', sub: 'lib' },
  { inside: '/etc/libvirt', sub: 'etc' },
  { inside: '/var/log/libvirt', sub: 'log' },
  { inside: '/var/cache/libvirt', sub: 'cache' },
  // the host's certificates (TLS labs: lab/pki.ts); empty in a TCP lab
  { inside: '/etc/pki', sub: 'pki' },
];

/** A lab prefix: 1..8 characters of [a-z0-9] (so that `<prefix>-h<k>-v` fits an interface name). */
export function checkLabPrefix(prefix: string): string {
  if (!/^[a-z0-9]{1,8}$/.test(prefix)) {
    throw new LabError(`lab prefix must be 1 to 8 characters of [a-z0-9], e.g. ferry (got ${JSON.stringify(prefix)})`);
  }
  return prefix;
}

export function labHostName(i: number, prefix: string = LAB_DEFAULT_PREFIX): string {
  return `${checkLabPrefix(prefix)}-h${i}`;
}

/** The lab's bridge in the root namespace: `<prefix>br0` (at most 11 characters). */
export function labBridgeName(prefix: string = LAB_DEFAULT_PREFIX): string {
  return `${checkLabPrefix(prefix)}br0`;
}

export function checkSubnet(subnet: string): string {
  if (!/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(subnet) || subnet.split('.').some((x) => Number(x) > 255)) {
    throw new LabError(`subnet must be the first three octets of a /24, e.g. 10.213.77 (got ${subnet})`);
  }
  return subnet;
}

/**
 * A lab host's URI: `qemu+tcp://<ip>/system` (no authentication), or with `clientPkiDir` (a TLS lab)
 * `qemu+tls://<ip>/system?pkipath=<clientPkiDir>`: libvirt's client takes Ferry's certificate from there.
 */
export function labHostUri(address: string, clientPkiDir?: string): string {
  return clientPkiDir === undefined ? `qemu+tcp://${address}/system` : `qemu+tls://${address}/system?pkipath=${clientPkiDir}`;
}

export function labDir(home: string): string {
  return path.join(path.resolve(home), 'lab');
}
export function statePath(home: string): string {
  return path.join(labDir(home), 'state.json');
}
export function nsDir(home: string): string {
  return path.join(labDir(home), 'ns');
}
export function tmpDir(home: string): string {
  return path.join(labDir(home), 'tmp');
}
/** Where the Linux guests' kernel and initramfs are (every host sees this path: it is not bind-mounted). */
export function guestBootDir(home: string): string {
  return path.join(labDir(home), 'guest');
}
export function labHostDir(home: string, host: string): string {
  return path.join(labDir(home), 'hosts', host);
}
export function vethName(host: string): string {
  return `${host}-v`;
}

/**
 * Path in the root namespace of `insidePath` as seen inside `host`: paths under the bind-mounted
 * libvirt directories map into <home>/lab/hosts/<host>/…, anything else is shared with the root.
 */
export function hostPath(home: string, host: string, insidePath: string): string {
  if (!path.posix.isAbsolute(insidePath)) throw new LabError(`not an absolute path: ${insidePath}`);
  let p = path.posix.normalize(insidePath);
  if (p === '/var/run' || p.startsWith('/var/run/')) p = p.slice('/var'.length); // Debian: /var/run -> /run
  for (const b of LAB_BINDS) {
    if (p === b.inside || p.startsWith(b.inside + '/')) {
      return path.join(labHostDir(home, host), b.sub, p.slice(b.inside.length));
    }
  }
  return p;
}

/** The real path of <home>/lab/ns, null when there is none. */
export function existingNsDir(home: string): string | null {
  return fs.existsSync(nsDir(home)) ? fs.realpathSync(nsDir(home)) : null;
}

/** Where one host's pieces are: its directory, namespace handles, its libvirtd's pid file and stdout log. */
export interface HostRefs {
  h: StateHost;
  dir: string;
  netnsFile: string;
  mntFile: string;
  utsFile: string;
  pidFile: string;
  logFile: string;
}

export function refs(home: string, h: StateHost): HostRefs {
  const dir = labHostDir(home, h.name);
  let ns = nsDir(home);
  try {
    ns = fs.realpathSync(ns);
  } catch {
    /* not there yet */
  }
  return {
    h,
    dir,
    netnsFile: `/run/netns/${h.netns}`,
    mntFile: path.join(ns, `${h.name}.mnt`),
    utsFile: path.join(ns, `${h.name}.uts`),
    pidFile: path.join(dir, 'run', 'libvirtd.pid'),
    logFile: path.join(dir, 'log', 'libvirtd.stdout.log'),
  };
}
