/**
 * Persistent virsh sessions (hypervisor/virsh-session.ts): one process serves calls in a row, calls to one
 * host run side by side on up to 4, a batch's output is split per command as in one-shot mode, and failures
 * look the same as one-shot failures (time limit, a client that dies, an unreachable daemon). The protocol is
 * exercised against a stand-in (test/support/fake-virsh.cjs); the real virsh and libvirtd are compared with
 * one-shot mode on the lab (test/lab/virsh-session.lab.test.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtError } from '../../hypervisor/errors';
import { VirshHypervisor } from '../../hypervisor/virsh';
import { buildSessionScript, splitBatchOutput } from '../../hypervisor/virsh-batch';
import { VirshSessionPool } from '../../hypervisor/virsh-session';

const FAKE = path.resolve(__dirname, '..', 'support', 'fake-virsh.cjs');
const URI = 'qemu+tcp://10.0.0.1/system';
const hasVirsh = (process.env.PATH ?? '').split(':').some((d) => d && fs.existsSync(`${d}/virsh`));

async function failure(p: Promise<unknown>): Promise<LibvirtError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof LibvirtError) return e;
    throw e;
  }
  throw new Error('expected a LibvirtError');
}

/** A batch through the pool, split per command as VirshHypervisor does. */
async function batch(pool: VirshSessionPool, commands: string[][], timeoutMs = 5000) {
  const nonce = Math.random().toString(16).slice(2);
  const script = buildSessionScript(commands, nonce);
  const r = await pool.run(URI, script, `@@ferry-${nonce}-${commands.length - 1}@@`, timeoutMs, () => false);
  return splitBatchOutput(r.stdout, r.stderr, nonce, commands.length);
}

describe('virsh sessions', () => {
  const pools: VirshSessionPool[] = [];
  const hvs: VirshHypervisor[] = [];
  let pids = '';
  beforeAll(() => {
    fs.chmodSync(FAKE, 0o755);
  });
  afterEach(() => {
    for (const p of pools.splice(0)) p.close();
    for (const h of hvs.splice(0)) h.close();
  });
  const fakePool = () => {
    pids = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-fake-virsh-')), 'pids');
    process.env.FAKE_VIRSH_PIDS = pids;
    const p = new VirshSessionPool({ virsh: FAKE });
    pools.push(p);
    return p;
  };
  const started = () => (fs.existsSync(pids) ? fs.readFileSync(pids, 'utf8').trim().split('\n').length : 0);

  it('splits a batch per command, with the echoed prompt and line cut off', async () => {
    const pool = fakePool();
    const steps = await batch(pool, [['domstate', '--domain=a'], ['fail'], ['dumpxml', 'x']]);
    expect(steps).toEqual([
      { stdout: "ok domstate --domain=a\n", stderr: '' },
      { stdout: '', stderr: "error: failed to get domain 'x'\n" },
      { stdout: 'ok dumpxml x\n', stderr: '' },
    ]);
  });

  it('reuses one process for calls in a row and runs up to 4 side by side', async () => {
    const pool = fakePool();
    for (let i = 0; i < 5; i++) expect((await batch(pool, [['uri']]))?.[0]?.stdout).toBe('ok uri\n');
    expect(started()).toBe(1);
    expect(pool.size).toBe(1);
    const many = await Promise.all(Array.from({ length: 10 }, (_, i) => batch(pool, [['n', String(i)]])));
    expect(many.map((s) => s?.[0]?.stdout)).toEqual(Array.from({ length: 10 }, (_, i) => `ok n ${i}\n`));
    expect(pool.size).toBe(4);
    expect(started()).toBe(4);
    pool.close();
    expect(pool.size).toBe(0);
  });

  it('a batch over its time limit fails as a timeout and its session is not reused', async () => {
    const pool = fakePool();
    await expect(batch(pool, [['sleep']], 200)).rejects.toMatchObject({ timedOut: true });
    expect(pool.size).toBe(0);
    expect((await batch(pool, [['uri']]))?.[0]?.stdout).toBe('ok uri\n');
    expect(started()).toBe(2);
  });

  it('a session that reported a broken connection is not reused', async () => {
    const pool = fakePool();
    const nonce = 'n1';
    await pool.run(URI, buildSessionScript([['uri']], nonce), `@@ferry-${nonce}-0@@`, 5000, () => true);
    expect(pool.size).toBe(0);
  });

  it('through VirshHypervisor: a time limit, a client that dies, and an unreachable daemon fail as in one-shot mode', async () => {
    const hv = (o: ConstructorParameters<typeof VirshHypervisor>[0]) => {
      const h = new VirshHypervisor(o);
      hvs.push(h);
      return h;
    };
    const uuid = '6695eb01-f6a4-8304-79aa-97f2502e193f';
    process.env.FAKE_VIRSH_HANG = '1';
    try {
      const slow = await failure(hv({ sessions: true, virshPath: FAKE, timeoutMs: 300 }).getDomain(URI, uuid));
      expect(slow.kind).toBe('timeout');
    } finally {
      delete process.env.FAKE_VIRSH_HANG;
    }
    const dead = await failure(hv({ sessions: true, virshPath: '/bin/false' }).getDomain(URI, uuid));
    const deadOneShot = await failure(hv({ sessions: false, virshPath: '/bin/false' }).getDomain(URI, uuid));
    expect(dead.kind).toBe(deadOneShot.kind);
    if (hasVirsh) {
      const down = 'qemu+tcp://127.0.0.1:1/system';
      const a = await failure(hv({ sessions: true }).getDomain(down, uuid));
      const b = await failure(hv({ sessions: false }).getDomain(down, uuid));
      expect([a.kind, a.message]).toEqual(['connection', b.message]);
      const c = await failure(hv({ sessions: true }).stopPool(down, 'p'));
      const d = await failure(hv({ sessions: false }).stopPool(down, 'p'));
      expect([c.kind, c.message]).toEqual(['connection', d.message]);
    }
  });
});
