/**
 * A Ferry worker as its own process, for the fault tests (test/faults): the parent can SIGKILL it at any
 * moment and start a new one. Everything comes from the environment, as for `ferry worker`:
 *   TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE (…)   the Temporal connection (client/config.ts, envconfig)
 *   FERRY_INVENTORY, FERRY_TASK_QUEUE            inventory file and task queue
 *   FERRY_TEST_WORKFLOW_BUNDLE                   optional: a pre-built workflow bundle (saves bundling per start)
 *   FERRY_TEST_GATES                             TEST HOOK, inert when unset: "activity:attempt,…" — before that
 *                                                attempt of that activity runs, the child tells the parent
 *                                                ({type:'gate'}) and waits for {type:'go'}; the parent injects a
 *                                                real fault (stops a libvirt daemon) at exactly that boundary.
 * Over the IPC channel the child also reports {type:'ready'} and every activity attempt's end
 * ({type:'activity', activity, attempt, ok, error}).
 * Run with `node -r test/support/register-ts.cjs test/support/worker-child.ts`.
 */
import { Context } from '@temporalio/activity';
import type { ActivityExecuteInput, ActivityInboundCallsInterceptor, Next } from '@temporalio/worker';
import { labGuestObserver } from '../../lab/guest-net';
import { connectFerryWorker } from '../../worker';

export type ChildEvent =
  | { type: 'ready' }
  | { type: 'gate'; activity: string; attempt: number; workflowId: string }
  | { type: 'activity'; activity: string; attempt: number; workflowId: string; ok: boolean; error?: string };
export type ParentCommand = { type: 'go'; activity: string; attempt: number };

function send(e: ChildEvent): void {
  process.send?.(e);
}

/** "createStoragePool:1,cleanSource:1" → set of "createStoragePool:1", … */
function gates(): Set<string> {
  return new Set(
    (process.env['FERRY_TEST_GATES'] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  );
}

const waiting = new Map<string, () => void>();
process.on('message', (m: ParentCommand) => {
  if (m?.type !== 'go') return;
  const key = `${m.activity}:${m.attempt}`;
  waiting.get(key)?.();
  waiting.delete(key);
});

function gateInterceptor(gated: ReadonlySet<string>): ActivityInboundCallsInterceptor {
  return {
    async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
      const info = Context.current().info;
      const activity = info.activityType;
      const attempt = info.attempt;
      const workflowId = info.workflowExecution?.workflowId ?? '';
      const key = `${activity}:${attempt}`;
      if (gated.has(key)) {
        await new Promise<void>((resolve) => {
          waiting.set(key, resolve);
          send({ type: 'gate', activity, attempt, workflowId });
        });
      }
      try {
        const result = await next(input);
        send({ type: 'activity', activity, attempt, workflowId, ok: true });
        return result;
      } catch (err) {
        send({ type: 'activity', activity, attempt, workflowId, ok: false, error: err instanceof Error ? err.message : String(err) });
        throw err;
      }
    },
  };
}

async function main(): Promise<void> {
  const bundle = process.env['FERRY_TEST_WORKFLOW_BUNDLE'];
  const gated = gates();
  const { worker, close } = await connectFerryWorker({
    activityOptions: {
      progressSignalIntervalMs: 1000,
      // guestDowntimeMs for the lab's probed Linux guests (what `ferry worker` wires in too)
      ...(process.env['FERRY_HOME'] ? { guestObserver: labGuestObserver(process.env['FERRY_HOME']) } : {}),
    },
    workerOptions: {
      ...(bundle ? { workflowBundle: { codePath: bundle } } : {}),
      // After a SIGKILL the dead worker's sticky queue holds the workflow's next task until this timeout (SDK
      // default 10 s) hands it to the normal queue: shorter here only so that each fault case is quicker.
      stickyQueueScheduleToStartTimeout: '2s',
      interceptors: { activity: [() => ({ inbound: gateInterceptor(gated) })] },
    },
  });
  send({ type: 'ready' });
  await worker.run();
  await close();
}

main().catch((err: unknown) => {
  console.error('worker-child failed:', err);
  process.exit(1);
});
