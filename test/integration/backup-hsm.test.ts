// Restore under the PKCS#11 seal (SoftHSM2): the backup names the HSM key object; a server whose
// token does not hold it refuses the restore (409, nothing written), one on the original token
// restores, unseals from the HSM, and serves the original secrets with the original root token.
import { describeIfSoftHsm } from '../helpers/env.js';
import { api, createStore, expectError, startTestServer, type TestStore } from '../helpers/server.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';
import type { RunningServer } from '@coffer/server/server';

const NDJSON = { 'content-type': 'application/x-ndjson' };

describeIfSoftHsm('backup and restore under the PKCS#11 seal (SoftHSM2, PGlite)', () => {
  let hsm: SoftHsm;
  const servers: RunningServer[] = [];
  const stores: TestStore[] = [];
  const start = async (label: string) => {
    const store = await createStore('pglite');
    stores.push(store);
    const s = await startTestServer(store, hsm.config(label));
    servers.push(s);
    return s;
  };
  beforeAll(() => {
    hsm = createSoftHsm(['bk-orig', 'bk-other']);
  });
  afterAll(async () => {
    for (const s of servers) await s.stop().catch(() => undefined);
    for (const s of stores) await s.cleanup();
    hsm?.cleanup();
  });

  it('needs the HSM key the backup names; with it, restores and unseals from the HSM', async () => {
    const a = await start('bk-orig');
    const init = await api(a.url, 'POST', '/v1/sys/init', { body: { recovery_shares: 3, recovery_threshold: 2 } });
    expect(init.status).toBe(200);
    const token = init.body.root_token as string;
    expect((await api(a.url, 'POST', '/v1/namespaces', { token, body: { name: 'app' } })).status).toBe(201);
    expect((await api(a.url, 'PUT', '/v1/secrets/app/db', { token, body: { data: { password: 'p1' } } })).status).toBe(200);
    const backup = await api(a.url, 'GET', '/v1/sys/backup', { token });
    expect(backup.status).toBe(200);
    expect(backup.text.split('\n', 1)[0]).toContain('"type":"pkcs11"');

    // Another token without the key object: refused before anything is written.
    const other = await start('bk-other');
    const refused = await api(other.url, 'POST', '/v1/sys/restore', { rawBody: backup.text, headers: NDJSON });
    expectError(refused, 409, 'seal_mismatch');
    expect(refused.body.error.message).toMatch(/HSM does not hold/);
    expect((await api(other.url, 'GET', '/v1/sys/seal-status')).body.initialized).toBe(false);

    // The original token: restored, sealed, then unsealed by the HSM.
    const b = await start('bk-orig');
    const restored = await api(b.url, 'POST', '/v1/sys/restore', { rawBody: backup.text, headers: NDJSON });
    expect(restored.status).toBe(200);
    expect(restored.body).toMatchObject({ sealed: true, seal_type: 'pkcs11' });
    expect((await api(b.url, 'POST', '/v1/sys/unseal', { body: {} })).body).toMatchObject({ sealed: false });
    expect((await api(b.url, 'GET', '/v1/secrets/app/db', { token })).body.data).toEqual({ password: 'p1' });
    expect((await api(b.url, 'GET', '/v1/sys/audit/verify', { token })).body.ok).toBe(true);
    const verify = await api(b.url, 'POST', '/v1/sys/backup/verify', { token, rawBody: backup.text, headers: NDJSON });
    expect(verify.body).toMatchObject({ ok: true, digest: true, values: { opened: 1, failed: 0 } });
  }, 120_000);
});
