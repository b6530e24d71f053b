/**
 * `ferry ui`: one node:http server for the page (static assets bundled by scripts/build-webui.cjs into
 * dist/webui/assets), a small JSON API over UiApi and a server-sent event stream of the live view. Binds
 * 127.0.0.1 by default; every request passes security.ts's checks first.
 */
import fs from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';
import { HOST_STATES } from '../common/types';
import { Refused, UiApi, message, PAGE_SIZE, type LiveView } from './api';
import { isLoopback, refusal, tokenOk, TOKEN_COOKIE } from './security';
import type { FerryClient } from '../client';
import type { Inventory } from '../inventory';

export interface UiServerOptions {
  inventory: Inventory;
  ferry: FerryClient;
  /** Address to bind (default 127.0.0.1). */
  listen?: string;
  port?: number;
  /** Required from every request when set (security.ts's uiToken gives one for a non-loopback --listen). */
  token: string | null;
  /** The Temporal Web UI's base URL, for links to each workflow. */
  temporalUi: string;
  /** How often the live view is refreshed and pushed (ms). */
  liveIntervalMs?: number;
}

export interface UiServer {
  url: string;
  server: http.Server;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = { '.js': 'text/javascript', '.css': 'text/css', '.html': 'text/html; charset=utf-8', '.png': 'image/png' };

/** dist/webui/assets: beside the compiled server, or (running from source) in the repository's dist/. */
export function assetsDir(): string {
  const candidates = [path.join(__dirname, 'assets'), path.join(__dirname, '..', 'dist', 'webui', 'assets')];
  const found = candidates.find((d) => fs.existsSync(path.join(d, 'index.html')));
  if (!found) throw new Error(`the web UI's assets are not built (looked in ${candidates.join(', ')}): run \`npm run build\``);
  return found;
}

export async function startUiServer(o: UiServerOptions): Promise<UiServer> {
  if (o.token === null && !isLoopback(o.listen ?? '127.0.0.1')) throw new Error('listening beyond the loopback needs a token');
  const assets = assetsDir();
  const api = new UiApi(o.inventory, o.ferry);
  const live = new LiveFeed(api, o.liveIntervalMs ?? 1000);
  let hosts: string[] = [];
  const config = { temporalUi: o.temporalUi.replace(/\/$/, ''), namespace: o.ferry.client.options.namespace, pageSize: PAGE_SIZE, hostStates: HOST_STATES };

  const routes: Record<string, (q: URLSearchParams, body: Record<string, unknown>) => Promise<unknown>> = {
    'GET /api/config': async () => config,
    'GET /api/hosts': () => api.hosts(),
    'GET /api/vms': (q) => api.vms({ page: pageOf(q), ...opt(q, 'q') }),
    'GET /api/history': (q) => api.history({ page: pageOf(q), ...opt(q, 'vm'), ...opt(q, 'host'), ...opt(q, 'result'), ...opt(q, 'since'), ...opt(q, 'until') }),
    'GET /api/live': () => live.current(),
    'POST /api/migrate': (_q, b) => api.migrate(b),
    'POST /api/cancel': (_q, b) => api.cancel(b),
    'POST /api/tune': (_q, b) => api.tune(b),
    'POST /api/host-state': (_q, b) => api.setHostState(b),
    'POST /api/evacuate': (_q, b) => api.evacuate(b),
    'POST /api/evacuation': (_q, b) => api.evacuationSignal(b),
  };

  const server = http.createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => send(res, 500, { error: message(err) }));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://ferry.invalid');
    const queryToken = url.pathname === '/' ? url.searchParams.get('token') : null;
    const refused = refusal(req, { token: o.token, hosts, queryToken });
    if (refused) return send(res, refused.status, { error: refused.message });
    if (queryToken !== null && o.token !== null && tokenOk(o.token, queryToken)) {
      // the printed URL's token becomes a cookie only this origin's same-site requests carry; drop it from the URL
      res.writeHead(303, { location: '/', 'set-cookie': `${TOKEN_COOKIE}=${encodeURIComponent(o.token)}; HttpOnly; SameSite=Strict; Path=/` });
      return void res.end();
    }
    if (req.method === 'GET' && url.pathname === '/api/events') return live.subscribe(res);
    const route = routes[`${req.method} ${url.pathname}`];
    if (route) {
      const body = req.method === 'POST' ? await readJson(req) : {};
      try {
        return send(res, 200, await route(url.searchParams, body));
      } catch (err) {
        if (err instanceof Refused) return send(res, 400, { error: err.message });
        throw err;
      }
    }
    if (req.method === 'GET') return serveFile(res, assets, url.pathname === '/' ? 'index.html' : url.pathname.replace(/^\/assets\//, ''));
    send(res, 404, { error: `no ${req.method} ${url.pathname}` });
  }

  const listen = o.listen ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 8780, listen, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const shown = listen.includes(':') ? `[${listen}]` : listen;
  hosts = [`${shown}:${port}`, ...(isLoopback(listen) ? [`localhost:${port}`, `127.0.0.1:${port}`] : [])];
  return {
    url: `http://${shown}:${port}`,
    server,
    async close() {
      live.stop();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The live view, computed once per interval while anyone listens, pushed to every subscriber. */
class LiveFeed {
  private readonly clients = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | null = null;
  private last: LiveView | null = null;

  constructor(
    private readonly api: UiApi,
    private readonly intervalMs: number,
  ) {}

  async current(): Promise<LiveView> {
    this.last = await this.api.live();
    return this.last;
  }

  subscribe(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    this.clients.add(res);
    res.on('close', () => this.clients.delete(res));
    if (this.last) res.write(frame(this.last));
    this.timer ??= setTimeout(() => void this.tick(), 0);
  }

  private async tick(): Promise<void> {
    if (this.clients.size === 0) {
      this.timer = null;
      return;
    }
    try {
      const text = frame(await this.current());
      for (const c of this.clients) c.write(text);
    } catch (err) {
      for (const c of this.clients) c.write(`event: problem\ndata: ${JSON.stringify(message(err))}\n\n`);
    }
    this.timer = setTimeout(() => void this.tick(), this.intervalMs);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const c of this.clients) c.end();
  }
}

function frame(v: LiveView): string {
  return `event: live\ndata: ${JSON.stringify(v)}\n\n`;
}

function pageOf(q: URLSearchParams): number {
  const n = Number(q.get('page') ?? '0');
  if (!Number.isInteger(n) || n < 0) throw new Refused(`page must be a whole number (got ${q.get('page')})`);
  return n;
}

function opt(q: URLSearchParams, key: string): Record<string, string> {
  const v = q.get(key);
  return v === null || v === '' ? {} : { [key]: v };
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let text = '';
  for await (const chunk of req) {
    text += chunk;
    if (text.length > 64 * 1024) throw new Refused('request body too large');
  }
  if (text === '') return {};
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // answered below
  }
  throw new Refused('the request body must be one JSON object');
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(JSON.stringify(body));
}

function serveFile(res: ServerResponse, dir: string, name: string): void {
  const file = path.join(dir, path.normalize(name).replace(/^(\.\.[/\\])+/, ''));
  if (!file.startsWith(dir + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) return send(res, 404, { error: `no ${name}` });
  res.writeHead(200, {
    'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
  });
  fs.createReadStream(file).pipe(res);
}
