/**
 * The TLS lab's certificates (`ferry lab up --tls`), made with openssl (no shell: run()).
 *
 *   <home>/lab/pki/ca/{cacert,cakey}.pem          the lab CA (EC P-256, 10 years); its key never leaves here
 *   <home>/lab/pki/ferry/{cacert,clientcert,clientkey}.pem
 *                                                 Ferry's client certificate: the directory the hosts' URIs
 *                                                 name with `?pkipath=` (libvirt's client looks there only)
 *   <home>/lab/hosts/<h>/pki/                     bind-mounted over /etc/pki inside host h (LAB_BINDS):
 *       CA/cacert.pem, libvirt/servercert.pem, libvirt/private/serverkey.pem   libvirtd's TLS listener
 *       libvirt/clientcert.pem, libvirt/private/clientkey.pem                  its p2p connection to a peer
 *       qemu/{ca-cert,server-cert,server-key,client-cert,client-key}.pem      QEMU's migration TLS (--tls)
 *
 * One certificate per host, for both roles (extended key usage serverAuth + clientAuth), subjectAltName the
 * host's IP address and name: libvirt's client checks the server's against the URI's host, QEMU's against
 * the target's migration_host. Existing files are kept (an idempotent labUp does not re-key a running lab).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../hypervisor/exec';
import { labDir, labHostDir } from './naming';
import type { StateHost } from './state';

export function labPkiDir(home: string): string {
  return path.join(labDir(home), 'pki');
}

/** Ferry's client certificate directory (the `pkipath` of the TLS lab's host URIs). */
export function labClientPkiDir(home: string): string {
  return path.join(labPkiDir(home), 'ferry');
}

const CURVE = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

interface Ca {
  cert: string;
  key: string;
}

async function ensureCa(dir: string, name: string): Promise<Ca> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = { cert: path.join(dir, 'cacert.pem'), key: path.join(dir, 'cakey.pem') };
  if (fs.existsSync(ca.cert) && fs.existsSync(ca.key)) return ca;
  await run('openssl', [
    'req', '-x509', ...CURVE, '-keyout', ca.key, '-out', ca.cert, '-days', '3650',
    '-subj', `/O=Ferry lab/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  fs.chmodSync(ca.key, 0o600);
  return ca;
}

/** A certificate signed by `ca` for `cn`, usable as TLS server (with `sans`) and client. */
async function issue(ca: Ca, cn: string, sans: readonly string[], certFile: string, keyFile: string): Promise<void> {
  if (fs.existsSync(certFile) && fs.existsSync(keyFile)) return;
  fs.mkdirSync(path.dirname(certFile), { recursive: true });
  fs.mkdirSync(path.dirname(keyFile), { recursive: true, mode: 0o700 });
  const ext = [
    '-addext', 'basicConstraints=critical,CA:FALSE',
    '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment',
    '-addext', 'extendedKeyUsage=serverAuth,clientAuth',
  ];
  if (sans.length) ext.push('-addext', `subjectAltName=${sans.join(',')}`);
  await run('openssl', [
    'req', '-x509', '-CA', ca.cert, '-CAkey', ca.key, ...CURVE, '-keyout', keyFile, '-out', certFile,
    '-days', '825', '-subj', `/O=Ferry lab/CN=${cn}`, ...ext,
  ]);
  fs.chmodSync(keyFile, 0o600);
}

function copyIfMissing(from: string, to: string, mode = 0o644): void {
  if (fs.existsSync(to)) return;
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
  fs.chmodSync(to, mode);
}

/**
 * A client certificate directory libvirt's `pkipath` accepts: cacert.pem (the CAs `trust` lists, concatenated),
 * clientcert.pem, clientkey.pem.
 */
async function clientDir(ca: Ca, trust: readonly string[], cn: string, dir: string): Promise<string> {
  await issue(ca, cn, [], path.join(dir, 'clientcert.pem'), path.join(dir, 'clientkey.pem'));
  const bundle = path.join(dir, 'cacert.pem');
  if (!fs.existsSync(bundle)) fs.writeFileSync(bundle, trust.map((f) => fs.readFileSync(f, 'utf8')).join(''), { mode: 0o644 });
  return dir;
}

/** The lab CA, Ferry's client directory and every host's /etc/pki (see the header). */
export async function ensureLabPki(home: string, prefix: string, hosts: readonly StateHost[]): Promise<void> {
  const ca = await ensureCa(path.join(labPkiDir(home), 'ca'), `Ferry lab CA (${prefix})`);
  await clientDir(ca, [ca.cert], 'ferry', labClientPkiDir(home));
  for (const h of hosts) {
    const pki = path.join(labHostDir(home, h.name), 'pki');
    const cert = path.join(pki, 'libvirt', 'servercert.pem');
    const key = path.join(pki, 'libvirt', 'private', 'serverkey.pem');
    await issue(ca, h.name, [`IP:${h.address}`, `DNS:${h.name}`], cert, key);
    copyIfMissing(ca.cert, path.join(pki, 'CA', 'cacert.pem'));
    copyIfMissing(cert, path.join(pki, 'libvirt', 'clientcert.pem'));
    copyIfMissing(key, path.join(pki, 'libvirt', 'private', 'clientkey.pem'), 0o600);
    const qemu = path.join(pki, 'qemu');
    copyIfMissing(ca.cert, path.join(qemu, 'ca-cert.pem'));
    copyIfMissing(cert, path.join(qemu, 'server-cert.pem'));
    copyIfMissing(key, path.join(qemu, 'server-key.pem'), 0o600);
    copyIfMissing(cert, path.join(qemu, 'client-cert.pem'));
    copyIfMissing(key, path.join(qemu, 'client-key.pem'), 0o600);
  }
}

/**
 * A client directory whose certificate comes from ANOTHER CA (made in `dir/ca`); it trusts that CA and the lab's
 * (libvirt's client checks its own certificate against its CA file before it connects), so the connection gets
 * as far as the TLS handshake and the lab host is the one that must refuse it (tests). Nothing of the lab changes.
 */
export async function makeForeignClientPki(home: string, dir: string): Promise<string> {
  const rogue = await ensureCa(path.join(dir, 'ca'), 'Not the Ferry lab CA');
  return clientDir(rogue, [rogue.cert, path.join(labPkiDir(home), 'ca', 'cacert.pem')], 'intruder', dir);
}
