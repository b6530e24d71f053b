/**
 * Things every command needs, opened lazily and closed once — and loaded lazily: a command that reads the
 * inventory never loads the Temporal SDK or virsh's parsers (start-up time, see cli/main.ts).
 */
import type { FerryClient } from '../client';
import { ferryHome, inventoryLocation } from '../client/config';
import type { Hypervisor } from '../hypervisor/port';
import type { Inventory } from '../inventory';
import type { VmRecord } from '../common/types';
import { CliExit, EXIT } from './output';

export class CliContext {
  private inv: Inventory | null = null;
  private ferry: FerryClient | null = null;
  private hv: Hypervisor | null = null;
  readonly home = ferryHome();

  async inventory(): Promise<Inventory> {
    this.inv ??= await (require('../inventory') as typeof import('../inventory')).openInventory(inventoryLocation());
    return this.inv;
  }

  async client(): Promise<FerryClient> {
    this.ferry ??= await (require('../client') as typeof import('../client')).FerryClient.connect();
    return this.ferry;
  }

  async hypervisor(): Promise<Hypervisor> {
    this.hv ??= new (require('../hypervisor/virsh') as typeof import('../hypervisor/virsh')).VirshHypervisor();
    return this.hv;
  }

  async close(): Promise<void> {
    await this.inv?.close();
    await this.ferry?.close();
  }

  /** The one VM a NAME or UUID (and optional source host) designates, or a bad-input exit. */
  async resolveVm(ref: string, source?: string): Promise<VmRecord> {
    const inv = await this.inventory();
    let vms = await inv.findVms(ref);
    if (source !== undefined) {
      const host = await inv.getHost(source);
      vms = vms.filter((v) => v.host === (host?.name ?? source));
    }
    if (vms.length === 0) {
      throw new CliExit(
        EXIT.badInput,
        `no VM "${ref}"${source ? ` on ${source}` : ''} in the inventory: check the name or UUID, or run \`ferry inventory sync\``,
      );
    }
    if (vms.length > 1) {
      throw new CliExit(
        EXIT.badInput,
        `"${ref}" names ${vms.length} VMs (${vms.map((v) => `${v.uuid} on ${v.host}`).join(', ')}): pass the UUID or --source`,
      );
    }
    return vms[0] as VmRecord;
  }
}
