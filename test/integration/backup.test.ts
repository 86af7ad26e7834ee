// Backup and restore (GET /v1/sys/backup, POST /v1/sys/backup/verify, POST /v1/sys/restore): a
// vault with secrets, policies, identities, KMS keys and an audit chain is backed up, restored into
// a fresh server, unsealed with the ORIGINAL shares and read back; edited backups are refused.
// On PGlite and PostgreSQL, through the real app.
import { sql } from 'kysely';
import { parseBackup as parseWith, restoreUpload } from '@coffer/sdk/api';
import { sha256Hex } from '@coffer/server/vault/backup';
import type { RunningServer } from '@coffer/server/server';
import { TABLES } from '@coffer/server/storage/wrapped-tables';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, unsealWith, type TestStore } from '../helpers/server.js';
import { rehash } from '../helpers/backup.js';

const NDJSON = { 'content-type': 'application/x-ndjson' };
const b64 = (s: string) => Buffer.from(s).toString('base64');
const parseBackup = (text: string) => parseWith(text, sha256Hex);


/**
 * An attacker's edit: a policy granting everything planted beside `payments-read`, the manifest's
 * count and the SHA-256 recomputed. Only the sealed digest (root key) can tell.
 */
function plantPolicy(text: string): string {
  const lines = text.split('\n');
  const i = lines.findIndex((l) => l.includes('"rules"') && l.includes('"payments-read"'));
  if (i < 0) throw new Error('no policy line');
  const planted = lines[i]!.replace('"payments-read"', '"attacker-owns-all"').replace(/"rules": \[.*\], "created_at"/, '"rules": [{"path": "*", "namespace": "*", "capabilities": ["read", "list", "create", "update", "delete"]}], "created_at"');
  if (planted === lines[i] || !planted.includes('attacker-owns-all')) throw new Error('policy line not edited');
  lines.splice(i + 1, 0, planted);
  const last = lines.length - 2;
  const end = JSON.parse(lines[last]!) as { end: { counts: Record<string, number> } };
  end.end.counts.policies! += 1;
  lines[last] = JSON.stringify(end);
  return rehash(lines.join('\n'));
}

/** One share with a byte in the middle flipped: still well formed, rebuilds another key. */
function corrupt(share: string): string {
  const bytes = Buffer.from(share, 'base64');
  bytes[10] = bytes[10]! ^ 0x5a;
  return bytes.toString('base64');
}

/** Replaces the first line matching `match` with `edit(line)`. */
function editLine(text: string, match: (line: string) => boolean, edit: (line: string) => string): string {
  const lines = text.split('\n');
  const i = lines.findIndex(match);
  if (i < 0) throw new Error('no such line');
  lines[i] = edit(lines[i]!);
  return lines.join('\n');
}

