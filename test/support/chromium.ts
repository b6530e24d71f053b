/**
 * Headless Chromium for the browser tests and bench/ui.ts: Debian's `chromium` (FERRY_CHROMIUM overrides),
 * driven by playwright-core, no browser download.
 */
export const CHROMIUM = process.env['FERRY_CHROMIUM'] || '/usr/bin/chromium';

/**
 * As root, in a closed network: no sandbox (root), no GPU, and none of Chromium's own background traffic
 * (component updates, sync, QUIC probes), whose refused connections otherwise stall it. Playwright adds
 * --headless and passes the fresh profile directory as --user-data-dir.
 */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
