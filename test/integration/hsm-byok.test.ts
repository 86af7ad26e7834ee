// BYOK under the PKCS#11 seal (SoftHSM2): wrapping keys generated in the HSM, namespace KEK
// imports with every algorithm, and the root key imported into the HSM.
import { randomBytes } from 'node:crypto';
import type { RunningServer } from '@coffer/server/server';
import { describeIfSoftHsm } from '../helpers/env.js';
import { api, createStore, expectError, startTestServer, storageKinds, type TestStore } from '../helpers/server.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';
import { escrowKeyPair, unwrapEscrow, wrapForImport, type WrapAlgorithm } from '../helpers/byok.js';

describeIfSoftHsm('BYOK with the PKCS#11 seal (SoftHSM2)', () => {
  let hsm: SoftHsm;
  beforeAll(() => {
    hsm = createSoftHsm(storageKinds().map((k) => `byok-${k}`));
  });
  afterAll(() => hsm?.cleanup());

  for (const kind of storageKinds()) {
    describe(`[${kind}]`, () => {
      let store: TestStore;
      let server: RunningServer;
      let t: string;
      beforeAll(async () => {
        store = await createStore(kind);
        server = await startTestServer(store, hsm.config(`byok-${kind}`));
        t = (await api(server.url, 'POST', '/v1/sys/init', { body: { shares: 1, threshold: 1 } })).body.root_token;
        await api(server.url, 'POST', '/v1/namespaces', { token: t, body: { name: 'hsm-imp' } });
      });
      afterAll(async () => {
        await server?.stop();
        await store?.cleanup();
      });

      it.each(['RSAES_OAEP_SHA_1', 'RSA_AES_KEY_WRAP_SHA_1', 'RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256'] as WrapAlgorithm[])(
        'imports a namespace KEK wrapped with %s under an HSM-generated wrapping key',
        async (algorithm) => {
          const params = await api(server.url, 'GET', `/v1/byok/namespaces/hsm-imp/import-params?algorithm=${algorithm}`, { token: t });
          expect(params.status).toBe(200);
          expect(params.body.wrapping_key_origin).toBe('hsm');
          const label = `coffer-root-import-${params.body.import_token}`;
          const token = server.core.hsmForImports()!;
          expect((await token.listSecretKeyLabels('')).includes(label)).toBe(false); // RSA, not a secret key
          const material = randomBytes(32);
          const imported = await api(server.url, 'POST', '/v1/byok/namespaces/hsm-imp/import', {
            token: t,
            body: { import_token: params.body.import_token, encrypted_key_material: wrapForImport(material, params.body.public_key, algorithm) },
          });
          expect(imported.status).toBe(200);
          expect(imported.body.origin).toBe('external');
          // The wrapping key pair is gone from the token after use.
          expect(await token.destroyByLabel(label)).toBe(0);
          await api(server.url, 'PUT', '/v1/secrets/hsm-imp/s', { token: t, body: { data: { v: algorithm } } });
          expect((await api(server.url, 'GET', '/v1/secrets/hsm-imp/s', { token: t })).body.data).toEqual({ v: algorithm });
          // Root may escrow alone only if there is a second identity: check the KEK through a second root token.
          const second = (await api(server.url, 'POST', '/v1/auth/token/create', { token: t, body: { policies: ['root'], display_name: 'second' } })).body.auth.client_token;
          const { publicPem, privateKey } = escrowKeyPair();
          const req = await api(server.url, 'POST', '/v1/escrow/requests', { token: t, body: { namespace: 'hsm-imp', kek_version: imported.body.version, public_key: publicPem } });
          expect((await api(server.url, 'POST', `/v1/escrow/requests/${req.body.id}/approve`, { token: second, body: {} })).status).toBe(200);
          const dl = await api(server.url, 'POST', `/v1/escrow/requests/${req.body.id}/download`, { token: t, body: {} });
          expect(unwrapEscrow(dl.body.wrapped_key_material, privateKey, 'RSAES_OAEP_SHA_256').equals(material)).toBe(true);
        },
      );

      it('refuses SHA-256 root import parameters (SoftHSM2 cannot unwrap them inside the token) and garbage material', async () => {
        expectError(await api(server.url, 'GET', '/v1/byok/root/import-params?algorithm=RSAES_OAEP_SHA_256', { token: t }), 400, 'unsupported_algorithm');
        const params = await api(server.url, 'GET', '/v1/byok/root/import-params?algorithm=RSAES_OAEP_SHA_1', { token: t });
        expectError(
          await api(server.url, 'POST', '/v1/byok/root/import', {
            token: t,
            body: { import_token: params.body.import_token, encrypted_key_material: wrapForImport(randomBytes(16), params.body.public_key, 'RSAES_OAEP_SHA_1') },
          }),
          400,
          'unsupported_algorithm',
        );
        const kwp = await api(server.url, 'GET', '/v1/byok/root/import-params?algorithm=RSA_AES_KEY_WRAP_SHA_1', { token: t });
        expectError(
          await api(server.url, 'POST', '/v1/byok/root/import', {
            token: t,
            body: { import_token: kwp.body.import_token, encrypted_key_material: wrapForImport(randomBytes(16), kwp.body.public_key, 'RSA_AES_KEY_WRAP_SHA_1') },
          }),
          400,
          'invalid_key_material',
        );
        expect((await api(server.url, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ sealed: false });
        expect(await server.core.hsmForImports()!.describeKey('coffer-root-v2')).toBeNull();
      });

      it('imports the root key into the HSM (RSA_AES_KEY_WRAP_SHA_1): everything rewrapped, survives a restart', async () => {
        await api(server.url, 'PUT', '/v1/secrets/hsm-imp/root-test', { token: t, body: { data: { v: 'kept' } } });
        const params = await api(server.url, 'GET', '/v1/byok/root/import-params?algorithm=RSA_AES_KEY_WRAP_SHA_1', { token: t });
        expect(params.status).toBe(200);
        const imported = await api(server.url, 'POST', '/v1/byok/root/import', {
          token: t,
          body: { import_token: params.body.import_token, encrypted_key_material: wrapForImport(randomBytes(32), params.body.public_key, 'RSA_AES_KEY_WRAP_SHA_1') },
        });
        expect(imported.status).toBe(200);
        const version = imported.body.root_version as number;
        expect(version).toBeGreaterThanOrEqual(2);
        const token = server.core.hsmForImports()!;
        // (SoftHSM2 reports CKA_VALUE_LEN 0 for unwrapped keys.)
        expect(await token.describeKey(`coffer-root-v${version}`)).toMatchObject({ token: true, sensitive: true, extractable: false });
        expect(await token.tryReadKeyValue(`coffer-root-v${version}`)).toBe("refused");
        expect(await token.describeKey(`coffer-root-v${version - 1}`)).toBeNull();
        expect((await api(server.url, 'GET', '/v1/secrets/hsm-imp/root-test', { token: t })).body.data).toEqual({ v: 'kept' });
        await server.stop();
        server = await startTestServer(store, hsm.config(`byok-${kind}`));
        expect((await api(server.url, 'GET', '/v1/secrets/hsm-imp/root-test', { token: t })).body.data).toEqual({ v: 'kept' });
      });
    });
  }
});
