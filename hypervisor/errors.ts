/**
 * libvirt failures, classified so that Temporal retry policies mean something:
 * a retry can help with `connection`, `timeout`, `busy`, `no-space` and `unknown`; it cannot with the rest.
 */
import { CommandError } from './exec';

export type LibvirtErrorKind =
  | 'connection' // daemon unreachable, connection refused/reset, socket closed: retryable
  | 'timeout' // our per-call time limit killed virsh: retryable (the request may still run later)
  | 'busy' // another job holds the domain/pool lock ("cannot acquire state change lock"): retryable
  | 'no-space' // ENOSPC on the host: retryable (space may be freed), bounded by the caller's attempts
  | 'not-found' // no such domain / pool / volume: not retryable
  | 'invalid' // invalid argument, XML error, unsupported configuration, operation invalid in this state
  | 'exists' // object already exists / conflicts with another object: not retryable
  | 'aborted' // the job was aborted (domjobabort): not retryable
  | 'tls' // TLS certificates missing, untrusted or refused (either side): not retryable, the same certificates fail again
  | 'failed' // libvirt said the operation failed for a reason a retry will not change
  | 'unknown'; // anything not recognised: retryable

export const RETRYABLE_KINDS: ReadonlySet<LibvirtErrorKind> = new Set([
  'connection',
  'timeout',
  'busy',
  'no-space',
  'unknown',
]);

export class LibvirtError extends Error {
  override readonly name = 'LibvirtError';
  constructor(
    readonly kind: LibvirtErrorKind,
    message: string,
    /** The virsh arguments (never secrets: URIs are printed without credentials). */
    readonly args: readonly string[] = [],
    readonly stderr = '',
  ) {
    super(message);
  }

  get retryable(): boolean {
    return RETRYABLE_KINDS.has(this.kind);
  }
}

export function isLibvirtError(e: unknown, kind?: LibvirtErrorKind): e is LibvirtError {
  return e instanceof LibvirtError && (kind === undefined || e.kind === kind);
}

/**
 * Rules in order: the first match wins. Connection-level causes come first because libvirt wraps them
 * in otherwise final-looking messages (a p2p migration to a dead target reports
 * "operation failed: Failed to connect to remote libvirt URI ...: Connection refused"), and because
 * virsh's own "failed to get domain" line also appears when the lookup died with the connection.
 * Every pattern here was seen from real virsh 9.0 unless marked "(libvirt source)".
 */
