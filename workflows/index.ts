// Every workflow type the Ferry worker runs (this module is the worker's `workflowsPath`); their names, queries,
// signals and updates are in definitions.ts.
export { liveMigration } from './live-migration';
export { planMigration } from './plan-migration';
export { evacuateHost, evacuateHosts } from './evacuate-host';
export { reconcile, syncInventory } from './sync-inventory';
