// Restore under the PKCS#11 seal (SoftHSM2): the backup names the HSM key object; a server whose
// token does not hold it refuses the restore (409, nothing written). On the original token an
// edited backup whose SHA-256 was recomputed is refused (its sealed digest does not open under the
// HSM's root key); the genuine one restores, unseals with the HSM key, and serves the original
// secrets with the original root token.
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { restoreUpload } from '@coffer/sdk/api';
import { describeIfSoftHsm } from '../helpers/env.js';
import { api, createStore, expectError, startTestServer, type TestStore } from '../helpers/server.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';
import type { RunningServer } from '@coffer/server/server';

const NDJSON = { 'content-type': 'application/x-ndjson' };

/** An attacker's edit: one more row after `after` in its table, the manifest's count and the SHA-256 recomputed. */
function plantRow(text: string, table: string, after: (line: string) => boolean, edit: (line: string) => string): string {
  const lines = text.slice(0, -1).split('\n');
  const i = lines.findIndex(after);
  if (i < 0) throw new Error('no such line');
  lines.splice(i + 1, 0, edit(lines[i]!));
  const end = JSON.parse(lines.pop()!) as { end: { counts: Record<string, number>; sha256: string } };
  end.end.counts[table]! += 1;
  const content = lines.map((l) => `${l}\n`).join('');
  end.end.sha256 = createHash('sha256').update(content, 'utf8').digest('hex');
  return `${content}${JSON.stringify(end)}\n`;
}

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

    // The original token holds the key, but an edited backup (a planted policy, SHA-256 recomputed) is refused.
    const b = await start('bk-orig');
    expect((await api(a.url, 'PUT', '/v1/sys/policies/app-read', { token, body: { rules: [{ namespace: 'app', path: '*', capabilities: ['read'] }] } })).status).toBeLessThan(300);
    const withPolicy = await api(a.url, 'GET', '/v1/sys/backup', { token });
    const planted = plantRow(withPolicy.text, 'policies', (l) => l.startsWith('{"r":') && l.includes('"rules"') && l.includes('"app-read"'), (l) => l.replace('"app-read"', '"attacker"').replace('"read"', '"delete"'));
    const forged = await api(b.url, 'POST', '/v1/sys/restore', { rawBody: planted, headers: NDJSON });
    expectError(forged, 400, 'invalid_backup');
    expect(forged.body.error.message).toMatch(/sealed digest does not open under the root key/);
    expect((await api(b.url, 'GET', '/v1/sys/seal-status')).body.initialized).toBe(false);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from policies`.execute(b.core.db);
    expect(rows[0]!.n).toBe(0);
    // The HSM holds the root key: shares are not taken.
    expectError(await api(b.url, 'POST', '/v1/sys/restore', { rawBody: restoreUpload(backup.text, ['AAAA']), headers: NDJSON }), 400, 'invalid_request');

    // The genuine backup: restored, and unsealed with the HSM key it proved.
    const restored = await api(b.url, 'POST', '/v1/sys/restore', { rawBody: backup.text, headers: NDJSON });
    expect(restored.status).toBe(200);
    expect(restored.body).toMatchObject({ sealed: false, seal_type: 'pkcs11' });
    expect((await api(b.url, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ initialized: true, sealed: false });
    expect((await api(b.url, 'GET', '/v1/secrets/app/db', { token })).body.data).toEqual({ password: 'p1' });
    expect((await api(b.url, 'GET', '/v1/sys/audit/verify', { token })).body.ok).toBe(true);
    const verify = await api(b.url, 'POST', '/v1/sys/backup/verify', { token, rawBody: backup.text, headers: NDJSON });
    expect(verify.body).toMatchObject({ ok: true, digest: true, values: { opened: 1, failed: 0 } });
  }, 300_000);
});
