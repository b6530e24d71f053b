/**
 * The cluster's PostgreSQL: a Debian cluster of its own (`pg_createcluster <version> ferry`, data in
 * /var/lib/postgresql/<version>/ferry; `ferry_<prefix>` for a cluster of another prefix), so the machine's `main` cluster (the inventory tests') is never touched.
 * It listens on 127.0.0.1 and on the cluster bridge's gateway address, where the worker "machines" reach it;
 * pg_hba admits the cluster subnet with scram-sha-256 only. Roles `temporal` (Temporal's two databases, created
 * by temporal/setup-schema.sh) and `ferry` (the inventory database `ferry`) share one generated password, kept in
 * `<home>/cluster/postgres-password` (mode 600), never printed, passed to psql through the environment.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../hypervisor/exec';
import { clusterPaths, type ClusterNames } from './config';

/** The Debian cluster's name: `ferry` for the default cluster prefix, `ferry_<prefix>` for others. */
export function pgClusterName(n: ClusterNames): string {
  return n.prefix === 'fcl' ? 'ferry' : `ferry_${n.prefix}`;
}

export interface PgCluster {
  version: string;
  cluster: string;
  port: number;
  online: boolean;
}

/** The newest PostgreSQL Debian installed (scripts/install-deps installs `postgresql`). */
export function pgVersion(): string {
  let versions: string[] = [];
  try {
    versions = fs.readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v));
  } catch {
    // none
  }
  const v = versions.sort((a, b) => Number(a) - Number(b)).pop();
  if (!v) throw new Error("PostgreSQL is not installed: run scripts/install-deps (it installs Debian's postgresql)");
  return v;
}

export async function findPgCluster(version: string, name: string): Promise<PgCluster | null> {
  const { stdout } = await run('pg_lsclusters', ['--no-header']);
  for (const line of stdout.split('\n')) {
    const [v, c, port, status] = line.trim().split(/\s+/);
    if (v === version && c === name) return { version: v, cluster: c, port: Number(port), online: status === 'online' };
  }
  return null;
}

function confDir(c: { version: string; cluster: string }): string {
  return path.join('/etc/postgresql', c.version, c.cluster);
}

/** The cluster's password, generated once. */
export function clusterPassword(home: string): string {
  const file = clusterPaths(home).password;
  try {
    const pw = fs.readFileSync(file, 'utf8').trim();
    if (pw.length >= 16) return pw;
  } catch {
    // first time
  }
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const pw = crypto.randomBytes(18).toString('hex');
  fs.writeFileSync(file, `${pw}\n`, { mode: 0o600 });
  return pw;
}

const ROLES_SQL = `\\getenv pw FERRY_PG_PASSWORD
SELECT 'CREATE ROLE temporal LOGIN CREATEDB' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'temporal') \\gexec
ALTER ROLE temporal LOGIN CREATEDB PASSWORD :'pw';
SELECT 'CREATE ROLE ferry LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ferry') \\gexec
ALTER ROLE ferry LOGIN PASSWORD :'pw';
SELECT 'CREATE DATABASE ferry OWNER ferry' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ferry') \\gexec
`;

/**
 * Creates (first time), configures and starts the cluster, idempotently; restarts it when its listen addresses
 * or pg_hba changed. Returns it online, roles and the inventory database in place.
 */
