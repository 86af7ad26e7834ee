// CofferClient over a scripted fetch: the requests it builds, how it reports errors,
// and when it retries. (The e2e CLI suite covers it against the real server.)

import { CofferClient, CofferError, type FetchFn } from '@coffer/sdk';
import { failure, json, scripted } from '../helpers/fetch.js';

const TOKEN = 'tok.en-12345';

const coffer503 = (headers: Record<string, string> = {}) =>
  json(503, { error: { code: 'sealed', message: 'Coffer is sealed', requestId: 'req-503' } }, headers);
const networkDown = () => new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
/** The connection broke after the request may have been sent (a server killed mid-request): nobody knows whether it was applied. */
const connectionReset = () => new TypeError('fetch failed', { cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) });
const emptyReply = () => new TypeError('fetch failed', { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) });

function client(fetch: FetchFn, retries = 2): CofferClient {
  return new CofferClient({ address: 'http://127.0.0.1:8200/', token: TOKEN, fetch, retries, retryBaseDelayMs: 0 });
}

describe('CofferClient requests', () => {
  it('sends the token as a bearer token and data as JSON', async () => {
    const { fetch, calls } = scripted(json(200, { namespace: 'app', path: 'db/pw', version: 2, created_at: 'now' }));
    const result = await client(fetch).secrets.put('app', 'db/pw', { password: 'v' }, { type: 'password', cas: 1, maxVersions: 5 });
    expect(result.version).toBe(2);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.method).toBe('PUT');
    expect(calls[0]!.url.href).toBe('http://127.0.0.1:8200/v1/secrets/app/db/pw');
    expect(calls[0]!.headers.Authorization).toBe(`Bearer ${TOKEN}`);
    expect(calls[0]!.body).toEqual({ data: { password: 'v' }, type: 'password', cas: 1, max_versions: 5 });
  });

  it('builds action, folder and query URLs', async () => {
    const { fetch, calls } = scripted(json(200, { keys: [], next_cursor: null }));
    const c = client(fetch);
    await c.secrets.history('app', 'db/pw');
    await c.secrets.get('app', 'db/pw', { version: 3 });
    await c.secrets.list('app', 'db', { recursive: true, limit: 10 });
    await c.secrets.list('app');
    await c.secrets.destroy('app', 'db/pw', [1, 2]);
    await c.namespaces.delete('app', { force: true });
    expect(calls.map((x) => `${x.method} ${x.url.pathname}${x.url.search}`)).toEqual([
      'GET /v1/secrets/app/db/pw:versions',
      'GET /v1/secrets/app/db/pw?version=3',
      'GET /v1/secrets/app/db/?limit=10&recursive=true',
      'GET /v1/secrets/app/',
      'POST /v1/secrets/app/db/pw:destroy',
      'DELETE /v1/namespaces/app?force=true',
    ]);
    expect(calls[4]!.body).toEqual({ versions: [1, 2] });
  });

  it('keeps a path prefix of the address (a reverse proxy mount)', async () => {
    const { fetch, calls } = scripted(json(200, { initialized: true }));
    await new CofferClient({ address: 'https://vault.example/coffer/', fetch }).sys.status();
    expect(calls[0]!.url.href).toBe('https://vault.example/coffer/v1/sys/seal-status');
    expect(calls[0]!.headers.Authorization).toBeUndefined();
  });

  it('refuses an invalid path before sending anything', async () => {
    const { fetch, calls } = scripted(json(200, {}));
    const err = await failure(client(fetch).secrets.get('app', 'db/../admin'));
    expect(err.code).toBe('invalid_argument');
    expect(calls).toHaveLength(0);
  });

  it('follows next_cursor for bulk reads and listAll', async () => {
    const secret = (path: string) => ({ namespace: 'app', path, version: 1, type: 'generic', data: { v: path }, metadata: {}, created_at: 'now' });
    const { fetch, calls } = scripted(
      json(200, { secrets: [secret('a'), secret('b')], withheld: ['db/x'], next_cursor: 'Yg' }),
      json(200, { secrets: [secret('c')], withheld: ['db/y'], next_cursor: null }),
      json(200, { namespaces: [{ name: 'x' }], next_cursor: 'eA' }),
      json(200, { namespaces: [{ name: 'y' }], next_cursor: null }),
    );
    const c = client(fetch);
    const bulk = await c.secrets.bulk('app', 'db');
    expect(bulk.secrets.map((s) => s.path)).toEqual(['a', 'b', 'c']);
    // The withheld names of every page, so a caller can tell a partial set from the whole folder.
    expect(bulk.withheld).toEqual(['db/x', 'db/y']);
    expect(bulk.folder).toBe('db/');
    expect(calls[1]!.url.search).toBe('?cursor=Yg');
    const names: string[] = [];
    for await (const ns of c.namespaces.listAll({ pageSize: 1 })) names.push(ns.name);
    expect(names).toEqual(['x', 'y']);
    expect(calls[3]!.url.search).toBe('?limit=1&cursor=eA');
  });

  it('answers health for sealed and uninitialised servers instead of failing', async () => {
    const { fetch } = scripted(json(503, { initialized: true, sealed: true, server_time_utc: 1 }));
    expect(await client(fetch).sys.health()).toEqual({ initialized: true, sealed: true, server_time_utc: 1 });
  });
});

