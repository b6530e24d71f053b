/** Things every command needs, opened lazily and closed once. */
import { FerryClient } from '../client';
import { ferryHome, inventoryLocation } from '../client/config';
import { VirshHypervisor } from '../hypervisor/virsh';
import { openInventory, type Inventory } from '../inventory';
import type { VmRecord } from '../common/types';
import { CliExit, EXIT } from './output';

export class CliContext {
  private inv: Inventory | null = null;
  private ferry: FerryClient | null = null;
  readonly hypervisor = new VirshHypervisor();
  readonly home = ferryHome();

  async inventory(): Promise<Inventory> {
    this.inv ??= await openInventory(inventoryLocation());
    return this.inv;
  }

  async client(): Promise<FerryClient> {
    this.ferry ??= await FerryClient.connect();
    return this.ferry;
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
