import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  LibvirtError,
  type LibvirtErrorKind,
  classifyVirshError,
  libvirtErrorFromCommand,
  libvirtErrorFromStderr,
  redactUri,
  virshErrorDetail,
} from '../../hypervisor/errors';
import { CommandError } from '../../hypervisor/exec';

interface ErrorFixture {
  kind: LibvirtErrorKind;
  command: string;
  stderr: string;
}

/** Real stderr texts from virsh 9.0 / libvirtd 9.0 (Debian 12), provoked on purpose; see `command`. */
const fixtures = JSON.parse(
  readFileSync(join(__dirname, '../fixtures/virsh/errors.json'), 'utf8'),
) as Record<string, ErrorFixture>;

describe('classifyVirshError on real virsh messages', () => {
  for (const [name, f] of Object.entries(fixtures)) {
    it(`${name} (${f.command}) → ${f.kind}`, () => {
      expect(classifyVirshError(f.stderr, false)).toBe(f.kind);
    });
  }

  it('covers every kind the brief names at least once with real text', () => {
    const kinds = new Set(Object.values(fixtures).map((f) => f.kind));
    for (const k of ['connection', 'busy', 'no-space', 'not-found', 'invalid', 'exists', 'failed'] as const) {
      expect(kinds.has(k), k).toBe(true);
    }
  });
});

describe('classifyVirshError rules', () => {
  it('our own time limit wins over any text', () => {
    expect(classifyVirshError('', true)).toBe('timeout');
    expect(classifyVirshError('error: Domain not found', true)).toBe('timeout');
  });

  it('unrecognised text is unknown (retryable)', () => {
    expect(classifyVirshError('error: internal error: something new\n', false)).toBe('unknown');
    expect(classifyVirshError('', false)).toBe('unknown');
  });

  // Not provoked here: texts built from libvirt 9's message formats (virnetsocket.c, remote driver, qemu migration).
  it.each<[string, LibvirtErrorKind]>([
    ["error: failed to connect to the hypervisor\nerror: unable to connect to server at '10.0.0.2:16509': No route to host\n", 'connection'],
    ['error: Cannot write data: Broken pipe\n', 'connection'],
    ['error: internal error: connection closed due to keepalive timeout\n', 'connection'],
    [
      "error: operation failed: Failed to connect to remote libvirt URI qemu+tcp://10.0.0.3/system: unable to connect to server at '10.0.0.3:16509': Connection refused\n",
      'connection',
    ],
    ["error: Domain not found: no domain with matching uuid '6f0e1c52-9a1d-4c3e-8a55-0a0a0a0a0a01'\n", 'not-found'],
    ['error: operation aborted: migration out job: canceled by client\n', 'aborted'],
    ['error: operation failed: migration out job: unexpectedly failed\n', 'failed'],
    ['error: operation failed: job \'migration out\' failed: No space left on device\n', 'no-space'],
    ["error: Requested operation is not valid: pool 'p' has asynchronous jobs running.\n", 'busy'],
  ])('%s → %s', (stderr, kind) => {
    expect(classifyVirshError(stderr, false)).toBe(kind);
  });
});

describe('messages', () => {
  it('says which host is unreachable and what to check', () => {
    const f = fixtures['connection-refused'];
    if (!f) throw new Error('fixture missing');
    const e = libvirtErrorFromStderr(f.stderr, false, { uri: 'qemu+tcp://10.0.0.2/system', what: 'getDomain x' });
    expect(e.kind).toBe('connection');
    expect(e.retryable).toBe(true);
    expect(e.message).toContain('host qemu+tcp://10.0.0.2/system unreachable (connection refused)');
    expect(e.message).toContain('is libvirtd running and listening on TCP?');
  });

  it('explains a p2p migration whose source cannot reach the target', () => {
    const e = libvirtErrorFromStderr(
      "error: operation failed: Failed to connect to remote libvirt URI qemu+tcp://10.0.0.3/system: unable to connect to server at '10.0.0.3:16509': Connection refused\n",
      false,
      { uri: 'qemu+tcp://10.0.0.2/system', what: 'migrate x' },
    );
    expect(e.kind).toBe('connection');
    expect(e.message).toContain('the source daemon could not reach the target (connection refused)');
  });

  it('keeps the libvirt detail lines without the error: prefix', () => {
    expect(virshErrorDetail(fixtures['pool-source-conflict']?.stderr ?? '')).toBe(
      "Failed to define pool hvp2: operation failed: Storage source conflict with pool: 'hvp1'",
    );
    expect(virshErrorDetail(fixtures['connection-refused']?.stderr ?? '')).toBe(
      "unable to connect to server at '127.0.0.1:16598': Connection refused",
    );
  });

  it('turns a timed-out CommandError into a timeout LibvirtError', () => {
    const ce = new CommandError('virsh timed out after 2000 ms', 'virsh', ['-c', 'qemu+tcp://h/system', 'hostname'], '', '', null, true, false);
    const e = libvirtErrorFromCommand(ce, { uri: 'qemu+tcp://h/system', what: 'hostCapacity', timeoutMs: 2000 });
    expect(e).toBeInstanceOf(LibvirtError);
    expect(e.kind).toBe('timeout');
    expect(e.retryable).toBe(true);
    expect(e.message).toContain('timed out after 2000 ms');
  });

  it('an aborted client (signal) is kind aborted and points at abortJob', () => {
    const ce = new CommandError('virsh aborted', 'virsh', ['migrate'], '', '', null, false, true);
    const e = libvirtErrorFromCommand(ce, { uri: 'qemu+tcp://h/system', what: 'migrate' });
    expect(e.kind).toBe('aborted');
    expect(e.message).toContain('abortJob');
  });

  it('a missing virsh binary is a final failure', () => {
    const ce = new CommandError('virsh could not start (ENOENT): spawn virsh ENOENT', 'virsh', [], '', '', null, false, false);
    const e = libvirtErrorFromCommand(ce, { uri: 'qemu+tcp://h/system', what: 'x' });
    expect(e.kind).toBe('failed');
  });

  it('redacts credentials from URIs', () => {
    expect(redactUri('qemu+ssh://root:secret@host/system?keyfile=/k')).toBe('qemu+ssh://host/system');
    expect(redactUri('qemu+tcp://10.0.0.2/system')).toBe('qemu+tcp://10.0.0.2/system');
    const e = libvirtErrorFromStderr('error: x', false, { uri: 'qemu+ssh://u:pw@h/system', what: 'w' }, ['-c', 'qemu+ssh://u:pw@h/system']);
    expect(e.message).not.toContain('pw');
    expect(e.args.join(' ')).not.toContain('pw');
  });
});
