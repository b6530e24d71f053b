/**
 * Test helpers for Temporal: the real dev server (the `temporal` CLI installed by scripts/install-deps),
 * started by @temporalio/testing from its existing path (its own download step cannot work offline).
 */
import fs from 'node:fs';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { SA_PHASE, SA_SOURCE, SA_TARGET, SA_VM_NAME, SA_VM_UUID } from '../../common/search-attributes';

export const REPO = path.resolve(__dirname, '..', '..');

export function temporalBinary(): string {
  const candidates = [
    process.env.FERRY_TEMPORAL_BIN,
    path.join(REPO, '.tools', 'bin', 'temporal'),
    ...(process.env.PATH ?? '').split(':').map((d) => path.join(d, 'temporal')),
  ].filter((p): p is string => typeof p === 'string' && p !== '');
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error('the Temporal CLI is missing: run scripts/install-deps (it installs .tools/bin/temporal)');
  return found;
}

export async function startTemporal(): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalBinary() },
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
