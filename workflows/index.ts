// Every workflow type the Ferry worker runs (this module is the worker's `workflowsPath`).
export { liveMigration, progressQuery, cancelSignal, progressSignal } from './live-migration';
export { evacuateHost, evacuateHosts } from './evacuate-host';
export { syncInventory } from './sync-inventory';
