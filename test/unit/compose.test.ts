/** docker-compose.yml is valid for `docker compose` (parsed by the real compose CLI; no engine needed). */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../../hypervisor/exec';
import { readEnvFile, temporalVersions } from '../../cluster/config';

const REPO = path.resolve(__dirname, '..', '..');

async function compose(args: string[]): Promise<string> {
  const local = path.join(REPO, '.tools', 'bin', 'docker-compose');
  const viaDocker = await run('docker', ['compose', 'version'], { timeoutMs: 10_000 }).then(() => true, () => false);
  const { stdout } = viaDocker
    ? await run('docker', ['compose', ...args], { cwd: REPO, timeoutMs: 30_000 })
    : await run(local, args, { cwd: REPO, timeoutMs: 30_000 });
  return stdout;
}

describe('docker-compose.yml', () => {
  it('is valid and wires PostgreSQL, Temporal, its UI and the Ferry worker', async () => {
    expect(fs.existsSync(path.join(REPO, 'Dockerfile'))).toBe(true);
    const config = JSON.parse(await compose(['-f', 'docker-compose.yml', 'config', '--format', 'json'])) as {
      services: Record<
        string,
        { image?: string; build?: unknown; environment?: Record<string, string>; depends_on?: Record<string, { condition?: string }> }
      >;
    };
    const s = config.services;
    expect(Object.keys(s).sort()).toEqual(
      ['ferry-inventory-init', 'ferry-worker', 'grafana', 'postgresql', 'prometheus', 'temporal', 'temporal-admin-tools', 'temporal-create-namespace', 'temporal-ui'].sort(),
    );
    expect(s.temporal?.image).toMatch(/^temporalio\/server:/);
    expect(s['temporal-ui']?.image).toMatch(/^temporalio\/ui:/);
    expect(Object.values(s).some((x) => /auto-setup/.test(x.image ?? ''))).toBe(false);
    expect(s['ferry-worker']?.build).toBeTruthy();
    expect(s['ferry-worker']?.environment?.TEMPORAL_ADDRESS).toBe('temporal:7233');
    expect(Object.keys(s['ferry-worker']?.depends_on ?? {})).toContain('postgresql');
  });

  it("gives the worker a PostgreSQL inventory on the postgresql service, created before the worker starts", async () => {
    const config = JSON.parse(await compose(['-f', 'docker-compose.yml', 'config', '--format', 'json'])) as {
      services: Record<string, { image?: string; environment?: Record<string, string>; depends_on?: Record<string, { condition?: string }> }>;
    };
    const worker = config.services['ferry-worker'];
    const url = new URL(worker?.environment?.FERRY_INVENTORY ?? 'missing:');
    expect(url.protocol).toMatch(/^postgres(ql)?:$/);
    expect(url.hostname).toBe('postgresql');
    expect(config.services[url.hostname]?.image).toMatch(/^postgres:/);
    expect(url.port).toBe('5432');
    expect(url.pathname).toBe('/ferry');
    expect(url.username).toBe('ferry');
    const init = config.services['ferry-inventory-init'];
    expect(init?.image).toMatch(/^postgres:/);
    expect(init?.depends_on?.postgresql?.condition).toBe('service_healthy');
    expect(worker?.depends_on?.['ferry-inventory-init']?.condition).toBe('service_completed_successfully');
    // the init step sets the same password the worker's URL carries
    expect(init?.environment?.FERRY_DB_PASSWORD).toBe(decodeURIComponent(url.password));
  });

  it('provisions Grafana with the Ferry dashboard and a Prometheus that scrapes the worker', async () => {
    const config = JSON.parse(await compose(['-f', 'docker-compose.yml', 'config', '--format', 'json'])) as {
      services: Record<string, { image?: string; environment?: Record<string, string>; volumes?: { source?: string; target?: string }[] }>;
    };
    const s = config.services;
    expect(s['ferry-worker']?.environment?.FERRY_METRICS_ADDRESS).toBe('0.0.0.0:9464');
    const mount = (svc: string, target: string) => (s[svc]?.volumes ?? []).find((v) => v.target === target)?.source ?? '';
    expect(path.relative(REPO, mount('grafana', '/var/lib/grafana/dashboards'))).toBe(path.join('grafana', 'dashboards'));
    expect(path.relative(REPO, mount('grafana', '/etc/grafana/provisioning'))).toBe(path.join('grafana', 'provisioning'));
    expect(fs.readFileSync(path.join(REPO, 'grafana', 'provisioning', 'dashboards', 'ferry.yml'), 'utf8')).toContain('path: /var/lib/grafana/dashboards');
    expect(fs.readFileSync(path.join(REPO, 'grafana', 'provisioning', 'datasources', 'prometheus.yml'), 'utf8')).toContain('uid: ferry-prometheus');
    expect(path.relative(REPO, mount('prometheus', '/etc/prometheus/prometheus.yml'))).toBe(path.join('prometheus', 'prometheus.yml'));
    expect(fs.readFileSync(path.join(REPO, 'prometheus', 'prometheus.yml'), 'utf8')).toContain('ferry-worker:9464');
    expect(s.grafana?.image).toMatch(/^grafana\/grafana:/);
    expect(s.prometheus?.image).toMatch(/^prom\/prometheus:/);
  });

  it('runs what `ferry cluster up` runs: the same versions, server configuration, dynamic config and schema steps', async () => {
    const config = JSON.parse(await compose(['-f', 'docker-compose.yml', 'config', '--format', 'json'])) as {
      services: Record<string, { image?: string; entrypoint?: string[]; environment?: Record<string, string>; volumes?: { source?: string; target?: string }[] }>;
    };
    const s = config.services;
    const v = temporalVersions();
    expect(s.temporal?.image).toBe(`temporalio/server:${v.server}`);
    expect(s['temporal-admin-tools']?.image).toBe(`temporalio/admin-tools:${v.server}`);
    expect(s['temporal-create-namespace']?.image).toBe(`temporalio/admin-tools:${v.server}`);
    expect(s['temporal-ui']?.image).toBe(`temporalio/ui:${v.ui}`);
    // every variable of temporal/server.env reaches the server unchanged (the cluster sets only its own addresses and password)
    for (const [k, value] of Object.entries(readEnvFile('server.env'))) expect(s.temporal?.environment?.[k], k).toBe(value);
    const mount = (svc: string, target: string) => (s[svc]?.volumes ?? []).find((x) => x.target === target)?.source ?? '';
    const dyn = readEnvFile('server.env').DYNAMIC_CONFIG_FILE_PATH ?? '';
    expect(path.relative(REPO, mount('temporal', path.dirname(dyn)))).toBe(path.join('temporal', 'dynamicconfig'));
    expect(fs.existsSync(path.join(REPO, 'temporal', 'dynamicconfig', path.basename(dyn)))).toBe(true);
    expect(path.relative(REPO, mount('temporal-admin-tools', '/etc/ferry/setup-schema.sh'))).toBe(path.join('temporal', 'setup-schema.sh'));
    expect(s['temporal-admin-tools']?.entrypoint).toEqual(['/bin/sh', '/etc/ferry/setup-schema.sh']);
    // the UI server scripts/install-deps builds is the version compose runs
    expect(fs.readFileSync(path.join(REPO, 'temporal', 'ui-server', 'go.mod'), 'utf8')).toContain(`github.com/temporalio/ui-server/v2 v${v.ui}`);
  });
});
