/**
 * Stream encryption and the transport policy in the workflow (issue 12), real Temporal + activities + SQLite
 * inventory over the hypervisor double: h1, h2 registered with qemu+tls:// URIs, h3 with plain qemu+tcp. What
 * reaches the hypervisor's migrate (`encryptStream` = virsh --tls), what the result and the progress query say,
 * and the refusals — before anything is created on any host.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationRejectedError, type FerryClient } from '../../client';
import { FailureType } from '../../common/failures';
import type { MigrateOptions } from '../../hypervisor/port';
import { InputError } from '../../common/validation';
import type { MemoryHypervisor } from '../support/memory-hypervisor';
import { eventually } from '../support/temporal';
import { migrationOf, ROOT, startWorkflowWorld, type WorkflowWorld } from '../support/workflow-env';

const tlsUri = (host: string) => `qemu+tls://${host}/system?pkipath=/etc/pki/ferry`;
const PLAIN = 'qemu+tcp://h3/system';

let world: WorkflowWorld;
let hv: MemoryHypervisor;
let ferry: FerryClient;

beforeAll(async () => {
  world = await startWorkflowWorld({ hosts: 2, taskQueue: 'ferry-wf-transport', uuidPrefix: '00000012', uriOf: tlsUri });
  ({ hv, ferry } = world);
  hv.addHost(PLAIN, 'h3');
  await world.inventory.addHost({ name: 'h3', address: '10.0.0.3', uri: PLAIN, storageRoot: ROOT, memoryMiB: 16384, vcpus: 8, storageFreeBytes: 50 * 2 ** 30 });
  hv.migrationMs = 300;
}, 120_000);

afterAll(async () => {
  await world?.stop();
}, 120_000);

const migrateOpts = (uuid: string): MigrateOptions[] =>
  hv.callsOf('migrate').filter((c) => c.args[0] === uuid).map((c) => c.args[2] as MigrateOptions);
const creates = () => hv.callsOf('createStorageDirectory').length + hv.callsOf('recreateVolume').length + hv.callsOf('definePool').length;

describe('stream encryption (workflow, hypervisor double)', () => {
  it('between two qemu+tls hosts the stream is encrypted by default: --tls, streamEncrypted in progress and result', async () => {
    const vm = await world.newVm('h1');
    const handle = await ferry.startMigration(migrationOf(vm, { targetHost: 'h2' }));
    const during = await eventually(async () => {
      const p = await handle.progress();
      return p.phase === 'migrating' ? p : null;
    }, 30_000, 20);
    expect(during.streamEncrypted).toBe(true);
    const r = await handle.outcome();
    expect(r).toMatchObject({ status: 'migrated', target: 'h2', streamEncrypted: true });
    expect(migrateOpts(vm.uuid)).toEqual([expect.objectContaining({ encryptStream: true })]);
  });

  it('encryptStream false is honoured: no --tls, streamEncrypted false', async () => {
    const vm = await world.newVm('h1');
    const r = await ferry.migrate(migrationOf(vm, { targetHost: 'h2', encryptStream: false }));
    expect(r).toMatchObject({ status: 'migrated', streamEncrypted: false });
    expect(migrateOpts(vm.uuid)[0]?.encryptStream).toBeUndefined();
  });

  it('to a plain qemu+tcp host: not encrypted by default; encryptStream true is refused before anything is created', async () => {
    const vm = await world.newVm('h1');
    const before = creates();
    const err = await ferry.migrate(migrationOf(vm, { targetHost: 'h3', encryptStream: true })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MigrationRejectedError);
    expect((err as MigrationRejectedError).type).toBe(FailureType.PreflightFailed);
    expect((err as Error).message).toMatch(/h3 is reached over plain qemu\+tcp, so it has no TLS set up .* or migrate without encryptStream/);
    expect(creates()).toBe(before);
    expect(migrateOpts(vm.uuid)).toEqual([]);
    expect(await world.inventory.getVm(vm.uuid)).toMatchObject({ host: 'h1', state: 'running' });
    expect(await world.inventory.getClaim(vm.uuid)).toBeNull();

    const r = await ferry.migrate(migrationOf(vm, { targetHost: 'h3' }));
    expect(r).toMatchObject({ status: 'migrated', target: 'h3', streamEncrypted: false });
  });

  it('requireSecure: a plain target is refused (named check "transport"); another target is chosen when free', async () => {
    const vm = await world.newVm('h1');
    const before = creates();
    const err = await ferry.migrate(migrationOf(vm, { targetHost: 'h3', requireSecure: true })).catch((e: unknown) => e);
    expect((err as MigrationRejectedError).type).toBe(FailureType.PreflightFailed);
    expect((err as Error).message).toMatch(/requireSecure: h3 is reached over plain qemu\+tcp/);
    expect(creates()).toBe(before);
    const r = await ferry.migrate(migrationOf(vm, { requireSecure: true }));
    expect(r).toMatchObject({ status: 'migrated', target: 'h2', streamEncrypted: true });
  });

  it('requireSecure with encryptStream false is bad input: refused by the client and by the workflow itself', async () => {
    const vm = await world.newVm('h1');
    const before = creates();
    await expect(ferry.startMigration(migrationOf(vm, { requireSecure: true, encryptStream: false }))).rejects.toBeInstanceOf(InputError);
    // started directly (as the Web UI would): the workflow's own validation refuses it, nothing touched
    const handle = await world.env.client.workflow.start('liveMigration', {
      taskQueue: world.taskQueue,
      workflowId: `transport-bad-${vm.uuid}`,
      args: [migrationOf(vm, { requireSecure: true, encryptStream: false })],
    });
    const failure = await handle.result().catch((e: unknown) => e);
    expect(String((failure as Error & { cause?: Error }).cause?.message)).toMatch(/requireSecure demands an encrypted migration stream/);
    expect(creates()).toBe(before);
    expect(hv.callsOf('getDomain').filter((c) => JSON.stringify(c.args).includes(vm.uuid)).length).toBe(0);
  });
});
