// The HTTP edge: what reaches a handler is exactly what the audit entry names (case-sensitive
// routes, origin-form targets only, percent-decoding as the route does it); text PostgreSQL
// cannot store and integers its columns cannot hold are refused with 400 before any handler
// runs; and a client cannot hold a connection by declaring or trickling a body.
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { ROUTE_TEMPLATES } from '@coffer/server/http/route-template';
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, rawRequest, startTestServer, type TestStore } from '../helpers/server.js';

/** A valid instance of a route template (names that pass every name check). */
function instantiate(template: string): string {
  return template
    .replace(':ns', 'edge')
    .replace(':folder/', 'app/')
    .replace(':folder', 'app/')
    .replace(':path', 'app/db')
    .replace(':name', 'edge');
}

describeEachStorage('HTTP edge', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let token: string;
  let limited: string;
  let publicKey: string;
  /** Audit entries matching `query`, oldest first. */
  const auditEntries = async (query: string) => (await api(base, 'GET', `/v1/sys/audit?order=asc&limit=1000&${query}`, { token })).body.entries as any[];
  const lastEntry = async () => (await api(base, 'GET', '/v1/sys/audit?limit=1', { token })).body.entries[0];

  beforeAll(async () => {
    publicKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    store = await createStore(kind);
    server = await startTestServer(store);
    base = server.url;
    ({ token } = await initAndUnseal(base, 1, 1));
    expect((await api(base, 'POST', '/v1/namespaces', { token, body: { name: 'edge' } })).status).toBe(201);
    expect((await api(base, 'PUT', '/v1/secrets/edge/app/db', { token, body: { data: { password: 'pw-edge' } } })).status).toBe(200);
    const policy = { rules: [{ namespace: 'edge', path: 'app/*', capabilities: ['read', 'list'] }] };
    expect((await api(base, 'PUT', '/v1/sys/policies/edge-read', { token, body: policy })).status).toBe(201);
    limited = (await api(base, 'POST', '/v1/auth/token/create', { token, body: { policies: ['edge-read'] } })).body.auth.client_token;
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  describe('routing and the audit entry agree (finding 3)', () => {
    it('routes case-sensitively: a case variant of any fixed segment of any route is no endpoint', async () => {
      const served: string[] = [];
      for (const template of ROUTE_TEMPLATES) {
        const path = instantiate(template);
        const segments = path.split('/');
        for (let i = 1; i < segments.length; i++) {
          // Only the template's own words: the names filled in are the handlers' business.
          if (!template.split('/').includes(segments[i]!) || segments[i]!.toUpperCase() === segments[i]) continue;
          const variant = segments.map((s, j) => (j === i ? s.toUpperCase() : s)).join('/');
          for (const method of ['GET', 'POST']) {
            const res = await rawRequest(base, method, variant, token);
            if (res.status !== 404) served.push(`${method} ${variant} → ${res.status}`);
          }
        }
      }
      expect(served).toEqual([]);
      // The known spellings of the finding, read with a token that may read the secret.
      for (const path of ['/V1/SECRETS/edge/app/db', '/v1/Secrets/edge/app/db', '/v1/secrets/edge/app/db:VERSIONS', '/V1/bulk/edge/app/']) {
        const res = await rawRequest(base, 'GET', path, limited);
        expect({ path, status: res.status, code: res.body?.error?.code }).toEqual({ path, status: 404, code: 'not_found' });
      }
    });

    it('refuses absolute-form, asterisk, fragment and backslash targets before routing', async () => {
      const address = new URL(base);
      for (const target of [
        `http://${address.host}/v1/secrets/edge/app/db`,
        `HTTP://${address.host}/v1/secrets/edge/app/db`,
        '*',
        'v1/secrets/edge/app/db',
        '/v1/secrets/edge/app/db#/../../x',
        '/v1/secrets/edge/app/db#',
        '/v1\\secrets/edge/app/db',
        '/v1/secrets/edge/app/db\u00a0',
      ]) {
        const res = await rawRequest(base, 'GET', target, token);
        expect({ target, status: res.status, code: res.body?.error?.code }).toEqual({ target, status: 400, code: 'invalid_request' });
      }
    });

    it('names in the audit entry what the handler served, percent-decoded as the route decodes it', async () => {
      const cases: Array<[string, number, string | null, string | null]> = [
        // [target, status, audited namespace, audited path]
        ['/v1/namespaces/%65dge', 200, 'edge', null],
        ['/v1/namespaces/%65dge/kek', 200, 'edge', null],
        ['/v1/byok/namespaces/%65dge/import-params?algorithm=RSAES_OAEP_SHA_256', 200, 'edge', null],
        // The secrets route takes no percent-encoding: refused, and recorded as sent.
        ['/v1/secrets/edge/app/d%62', 400, 'edge', 'app/d%62'],
        ['/v1/secrets/edge/app%2Fdb', 400, 'edge', 'app%2Fdb'],
        ['/v1/auth/userpass/users/%61lice', 404, null, 'alice'],
        ['/v1/sys/policies/edge%2Dread', 200, null, 'edge-read'],
      ];
      for (const [target, status, namespace, path] of cases) {
        const res = await rawRequest(base, 'GET', target, token);
        expect({ target, status: res.status }).toEqual({ target, status });
        const entry = await lastEntry();
        expect({ target, namespace: entry.namespace, path: entry.path }).toEqual({ target, namespace, path });
      }
    });

    it('finds every read of a secret by namespace, however the request was spelled', async () => {
      const before = (await auditEntries('namespace=edge&action=secret.read&outcome=success')).length;
      let served = 0;
      const address = new URL(base);
      for (const target of [
        '/v1/secrets/edge/app/db',
        '/V1/SECRETS/edge/app/db',
        '/v1/Secrets/edge/app/db',
        `http://${address.host}/v1/secrets/edge/app/db`,
        '/v1/secrets/edge/app/db#/../../x',
        '/v1/secrets/edge/app/d%62',
        '/v1/secrets/edge/./app/db',
      ]) {
        const res = await rawRequest(base, 'GET', target, limited);
        if (res.status === 200) served++;
      }
      expect(served).toBe(1);
      const after = await auditEntries('namespace=edge&action=secret.read&outcome=success');
      expect(after.length - before).toBe(served);
      expect(after.at(-1)).toMatchObject({ namespace: 'edge', path: 'app/db', status: 200 });
    });
  });

  describe('text and integers the database cannot hold are bad input (finding 8)', () => {
    const N = '\u0000';
    const LONE = '\ud800';
    // Every row has a body slot: jest would take a missing third argument for a `done` callback.
    const requests: Array<[string, string, unknown]> = [
      ['GET', '/v1/secrets/edge/app/db?version=9999999999', undefined],
      ['GET', '/v1/secrets/edge/app/db?version=2147483648', undefined],
      ['PUT', '/v1/secrets/edge/app/db', { data: { password: 'x' }, cas: 2147483648 }],
      ['POST', '/v1/secrets/edge/app/db:rollback', { version: 9999999999 }],
      ['POST', '/v1/secrets/edge/app/db:delete', { versions: [2147483648] }],
      ['POST', '/v1/escrow/requests', { namespace: 'edge', kek_version: 2147483648, public_key: '(a valid key)' }],
      ['PUT', '/v1/secrets/edge/app/nul', { data: { password: 'x' }, metadata: { note: `a${N}` } }],
      ['PUT', '/v1/secrets/edge/app/nul', { data: { password: 'x' }, metadata: { note: LONE } }],
      ['PUT', '/v1/secrets/edge/app/nul', { data: { password: `x${N}` } }],
      ['PUT', '/v1/secrets/edge/app/nul', { data: { [`pass${N}`]: 'x' } }],
      ['POST', '/v1/namespaces', { name: 'edge-nul', description: N }],
      ['POST', '/v1/namespaces', { name: 'edge-nul', description: `a${LONE}b` }],
      ['PATCH', '/v1/namespaces/edge', { description: N }],
      ['PUT', '/v1/sys/policies/nul', { rules: [{ namespace: `a${N}`, path: '*', capabilities: ['read'] }] }],
      ['PUT', '/v1/sys/policies/nul', { rules: [{ namespace: 'a', path: LONE, capabilities: ['read'] }] }],
      ['GET', '/v1/sys/policies/%00', undefined],
      ['GET', '/v1/sys/audit?path=%00', undefined],
      ['GET', '/v1/sys/audit?namespace=a%00', undefined],
      ['GET', '/v1/sys/audit?identity=%00', undefined],
      ['PUT', '/v1/auth/groups/nul', { members: [`a${N}`] }],
      ['PUT', '/v1/auth/userpass/users/nul', { password: 'long-enough', groups: [`a${N}`] }],
      ['POST', '/v1/auth/token/create', { policies: ['edge-read'], display_name: `a${N}` }],
      ['POST', '/v1/auth/token/create', { policies: ['edge-read'], metadata: { k: N } }],
      ['POST', '/v1/auth/token/lookup-accessor', { accessor: N }],
      ['POST', '/v1/auth/token/revoke-accessor', { accessor: N }],
      ['POST', '/v1/auth/token/revoke-identity', { identity: N }],
      ['POST', '/v1/auth/userpass/login', { username: N, password: 'x' }],
      ['POST', '/v1/auth/approle/login', { role_id: N, secret_id: 'x' }],
      ['PUT', '/v1/auth/approle/roles/nul', { policies: [N] }],
      ['PUT', '/v1/auth/cert/roles/nul', { allowed_common_names: [N] }],
      ['GET', '/v1/auth/jwt/roles/%00', undefined],
      ['POST', '/v1/sys/capabilities-self', { namespace: N, path: '' }],
      ['POST', '/v1/sys/audit/hash', { input: LONE }],
    ];

    it.each(requests)('%s %s → 400 invalid_request, nothing changed', async (method, path, body) => {
      const namespaces = (await api(base, 'GET', '/v1/namespaces', { token })).body;
      const withKey = body && typeof body === 'object' && 'public_key' in body ? { ...body, public_key: publicKey } : body;
      const res = await api(base, method, path, { token, body: withKey });
      expectError(res, 400, 'invalid_request');
      expect((await api(base, 'GET', '/v1/namespaces', { token })).body).toEqual(namespaces);
      const secret = await api(base, 'GET', '/v1/secrets/edge/app/db', { token });
      expect(secret.body).toMatchObject({ version: 1, data: { password: 'pw-edge' }, metadata: {} });
    });

    it('also refuses U+0000 sent as a JSON escape, deep inside the body', async () => {
      const raw = '{"data":{"password":"x"},"metadata":{"a":"b"},"type":"generic","x":[[[[[{"k":"\\u0000"}]]]]]}';
      expectError(await api(base, 'PUT', '/v1/secrets/edge/app/nul', { token, rawBody: raw }), 400, 'invalid_request');
      const deep = `${'['.repeat(100_000)}"\\u0000"${']'.repeat(100_000)}`;
      expectError(await api(base, 'PUT', '/v1/secrets/edge/app/nul', { token, rawBody: deep }), 400, 'invalid_request');
    });

    it('still reads every body there is: on a GET, and chunked without a Content-Length', async () => {
      // The body parser is skipped only for requests that carry no body at all (http/app.ts).
      // fetch sends no body with a GET: node:http does.
      const getWithBody = (body: string) =>
        new Promise<{ status: number; code: string | undefined }>((resolve, reject) => {
          const url = new URL(base);
          const req = http.request(
            { host: url.hostname, port: url.port, method: 'GET', path: '/v1/secrets/edge/app/db', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
            (res) => {
              let text = '';
              res.setEncoding('utf8');
              res.on('data', (chunk: string) => (text += chunk));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, code: (JSON.parse(text) as { error?: { code?: string } }).error?.code }));
            },
          );
          req.on('error', reject);
          req.end(body);
        });
      expect(await getWithBody('{not json')).toEqual({ status: 400, code: 'invalid_json' });
      expect(await getWithBody('{"k":"\\u0000"}')).toEqual({ status: 400, code: 'invalid_request' });
      const chunked = (text: string) =>
        new ReadableStream<Uint8Array>({
          start(c) {
            c.enqueue(new TextEncoder().encode(text));
            c.close();
          },
        });
      const send = (text: string) =>
        fetch(`${base}/v1/secrets/edge/app/chunked`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: chunked(text),
          duplex: 'half',
        } as RequestInit);
      const refused = await send('{"data":{"password":"\\u0000"}}');
      expect(refused.status).toBe(400);
      const written = await send('{"data":{"password":"pw-chunked"}}');
      expect(written.status).toBe(200);
      expect((await api(base, 'GET', '/v1/secrets/edge/app/chunked', { token })).body.data).toEqual({ password: 'pw-chunked' });
    });

    it('keeps the audit chain intact and the server serving', async () => {
      expect((await api(base, 'GET', '/v1/sys/audit/verify', { token })).body).toMatchObject({ ok: true });
      expect((await api(base, 'GET', '/v1/sys/health')).status).toBe(200);
      expect((await api(base, 'GET', '/v1/secrets/edge/app/nul', { token })).status).toBe(404);
    });
  });
});

