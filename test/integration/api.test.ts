// The HTTP API, route by route: each success and its 4xx cases, on PGlite and on PostgreSQL.
import http from 'node:http';
import { api, rawRequest, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';
import type { RunningServer } from '@coffer/server/server';

describeEachStorage('Coffer HTTP API', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let token: string;
  let shares: string[];
  const auth = () => ({ token });

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store, { maxRequestBytes: 64 * 1024, maxPageSize: 50 });
    base = server.url;
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  describe('sys: before init', () => {
    it('reports uninitialised and sealed; health is 501', async () => {
      const status = await api(base, 'GET', '/v1/sys/seal-status');
      expect(status.status).toBe(200);
      expect(status.body).toMatchObject({ initialized: false, sealed: true, progress: 0 });
      expect((await api(base, 'GET', '/v1/sys/health')).status).toBe(501);
    });

    it('refuses to unseal before init', async () => {
      expectError(await api(base, 'POST', '/v1/sys/unseal', { body: { share: 'AAAA' } }), 400, 'not_initialized');
    });

    it('answers data endpoints with 503 sealed', async () => {
      expectError(await api(base, 'GET', '/v1/namespaces'), 503, 'sealed');
      expectError(await api(base, 'GET', '/v1/secrets/x/y'), 503, 'sealed');
    });

    it.each([
      [{ shares: 0, threshold: 1 }],
      [{ shares: 3, threshold: 4 }],
      [{ shares: 3, threshold: 1 }],
      [{ shares: 256, threshold: 2 }],
      [{ shares: '3', threshold: 2 }],
      [{ shares: 3, threshold: 2, extra: true }],
    ])('rejects init %j with 400 and stays uninitialised', async (body) => {
      expectError(await api(base, 'POST', '/v1/sys/init', { body }), 400, 'invalid_request');
      expect((await api(base, 'GET', '/v1/sys/seal-status')).body.initialized).toBe(false);
    });
  });

  describe('sys: init and unseal', () => {
    it('initialises once, returning shares and a root token', async () => {
      const init = await api(base, 'POST', '/v1/sys/init', { body: { shares: 3, threshold: 2 } });
      expect(init.status).toBe(200);
      expect(init.body.shares).toHaveLength(3);
      expect(new Set(init.body.shares).size).toBe(3);
      expect(init.body.threshold).toBe(2);
      expect(init.body.root_token.split('.')).toHaveLength(3);
      token = init.body.root_token;
      shares = init.body.shares;
      expectError(await api(base, 'POST', '/v1/sys/init', { body: { shares: 1, threshold: 1 } }), 409, 'already_initialized');
    });

    it('stays sealed after init', async () => {
      expect((await api(base, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ initialized: true, sealed: true, threshold: 2, shares: 3 });
      expect((await api(base, 'GET', '/v1/sys/health')).status).toBe(503);
      expectError(await api(base, 'GET', '/v1/namespaces', auth()), 503, 'sealed');
    });

    it('rejects malformed shares without counting them', async () => {
      expectError(await api(base, 'POST', '/v1/sys/unseal', { body: { share: 'not a share!' } }), 400, 'invalid_shares');
      expectError(await api(base, 'POST', '/v1/sys/unseal', { body: { share: Buffer.alloc(10).toString('base64') } }), 400, 'invalid_shares');
      expectError(await api(base, 'POST', '/v1/sys/unseal', { body: {} }), 400, 'invalid_request');
      expect((await api(base, 'GET', '/v1/sys/seal-status')).body.progress).toBe(0);
    });

    it('detects a wrong share once the threshold is met, resets progress and stays sealed', async () => {
      const first = await api(base, 'POST', '/v1/sys/unseal', { body: { share: shares[0] } });
      expect(first.body).toMatchObject({ sealed: true, progress: 1 });
      // A well-formed share of some other root key.
      const alien = Buffer.from(shares[1]!, 'base64');
      alien[0] = alien[0]! ^ 0xff;
      expectError(await api(base, 'POST', '/v1/sys/unseal', { body: { share: alien.toString('base64') } }), 400, 'invalid_shares');
      expect((await api(base, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ sealed: true, progress: 0 });
    });

    it('counts a repeated share once', async () => {
      await api(base, 'POST', '/v1/sys/unseal', { body: { share: shares[2] } });
      const again = await api(base, 'POST', '/v1/sys/unseal', { body: { share: shares[2] } });
      expect(again.body).toMatchObject({ sealed: true, progress: 1 });
    });

    it('resets progress on request', async () => {
      const reset = await api(base, 'POST', '/v1/sys/unseal', { body: { reset: true } });
      expect(reset.body).toMatchObject({ sealed: true, progress: 0 });
    });

    it('unseals with any threshold of shares, hex accepted', async () => {
      await api(base, 'POST', '/v1/sys/unseal', { body: { share: Buffer.from(shares[2]!, 'base64').toString('hex') } });
      const done = await api(base, 'POST', '/v1/sys/unseal', { body: { share: shares[0] } });
      expect(done.body).toMatchObject({ sealed: false, progress: 0 });
      expect((await api(base, 'GET', '/v1/sys/health')).status).toBe(200);
    });
  });

  describe('authentication', () => {
    it('requires a token on every data endpoint', async () => {
      for (const [method, path] of [
        ['GET', '/v1/namespaces'],
        ['POST', '/v1/namespaces'],
        ['GET', '/v1/namespaces/x'],
        ['DELETE', '/v1/namespaces/x'],
        ['GET', '/v1/secrets/x/a'],
        ['PUT', '/v1/secrets/x/a'],
        ['GET', '/v1/secrets/x/'],
        ['GET', '/v1/bulk/x/'],
        ['POST', '/v1/sys/seal'],
        ['GET', '/v1/auth/token/lookup-self'],
      ] as const) {
        const res = await api(base, method, path, { body: method === 'GET' ? undefined : {} });
        expectError(res, 401, 'unauthenticated');
      }
    });

    it('rejects a malformed token, a forged signature, alg none and a wrong audience', async () => {
      const [h, p] = token.split('.');
      const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
      const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const forged = `${h}.${p}.${Buffer.alloc(32, 7).toString('base64url')}`;
      const none = `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`;
      const wrongAud = `${h}.${b64({ ...claims, aud: 'other' })}.${token.split('.')[2]}`;
      for (const bad of ['garbage', forged, none, wrongAud]) {
        expectError(await api(base, 'GET', '/v1/namespaces', { token: bad }), 401, 'unauthenticated');
      }
    });

    it('accepts the X-Coffer-Token header and looks the token up', async () => {
      const res = await api(base, 'GET', '/v1/auth/token/lookup-self', { headers: { 'x-coffer-token': token } });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ identity: 'root', policies: ['root'], expires_at: null });
      expect(res.text).not.toContain(token);
    });
  });

  describe('namespaces', () => {
    it('creates a namespace with KEK v1', async () => {
      const res = await api(base, 'POST', '/v1/namespaces', { ...auth(), body: { name: 'payments-prod', description: 'payments' } });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({
        name: 'payments-prod',
        description: 'payments',
        secret_count: 0,
        kek: { current_version: 1, versions: [{ version: 1, origin: 'generated', state: 'active' }] },
      });
    });

    it('refuses a duplicate with 409', async () => {
      expectError(await api(base, 'POST', '/v1/namespaces', { ...auth(), body: { name: 'payments-prod' } }), 409, 'already_exists');
    });

    it.each(['Payments', '-lead', 'trail-', 'a_b', 'a'.repeat(64), '', 'a/b'])('rejects the name %j with 400', async (name) => {
      expectError(await api(base, 'POST', '/v1/namespaces', { ...auth(), body: { name } }), 400, 'invalid_request');
    });

    it('lists namespaces with pagination', async () => {
      for (const n of ['ns-a', 'ns-b', 'ns-c']) {
        expect((await api(base, 'POST', '/v1/namespaces', { ...auth(), body: { name: n } })).status).toBe(201);
      }
      const page1 = await api(base, 'GET', '/v1/namespaces?limit=2', auth());
      expect(page1.body.namespaces.map((n: { name: string }) => n.name)).toEqual(['ns-a', 'ns-b']);
      expect(page1.body.next_cursor).toEqual(expect.any(String));
      const page2 = await api(base, 'GET', `/v1/namespaces?limit=2&cursor=${page1.body.next_cursor}`, auth());
      expect(page2.body.namespaces.map((n: { name: string }) => n.name)).toEqual(['ns-c', 'payments-prod']);
      expect(page2.body.next_cursor).toBeNull();
      expectError(await api(base, 'GET', '/v1/namespaces?limit=0', auth()), 400, 'invalid_request');
      expectError(await api(base, 'GET', '/v1/namespaces?limit=51', auth()), 400, 'invalid_request');
      expectError(await api(base, 'GET', '/v1/namespaces?cursor=%%%', auth()), 400);
      expectError(await api(base, 'GET', '/v1/namespaces?bogus=1', auth()), 400, 'invalid_request');
    });

    it('gets one namespace; 404 for a missing one', async () => {
      expect((await api(base, 'GET', '/v1/namespaces/ns-a', auth())).body.name).toBe('ns-a');
      expectError(await api(base, 'GET', '/v1/namespaces/nope', auth()), 404, 'not_found');
      expectError(await api(base, 'GET', '/v1/namespaces/BAD_NAME', auth()), 400, 'invalid_request');
    });

    it('deletes an empty namespace, refuses one with secrets unless forced', async () => {
      expect((await api(base, 'DELETE', '/v1/namespaces/ns-c', auth())).body).toEqual({ secrets_deleted: 0 });
      expectError(await api(base, 'GET', '/v1/namespaces/ns-c', auth()), 404);
      await api(base, 'PUT', '/v1/secrets/ns-b/k', { ...auth(), body: { data: { v: '1' } } });
      expectError(await api(base, 'DELETE', '/v1/namespaces/ns-b', auth()), 409, 'conflict');
      expect((await api(base, 'GET', '/v1/secrets/ns-b/k', auth())).status).toBe(200);
      expectError(await api(base, 'DELETE', '/v1/namespaces/ns-b?force=yes', auth()), 400);
      expect((await api(base, 'DELETE', '/v1/namespaces/ns-b?force=true', auth())).body).toEqual({ secrets_deleted: 1 });
      expectError(await api(base, 'GET', '/v1/secrets/ns-b/k', auth()), 404, 'not_found');
      expectError(await api(base, 'DELETE', '/v1/namespaces/ns-b', auth()), 404);
    });
  });

  describe('secrets: write and read', () => {
    it('writes version 1 and reads it back', async () => {
      const w = await api(base, 'PUT', '/v1/secrets/payments-prod/db/password', {
        ...auth(),
        body: { type: 'password', data: { password: 's3cr3t', username: 'app' }, metadata: { owner: 'payments' } },
      });
      expect(w.status).toBe(200);
      expect(w.body).toMatchObject({ namespace: 'payments-prod', path: 'db/password', version: 1 });
      const r = await api(base, 'GET', '/v1/secrets/payments-prod/db/password', auth());
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({
        version: 1,
        type: 'password',
        data: { password: 's3cr3t', username: 'app' },
        metadata: { owner: 'payments' },
      });
      expect(r.headers.get('cache-control')).toBe('no-store');
    });

    it("answers a read with res.json's exact headers and bytes, and a conditional read as express does", async () => {
      // The read route writes its JSON itself (http/respond.ts sendJson): nothing a client sees may differ.
      const r = await api(base, 'GET', '/v1/secrets/payments-prod/db/password', auth());
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect(r.headers.get('content-length')).toBe(String(Buffer.byteLength(r.text)));
      expect(r.headers.get('etag')).toBeNull();
      expect(r.text).toBe(JSON.stringify(r.body));
      expect(r.body.data).toEqual({ password: 's3cr3t', username: 'app' });
      // created_at as the history states it (the read's text is remembered per timestamp).
      const history = await api(base, 'GET', '/v1/secrets/payments-prod/db/password:versions', auth());
      const v1 = (history.body.versions as Array<{ version: number; created_at: string }>).find((v) => v.version === 1)!;
      expect(r.body.created_at).toBe(v1.created_at);
      expect((await api(base, 'GET', '/v1/secrets/payments-prod/db/password', auth())).body.created_at).toBe(v1.created_at);
      // `If-None-Match: *` on an existing resource: express's freshness check answers 304, no body.
      // (node:http: fetch adds `Cache-Control: no-cache` to conditional requests, which makes any answer fresh.)
      const conditional = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const url = new URL(base);
        const req = http.request(
          { host: url.hostname, port: url.port, method: 'GET', path: '/v1/secrets/payments-prod/db/password', headers: { authorization: `Bearer ${token}`, 'if-none-match': '*' } },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => (text += chunk));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
          },
        );
        req.on('error', reject);
        req.end();
      });
      expect(conditional).toEqual({ status: 304, text: '' });
    });

    it('accepts POST as a write and form-encoded content types as JSON', async () => {
      const w = await api(base, 'POST', '/v1/secrets/payments-prod/db/password', {
        ...auth(),
        rawBody: JSON.stringify({ type: 'password', data: { password: 'v2' } }),
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      expect(w.body.version).toBe(2);
    });

    it('reads a given version', async () => {
      expect((await api(base, 'GET', '/v1/secrets/payments-prod/db/password?version=1', auth())).body.data.password).toBe('s3cr3t');
      expect((await api(base, 'GET', '/v1/secrets/payments-prod/db/password', auth())).body.data.password).toBe('v2');
      expectError(await api(base, 'GET', '/v1/secrets/payments-prod/db/password?version=9', auth()), 404, 'not_found');
      expectError(await api(base, 'GET', '/v1/secrets/payments-prod/db/password?version=0', auth()), 400, 'invalid_request');
      expectError(await api(base, 'GET', '/v1/secrets/payments-prod/db/password?version=x', auth()), 400, 'invalid_request');
    });

    it('enforces check-and-set', async () => {
      expectError(
        await api(base, 'PUT', '/v1/secrets/payments-prod/db/password', { ...auth(), body: { data: { password: 'x' }, type: 'password', cas: 1 } }),
        409,
        'cas_mismatch',
      );
      expectError(
        await api(base, 'PUT', '/v1/secrets/payments-prod/db/password', { ...auth(), body: { data: { password: 'x' }, type: 'password', cas: 0 } }),
        409,
        'cas_mismatch',
      );
      // A failed check-and-set changes nothing.
      expect((await api(base, 'GET', '/v1/secrets/payments-prod/db/password:versions', auth())).body.current_version).toBe(2);
      const ok = await api(base, 'PUT', '/v1/secrets/payments-prod/db/password', { ...auth(), body: { data: { password: 'v3' }, type: 'password', cas: 2 } });
      expect(ok.body.version).toBe(3);
      const created = await api(base, 'PUT', '/v1/secrets/payments-prod/api/token', { ...auth(), body: { data: { token: 't0k' }, type: 'token', cas: 0 } });
      expect(created.body.version).toBe(1);
    });

    it.each([
      ['no data', {}],
      ['empty data', { data: {} }],
      ['non-string value', { data: { a: 1 } }],
      ['unknown type', { data: { a: 'b' }, type: 'blob' }],
      ['unknown field', { data: { a: 'b' }, colour: 'red' }],
      ['negative cas', { data: { a: 'b' }, cas: -1 }],
      ['max_versions 0', { data: { a: 'b' }, max_versions: 0 }],
      ['password without password', { data: { pass: 'b' }, type: 'password' }],
      ['token without token', { data: { a: 'b' }, type: 'token' }],
      ['certificate that is not PEM', { data: { certificate: 'hello' }, type: 'certificate' }],
      ['key that is not PEM', { data: { private_key: 'hello' }, type: 'key' }],
      ['non-object metadata', { data: { a: 'b' }, metadata: 'x' }],
    ])('rejects a write with %s (400) and stores nothing', async (_what, body) => {
      expectError(await api(base, 'PUT', '/v1/secrets/payments-prod/bad/one', { ...auth(), body }), 400, 'invalid_request');
      expectError(await api(base, 'GET', '/v1/secrets/payments-prod/bad/one', auth()), 404);
    });

    it('rejects invalid JSON with 400 and oversized bodies with 413', async () => {
      expectError(await api(base, 'PUT', '/v1/secrets/payments-prod/bad/one', { ...auth(), rawBody: '{"data":' }), 400, 'invalid_json');
      const big = { data: { blob: 'x'.repeat(70 * 1024) } };
      expectError(await api(base, 'PUT', '/v1/secrets/payments-prod/bad/one', { ...auth(), body: big }), 413, 'payload_too_large');
      expectError(await api(base, 'GET', '/v1/secrets/payments-prod/bad/one', auth()), 404);
    });

    it.each(['/v1/secrets/payments-prod/a/./b', '/v1/secrets/payments-prod/a/../b', '/v1/secrets/payments-prod/a/%2e%2e/b', '/v1/secrets/payments-prod/../x'])(
      'refuses the dot-segment path %s with 400 (sent unnormalised)',
      async (path) => {
        const res = await rawRequest(base, 'GET', path, token);
        expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status: 400, code: 'invalid_request' });
      },
    );

    it.each([
      '/v1/secrets/payments-prod/a//b',
      '/v1/secrets/payments-prod/a%2Fb',
      '/v1/secrets/payments-prod/a$b',
      '/v1/secrets/payments-prod/a b',
      '/v1/secrets/Payments/a',
      `/v1/secrets/payments-prod/${'a'.repeat(513)}`,
    ])('rejects the path %s with 400', async (path) => {
      expectError(await api(base, 'PUT', path, { ...auth(), body: { data: { a: 'b' } } }), 400, 'invalid_request');
    });

    it('404s a missing secret and a missing namespace with distinct messages', async () => {
      const s = await api(base, 'GET', '/v1/secrets/payments-prod/nope', auth());
      expectError(s, 404, 'not_found');
      expect(s.body.error.message).toContain('secret');
      const n = await api(base, 'GET', '/v1/secrets/no-such-ns/nope', auth());
      expectError(n, 404, 'not_found');
      expect(n.body.error.message).toContain('namespace');
      expectError(await api(base, 'PUT', '/v1/secrets/no-such-ns/x', { ...auth(), body: { data: { a: 'b' } } }), 404, 'not_found');
    });

    it('answers unsupported methods with 405 and unknown actions and routes with 404', async () => {
      expectError(await api(base, 'PATCH', '/v1/secrets/payments-prod/db/password', { ...auth(), body: {} }), 405, 'method_not_allowed');
      expectError(await api(base, 'POST', '/v1/secrets/payments-prod/db/', { ...auth(), body: {} }), 405, 'method_not_allowed');
      expectError(await api(base, 'GET', '/v1/secrets/payments-prod/db/password:frobnicate', auth()), 404, 'not_found');
      expectError(await api(base, 'GET', '/v1/nothing-here', auth()), 404, 'not_found');
    });
  });

  describe('secrets: versions', () => {
    const path = '/v1/secrets/payments-prod/db/password';

    it('returns the history newest first', async () => {
      const h = await api(base, 'GET', `${path}:versions`, auth());
      expect(h.status).toBe(200);
      expect(h.body).toMatchObject({ current_version: 3, max_versions: 10 });
      expect(h.body.versions.map((v: { version: number }) => v.version)).toEqual([3, 2, 1]);
      expect(h.text).not.toContain('s3cr3t');
      expectError(await api(base, 'GET', '/v1/secrets/payments-prod/nope:versions', auth()), 404);
    });

    it('soft-deletes the latest version, hides it, and undeletes it', async () => {
      const del = await api(base, 'DELETE', path, auth());
      expect(del.body.versions).toEqual([3]);
      expectError(await api(base, 'GET', path, auth()), 404, 'not_found');
      expect((await api(base, 'GET', `${path}?version=2`, auth())).body.data.password).toBe('v2');
      const un = await api(base, 'POST', `${path}:undelete`, { ...auth(), body: { versions: [3] } });
      expect(un.body.versions).toEqual([3]);
      expect((await api(base, 'GET', path, auth())).body.data.password).toBe('v3');
    });

    it('soft-deletes given versions; all must exist or nothing changes', async () => {
      expectError(await api(base, 'POST', `${path}:delete`, { ...auth(), body: { versions: [1, 42] } }), 404, 'not_found');
      expect((await api(base, 'GET', `${path}?version=1`, auth())).status).toBe(200);
      expectError(await api(base, 'POST', `${path}:delete`, { ...auth(), body: { versions: [0] } }), 400, 'invalid_request');
      expectError(await api(base, 'POST', `${path}:delete`, { ...auth(), body: { versions: 'all' } }), 400, 'invalid_request');
      await api(base, 'POST', `${path}:delete`, { ...auth(), body: { versions: [1] } });
      expectError(await api(base, 'GET', `${path}?version=1`, auth()), 404);
      await api(base, 'POST', `${path}:undelete`, { ...auth(), body: { versions: [1] } });
    });

    it('rolls back: the old version is rewritten as the newest', async () => {
      const rb = await api(base, 'POST', `${path}:rollback`, { ...auth(), body: { version: 1 } });
      expect(rb.status).toBe(200);
      expect(rb.body.version).toBe(4);
      const r = await api(base, 'GET', path, auth());
      expect(r.body).toMatchObject({ version: 4, type: 'password', data: { password: 's3cr3t', username: 'app' }, metadata: { owner: 'payments' } });
      expectError(await api(base, 'POST', `${path}:rollback`, { ...auth(), body: { version: 99 } }), 404);
      expectError(await api(base, 'POST', `${path}:rollback`, { ...auth(), body: { version: 1, cas: 1 } }), 409, 'cas_mismatch');
      expectError(await api(base, 'POST', `${path}:rollback`, { ...auth(), body: {} }), 400, 'invalid_request');
      expect((await api(base, 'GET', `${path}:versions`, auth())).body.current_version).toBe(4);
    });

    it('destroys a version for good: its DEK and ciphertext are erased', async () => {
      const d = await api(base, 'POST', `${path}:destroy`, { ...auth(), body: { versions: [2] } });
      expect(d.body.versions).toEqual([2]);
      const r = await api(base, 'GET', `${path}?version=2`, auth());
      expectError(r, 404, 'not_found');
      expect(r.body.error.message).toContain('destroyed');
      expectError(await api(base, 'POST', `${path}:undelete`, { ...auth(), body: { versions: [2] } }), 409, 'conflict');
      const row = await server.storage.db
        .selectFrom('secret_versions')
        .innerJoin('secrets', 'secrets.id', 'secret_versions.secret_id')
        .select(['wrapped_dek', 'ciphertext', 'destroyed_at'])
        .where('secrets.path', '=', 'db/password')
        .where('secret_versions.version', '=', 2)
        .executeTakeFirstOrThrow();
      expect(row).toMatchObject({ wrapped_dek: null, ciphertext: null });
      expect(row.destroyed_at).toBeInstanceOf(Date);
      const history = await api(base, 'GET', `${path}:versions`, auth());
      expect(history.body.versions.find((v: { version: number }) => v.version === 2).destroyed_at).toEqual(expect.any(String));
    });

    it('keeps at most max_versions versions', async () => {
      const p = '/v1/secrets/payments-prod/rotating';
      for (let i = 1; i <= 5; i++) {
        const w = await api(base, 'PUT', p, { ...auth(), body: { data: { v: String(i) }, max_versions: 3 } });
        expect(w.body.version).toBe(i);
      }
      const h = await api(base, 'GET', `${p}:versions`, auth());
      expect(h.body.max_versions).toBe(3);
      expect(h.body.versions.map((v: { version: number }) => v.version)).toEqual([5, 4, 3]);
      expectError(await api(base, 'GET', `${p}?version=2`, auth()), 404);
    });

    it('purges a secret with every version', async () => {
      const p = '/v1/secrets/payments-prod/rotating';
      expect((await api(base, 'POST', `${p}:purge`, auth())).body).toMatchObject({ versions_removed: 3 });
      expectError(await api(base, 'GET', `${p}:versions`, auth()), 404);
      expectError(await api(base, 'POST', `${p}:purge`, auth()), 404);
      expectError(await api(base, 'GET', `${p}:purge`, auth()), 405);
    });
  });

  describe('folders: list and bulk read', () => {
    beforeAll(async () => {
      await api(base, 'POST', '/v1/namespaces', { ...auth(), body: { name: 'ci' } });
      for (const p of ['app/DB_URL', 'app/API_KEY', 'app/nested/X', 'app/nested/deeper/Y', 'other/Z', 'app2/W']) {
        const w = await api(base, 'PUT', `/v1/secrets/ci/${p}`, { ...auth(), body: { data: { value: `v-${p}` } } });
        expect(w.status).toBe(200);
      }
      await api(base, 'DELETE', '/v1/secrets/ci/app/API_KEY', auth());
    });

    it('lists a folder: secrets and sub-folders, sorted', async () => {
      expect((await api(base, 'GET', '/v1/secrets/ci/', auth())).body.keys).toEqual(['app/', 'app2/', 'other/']);
      expect((await api(base, 'GET', '/v1/secrets/ci/app/', auth())).body.keys).toEqual(['API_KEY', 'DB_URL', 'nested/']);
      expect((await api(base, 'GET', '/v1/secrets/ci/app/?recursive=true', auth())).body.keys).toEqual([
        'API_KEY',
        'DB_URL',
        'nested/X',
        'nested/deeper/Y',
      ]);
      expect((await api(base, 'GET', '/v1/secrets/ci/none/', auth())).body.keys).toEqual([]);
      expectError(await api(base, 'GET', '/v1/secrets/nope/', auth()), 404);
    });

    it('paginates a listing', async () => {
      const p1 = await api(base, 'GET', '/v1/secrets/ci/app/?limit=2', auth());
      expect(p1.body.keys).toEqual(['API_KEY', 'DB_URL']);
      const p2 = await api(base, 'GET', `/v1/secrets/ci/app/?limit=2&cursor=${p1.body.next_cursor}`, auth());
      expect(p2.body).toMatchObject({ keys: ['nested/'], next_cursor: null });
    });

    it('bulk-reads the latest readable value of everything under a folder', async () => {
      const b = await api(base, 'GET', '/v1/bulk/ci/app/', auth());
      expect(b.status).toBe(200);
      expect(b.body.secrets.map((s: { path: string; data: { value: string } }) => [s.path, s.data.value])).toEqual([
        ['app/DB_URL', 'v-app/DB_URL'],
        ['app/nested/X', 'v-app/nested/X'],
        ['app/nested/deeper/Y', 'v-app/nested/deeper/Y'],
      ]);
      const all = await api(base, 'GET', '/v1/bulk/ci/', auth());
      expect(all.body.secrets).toHaveLength(5);
      expect(all.body.withheld).toEqual([]);
    });

    it('answers 404 for a bulk read of a folder with no secrets, the root of an empty namespace too (issue 12)', async () => {
      // A typo in a deploy job's folder must not look like a folder that holds nothing.
      const missing = await api(base, 'GET', '/v1/bulk/ci/none/', auth());
      expectError(missing, 404, 'not_found');
      expect(missing.body.error.message).toBe('no secrets under ci:none/');
      expect((await api(base, 'POST', '/v1/namespaces', { ...auth(), body: { name: 'ci-empty' } })).status).toBe(201);
      expectError(await api(base, 'GET', '/v1/bulk/ci-empty/', auth()), 404, 'not_found');
      // Only deleted secrets left: nothing to read either.
      expect((await api(base, 'PUT', '/v1/secrets/ci-empty/gone/x', { ...auth(), body: { data: { v: '1' } } })).status).toBe(200);
      expect((await api(base, 'GET', '/v1/bulk/ci-empty/gone/', auth())).status).toBe(200);
      expect((await api(base, 'DELETE', '/v1/secrets/ci-empty/gone/x', auth())).status).toBe(200);
      expectError(await api(base, 'GET', '/v1/bulk/ci-empty/gone/', auth()), 404, 'not_found');
    });

    it('paginates a bulk read', async () => {
      const p1 = await api(base, 'GET', '/v1/bulk/ci/?limit=3', auth());
      expect(p1.body.secrets).toHaveLength(3);
      const p2 = await api(base, 'GET', `/v1/bulk/ci/?limit=3&cursor=${p1.body.next_cursor}`, auth());
      expect(p2.body.secrets).toHaveLength(2);
      expect(p2.body.next_cursor).toBeNull();
    });

    it('rejects bulk reads of a secret path or with other methods', async () => {
      expectError(await api(base, 'GET', '/v1/bulk/ci/app/DB_URL', auth()), 400, 'invalid_request');
      expectError(await api(base, 'POST', '/v1/bulk/ci/app/', { ...auth(), body: {} }), 405);
      expectError(await api(base, 'GET', '/v1/bulk/ci/app//', auth()), 400);
    });
  });

  describe('sealing', () => {
    it('seals: keys dropped, data endpoints 503, and unseals again with the shares', async () => {
      const s = await api(base, 'POST', '/v1/sys/seal', auth());
      expect(s.body).toMatchObject({ sealed: true });
      expectError(await api(base, 'GET', '/v1/secrets/payments-prod/db/password', auth()), 503, 'sealed');
      expectError(await api(base, 'POST', '/v1/sys/seal', auth()), 503, 'sealed');
      await api(base, 'POST', '/v1/sys/unseal', { body: { share: shares[1] } });
      await api(base, 'POST', '/v1/sys/unseal', { body: { share: shares[2] } });
      expect((await api(base, 'GET', '/v1/secrets/payments-prod/db/password', auth())).body.data.password).toBe('s3cr3t');
    });

    it('revokes the calling token', async () => {
      expect((await api(base, 'POST', '/v1/auth/token/revoke-self', auth())).status).toBe(204);
      expectError(await api(base, 'GET', '/v1/namespaces', auth()), 401, 'unauthenticated');
    });
  });
});