describe('CofferClient errors', () => {
  it('carries the server status, code, message and request id', async () => {
    const { fetch } = scripted(json(404, { error: { code: 'not_found', message: 'secret "x" not found', requestId: 'req-404' } }));
    const err = await failure(client(fetch).secrets.get('app', 'x'));
    expect({ status: err.status, code: err.code, message: err.message, requestId: err.requestId }).toEqual({
      status: 404,
      code: 'not_found',
      message: 'secret "x" not found',
      requestId: 'req-404',
    });
  });

  it('does not echo a body that is not a Coffer error (an HTML page from a proxy)', async () => {
    const page = '<html>502 upstream said: password=hunter2</html>';
    const { fetch } = scripted(new Response(page, { status: 502, statusText: 'Bad Gateway', headers: { 'x-request-id': 'lb-1' } }));
    const err = await failure(client(fetch).secrets.get('app', 'x'));
    expect(err).toMatchObject({ status: 502, code: 'http_error', message: 'HTTP 502 Bad Gateway', requestId: 'lb-1' });
  });

  it('reports network failures as status 0 "unavailable" and timeouts as "timeout"', async () => {
    const down = await failure(client(scripted(networkDown()).fetch, 0).sys.status());
    expect(down).toMatchObject({ status: 0, code: 'unavailable' });
    expect(down.message).toContain('ECONNREFUSED');

    const hang = (signal: AbortSignal) => new Promise<Response>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    const slow = new CofferClient({ address: 'http://127.0.0.1:8200', fetch: scripted(hang).fetch, timeoutMs: 20, retries: 0 });
    expect(await failure(slow.sys.status())).toMatchObject({ status: 0, code: 'timeout' });
  });

  it('refuses a token that cannot be a header value, without quoting it', () => {
    const token = 'secret-token\nX-Injected: 1';
    let err: unknown;
    try {
      new CofferClient({ address: 'http://127.0.0.1:8200', token });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CofferError);
    expect((err as CofferError).code).toBe('invalid_argument');
    expect((err as CofferError).message).not.toContain('secret-token');
  });

  it('never puts the token or the sent data in an error message', async () => {
    const { fetch } = scripted(json(409, { error: { code: 'cas_mismatch', message: 'check-and-set failed', requestId: 'r' } }));
    const err = await failure(client(fetch).secrets.put('app', 'x', { password: 'hunter2' }, { cas: 1 }));
    expect(err.message).not.toContain(TOKEN);
    expect(err.message).not.toContain('hunter2');
    expect(err.stack ?? '').not.toContain('hunter2');
  });
});

