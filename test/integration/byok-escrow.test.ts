// BYOK import (software wrapping keys under the Shamir seal) and escrow export with the
// two-person rule, on PGlite and PostgreSQL. The customer side is node:crypto; the README's
// openssl commands are run as written when openssl is installed.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';
import { strict } from '../helpers/env.js';
import { escrowKeyPair, unwrapEscrow, wrapForImport, type WrapAlgorithm } from '../helpers/byok.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

describeEachStorage('BYOK import and escrow export', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let root: string;
  let alice: string;
  let bob: string;
  let reader: string;

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store, {});
    base = server.url;
    root = (await initAndUnseal(base, 1, 1)).token;
    for (const ns of ['imp', 'esc']) expect((await api(base, 'POST', '/v1/namespaces', { token: root, body: { name: ns } })).status).toBe(201);
    const policy = await api(base, 'PUT', '/v1/sys/policies/key-admin', {
      token: root,
      // Namespace-scoped admins (not server-wide: no "*" namespace).
      body: { rules: ['imp', 'esc'].map((namespace) => ({ namespace, path: '*', capabilities: ['read', 'list', 'create', 'update', 'admin'] })) },
    });
    expect(policy.status).toBeLessThan(300);
    await api(base, 'PUT', '/v1/sys/policies/reader', { token: root, body: { rules: [{ namespace: '*', path: '*', capabilities: ['read'] }] } });
    const make = async (name: string, policies: string[]) => {
      const res = await api(base, 'POST', '/v1/auth/token/create', { token: root, body: { policies, display_name: name } });
      expect(res.status).toBe(201);
      return res.body.auth.client_token as string;
    };
    alice = await make('alice', ['key-admin']);
    bob = await make('bob', ['key-admin']);
    reader = await make('carol', ['reader']);
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  /** Escrow round trip: the KEK version's material, as the requester (alice) receives it. */
  async function exportKek(ns: string, version: number): Promise<Buffer> {
    const { publicPem, privateKey } = escrowKeyPair();
    const req = await api(base, 'POST', '/v1/escrow/requests', { token: alice, body: { namespace: ns, kek_version: version, public_key: publicPem } });
    expect(req.status).toBe(201);
    expect((await api(base, 'POST', `/v1/escrow/requests/${req.body.id}/approve`, { token: bob, body: {} })).status).toBe(200);
    const dl = await api(base, 'POST', `/v1/escrow/requests/${req.body.id}/download`, { token: alice, body: {} });
    expect(dl.status).toBe(200);
    return unwrapEscrow(dl.body.wrapped_key_material, privateKey, 'RSAES_OAEP_SHA_256');
  }

  describe('BYOK (software wrapping key)', () => {
    it.each(['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256', 'RSAES_OAEP_SHA_1', 'RSA_AES_KEY_WRAP_SHA_1'] as WrapAlgorithm[])(
      'imports key material wrapped with %s as a new external KEK version that encrypts new secrets',
      async (algorithm) => {
        await api(base, 'PUT', '/v1/secrets/imp/before', { token: root, body: { data: { v: `old-${algorithm}` } } });
        const params = await api(base, 'GET', `/v1/byok/namespaces/imp/import-params?algorithm=${algorithm}`, { token: alice });
        expect(params.status).toBe(200);
        expect(params.body).toMatchObject({ algorithm, wrapping_key_spec: 'RSA_3072', wrapping_key_origin: 'software' });
        const ttl = Date.parse(params.body.expires_at) - Date.now();
        expect(ttl).toBeGreaterThan(23.9 * 3600_000);
        expect(ttl).toBeLessThanOrEqual(24 * 3600_000);
        const material = randomBytes(32);
        const imported = await api(base, 'POST', '/v1/byok/namespaces/imp/import', {
          token: alice,
          body: { import_token: params.body.import_token, encrypted_key_material: wrapForImport(material, params.body.public_key, algorithm) },
        });
        expect(imported.status).toBe(200);
        expect(imported.body).toMatchObject({ namespace: 'imp', origin: 'external' });
        const version = imported.body.version as number;
        await api(base, 'PUT', '/v1/secrets/imp/after', { token: root, body: { data: { v: algorithm } } });
        expect((await api(base, 'GET', '/v1/secrets/imp/after', { token: root })).body.data).toEqual({ v: algorithm });
        expect((await api(base, 'GET', '/v1/secrets/imp/before', { token: root })).body.data).toEqual({ v: `old-${algorithm}` });
        // The KEK in use is exactly the customer's material.
        expect((await exportKek('imp', version)).equals(material)).toBe(true);
        // An import token works once.
        expectError(
          await api(base, 'POST', '/v1/byok/namespaces/imp/import', {
            token: alice,
            body: { import_token: params.body.import_token, encrypted_key_material: wrapForImport(material, params.body.public_key, algorithm) },
          }),
          410,
          'gone',
        );
      },
    );

    it('refuses bad material with 400 (and spends the token), expired parameters with 410, root import without an HSM', async () => {
      const params = await api(base, 'GET', '/v1/byok/namespaces/imp/import-params', { token: alice });
      const before = (await api(base, 'GET', '/v1/namespaces/imp', { token: root })).body.kek.current_version;
      const short = wrapForImport(randomBytes(16), params.body.public_key, 'RSAES_OAEP_SHA_256');
      expectError(await api(base, 'POST', '/v1/byok/namespaces/imp/import', { token: alice, body: { import_token: params.body.import_token, encrypted_key_material: short } }), 400, 'invalid_key_material');
      expectError(
        await api(base, 'POST', '/v1/byok/namespaces/imp/import', {
          token: alice,
          body: { import_token: params.body.import_token, encrypted_key_material: wrapForImport(randomBytes(32), params.body.public_key, 'RSAES_OAEP_SHA_256') },
        }),
        410,
        'gone',
      );
      // Wrapped for another key (garbage for this one): 400, the same message whatever failed.
      const other = await api(base, 'GET', '/v1/byok/namespaces/imp/import-params', { token: alice });
      const garbage = await api(base, 'POST', '/v1/byok/namespaces/imp/import', {
        token: alice,
        body: { import_token: other.body.import_token, encrypted_key_material: wrapForImport(randomBytes(32), params.body.public_key, 'RSAES_OAEP_SHA_256') },
      });
      expectError(garbage, 400, 'invalid_key_material');
      // Expired parameters.
      const old = await api(base, 'GET', '/v1/byok/namespaces/imp/import-params', { token: alice });
      await server.core.db.updateTable('import_keys').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', old.body.import_token).execute();
      expectError(
        await api(base, 'POST', '/v1/byok/namespaces/imp/import', {
          token: alice,
          body: { import_token: old.body.import_token, encrypted_key_material: wrapForImport(randomBytes(32), old.body.public_key, 'RSAES_OAEP_SHA_256') },
        }),
        410,
        'expired',
      );
      // A token for another namespace, a made-up token, bad base64, an unknown algorithm.
      const forEsc = await api(base, 'GET', '/v1/byok/namespaces/esc/import-params', { token: alice });
      expectError(await api(base, 'POST', '/v1/byok/namespaces/imp/import', { token: alice, body: { import_token: forEsc.body.import_token, encrypted_key_material: 'AAAA' } }), 400);
      expectError(await api(base, 'POST', '/v1/byok/namespaces/imp/import', { token: alice, body: { import_token: '00000000-0000-0000-0000-000000000000', encrypted_key_material: 'AAAA' } }), 404);
      expectError(await api(base, 'POST', '/v1/byok/namespaces/imp/import', { token: alice, body: { import_token: forEsc.body.import_token, encrypted_key_material: '%%%' } }), 400);
      expectError(await api(base, 'GET', '/v1/byok/namespaces/imp/import-params?algorithm=RSAES_PKCS1_V1_5', { token: alice }), 400);
      expect((await api(base, 'GET', '/v1/namespaces/imp', { token: root })).body.kek.current_version).toBe(before);
      // Root import needs the PKCS#11 seal; BYOK needs admin.
      expectError(await api(base, 'GET', '/v1/byok/root/import-params', { token: root }), 400, 'invalid_request');
      expectError(await api(base, 'GET', '/v1/byok/root/import-params', { token: alice }), 403);
      expectError(await api(base, 'GET', '/v1/byok/namespaces/imp/import-params', { token: reader }), 403);
      // Outside her namespaces alice is denied before anything is looked up; root gets the 404.
      expectError(await api(base, 'GET', '/v1/byok/namespaces/nope/import-params', { token: alice }), 403);
      expectError(await api(base, 'GET', '/v1/byok/namespaces/nope/import-params', { token: root }), 404);
    });

    // In CI (strict) openssl must be there (.ci/run installs ca-certificates, which brings it).
    (hasOpenssl() || strict ? it : it.skip)("the README's openssl commands wrap key material that imports, with both algorithms", async () => {
      const dir = mkdtempSync(join(tmpdir(), 'coffer-openssl-'));
      const sh = (script: string) => execFileSync('bash', ['-euo', 'pipefail', '-c', script], { cwd: dir, stdio: 'pipe' });
      try {
        for (const algorithm of ['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256'] as const) {
          const params = await api(base, 'GET', `/v1/byok/namespaces/imp/import-params?algorithm=${algorithm}`, { token: alice });
          writeFileSync(join(dir, 'wrapping-key.pem'), params.body.public_key);
          sh('openssl rand -out key.bin 32');
          if (algorithm === 'RSAES_OAEP_SHA_256') {
            // README: "RSAES_OAEP_SHA_256"
            sh(
              'openssl pkeyutl -encrypt -pubin -inkey wrapping-key.pem -in key.bin -out wrapped.bin ' +
                '-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256',
            );
          } else {
            // README: "RSA_AES_KEY_WRAP_SHA_256"
            sh(
              [
                'openssl rand -out aes.bin 32',
                'openssl enc -id-aes256-wrap-pad -K "$(od -An -tx1 -v aes.bin | tr -d \' \\n\')" -iv A65959A6 -in key.bin -out key.wrapped',
                'openssl pkeyutl -encrypt -pubin -inkey wrapping-key.pem -in aes.bin -out aes.wrapped -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256',
                'cat aes.wrapped key.wrapped > wrapped.bin',
                'rm -f aes.bin',
              ].join(' && '),
            );
          }
          const imported = await api(base, 'POST', '/v1/byok/namespaces/imp/import', {
            token: alice,
            body: { import_token: params.body.import_token, encrypted_key_material: readFileSync(join(dir, 'wrapped.bin')).toString('base64') },
          });
          expect(imported.status).toBe(200);
          expect((await exportKek('imp', imported.body.version)).equals(readFileSync(join(dir, 'key.bin')))).toBe(true);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('escrow export (two-person rule)', () => {
    it('request by one admin, approval by another, one download by the requester; audited without key bytes', async () => {
      const { publicPem, privateKey } = escrowKeyPair();
      const req = await api(base, 'POST', '/v1/escrow/requests', { token: alice, body: { namespace: 'esc', public_key: publicPem, algorithm: 'RSA_AES_KEY_WRAP_SHA_256' } });
      expect(req.status).toBe(201);
      expect(req.body).toMatchObject({ namespace: 'esc', kek_version: 1, state: 'pending', requested_by: 'token:alice', approved_by: null });
      const id = req.body.id as string;
      // The requester cannot approve her own request; nobody downloads before approval.
      expectError(await api(base, 'POST', `/v1/escrow/requests/${id}/approve`, { token: alice, body: {} }), 403, 'permission_denied');
      expectError(await api(base, 'POST', `/v1/escrow/requests/${id}/download`, { token: alice, body: {} }), 409, 'conflict');
      expectError(await api(base, 'POST', `/v1/escrow/requests/${id}/approve`, { token: reader, body: {} }), 403);
      const ok = await api(base, 'POST', `/v1/escrow/requests/${id}/approve`, { token: bob, body: {} });
      expect(ok.status).toBe(200);
      expect(ok.body).toMatchObject({ state: 'approved', approved_by: 'token:bob' });
      expectError(await api(base, 'POST', `/v1/escrow/requests/${id}/approve`, { token: bob, body: {} }), 409);
      // Only the requester downloads, once.
      expectError(await api(base, 'POST', `/v1/escrow/requests/${id}/download`, { token: bob, body: {} }), 403);
      const dl = await api(base, 'POST', `/v1/escrow/requests/${id}/download`, { token: alice, body: {} });
      expect(dl.status).toBe(200);
      const kek = unwrapEscrow(dl.body.wrapped_key_material, privateKey, 'RSA_AES_KEY_WRAP_SHA_256');
      expect(kek).toHaveLength(32);
      expectError(await api(base, 'POST', `/v1/escrow/requests/${id}/download`, { token: alice, body: {} }), 410, 'gone');
      expect((await api(base, 'GET', `/v1/escrow/requests/${id}`, { token: bob })).body.state).toBe('downloaded');
      const listed = await api(base, 'GET', '/v1/escrow/requests?namespace=esc', { token: bob });
      expect(listed.status).toBe(200);
      expect(listed.body.requests.find((r: { id: string }) => r.id === id)).toMatchObject({ state: 'downloaded', requested_by: 'token:alice', approved_by: 'token:bob' });
      expect(JSON.stringify(listed.body)).not.toContain('wrapped_key_material');
      expectError(await api(base, 'GET', '/v1/escrow/requests?namespace=esc', { token: reader }), 403);
      expectError(await api(base, 'GET', '/v1/escrow/requests', { token: bob }), 400);

      const audit = await api(base, 'GET', `/v1/sys/audit?namespace=esc&order=asc&limit=1000`, { token: root });
      const actions = (audit.body.entries as Array<{ action: string; outcome: string; identity: { id: string } }>).map((e) => `${e.action}:${e.outcome}:${e.identity?.id}`);
      expect(actions).toEqual(
        expect.arrayContaining([
          'escrow.request:success:token:alice',
          'escrow.approve:denied:token:alice',
          'escrow.approve:success:token:bob',
          'escrow.download:success:token:alice',
          'escrow.download:error:token:alice',
        ]),
      );
      const rows = await server.core.db.selectFrom('audit_log').select('body').execute();
      const all = rows.map((r) => r.body).join('\n');
      expect(all).not.toContain(dl.body.wrapped_key_material);
      expect(all).not.toContain(kek.toString('base64'));
      expect(all).not.toContain(kek.toString('hex'));
    });

    it('refuses expired requests, bad public keys, unknown versions and non-admins', async () => {
      const { publicPem } = escrowKeyPair(2048);
      const req = await api(base, 'POST', '/v1/escrow/requests', { token: alice, body: { namespace: 'esc', public_key: publicPem, ttl_seconds: 60 } });
      await server.core.db.updateTable('escrow_requests').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', req.body.id).execute();
      expect((await api(base, 'GET', `/v1/escrow/requests/${req.body.id}`, { token: alice })).body.state).toBe('expired');
      expectError(await api(base, 'POST', `/v1/escrow/requests/${req.body.id}/approve`, { token: bob, body: {} }), 410, 'expired');
      // Approved, then expired before the download.
      const req2 = await api(base, 'POST', '/v1/escrow/requests', { token: alice, body: { namespace: 'esc', public_key: publicPem } });
      await api(base, 'POST', `/v1/escrow/requests/${req2.body.id}/approve`, { token: bob, body: {} });
      await server.core.db.updateTable('escrow_requests').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', req2.body.id).execute();
      expectError(await api(base, 'POST', `/v1/escrow/requests/${req2.body.id}/download`, { token: alice, body: {} }), 410, 'expired');

      const weak = escrowKeyPair(1024).publicPem;
      expectError(await api(base, 'POST', '/v1/escrow/requests', { token: alice, body: { namespace: 'esc', public_key: weak } }), 400);
      expectError(await api(base, 'POST', '/v1/escrow/requests', { token: alice, body: { namespace: 'esc', public_key: 'not a key' } }), 400);
      expectError(await api(base, 'POST', '/v1/escrow/requests', { token: alice, body: { namespace: 'esc', public_key: publicPem, kek_version: 99 } }), 404);
      expectError(await api(base, 'POST', '/v1/escrow/requests', { token: alice, body: { namespace: 'nope', public_key: publicPem } }), 403);
      expectError(await api(base, 'POST', '/v1/escrow/requests', { token: root, body: { namespace: 'nope', public_key: publicPem } }), 404);
      expectError(await api(base, 'POST', '/v1/escrow/requests', { token: reader, body: { namespace: 'esc', public_key: publicPem } }), 403);
      expectError(await api(base, 'POST', '/v1/escrow/requests', { token: alice, body: { namespace: 'esc', public_key: publicPem, ttl_seconds: 1 } }), 400);
      expectError(await api(base, 'GET', '/v1/escrow/requests/not-an-id', { token: alice }), 404);
    });
  });
});
