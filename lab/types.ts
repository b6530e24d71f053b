/** The lab's public types (hosts, VMs, status, options) and its error. */
import type { DirtyGuestSpec, LabGuestSpec } from './guest';
import type { LinuxGuestSpec } from './linux-guest';

export interface LabHost {
  name: string;
  address: string;
  uri: string;
  netns: string;
  /** Live libvirtd pid, 0 when not running. */
  pid: number;
  /** <home>/lab/hosts/<name> */
  dir: string;
  storageRoot: string;
}

export type LabGuestKind = 'tiny' | 'linux';

export type LabVmState = 'running' | 'paused' | 'shutoff' | 'unknown';

export interface LabVm {
  name: string;
  uuid: string;
  /** Host the VM currently runs on (or is defined on); '' when no reachable host has it. */
  host: string;
  state: LabVmState;
  /** Path of its disk inside whichever host has it (the same on every host). */
  diskPath: string;
  /** What the VM runs: a boot-sector program (labAddVm) or a Linux guest; absent for the default tiny VMs (nothing boots). */
  guest?: LabGuestSpec;
}

export interface LabStatus {
  /** TLS lab (`labUp({ tls: true })`): hosts are qemu+tls:// only. */
  tls: boolean;
  hosts: LabHost[];
  vms: LabVm[];
}

export interface LabUpOptions {
  home: string;
  hosts: number;
  vms: number;
  /** First three octets of the lab's /24, default '10.213.77'. Must not be in use by another interface. */
  subnet?: string;
  /**
   * Names this lab's pieces: hosts `<prefix>-h<k>` (netns the same), bridge `<prefix>br0`, veths
   * `<prefix>-h<k>-v`. 1..8 characters of [a-z0-9], default `ferry`.
   */
  prefix?: string;
  /**
   * TLS only: each libvirtd listens on 16514 with TLS (no TCP listener), certificates from a lab CA made with
   * openssl (lab/pki.ts), QEMU's migration TLS configured; hosts' URIs are qemu+tls://…?pkipath=<home>/lab/pki/ferry.
   * Default false (qemu+tcp, no authentication). A lab keeps its mode until `lab down`.
   */
  tls?: boolean;
  /** Default 128. */
  vmMemoryMiB?: number;
  /**
   * What labUp's VMs run: `tiny` (default: nothing boots, the disk is random data) or `linux` (a Debian kernel and
   * the record-writing workload, a NIC on the guest network: lab/linux-guest.ts). Only for VMs it creates.
   */
  guest?: LabGuestKind;
  /** Random data at the start of each VM disk, default 32 MiB (the disk is max(64, this) MiB). */
  randomDataMiB?: number;
  /** Progress lines (default: silent). */
  log?: (line: string) => void;
}

/** What the lab refuses (bad options, not root, missing tools) or fails at (a daemon that does not come up). */
export class LabError extends Error {
  override readonly name = 'LabError';
}

export interface LabAddVmOptions {
  /** Domain name, unique in the lab ([A-Za-z0-9][A-Za-z0-9_.-]{0,63}). */
  name: string;
  /**
   * What it runs: a boot-sector program, e.g. `{ kind: 'dirty', regionMiB: 96, pagesPerSec: 2560 }`, or a Linux
   * guest, e.g. `{ kind: 'linux', writeMiBPerSec: 20 }` (the lab gives it its address on the guest network).
   */
  guest: DirtyGuestSpec | Omit<LinuxGuestSpec, 'ip'>;
  /** Lab host to create it on; default the first. */
  host?: string;
  /** Default 128. */
  memoryMiB?: number;
  /** Random data at the start of the disk (after the boot sector), default 32 MiB; disk max(64, this) MiB. */
  randomDataMiB?: number;
}
