// Portable namespace export (issue 15): a namespace moved from one Coffer server to another through
// the target's import key. Round trip (every retained version with its number, delete and destroy
// marks; exportable named keys that decrypt and verify what the source made; non-exportable keys
// skipped), a PKCS#11-sealed target, and refusals that change nothing: wrong target key, tampered
// or truncated bundles, a non-empty namespace, non-admin callers — real servers, PGlite.
import { constants, createCipheriv, createHash, createPublicKey, generateKeyPairSync, publicEncrypt, randomBytes } from 'node:crypto';
import type { RunningServer } from '@coffer/server/server';
import { describeIfSoftHsm } from '../helpers/env.js';
import { api, createStore, expectError, initAndUnseal, startTestServer, storageKinds, type ApiResponse, type StorageKind, type TestStore } from '../helpers/server.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const NDJSON = { 'content-type': 'application/x-ndjson' };

interface Server {
  server: RunningServer;
  store: TestStore;
  token: string;
  call(method: string, path: string, body?: unknown, token?: string): Promise<ApiResponse>;
}

async function start(overrides: Record<string, unknown> = {}, init = true, kind: StorageKind = 'pglite'): Promise<Server> {
  const store = await createStore(kind);
  const server = await startTestServer(store, { kekRunJobs: false, ...overrides });
  const token = init
    ? (await initAndUnseal(server.url, 1, 1)).token
    : ((await api(server.url, 'POST', '/v1/sys/init', { body: { shares: 1, threshold: 1 } })).body.root_token as string);
  const call = (method: string, path: string, body?: unknown, t = token) => api(server.url, method, path, { token: t, ...(body === undefined ? {} : { body }) });
  return { server, store, token, call };
}

async function stop(s: Server | undefined) {
  await s?.server.stop();
  await s?.store.cleanup();
}

/** The target's import key for `ns` (created when missing). */
async function importKey(target: Server, ns: string): Promise<string> {
  const created = await target.call('POST', '/v1/namespaces', { name: ns });
  expect([201, 409]).toContain(created.status);
  const params = await target.call('GET', `/v1/byok/namespaces/${ns}/import-params?algorithm=RSA_AES_KEY_WRAP_SHA_256`);
  expect(params.status).toBe(200);
  return params.body.public_key as string;
}

async function exportFor(source: Server, ns: string, publicKey: string): Promise<string> {
  const res = await source.call('POST', `/v1/namespaces/${ns}/export`, { public_key: publicKey });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
  return res.text;
}

const importBundle = (target: Server, ns: string, bundle: string, token = target.token) =>
  api(target.server.url, 'POST', `/v1/namespaces/${ns}/import`, { token, rawBody: bundle, headers: NDJSON });

async function isEmpty(target: Server, ns: string): Promise<boolean> {
  const list = await target.call('GET', `/v1/secrets/${ns}/?recursive=true`);
  const keys = await target.call('GET', `/v1/kms/${ns}/keys`);
  return list.status === 200 && list.body.keys.length === 0 && keys.status === 200 && keys.body.keys.length === 0;
}

/** Replaces one base64 character of record `seq`'s sealed bytes. */
function tamperRecord(bundle: string, seq: number): string {
  const lines = bundle.split('\n');
  const rec = JSON.parse(lines[seq + 1]!) as { seq: number; sealed: string };
  const i = Math.floor(rec.sealed.length / 2);
  rec.sealed = rec.sealed.slice(0, i) + (rec.sealed[i] === 'A' ? 'B' : 'A') + rec.sealed.slice(i + 1);
  lines[seq + 1] = JSON.stringify(rec);
  return lines.join('\n');
}

