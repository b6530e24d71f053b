/**
 * `ferry ui` end to end, in headless Chromium (Debian's chromium driven by playwright-core, as
 * start-workflow.test.ts): a real 2-host lab with 2 TCG VMs, a real Temporal dev server, an in-process worker and
 * the UI server (webui/server.ts) on the harness's inventory and client. The page must list what libvirt reports;
 * a migration started from the page shows its phases and progress live and ends with libvirt running the VM on
 * the target and one more history point; a bandwidth-limited migration cancelled from the page compensates and
 * the VM stays on its source; a token-protected instance refuses requests without the token, and cross-site
 * POSTs (a foreign Origin, a form's text/plain body without the page's header) are refused. Screenshots of each state stay in $TMPDIR/ferry-ui-* (printed). Needs `npm run build`
 * (the page's bundle in dist/webui/assets).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { startUiServer, type UiServer } from '../../webui/server';
import { canRunLab, freePort, startLabHarness, whereRuns, type LabHarness } from '../support/lab-harness';
import { eventually } from '../support/temporal';
import { CHROMIUM, CHROMIUM_ARGS } from '../support/chromium';

const BUILT = fs.existsSync(path.join(__dirname, '..', '..', 'dist', 'webui', 'assets', 'app.js'));
const canRun = canRunLab && fs.existsSync(CHROMIUM) && BUILT;

describe.skipIf(!canRun)('ferry ui in headless Chromium on the real lab', () => {
  let h: LabHarness;
  let ui: UiServer;
  let guarded: UiServer;
  let browser: BrowserContext | undefined;
  let page: Page;
  let shots = '';
  let profile = '';
  const problems: string[] = [];
  const t0 = Date.now();
  const timings: Record<string, number> = {};
  const mark = (what: string): void => void (timings[what] = Date.now() - t0);
  const shot = (name: string) => page.screenshot({ path: path.join(shots, name), fullPage: true });

  beforeAll(async () => {
    shots = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-ui-'));
    h = await startLabHarness({ hosts: 2, vms: 2, taskQueue: 'ferry' });
    ui = await startUiServer({ inventory: h.inventory, ferry: h.ferry, port: await freePort(), token: null, temporalUi: 'http://127.0.0.1:8233', liveIntervalMs: 300 });
    guarded = await startUiServer({ inventory: h.inventory, ferry: h.ferry, port: await freePort(), token: 'test-token-0123456789abcdef', temporalUi: 'http://127.0.0.1:8233' });
    mark('lab+temporal+worker+ui up');
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-chromium-'));
    browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1400, height: 1000 } });
    // As start-workflow.test.ts: requests go through Node, not Chromium's socket pools (ERR_NETWORK_CHANGED while
    // labs add and remove interfaces) — all but the event stream, which never ends (EventSource reconnects).
    for (const base of [ui.url, guarded.url]) {
      await browser.route(`${base}/**`, async (route) => {
        if (route.request().url().endsWith('/api/events')) return route.continue();
        try {
          await route.fulfill({ response: await route.fetch({ timeout: 60_000, maxRedirects: 0 }) });
        } catch {
          await route.abort('failed').catch(() => undefined);
        }
      });
    }
    page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(30_000);
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('console', (m) => void (m.type() === 'error' && problems.push(`console: ${m.text()}`)));
    mark('chromium up');
  }, 300_000);

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
    await ui?.close();
    await guarded?.close();
    await h?.stop();
    console.log(`[ui] timings (ms since start): ${JSON.stringify(timings)}; screenshots in ${shots}`);
  }, 120_000);

  const failed = (): void =>
    onTestFailed(async () => {
      console.log(`[ui] failed at ${page.url()}; page problems:\n  ${problems.join('\n  ') || '(none)'}`);
      await shot('failed.png').catch(() => undefined);
    });

  /** Distinct phases (and progress values) the live view shows for a VM until `until` holds. */
  async function watch(uuid: string, until: (phase: string) => boolean, timeoutMs: number): Promise<{ phases: string[]; progress: number[] }> {
    const phases: string[] = [];
    const progress: number[] = [];
    const box = page.locator(`#live .migration[data-vm="${uuid}"]`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const phase = (await box.getAttribute('data-phase', { timeout: 1000 }).catch(() => null)) ?? '';
      if (phase && phases.at(-1) !== phase) phases.push(phase);
      const pct = Number(await box.locator('[role=meter]').getAttribute('aria-valuenow', { timeout: 500 }).catch(() => 'NaN'));
      if (!Number.isNaN(pct) && progress.at(-1) !== pct) progress.push(pct);
      if (phase && until(phase)) return { phases, progress };
      if (Date.now() > deadline) throw new Error(`live view of ${uuid}: phases ${phases.join(' → ') || '(none)'}, never done in ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('lists the lab hosts and VMs as libvirt reports them', async () => {
    failed();
    const started = Date.now();
    await page.goto(ui.url);
    await page.locator('body[data-ready="1"]').waitFor();
    timings['page ready ms'] = Date.now() - started;
    for (const host of h.lab.hosts) await expect.poll(() => page.locator(`#hosts tr[data-host="${host.name}"]`).count()).toBe(1);
    for (const vm of h.lab.vms) {
      const row = page.locator(`#vms tr[data-vm="${vm.uuid}"]`);
      const where = await whereRuns(h, vm.uuid);
      expect(where).toHaveLength(1);
      expect(await row.locator('td').nth(2).innerText()).toBe(where[0]);
      expect(await row.locator('td').nth(0).innerText()).toBe(vm.name);
    }
    await expect.poll(() => page.locator('#conn').innerText()).toMatch(/^live/);
    await shot('1-fleet.png');
    mark('fleet listed');
  });

  it('starts a migration from the page: live phases and progress, libvirt runs it on the target, one more history point', async () => {
    failed();
    const vm = h.lab.vms[0]!;
    const [src, dst] = [h.lab.hosts[0]!, h.lab.hosts[1]!];
    expect(await whereRuns(h, vm.uuid)).toEqual([src.name]);
    const before = Number(await page.locator('#chart-duration').getAttribute('data-points'));

    await page.locator(`#vms tr[data-vm="${vm.uuid}"] button[data-act=migrate]`).click();
    await page.locator('#migrate-form input[name=bandwidth]').fill('16'); // ~4 s for the 64 MiB disk: phases visible
    await shot('2-migrate-dialog.png');
    await page.locator('#start-btn').click();
    const seen = await watch(vm.uuid, (p) => p === 'migrated' || p === 'failed' || p === 'aborted', 120_000);
    expect(seen.phases.at(-1), seen.phases.join(' → ')).toBe('migrated');
    expect(seen.phases.length, seen.phases.join(' → ')).toBeGreaterThan(1);
    expect(seen.phases).toContain('migrating');
    expect(Math.max(...seen.progress)).toBe(100);
    mark('migration shown done');

    expect(await whereRuns(h, vm.uuid)).toEqual([dst.name]);
    await expect.poll(() => page.locator(`#vms tr[data-vm="${vm.uuid}"] td`).nth(2).innerText(), { timeout: 15_000 }).toBe(dst.name);
    await expect.poll(async () => Number(await page.locator('#chart-duration').getAttribute('data-points')), { timeout: 15_000 }).toBe(before + 1);
    expect(await page.locator('#history tbody tr').first().innerText()).toContain('migrated');
    await shot('3-migrated.png');
  }, 180_000);

  it('cancels a bandwidth-limited migration from the page: compensation shown, the VM stays on its source', async () => {
    failed();
    const vm = h.lab.vms[1]!;
    const src = h.lab.hosts[0]!;
    expect(await whereRuns(h, vm.uuid)).toEqual([src.name]);
    await page.locator(`#vms tr[data-vm="${vm.uuid}"] button[data-act=migrate]`).click();
    await page.locator('#migrate-form input[name=bandwidth]').fill('1'); // 64 MiB at 1 MiB/s: a minute
    await page.locator('#start-btn').click();
    await watch(vm.uuid, (p) => p === 'migrating', 60_000);
    await expect.poll(async () => Number(await page.locator(`#live .migration[data-vm="${vm.uuid}"] [role=meter]`).getAttribute('aria-valuenow')), { timeout: 30_000 }).toBeGreaterThan(0);
    await shot('4-slow-migration.png');
    await page.locator(`#live .migration[data-vm="${vm.uuid}"] button[data-act=cancel]`).click();
    const seen = await watch(vm.uuid, (p) => ['cancelled', 'migrated', 'failed', 'aborted'].includes(p), 90_000);
    expect(seen.phases.at(-1), seen.phases.join(' → ')).toBe('cancelled');
    expect(seen.phases, seen.phases.join(' → ')).toContain('compensating');
    await shot('5-cancelled.png');
    mark('cancel compensated');
    expect(await whereRuns(h, vm.uuid)).toEqual([src.name]);
    expect((await h.inventory.getVm(vm.uuid))?.host).toBe(src.name);
    await expect.poll(() => page.locator('#history tbody tr').first().innerText(), { timeout: 15_000 }).toContain('cancelled');
  }, 180_000);

  it('refuses requests without the token and cross-site POSTs', async () => {
    failed();
    const token = 'test-token-0123456789abcdef';
    expect((await fetch(`${guarded.url}/api/hosts`)).status).toBe(401);
    expect((await fetch(`${guarded.url}/`)).status).toBe(401);
    expect((await fetch(`${guarded.url}/api/hosts`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(401);
    expect((await fetch(`${guarded.url}/api/hosts`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    // the printed URL: the token becomes a SameSite cookie and the page loads
    const p2 = await browser!.newPage();
    await p2.goto(`${guarded.url}/?token=${token}`);
    await p2.locator('body[data-ready="1"]').waitFor();
    mark('token page loaded');
    expect(p2.url()).toBe(`${guarded.url}/`);
    await p2.close();

    const vm = h.lab.vms[0]!;
    const post = (headers: Record<string, string>) =>
      fetch(`${ui.url}/api/migrate`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ vm: vm.uuid }) });
    expect((await post({ origin: 'http://evil.example', 'x-ferry-ui': '1' })).status).toBe(403);
    expect((await post({})).status).toBe(403); // no x-ferry-ui header: what a cross-site form sends
    // what a cross-site HTML form sends: text/plain, its own Origin, no custom header
    const form = await fetch(`${ui.url}/api/cancel`, { method: 'POST', headers: { 'content-type': 'text/plain', origin: 'http://evil.example' }, body: `{"vm":"${vm.uuid}"}` });
    expect(form.status).toBe(403);
    mark('cross-site requests refused');
    // and a refused action shows the CLI's message on the page
    const bad = (await page.evaluate(async (uuid) => (await fetch('/api/migrate', { method: 'POST', headers: { 'content-type': 'application/json', 'x-ferry-ui': '1' }, body: JSON.stringify({ vm: uuid, bandwidth: 'fast' }) })).json(), vm.uuid)) as { error?: string };
    expect(bad.error).toMatch(/bandwidth/i);
    expect(await whereRuns(h, vm.uuid)).toEqual([h.lab.hosts[1]!.name]); // nothing moved
  }, 120_000);

  it('evacuates a host from the page: its progress shows, libvirt runs its VM elsewhere, the host is in maintenance', async () => {
    failed();
    const vm = h.lab.vms[1]!;
    const [src, dst] = [h.lab.hosts[0]!, h.lab.hosts[1]!];
    expect(await whereRuns(h, vm.uuid)).toEqual([src.name]);
    page.once('dialog', (d) => void d.accept());
    await page.locator(`#hosts tr[data-host="${src.name}"] button[data-act=evacuate]`).click();
    await page.locator(`#evacuations [data-evacuation="${src.name}"]`).waitFor({ timeout: 30_000 });
    await shot('6-evacuation.png');
    await eventually(async () => (await whereRuns(h, vm.uuid)).join() === dst.name && (await h.inventory.getVm(vm.uuid))?.host === dst.name, 120_000, 250);
    await expect.poll(() => page.locator(`#hosts tr[data-host="${src.name}"] td`).nth(2).innerText(), { timeout: 20_000 }).toBe('maintenance');
    expect((await h.inventory.getVm(vm.uuid))?.host).toBe(dst.name);
    mark('evacuated');
  }, 180_000);
});
