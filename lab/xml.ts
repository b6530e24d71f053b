/**
 * Domain XML for lab VMs. Kept separate so that other VM kinds (e.g. one with a custom boot sector)
 * can reuse it with their own disks and console. Every value is XML-escaped.
 */
import type { DiskFormat } from '../common/types';

export function escapeXml(value: string | number): string {
  return String(value).replace(/[&<>"']/g, (c) => {
    switch (c) {
      case '&':
        return '&amp;';
      case '<':
        return '&lt;';
      case '>':
        return '&gt;';
      case '"':
        return '&quot;';
      default:
        return '&apos;';
    }
  });
}

export interface LabDiskSpec {
  /** Absolute path of the image inside the host. */
  path: string;
  format?: DiskFormat;
  /** Guest device name; default `vda`, `vdb`, … in order. */
  target?: string;
  bus?: 'virtio' | 'sata' | 'ide';
  readonly?: boolean;
}

export interface LabDomainXmlOptions {
  name: string;
  uuid: string;
  memoryMiB: number;
  /** Default 1. */
  vcpus?: number;
  /** First disk (device `vda` unless `diskTarget` says otherwise); the VM boots from it. */
  diskPath: string;
  /** Default `qcow2`. */
  diskFormat?: DiskFormat;
  diskTarget?: string;
  /** Further disks after the first. */
  extraDisks?: LabDiskSpec[];
  /** QEMU machine type; default `pc` (libvirt expands it, e.g. to pc-i440fx-7.2). */
  machine?: string;
  /** Default x86_64. */
  arch?: string;
  /** Domain type; default `qemu` (TCG, works without /dev/kvm). */
  type?: 'qemu' | 'kvm';
  /**
   * Serial console: `pty` (default), `none`, or `{ file }` to append the guest's serial output to a
   * file inside the host (read it from the root namespace with hostPath()).
   */
  serial?: 'pty' | 'none' | { file: string };
  description?: string;
  /** Direct kernel boot (instead of booting the first disk): kernel, initramfs and command line, paths inside the host. */
  directBoot?: { kernel: string; initrd: string; cmdline: string };
  /** NICs: each a virtio NIC on a bridge of the host (`<interface type='bridge'>`). */
  bridges?: string[];
}

function positiveInt(what: string, n: number): number {
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`${what} must be a positive integer, got ${n}`);
  return n;
}

function diskXml(d: LabDiskSpec, defaultTarget: string): string {
  if (!d.path.startsWith('/')) throw new RangeError(`disk path must be absolute: ${d.path}`);
  return [
    `    <disk type='file' device='disk'>`,
    `      <driver name='qemu' type='${escapeXml(d.format ?? 'qcow2')}'/>`,
    `      <source file='${escapeXml(d.path)}'/>`,
    `      <target dev='${escapeXml(d.target ?? defaultTarget)}' bus='${escapeXml(d.bus ?? 'virtio')}'/>`,
    ...(d.readonly ? [`      <readonly/>`] : []),
    `    </disk>`,
  ].join('\n');
}

/** A minimal headless domain: no graphics, no USB, no balloon; one serial console; NICs only on the bridges given. */
export function labDomainXml(o: LabDomainXmlOptions): string {
  if (!o.name) throw new RangeError('domain name must not be empty');
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(o.uuid)) {
    throw new RangeError(`not a UUID: ${o.uuid}`);
  }
  const memoryMiB = positiveInt('memoryMiB', o.memoryMiB);
  const vcpus = positiveInt('vcpus', o.vcpus ?? 1);
  const disks: LabDiskSpec[] = [
    { path: o.diskPath, format: o.diskFormat ?? 'qcow2', target: o.diskTarget ?? 'vda' },
    ...(o.extraDisks ?? []),
  ];
  const serial = o.serial ?? 'pty';
  const serialXml =
    serial === 'none'
      ? []
      : serial === 'pty'
        ? [`    <serial type='pty'/>`, `    <console type='pty'/>`]
        : [
            `    <serial type='file'>`,
            `      <source path='${escapeXml(serial.file)}' append='on'/>`,
            `    </serial>`,
            `    <console type='file'>`,
            `      <source path='${escapeXml(serial.file)}' append='on'/>`,
            `    </console>`,
          ];
  return [
    `<domain type='${escapeXml(o.type ?? 'qemu')}'>`,
    `  <name>${escapeXml(o.name)}</name>`,
    `  <uuid>${escapeXml(o.uuid.toLowerCase())}</uuid>`,
    ...(o.description ? [`  <description>${escapeXml(o.description)}</description>`] : []),
    `  <memory unit='MiB'>${memoryMiB}</memory>`,
    `  <currentMemory unit='MiB'>${memoryMiB}</currentMemory>`,
    `  <vcpu>${vcpus}</vcpu>`,
    `  <os>`,
    `    <type arch='${escapeXml(o.arch ?? 'x86_64')}' machine='${escapeXml(o.machine ?? 'pc')}'>hvm</type>`,
    ...(o.directBoot
      ? [
          `    <kernel>${escapeXml(o.directBoot.kernel)}</kernel>`,
          `    <initrd>${escapeXml(o.directBoot.initrd)}</initrd>`,
          `    <cmdline>${escapeXml(o.directBoot.cmdline)}</cmdline>`,
        ]
      : [`    <boot dev='hd'/>`]),
    `  </os>`,
    `  <on_poweroff>destroy</on_poweroff>`,
    `  <on_reboot>restart</on_reboot>`,
    `  <on_crash>destroy</on_crash>`,
    `  <devices>`,
    ...disks.map((d, i) => diskXml(d, `vd${String.fromCharCode(97 + i)}`)),
    ...(o.bridges ?? []).flatMap((b) => [
      `    <interface type='bridge'>`,
      `      <source bridge='${escapeXml(b)}'/>`,
      `      <model type='virtio'/>`,
      // no boot ROM: QEMU refuses to start a virtio NIC whose ROM file (Debian's ipxe-qemu) is not installed
      `      <rom enabled='no'/>`,
      `    </interface>`,
    ]),
    `    <controller type='usb' model='none'/>`,
    ...serialXml,
    `    <memballoon model='none'/>`,
    `  </devices>`,
    `</domain>`,
    '',
  ].join('\n');
}
