/** The one check of a lab's size (lab/sizes.ts), used by labUp and by `ferry lab up`. */
import { describe, expect, it } from 'vitest';
import { checkLabSize, LAB_MAX_HOSTS, LAB_MAX_VMS, LabError } from '../../lab';

describe('checkLabSize', () => {
  it('accepts 1..16 hosts and 0..64 VMs', () => {
    expect(LAB_MAX_HOSTS).toBe(16);
    expect(LAB_MAX_VMS).toBe(64);
    for (const size of [{ hosts: 1, vms: 0 }, { hosts: 2, vms: 1 }, { hosts: 16, vms: 64 }]) {
      expect(() => checkLabSize(size)).not.toThrow();
    }
  });

  it.each([
    [{ hosts: 0, vms: 1 }, /hosts must be a whole number from 1 to 16 \(got 0\)/],
    [{ hosts: 17, vms: 1 }, /hosts must be a whole number from 1 to 16 \(got 17\)/],
    [{ hosts: 1.5, vms: 1 }, /hosts must be/],
    [{ hosts: 2, vms: -1 }, /vms must be a whole number from 0 to 64 \(got -1\)/],
    [{ hosts: 2, vms: 65 }, /vms must be a whole number from 0 to 64 \(got 65\)/],
    [{ hosts: 2, vms: Number.NaN }, /vms must be/],
  ])('refuses %j with a LabError', (size, message) => {
    expect(() => checkLabSize(size)).toThrow(LabError);
    expect(() => checkLabSize(size)).toThrow(message);
  });
});
