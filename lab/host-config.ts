/** A host's libvirt configuration: libvirtd.conf and qemu.conf in its etc directory, rewritten when they differ. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HostRefs } from './naming';
import type { StateHost } from './state';

/** TLS lab: only the TLS listener, clients must present a certificate of the lab CA (lab/pki.ts). */
const TLS_LISTENER = [
  `listen_tcp = 0`,
  `listen_tls = 1`,
  `tls_port = "16514"`,
  `auth_tls = "none"`,
  `tls_no_verify_certificate = 0`,
  `ca_file = "/etc/pki/CA/cacert.pem"`,
  `cert_file = "/etc/pki/libvirt/servercert.pem"`,
  `key_file = "/etc/pki/libvirt/private/serverkey.pem"`,
];
const TCP_LISTENER = [`listen_tcp = 1`, `listen_tls = 0`, `tcp_port = "16509"`, `auth_tcp = "none"`];

function libvirtdConf(h: StateHost, tls: boolean): string {
  return [
    `# Written by Ferry's lab for ${h.name}; rewritten by every \`ferry lab up\`.`,
    ...(tls ? TLS_LISTENER : TCP_LISTENER),
    `listen_addr = "${h.address}"`,
    `auth_unix_ro = "none"`,
    `auth_unix_rw = "none"`,
    `unix_sock_group = "root"`,
    `unix_sock_ro_perms = "0777"`,
    `unix_sock_rw_perms = "0700"`,
    `host_uuid = "${h.hostUuid}"`,
    `log_outputs = "3:file:/var/log/libvirt/libvirtd.log"`,
    '',
  ].join('\n');
}

/** QEMU's TLS for migration streams (`virsh migrate --tls`) and their NBD disk copies: both sides verify. */
const QEMU_TLS = [
  `default_tls_x509_cert_dir = "/etc/pki/qemu"`,
  `default_tls_x509_verify = 1`,
  `migrate_tls_x509_cert_dir = "/etc/pki/qemu"`,
  `migrate_tls_x509_verify = 1`,
];

function qemuConf(h: StateHost, tls: boolean): string {
  return [
    `# Written by Ferry's lab for ${h.name}; rewritten by every \`ferry lab up\`.`,
    `user = "root"`,
    `group = "root"`,
    `security_driver = "none"`,
    `dynamic_ownership = 0`,
    `remember_owner = 0`,
    `# no virtlogd: QEMU writes its log file directly`,
    `stdio_handler = "file"`,
    `# every host shares the machine's cgroup tree: keep libvirt out of it`,
    `cgroup_controllers = [ ]`,
    `namespaces = [ ]`,
    `migration_address = "${h.address}"`,
    `migration_host = "${h.address}"`,
    ...(tls ? QEMU_TLS : []),
    '',
  ].join('\n');
}

function writeIfChanged(file: string, text: string): boolean {
  try {
    if (fs.readFileSync(file, 'utf8') === text) return false;
  } catch {
    /* absent */
  }
  fs.writeFileSync(file, text);
  return true;
}

/**
 * Writes the host's configuration files (`tls`: a TLS lab, certificates from lab/pki.ts); true when
 * libvirtd.conf or qemu.conf changed (the daemon must restart).
 */
export function writeHostConfig(r: HostRefs, tls: boolean): boolean {
  const etc = path.join(r.dir, 'etc');
  for (const f of ['libvirt.conf', 'libvirt-admin.conf']) {
    const src = path.join('/etc/libvirt', f);
    const dst = path.join(etc, f);
    if (!fs.existsSync(dst) && fs.existsSync(src)) fs.copyFileSync(src, dst);
  }
  const a = writeIfChanged(path.join(etc, 'libvirtd.conf'), libvirtdConf(r.h, tls));
  const b = writeIfChanged(path.join(etc, 'qemu.conf'), qemuConf(r.h, tls));
  return a || b;
}
