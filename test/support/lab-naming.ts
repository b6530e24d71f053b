/**
 * The lab this test process uses: FERRY_LAB_PREFIX / FERRY_LAB_SUBNET (defaults `ferry` / 10.213.77).
 * Engineers sharing a machine each pick their own pair, so that their labs never touch each other.
 * FERRY_LAB_TLS=1 makes the suites' labs TLS labs (qemu+tls hosts, `ferry lab up --tls`).
 */
import { LAB_DEFAULT_PREFIX, LAB_DEFAULT_SUBNET } from '../../lab';

export function labNaming(): { prefix: string; subnet: string; tls: boolean } {
  return {
    prefix: process.env['FERRY_LAB_PREFIX'] || LAB_DEFAULT_PREFIX,
    subnet: process.env['FERRY_LAB_SUBNET'] || LAB_DEFAULT_SUBNET,
    tls: process.env['FERRY_LAB_TLS'] === '1',
  };
}
