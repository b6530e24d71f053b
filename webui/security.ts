/**
 * Who may talk to `ferry ui`: a token when it listens beyond the loopback, the Host header it answers to (no DNS
 * rebinding), and for every state-changing request a same-origin check plus a custom header a cross-site form or
 * a no-CORS fetch cannot send. Each rule once, here.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export const TOKEN_COOKIE = 'ferry_ui_token';
/** The header every state-changing request carries (set by the page's fetch; forces a CORS preflight cross-site). */
export const ACTION_HEADER = 'x-ferry-ui';

export function isLoopback(address: string): boolean {
  return address === 'localhost' || address === '::1' || /^127\.\d+\.\d+\.\d+$/.test(address);
}

/** The token a --listen instance requires: FERRY_UI_TOKEN, else a fresh random one (printed by `ferry ui`). */
export function uiToken(listen: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const given = env['FERRY_UI_TOKEN'];
  if (given !== undefined && given !== '') {
    if (given.length < 16) throw new Error('FERRY_UI_TOKEN must be at least 16 characters: choose a longer random one');
    return given;
  }
  return isLoopback(listen) ? null : randomBytes(24).toString('base64url');
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

/** The token the request presents: `Authorization: Bearer …` or the cookie the page got from `/?token=…`. */
export function presentedToken(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) return auth.slice('Bearer '.length).trim();
  return cookie(req, TOKEN_COOKIE);
}

export function tokenOk(token: string | null, presented: string | undefined): boolean {
  return token === null || (presented !== undefined && same(token, presented));
}

/**
 * Why a request is refused before routing (null: go on). Without a token (loopback) only the server's own Host
 * names are answered, so a page on another name resolving to 127.0.0.1 (DNS rebinding) gets nothing; with a
 * token any Host is (a --listen on 0.0.0.0 is reached by names the server cannot know), the token being the guard.
 */
export function refusal(req: IncomingMessage, o: { token: string | null; hosts: readonly string[]; queryToken?: string | null }): { status: number; message: string } | null {
  const host = req.headers.host ?? '';
  if (o.token === null && !o.hosts.includes(host)) {
    return { status: 421, message: `this server answers to ${o.hosts.join(' or ')}, not "${host}": open it by that address` };
  }
  const presented = presentedToken(req) ?? o.queryToken ?? undefined;
  if (!tokenOk(o.token, presented)) {
    return { status: 401, message: 'a token is required: open the URL `ferry ui` printed (…/?token=…) or send Authorization: Bearer <token>' };
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${host}`) return { status: 403, message: `cross-site request from ${origin} refused` };
    if (req.headers[ACTION_HEADER] !== '1') return { status: 403, message: `state-changing requests need the ${ACTION_HEADER} header (sent by the page)` };
    if (!(req.headers['content-type'] ?? '').startsWith('application/json')) return { status: 415, message: 'send the request as application/json' };
  }
  return null;
}