/** A bundle made here, as sdk/src/api/namespace-transfer.ts documents the format, sealed for `pem`. */
function craftBundle(pem: string, records: unknown[]): string {
  const key = createPublicKey(pem);
  const transfer = randomBytes(32);
  const ephemeral = randomBytes(32);
  const kwp = createCipheriv('id-aes256-wrap-pad', ephemeral, Buffer.from('A65959A6', 'hex'));
  const wrapped = Buffer.concat([publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, ephemeral), kwp.update(transfer), kwp.final()]);
  const header = JSON.stringify({
    coffer_namespace_export: {
      format: 1,
      namespace: 'crafted',
      created_at: new Date().toISOString(),
      target_key_sha256: createHash('sha256').update(key.export({ format: 'der', type: 'spki' })).digest('hex'),
      wrapping_algorithm: 'RSA_AES_KEY_WRAP_SHA_256',
      wrapped_transfer_key: wrapped.toString('base64'),
      content_cipher: 'AES-256-GCM',
      skipped_keys: [],
    },
  });
  const digest = createHash('sha256').update(header).digest();
  const all = [...records, { kind: 'end', records: records.length + 1, secrets: 0, versions: 0, keys: 0 }];
  const lines = all.map((record, seq) => {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', transfer, nonce);
    const aad = Buffer.alloc(36);
    digest.copy(aad);
    aad.writeUInt32BE(seq, 32);
    cipher.setAAD(aad);
    const sealed = Buffer.concat([nonce, cipher.update(JSON.stringify(record)), cipher.final(), cipher.getAuthTag()]);
    return JSON.stringify({ seq, sealed: sealed.toString('base64') });
  });
  return [header, ...lines, ''].join('\n');
}

