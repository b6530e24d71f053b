/**
 * Which libvirt connection URIs Ferry accepts for a host (README "Reliability": security). Pure string
 * logic, sandbox-safe.
 *
 *   qemu+tcp://host[:port]/system                       plain TCP (labs, trusted networks; SASL via auth.conf)
 *   qemu+tls://host[:port]/system[?pkipath=/etc/pki/ferry]          TLS with client certificates
 *   qemu+ssh://[user@]host[:port]/system[?keyfile=…&known_hosts=…]  SSH with keys (also qemu+libssh, +libssh2)
 *   qemu:///system, qemu+unix:///system                  the local daemon
 *
 * Refused: other drivers and transports, paths other than /system, a password in the URI (credentials
 * belong in SSH keys, TLS certificates or libvirt's auth.conf — a URI is stored in the inventory and
 * travels in workflow histories), and the query parameters that make libvirt run a program of the URI's
 * choosing (`command` runs a local program instead of ssh, `netcat` a remote one) or that point it
 * elsewhere (`socket`, `name`). Only known, harmless parameters pass.
 */

export const LIBVIRT_SCHEMES: readonly string[] = ['qemu', 'qemu+tcp', 'qemu+tls', 'qemu+ssh', 'qemu+libssh', 'qemu+libssh2', 'qemu+unix'];

/** Query parameters that only select keys, certificates and verification behaviour. */
export const LIBVIRT_URI_PARAMS: readonly string[] = [
  'keyfile',
  'known_hosts',
  'known_hosts_verify',
  'no_verify',
  'no_tty',
  'pkipath',
  'sshauth',
  'mode',
  'proxy',
];

const URI = /^([a-z0-9+]+):\/\/(?:([^@/?#]*)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*)(?::(\d{1,5}))?(\/[^?#]*)?(?:\?([^#]*))?$/;
const USER = /^[A-Za-z0-9._-]{1,64}$/;
const PARAM_VALUE = /^[A-Za-z0-9_./~%+:,@-]*$/;

/** True when the URI carries a password (`user:password@`). */
export function uriHasPassword(uri: string): boolean {
  return /^[a-z0-9+.-]+:\/\/[^/?#@]*:[^/?#@]*@/i.test(uri);
}

/** Why Ferry refuses this libvirt URI, or null when it is acceptable. Never echoes a password. */
export function libvirtUriProblem(uri: string): string | null {
  if (/[\s\x00-\x1f\x7f]/.test(uri)) return 'the URI contains whitespace or control characters';
  if (uriHasPassword(uri)) {
    return 'the URI carries a password: use SSH keys (qemu+ssh), TLS client certificates (qemu+tls) or libvirt\'s auth.conf instead';
  }
  const m = URI.exec(uri);
  if (!m) return 'not a URI like qemu+tls://host/system or qemu+ssh://user@host/system';
  const [, scheme = '', user, host = '', port, path = '', query] = m;
  if (!LIBVIRT_SCHEMES.includes(scheme)) {
    return `unsupported scheme ${scheme}: use one of ${LIBVIRT_SCHEMES.join(', ')}`;
  }
  if (user !== undefined && !USER.test(user)) return 'the user name may only contain letters, digits, ".", "_" and "-"';
  const local = scheme === 'qemu' || scheme === 'qemu+unix';
  if (!local && host === '') return `${scheme} needs a host, e.g. ${scheme}://host.example/system`;
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return `port ${port} is out of range`;
  if (host.includes('..')) return 'the host name is not valid';
  if (path !== '/system') return `the path must be /system (Ferry manages the system instance), not ${path || '(none)'}`;
  if (query !== undefined && query !== '') {
    for (const pair of query.split('&')) {
      const eq = pair.indexOf('=');
      const key = eq < 0 ? pair : pair.slice(0, eq);
      const value = eq < 0 ? '' : pair.slice(eq + 1);
      if (!LIBVIRT_URI_PARAMS.includes(key)) {
        return `the URI parameter "${key}" is not allowed (allowed: ${LIBVIRT_URI_PARAMS.join(', ')})`;
      }
      if (!PARAM_VALUE.test(value)) return `the value of the URI parameter "${key}" has characters that are not allowed`;
    }
  }
  return null;
}

/**
 * How a URI's connection is protected: `tls` (x509 certificates both ways), `ssh` (keys), `local` (the host's
 * own socket), `plain` (qemu+tcp: nothing on the wire is encrypted, and libvirtd authenticates the client only
 * if it enforces SASL — Ferry flags such hosts and `requireSecure` refuses them).
 */
export type UriTransport = 'tls' | 'ssh' | 'local' | 'plain';

export function uriTransport(uri: string): UriTransport {
  const scheme = /^([a-z0-9+]+):/i.exec(uri)?.[1]?.toLowerCase() ?? '';
  if (scheme === 'qemu+tls') return 'tls';
  if (scheme === 'qemu+ssh' || scheme === 'qemu+libssh' || scheme === 'qemu+libssh2') return 'ssh';
  if (scheme === 'qemu' || scheme === 'qemu+unix') return 'local';
  return 'plain';
}

/** True when the connection is encrypted and the client authenticated by the transport itself. */
export function isSecureTransport(t: UriTransport): boolean {
  return t !== 'plain';
}

/**
 * Parameters that name files on the machine of the client that uses the URI (Ferry's certificate directory,
 * SSH key, known_hosts): meaningless on another machine.
 */
const CLIENT_FILE_PARAMS: readonly string[] = ['pkipath', 'keyfile', 'known_hosts'];

/**
 * The URI a host's peer uses for it: with --p2p the SOURCE daemon connects to the target with its own
 * credentials (libvirt's defaults on that host: /etc/pki/libvirt/clientcert.pem, root's SSH key), so the
 * parameters naming Ferry's own files are dropped; everything else stays.
 */
export function peerUri(uri: string): string {
  const q = uri.indexOf('?');
  if (q < 0) return uri;
  const kept = uri
    .slice(q + 1)
    .split('&')
    .filter((pair) => pair !== '' && !CLIENT_FILE_PARAMS.includes(pair.split('=')[0] ?? ''));
  return kept.length ? `${uri.slice(0, q)}?${kept.join('&')}` : uri.slice(0, q);
}

/** `uri` with `params` appended to its query (values as given: libvirtUriProblem judges the result). */
export function withUriParams(uri: string, params: Readonly<Record<string, string | undefined>>): string {
  const pairs = Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined).map(([k, v]) => `${k}=${v}`);
  if (pairs.length === 0) return uri;
  return `${uri}${uri.includes('?') ? '&' : '?'}${pairs.join('&')}`;
}
