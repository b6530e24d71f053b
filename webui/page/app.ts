/**
 * The `ferry ui` page: tables from the JSON API, the live view from server-sent events, history charts with
 * uPlot. Every action is a POST with the x-ferry-ui header; the server validates it the way the CLI does and a
 * refusal's message is shown as it came.
 */
import uPlot from 'uplot';

type Json = Record<string, any>;
const $ = <T extends HTMLElement>(sel: string): T => document.querySelector(sel) as T;
const esc = (s: unknown): string => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const mib = (b: number | null | undefined): string => (b == null ? '–' : b >= 1 << 30 ? `${(b / (1 << 30)).toFixed(1)} GiB` : `${(b / (1 << 20)).toFixed(1)} MiB`);
const secs = (ms: number | null | undefined): string => (ms == null ? '–' : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`);

let config: Json = { temporalUi: '', namespace: 'default', hostStates: [] };
let hosts: Json[] = [];
let vmPage = 0;
let historyPage = 0;
const charts: uPlot[] = [];

async function api(path: string, body?: Json): Promise<any> {
  const res = await fetch(path, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json', 'x-ferry-ui': '1' }, body: JSON.stringify(body) });
  const data = await res.json();
  if (!res.ok) throw new Error(data.error ?? `HTTP ${res.status}`);
  return data;
}

function toast(text: string, ok = false): void {
  const t = $('#toast');
  t.textContent = text;
  t.className = ok ? 'ok' : '';
  t.hidden = false;
  setTimeout(() => (t.hidden = true), ok ? 4000 : 12000);
}

async function act(path: string, body: Json, done: string): Promise<any> {
  try {
    const r = await api(path, body);
    toast(done, true);
    return r;
  } catch (err) {
    toast((err as Error).message);
    return null;
  }
}

const workflowLink = (id: string, text = 'Temporal'): string =>
  `<a href="${esc(config.temporalUi)}/namespaces/${encodeURIComponent(config.namespace)}/workflows/${encodeURIComponent(id)}" target="_blank" rel="noopener">${esc(text)}</a>`;

function bar(used: number, total: number, label: string, warnAbove = 85): string {
  const pct = total > 0 ? Math.min(100, (used / total) * 100) : 0;
  return `<div class="bar${pct > warnAbove ? ' high' : ''}" role="meter" aria-valuenow="${pct.toFixed(0)}" aria-valuemin="0" aria-valuemax="100" aria-label="${esc(label)}"><span style="width:${pct}%"></span><em>${esc(label)}</em></div>`;
}

async function loadHosts(): Promise<void> {
  hosts = await api('/api/hosts');
  $('#hosts tbody').innerHTML = hosts
    .map(
      (h) => `<tr data-host="${esc(h.name)}"><td>${esc(h.name)}</td><td>${esc(h.address)}</td><td class="state-${esc(h.state)}">${esc(h.state)}</td>
<td>${bar(h.usedMemoryMiB, h.memoryMiB, `${h.usedMemoryMiB} / ${h.memoryMiB} MiB`)}</td><td>${bar(h.usedVcpus, h.vcpus, `${h.usedVcpus} / ${h.vcpus}`)}</td>
<td>${mib(h.storageFreeBytes)}</td><td>${h.vms}</td><td>${h.migrationsIn} / ${h.migrationsOut}</td>
<td><select data-act="state" aria-label="State of ${esc(h.name)}">${config.hostStates.map((s: string) => `<option${s === h.state ? ' selected' : ''}>${s}</option>`).join('')}</select>
<button data-act="evacuate">Evacuate</button></td></tr>`,
    )
    .join('');
  const sel = $<HTMLSelectElement>('#migrate-form select[name=target]');
  sel.innerHTML = `<option value="">(placement chooses)</option>${hosts.map((h) => `<option>${esc(h.name)}</option>`).join('')}`;
}

async function loadVms(): Promise<void> {
  const q = ($('#vm-filter input') as HTMLInputElement).value;
  const r = await api(`/api/vms?page=${vmPage}&q=${encodeURIComponent(q)}`);
  $('#vms tbody').innerHTML =
    r.rows
      .map(
        (v: Json) => `<tr data-vm="${esc(v.uuid)}"><td>${esc(v.name)}</td><td class="uuid">${esc(v.uuid)}</td><td>${esc(v.host)}</td><td>${esc(v.state)}</td>
<td>${v.memoryMiB} MiB</td><td>${v.vcpus}</td><td>${v.disks.map((d: Json) => `${esc(d.target)} ${mib(d.sizeBytes)}`).join(', ')}</td>
<td>${v.last ? `<span class="result-${esc(v.last.result)}">${esc(v.last.result)}</span> ${esc(v.last.endedAt.slice(0, 19).replace('T', ' '))}` : '–'}</td>
<td><button data-act="migrate" data-name="${esc(v.name)}">Migrate…</button></td></tr>`,
      )
      .join('') || '<tr><td colspan="9" class="empty">no VMs</td></tr>';
  pager('#vms-pager', r.page, (r.page + 1) * r.pageSize < r.total, `${r.total} VMs`, (p) => ((vmPage = p), void loadVms()));
}

function pager(sel: string, page: number, more: boolean, what: string, go: (p: number) => void): void {
  const el = $(sel);
  el.innerHTML = `<button ${page === 0 ? 'disabled' : ''} data-p="${page - 1}">‹ Previous</button><span>page ${page + 1} · ${esc(what)}</span><button ${more ? '' : 'disabled'} data-p="${page + 1}">Next ›</button>`;
  el.querySelectorAll('button').forEach((b) => b.addEventListener('click', () => go(Number(b.dataset['p']))));
}

function historyQuery(): string {
  const f = new FormData($<HTMLFormElement>('#history-filter'));
  const q = new URLSearchParams({ page: String(historyPage) });
  for (const [k, v] of f) {
    if (typeof v !== 'string' || v === '') continue;
    q.set(k, k === 'since' || k === 'until' ? new Date(v).toISOString() : v);
  }
  return q.toString();
}

async function loadHistory(): Promise<void> {
  const r = await api(`/api/history?${historyQuery()}`);
  $('#history tbody').innerHTML =
    r.rows
      .map(
        (h: Json) => `<tr><td>${esc(h.startedAt.slice(0, 19).replace('T', ' '))}</td><td>${esc(h.vm)}</td><td>${esc(h.source)} → ${esc(h.target ?? '–')}</td>
<td class="result-${esc(h.result)}">${esc(h.result)}</td><td>${secs(h.durationMs)}</td><td>${secs(h.downtimeMs)}</td><td>${mib(h.bytes)}</td>
<td>${esc(h.reason ?? '')} ${workflowLink(h.workflowId)}</td></tr>`,
      )
      .join('') || '<tr><td colspan="8" class="empty">no migrations yet</td></tr>';
  $('#counts').innerHTML = `<span data-testid="history-total">${r.total}</span> migrations: ${Object.entries(r.counts)
    .map(([k, n]) => `<span class="result-${esc(k)}">${esc(k)} ${n}</span>`)
    .join(' · ')}`;
  pager('#history-pager', r.page, r.more, `${r.total} rows`, (p) => ((historyPage = p), void loadHistory()));
  drawCharts(r.series);
}

function drawCharts(s: Json): void {
  for (const c of charts.splice(0)) c.destroy();
  const width = Math.max(300, ($('#chart-duration').parentElement!.clientWidth - 16) / 2);
  const pts = { show: true, size: 5 };
  charts.push(
    new uPlot(
      {
        title: 'Duration and downtime per migration', width, height: 220,
        series: [{}, { label: 'duration s', stroke: '#4a7bd0', width: 0, points: pts }, { label: 'downtime ms', stroke: '#d0764a', width: 0, points: pts, scale: 'ms' }],
        axes: [{}, { label: 's' }, { side: 1, scale: 'ms', label: 'ms', grid: { show: false } }],
      },
      [s.t, s.durationMs.map((v: number) => v / 1000), s.downtimeMs],
      $('#chart-duration'),
    ),
    new uPlot(
      { title: 'Bytes copied per migration', width, height: 220, series: [{}, { label: 'MiB', stroke: '#227a3b', width: 0, points: pts }], axes: [{}, { label: 'MiB' }] },
      [s.t, s.bytes.map((b: number | null) => (b == null ? null : b / (1 << 20)))],
      $('#chart-bytes'),
    ),
  );
  $('#chart-duration').dataset['points'] = String(s.t.length);
}

function renderLive(v: Json): void {
  $('#live').innerHTML =
    v.migrations
      .map((p: Json) => {
        const m = p.migration;
        const pct = m?.percent ?? (['migrated'].includes(p.phase) ? 100 : 0);
        const attempts = Object.entries(p.createAttempts).map(([t, n]) => `${esc(t)} ${n}`).join(', ') || '–';
        const c = p.convergence;
        const running = !['migrated', 'aborted', 'timed-out', 'cancelled', 'failed'].includes(p.phase);
        return `<div class="migration" data-vm="${esc(p.vm.uuid)}" data-phase="${esc(p.phase)}">
<div><strong>${esc(p.vm.name)}</strong> ${esc(p.source)} → ${esc(p.target ?? '(choosing)')} · <span class="phase">${esc(p.phase)}</span>${p.mode ? ` (${esc(p.mode)})` : ''}
 · ${workflowLink(p.workflowId, 'workflow')}</div>
${bar(pct, 100, (m ? `${pct.toFixed(0)} % · ${mib(m.dataRemainingBytes)} left · ${mib(m.disk?.bytesPerSec ?? m.memory?.bytesPerSec)}/s · iteration ${m.memoryIteration ?? '–'} · dirty ${m.memoryDirtyRate ?? '–'} pages/s` : esc(p.phase)), 101)}
<div class="meta">create attempts ${attempts}${p.deadline ? ` · deadline ${esc(p.deadline.slice(11, 19))}` : ''}${c ? ` · max downtime ${c.maxDowntimeMs ?? 'default'} ms · auto-converge ${c.autoConverge ? `on ${c.throttlePercent ?? 0} %` : 'off'} · post-copy ${c.postCopyActive ? 'ACTIVE' : c.postCopyAllowed ? 'allowed' : 'off'}` : ''}
${p.waitingFor ? ` · <span class="waiting">waiting for: ${esc(p.waitingFor)}</span>` : ''}${p.cancelRequested ? ' · cancel requested' : ''}${p.lastError ? ` · last error: ${esc(p.lastError)}` : ''}</div>
${p.artifacts.length ? `<div class="meta">artifacts: ${p.artifacts.map((a: Json) => esc(a.name ?? a.pool ?? a.path)).join(', ')}</div>` : ''}
${running ? `<div><button data-act="cancel" data-vm="${esc(p.vm.uuid)}">Cancel</button> <input data-tune="bandwidth" placeholder="MiB/s" size="6" aria-label="Bandwidth for ${esc(p.vm.name)}"> <input data-tune="maxDowntime" placeholder="max downtime ms" size="10" aria-label="Max downtime for ${esc(p.vm.name)}"> <button data-act="tune" data-vm="${esc(p.vm.uuid)}">Tune</button> <button data-act="postcopy" data-vm="${esc(p.vm.uuid)}">Post-copy now</button></div>` : ''}
</div>`;
      })
      .join('') || '<p class="empty">none running</p>';
  $('#evacuations').innerHTML =
    v.evacuations
      .map(
        (e: Json) => `<div class="migration" data-evacuation="${esc(e.host)}"><strong>${esc(e.host)}</strong> ${esc(e.state)} · ${Object.entries(e.counts).filter(([, n]) => n).map(([k, n]) => `${esc(k)} ${n}`).join(', ')}
<ul>${e.vms.map((x: Json) => `<li>${esc(x.vm)}: ${esc(x.status)}${x.phase ? ` (${esc(x.phase)})` : ''}${x.target ? ` → ${esc(x.target)}` : ''}${x.waitingFor ? ` · waiting for ${esc(x.waitingFor)}` : ''}${x.reason ? ` · ${esc(x.reason)}` : ''} ${workflowLink(x.workflowId, 'workflow')}</li>`).join('')}</ul>
${['pause', 'resume', 'cancel'].map((s) => `<button data-evac="${s}" data-host="${esc(e.host)}">${s}</button>`).join(' ')}</div>`,
      )
      .join('') || '<p class="empty">none running</p>';
}

let liveFinished = new Set<string>();
let lastRefresh = Date.now();
function connect(): void {
  const es = new EventSource('/api/events');
  es.addEventListener('open', () => ($('#conn').textContent = 'live'));
  es.addEventListener('error', () => ($('#conn').textContent = 'reconnecting…'));
  es.addEventListener('live', (ev) => {
    const v = JSON.parse((ev as MessageEvent).data);
    renderLive(v);
    // a migration ended or an evacuation came or went: the tables and the history changed; else every 10 s
    const ended = new Set<string>([
      ...v.migrations.filter((p: Json) => ['migrated', 'aborted', 'timed-out', 'cancelled', 'failed'].includes(p.phase)).map((p: Json) => p.workflowId + p.phase),
      ...v.evacuations.map((e: Json) => `evacuation ${e.host}`),
    ]);
    const changed = ended.size !== liveFinished.size || [...ended].some((k) => !liveFinished.has(k));
    if (changed || Date.now() - lastRefresh > 10_000) {
      lastRefresh = Date.now();
      void Promise.all([loadHosts(), loadVms(), ...(changed ? [loadHistory()] : [])]);
    }
    liveFinished = ended;
    $('#conn').textContent = `live · ${v.at.slice(11, 19)}${v.errors.length ? ` · ${v.errors.length} problem(s): ${v.errors[0]}` : ''}`;
  });
}

function migrateDialog(vm: string, name: string): void {
  const d = $<HTMLDialogElement>('#migrate-dialog');
  const form = $<HTMLFormElement>('#migrate-form');
  form.reset();
  $('#plan').hidden = true;
  $('#migrate-vm').textContent = name;
  form.dataset['vm'] = vm;
  d.showModal();
}

function migrateBody(form: HTMLFormElement, dryRun: boolean): Json {
  const f = new FormData(form);
  return {
    vm: form.dataset['vm'], dryRun,
    target: f.get('target'), bandwidth: f.get('bandwidth'), timeout: f.get('timeout'), maxDowntime: f.get('maxDowntime'),
    autoConverge: f.get('autoConverge') === 'on', postCopy: f.get('postCopy') === 'on',
  };
}

function wire(): void {
  $('#vm-filter').addEventListener('input', () => ((vmPage = 0), void loadVms()));
  $('#vm-filter').addEventListener('submit', (e) => e.preventDefault());
  $('#history-filter').addEventListener('submit', (e) => (e.preventDefault(), (historyPage = 0), void loadHistory()));
  document.addEventListener('click', async (e) => {
    const b = (e.target as HTMLElement).closest('button');
    if (!b) return;
    const act = b.dataset['act'];
    if (act === 'migrate') migrateDialog(b.closest('tr')!.dataset['vm']!, b.dataset['name']!);
    else if (act === 'cancel') await act0('/api/cancel', { vm: b.dataset['vm'] }, 'cancel requested: compensation runs now');
    else if (act === 'postcopy') await act0('/api/tune', { vm: b.dataset['vm'], postCopyNow: true }, 'switching to post-copy');
    else if (act === 'tune') {
      const box = b.closest('.migration')!;
      const val = (k: string) => (box.querySelector(`[data-tune=${k}]`) as HTMLInputElement).value;
      await act0('/api/tune', { vm: b.dataset['vm'], bandwidth: val('bandwidth'), maxDowntime: val('maxDowntime') }, 'tuned');
    } else if (act === 'evacuate') {
      const host = b.closest('tr')!.dataset['host']!;
      if (confirm(`Evacuate ${host}: set it to maintenance and move every VM away?`)) await act0('/api/evacuate', { host }, `evacuation of ${host} started`);
    } else if (b.dataset['evac']) await act0('/api/evacuation', { host: b.dataset['host'], signal: b.dataset['evac'] }, `${b.dataset['evac']} sent`);
  });
  document.addEventListener('change', async (e) => {
    const s = e.target as HTMLSelectElement;
    if (s.dataset['act'] === 'state') {
      await act0('/api/host-state', { host: s.closest('tr')!.dataset['host'], state: s.value }, `${s.closest('tr')!.dataset['host']} is now ${s.value}`);
      await loadHosts();
    }
  });
  const form = $<HTMLFormElement>('#migrate-form');
  form.addEventListener('submit', async (e) => {
    const which = (e.submitter as HTMLButtonElement | null)?.value;
    if (which === 'close') return;
    e.preventDefault();
    if (which === 'plan') {
      const pre = $('#plan');
      pre.hidden = false;
      pre.textContent = 'planning…';
      try {
        const r = await api('/api/migrate', migrateBody(form, true));
        const p = r.plan;
        pre.textContent = `${p.wouldMigrate ? 'would migrate' : 'would NOT migrate'} to ${p.target ?? '–'}\n${JSON.stringify(p, null, 2)}`;
      } catch (err) {
        pre.textContent = (err as Error).message;
      }
    } else if (await act0('/api/migrate', migrateBody(form, false), 'migration started')) $<HTMLDialogElement>('#migrate-dialog').close();
  });
}

async function act0(path: string, body: Json, done: string): Promise<boolean> {
  return (await act(path, body, done)) !== null;
}

async function main(): Promise<void> {
  config = await api('/api/config');
  wire();
  await Promise.all([loadHosts(), loadVms(), loadHistory()]);
  connect();
  document.body.dataset['readyMs'] = performance.now().toFixed(0); // from navigation start: bench/ui.ts reads it
  document.body.dataset['ready'] = '1';
}

main().catch((err) => toast(`the page could not load: ${(err as Error).message}`));