describe('CofferClient retries', () => {
  it('retries reads on 503 and on network errors, then succeeds', async () => {
    const { fetch, calls } = scripted(coffer503(), networkDown(), json(200, { initialized: true, sealed: false }));
    expect(await client(fetch).sys.status()).toEqual({ initialized: true, sealed: false });
    expect(calls).toHaveLength(3);
  });

  it('retries 429 too, and gives up after `retries` extra attempts with the last error', async () => {
    const { fetch, calls } = scripted(json(429, { error: { code: 'rate_limited', message: 'slow down', requestId: 'r' } }));
    const err = await failure(client(fetch, 2).secrets.get('app', 'x'));
    expect(err.code).toBe('rate_limited');
    expect(calls).toHaveLength(3);
  });

  it('does not retry other errors', async () => {
    const { fetch, calls } = scripted(json(500, { error: { code: 'internal', message: 'bug', requestId: 'r' } }));
    await failure(client(fetch).secrets.get('app', 'x'));
    expect(calls).toHaveLength(1);
  });

  it('never retries writes that may have reached the server: a repeat could add a version the first attempt already wrote', async () => {
    for (const answer of [coffer503(), connectionReset(), emptyReply(), json(502, {}), json(504, {})]) {
      const { fetch, calls } = scripted(answer);
      const c = client(fetch);
      await failure(c.secrets.put('app', 'x', { v: '1' }));
      await failure(c.secrets.rollback('app', 'x', 1));
      await failure(c.secrets.delete('app', 'x'));
      expect(calls).toHaveLength(3);
    }
  });

  it('retries any call, a write too, whose connection was refused or whose host did not resolve (it never reached a server)', async () => {
    const dns = new TypeError('fetch failed', { cause: Object.assign(new Error('getaddrinfo EAI_AGAIN'), { code: 'EAI_AGAIN' }) });
    const { fetch, calls } = scripted(networkDown(), dns, json(200, { namespace: 'app', path: 'x', version: 1, created_at: 'now' }));
    await client(fetch).secrets.put('app', 'x', { v: '1' });
    expect(calls.map((c) => c.method)).toEqual(['PUT', 'PUT', 'PUT']);
  });

  it('retries reads on a reset connection, an empty reply, 502 and 504 (a server dying behind a load balancer)', async () => {
    const { fetch, calls } = scripted(connectionReset(), emptyReply(), json(502, {}), json(504, {}), json(200, { sealed: false }));
    await client(fetch, 4).sys.status();
    expect(calls).toHaveLength(5);
  });

  it('never retries what waiting does not cure: a certificate that does not verify, an unknown host', async () => {
    for (const code of ['DEPTH_ZERO_SELF_SIGNED_CERT', 'ERR_TLS_CERT_ALTNAME_INVALID', 'ENOTFOUND']) {
      const { fetch, calls } = scripted(new TypeError('fetch failed', { cause: Object.assign(new Error(code), { code }) }), json(200, { sealed: false }));
      expect((await failure(client(fetch).sys.status())).message).toContain(code);
      expect(calls).toHaveLength(1);
    }
  });

  it('retries a sealed server only twice, whatever the budget (its operators unseal it)', async () => {
    const { fetch, calls } = scripted(coffer503());
    expect((await failure(client(fetch, 30).sys.status())).code).toBe('sealed');
    expect(calls).toHaveLength(3);
  });

  it('stops retrying when the time budget is spent; a budget of 0 fails at the first error', async () => {
    const none = scripted(networkDown(), json(200, { sealed: false }));
    const zero = new CofferClient({ address: 'http://127.0.0.1:8200', fetch: none.fetch, retryBudgetMs: 0 });
    expect((await failure(zero.sys.status())).code).toBe('unavailable');
    expect(none.calls).toHaveLength(1);
    // Retry-After 1 s against a budget of 1.5 s: one wait fits, the second would not.
    const dbDown = scripted(json(503, { error: { code: 'unavailable', message: 'database unavailable', requestId: 'r' } }, { 'retry-after': '1' }));
    const short = new CofferClient({ address: 'http://127.0.0.1:8200', fetch: dbDown.fetch, retries: 100, retryBudgetMs: 1_500 });
    expect((await failure(short.sys.status())).code).toBe('unavailable');
    expect(dbDown.calls).toHaveLength(2);
    expect(() => new CofferClient({ address: 'http://127.0.0.1:8200', retryBudgetMs: -1 })).toThrow(/retryBudgetMs/);
  });

  it('retries version changes that name their versions (a repeat is a no-op)', async () => {
    const { fetch, calls } = scripted(coffer503(), json(200, { namespace: 'app', path: 'x', versions: [1] }));
    await client(fetch).secrets.delete('app', 'x', [1]);
    expect(calls).toHaveLength(2);
  });

  it('honours Retry-After, and gives up at once when it asks for longer than the budget left', async () => {
    const soon = scripted(coffer503({ 'retry-after': '0' }), json(200, { sealed: false }));
    await client(soon.fetch).sys.status();
    expect(soon.calls).toHaveLength(2);

    const later = scripted(coffer503({ 'retry-after': '3600' }), json(200, { sealed: false }));
    expect((await failure(client(later.fetch).sys.status())).code).toBe('sealed');
    expect(later.calls).toHaveLength(1);
  });
});
