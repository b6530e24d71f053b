/**
 * Child process for the inventory concurrency test (test/unit/inventory-concurrency.test.ts).
 * The inventory location comes in the environment (FERRY_TEST_INVENTORY), not argv: a PostgreSQL URL
 * carries a password, and argv is visible to every user of the machine. Protocol over the IPC channel:
 *   child -> {type: 'ready'} once the inventory is open;
 *   parent -> {type: 'claim', asks, limits?} : the child claims all of them at once and answers
 *   child -> {type: 'result', results: ClaimOutcome[]};
 *   parent -> {type: 'exit'}.
 */
import { openInventory } from '../../inventory/index';
import { claimAll, type ChildMessage, type ParentMessage } from './inventory-claims';

async function main(location: string): Promise<void> {
  const inv = await openInventory(location);
  const send = (m: ChildMessage): void => {
    process.send?.(m);
  };
  process.on('message', (m: ParentMessage) => {
    if (m.type === 'exit') {
      void inv.close().then(() => process.exit(0));
      return;
    }
    claimAll(inv, m.asks, m.limits).then(
      (results) => send({ type: 'result', results }),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  });
  send({ type: 'ready' });
}

const location = process.env.FERRY_TEST_INVENTORY;
if (!location || !process.send) {
  console.error('usage: forked by the concurrency test with the inventory location in FERRY_TEST_INVENTORY');
  process.exit(2);
}
main(location).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
