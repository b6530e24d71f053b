/**
 * The Temporal Web UI, end to end, in headless Chromium (Debian's `chromium` driven by playwright-core; no
 * browser download): a real lab (2 libvirt hosts, 1 TCG VM), a real Temporal dev server with its Web UI and
 * an in-process Ferry worker. The test fills the UI's "Start Workflow" form the way an operator would
 * (README, "From the Temporal Web UI"), submits it, and then checks through libvirt — not through the UI —
 * that the VM really runs on the other host; the inventory and the workflow's result must agree.
 *
 * Screenshots of the filled form and of the completed workflow page stay in $TMPDIR/ferry-webui-* (the path
 * is printed). Run alone: `npx vitest run test/webui` (as root, after scripts/install-deps).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import type { MigrationReport } from '../../common/migration';
import { canRunLab, startLabHarness, whereRuns, type LabHarness } from '../support/lab-harness';
import { eventually } from '../support/temporal';
import { CHROMIUM, CHROMIUM_ARGS } from '../support/chromium';

const canRun = canRunLab && fs.existsSync(CHROMIUM);

describe.skipIf(!canRun)('the Temporal Web UI starts a live migration (headless Chromium)', () => {
  let h: LabHarness;
  let browser: BrowserContext | undefined;
  let page: Page;
  let shots = '';
  let profile = '';
  let ui = ''; // the Web UI's base URL
  const problems: string[] = [];
  const t0 = Date.now();
  const timings: Record<string, number> = {};
  const mark = (what: string): void => {
    timings[what] = Date.now() - t0;
  };

  beforeAll(async () => {
    shots = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-webui-'));
    h = await startLabHarness({ hosts: 2, vms: 1, taskQueue: 'ferry', webUi: true });
    if (!h.webUi) throw new Error('the harness did not start the Web UI');
    ui = h.webUi;
    mark('lab+temporal+worker up');
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-chromium-')); // a fresh --user-data-dir
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1000 },
    });
    // Every request to the UI is made by Node (Playwright's request API) and handed to the page, so none goes
    // through Chromium's socket pools: Chromium fails requests waiting there with ERR_NETWORK_CHANGED whenever
    // an IP address on the machine changes, and labs (ours, other engineers') add and remove veths, bridges and
    // namespaces all the time. Seen here as a 500 "Internal Error" page when a module chunk was lost that way.
    await browser.route(`${ui}/**`, async (route) => {
      try {
        await route.fulfill({ response: await route.fetch({ timeout: 90_000 }) });
      } catch {
        await route.abort('failed').catch(() => undefined); // the page went away meanwhile, or the UI is down
      }
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(30_000);
    // what went wrong in the page, printed when the test fails (the news feed is unreachable here: ignored)
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().includes('ERR_NAME_NOT_RESOLVED')) problems.push(`console: ${m.text()}`);
    });
    page.on('response', (r) => {
      if (r.status() >= 400 && r.url().startsWith(ui)) problems.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`);
    });
    page.on('requestfailed', (r) => {
      if (r.url().startsWith(ui)) problems.push(`request failed (${r.failure()?.errorText ?? '?'}): ${r.url()}`);
    });
    mark('chromium up');
  }, 300_000);

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
    await h?.stop();
    console.log(`[webui] timings (ms since start): ${JSON.stringify(timings)}; screenshots in ${shots}`);
  }, 120_000);

  it('Start Workflow form -> liveMigration -> libvirt runs the VM on the other host', async () => {
    onTestFailed(async () => {
      console.log(`[webui] failed at ${page.url()}; page problems:\n  ${problems.join('\n  ') || '(none)'}`);
      await page.screenshot({ path: path.join(shots, 'failed.png'), fullPage: true }).catch(() => undefined);
    });
    const [src, dst] = h.lab.hosts;
    const vm = h.lab.vms[0]!;
    if (!src || !dst) throw new Error('the harness did not start 2 hosts');
    expect(await whereRuns(h, vm.uuid)).toEqual([src.name]);

    const workflowId = `ferry-migrate-${vm.uuid}`;
    const input = { sourceHost: src.address, vmName: vm.name, vmUuid: vm.uuid };

    // --- the form, as an operator fills it
    await page.goto(`${ui}/namespaces/default/workflows/start-workflow`, { waitUntil: 'networkidle' });
    await page.getByRole('heading', { level: 1, name: 'Start Workflow' }).waitFor();
    mark('form loaded');

    await page.getByRole('textbox', { name: 'Workflow ID', exact: true }).fill(workflowId);
    const queue = page.getByRole('textbox', { name: 'Task Queue', exact: true });
    await queue.fill(h.taskQueue);
    await queue.blur(); // the UI looks up the queue's pollers when the field loses focus
    // our in-process worker polls this queue: the UI must say so before we start anything
    await page.getByRole('status').filter({ hasText: 'Task Queue is Active' }).waitFor();
    await page.getByRole('textbox', { name: 'Workflow Type', exact: true }).fill('liveMigration');

    // the input is one JSON payload (a CodeMirror editor); the UI passes it as the workflow's one argument
    const data = page.getByRole('textbox', { name: 'Data', exact: true });
    await data.fill(JSON.stringify(input));
    // leaving the editor makes the UI parse and pretty-print the JSON. The form grows: wait for that before
    // clicking anything below it, or the click lands where the button used to be.
    await data.blur();
    await page.getByRole('radio', { name: 'json/plain', exact: true }).check();
    await expect.poll(async () => (await data.innerText()).split('\n').length, { timeout: 10_000 }).toBeGreaterThan(1);
    expect(JSON.parse(await data.innerText())).toEqual(input);
    expect(await page.getByRole('radio', { name: 'json/plain', exact: true }).isChecked()).toBe(true);

    const start = page.getByRole('button', { name: 'Start Workflow', exact: true });
    await expect.poll(() => start.isEnabled(), { timeout: 10_000 }).toBe(true);
    await page.screenshot({ path: path.join(shots, '1-start-workflow-filled.png'), fullPage: true });
    await start.click();

    // the UI's success toast links to the new run; follow it as an operator would
    await page.getByRole('link', { name: 'Workflow started successfully' }).click();
    await page.waitForURL((u) => u.pathname.startsWith(`/namespaces/default/workflows/${workflowId}/`));
    await page.getByRole('heading', { level: 1, name: workflowId }).waitFor();
    mark('workflow started from the UI');

    // --- the truth, from libvirt: gone from the source, running on the other host
    const onTarget = await eventually(
      async () => {
        const [s, d] = await Promise.all([h.hv.getDomain(src.uri, vm.uuid), h.hv.getDomain(dst.uri, vm.uuid)]);
        return s === null && d?.state === 'running' ? d : null;
      },
      90_000,
      500,
    );
    expect(onTarget).toMatchObject({ uuid: vm.uuid, name: vm.name, persistent: true });
    expect(await whereRuns(h, vm.uuid)).toEqual([dst.name]);
    mark('libvirt: VM runs on the target');

    // the workflow completed with one argument (the UI's JSON) and says the same
    const handle = h.env.client.workflow.getHandle(workflowId);
    const report = (await handle.result()) as MigrationReport;
    expect(report).toMatchObject({ status: 'migrated', vmUuid: vm.uuid, vm: vm.name, source: src.name, target: dst.name });
    expect((await handle.describe()).status.name).toBe('COMPLETED');
    const history = await handle.fetchHistory();
    const payloads = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads ?? [];
    expect(payloads).toHaveLength(1);
    expect(JSON.parse(Buffer.from(payloads[0]!.data!).toString('utf8'))).toEqual(input);
    // the inventory too
    expect(await h.inventory.getVm(vm.uuid)).toMatchObject({ host: dst.name, state: 'running' });
    expect(await h.inventory.getClaim(vm.uuid)).toBeNull();
    mark('workflow completed');

    // --- the completed run in the UI
    await page.reload({ waitUntil: 'networkidle' });
    await page.getByRole('main').getByRole('status').filter({ hasText: /^\s*completed\s*$/i }).waitFor();
    // the status comes with the run's description, the result with its history a moment later ('null' till then)
    const result = page.getByRole('textbox', { name: 'Result', exact: true });
    await expect.poll(() => result.innerText(), { timeout: 30_000 }).toContain('"migrated"');
    expect(await result.innerText()).toContain(`"target": "${dst.name}"`);
    await page.screenshot({ path: path.join(shots, '2-workflow-completed.png'), fullPage: true });
    mark('completed page checked');
  }, 150_000);
});
