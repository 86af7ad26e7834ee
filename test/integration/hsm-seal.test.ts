// The PKCS#11 seal against a real SoftHSM2 token, on PGlite and PostgreSQL: init in the HSM,
// auto-unseal after a restart, failures that leave the server sealed, root rotation and seal
// migration in both directions with nothing lost.
import { describeIfSoftHsm } from '../helpers/env.js';
import { api, createStore, expectError, initAndUnseal, startTestServer, storageKinds, type TestStore } from '../helpers/server.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';
import type { RunningServer } from '@coffer/server/server';

describeIfSoftHsm('PKCS#11 seal (SoftHSM2)', () => {
  let hsm: SoftHsm;
  beforeAll(() => {
    hsm = createSoftHsm(storageKinds().flatMap((k) => [`init-${k}`, `rot-${k}`, `mig-${k}`, `shr-${k}`]));
  });
  afterAll(() => hsm?.cleanup());

  for (const kind of storageKinds()) {
    describe(`[${kind}]`, () => {
      const servers: RunningServer[] = [];
      const stores: TestStore[] = [];
      const start = async (store: TestStore, overrides: Record<string, unknown>) => {
        const s = await startTestServer(store, overrides);
        servers.push(s);
        return s;
      };
      const newStore = async () => {
        const s = await createStore(kind);
        stores.push(s);
        return s;
      };
      afterAll(async () => {
        for (const s of servers) await s.stop().catch(() => undefined);
        for (const s of stores) await s.cleanup();
      });

      it('init generates a sensitive, non-extractable AES-256 token key, returns recovery shares and unseals', async () => {
        const store = await newStore();
        const server = await start(store, hsm.config(`init-${kind}`));
        const init = await api(server.url, 'POST', '/v1/sys/init', { body: { recovery_shares: 3, recovery_threshold: 2 } });
        expect(init.status).toBe(200);
        expect(init.body).toMatchObject({ seal_type: 'pkcs11', recovery_threshold: 2 });
        expect(init.body.recovery_shares).toHaveLength(3);
        expect(init.body.shares).toBeUndefined();
        const status = await api(server.url, 'GET', '/v1/sys/seal-status');
        expect(status.body).toMatchObject({ initialized: true, sealed: false, seal_type: 'pkcs11', recovery_seal: true, shares: 3, threshold: 2 });

        const token = server.core.hsmForImports()!;
        expect(await token.describeKey('coffer-root-v1')).toEqual({ token: true, sensitive: true, extractable: false, valueLen: 32 });
        expect(await token.tryReadKeyValue('coffer-root-v1')).toBe('refused');

        const t = init.body.root_token as string;
        expect((await api(server.url, 'POST', '/v1/namespaces', { token: t, body: { name: 'app' } })).status).toBe(201);
        expect((await api(server.url, 'PUT', '/v1/secrets/app/db', { token: t, body: { data: { password: 'p1' } } })).status).toBe(200);

        // Recovery shares regenerate a root token (they stand in for the unseal shares).
        const gen1 = await api(server.url, 'POST', '/v1/sys/generate-root', { body: { share: init.body.recovery_shares[2] } });
        expect(gen1.body).toMatchObject({ complete: false, progress: 1 });
        const gen2 = await api(server.url, 'POST', '/v1/sys/generate-root', { body: { share: init.body.recovery_shares[0] } });
        expect(gen2.body.complete).toBe(true);
        expect((await api(server.url, 'GET', '/v1/namespaces', { token: gen2.body.root_token })).status).toBe(200);

        // {} retries the HSM only after a failed attempt: a server an operator sealed needs the
        // recovery shares (or a restart).
        expect((await api(server.url, 'POST', '/v1/sys/seal', { token: t })).status).toBe(200);
        expectError(await api(server.url, 'POST', '/v1/sys/unseal', { body: {} }), 400, 'invalid_request');
        expect((await api(server.url, 'POST', '/v1/sys/unseal', { body: { share: init.body.recovery_shares[1] } })).body).toMatchObject({ sealed: true, progress: 1 });
        expectError(await api(server.url, 'POST', '/v1/sys/unseal', { body: { share: 'A'.repeat(44) } }), 400, 'invalid_shares');
        await api(server.url, 'POST', '/v1/sys/unseal', { body: { share: init.body.recovery_shares[1] } });
        expect((await api(server.url, 'POST', '/v1/sys/unseal', { body: { share: init.body.recovery_shares[2] } })).body.sealed).toBe(false);
        expect((await api(server.url, 'GET', '/v1/secrets/app/db', { token: t })).body.data).toEqual({ password: 'p1' });
        await server.stop();

        // A restart unseals by itself. The label of the key in effect is stored, so a changed
        // COFFER_PKCS11_KEY_LABEL only names keys made from now on.
        const again = await start(store, hsm.config(`init-${kind}`, { pkcs11KeyLabel: 'other' }));
        expect((await api(again.url, 'GET', '/v1/sys/seal-status')).body.sealed).toBe(false);
        expect((await api(again.url, 'GET', '/v1/secrets/app/db', { token: t })).body.data).toEqual({ password: 'p1' });
        await again.stop();
        const before = await countRows(store);

        // Token missing: sealed with a clear error; data endpoints 503.
        const noToken = await start(store, hsm.config('no-such-token'));
        const st2 = (await api(noToken.url, 'GET', '/v1/sys/seal-status')).body;
        expect(st2.sealed).toBe(true);
        expect(st2.seal_error).toMatch(/no token labelled "no-such-token"/);
        expectError(await api(noToken.url, 'GET', '/v1/secrets/app/db', { token: t }), 503, 'sealed');
        expectError(await api(noToken.url, 'POST', '/v1/sys/unseal', { body: {} }), 503, 'unavailable');
        await noToken.stop();

        // Wrong PIN: sealed, and the PIN is in no message.
        const badPin = await start(store, { ...hsm.config(`init-${kind}`), pkcs11PinFile: undefined, pkcs11Pin: '999999' });
        const st3 = (await api(badPin.url, 'GET', '/v1/sys/seal-status')).body;
        expect(st3.sealed).toBe(true);
        expect(st3.seal_error).toMatch(/login failed: CKR_PIN_INCORRECT/);
        expect(JSON.stringify(st3)).not.toContain('999999');
        await badPin.stop();

        // Module missing: sealed.
        const noModule = await start(store, { ...hsm.config(`init-${kind}`), pkcs11Module: '/nonexistent/libpkcs11.so' });
        expect((await api(noModule.url, 'GET', '/v1/sys/seal-status')).body.seal_error).toMatch(/cannot load the PKCS#11 module/);
        await noModule.stop();

        // Key missing (deleted from the token): sealed, with the reason.
        const last = await start(store, hsm.config(`init-${kind}`));
        expect(await last.core.hsmForImports()!.destroyByLabel('coffer-root-v1')).toBe(1);
        await last.stop();
        const keyless = await start(store, hsm.config(`init-${kind}`));
        const st4 = (await api(keyless.url, 'GET', '/v1/sys/seal-status')).body;
        expect(st4).toMatchObject({ initialized: true, sealed: true });
        expect(st4.seal_error).toMatch(/root key "coffer-root-v1" is not on the token/);
        expectError(await api(keyless.url, 'GET', '/v1/namespaces', { token: t }), 503, 'sealed');
        await keyless.stop();
        // Nothing was written by any of the failed unseals.
        expect(await countRows(store)).toEqual(before);
      });

      it('init with an unreachable HSM answers 503 and leaves the server uninitialised', async () => {
        const store = await newStore();
        const server = await start(store, hsm.config('no-such-token'));
        expectError(await api(server.url, 'POST', '/v1/sys/init', { body: { shares: 1, threshold: 1 } }), 503, 'unavailable');
        expect((await api(server.url, 'GET', '/v1/sys/seal-status')).body.initialized).toBe(false);
        await server.stop();
      });

      it('root rotation in HSM mode: a new key object, every key rewrapped, the old object destroyed', async () => {
        const store = await newStore();
        const label = `rot-${kind}`;
        const server = await start(store, hsm.config(label));
        const init = await api(server.url, 'POST', '/v1/sys/init', { body: { shares: 1, threshold: 1 } });
        const t = init.body.root_token as string;
        for (const ns of ['a', 'b']) {
          await api(server.url, 'POST', '/v1/namespaces', { token: t, body: { name: ns } });
          await api(server.url, 'PUT', `/v1/secrets/${ns}/s`, { token: t, body: { data: { v: ns } } });
        }
        const rot = await api(server.url, 'POST', '/v1/sys/rotate-root', { token: t, body: {} });
        expect(rot.status).toBe(200);
        expect(rot.body).toMatchObject({ seal_type: 'pkcs11', root_version: 2, key_label: 'coffer-root-v2' });
        expect(rot.body.rewrapped.keks).toBe(2);
        expect(rot.body.rewrapped.system_keys).toBeGreaterThanOrEqual(2);
        const token = server.core.hsmForImports()!;
        expect(await token.describeKey('coffer-root-v1')).toBeNull();
        expect(await token.describeKey('coffer-root-v2')).toMatchObject({ sensitive: true, extractable: false });
        expect((await api(server.url, 'GET', '/v1/secrets/a/s', { token: t })).body.data).toEqual({ v: 'a' });
        await server.stop();
        const again = await start(store, hsm.config(label));
        expect((await api(again.url, 'GET', '/v1/secrets/b/s', { token: t })).body.data).toEqual({ v: 'b' });
        // A namespace created after the rotation works, and a second rotation too.
        await api(again.url, 'POST', '/v1/namespaces', { token: t, body: { name: 'c' } });
        expect((await api(again.url, 'POST', '/v1/sys/rotate-root', { token: t, body: {} })).body.root_version).toBe(3);
        expect((await api(again.url, 'GET', '/v1/secrets/a/s', { token: t })).body.data).toEqual({ v: 'a' });
      });

      it('seal migration Shamir → PKCS#11 → Shamir keeps every secret; shares become recovery shares and back', async () => {
        const store = await newStore();
        const label = `mig-${kind}`;
        const server = await start(store, hsm.config(label, { seal: 'shamir' }));
        const { token: t, shares } = await initAndUnseal(server.url, 3, 2);
        await api(server.url, 'POST', '/v1/namespaces', { token: t, body: { name: 'm' } });
        await api(server.url, 'PUT', '/v1/secrets/m/x', { token: t, body: { data: { v: 'before' } } });

        expectError(await api(server.url, 'POST', '/v1/sys/seal-migrate', { token: t, body: { to: 'pkcs11', shares: [shares[0]] } }), 400, 'invalid_shares');
        expectError(await api(server.url, 'POST', '/v1/sys/seal-migrate', { token: t, body: { to: 'shamir', shares } }), 409, 'conflict');
        const up = await api(server.url, 'POST', '/v1/sys/seal-migrate', { token: t, body: { to: 'pkcs11', shares: shares.slice(1) } });
        expect(up.status).toBe(200);
        expect(up.body).toMatchObject({ seal_type: 'pkcs11', root_version: 2 });
        expect((await api(server.url, 'GET', '/v1/secrets/m/x', { token: t })).body.data).toEqual({ v: 'before' });
        await api(server.url, 'PUT', '/v1/secrets/m/x', { token: t, body: { data: { v: 'during' } } });
        await server.stop();

        // Auto-unseals now, although configured as shamir: the database says which seal is in effect.
        const hsmServer = await start(store, hsm.config(label));
        expect((await api(hsmServer.url, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ sealed: false, seal_type: 'pkcs11' });
        expect((await api(hsmServer.url, 'GET', '/v1/secrets/m/x?version=1', { token: t })).body.data).toEqual({ v: 'before' });
        // Back with the recovery shares (= the old unseal shares).
        const down = await api(hsmServer.url, 'POST', '/v1/sys/seal-migrate', { token: t, body: { to: 'shamir', shares: [shares[2], shares[0]] } });
        expect(down.status).toBe(200);
        expect(down.body).toMatchObject({ seal_type: 'shamir', root_version: 3 });
        expect(await hsmServer.core.hsmForImports()).toBeNull();
        await hsmServer.stop();

        const shamir = await start(store, {});
        expect((await api(shamir.url, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ sealed: true, seal_type: 'shamir' });
        for (const share of shares.slice(0, 2)) await api(shamir.url, 'POST', '/v1/sys/unseal', { body: { share } });
        expect((await api(shamir.url, 'GET', '/v1/secrets/m/x', { token: t })).body.data).toEqual({ v: 'during' });
        expect((await api(shamir.url, 'GET', '/v1/secrets/m/x?version=1', { token: t })).body.data).toEqual({ v: 'before' });
      });

      it('root rotation in Shamir mode is a rekey that needs the threshold of current shares', async () => {
        const store = await newStore();
        const server = await start(store, {});
        const { token: t, shares } = await initAndUnseal(server.url, 3, 2);
        await api(server.url, 'POST', '/v1/namespaces', { token: t, body: { name: 'r' } });
        await api(server.url, 'PUT', '/v1/secrets/r/x', { token: t, body: { data: { v: '1' } } });
        expectError(await api(server.url, 'POST', '/v1/sys/rotate-root', { token: t, body: {} }), 400, 'invalid_shares');
        expectError(await api(server.url, 'POST', '/v1/sys/rotate-root', { token: t, body: { shares: [shares[0]] } }), 400, 'invalid_shares');
        expectError(await api(server.url, 'POST', '/v1/sys/rotate-root', { body: { shares } }), 401);
        const rot = await api(server.url, 'POST', '/v1/sys/rotate-root', { token: t, body: { shares: shares.slice(0, 2), new_shares: 5, new_threshold: 3 } });
        expect(rot.status).toBe(200);
        expect(rot.body).toMatchObject({ seal_type: 'shamir', root_version: 2, threshold: 3, state: 'pending_verification' });
        expect(rot.body.shares).toHaveLength(5);
        // Nothing changed yet: a lost response would lose nothing; the old shares still unseal.
        expect((await api(server.url, 'GET', '/v1/sys/seal-status')).body.root_version).toBe(1);
        await api(server.url, 'POST', '/v1/sys/seal', { token: t });
        for (const share of shares.slice(1)) await api(server.url, 'POST', '/v1/sys/unseal', { body: { share } });
        expect((await api(server.url, 'GET', '/v1/secrets/r/x', { token: t })).body.data).toEqual({ v: '1' });
        // Verification needs the threshold of the NEW shares.
        expectError(await api(server.url, 'POST', '/v1/sys/rotate-root/verify', { token: t, body: { shares: rot.body.shares.slice(0, 2) } }), 400, 'invalid_shares');
        expectError(await api(server.url, 'POST', '/v1/sys/rotate-root/verify', { token: t, body: { shares: [...shares, rot.body.shares[0]] } }), 400, 'invalid_shares');
        const verified = await api(server.url, 'POST', '/v1/sys/rotate-root/verify', { token: t, body: { shares: rot.body.shares.slice(1, 4) } });
        expect(verified.status).toBe(200);
        expect(verified.body).toMatchObject({ seal_type: 'shamir', root_version: 2, state: 'completed' });
        expect(verified.body.rewrapped.keks).toBe(1);
        expectError(await api(server.url, 'POST', '/v1/sys/rotate-root/verify', { token: t, body: { shares: rot.body.shares.slice(1, 4) } }), 409, 'conflict');
        expect((await api(server.url, 'GET', '/v1/secrets/r/x', { token: t })).body.data).toEqual({ v: '1' });
        await api(server.url, 'POST', '/v1/sys/seal', { token: t });
        // Old shares no longer unseal (the threshold is 3 now); three of the new ones do.
        await api(server.url, 'POST', '/v1/sys/unseal', { body: { share: shares[0] } });
        await api(server.url, 'POST', '/v1/sys/unseal', { body: { share: shares[1] } });
        expectError(await api(server.url, 'POST', '/v1/sys/unseal', { body: { share: shares[2] } }), 400, 'invalid_shares');
        for (const share of rot.body.shares.slice(2)) await api(server.url, 'POST', '/v1/sys/unseal', { body: { share } });
        expect((await api(server.url, 'GET', '/v1/secrets/r/x', { token: t })).body.data).toEqual({ v: '1' });
      });
    });
  }
});

/** Rows of the key tables, to prove a failed unseal wrote nothing. */
async function countRows(store: TestStore): Promise<unknown> {
  const s = await startTestServer(store, {});
  try {
    const db = s.core.db;
    const sc = await db.selectFrom('seal_config').selectAll().execute();
    const sk = await db.selectFrom('system_keys').select(['name', 'version', 'root_version']).execute();
    const nk = await db.selectFrom('namespace_keys').select(['namespace_id', 'version', 'root_version']).execute();
    return { sc: sc.map((r) => ({ ...r, root_check: Buffer.from(r.root_check).toString('hex') })), sk, nk };
  } finally {
    await s.stop();
  }
}
