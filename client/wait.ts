/** Waiting for a Temporal server that was just started (`ferry dev up`, `ferry cluster up`). */
import { Connection } from '@temporalio/client';

/** Connects once `address` answers getSystemInfo; throws after `timeoutMs` naming `what` (and its log, if given). */
export async function waitForTemporal(address: string, timeoutMs: number, what: string, logFile?: string): Promise<Connection> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const c = await Connection.connect({ address, connectTimeout: '1s' });
      await c.workflowService.getSystemInfo({});
      return c;
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`${what} did not answer on ${address} within ${timeoutMs / 1000} s: ${String(last)}${logFile ? `; see ${logFile}` : ''}`);
}
