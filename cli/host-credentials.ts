/**
 * `ferry hosts add`'s credentials: the URI from --uri / --tls-dir / --ssh-key / --known-hosts, the files it names
 * checked on this machine (present, keys not readable by others), the --require-secure policy, and how
 * `hosts list` shows a host's transport. Paths are shown, never a file's contents.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isSecureTransport, libvirtUriProblem, uriTransport, withUriParams, type UriTransport } from '../common/libvirt-uri';
import { redactUri } from '../hypervisor/errors';
import { CliExit, EXIT } from './output';

export interface HostCredentialOptions {
  address: string;
  uri?: string;
  /** Directory with cacert.pem, clientcert.pem, clientkey.pem (libvirt's `pkipath`). */
  tlsDir?: string;
  sshKey?: string;
  knownHosts?: string;
  requireSecure?: boolean;
}

/** The files libvirt's TLS client reads from a `pkipath` directory. */
export const TLS_CLIENT_FILES: readonly string[] = ['cacert.pem', 'clientcert.pem', 'clientkey.pem'];

function bracketed(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

function refuse(message: string): never {
  throw new CliExit(EXIT.badInput, message);
}

function absoluteFile(flag: string, file: string): string {
  if (!path.isAbsolute(file)) refuse(`${flag} must be an absolute path (the inventory keeps it for every worker), got ${file}`);
  return path.normalize(file);
}

/** A private key must be readable by its owner only (as ssh insists for its own keys). */
function checkPrivate(flag: string, file: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    refuse(`${flag}: ${file} does not exist on this machine`);
  }
  if (!st.isFile()) refuse(`${flag}: ${file} is not a file`);
  if ((st.mode & 0o077) !== 0) refuse(`${flag}: ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 ${file}`);
}

/** The host's URI from the options; refused (exit 2, nothing added) when it is not acceptable. */
export function hostUri(o: HostCredentialOptions): string {
  let uri = o.uri;
  if (uri === undefined) {
    if (o.tlsDir !== undefined) uri = `qemu+tls://${bracketed(o.address)}/system`;
    else if (o.sshKey !== undefined || o.knownHosts !== undefined) uri = `qemu+ssh://root@${bracketed(o.address)}/system`;
    else uri = `qemu+tcp://${bracketed(o.address)}/system`;
  }
  const transport = uriTransport(uri);
  if (o.tlsDir !== undefined && transport !== 'tls') refuse(`--tls-dir needs a qemu+tls:// URI, not ${redactUri(uri)}`);
  if ((o.sshKey !== undefined || o.knownHosts !== undefined) && transport !== 'ssh') {
    refuse(`--ssh-key and --known-hosts need a qemu+ssh:// URI, not ${redactUri(uri)}`);
  }
  uri = withUriParams(uri, {
    pkipath: o.tlsDir === undefined ? undefined : absoluteFile('--tls-dir', o.tlsDir),
    keyfile: o.sshKey === undefined ? undefined : absoluteFile('--ssh-key', o.sshKey),
    known_hosts: o.knownHosts === undefined ? undefined : absoluteFile('--known-hosts', o.knownHosts),
  });
  const problem = libvirtUriProblem(uri);
  if (problem !== null) refuse(`--uri ${redactUri(uri)} refused: ${problem}`);
  if (o.requireSecure && !isSecureTransport(transport)) {
    refuse(
      `--require-secure: ${redactUri(uri)} is plain qemu+tcp (no authentication, migration streams in clear): ` +
        'use qemu+tls:// with --tls-dir, or qemu+ssh:// with --ssh-key',
    );
  }
  checkCredentialFiles(uri);
  return uri;
}

function param(uri: string, key: string): string | undefined {
  const q = uri.indexOf('?');
  if (q < 0) return undefined;
  for (const pair of uri.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=');
    if ((eq < 0 ? pair : pair.slice(0, eq)) === key) return eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1));
  }
  return undefined;
}

/** The files the URI names exist here; keys are private. (Without pkipath libvirt uses its defaults: not checked.) */
export function checkCredentialFiles(uri: string): void {
  const pki = param(uri, 'pkipath');
  if (pki !== undefined) {
    const missing = TLS_CLIENT_FILES.filter((f) => !fs.existsSync(path.join(pki, f)));
    if (missing.length) refuse(`--tls-dir ${pki}: ${missing.join(', ')} missing (libvirt's TLS client needs ${TLS_CLIENT_FILES.join(', ')} there)`);
    checkPrivate('--tls-dir', path.join(pki, 'clientkey.pem'));
  }
  const key = param(uri, 'keyfile');
  if (key !== undefined) checkPrivate('--ssh-key', key);
  const known = param(uri, 'known_hosts');
  if (known !== undefined && !fs.existsSync(known)) refuse(`--known-hosts: ${known} does not exist on this machine`);
}

/** `hosts list`'s SECURITY column: the transport, upper-case and marked when it is not secure. */
export function transportLabel(t: UriTransport): string {
  return isSecureTransport(t) ? t : 'PLAIN (no auth)';
}