describe('namespace export and import between servers', () => {
  let source: Server;
  let target: Server;
  const values = ['db-password-v1', 'db-password-v2', 'db-password-v3', 'api-key-SECRET', 'rotating-3', 'rotating-4'];
  const ciphertexts: Record<string, string> = {};
  let signature = '';

  beforeAll(async () => {
    source = await start();
    target = await start();
    const s = source.call;
    expect((await s('POST', '/v1/namespaces', { name: 'team', description: 'the team' })).status).toBe(201);
    for (const v of values.slice(0, 3)) expect((await s('PUT', '/v1/secrets/team/app/db', { data: { password: v }, metadata: { owner: 'ops' } })).status).toBe(200);
    expect((await s('POST', '/v1/secrets/team/app/db:delete', { versions: [2] })).status).toBe(200);
    expect((await s('POST', '/v1/secrets/team/app/db:destroy', { versions: [1] })).status).toBe(200);
    expect((await s('PUT', '/v1/secrets/team/app/api', { type: 'token', data: { token: values[3] } })).status).toBe(200);
    for (let i = 1; i <= 4; i++) expect((await s('PUT', '/v1/secrets/team/rotating', { data: { v: `rotating-${i}` }, max_versions: 2 })).status).toBe(200);
    expect((await s('POST', '/v1/kms/team/keys/enc', { type: 'aes256-gcm', exportable: true })).status).toBe(201);
    ciphertexts.v1 = (await s('POST', '/v1/kms/team/encrypt/enc', { plaintext: b64('made on v1'), associated_data: b64('ctx') })).body.ciphertext;
    expect((await s('POST', '/v1/kms/team/keys/enc/rotate', {})).status).toBe(200);
    ciphertexts.v2 = (await s('POST', '/v1/kms/team/encrypt/enc', { plaintext: b64('made on v2') })).body.ciphertext;
    expect((await s('POST', '/v1/kms/team/keys/sig', { type: 'ed25519', exportable: true })).status).toBe(201);
    signature = (await s('POST', '/v1/kms/team/sign/sig', { input: b64('signed on the source') })).body.signature;
    expect((await s('POST', '/v1/kms/team/keys/locked', { type: 'aes256-gcm' })).status).toBe(201);
  }, 120_000);
  afterAll(async () => {
    await stop(source);
    await stop(target);
  });

  it('moves every retained version with its number and marks, and the exportable keys with their ids', async () => {
    const bundle = await exportFor(source, 'team', await importKey(target, 'moved'));
    // In the clear: the header (namespace, skipped key names); never a value, path or key byte.
    const header = JSON.parse(bundle.split('\n')[0]!).coffer_namespace_export;
    expect(header).toMatchObject({ format: 1, namespace: 'team', wrapping_algorithm: 'RSA_AES_KEY_WRAP_SHA_256', skipped_keys: [{ name: 'locked', reason: 'not exportable' }] });
    for (const v of [...values, 'app/db', 'rotating', 'owner']) expect(bundle).not.toContain(v);

    const res = await importBundle(target, 'moved', bundle);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ namespace: 'moved', source_namespace: 'team', secrets: 3, versions: 6, keys: 2, skipped_keys: [{ name: 'locked', reason: 'not exportable' }] });

    const t = target.call;
    expect((await t('GET', '/v1/secrets/moved/app/db')).body).toMatchObject({ version: 3, data: { password: values[2] }, metadata: { owner: 'ops' } });
    expectError(await t('GET', '/v1/secrets/moved/app/db?version=2'), 404, 'not_found');
    expect((await t('POST', '/v1/secrets/moved/app/db:undelete', { versions: [2] })).status).toBe(200);
    expect((await t('GET', '/v1/secrets/moved/app/db?version=2')).body.data).toEqual({ password: values[1] });
    const [sourceHistory, targetHistory] = await Promise.all([source.call('GET', '/v1/secrets/team/rotating:versions'), t('GET', '/v1/secrets/moved/rotating:versions')]);
    expect({ ...targetHistory.body, namespace: 'team' }).toEqual(sourceHistory.body);
    const dbHistory = (await t('GET', '/v1/secrets/moved/app/db:versions')).body;
    expect(dbHistory.versions.map((v: { version: number; destroyed_at: string | null }) => [v.version, v.destroyed_at !== null])).toEqual([[3, false], [2, false], [1, true]]);
    expect((await t('GET', '/v1/secrets/moved/app/api')).body).toMatchObject({ type: 'token', data: { token: values[3] } });
    // Numbering continues where the source left off.
    expect((await t('PUT', '/v1/secrets/moved/rotating', { data: { v: 'rotating-5' } })).body.version).toBe(5);

    // Named keys decrypt and verify what the source made, and keep encrypting with their latest version.
    expect((await t('POST', '/v1/kms/moved/decrypt/enc', { ciphertext: ciphertexts.v1, associated_data: b64('ctx') })).body.plaintext).toBe(b64('made on v1'));
    expect((await t('POST', '/v1/kms/moved/decrypt/enc', { ciphertext: ciphertexts.v2 })).body.plaintext).toBe(b64('made on v2'));
    expect((await t('POST', '/v1/kms/moved/verify/sig', { input: b64('signed on the source'), signature })).body.valid).toBe(true);
    expect((await t('GET', '/v1/kms/moved/keys/enc')).body).toMatchObject({ latest_version: 2, exportable: true });
    const fresh = (await t('POST', '/v1/kms/moved/encrypt/enc', { plaintext: b64('made on the target') })).body.ciphertext as string;
    expect(fresh.startsWith('coffer:v2:')).toBe(true);
    expect((await source.call('POST', '/v1/kms/team/decrypt/enc', { ciphertext: fresh })).body.plaintext).toBe(b64('made on the target'));
    expectError(await t('GET', '/v1/kms/moved/keys/locked'), 404, 'not_found');
    expect((await t('GET', '/v1/namespaces/moved')).body.description).toBe('the team');

    // Audited on both sides with counts, never values.
    const audit = async (s: Server, action: string) =>
      ((await s.call('GET', `/v1/sys/audit?action=${action}`)).body.entries as Array<Record<string, unknown>>).filter((e) => e.action === action);
    expect((await audit(source, "namespace.export"))[0]).toMatchObject({ namespace: 'team', outcome: 'success', counts: { secrets: 3, versions: 6, keys: 2, skipped_keys: 1 } });
    expect((await audit(target, "namespace.import"))[0]).toMatchObject({ namespace: 'moved', outcome: 'success', counts: { secrets: 3, versions: 6, keys: 2, skipped_keys: 1 } });
    const log = JSON.stringify((await t('GET', '/v1/sys/audit?limit=1000')).body);
    for (const v of values) expect(log).not.toContain(v);
  });

  it('refuses a bundle made for another key, before spending anything', async () => {
    await importKey(target, 'other-ns');
    const forOther = await exportFor(source, 'team', await importKey(target, 'elsewhere'));
    const res = await importBundle(target, 'other-ns', forOther);
    expectError(res, 400, 'wrong_import_key');
    // A key of nobody's (not an import key of this server at all).
    const stray = generateKeyPairSync('rsa', { modulusLength: 3072 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expectError(await importBundle(target, 'other-ns', await exportFor(source, 'team', stray)), 400, 'wrong_import_key');
    expect(await isEmpty(target, 'other-ns')).toBe(true);
    // The namespace's own key was not spent by those: its bundle opens. It then stops at the named
    // keys, which are on this server already (imported into "moved", ids kept), and rolls back whole.
    const again = await importBundle(target, 'elsewhere', forOther);
    expectError(again, 409, 'already_exists');
    expect(again.body.error.message).toMatch(/imported once per server/);
    expect(await isEmpty(target, 'elsewhere')).toBe(true);
  });

  it('refuses altered, reordered and truncated bundles and leaves the namespace empty', async () => {
    const cases: Array<[string, (b: string) => string]> = [
      ['a record altered', (b) => tamperRecord(b, 1)],
      ['the header altered', (b) => b.replace('"namespace":"team"', '"namespace":"teal"')],
      ['the end cut off', (b) => b.split('\n').slice(0, -2).join('\n') + '\n'],
      ['two records swapped', (b) => {
        const l = b.split('\n');
        const [x, y] = [JSON.parse(l[2]!), JSON.parse(l[3]!)];
        [x.sealed, y.sealed] = [y.sealed, x.sealed];
        l[2] = JSON.stringify(x);
        l[3] = JSON.stringify(y);
        return l.join('\n');
      }],
      ['the wrapped transfer key altered', (b) => {
        const l = b.split('\n');
        const h = JSON.parse(l[0]!);
        const w: string = h.coffer_namespace_export.wrapped_transfer_key;
        h.coffer_namespace_export.wrapped_transfer_key = (w[0] === 'A' ? 'B' : 'A') + w.slice(1); // always a different first character
        l[0] = JSON.stringify(h);
        return l.join('\n');
      }],
    ];
    for (const [what, tamper] of cases) {
      const bundle = await exportFor(source, 'team', await importKey(target, 'tampered'));
      const res = await importBundle(target, 'tampered', tamper(bundle));
      expect({ what, status: res.status, code: res.body?.error?.code }).toEqual({ what, status: 400, code: 'invalid_bundle' });
      expect(await isEmpty(target, 'tampered')).toBe(true);
    }
    expectError(await importBundle(target, 'tampered', 'not a bundle\n'), 400, 'invalid_bundle');
    expectError(await api(target.server.url, 'POST', '/v1/namespaces/tampered/import', { token: target.token, body: { x: 1 } }), 415, 'unsupported_media_type');
  });

  it('reads a bundle made by other software to the documented format, and refuses malformed records with 400', async () => {
    const secret = (path: string, data: Record<string, string> | null, version = 1) => ({
      kind: 'secret', path, current_version: version, max_versions: 10, created_at: '2026-01-01T00:00:00.000Z', updated_at: '2026-01-01T00:00:00.000Z',
      versions: [{ version, type: 'generic', metadata: {}, data, created_at: '2026-01-01T00:00:00.000Z', deleted_at: null, destroyed_at: null }],
    });
    const good = await importBundle(target, 'crafted', craftBundle(await importKey(target, 'crafted'), [secret('a/b', { v: 'crafted-value' })]));
    expect(good.status).toBe(200);
    expect((await target.call('GET', '/v1/secrets/crafted/a/b')).body).toMatchObject({ version: 1, data: { v: 'crafted-value' } });
    const bad: Array<[string, unknown[]]> = [
      ['the same path twice', [secret('x', { v: '1' }), secret('x', { v: '2' })]],
      ['a version after current_version', [secret('x', { v: '1' }, 1), { ...secret('y', { v: '1' }, 1), current_version: 0 }]],
      ['no value on a live version', [secret('x', null)]],
      ['an impossible max_versions', [{ ...secret('x', { v: '1' }), max_versions: 0 }]],
      ['a path the server refuses', [secret('../etc', { v: '1' })]],
      ['a key without versions', [{ kind: 'key', id: '00000000-0000-4000-8000-000000000000', name: 'k', type: 'aes256-gcm', origin: 'internal', latest_version: 1, min_decryption_version: 0, min_encryption_version: 0, deletion_allowed: false, auto_rotate_period: null, versions: [] }]],
      ['key material of the wrong length', [{ kind: 'key', id: '00000000-0000-4000-8000-000000000001', name: 'k', type: 'aes256-gcm', origin: 'internal', latest_version: 1, min_decryption_version: 0, min_encryption_version: 0, deletion_allowed: false, auto_rotate_period: null, versions: [{ version: 1, material: randomBytes(16).toString('base64'), created_at: '2026-01-01T00:00:00.000Z' }] }]],
    ];
    for (const [what, records] of bad) {
      const res = await importBundle(target, 'crafted-bad', craftBundle(await importKey(target, 'crafted-bad'), records));
      expect({ what, status: res.status }).toEqual({ what, status: 400 });
      expect(await isEmpty(target, 'crafted-bad')).toBe(true);
    }
  });

  it('refuses a non-empty namespace and a missing one, and callers without admin rights on either side', async () => {
    const key = await importKey(target, 'busy');
    expect((await target.call('PUT', '/v1/secrets/busy/x', { data: { v: '1' } })).status).toBe(200);
    expectError(await importBundle(target, 'busy', await exportFor(source, 'team', key)), 409, 'conflict');
    expectError(await importBundle(target, 'nowhere', await exportFor(source, 'team', key)), 404, 'not_found');
    expectError(await source.call('POST', '/v1/namespaces/team/export', { public_key: 'not a key' }), 400, 'invalid_request');
    expectError(await source.call('POST', '/v1/namespaces/nope/export', { public_key: key }), 404, 'not_found');

    expect((await source.call('PUT', '/v1/sys/policies/team-admin', { rules: [{ namespace: 'team', path: '*', capabilities: ['admin', 'read', 'list'] }] })).status).toBe(201);
    const nsAdmin = (await source.call('POST', '/v1/auth/token/create', { policies: ['team-admin'] })).body.auth.client_token as string;
    expectError(await source.call('POST', '/v1/namespaces/team/export', { public_key: key }, nsAdmin), 403, 'permission_denied');
    expect((await target.call('PUT', '/v1/sys/policies/busy-admin', { rules: [{ namespace: 'busy', path: '*', capabilities: ['admin'] }] })).status).toBe(201);
    const targetNsAdmin = (await target.call('POST', '/v1/auth/token/create', { policies: ['busy-admin'] })).body.auth.client_token as string;
    expectError(await importBundle(target, 'busy', 'x\n', targetNsAdmin), 403, 'permission_denied');
  });
});

