/**
 * libvirt failures, classified so that Temporal retry policies mean something:
 * a retry can help with `connection`, `timeout`, `busy`, `no-space` and `unknown`; it cannot with the rest.
 */
export type LibvirtErrorKind =
  | 'connection' // daemon unreachable, connection refused/reset, socket closed: retryable
  | 'timeout' // our per-call time limit killed virsh: retryable (the request may still run later)
  | 'busy' // another job holds the domain/pool lock ("cannot acquire state change lock"): retryable
  | 'no-space' // ENOSPC on the host: retryable (space may be freed), bounded by the caller's attempts
  | 'not-found' // no such domain / pool / volume: not retryable
  | 'invalid' // invalid argument, XML error, unsupported configuration, operation invalid in this state
  | 'exists' // object already exists / conflicts with another object: not retryable
  | 'aborted' // the job was aborted (domjobabort): not retryable
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