/** One request over a raw socket, optionally trickling one byte a second: the answer, and whether the server closed. */
function exchange(base: string, head: string, trickle: boolean): Promise<{ response: string; closed: boolean }> {
  const url = new URL(base);
  return new Promise((resolve) => {
    let response = '';
    let ticker: NodeJS.Timeout | undefined;
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(head);
      if (trickle) ticker = setInterval(() => socket.write('a'), 1000);
    });
    // Generous for a busy machine; the server is configured to give up much sooner.
    const giveUp = setTimeout(() => finish(false), 30_000);
    const finish = (closed: boolean) => {
      clearInterval(ticker);
      clearTimeout(giveUp);
      socket.destroy();
      resolve({ response, closed });
    };
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (response += chunk));
    socket.on('error', () => {});
    socket.on('close', () => finish(true));
  });
}

const statusOf = (response: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);
const jsonOf = (response: string) => JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4));

describe('request time and size bounds (finding 12)', () => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;

  beforeAll(async () => {
    store = await createStore('pglite');
    server = await startTestServer(store, { requestTimeoutSeconds: 2 });
    base = server.url;
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('cuts a body that trickles in past the request timeout: 408, connection closed', async () => {
    const { response, closed } = await exchange(base, 'POST /v1/sys/unseal HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{', true);
    expect(closed).toBe(true);
    expect(statusOf(response)).toBe(408);
    expect(jsonOf(response)).toEqual({ error: { code: 'request_timeout', message: expect.any(String) } });
  });

  it('cuts headers that never end', async () => {
    const { response, closed } = await exchange(base, 'GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n', false);
    expect(closed).toBe(true);
    expect(statusOf(response)).toBe(408);
  });

  it('answers 413 to an oversized declared body without reading it, and closes', async () => {
    // With a long request timeout, only the Content-Length check can answer before the body arrives.
    const other = await createStore('pglite');
    const patient = await startTestServer(other, { requestTimeoutSeconds: 600 });
    try {
      const { response, closed } = await exchange(
        patient.url,
        'PUT /v1/secrets/ns/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{',
        true,
      );
      expect(closed).toBe(true);
      expect(statusOf(response)).toBe(413);
      expect(jsonOf(response).error.code).toBe('payload_too_large');
    } finally {
      await patient.stop();
      await other.cleanup();
    }
  });

  it('keeps the connection of a refused body that arrived whole usable', async () => {
    const url = new URL(base);
    const socket = net.connect(Number(url.port), url.hostname);
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (received += chunk));
    const waitFor = async (pattern: RegExp) => {
      for (let i = 0; i < 600 && !pattern.test(received); i++) await new Promise((r) => setTimeout(r, 50));
      return pattern.test(received);
    };
    try {
      const body = 'x'.repeat(1024 * 1024 + 1);
      socket.write(`PUT /v1/sys/unseal HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      expect(await waitFor(/^HTTP\/1\.1 413 [^]*"payload_too_large"[^]*\}\}$/)).toBe(true);
      // Longer than the time a body still arriving is given before its connection is cut.
      await new Promise((r) => setTimeout(r, 2500));
      socket.write('GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(await waitFor(/HTTP\/1\.1 501 /)).toBe(true);
    } finally {
      socket.destroy();
    }
  });

  it('answers what the HTTP parser refuses with the JSON error envelope', async () => {
    const cases: Array<[string, number, string]> = [
      ['FOO /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n', 405, 'method_not_allowed'],
      ['CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n', 405, 'method_not_allowed'],
      ['GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n', 417, 'invalid_request'],
      [`GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'invalid_request'],
      ['GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', 400, 'invalid_request'],
      ['GET /v1/sys/health\u0001 HTTP/1.1\r\n\r\n', 400, 'invalid_request'],
    ];
    for (const [head, status, code] of cases) {
      const { response, closed } = await exchange(base, head, false);
      expect({ head: head.slice(0, 40), closed, status: statusOf(response), code: jsonOf(response).error?.code }).toEqual({
        head: head.slice(0, 40),
        closed: true,
        status,
        code,
      });
    }
  });
});
