import { LibvirtError } from '../../hypervisor/errors';

/** The LibvirtError a call rejects with (any other outcome fails the test). */
export async function libvirtRejection(p: Promise<unknown>): Promise<LibvirtError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof LibvirtError) return e;
    throw e;
  }
  throw new Error('expected a LibvirtError, got success');
}