// The target also runs on PostgreSQL when the run has one (the import's batched inserts on both stores).
describeIfSoftHsm('namespace import into a PKCS#11-sealed server (SoftHSM2)', () => {
  let hsm: SoftHsm;
  let source: Server;
  let target: Server;
  beforeAll(async () => {
    hsm = createSoftHsm(['nsx']);
    source = await start();
    target = await start(hsm.config('nsx'), false, storageKinds().includes('postgres') ? 'postgres' : 'pglite');
  }, 120_000);
  afterAll(async () => {
    await stop(source);
    await stop(target);
    hsm?.cleanup();
  });

  it('unwraps the transfer key with an HSM-generated import key', async () => {
    expect((await source.call('POST', '/v1/namespaces', { name: 'team' })).status).toBe(201);
    expect((await source.call('PUT', '/v1/secrets/team/a/b', { data: { v: 'hsm-moved' } })).status).toBe(200);
    expect((await source.call('PUT', '/v1/secrets/team/a/b', { data: { v: 'hsm-moved-2' } })).status).toBe(200);
    expect((await source.call('POST', '/v1/kms/team/keys/k', { type: 'ed25519', exportable: true })).status).toBe(201);
    const signature = (await source.call('POST', '/v1/kms/team/sign/k', { input: b64('on the source') })).body.signature;
    const params = await (async () => {
      expect((await target.call('POST', '/v1/namespaces', { name: 'team' })).status).toBe(201);
      return (await target.call('GET', '/v1/byok/namespaces/team/import-params?algorithm=RSA_AES_KEY_WRAP_SHA_256')).body;
    })();
    expect(params.wrapping_key_origin).toBe('hsm');
    const res = await importBundle(target, 'team', await exportFor(source, 'team', params.public_key));
    expect(res.status).toBe(200);
    expect((await target.call('GET', '/v1/secrets/team/a/b')).body.data).toEqual({ v: 'hsm-moved-2' });
    expect((await target.call('GET', '/v1/secrets/team/a/b?version=1')).body.data).toEqual({ v: 'hsm-moved' });
    expect((await target.call('POST', '/v1/kms/team/verify/k', { input: b64('on the source'), signature })).body.valid).toBe(true);
  });
});