export async function ensurePostgres(home: string, n: ClusterNames, wantPort: number, log: (l: string) => void): Promise<PgCluster> {
  const version = pgVersion();
  const PG_CLUSTER = pgClusterName(n);
  let c = await findPgCluster(version, PG_CLUSTER);
  if (!c) {
    log(`creating the PostgreSQL ${version} cluster "${PG_CLUSTER}" on port ${wantPort}`);
    await run('pg_createcluster', [version, PG_CLUSTER, '--port', String(wantPort), '--', '--auth-local=peer', '--auth-host=scram-sha-256'], {
      timeoutMs: 120_000,
    });
    c = await findPgCluster(version, PG_CLUSTER);
    if (!c) throw new Error(`pg_createcluster ${version} ${PG_CLUSTER} did not create a cluster`);
  }
  let changed = false;
  const listen = `127.0.0.1,${n.gateway}`;
  const current = (await run('pg_conftool', ['-s', version, PG_CLUSTER, 'show', 'listen_addresses']).catch(() => ({ stdout: '' }))).stdout.trim();
  if (current !== listen) {
    await run('pg_conftool', [version, PG_CLUSTER, 'set', 'listen_addresses', listen]);
    changed = true;
  }
  const hba = path.join(confDir(c), 'pg_hba.conf');
  const rule = `host all all ${n.subnet}.0/24 scram-sha-256`;
  const hbaText = fs.readFileSync(hba, 'utf8');
  if (!hbaText.split('\n').some((l) => l.trim().replace(/\s+/g, ' ') === rule)) {
    fs.appendFileSync(hba, `# ferry cluster: the worker machines\n${rule}\n`);
    changed = true;
  }
  if (!c.online) {
    log(`starting PostgreSQL ${version}/${PG_CLUSTER} on port ${c.port}`);
    await run('pg_ctlcluster', [version, PG_CLUSTER, 'start'], { timeoutMs: 120_000 });
  } else if (changed) {
    log(`restarting PostgreSQL ${version}/${PG_CLUSTER} (listen addresses / pg_hba changed)`);
    await run('pg_ctlcluster', [version, PG_CLUSTER, 'restart'], { timeoutMs: 120_000 });
  }
  await run('pg_isready', ['-q', '-h', n.gateway, '-p', String(c.port), '-t', '60'], { timeoutMs: 70_000 });

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-cluster-sql-'));
  try {
    fs.chmodSync(dir, 0o755);
    const file = path.join(dir, 'roles.sql'); // no secret in it: the password comes from the environment
    fs.writeFileSync(file, ROLES_SQL, { mode: 0o644 });
    await run('runuser', ['-u', 'postgres', '--', 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-p', String(c.port), '-d', 'postgres', '-f', file], {
      env: { FERRY_PG_PASSWORD: clusterPassword(home) },
      cwd: '/',
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { ...c, online: true };
}

export async function stopPostgres(version: string, name: string): Promise<void> {
  const c = await findPgCluster(version, name);
  if (c?.online) await run('pg_ctlcluster', [version, name, 'stop', '-m', 'fast'], { timeoutMs: 120_000 });
}

/** Drops the cluster and its data (`cluster down --purge`). */
export async function dropPostgres(version: string, name: string): Promise<void> {
  if (await findPgCluster(version, name)) await run('pg_dropcluster', ['--stop', version, name], { timeoutMs: 120_000 });
}

/** The inventory's URL (with the password: for the workers' environment and endpoint.json only). */
export function inventoryUrl(home: string, n: ClusterNames, port: number): string {
  return `postgres://ferry:${clusterPassword(home)}@${n.gateway}:${port}/ferry`;
}

/** temporal/setup-schema.sh — the same steps docker-compose.yml's temporal-admin-tools runs. */
export async function setupTemporalSchema(
  home: string,
  port: number,
  tools: { sqlTool: string; schemaDir: string },
  repoRoot: string,
): Promise<void> {
  // Executed directly (it is executable, with a #!/bin/sh line): the script is a file, never a command line.
  await run(path.join(repoRoot, 'temporal', 'setup-schema.sh'), [], {
    env: {
      SQL_TOOL: tools.sqlTool,
      SCHEMA_DIR: tools.schemaDir,
      SQL_HOST: '127.0.0.1',
      SQL_PORT: String(port),
      SQL_USER: 'temporal',
      SQL_PASSWORD: clusterPassword(home),
    },
    timeoutMs: 300_000,
  });
}
