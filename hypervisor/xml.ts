/**
 * Pure parsers for the XML virsh prints (dumpxml, pool-dumpxml, vol-dumpxml), on fast-xml-parser.
 * They throw `XmlShapeError` when the document is not well-formed or lacks what Ferry needs.
 */
import { XMLParser } from 'fast-xml-parser';
import type { DiskFormat } from '../common/types';

export class XmlShapeError extends Error {
  override readonly name = 'XmlShapeError';
}

/** Elements that may repeat where we read them; always arrays so one-element documents look the same. */
const ARRAY_TAGS = new Set(['disk', 'path', 'interface', 'hostdev', 'network']);

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  isArray: (tagName) => ARRAY_TAGS.has(tagName),
});

type XNode = Record<string, unknown>;

function parseDoc(xml: string, root: string): XNode {
  let doc: unknown;
  try {
    doc = parser.parse(xml, true);
  } catch (e) {
    throw new XmlShapeError(`not well-formed ${root} XML: ${e instanceof Error ? e.message : String(e)}`);
  }
  const node = isNode(doc) ? doc[root] : undefined;
  if (!isNode(node)) throw new XmlShapeError(`expected a <${root}> document`);
  return node;
}

function isNode(v: unknown): v is XNode {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function child(node: XNode | undefined, name: string): XNode | undefined {
  if (!node) return undefined;
  const v = node[name];
  if (Array.isArray(v)) {
    const first: unknown = v[0];
    return isNode(first) ? first : typeof first === 'string' ? { '#text': first } : undefined;
  }
  if (isNode(v)) return v;
  if (typeof v === 'string') return { '#text': v };
  return undefined;
}

function children(node: XNode | undefined, name: string): XNode[] {
  if (!node) return [];
  const v = node[name];
  const list: unknown[] = Array.isArray(v) ? v : v === undefined ? [] : [v];
  return list.map((x) => (isNode(x) ? x : typeof x === 'string' ? { '#text': x } : {}));
}

function text(node: XNode | undefined): string | undefined {
  if (!node) return undefined;
  const t = node['#text'];
  if (typeof t === 'string') return t;
  if (typeof t === 'number') return String(t);
  // An element present but empty (<name></name>) parses as ''.
  return Object.keys(node).some((k) => !k.startsWith('@_')) ? undefined : '';
}

function attr(node: XNode | undefined, name: string): string | undefined {
  const v = node?.[`@_${name}`];
  return typeof v === 'string' ? v : undefined;
}

function requireText(node: XNode | undefined, what: string): string {
  const t = text(node);
  if (t === undefined || t === '') throw new XmlShapeError(`missing ${what}`);
  return t;
}

const UNIT_FACTORS: Record<string, number> = {
  b: 1,
  byte: 1,
  bytes: 1,
  kb: 1e3,
  k: 1024,
  kib: 1024,
  mb: 1e6,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1e9,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  tb: 1e12,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  pb: 1e15,
  p: 1024 ** 5,
  pib: 1024 ** 5,
  eb: 1e18,
  e: 1024 ** 6,
  eib: 1024 ** 6,
};

/** A libvirt scaled integer (`<memory unit='KiB'>131072</memory>`) in bytes; `defaultUnit` when no unit. */
export function scaledBytes(node: XNode | undefined, what: string, defaultUnit: string): number {
  const raw = requireText(node, what);
  if (!/^\d+$/.test(raw)) throw new XmlShapeError(`${what} is not a non-negative integer: ${raw}`);
  const unit = (attr(node, 'unit') ?? defaultUnit).toLowerCase();
  const factor = UNIT_FACTORS[unit];
  if (factor === undefined) throw new XmlShapeError(`${what} has an unknown unit: ${unit}`);
  return Number(raw) * factor;
}

function optionalScaledBytes(node: XNode | undefined, what: string, defaultUnit: string): number | null {
  if (node === undefined || text(node) === undefined || text(node) === '') return null;
  return scaledBytes(node, what, defaultUnit);
}

/** A file-backed disk of a domain, as its XML describes it (capacity comes from elsewhere). */
export interface DomainXmlDisk {
  target: string;
  path: string;
  format: DiskFormat;
}

export interface DomainXml {
  uuid: string;
  name: string;
  /** `<memory>`: the guest's maximum memory, what a target must be able to back. */
  memoryKiB: number;
  /** `<currentMemory>`, or `<memory>` when absent. */
  currentMemoryKiB: number;
  /** `<vcpu current=N>` when set, else the `<vcpu>` count. */
  vcpus: number;
  /** The `<vcpu>` element value: the most vCPUs the guest can hot-plug. */
  maxVcpus: number;
  /** Writable `device='disk'` disks of `type='file'` (cdroms, floppies, luns, block, network, volume excluded). */
  disks: DomainXmlDisk[];
  /** Target devs of disks that are not file-backed but will still be copied by --copy-storage-all. */
  otherDisks: string[];
  /**
   * Every file the domain's disks reference, whatever the device (disk, cdrom, floppy), read-only or not,
   * with their backing chains as far as the XML shows them: what must never be deleted while it is defined.
   */
  files: string[];
  /** Per disk target: the first file of its backing chain, where the XML shows one (live XML does). */
  backingFiles: Record<string, string>;
}

/** The `<source file>` of a disk and of every `<backingStore>` below it. */
function chainFiles(node: XNode | undefined, out: string[]): void {
  for (let n = node; n !== undefined; n = child(n, 'backingStore')) {
    const file = attr(child(n, 'source'), 'file');
    if (file !== undefined) out.push(file);
  }
}

/** Parses `virsh dumpxml` output. */
export function parseDomainXml(xml: string): DomainXml {
  const dom = parseDoc(xml, 'domain');
  const uuid = requireText(child(dom, 'uuid'), 'domain <uuid>').toLowerCase();
  const name = requireText(child(dom, 'name'), 'domain <name>');
  const memoryBytes = scaledBytes(child(dom, 'memory'), 'domain <memory>', 'KiB');
  const current = optionalScaledBytes(child(dom, 'currentMemory'), 'domain <currentMemory>', 'KiB');
  const vcpuNode = child(dom, 'vcpu');
  const maxVcpus = vcpuNode ? Number(requireText(vcpuNode, 'domain <vcpu>')) : 1;
  const currentAttr = attr(vcpuNode, 'current');
  const vcpus = currentAttr !== undefined ? Number(currentAttr) : maxVcpus;
  if (!Number.isInteger(maxVcpus) || !Number.isInteger(vcpus)) throw new XmlShapeError('domain <vcpu> is not an integer');

  const disks: DomainXmlDisk[] = [];
  const otherDisks: string[] = [];
  const files: string[] = [];
  const backingFiles: Record<string, string> = {};
  for (const disk of children(child(dom, 'devices'), 'disk')) {
    chainFiles(disk, files);
    const device = attr(disk, 'device') ?? 'disk';
    const type = attr(disk, 'type') ?? 'file';
    const target = attr(child(disk, 'target'), 'dev');
    if (device !== 'disk' || target === undefined) continue;
    if (child(disk, 'readonly') !== undefined) continue; // not copied, not ours to manage
    const file = attr(child(disk, 'source'), 'file');
    if (type !== 'file' || file === undefined) {
      otherDisks.push(target);
      continue;
    }
    const driverType = attr(child(disk, 'driver'), 'type') ?? 'raw';
    if (driverType !== 'raw' && driverType !== 'qcow2') {
      otherDisks.push(target);
      continue;
    }
    disks.push({ target, path: file, format: driverType });
    const backing = attr(child(child(disk, 'backingStore'), 'source'), 'file');
    if (backing !== undefined) backingFiles[target] = backing;
  }

  return {
    uuid,
    name,
    memoryKiB: Math.floor(memoryBytes / 1024),
    currentMemoryKiB: Math.floor((current ?? memoryBytes) / 1024),
    vcpus,
    maxVcpus,
    disks,
    otherDisks,
    files: [...new Set(files)],
    backingFiles,
  };
}

/** What a host must offer the domain (pre-flight checks), from its XML; `xml` is kept for the CPU comparison. */
export interface DomainNeedsXml {
  virtType: string;
  arch: string | null;
  machine: string | null;
  cpuMode: string | null;
  nics: { type: string; source: string | null; mac: string | null }[];
  hostDevices: string[];
  readOnlyFiles: { target: string; path: string; device: string }[];
}

/** The attribute of `<source>` that names what a NIC of this type attaches to. */
const NIC_SOURCE_ATTR: Record<string, string> = { bridge: 'bridge', network: 'network', direct: 'dev', ethernet: 'dev' };

function describeHostdev(h: XNode): string {
  const type = attr(h, 'type') ?? 'device';
  const address = child(child(h, 'source'), 'address');
  if (type === 'pci' && address) {
    const hex = (k: string) => (attr(address, k) ?? '0').replace(/^0x/, '');
    return `pci ${hex('domain').padStart(4, '0')}:${hex('bus').padStart(2, '0')}:${hex('slot').padStart(2, '0')}.${hex('function')}`;
  }
  const vendor = attr(child(child(h, 'source'), 'vendor'), 'id');
  const product = attr(child(child(h, 'source'), 'product'), 'id');
  return vendor && product ? `${type} ${vendor.replace(/^0x/, '')}:${product.replace(/^0x/, '')}` : type;
}

/** Parses what `DomainNeeds` holds from `virsh dumpxml` output. */
export function parseDomainNeeds(xml: string): DomainNeedsXml {
  const dom = parseDoc(xml, 'domain');
  const osType = child(child(dom, 'os'), 'type');
  const devices = child(dom, 'devices');
  const nics = children(devices, 'interface').map((n) => {
    const type = attr(n, 'type') ?? 'unknown';
    const key = NIC_SOURCE_ATTR[type];
    return { type, source: key ? (attr(child(n, 'source'), key) ?? null) : null, mac: attr(child(n, 'mac'), 'address') ?? null };
  });
  const readOnlyFiles: DomainNeedsXml['readOnlyFiles'] = [];
  for (const disk of children(devices, 'disk')) {
    const device = attr(disk, 'device') ?? 'disk';
    const file = attr(child(disk, 'source'), 'file');
    const target = attr(child(disk, 'target'), 'dev') ?? '?';
    if (file === undefined) continue; // an empty cdrom drive, a network or block disk
    if (device !== 'disk' || child(disk, 'readonly') !== undefined) readOnlyFiles.push({ target, path: file, device });
  }
  return {
    virtType: attr(dom, 'type') ?? 'qemu',
    arch: attr(osType, 'arch') ?? null,
    machine: attr(osType, 'machine') ?? null,
    cpuMode: child(dom, 'cpu') ? (attr(child(dom, 'cpu'), 'mode') ?? 'custom') : null,
    nics,
    hostDevices: children(devices, 'hostdev').map(describeHostdev),
    readOnlyFiles,
  };
}

/**
 * Guest device → QEMU alias of each disk in a RUNNING domain's live XML (`<alias name="virtio-disk0"/>`; an
 * inactive definition has none). libvirt names a migration's NBD mirror job of a disk `drive-<alias>`.
 */
export function parseDiskAliases(xml: string): Record<string, string> {
  const aliases: Record<string, string> = {};
  for (const disk of children(child(parseDoc(xml, 'domain'), 'devices'), 'disk')) {
    const target = attr(child(disk, 'target'), 'dev');
    const alias = attr(child(disk, 'alias'), 'name');
    if (target !== undefined && alias !== undefined) aliases[target] = alias;
  }
  return aliases;
}

export interface PoolXml {
  name: string;
  uuid: string;
  type: string;
  /** `<target><path>`; '' for pool types without one. */
  path: string;
  /** Figures as of the pool's last refresh; 0 for an inactive pool. */
  capacityBytes: number;
  allocationBytes: number;
  availableBytes: number;
}

/** Parses `virsh pool-dumpxml` output. */
export function parsePoolXml(xml: string): PoolXml {
  const pool = parseDoc(xml, 'pool');
  const target = child(pool, 'target');
  return {
    name: requireText(child(pool, 'name'), 'pool <name>'),
    uuid: (text(child(pool, 'uuid')) ?? '').toLowerCase(),
    type: attr(pool, 'type') ?? '',
    path: text(child(target, 'path')) ?? '',
    capacityBytes: optionalScaledBytes(child(pool, 'capacity'), 'pool <capacity>', 'bytes') ?? 0,
    allocationBytes: optionalScaledBytes(child(pool, 'allocation'), 'pool <allocation>', 'bytes') ?? 0,
    availableBytes: optionalScaledBytes(child(pool, 'available'), 'pool <available>', 'bytes') ?? 0,
  };
}

export interface VolumeXml {
  name: string;
  /** `<target><path>`, the absolute file path for dir pools. */
  path: string;
  type: string;
  capacityBytes: number;
  allocationBytes: number;
  /** `<target><format type=...>`, e.g. `qcow2`, `raw`, `dir`; null when absent. */
  format: string | null;
}

/** Parses `virsh vol-dumpxml` output. */
export function parseVolumeXml(xml: string): VolumeXml {
  const vol = parseDoc(xml, 'volume');
  const target = child(vol, 'target');
  const path = requireText(child(target, 'path'), 'volume <target><path>');
  return {
    name: requireText(child(vol, 'name'), 'volume <name>'),
    path,
    type: attr(vol, 'type') ?? 'file',
    capacityBytes: scaledBytes(child(vol, 'capacity'), 'volume <capacity>', 'bytes'),
    allocationBytes: optionalScaledBytes(child(vol, 'allocation'), 'volume <allocation>', 'bytes') ?? 0,
    format: attr(child(target, 'format'), 'type') ?? null,
  };
}
