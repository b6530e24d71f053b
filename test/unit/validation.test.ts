import { describe, expect, it } from 'vitest';
import {
  defaultMigrationTimeoutMs,
  InputError,
  validateMigrationInput,
  DEFAULT_CREATE_ATTEMPTS,
} from '../../common/validation';
import { parseDuration, formatDuration } from '../../common/durations';
import { isStrictlyInside, normalizeAbsolute } from '../../common/names';

const ok = { sourceHost: '10.213.77.11', vmName: 'vm1', vmUuid: '6F1C0B5E-8D2A-4C11-9A5E-2B7D3C4E5F60' };

function problems(input: unknown): string[] {
  try {
    validateMigrationInput(input);
  } catch (err) {
    expect(err).toBeInstanceOf(InputError);
    return (err as InputError).problems;
  }
  throw new Error('expected the input to be rejected');
}

describe('validateMigrationInput', () => {
  it('normalises a minimal request with defaults', () => {
    expect(validateMigrationInput(ok)).toEqual({
      sourceHost: '10.213.77.11',
      vmName: 'vm1',
      vmUuid: '6f1c0b5e-8d2a-4c11-9a5e-2b7d3c4e5f60',
      targetHost: null,
      createAttempts: DEFAULT_CREATE_ATTEMPTS,
      timeoutMs: null,
      bandwidthMiBps: null,
      encryptStream: null,
      requireSecure: false,
      keepSourceStorage: false,
      createRetryIntervalMs: 1000,
      timeoutPerGiBMs: 150_000,
      timeoutFloorMs: 120_000,
      limits: { maxOutboundPerHost: 2, maxInboundPerHost: 1, maxInFlight: 5 },
      queueTimeoutMs: 1_800_000,
      convergence: { autoConverge: false, postCopy: false, syncDiskWrites: false, maxDowntimeMs: null, ramp: null, progressTimeoutMs: 150_000, onDeadline: 'abort' },
    });
  });

  it('takes every option', () => {
    const r = validateMigrationInput({
      ...ok,
      targetHost: 'ferry-h2',
      createAttempts: 5,
      timeout: '1h30m',
      bandwidthMiBps: 100,
      options: { keepSourceStorage: true, createRetryInterval: '250ms', timeoutPerGiB: '800s', timeoutFloor: '5m' },
    });
    expect(r).toMatchObject({ targetHost: 'ferry-h2', createAttempts: 5, timeoutMs: 5_400_000, bandwidthMiBps: 100 });
    expect(r).toMatchObject({ keepSourceStorage: true, createRetryIntervalMs: 250, timeoutPerGiBMs: 800_000, timeoutFloorMs: 300_000 });
  });

  it.each([
    ['not an object', 'vm1', /one JSON object/],
    ['an array', [ok], /one JSON object/],
    ['null', null, /one JSON object/],
    ['missing uuid', { sourceHost: 'h', vmName: 'vm1' }, /vmUuid is required/],
    ['missing name', { sourceHost: 'h', vmUuid: ok.vmUuid }, /vmName is required/],
    ['missing source', { vmName: 'vm1', vmUuid: ok.vmUuid }, /sourceHost is required/],
    ['malformed uuid', { ...ok, vmUuid: '1234' }, /vmUuid must be a UUID/],
    ['uuid with braces', { ...ok, vmUuid: `{${ok.vmUuid}}` }, /vmUuid must be a UUID/],
    ['name with /', { ...ok, vmName: 'a/b' }, /vmName must be/],
    ['name with ..', { ...ok, vmName: 'a..b' }, /vmName must be/],
    ['name ..', { ...ok, vmName: '..' }, /vmName must be/],
    ['name with space', { ...ok, vmName: 'my vm' }, /vmName must be/],
    ['name with quote', { ...ok, vmName: "vm'1" }, /vmName must be/],
    ['name with <', { ...ok, vmName: 'vm<1' }, /vmName must be/],
    ['name with &', { ...ok, vmName: 'vm&1' }, /vmName must be/],
    ['very long name', { ...ok, vmName: 'v'.repeat(65) }, /vmName must be/],
    ['empty name', { ...ok, vmName: '' }, /vmName must be/],
    ['numeric name', { ...ok, vmName: 7 }, /vmName must be a string/],
    ['source with /', { ...ok, sourceHost: 'h/../x' }, /sourceHost must be a host/],
    ['target equal to source', { ...ok, targetHost: ok.sourceHost }, /cannot be migrated to the host it runs on/],
    ['zero threshold', { ...ok, createAttempts: 0 }, /createAttempts must be at least 1/],
    ['negative threshold', { ...ok, createAttempts: -2 }, /createAttempts must be at least 1/],
    ['huge threshold', { ...ok, createAttempts: 1_000_000 }, /createAttempts must be at most 10/],
    ['fractional threshold', { ...ok, createAttempts: 2.5 }, /createAttempts must be a whole number/],
    ['string threshold', { ...ok, createAttempts: 'three' }, /createAttempts must be a whole number/],
    ['unparsable timeout', { ...ok, timeout: 'soon' }, /not a duration/],
    ['bare number timeout', { ...ok, timeout: '90' }, /not a duration/],
    ['negative timeout', { ...ok, timeout: '-5s' }, /not a duration/],
    ['zero timeout', { ...ok, timeout: '0s' }, /out of range/],
    ['huge timeout', { ...ok, timeout: '1000h' }, /out of range/],
    ['numeric timeout', { ...ok, timeout: 90 }, /expected string|timeout/],
    ['zero bandwidth', { ...ok, bandwidthMiBps: 0 }, /bandwidthMiBps must be at least 1/],
    ['huge bandwidth', { ...ok, bandwidthMiBps: 10 ** 9 }, /bandwidthMiBps must be at most/],
    ['unknown option', { ...ok, turbo: true }, /unknown option turbo/],
    ['unknown nested option', { ...ok, options: { yolo: 1 } }, /unknown option options\.yolo/],
    ['zero limit', { ...ok, limits: { maxInFlight: 0 } }, /limits\.maxInFlight must be at least 1/],
    ['unknown limit', { ...ok, limits: { maxEverything: 3 } }, /unknown option limits\.maxEverything/],
    ['unparsable queue timeout', { ...ok, options: { queueTimeout: 'forever' } }, /not a duration/],
    ['zero max downtime', { ...ok, convergence: { maxDowntimeMs: 0 } }, /convergence\.maxDowntimeMs must be at least 1/],
    ['ramp below the initial downtime', { ...ok, convergence: { maxDowntimeMs: 500, maxDowntimeRamp: { maxMs: 400 } } }, /maxDowntimeRamp\.maxMs must be at least the initial/],
    ['unknown deadline action', { ...ok, convergence: { onDeadline: 'pray' } }, /onDeadline must be "abort" or "post-copy"/],
    ['unparsable progress timeout', { ...ok, convergence: { progressTimeout: 'a while' } }, /not a duration/],
  ])('rejects %s', (_what, input, message) => {
    expect(problems(input).join('; ')).toMatch(message);
  });

  it('normalises the convergence controls', () => {
    const r = validateMigrationInput({
      ...ok,
      convergence: { autoConverge: true, postCopy: true, syncDiskWrites: true, maxDowntimeMs: 200, maxDowntimeRamp: { maxMs: 2000 }, progressTimeout: '30s', onDeadline: 'post-copy' },
    });
    expect(r.convergence).toEqual({
      autoConverge: true,
      postCopy: true,
      syncDiskWrites: true,
      maxDowntimeMs: 200,
      ramp: { initialMs: 200, maxMs: 2000, steps: 5, stallIterations: 2 },
      progressTimeoutMs: 30_000,
      onDeadline: 'post-copy',
    });
  });

  it('lists every problem at once', () => {
    expect(problems({ sourceHost: 'a b', vmName: '', vmUuid: 'x', createAttempts: 0 })).toHaveLength(4);
  });
});

