/**
 * `ferry dev up|down|status`: a local Temporal dev server (persistent SQLite file, Ferry's search attributes
 * registered) and one Ferry worker, both in the background, idempotently. State in $FERRY_HOME/dev/.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { ferryHome, taskQueue } from '../client/config';
import { ensureSearchAttributes } from '../worker';
import { waitForTemporal } from '../client/wait';
import { REPO_ROOT } from '../cluster/config';
import { livePid, startDetached, stopPid } from '../hypervisor/processes';

export { livePid } from '../hypervisor/processes';

export { REPO_ROOT } from '../cluster/config';

export interface DevPaths {
  dir: string;
  db: string;
  serverLog: string;
  serverPid: string;
  workerLog: string;
  workerPid: string;
}

export interface DevConfig {
  ip: string;
  port: number;
  uiPort: number;
}

export function devPaths(home = ferryHome()): DevPaths {
  const dir = path.join(home, 'dev');
  return {
    dir,
    db: path.join(dir, 'temporal.db'),
    serverLog: path.join(dir, 'temporal.log'),
    serverPid: path.join(dir, 'temporal.pid'),
    workerLog: path.join(dir, 'worker.log'),
    workerPid: path.join(dir, 'worker.pid'),
  };
}

export function devConfig(): DevConfig {
  const port = Number(process.env.FERRY_DEV_PORT ?? 7233);
  return { ip: '127.0.0.1', port, uiPort: Number(process.env.FERRY_DEV_UI_PORT ?? port + 1000) };
}

/** The Temporal CLI: $FERRY_TEMPORAL_BIN, the one scripts/install-deps put in .tools/, or PATH. */
export function temporalBinary(): string {
  const candidates = [
    process.env.FERRY_TEMPORAL_BIN,
    path.join(REPO_ROOT, '.tools', 'bin', 'temporal'),
    ...(process.env.PATH ?? '').split(':').map((d) => path.join(d, 'temporal')),
  ].filter((p): p is string => typeof p === 'string' && p !== '');
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error('the Temporal CLI is missing: run scripts/install-deps (it installs .tools/bin/temporal) or set FERRY_TEMPORAL_BIN');
  return found;
}


async function waitForWorker(c: Connection, namespace: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await c.workflowService.describeTaskQueue({
      namespace,
      taskQueue: { name: taskQueue() },
      taskQueueType: 1, // workflow task queue
    });
    if ((r.pollers ?? []).length > 0) return;
    await new Promise((r2) => setTimeout(r2, 250));
  }
  throw new Error(`no worker polls task queue "${taskQueue()}" after ${timeoutMs / 1000} s`);
}

export interface DevStatus {
  address: string;
  webUi: string;
  serverPid: number | null;
  workerPid: number | null;
  database: string;
  logs: { server: string; worker: string };
}

export function devStatus(home = ferryHome()): DevStatus {
  const p = devPaths(home);
  const cfg = devConfig();
  return {
    address: `${cfg.ip}:${cfg.port}`,
    webUi: `http://localhost:${cfg.uiPort}`,
    serverPid: livePid(p.serverPid, 'start-dev'),
    workerPid: livePid(p.workerPid, 'worker'),
    database: p.db,
    logs: { server: p.serverLog, worker: p.workerLog },
  };
}

export async function devUp(log: (line: string) => void, home = ferryHome()): Promise<DevStatus> {
  const p = devPaths(home);
  const cfg = devConfig();
  fs.mkdirSync(p.dir, { recursive: true });
  const address = `${cfg.ip}:${cfg.port}`;

  if (livePid(p.serverPid, 'start-dev') === null) {
    const args = [
      'server', 'start-dev',
      '--db-filename', p.db,
      '--ip', cfg.ip,
      '--port', String(cfg.port),
      '--ui-port', String(cfg.uiPort),
      '--log-level', 'warn',
    ];
    const pid = startDetached(temporalBinary(), args, p.serverLog, p.serverPid);
    log(`started the Temporal dev server (pid ${pid}, database ${p.db})`);
  }
  const connection = await waitForTemporal(address, 60_000, 'the Temporal dev server', p.serverLog);
  try {
    const added = await ensureSearchAttributes(connection, 'default');
    if (added.length > 0) log(`registered search attributes ${added.join(', ')}`);

    if (livePid(p.workerPid, 'worker') === null) {
      const bin = path.join(REPO_ROOT, 'bin', 'ferry.js');
      const env = { ...process.env, TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: 'default', FERRY_HOME: home };
      const pid = startDetached(process.execPath, [bin, 'worker'], p.workerLog, p.workerPid, env);
      log(`started a Ferry worker (pid ${pid}, log ${p.workerLog})`);
    }
    await waitForWorker(connection, 'default', 60_000);
  } finally {
    await connection.close();
  }
  return devStatus(home);
}

export async function devDown(log: (line: string) => void, home = ferryHome()): Promise<void> {
  const p = devPaths(home);
  const worker = livePid(p.workerPid, 'worker');
  if (worker !== null) {
    await stopPid(worker, 15_000);
    log(`stopped the worker (pid ${worker})`);
  }
  const server = livePid(p.serverPid, 'start-dev');
  if (server !== null) {
    await stopPid(server, 15_000);
    log(`stopped the Temporal dev server (pid ${server}); its database stays in ${p.db}`);
  }
  for (const f of [p.workerPid, p.serverPid]) fs.rmSync(f, { force: true });
}

