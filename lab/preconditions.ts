/** What the lab needs of the machine: root, the tools, and the users/groups libvirt resolves at start-up. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LIBVIRTD } from './naming';
import { tryRun } from './sys';
import { LabError } from './types';

export function requireRoot(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new LabError('the lab needs root (network/mount namespaces, bridges, libvirtd)');
  }
}

/** `tls`: the TLS lab also makes its certificates with openssl. */
export function requireTools(tls = false): void {
  const tools = [LIBVIRTD, 'virsh', 'qemu-img', 'qemu-system-x86_64', 'ip', 'nsenter', 'unshare', 'mount', 'umount', 'hostname', 'stat'];
  if (tls) tools.push('openssl');
  const dirs = (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin']);
  const missing = tools.filter((t) =>
    t.startsWith('/') ? !fs.existsSync(t) : !dirs.some((d) => d && fs.existsSync(path.join(d, t))),
  );
  if (missing.length) {
    throw new LabError(
      `missing ${missing.join(', ')}; install libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils iproute2 openssl`,
    );
  }
}

/** libvirt resolves user/group libvirt-qemu (and group kvm) at start-up, before reading qemu.conf. */
export async function ensureUsers(): Promise<void> {
  const has = async (db: string, name: string) => (await tryRun('getent', [db, name], 10_000)) !== null;
  for (const g of ['kvm', 'libvirt-qemu']) {
    if (!(await has('group', g))) {
      await tryRun('groupadd', ['--system', g], 30_000);
      if (!(await has('group', g))) throw new LabError(`could not create group ${g}`);
    }
  }
  if (!(await has('passwd', 'libvirt-qemu'))) {
    await tryRun(
      'useradd',
      ['--system', '--gid', 'libvirt-qemu', '--groups', 'kvm', '--no-create-home', '--home-dir', '/var/lib/libvirt', '--shell', '/usr/sbin/nologin', 'libvirt-qemu'],
      30_000,
    );
    if (!(await has('passwd', 'libvirt-qemu'))) throw new LabError('could not create user libvirt-qemu');
  }
}
