// The order every scoped route keeps (declared with `target`/`targetOf`, run by http/register.ts):
// a target named by the URL is checked first (a malformed one is a 400 for anyone), then
// authorised (403), and only then are the query and body parsed (400) — so a caller without the
// capability learns nothing from a malformed body. A target named by the body or query (or by a
// record it names) can only be known once they are parsed: those answer 400 (or 404) first.
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, expectError, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';

describe('route order: target, then authorisation, then query and body', () => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let root: string;
  let outsider: string;

  beforeAll(async () => {
    store = await createStore('pglite');
    server = await startTestServer(store, { loginRatePerSecond: 0 });
    base = server.url;
    ({ token: root } = await initAndUnseal(base));
    expect((await api(base, 'POST', '/v1/namespaces', { token: root, body: { name: 'ns' } })).status).toBe(201);
    expect((await api(base, 'PUT', '/v1/secrets/ns/x', { token: root, body: { data: { v: '1' } } })).status).toBe(200);
    expect((await api(base, 'POST', '/v1/kms/ns/keys/k', { token: root, body: { type: 'aes256-gcm' } })).status).toBe(201);
    // Rights elsewhere only: nothing on `ns`.
    const policy = { rules: [{ namespace: 'elsewhere', path: '*', capabilities: ['read', 'list', 'create', 'update', 'delete', 'admin', 'encrypt', 'key-admin'] }] };
    expect((await api(base, 'PUT', '/v1/sys/policies/outsider', { token: root, body: policy })).status).toBe(201);
    outsider = (await api(base, 'POST', '/v1/auth/token/create', { token: root, body: { policies: ['outsider'] } })).body.auth.client_token;
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('answers a malformed target in the URL with 400, also to a caller without rights', async () => {
    expectError(await api(base, 'GET', '/v1/namespaces/bad%20ns', { token: outsider }), 400);
    expectError(await api(base, 'PATCH', '/v1/namespaces/bad%20ns', { token: outsider, body: { bogus: 1 } }), 400);
    expectError(await api(base, 'POST', '/v1/kms/ns/encrypt/bad%20key', { token: outsider, body: { bogus: 1 } }), 400);
    expectError(await api(base, 'GET', '/v1/kms/bad%20ns/keys', { token: outsider }), 400);
    expectError(await api(base, 'GET', '/v1/byok/namespaces/bad%20ns/import-params', { token: outsider }), 400);
  });

  it('answers a well-formed target the caller may not use with 403, whatever its body or query', async () => {
    expectError(await api(base, 'PATCH', '/v1/namespaces/ns', { token: outsider, body: { bogus: 1 } }), 403, 'permission_denied');
    expectError(await api(base, 'GET', '/v1/namespaces/ns?bogus=1', { token: outsider }), 403, 'permission_denied');
    expectError(await api(base, 'POST', '/v1/kms/ns/encrypt/k', { token: outsider, body: { bogus: 1 } }), 403, 'permission_denied');
    expectError(await api(base, 'POST', '/v1/kms/ns/keys/k/rotate?bogus=1', { token: outsider, body: { bogus: 1 } }), 403, 'permission_denied');
    expectError(await api(base, 'PUT', '/v1/secrets/ns/x', { token: outsider, body: { bogus: 1 } }), 403, 'permission_denied');
    expectError(await api(base, 'GET', '/v1/secrets/ns/x?bogus=1', { token: outsider }), 403, 'permission_denied');
    expectError(await api(base, 'GET', '/v1/bulk/ns/?bogus=1', { token: outsider }), 403, 'permission_denied');
    expectError(await api(base, 'POST', '/v1/byok/namespaces/ns/import', { token: outsider, body: { bogus: 1 } }), 403, 'permission_denied');
  });

  it('parses the query and body of an authorised caller: 400, and nothing changes', async () => {
    expectError(await api(base, 'PATCH', '/v1/namespaces/ns', { token: root, body: { bogus: 1 } }), 400);
    expectError(await api(base, 'GET', '/v1/namespaces/ns?bogus=1', { token: root }), 400);
    expectError(await api(base, 'POST', '/v1/kms/ns/encrypt/k', { token: root, body: { bogus: 1 } }), 400);
    expectError(await api(base, 'POST', '/v1/kms/ns/keys/k/rotate', { token: root, body: { bogus: 1 } }), 400);
    expectError(await api(base, 'PUT', '/v1/secrets/ns/x', { token: root, body: { bogus: 1 } }), 400);
    expectError(await api(base, 'GET', '/v1/secrets/ns/x?bogus=1', { token: root }), 400);
    expect((await api(base, 'GET', '/v1/kms/ns/keys/k', { token: root })).body.latest_version).toBe(1);
    expect((await api(base, 'GET', '/v1/secrets/ns/x', { token: root })).body.data).toEqual({ v: '1' });
  });

  it('parses first where the body or query names the target, and looks a named record up before authorising', async () => {
    expectError(await api(base, 'POST', '/v1/namespaces', { token: outsider, body: { bogus: 1 } }), 400);
    expectError(await api(base, 'POST', '/v1/namespaces', { token: outsider, body: { name: 'ns2' } }), 403, 'permission_denied');
    expectError(await api(base, 'GET', '/v1/escrow/requests', { token: outsider }), 400);
    expectError(await api(base, 'GET', '/v1/escrow/requests?namespace=ns', { token: outsider }), 403, 'permission_denied');
    expectError(await api(base, 'POST', '/v1/escrow/requests', { token: outsider, body: { namespace: 'ns' } }), 400);
    expectError(await api(base, 'GET', '/v1/escrow/requests/00000000-0000-4000-8000-000000000000', { token: outsider }), 404);
  });
});
