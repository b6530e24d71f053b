/**
 * Test helpers for Temporal: the real dev server (the `temporal` CLI installed by scripts/install-deps),
 * started by @temporalio/testing from its existing path (its own download step cannot work offline).
 */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { temporalBinary } from '../../cli/dev';
import { SA_PHASE, SA_SOURCE, SA_TARGET, SA_VM_NAME, SA_VM_UUID } from '../../common/search-attributes';

export { temporalBinary } from '../../cli/dev';

/** The dev server on a random port; with `uiPort`, its Web UI too (http://127.0.0.1:<uiPort>). */
export async function startTemporal(o: { uiPort?: number | undefined } = {}): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalBinary() },
      ...(o.uiPort !== undefined ? { ui: true, uiPort: o.uiPort } : {}),
      searchAttributes: [SA_VM_UUID, SA_VM_NAME, SA_SOURCE, SA_TARGET, SA_PHASE],
      extraArgs: ['--log-level', 'error'],
    },
  });
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
