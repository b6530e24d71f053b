/**
 * Transport security (issue 12): how a host's URI is judged (tls, ssh, local, plain), the URI a peer gets for
 * p2p (Ferry's own file parameters dropped), the one stream-encryption rule, the input combination refused
 * before anything is created, libvirt's TLS failures (stderr as libvirt 9.0 printed it against the TLS lab)
 * and `hosts add`'s credential checks.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkCredentialFiles, hostUri } from '../../cli/host-credentials';
import { CliExit } from '../../cli/output';
import { peerUri, uriTransport, withUriParams } from '../../common/libvirt-uri';
import { streamEncryption } from '../../common/security';
import { InputError, validateMigrationInput } from '../../common/validation';
import { libvirtErrorFromStderr } from '../../hypervisor/errors';

const TLS = (h: string) => ({ name: h, uri: `qemu+tls://${h}/system?pkipath=/etc/pki/ferry` });
const TCP = (h: string) => ({ name: h, uri: `qemu+tcp://${h}/system` });
const SSH = (h: string) => ({ name: h, uri: `qemu+ssh://root@${h}/system?keyfile=/root/.ssh/ferry` });

describe('URI transports', () => {
  it.each([
    ['qemu+tls://h1/system', 'tls'],
    ['qemu+ssh://root@h1/system', 'ssh'],
    ['qemu+libssh2://root@h1/system', 'ssh'],
    ['qemu:///system', 'local'],
    ['qemu+unix:///system', 'local'],
    ['qemu+tcp://h1/system', 'plain'],
  ])('%s is %s', (uri, t) => {
    expect(uriTransport(uri)).toBe(t);
  });

  it("a peer gets the URI without the parameters naming Ferry's files", () => {
    expect(peerUri('qemu+tls://10.0.0.2/system?pkipath=/srv/ferry/pki')).toBe('qemu+tls://10.0.0.2/system');
    expect(peerUri('qemu+ssh://ferry@h2/system?keyfile=/k&known_hosts=/kh&no_verify=0')).toBe('qemu+ssh://ferry@h2/system?no_verify=0');
    expect(peerUri('qemu+tcp://10.0.0.2/system')).toBe('qemu+tcp://10.0.0.2/system');
  });

  it('appends parameters', () => {
    expect(withUriParams('qemu+tls://h/system', { pkipath: '/p', keyfile: undefined })).toBe('qemu+tls://h/system?pkipath=/p');
    expect(withUriParams('qemu+ssh://h/system?no_verify=0', { keyfile: '/k' })).toBe('qemu+ssh://h/system?no_verify=0&keyfile=/k');
  });
});

describe('streamEncryption (one rule)', () => {
  const auto = { encryptStream: null, requireSecure: false };
  it('defaults to encrypted between two TLS hosts, not otherwise', () => {
    expect(streamEncryption(auto, 'live', TLS('a'), TLS('b'))).toEqual({ encrypt: true, refusal: null, vmWide: false });
    expect(streamEncryption(auto, 'live', TLS('a'), SSH('b')).encrypt).toBe(false);
    expect(streamEncryption(auto, 'live', TCP('a'), TCP('b'))).toEqual({ encrypt: false, refusal: null, vmWide: false });
  });

  it('an explicit request is honoured over tls and ssh, and never silently dropped', () => {
    expect(streamEncryption({ ...auto, encryptStream: true }, 'live', SSH('a'), TLS('b')).encrypt).toBe(true);
    expect(streamEncryption({ ...auto, encryptStream: false }, 'live', TLS('a'), TLS('b')).encrypt).toBe(false);
    const target = streamEncryption({ ...auto, encryptStream: true }, 'live', TLS('a'), TCP('b'));
    expect(target).toMatchObject({ encrypt: false, vmWide: false });
    expect(target.refusal).toMatch(/b is reached over plain qemu\+tcp.*migrate_tls_x509_cert_dir.*or migrate without encryptStream/);
    const source = streamEncryption({ ...auto, encryptStream: true }, 'live', TCP('a'), TLS('b'));
    expect(source.vmWide).toBe(true);
  });

  it("a cold move is encrypted by the worker's connections: plain TCP cannot be", () => {
    expect(streamEncryption({ ...auto, encryptStream: true }, 'cold', SSH('a'), TLS('b')).encrypt).toBe(true);
    expect(streamEncryption({ ...auto, encryptStream: true }, 'cold', TLS('a'), TCP('b')).refusal).toMatch(/stopped VM's disks travel over Ferry's libvirt connections/);
  });

  it('requireSecure refuses plain hosts and encrypts by default', () => {
    const strict = { encryptStream: null, requireSecure: true };
    expect(streamEncryption(strict, 'live', SSH('a'), TLS('b')).encrypt).toBe(true);
    expect(streamEncryption(strict, 'live', TLS('a'), TCP('b')).refusal).toMatch(/^requireSecure: b is reached over plain qemu\+tcp/);
    expect(streamEncryption(strict, 'live', TCP('a'), TLS('b')).vmWide).toBe(true);
  });
});

describe('input validation', () => {
  const ok = { sourceHost: '10.213.77.11', vmName: 'vm1', vmUuid: '6f1c0b5e-8d2a-4c11-9a5e-2b7d3c4e5f60' };
  it('takes encryptStream and requireSecure', () => {
    expect(validateMigrationInput({ ...ok, encryptStream: true })).toMatchObject({ encryptStream: true, requireSecure: false });
    expect(validateMigrationInput({ ...ok, requireSecure: true })).toMatchObject({ encryptStream: null, requireSecure: true });
  });

  it('refuses requireSecure with encryptStream false, and says what to drop', () => {
    let err: unknown;
    try {
      validateMigrationInput({ ...ok, requireSecure: true, encryptStream: false });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).problems).toEqual([
      'encryptStream: requireSecure demands an encrypted migration stream: drop encryptStream: false (--no-encrypt-stream) or requireSecure (--require-secure)',
    ]);
  });

  it('refuses a non-boolean encryptStream', () => {
    expect(() => validateMigrationInput({ ...ok, encryptStream: 'yes' })).toThrow(/encryptStream must be true or false/);
  });
});

describe("libvirt's TLS failures", () => {
  const ctx = { what: 'hostCapacity', uri: 'qemu+tls://10.213.89.11/system?pkipath=/tmp/h/lab/pki/ferry' };
  it.each([
    // the host refused a client certificate of another CA (server log: "Failed to verify peer's certificate")
    ['error: failed to connect to the hypervisor\nerror: Unable to read TLS confirmation: Input/output error', /refused the TLS client certificate/],
    ["error: failed to connect to the hypervisor\nerror: Our own certificate /x/clientcert.pem failed validation against /x/cacert.pem: The certificate hasn't got a known issuer.", /not issued by the CA in the same directory's cacert.pem/],
    ["error: failed to connect to the hypervisor\nerror: Cannot read CA certificate '/etc/pki/CA/cacert.pem': No such file or directory", /certificate or key file is missing/],
    ["error: internal error: unable to execute QEMU command 'object-add': Unable to access credentials /etc/pki/qemu/ca-cert.pem: No such file or directory", /migrate_tls_x509_cert_dir.*or migrate without encryptStream/],
  ])('%s', (stderr, advice) => {
    const e = libvirtErrorFromStderr(stderr, false, ctx);
    expect(e.kind).toBe('tls');
    expect(e.retryable).toBe(false);
    expect(e.message).toMatch(advice);
    expect(e.message).toContain('qemu+tls://10.213.89.11/system');
    expect(e.message).not.toContain('?pkipath=');
  });

  it('plain TCP to a TLS-only host is a refused connection, and the message says which listener', () => {
    const e = libvirtErrorFromStderr("error: failed to connect to the hypervisor\nerror: unable to connect to server at '10.213.89.11:16509': Connection refused", false, { what: 'hostCapacity', uri: 'qemu+tcp://10.213.89.11/system' });
    expect(e.kind).toBe('connection');
    expect(e.message).toContain('listening on TCP?');
  });
});

describe('hosts add credentials', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-creds-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const pki = path.join(dir, 'pki');
  fs.mkdirSync(pki);
  for (const f of ['cacert.pem', 'clientcert.pem']) fs.writeFileSync(path.join(pki, f), 'x');
  fs.writeFileSync(path.join(pki, 'clientkey.pem'), 'k', { mode: 0o600 });
  const key = path.join(dir, 'id_ed25519');
  fs.writeFileSync(key, 'k', { mode: 0o600 });

  const refused = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(CliExit);
      return (e as Error).message;
    }
    throw new Error('expected a refusal');
  };

  it('builds qemu+tls with --tls-dir and qemu+ssh with --ssh-key', () => {
    expect(hostUri({ address: '10.0.0.5', tlsDir: pki })).toBe(`qemu+tls://10.0.0.5/system?pkipath=${pki}`);
    expect(hostUri({ address: 'h5', uri: 'qemu+ssh://ferry@h5/system', sshKey: key })).toBe(`qemu+ssh://ferry@h5/system?keyfile=${key}`);
    expect(hostUri({ address: '10.0.0.5' })).toBe('qemu+tcp://10.0.0.5/system');
  });

  it('refuses missing files, keys readable by others, mismatched schemes and plain TCP under --require-secure', () => {
    expect(refused(() => hostUri({ address: 'h', tlsDir: dir }))).toMatch(/cacert.pem, clientcert.pem, clientkey.pem missing/);
    fs.chmodSync(path.join(pki, 'clientkey.pem'), 0o644);
    expect(refused(() => hostUri({ address: 'h', tlsDir: pki }))).toMatch(/readable by others \(mode 644\): chmod 600/);
    fs.chmodSync(path.join(pki, 'clientkey.pem'), 0o600);
    expect(refused(() => hostUri({ address: 'h', uri: 'qemu+tcp://h/system', tlsDir: pki }))).toMatch(/--tls-dir needs a qemu\+tls:\/\/ URI/);
    expect(refused(() => hostUri({ address: 'h', tlsDir: 'relative/pki' }))).toMatch(/absolute path/);
    expect(refused(() => hostUri({ address: 'h', requireSecure: true }))).toMatch(/--require-secure: qemu\+tcp:\/\/h\/system is plain qemu\+tcp/);
    expect(refused(() => checkCredentialFiles(`qemu+ssh://h/system?keyfile=${dir}/nope`))).toMatch(/does not exist/);
  });

  it('never prints a key file\'s contents', () => {
    fs.writeFileSync(path.join(pki, 'clientkey.pem'), '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n');
    fs.chmodSync(path.join(pki, 'clientkey.pem'), 0o640);
    const msg = refused(() => hostUri({ address: 'h', tlsDir: pki }));
    expect(msg).not.toContain('PRIVATE KEY');
    expect(msg).not.toContain('MIGHAgEA');
  });
});
