/**
 * Transport security of a migration, one rule (README "Security"): whether the migration stream is encrypted,
 * and which requests a pair of hosts cannot honour. Pure, sandbox-safe: the workflow, the pre-flight check and
 * the dry run call it with the same facts.
 *
 * A live migration's stream (memory, and the NBD disk copies) is QEMU's own connection between the hosts:
 * `encrypt` means `virsh migrate --tls` (QEMU's migration TLS, certificates in qemu.conf's
 * migrate_tls_x509_cert_dir on both hosts). A cold move has no QEMU stream: its volumes travel through the
 * worker over the two libvirt connections, so they are encrypted exactly when both URIs are (tls, ssh).
 *
 * Measured on libvirt 9.0 / QEMU 7.2 (README "Security"): `--tls` works with `--copy-storage-all` (NBD
 * negotiates STARTTLS, the disk data is encrypted) and with `--postcopy`, including the switch to post-copy
 * after the disk copy; so no live option is refused for it. What a pair of hosts cannot do is refused here.
 */
import { isSecureTransport, uriTransport } from './libvirt-uri';
import type { MigrationMode } from './migration';

export interface TransportPolicy {
  /** The request's `encryptStream`: null = the hosts' default (encrypted when both are qemu+tls hosts). */
  encryptStream: boolean | null;
  /** Refuse hosts reached without authentication (plain qemu+tcp) and encrypt the stream. */
  requireSecure: boolean;
}

export interface EncryptionDecision {
  encrypt: boolean;
  /** Why these hosts cannot honour the request (null: they can). */
  refusal: string | null;
  /** The refusal is the source's: no target can help. */
  vmWide: boolean;
}

interface HostUri {
  name: string;
  uri: string;
}

const REGISTER_SECURELY = 're-register it with a qemu+tls:// URI (client certificates) or qemu+ssh://';

export function streamEncryption(policy: TransportPolicy, mode: MigrationMode, source: HostUri, target: HostUri): EncryptionDecision {
  const src = uriTransport(source.uri);
  const dst = uriTransport(target.uri);
  const refuse = (refusal: string, vmWide: boolean): EncryptionDecision => ({ encrypt: false, refusal, vmWide });
  const plainOne = !isSecureTransport(src) ? source : !isSecureTransport(dst) ? target : null;
  const vmWide = plainOne === source;
  if (policy.requireSecure && plainOne) {
    return refuse(
      `requireSecure: ${plainOne.name} is reached over plain qemu+tcp (no authentication, nothing encrypted): ${REGISTER_SECURELY}`,
      vmWide,
    );
  }
  const encrypt = policy.encryptStream ?? (policy.requireSecure || (src === 'tls' && dst === 'tls'));
  if (!encrypt) return { encrypt: false, refusal: null, vmWide: false };
  if (plainOne) {
    return refuse(
      mode === 'cold'
        ? `encrypted stream: a stopped VM's disks travel over Ferry's libvirt connections, and ${plainOne.name}'s is plain qemu+tcp: ${REGISTER_SECURELY}, or migrate without encryptStream`
        : `encrypted stream: ${plainOne.name} is reached over plain qemu+tcp, so it has no TLS set up for QEMU's migration stream: ` +
            `install its certificates (qemu.conf migrate_tls_x509_cert_dir) and ${REGISTER_SECURELY}, or migrate without encryptStream`,
      vmWide,
    );
  }
  return { encrypt: true, refusal: null, vmWide: false };
}

/** The request's transport policy (what the pre-flight check and the migration step are given). */
export function transportPolicy(r: TransportPolicy): TransportPolicy {
  return { encryptStream: r.encryptStream, requireSecure: r.requireSecure };
}
