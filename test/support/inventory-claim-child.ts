/**
 * Child process for the inventory concurrency test (test/unit/inventory-concurrency.test.ts).
 * argv[2] = inventory file. Protocol over the IPC channel:
 *   child -> {type: 'ready'} once the inventory is open;
 *   parent -> {type: 'claim', vms: string[], sourceHost} : the child claims all of them at once and answers
 *   child -> {type: 'result', results: ClaimOutcome[]};
 *   parent -> {type: 'exit'}.
 */
import { openInventory } from '../../inventory/index';
import { claimAll, type ChildMessage, type ParentMessage } from './inventory-claims';

async function main(file: string): Promise<void> {
  const inv = await openInventory(file);
  const send = (m: ChildMessage): void => {
    process.send?.(m);
  };
  process.on('message', (m: ParentMessage) => {
    if (m.type === 'exit') {
      void inv.close().then(() => process.exit(0));
      return;
    }
    claimAll(inv, m.vms, m.sourceHost).then(
      (results) => send({ type: 'result', results }),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  });
  send({ type: 'ready' });
}

const file = process.argv[2];
if (!file || !process.send) {
  console.error('usage: forked by the concurrency test with the inventory file as argument');
  process.exit(2);
}
void main(file);
