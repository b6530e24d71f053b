/**
 * The Temporal connection comes from the standard TEMPORAL_* environment (through @temporalio/envconfig):
 * API keys and mTLS work without Ferry-specific settings, and none of those secrets ever shows up in what
 * Ferry prints or throws.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FerryClient } from '../../client';
import { describeTarget, temporalTarget } from '../../client/config';

const API_KEY = 'ferry-test-api-key-0123456789abcdef';
const CERT = '-----BEGIN CERTIFICATE-----\nZmVycnktdGVzdC1jbGllbnQtY2VydA==\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nZmVycnktdGVzdC1wcml2YXRlLWtleS1zZWNyZXQ=\n-----END PRIVATE KEY-----\n';
const CA = '-----BEGIN CERTIFICATE-----\nZmVycnktdGVzdC1jYQ==\n-----END CERTIFICATE-----\n';
const SECRETS = [API_KEY, 'ZmVycnktdGVzdC1wcml2YXRlLWtleS1zZWNyZXQ=', 'ZmVycnktdGVzdC1jbGllbnQtY2VydA=='];

describe('Temporal connection from TEMPORAL_* (envconfig)', () => {
  const saved = { ...process.env };
  let dir = '';

  beforeEach(() => {
    for (const k of Object.keys(process.env)) if (k.startsWith('TEMPORAL_')) delete process.env[k];
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-tls-'));
    // no profile file of the machine's user may leak in
    process.env['TEMPORAL_CONFIG_FILE'] = path.join(dir, 'absent.toml');
  });
  afterEach(() => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
    fs.rmSync(dir, { recursive: true, force: true });
    vi.restoreAllMocks();
  });

  it('defaults: localhost:7233, namespace default, no TLS, no key', () => {
    const t = temporalTarget();
    expect(t.connectionOptions.address).toBe('localhost:7233');
    expect(t.namespace).toBe('default');
    expect(t.connectionOptions.apiKey).toBeUndefined();
    expect(t.connectionOptions.tls).toBeFalsy();
  });

  it('an API key (TEMPORAL_API_KEY) is used, with TLS on by default, and never appears in the description', () => {
    process.env['TEMPORAL_ADDRESS'] = 'ns1.acct.tmprl.cloud:7233';
    process.env['TEMPORAL_NAMESPACE'] = 'ns1.acct';
    process.env['TEMPORAL_API_KEY'] = API_KEY;
    const t = temporalTarget();
    expect(t.connectionOptions.address).toBe('ns1.acct.tmprl.cloud:7233');
    expect(t.namespace).toBe('ns1.acct');
    expect(t.connectionOptions.apiKey).toBe(API_KEY);
    expect(t.connectionOptions.tls).toBeTruthy();
    const shown = describeTarget(t);
    expect(shown).toBe('ns1.acct.tmprl.cloud:7233 (namespace ns1.acct)');
    for (const s of SECRETS) expect(shown).not.toContain(s);
  });

  it('mTLS from TEMPORAL_TLS_* paths: client certificate pair, server CA and server name', () => {
    const file = (name: string, text: string) => {
      const p = path.join(dir, name);
      fs.writeFileSync(p, text, { mode: 0o600 });
      return p;
    };
    process.env['TEMPORAL_ADDRESS'] = 'temporal.internal:7233';
    process.env['TEMPORAL_TLS_CLIENT_CERT_PATH'] = file('client.pem', CERT);
    process.env['TEMPORAL_TLS_CLIENT_KEY_PATH'] = file('client.key', KEY);
    process.env['TEMPORAL_TLS_SERVER_CA_CERT_PATH'] = file('ca.pem', CA);
    process.env['TEMPORAL_TLS_SERVER_NAME'] = 'temporal.example.org';
    const t = temporalTarget();
    const tls = t.connectionOptions.tls;
    expect(tls && typeof tls === 'object').toBe(true);
    if (!tls || typeof tls !== 'object') return;
    expect(Buffer.from(tls.clientCertPair!.crt).toString()).toBe(CERT);
    expect(Buffer.from(tls.clientCertPair!.key).toString()).toBe(KEY);
    expect(Buffer.from(tls.serverRootCACertificate!).toString()).toBe(CA);
    expect(tls.serverNameOverride).toBe('temporal.example.org');
    for (const s of SECRETS) expect(describeTarget(t)).not.toContain(s);
  });

  it('mTLS from TEMPORAL_TLS_*_DATA (inline PEM) too', () => {
    process.env['TEMPORAL_TLS_CLIENT_CERT_DATA'] = CERT;
    process.env['TEMPORAL_TLS_CLIENT_KEY_DATA'] = KEY;
    const tls = temporalTarget().connectionOptions.tls;
    expect(tls && typeof tls === 'object' && Buffer.from(tls.clientCertPair!.key).toString()).toBe(KEY);
  });

  it('a failed connection with an API key and a client key says where it tried, never the secrets, and logs nothing secret', async () => {
    process.env['TEMPORAL_ADDRESS'] = '127.0.0.1:1'; // nothing listens there
    process.env['TEMPORAL_API_KEY'] = API_KEY;
    process.env['TEMPORAL_TLS_CLIENT_CERT_DATA'] = CERT;
    process.env['TEMPORAL_TLS_CLIENT_KEY_DATA'] = KEY;
    const printed: string[] = [];
    const capture = (...args: unknown[]) => {
      printed.push(args.map(String).join(' '));
      return true;
    };
    vi.spyOn(console, 'log').mockImplementation(capture);
    vi.spyOn(console, 'warn').mockImplementation(capture);
    vi.spyOn(console, 'error').mockImplementation(capture);
    vi.spyOn(process.stdout, 'write').mockImplementation(capture as never);
    vi.spyOn(process.stderr, 'write').mockImplementation(capture as never);
    const err = await FerryClient.connect().then(
      () => null,
      (e: unknown) => e as Error,
    );
    vi.restoreAllMocks();
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(/cannot reach Temporal at 127\.0\.0\.1:1 \(namespace default\)/);
    for (const s of SECRETS) {
      expect(err!.message).not.toContain(s);
      expect(String(err!.stack)).not.toContain(s);
      expect(printed.join('\n')).not.toContain(s);
    }
  }, 30_000);
});