const RULES: ReadonlyArray<readonly [RegExp, LibvirtErrorKind]> = [
  // connection
  [/Connection refused/i, 'connection'],
  [/Connection reset by peer/i, 'connection'],
  [/End of file while reading data/i, 'connection'],
  [/client socket is closed/i, 'connection'],
  [/Cannot recv data/i, 'connection'],
  [/Cannot write data/i, 'connection'],
  [/unable to connect to server/i, 'connection'],
  [/No route to host/i, 'connection'], // (libvirt source: strerror in "unable to connect to server at")
  [/Network is unreachable/i, 'connection'],
  [/Broken pipe/i, 'connection'],
  [/Disconnected from .* due to/i, 'connection'],
  [/keepalive timeout/i, 'connection'], // (libvirt source: "connection closed due to keepalive timeout")
  [/Connection timed out/i, 'connection'],
  [/Unable to resolve address/i, 'connection'],
  [/no valid connection/i, 'connection'],
  [/packet \d+ bytes received from server too large/i, 'connection'],
  // busy: another job holds the object
  [/cannot acquire state change lock/i, 'busy'],
  [/Timed out during operation/i, 'busy'],
  [/has asynchronous jobs running/i, 'busy'], // (libvirt source: pool refresh/delete while a volume is being built)
  // storage
  [/No space left on device/i, 'no-space'],
  [/Disk quota exceeded/i, 'no-space'],
  // job aborted
  [/operation aborted/i, 'aborted'],
  [/cancel+ed by client/i, 'aborted'],
  // absent objects
  [/Domain not found/i, 'not-found'],
  [/no domain with matching/i, 'not-found'],
  [/Storage pool not found/i, 'not-found'],
  [/no storage pool with matching/i, 'not-found'],
  [/Storage volume not found/i, 'not-found'],
  [/no storage vol with matching/i, 'not-found'],
  [/failed to get (domain|pool|vol) '/i, 'not-found'],
  // already there
  [/already exists/i, 'exists'],
  [/exists already/i, 'exists'],
  [/already in use/i, 'exists'], // "storage volume name 'x' already in use"
  [/File exists/i, 'exists'],
  [/conflict/i, 'exists'],
  // the request cannot succeed as asked
  [/invalid argument/i, 'invalid'],
  [/XML error/i, 'invalid'],
  [/\(\w+_definition\):\d+:/, 'invalid'], // libxml2 parse error: "(domain_definition):2: expected '>'"
  [/unsupported configuration/i, 'invalid'],
  [/Requested operation is not valid/i, 'invalid'],
  [/Operation not supported/i, 'invalid'],
  [/argument unsupported/i, 'invalid'],
  [/this function is not supported/i, 'invalid'],
  [/pool '[^']*' is not active/i, 'invalid'], // virsh's own check: "error: pool 'x' is not active"
  [/transport in URL not recognised/i, 'invalid'],
  [/unexpected qemu URI path/i, 'invalid'],
  [/Attempt to migrate guest to the same host/i, 'invalid'],
  [/Unsafe migration/i, 'invalid'], // 'Unsafe migration: Migration without shared storage is unsafe'
  [/authentication (failed|unavailable)/i, 'failed'],
  // any other failure to open the connection (after the rules above had their say)
  [/failed to connect to the hypervisor/i, 'connection'],
  // final failures
  [/operation failed/i, 'failed'],
  [/Directory not empty/i, 'failed'],
];

/** Classifies virsh's stderr (and our own time limit) into a LibvirtErrorKind. */
/**
 * TLS failures (certificates missing, untrusted or refused), seen with libvirt 9.0 against the TLS lab. Not
 * retryable: a retry presents the same certificates. Each says what to fix; none quotes a file's contents.
 */
const TLS_PROBLEMS: ReadonlyArray<readonly [RegExp, string]> = [
  [
    /Unable to access credentials/i,
    "QEMU's migration TLS certificates are missing on a host (an encrypted stream needs ca-cert.pem, server-cert.pem, " +
      'server-key.pem, client-cert.pem and client-key.pem in qemu.conf\'s migrate_tls_x509_cert_dir, default /etc/pki/qemu, ' +
      'on both hosts): install them, or migrate without encryptStream',
  ],
  [
    /Unable to read TLS confirmation|Failed to verify peer's certificate|TLS handshake failed/i,
    "the host refused the TLS client certificate (not issued by a CA the host trusts, or not in its tls_allowed_dn_list): " +
      "give Ferry a client certificate of the fleet's CA (clientcert.pem, clientkey.pem in the URI's pkipath directory)",
  ],
  [
    /Our own certificate .* failed validation/i,
    "the TLS client certificate is not issued by the CA in the same directory's cacert.pem: put the fleet CA's certificate there",
  ],
  [
    /Cannot read (CA certificate|certificate|private key)|Unable to read (CA certificate|certificate|private key)/i,
    "a TLS certificate or key file is missing or unreadable: Ferry's are cacert.pem, clientcert.pem and clientkey.pem in the " +
      "URI's pkipath directory (libvirt's default: /etc/pki/CA/cacert.pem, /etc/pki/libvirt/clientcert.pem, " +
      '/etc/pki/libvirt/private/clientkey.pem); a source host connecting to its peer uses libvirt\'s default paths',
  ],
  [
    /certificate .*(hasn't got a known issuer|is not trusted|failed validation|does not match|has expired|is not yet activated)/i,
    "the host's TLS certificate is not trusted: cacert.pem must hold the CA that issued it, and its subjectAltName must " +
      'name the address in the URI',
  ],
];

/** What to do about a TLS failure in virsh's stderr, or null when it is none. */
export function tlsProblem(stderr: string): string | null {
  return TLS_PROBLEMS.find(([re]) => re.test(stderr))?.[1] ?? null;
}

export function classifyVirshError(stderr: string, timedOut: boolean): LibvirtErrorKind {
  if (timedOut) return 'timeout';
  if (tlsProblem(stderr) !== null) return 'tls';
  for (const [re, kind] of RULES) {
    if (re.test(stderr)) return kind;
  }
  return 'unknown';
}

/** The URI without user info, password or query (which may carry credentials or key paths). */
export function redactUri(uri: string): string {
  const m = /^([a-z0-9+.-]+:\/\/)([^/?#]*@)?([^?#]*)/i.exec(uri);
  if (!m) return uri;
  return `${m[1]}${m[3]}`;
}

/**
 * Free text (virsh's stderr, a child process's message) with credentials removed: the user info of every
 * URI in it (libvirt quotes URIs in its errors, e.g. "Failed to connect to remote libvirt URI …"), and any
 * occurrence of the passwords of `uris` (in case a tool printed one on its own).
 */
export function redactText(text: string, uris: readonly string[] = []): string {
  let out = text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@'"]*@/gi, '$1');
  for (const uri of uris) {
    const password = /^[a-z0-9+.-]+:\/\/[^/?#@:]*:([^/?#@]*)@/i.exec(uri)?.[1];
    if (password !== undefined && password.length >= 3) out = out.split(password).join('***');
  }
  return out;
}

/** The same error with `uris`' credentials removed from its message, stderr and arguments. */
export function redactLibvirtError(e: LibvirtError, uris: readonly string[]): LibvirtError {
  return new LibvirtError(e.kind, redactText(e.message, uris), redactArgs(e.args, uris), redactText(e.stderr, uris));
}

/** virsh's error lines without the `error: ` prefix, joined: "Failed to define pool x: operation failed: ...". */
export function virshErrorDetail(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && l !== '(null)' && l !== '^');
  const errors = lines.filter((l) => l.startsWith('error:')).map((l) => l.slice('error:'.length).trim());
  const picked = errors.length > 0 ? errors : lines;
  // virsh repeats "failed to connect to the hypervisor" before the cause: keep only the cause then.
  const useful = picked.length > 1 ? picked.filter((l) => l !== 'failed to connect to the hypervisor') : picked;
  return useful.join(': ');
}

const CONNECTION_CAUSES: ReadonlyArray<readonly [RegExp, string]> = [
  [/Connection refused/i, 'connection refused'],
  [/Connection reset by peer/i, 'connection reset by peer'],
  [/End of file while reading data/i, 'connection closed by the daemon'],
  [/client socket is closed/i, 'connection closed by the daemon'],
  [/No route to host/i, 'no route to host'],
  [/Network is unreachable/i, 'network unreachable'],
  [/Unable to resolve address/i, 'host name does not resolve'],
  [/keepalive timeout/i, 'keepalive timeout'],
  [/Connection timed out/i, 'connection timed out'],
  [/Broken pipe/i, 'broken pipe'],
  [/Disconnected from/i, 'disconnected'],
];

/** The listener a URI needs (a TLS-only host has no TCP listener: it refuses qemu+tcp outright). */
function listener(uri: string): string {
  return /^qemu\+tls:/i.test(uri) ? 'TLS (listen_tls, port 16514)' : /^qemu\+tcp:/i.test(uri) ? 'TCP' : 'its socket';
}

export interface VirshFailureContext {
  /** What Ferry was doing, e.g. `pool-define-as ferry-vm1` or `getDomain 1234-...`. */
  what: string;
  /** The host URI the call went to. */
  uri: string;
  /** The per-call limit that applied, for timeout messages. */
  timeoutMs?: number;
}

/** A LibvirtError for virsh's stderr, with a message that says what failed and what to do. */
export function libvirtErrorFromStderr(
  stderr: string,
  timedOut: boolean,
  ctx: VirshFailureContext,
  args: readonly string[] = [],
): LibvirtError {
  const kind = classifyVirshError(stderr, timedOut);
  const host = redactUri(ctx.uri);
  stderr = redactText(stderr, [ctx.uri]);
  const detail = virshErrorDetail(stderr) || 'no error text';
  let message: string;
  switch (kind) {
    case 'timeout':
      message =
        `${ctx.what} on ${host} timed out` +
        (ctx.timeoutMs !== undefined ? ` after ${ctx.timeoutMs} ms` : '') +
        ': libvirtd may be stopped, hung or overloaded; the request may still complete on the host';
      break;
    case 'connection': {
      const cause = CONNECTION_CAUSES.find(([re]) => re.test(stderr))?.[1] ?? 'connection failed';
      const viaRemote = /Failed to connect to remote libvirt URI/i.test(stderr);
      message = viaRemote
        ? `${ctx.what} on ${host}: the source daemon could not reach the target (${cause}): ` +
          `is the target's libvirtd running and listening on ${listener(host)}? (${detail})`
        : `host ${host} unreachable (${cause}) during ${ctx.what}: is libvirtd running and listening on ${listener(host)}? (${detail})`;
      break;
    }
    case 'busy':
      message = `${ctx.what} on ${host}: the object is busy with another job (${detail}); retry later`;
      break;
    case 'no-space':
      message = `${ctx.what} on ${host}: no space left on the host's storage (${detail}); free space or pick another host`;
      break;
    case 'not-found':
      message = `${ctx.what} on ${host}: not found (${detail})`;
      break;
    case 'exists':
      message = `${ctx.what} on ${host}: conflicts with an existing object (${detail})`;
      break;
    case 'invalid':
      message = `${ctx.what} on ${host} refused as invalid (${detail})`;
      break;
    case 'tls':
      message = `${ctx.what} on ${host}: TLS failed: ${tlsProblem(stderr) ?? 'certificate problem'} (${detail})`;
      break;
    case 'aborted':
      message = `${ctx.what} on ${host}: job aborted (${detail})`;
      break;
    case 'failed':
      message = `${ctx.what} on ${host} failed: ${detail}`;
      break;
    case 'unknown':
      message = `${ctx.what} on ${host} failed with an unrecognised error: ${detail}`;
      break;
  }
  return new LibvirtError(kind, message, redactArgs(args, [ctx.uri]), stderr);
}

/** Turns a CommandError from run() into a LibvirtError; anything else is wrapped as `unknown`. */
export function libvirtErrorFromCommand(err: unknown, ctx: VirshFailureContext): LibvirtError {
  if (err instanceof LibvirtError) return redactLibvirtError(err, [ctx.uri]);
  if (!(err instanceof CommandError)) {
    const msg = redactText(err instanceof Error ? err.message : String(err), [ctx.uri]);
    return new LibvirtError('unknown', `${ctx.what} on ${redactUri(ctx.uri)}: ${msg}`);
  }
  const args = redactArgs(err.args, [ctx.uri]);
  if (err.aborted) {
    return new LibvirtError(
      'aborted',
      `${ctx.what} on ${redactUri(ctx.uri)}: the virsh client was killed by the caller's abort signal ` +
        '(with --p2p a migration job may still be running on the source: use abortJob)',
      args,
      redactText(err.stderr, [ctx.uri]),
    );
  }
  if (!err.timedOut && err.exitCode === null && typeof err.stderr === 'string' && err.stderr === '' && /could not start/.test(err.message)) {
    return new LibvirtError('failed', `${ctx.what}: cannot run ${err.file} (${redactText(err.message, [ctx.uri])}): is virsh installed?`, args);
  }
  return libvirtErrorFromStderr(err.stderr, err.timedOut, ctx, args);
}

/** virsh arguments for messages: a URI argument (also `--desturi=<uri>`) loses user info and query. */
function redactArgs(args: readonly string[], uris: readonly string[] = []): string[] {
  return args.map((a) => {
    const opt = /^(--[a-z-]+=)?([a-z0-9+.-]+:\/\/.*)$/is.exec(a);
    if (opt) return `${opt[1] ?? ''}${redactUri(opt[2] ?? '')}`;
    return redactText(a, uris);
  });
}