describe('durations', () => {
  it('parses compound durations and refuses the rest', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    for (const bad of ['', '10', '1.5h', '5 min', '-1s', 's', '1d']) expect(parseDuration(bad)).toBeNull();
  });
  it('formats', () => {
    expect(formatDuration(250)).toBe('250 ms');
    expect(formatDuration(2_000)).toBe('2.0 s');
    expect(formatDuration(125_000)).toBe('2m 5s');
  });
});

describe('default timeout', () => {
  it('scales per GiB with a floor', () => {
    expect(defaultMigrationTimeoutMs(192 * 2 ** 20)).toBe(120_000); // floor
    expect(defaultMigrationTimeoutMs(4 * 2 ** 30)).toBe(600_000); // 4 GiB × 150 s
    expect(defaultMigrationTimeoutMs(2 * 2 ** 30, 800_000, 60_000)).toBe(1_600_000);
  });
});

describe('paths', () => {
  it('keeps storage paths inside the root', () => {
    expect(isStrictlyInside('/var/lib/libvirt/images/ferry/x', '/var/lib/libvirt/images/ferry')).toBe(true);
    expect(isStrictlyInside('/var/lib/libvirt/images/ferry/../etc', '/var/lib/libvirt/images/ferry')).toBe(false);
    expect(isStrictlyInside('/var/lib/libvirt/images/ferry', '/var/lib/libvirt/images/ferry')).toBe(false);
    expect(isStrictlyInside('/var/lib/libvirt/images/ferry2/x', '/var/lib/libvirt/images/ferry')).toBe(false);
    expect(isStrictlyInside('relative/x', '/')).toBe(false);
    expect(normalizeAbsolute('/a//b/./c/../d')).toBe('/a/b/d');
  });
});
