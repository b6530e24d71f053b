/** `ferry cluster`'s names, versions and configuration files (cluster/config.ts, temporal/). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { activeCluster, writeClusterEndpoint } from '../../client/cluster-target';
import { clusterNames, parseEnvFile, readEnvFile, temporalVersions, workerNames } from '../../cluster/config';

describe('cluster configuration', () => {
  it('names the bridge, the worker machines and their addresses from the prefix and subnet', () => {
    const n = clusterNames({ prefix: 'fcl', subnet: '10.213.100' });
    expect(n).toEqual({ prefix: 'fcl', subnet: '10.213.100', bridge: 'fclcbr0', gateway: '10.213.100.1' });
    expect(workerNames(n, 2)).toEqual({ index: 2, netns: 'fcl-cw2', veth: 'fcl-cw2-v', address: '10.213.100.12', identity: 'ferry-worker@fcl-cw2' });
    expect(workerNames(clusterNames({ prefix: 'abcdef', subnet: '10.0.0' }), 8).veth.length).toBeLessThanOrEqual(15); // IFNAMSIZ
  });

  it('refuses a prefix or subnet it could not use, saying what to write', () => {
    expect(() => clusterNames({ prefix: 'Bad-1', subnet: '10.213.100' })).toThrow(/1–6 characters/);
    expect(() => clusterNames({ prefix: 'fcl', subnet: '10.213.100.0/24' })).toThrow(/first three octets/);
    expect(() => clusterNames({ prefix: 'fcl', subnet: '10.213.300' })).toThrow(/first three octets/);
  });

  it('reads KEY=VALUE files, and the pinned versions and server environment are complete', () => {
    expect(parseEnvFile('# c\n\nA=1\nB=x=y\n')).toEqual({ A: '1', B: 'x=y' });
    expect(() => parseEnvFile('nonsense')).toThrow(/KEY=VALUE/);
    expect(temporalVersions()).toEqual({ server: '1.32.0', ui: '2.58.1' });
    const env = readEnvFile('server.env');
    expect(env.DB).toBe('postgres12'); // persistence and visibility on PostgreSQL
    expect(env.DYNAMIC_CONFIG_FILE_PATH).toMatch(/ferry\.yaml$/);
    expect(env).not.toHaveProperty('POSTGRES_PWD'); // the password never lives in the repository
  });

  it('counts a cluster endpoint only while its server process lives', () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-endpoint-'));
    try {
      const e = { temporalAddress: '10.213.100.1:7233', inventoryUrl: 'postgres://ferry:pw@10.213.100.1:5433/ferry', serverPid: process.pid, serverBinary: process.execPath };
      writeClusterEndpoint(home, e);
      expect(fs.statSync(path.join(home, 'cluster', 'endpoint.json')).mode & 0o777).toBe(0o600);
      expect(activeCluster(home)).toEqual(e);
      writeClusterEndpoint(home, { ...e, serverBinary: '/usr/bin/other' }); // the pid is alive but is not that server
      expect(activeCluster(home)).toBeNull();
      writeClusterEndpoint(home, { ...e, serverPid: 2 ** 22 + 1 }); // no such process
      expect(activeCluster(home)).toBeNull();
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});
