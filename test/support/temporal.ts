/**
 * Test helpers for Temporal: the real dev server (the `temporal` CLI installed by scripts/install-deps),
 * started by @temporalio/testing from its existing path (its own download step cannot work offline).
 */
import { TestWorkflowEnvironment, type DevServerConfig } from '@temporalio/testing';
import { temporalBinary } from '../../cli/dev';
import { SA_PHASE, SA_SOURCE, SA_TARGET, SA_VM_NAME, SA_VM_UUID } from '../../common/search-attributes';

export { temporalBinary } from '../../cli/dev';

/**
 * The dev server (this repository's `temporal` binary, Ferry's search attributes, errors-only log) with `server`'s
 * other options. The SDK waits a fixed 5 s for the server to answer and then kills it; on a busy 2-core machine
 * (a lab starting beside it) the first start can take longer, so a start that timed out is tried again, up to 3
 * times. Any other error is thrown at once.
 */
export async function createDevServer(
  server: Omit<DevServerConfig, 'type' | 'executable' | 'searchAttributes' | 'extraArgs'> = {},
): Promise<TestWorkflowEnvironment> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await TestWorkflowEnvironment.createLocal({
        server: {
          executable: { type: 'existing-path', path: temporalBinary() },
          searchAttributes: [SA_VM_UUID, SA_VM_NAME, SA_SOURCE, SA_TARGET, SA_PHASE],
          extraArgs: ['--log-level', 'error'],
          ...server,
        },
      });
    } catch (err) {
      if (attempt >= 3 || !/did not start within/.test(String(err))) throw err;
      console.warn(`temporal dev server: start ${attempt} timed out, trying again`);
    }
  }
}

/** The dev server on a random port; with `uiPort`, its Web UI too (http://127.0.0.1:<uiPort>). */
export async function startTemporal(o: { uiPort?: number | undefined } = {}): Promise<TestWorkflowEnvironment> {
  return createDevServer(o.uiPort !== undefined ? { ui: true, uiPort: o.uiPort } : {});
}

/** Polls `fn` until it returns a truthy value (or throws after `timeoutMs`). */
export async function eventually<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms${lastErr ? `: ${String(lastErr)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
