// Two-person approval of named-key exports (issue 14, "two-person approval when the namespace
// requires it"): a namespace with kms_export_approval (one-way) refuses a plain export; an export
// request is approved at the escrow approval route by a different identity, used once by its
// requester, expires, and every step is audited without key bytes — real server, PGlite and PostgreSQL.
import type { RunningServer } from '@coffer/server/server';
import { escrowKeyPair, unwrapEscrow } from '../helpers/byok.js';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';

describeEachStorage('two-person approval of named-key exports', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let root: string;
  let alice: string;
  let bob: string;
  const as = (token: string) => (method: string, path: string, body?: unknown) => api(server.url, method, path, { token, ...(body === undefined ? {} : { body }) });
  const { publicPem, privateKey } = escrowKeyPair();

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store, { kekRunJobs: false });
    root = (await initAndUnseal(server.url, 1, 1)).token;
    const call = as(root);
    for (const name of ['strict', 'open']) expect((await call('POST', '/v1/namespaces', { name })).status).toBe(201);
    const rules = ['strict', 'open'].map((namespace) => ({ namespace, path: '*', capabilities: ['admin', 'key-admin', 'encrypt', 'decrypt'] }));
    expect((await call('PUT', '/v1/sys/policies/kms-admin', { rules })).status).toBeLessThan(300);
    const make = async (display_name: string) => {
      const res = await call('POST', '/v1/auth/token/create', { policies: ['kms-admin'], display_name });
      expect(res.status).toBe(201);
      return res.body.auth.client_token as string;
    };
    alice = await make('alice');
    bob = await make('bob');
    for (const ns of ['strict', 'open']) expect((await call('POST', `/v1/kms/${ns}/keys/k`, { type: 'aes256-gcm', exportable: true })).status).toBe(201);
    expect((await call('PATCH', '/v1/namespaces/strict', { kms_export_approval: true })).status).toBe(200);
  }, 240_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('the setting is shown and one-way; a namespace without it exports as before', async () => {
    expect((await as(root)('GET', '/v1/namespaces/strict')).body.kms_export_approval).toBe(true);
    expect((await as(root)('GET', '/v1/namespaces/open')).body.kms_export_approval).toBe(false);
    const off = await as(root)('PATCH', '/v1/namespaces/strict', { kms_export_approval: false });
    expectError(off, 400, 'invalid_request');
    expect(off.body.error.message).toMatch(/cannot be undone/);
    expect((await as(root)('GET', '/v1/namespaces/strict')).body.kms_export_approval).toBe(true);
    expect((await as(alice)('POST', '/v1/kms/open/keys/k/export', { public_key: publicPem })).status).toBe(200);
  });

  it('without an approved request the export is refused with what to do', async () => {
    const res = await as(alice)('POST', '/v1/kms/strict/keys/k/export', { public_key: publicPem });
    expectError(res, 403, 'permission_denied');
    expect(res.body.error.message).toMatch(/two-person approval.*export-requests.*approve.*request_id/);
    // A pending (not yet approved) request does not do either.
    const req = await as(alice)('POST', '/v1/kms/strict/keys/k/export-requests', { public_key: publicPem });
    expect(req.status).toBe(201);
    expect(req.body).toMatchObject({ namespace: 'strict', kek_version: null, kms_key: { name: 'k', version: 1 }, state: 'pending', requested_by: 'token:alice' });
    const pending = await as(alice)('POST', '/v1/kms/strict/keys/k/export', { request_id: req.body.id });
    expectError(pending, 409, 'conflict');
    expect(pending.body.error.message).toMatch(/not approved yet/);
    // Nor can the escrow download route be used to fetch it.
    expectError(await as(alice)('POST', `/v1/escrow/requests/${req.body.id}/download`, {}), 400, 'invalid_request');
  });

  it('refuses self-approval; a different identity approves; the requester exports once, the key opens', async () => {
    const req = await as(alice)('POST', '/v1/kms/strict/keys/k/export-requests', { public_key: publicPem });
    expect(req.status).toBe(201);
    const id = req.body.id as string;
    const self = await as(alice)('POST', `/v1/escrow/requests/${id}/approve`, {});
    expectError(self, 403, 'permission_denied');
    expect(self.body.error.message).toMatch(/different identity/);
    // The request lists with the namespace's escrow requests, naming the key.
    const listed = await as(bob)('GET', '/v1/escrow/requests?namespace=strict');
    expect(listed.body.requests.find((r: { id: string }) => r.id === id)).toMatchObject({ kms_key: { name: 'k', version: 1 }, state: 'pending' });
    expect((await as(bob)('POST', `/v1/escrow/requests/${id}/approve`, {})).body).toMatchObject({ state: 'approved', approved_by: 'token:bob' });
    // Only the requester uses it, and only as approved (no other public key, version or algorithm).
    expectError(await as(bob)('POST', '/v1/kms/strict/keys/k/export', { request_id: id }), 403, 'permission_denied');
    expectError(await as(alice)('POST', '/v1/kms/strict/keys/k/export', { request_id: id, public_key: publicPem }), 400, 'invalid_request');
    const exported = await as(alice)('POST', '/v1/kms/strict/keys/k/export', { request_id: id });
    expect(exported.status).toBe(200);
    expect(exported.body).toMatchObject({ namespace: 'strict', name: 'k', key_version: 1, algorithm: 'RSA_AES_KEY_WRAP_SHA_256', material_format: 'raw' });
    const key = unwrapEscrow(exported.body.wrapped_key_material, privateKey, 'RSA_AES_KEY_WRAP_SHA_256');
    expect(key.length).toBe(32);
    // One approval, one export.
    const again = await as(alice)('POST', '/v1/kms/strict/keys/k/export', { request_id: id });
    expectError(again, 410, 'gone');
    expect((await as(bob)('GET', `/v1/escrow/requests/${id}`)).body).toMatchObject({ state: 'downloaded', approved_by: 'token:bob' });
    // An approval is for its key only: another key's export does not take it.
    expect((await as(root)('POST', '/v1/kms/strict/keys/k2', { type: 'aes256-gcm', exportable: true })).status).toBe(201);
    const other = await as(alice)('POST', '/v1/kms/strict/keys/k2/export-requests', { public_key: publicPem });
    await as(bob)('POST', `/v1/escrow/requests/${other.body.id}/approve`, {});
    expectError(await as(alice)('POST', '/v1/kms/strict/keys/k/export', { request_id: other.body.id }), 400, 'invalid_request');
    expect((await as(alice)('POST', '/v1/kms/strict/keys/k2/export', { request_id: other.body.id })).status).toBe(200);
  });

  it('approvals expire; requests for keys that cannot be exported are refused at once', async () => {
    const req = await as(alice)('POST', '/v1/kms/strict/keys/k/export-requests', { public_key: publicPem, ttl_seconds: 60 });
    expect(req.status).toBe(201);
    expect((await as(bob)('POST', `/v1/escrow/requests/${req.body.id}/approve`, {})).status).toBe(200);
    // Expired behind the clock's back (the request's expiry moved into the past).
    await server.core.db.updateTable('escrow_requests').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', req.body.id).execute();
    expectError(await as(alice)('POST', '/v1/kms/strict/keys/k/export', { request_id: req.body.id }), 410, 'expired');
    expect((await as(root)('POST', '/v1/kms/strict/keys/locked', { type: 'aes256-gcm', export_locked: true })).status).toBe(201);
    expectError(await as(alice)('POST', '/v1/kms/strict/keys/locked/export-requests', { public_key: publicPem }), 400, 'invalid_request');
    expectError(await as(alice)('POST', '/v1/kms/strict/keys/k/export-requests', { public_key: publicPem, version: 7 }), 400, 'invalid_request');
    expectError(await as(alice)('POST', '/v1/kms/strict/keys/k/export-requests', { public_key: 'not a key' }), 400, 'invalid_request');
  });

  it('audits the request, the approval and the export (refusals too), without key bytes', async () => {
    const entries = (await as(root)('GET', '/v1/sys/audit?limit=500')).body.entries as Array<{ action: string; outcome: string; identity?: { id: string }; path?: string; version?: number }>;
    const seen = entries.filter((e) => e.path === 'k' || e.action === 'escrow.approve').map((e) => `${e.action}:${e.outcome}:${e.identity?.id}`);
    expect(seen).toEqual(
      expect.arrayContaining([
        'kms.key.export_request:success:token:alice',
        'escrow.approve:denied:token:alice',
        'escrow.approve:success:token:bob',
        'kms.key.export:success:token:alice',
        'kms.key.export:denied:token:alice',
      ]),
    );
    expect(entries.find((e) => e.action === 'kms.key.export' && e.outcome === 'success' && e.path === 'k')).toMatchObject({ version: 1 });
    const bodies = (await server.storage.db.selectFrom('audit_log').select('body').execute()).map((r) => r.body).join('\n');
    expect(bodies).not.toMatch(/wrapped_key_material|PRIVATE KEY|BEGIN PUBLIC KEY/);
  });
});
