/** webui/security.ts: the token rule, the Host check, and the cross-site rules for state-changing requests. */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { ACTION_HEADER, refusal, uiToken } from '../../webui/security';

const req = (method: string, headers: Record<string, string>): IncomingMessage => ({ method, headers }) as unknown as IncomingMessage;
const HOSTS = ['127.0.0.1:8780', 'localhost:8780'];
const post = { 'content-type': 'application/json', [ACTION_HEADER]: '1', host: '127.0.0.1:8780' };

describe('ferry ui security', () => {
  it('needs a token beyond the loopback: FERRY_UI_TOKEN or a generated one', () => {
    expect(uiToken('127.0.0.1', {})).toBeNull();
    expect(uiToken('::1', {})).toBeNull();
    expect(uiToken('0.0.0.0', {})).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(uiToken('10.0.0.5', { FERRY_UI_TOKEN: 'a-long-enough-token-123' })).toBe('a-long-enough-token-123');
    expect(() => uiToken('0.0.0.0', { FERRY_UI_TOKEN: 'short' })).toThrow(/at least 16/);
  });

  it('refuses a request without the token, or with a wrong one', () => {
    const o = { token: 'the-token-0123456789', hosts: HOSTS };
    expect(refusal(req('GET', { host: '127.0.0.1:8780' }), o)?.status).toBe(401);
    expect(refusal(req('GET', { host: '127.0.0.1:8780', authorization: 'Bearer nope' }), o)?.status).toBe(401);
    expect(refusal(req('GET', { host: '127.0.0.1:8780', authorization: 'Bearer the-token-0123456789' }), o)).toBeNull();
    expect(refusal(req('GET', { host: '127.0.0.1:8780', cookie: 'a=b; ferry_ui_token=the-token-0123456789' }), o)).toBeNull();
  });

  it('without a token answers only to its own Host (no DNS rebinding); with one, to any name it is reached by', () => {
    expect(refusal(req('GET', { host: 'evil.example:8780' }), { token: null, hosts: HOSTS })?.status).toBe(421);
    const t = 'the-token-0123456789';
    expect(refusal(req('GET', { host: 'ferry.example:8780', authorization: `Bearer ${t}` }), { token: t, hosts: ['0.0.0.0:8780'] })).toBeNull();
  });

  it('refuses cross-site and header-less state-changing requests', () => {
    const o = { token: null, hosts: HOSTS };
    expect(refusal(req('POST', post), o)).toBeNull();
    expect(refusal(req('POST', { ...post, origin: 'http://127.0.0.1:8780' }), o)).toBeNull();
    expect(refusal(req('POST', { ...post, origin: 'http://evil.example' }), o)?.status).toBe(403);
    expect(refusal(req('POST', { host: '127.0.0.1:8780', 'content-type': 'application/json' }), o)?.status).toBe(403);
    expect(refusal(req('POST', { ...post, 'content-type': 'text/plain' }), o)?.status).toBe(415);
  });
});