describeEachStorage('backup and restore', (kind) => {
  let storeA: TestStore;
  let a: RunningServer;
  let baseA: string;
  let token: string;
  let shares: string[];
  let backup: string;
  let kmsCiphertext: string;
  const asRoot = (body?: unknown) => ({ token, ...(body === undefined ? {} : { body }) });

  beforeAll(async () => {
    storeA = await createStore(kind);
    a = await startTestServer(storeA, { kekRunJobs: false });
    baseA = a.url;
    ({ token, shares } = await initAndUnseal(baseA, 3, 2));
    expect((await api(baseA, 'POST', '/v1/namespaces', asRoot({ name: 'payments' }))).status).toBe(201);
    await api(baseA, 'PUT', '/v1/secrets/payments/db/password', asRoot({ data: { password: 'v1' } }));
    await api(baseA, 'PUT', '/v1/secrets/payments/db/password', asRoot({ data: { password: 'v2' } }));
    // A second KEK version: DEKs under both must come back.
    expect((await api(baseA, 'POST', '/v1/namespaces/payments/kek/rotate', asRoot({}))).status).toBe(200);
    await api(baseA, 'PUT', '/v1/secrets/payments/api/token', asRoot({ data: { token: 't0k' } }));
    await api(baseA, 'PUT', '/v1/sys/policies/payments-read', asRoot({ rules: [{ namespace: 'payments', path: '*', capabilities: ['read', 'list'] }] }));
    expect((await api(baseA, 'PUT', '/v1/auth/userpass/users/alice', asRoot({ password: 'correct horse battery', policies: ['payments-read'] }))).status).toBe(201);
    await a.core.services().kms.keys.create('payments', 'k1', { type: 'aes256-gcm' });
    ({ ciphertext: kmsCiphertext } = await a.core.services().kms.ops.encrypt('payments', 'k1', { plaintext: b64('kms data') }));
    const res = await api(baseA, 'GET', '/v1/sys/backup', asRoot());
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
    backup = res.text;
  }, 120_000);

  afterAll(async () => {
    await a?.stop();
    await storeA?.cleanup();
  });

  it('holds every table of the schema, with a manifest that checks offline', async () => {
    const parsed = parseBackup(backup);
    const { rows } = await sql<{ name: string }>`select table_name as name from information_schema.tables
      where table_schema = current_schema() and table_type = 'BASE TABLE' and table_name not like 'kysely_%'`.execute(a.core.db);
    // A table added to the schema but not to the registry (wrapped-tables.ts TABLES) fails here.
    expect([...parsed.header.tables].sort()).toEqual(rows.map((r) => r.name).sort());
    expect([...parsed.header.tables].sort()).toEqual(Object.keys(TABLES).sort());
    expect(parsed.header).toMatchObject({ format: 1, seal: { type: 'shamir', root_version: 1, shares: 3, threshold: 2 } });
    expect(parsed.trailer.counts).toMatchObject({ namespaces: 1, secrets: 2, secret_versions: 3, policies: 1, users: 1, kms_keys: 1, namespace_keys: 2 });
    expect(parsed.trailer.fingerprints.root_check).toMatch(/^[0-9a-f]{32}$/);
    expect(Object.keys(parsed.trailer.fingerprints).filter((k) => k.startsWith('namespace_keys/'))).toHaveLength(2);
    // Values stay encrypted: neither a secret's plaintext nor the argon2 input appears.
    expect(backup).not.toContain('correct horse battery');
    expect(backup).not.toContain('t0k');
  });

  it('refuses a backup that would leave out a table the registry does not know', async () => {
    await sql`create table backup_test_unregistered (id int primary key)`.execute(a.core.db);
    try {
      const res = await api(baseA, 'GET', '/v1/sys/backup', asRoot());
      expect(res.status).toBe(500);
      expect(res.text).not.toContain('"end"');
    } finally {
      await sql`drop table backup_test_unregistered`.execute(a.core.db);
    }
  });

  it('is for server-wide admins only, and audited', async () => {
    const login = await api(baseA, 'POST', '/v1/auth/userpass/login', { body: { username: 'alice', password: 'correct horse battery' } });
    const alice = login.body.auth.client_token as string;
    expectError(await api(baseA, 'GET', '/v1/sys/backup', { token: alice }), 403, 'permission_denied');
    expectError(await api(baseA, 'GET', '/v1/sys/backup'), 401);
    expectError(await api(baseA, 'POST', '/v1/sys/backup/verify', { token: alice, rawBody: backup, headers: NDJSON }), 403, 'permission_denied');
    const entries = await a.core.db.selectFrom('audit_log').select(['action', 'status']).where('action', '=', 'sys.backup').execute();
    expect(entries).toEqual(expect.arrayContaining([{ action: 'sys.backup', status: 200 }, { action: 'sys.backup', status: 403 }]));
  });

  it('proves on the unsealed server that every wrapped key opens, answering counts only', async () => {
    const res = await api(baseA, 'POST', '/v1/sys/backup/verify', { token, rawBody: backup, headers: NDJSON });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ ok: true, root_check: true, digest: true, failures: [] });
    expect(res.body.root_wrapped.opened).toBeGreaterThanOrEqual(4); // 2 KEKs, token signing key, audit key
    expect(res.body.kek_wrapped).toEqual({ opened: 4, failed: 0 }); // 3 DEKs, 1 named key version
    expect(res.body.values).toEqual({ opened: 3, failed: 0 });
    expect(Object.keys(res.body).sort()).toEqual(['digest', 'failures', 'kek_wrapped', 'ok', 'root_check', 'root_wrapped', 'values']);
  });

  it('catches an edit whose SHA-256 was recomputed: the sealed digest no longer matches', async () => {
    const edited = rehash(editLine(backup, (l) => l.includes('"rules"') && l.includes('"payments-read"'), (l) => l.replace('"read"', '"delete"')));
    expect(() => parseBackup(edited)).not.toThrow();
    const res = await api(baseA, 'POST', '/v1/sys/backup/verify', { token, rawBody: edited, headers: NDJSON });
    expect(res.body).toMatchObject({ ok: false, digest: false, root_check: true });
  });

  it('catches a swapped wrapped DEK as a key that does not open', async () => {
    // Two DEK rows exchange their wrapped keys: each is bound to its own row (AAD) and fails.
    const lines = backup.split('\n');
    const deks = lines.map((l, i) => [l, i] as const).filter(([l]) => l.includes('"wrapped_dek"'));
    const dekOf = (l: string) => /"wrapped_dek": "([^"]+)"/.exec(l)![1]!;
    const [x, y] = [deks[0]!, deks[1]!];
    lines[x[1]] = x[0].replace(dekOf(x[0]), dekOf(y[0]));
    lines[y[1]] = y[0].replace(dekOf(y[0]), dekOf(x[0]));
    const res = await api(baseA, 'POST', '/v1/sys/backup/verify', { token, rawBody: rehash(lines.join('\n')), headers: NDJSON });
    expect(res.body.ok).toBe(false);
    expect(res.body.kek_wrapped.failed).toBe(2);
    expect(res.body.failures.filter((f: string) => f.startsWith('secret_versions/'))).toHaveLength(2);
  });

  describe('restore into a fresh server', () => {
    let storeB: TestStore;
    let b: RunningServer;

    beforeAll(async () => {
      storeB = await createStore(kind);
      b = await startTestServer(storeB, { kekRunJobs: false }, process.env.BACKUP_DEBUG ? process.stderr : undefined);
      // The uninitialised server audits what it is asked before the restore.
      await api(b.url, 'GET', '/v1/sys/seal-status');
    }, 60_000);

    afterAll(async () => {
      await b?.stop();
      await storeB?.cleanup();
    });

    const restore = (text: string, opts: { shares?: string[]; headers?: Record<string, string> } = {}) =>
      api(b.url, 'POST', '/v1/sys/restore', { rawBody: restoreUpload(text, opts.shares ?? shares.slice(0, 2)), headers: opts.headers ?? NDJSON });
    const nothingRestored = async () => {
      expect((await api(b.url, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ initialized: false });
      for (const table of ['namespaces', 'policies', 'users', 'seal_config'] as const) {
        const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(b.core.db);
        expect({ table, rows: rows[0]!.n }).toEqual({ table, rows: 0 });
      }
    };

    it('refuses edited, truncated, newer and other-seal backups with a 4xx, changing nothing', async () => {
      expectError(await restore(backup.replace('"payments"', '"paymentz"')), 400, 'invalid_backup');
      expectError(await restore(backup.slice(0, Math.floor(backup.length / 2))), 400, 'invalid_backup');
      expectError(await restore(backup.slice(0, backup.lastIndexOf('{"end"'))), 400, 'invalid_backup');
      expectError(await restore('not a backup\n'), 400, 'invalid_backup');
      const newer = rehash(editLine(backup, (l) => l.startsWith('{"coffer_backup"'), (l) => l.replace('"format":1', '"format":2')));
      expectError(await restore(newer), 400, 'unsupported_backup');
      // An edited header is a forgery like any other edit: its sealed digest no longer matches.
      const otherSchema = rehash(editLine(backup, (l) => l.startsWith('{"coffer_backup"'), (l) => l.replace(/"schema":"[^"]+"/, '"schema":"9999_future"')));
      expectError(await restore(otherSchema), 400, 'invalid_backup');
      const oddName = rehash(editLine(backup, (l) => l.startsWith('{"coffer_backup"'), (l) => l.replace('"type":"shamir"', '"type":"<b>x</b>"')));
      expectError(await restore(oddName), 400, 'invalid_backup');
      const pkcs11 = rehash(editLine(backup, (l) => l.startsWith('{"coffer_backup"'), (l) => l.replace('"type":"shamir"', '"type":"pkcs11"')));
      const mismatch = await restore(pkcs11);
      expectError(mismatch, 409, 'seal_mismatch');
      expect(mismatch.body.error.message).toMatch(/pkcs11.*shamir/);
      const badRow = rehash(editLine(backup, (l) => l.includes('"rules"') && l.includes('"payments-read"'), (l) => l.replace(/"created_at": "[^"]+"/, '"created_at": "not a time"')));
      expectError(await restore(badRow), 400, 'invalid_backup');
      expectError(await restore(backup, { headers: { 'content-type': 'application/json' } }), 400, 'invalid_json');
      await nothingRestored();
    });

    it('refuses a backup with a planted policy whose SHA-256 was recomputed: the sealed digest does not open, nothing is written', async () => {
      const planted = plantPolicy(backup);
      // The offline checks (structure, counts, fingerprints, SHA-256) cannot tell.
      expect(parseBackup(planted).trailer.counts.policies).toBe(2);
      // Sent as is (no shares): refused before anything is written (accepted, planted policy and all, before issue 15).
      expectError(await api(b.url, 'POST', '/v1/sys/restore', { rawBody: planted, headers: NDJSON }), 400, 'invalid_shares');
      await nothingRestored();
      const res = await restore(planted);
      expectError(res, 400, 'invalid_backup');
      expect(res.body.error.message).toMatch(/sealed digest does not open under the root key/);
      await nothingRestored();
      // Made by another vault: the backup of a fresh server C does not open under A's shares either.
      const storeC = await createStore(kind);
      const c = await startTestServer(storeC, { kekRunJobs: false });
      try {
        const other = await initAndUnseal(c.url, 3, 2);
        const foreign = await api(c.url, 'GET', '/v1/sys/backup', { token: other.token });
        expectError(await restore(foreign.text), 400, 'invalid_shares');
        // Its own shares rebuild its root key, but an edited copy is still refused.
        expectError(await restore(rehash(foreign.text.replace('"sys.init"', '"sys.initz"')), { shares: other.shares.slice(0, 2) }), 400, 'invalid_backup');
      } finally {
        await c.stop();
        await storeC.cleanup();
      }
      await nothingRestored();
    }, 120_000);

    it('refuses missing, too few, wrong or malformed shares with a 4xx that never quotes a share', async () => {
      const none = await api(b.url, 'POST', '/v1/sys/restore', { rawBody: backup, headers: NDJSON });
      expectError(none, 400, 'invalid_shares');
      expect(none.body.error.message).toMatch(/ORIGINAL unseal shares/);
      expectError(await restore(backup, { shares: [shares[0]!] }), 400, 'invalid_shares');
      expectError(await restore(backup, { shares: [shares[0]!, shares[0]!] }), 400, 'invalid_shares');
      const wrong = await restore(backup, { shares: [shares[0]!, corrupt(shares[1]!)] });
      expectError(wrong, 400, 'invalid_shares');
      expect(wrong.body.error.message).toMatch(/do not reconstruct the backup's root key/);
      expectError(await restore(backup, { shares: ['not a share', shares[1]!] }), 400, 'invalid_shares');
      for (const envelope of ['{"coffer_restore":{"shares":"x"}}', '{"coffer_restore":{"shares":[1,2]},"x":1}', '{"coffer_restore":null}', '{"coffer_restore":{"shares":[]}}']) {
        const res = await api(b.url, 'POST', '/v1/sys/restore', { rawBody: `${envelope}\n${backup}`, headers: NDJSON });
        expect([400]).toContain(res.status);
        expect(['invalid_request', 'invalid_shares']).toContain(res.body.error.code);
      }
      for (const res of [wrong, none]) for (const share of shares) expect(res.text).not.toContain(share);
      await nothingRestored();
      // Shares are not in the audit log either.
      const audited = await b.core.db.selectFrom('audit_log').selectAll().execute();
      for (const share of shares) expect(JSON.stringify(audited)).not.toContain(share);
    });

    it('restores everything with the original shares, which also unseal it', async () => {
      const res = await restore(backup, { shares: shares.slice(1, 3) });
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 200, error: undefined });
      expect(res.body).toMatchObject({ sealed: false, seal_type: 'shamir', root_version: 1, restored: { secret_versions: 3, policies: 1 } });
      expect((await api(b.url, 'GET', '/v1/sys/seal-status')).body).toMatchObject({ initialized: true, sealed: false, threshold: 2 });
      expectError(await restore(backup), 409, 'already_initialized');

      // Every version, under both KEK versions, with the original root token.
      const v1 = await api(b.url, 'GET', '/v1/secrets/payments/db/password?version=1', { token });
      expect(v1.status).toBe(200);
      expect(v1.body.data).toEqual({ password: 'v1' });
      expect((await api(b.url, 'GET', '/v1/secrets/payments/db/password', { token })).body.data).toEqual({ password: 'v2' });
      expect((await api(b.url, 'GET', '/v1/secrets/payments/api/token', { token })).body.data).toEqual({ token: 't0k' });
      expect((await api(b.url, 'GET', '/v1/sys/policies/payments-read', { token })).status).toBe(200);
      expect((await api(b.url, 'GET', '/v1/sys/policies/attacker-owns-all', { token })).status).toBe(404);
      // Identities: alice logs in with her password, and her policy applies.
      const login = await api(b.url, 'POST', '/v1/auth/userpass/login', { body: { username: 'alice', password: 'correct horse battery' } });
      expect(login.status).toBe(200);
      const alice = login.body.auth.client_token as string;
      expect((await api(b.url, 'GET', '/v1/secrets/payments/db/password', { token: alice })).body.data).toEqual({ password: 'v2' });
      expectError(await api(b.url, 'PUT', '/v1/secrets/payments/x', { token: alice, body: { data: { a: '1' } } }), 403);
      // KMS: data encrypted on the original server decrypts here.
      const { plaintext } = await b.core.services().kms.ops.decrypt('payments', 'k1', { ciphertext: kmsCiphertext });
      expect(Buffer.from(plaintext, 'base64').toString()).toBe('kms data');
      // The audit chain is the original's, continued by the restore's own entry, and verifies.
      const verify = await api(b.url, 'GET', '/v1/sys/audit/verify', { token });
      expect(verify.body).toMatchObject({ ok: true });
      const actions = (await b.core.db.selectFrom('audit_log').select('action').orderBy('seq').execute()).map((r) => r.action);
      expect(actions[0]).toBe('sys.init');
      expect(actions).toContain('sys.restore');
      // Writes go on from the restored state.
      expect((await api(b.url, 'PUT', '/v1/secrets/payments/db/password', { token, body: { data: { password: 'v3' } } })).body.version).toBe(3);
      // Sealed again, it opens with the original shares.
      expect((await api(b.url, 'POST', '/v1/sys/seal', { token, body: {} })).status).toBe(200);
      await unsealWith(b.url, [shares[0]!, shares[2]!]);
      expect((await api(b.url, 'GET', '/v1/secrets/payments/db/password', { token })).body.data).toEqual({ password: 'v3' });
    });

    it('a backup of the restored server verifies on it', async () => {
      const again = await api(b.url, 'GET', '/v1/sys/backup', { token });
      expect(again.status).toBe(200);
      const res = await api(b.url, 'POST', '/v1/sys/backup/verify', { token, rawBody: again.text, headers: NDJSON });
      expect(res.body).toMatchObject({ ok: true, values: { opened: 4, failed: 0 } });
      // The original backup still verifies too (same root key).
      expect((await api(b.url, 'POST', '/v1/sys/backup/verify', { token, rawBody: backup, headers: NDJSON })).body.ok).toBe(true);
    });
  });
});
