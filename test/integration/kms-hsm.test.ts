// HSM-resident named keys (issue 14, `"hsm": true`) under the PKCS#11 seal, against a real
// SoftHSM2 token over HTTP: every supported type and operation, checked from outside (signatures
// verify with node:crypto under the public key the server serves, the AES-GCM ciphertext has the
// software keys' layout, tampering is a 400), the token objects' protection (CKA_VALUE is
// CKR_ATTRIBUTE_SENSITIVE), and the lifecycle: rotation makes a new object, trim / delete /
// namespace deletion / crypto-shredding destroy them, a KEK rotation leaves them alone.
import { constants, createHash, createPublicKey, publicEncrypt, verify as nodeVerify } from 'node:crypto';
import { CofferError } from '@coffer/server/errors';
import type { RunningServer } from '@coffer/server/server';
import { describeIfSoftHsm } from '../helpers/env.js';
import { api, createStore, expectError, initAndUnseal, startTestServer, storageKinds, type TestStore } from '../helpers/server.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';
import { kmsTampering } from '../helpers/kms.js';

const b64 = (s: string | Uint8Array) => Buffer.from(s).toString('base64');
const bytesOf = (versioned: string) => Buffer.from(versioned.split(':')[2]!, 'base64');
const DAY = 86_400_000;

describeIfSoftHsm('HSM-resident named keys (SoftHSM2)', () => {
  let hsm: SoftHsm;
  // One storage kind is enough here: the storage side is the software keys' (kms-keys.test.ts covers both).
  const kind = storageKinds()[0]!;
  let store: TestStore;
  let server: RunningServer;
  let t: string;
  const call = (method: string, path: string, body?: unknown) => api(server.url, method, path, { token: t, ...(body === undefined ? {} : { body }) });
  const hsmKeys = () => server.core.services().kms.keys.store.hsm;
  const nsId = async (name: string) => (await server.core.db.selectFrom('namespaces').select('id').where('name', '=', name).executeTakeFirstOrThrow()).id;

  beforeAll(async () => {
    hsm = createSoftHsm(['kms-hsm']);
    store = await createStore(kind);
    server = await startTestServer(store, hsm.config('kms-hsm', { kekRunJobs: false }));
    t = (await api(server.url, 'POST', '/v1/sys/init', { body: { shares: 1, threshold: 1 } })).body.root_token;
    for (const ns of ['hk', 'hk-shred', 'hk-del']) expect((await call('POST', '/v1/namespaces', { name: ns })).status).toBe(201);
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
    hsm?.cleanup();
  });

  it('aes256-gcm: generated in the token, unreadable there; encrypt/decrypt/rewrap/datakey/batch in the HSM with the software format', async () => {
    const created = await call('POST', '/v1/kms/hk/keys/vault-aes', { type: 'aes256-gcm', hsm: true });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ hsm: true, origin: 'internal', exportable: false, export_locked: true, latest_version: 1 });
    const id = await nsId('hk');
    const keyId = (await server.core.db.selectFrom('kms_keys').select('id').where('name', '=', 'vault-aes').executeTakeFirstOrThrow()).id;
    const label = `coffer-root-kms-${id}-${keyId}-v1`;
    expect(await hsmKeys().objectLabels(id)).toContain(label);
    expect(await hsmKeys().tokenKeys().tryReadSecret(label)).toBe('sensitive');
    // The row holds no key material: what it wraps is the reference to the token object (a label, 32-byte keys would be 32 bytes).
    const row = await server.core.db.selectFrom('kms_key_versions').select('wrapped_material').where('key_id', '=', keyId).executeTakeFirstOrThrow();
    expect(Buffer.from(row.wrapped_material).includes(Buffer.from(label))).toBe(false);

    const aad = b64('tenant-7');
    const enc = await call('POST', '/v1/kms/hk/encrypt/vault-aes', { plaintext: b64('hello hsm'), associated_data: aad });
    expect(enc.status).toBe(200);
    // format 1 ‖ key tag (8) ‖ nonce (12) ‖ ciphertext ‖ tag (16), like a software aes256-gcm key's.
    const raw = bytesOf(enc.body.ciphertext);
    expect(raw[0]).toBe(1);
    expect(raw.length).toBe(1 + 8 + 12 + 'hello hsm'.length + 16);
    const dec = await call('POST', '/v1/kms/hk/decrypt/vault-aes', { ciphertext: enc.body.ciphertext, associated_data: aad });
    expect(Buffer.from(dec.body.plaintext, 'base64').toString()).toBe('hello hsm');
    expectError(await call('POST', '/v1/kms/hk/decrypt/vault-aes', { ciphertext: enc.body.ciphertext, associated_data: b64('tenant-8') }), 400, 'invalid_request');
    const tampered = Buffer.from(raw);
    tampered[tampered.length - 3]! ^= 1;
    expectError(await call('POST', '/v1/kms/hk/decrypt/vault-aes', { ciphertext: `coffer:v1:${tampered.toString('base64')}`, associated_data: aad }), 400, 'invalid_request');

    // Rotation: a new object; rewrap moves the ciphertext to it; both objects stay until trimmed.
    expect((await call('POST', '/v1/kms/hk/keys/vault-aes/rotate')).body.latest_version).toBe(2);
    expect(await hsmKeys().objectLabels(id)).toEqual(expect.arrayContaining([label, label.replace(/-v1$/, '-v2')]));
    const rew = await call('POST', '/v1/kms/hk/rewrap/vault-aes', { ciphertext: enc.body.ciphertext, associated_data: aad });
    expect(rew.body.key_version).toBe(2);
    expect(Buffer.from((await call('POST', '/v1/kms/hk/decrypt/vault-aes', { ciphertext: rew.body.ciphertext, associated_data: aad })).body.plaintext, 'base64').toString()).toBe('hello hsm');

    const dk = await call('POST', '/v1/kms/hk/datakey/plaintext/vault-aes', { bits: 256 });
    expect((await call('POST', '/v1/kms/hk/decrypt/vault-aes', { ciphertext: dk.body.ciphertext })).body.plaintext).toBe(dk.body.plaintext);
    const batch = await call('POST', '/v1/kms/hk/batch/encrypt/vault-aes', { items: [{ plaintext: b64('a') }, { plaintext: 'not base64!' }, { plaintext: b64('c') }] });
    expect(batch.body.failed).toBe(1);
    const back = await call('POST', '/v1/kms/hk/batch/decrypt/vault-aes', { items: [{ ciphertext: batch.body.results[0].ciphertext }, { ciphertext: batch.body.results[2].ciphertext }] });
    expect(back.body.results.map((r: { plaintext: string }) => Buffer.from(r.plaintext, 'base64').toString())).toEqual(['a', 'c']);

    // Trim destroys the trimmed version's object.
    expect((await call('POST', '/v1/kms/hk/keys/vault-aes/config', { min_decryption_version: 2 })).status).toBe(200);
    expect((await call('POST', '/v1/kms/hk/keys/vault-aes/trim', { min_available_version: 2 })).body.versions_removed).toBe(1);
    const after = await hsmKeys().objectLabels(id);
    expect(after).not.toContain(label);
    expect(after).toContain(label.replace(/-v1$/, '-v2'));

    // Never exportable, never made exportable.
    expectError(await call('POST', '/v1/kms/hk/keys/vault-aes/config', { exportable: true }), 400, 'invalid_request');
    const { publicKey } = await import('node:crypto').then((c) => c.generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } }));
    const exp = await call('POST', '/v1/kms/hk/keys/vault-aes/export', { public_key: publicKey });
    expectError(exp, 400, 'invalid_request');
    expect(exp.body.error.message).toContain('HSM');
  }, 120_000);

  it.each([
    ['hmac-sha256', 32],
    ['hmac-sha512', 64],
  ] as const)('%s: HMAC in the HSM, verified round trip', async (type, bytes) => {
    const name = `mac-${type}`;
    expect((await call('POST', `/v1/kms/hk/keys/${name}`, { type, hsm: true })).status).toBe(201);
    const input = b64('webhook body');
    const mac = await call('POST', `/v1/kms/hk/hmac/${name}`, { input });
    expect(mac.status).toBe(200);
    expect(bytesOf(mac.body.hmac)).toHaveLength(bytes);
    expect((await call('POST', `/v1/kms/hk/verify/${name}`, { input, hmac: mac.body.hmac })).body).toEqual({ valid: true });
    expect((await call('POST', `/v1/kms/hk/verify/${name}`, { input: b64('other'), hmac: mac.body.hmac })).body).toEqual({ valid: false });
    // Deterministic: the same input gives the same MAC (it is a MAC, computed by the same key).
    expect((await call('POST', `/v1/kms/hk/hmac/${name}`, { input })).body.hmac).toBe(mac.body.hmac);
    const keyId = (await server.core.db.selectFrom('kms_keys').select('id').where('name', '=', name).executeTakeFirstOrThrow()).id;
    expect(await hsmKeys().tokenKeys().tryReadSecret(`coffer-root-kms-${await nsId('hk')}-${keyId}-v1`)).toBe('sensitive');
  }, 60_000);

  it.each([
    ['ecdsa-p256', 'sha256', 'P-256'],
    ['ecdsa-p384', 'sha384', 'P-384'],
  ] as const)('%s: signatures made in the HSM verify with node:crypto under the served public key', async (type, hash, crv) => {
    const name = `sig-${type}`;
    const created = await call('POST', `/v1/kms/hk/keys/${name}`, { type, hsm: true });
    expect(created.status).toBe(201);
    expect(created.body.versions[0].public_key.jwk).toMatchObject({ kty: 'EC', crv });
    const pub = createPublicKey((await call('GET', `/v1/kms/hk/public-key/${name}`)).body.pem);
    const msg = Buffer.from('artifact.tar.gz');
    const der = await call('POST', `/v1/kms/hk/sign/${name}`, { input: b64(msg) });
    expect(nodeVerify(hash, msg, pub, bytesOf(der.body.signature))).toBe(true);
    const jws = await call('POST', `/v1/kms/hk/sign/${name}`, { input: b64(msg), marshaling_algorithm: 'jws' });
    expect(nodeVerify(hash, msg, { key: pub, dsaEncoding: 'ieee-p1363' }, bytesOf(jws.body.signature))).toBe(true);
    const digest = createHash(hash).update(msg).digest();
    const pre = await call('POST', `/v1/kms/hk/sign/${name}`, { input: b64(digest), prehashed: true });
    expect(nodeVerify(hash, msg, pub, bytesOf(pre.body.signature))).toBe(true);
    expect((await call('POST', `/v1/kms/hk/verify/${name}`, { input: b64(msg), signature: der.body.signature })).body).toEqual({ valid: true });
    expect((await call('POST', `/v1/kms/hk/verify/${name}`, { input: b64('tampered'), signature: der.body.signature })).body).toEqual({ valid: false });
    const keyId = (await server.core.db.selectFrom('kms_keys').select('id').where('name', '=', name).executeTakeFirstOrThrow()).id;
    expect(await hsmKeys().tokenKeys().tryReadSecret(`coffer-root-kms-${await nsId('hk')}-${keyId}-v1`)).toBe('sensitive');
  }, 60_000);

  it('rsa-2048: PSS and PKCS#1 v1.5 signatures verify with node:crypto; OAEP-SHA-256 decrypts in the HSM (raw RSA, padding removed outside)', async () => {
    expect((await call('POST', '/v1/kms/hk/keys/rsa', { type: 'rsa-2048', hsm: true })).status).toBe(201);
    const pub = createPublicKey((await call('GET', '/v1/kms/hk/public-key/rsa')).body.pem);
    const msg = Buffer.from('release manifest');
    const pss = await call('POST', '/v1/kms/hk/sign/rsa', { input: b64(msg), signature_algorithm: 'pss' });
    expect(nodeVerify('sha256', msg, { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, bytesOf(pss.body.signature))).toBe(true);
    const v15 = await call('POST', '/v1/kms/hk/sign/rsa', { input: b64(msg), signature_algorithm: 'pkcs1v15', hash_algorithm: 'sha2-512' });
    expect(nodeVerify('sha512', msg, pub, bytesOf(v15.body.signature))).toBe(true);
    const pre = await call('POST', '/v1/kms/hk/sign/rsa', { input: b64(createHash('sha256').update(msg).digest()), prehashed: true, signature_algorithm: 'pss' });
    expect(nodeVerify('sha256', msg, { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, bytesOf(pre.body.signature))).toBe(true);
    expect((await call('POST', '/v1/kms/hk/verify/rsa', { input: b64(msg), signature: pss.body.signature })).body).toEqual({ valid: true });

    const aad = b64('row-9');
    const enc = await call('POST', '/v1/kms/hk/encrypt/rsa', { plaintext: b64('small secret'), associated_data: aad });
    expect(enc.status).toBe(200);
    expect(bytesOf(enc.body.ciphertext)[0]).toBe(3);
    const dec = await call('POST', '/v1/kms/hk/decrypt/rsa', { ciphertext: enc.body.ciphertext, associated_data: aad });
    expect(Buffer.from(dec.body.plaintext, 'base64').toString()).toBe('small secret');
    expectError(await call('POST', '/v1/kms/hk/decrypt/rsa', { ciphertext: enc.body.ciphertext, associated_data: b64('row-10') }), 400, 'invalid_request');
    // A ciphertext made outside with the served public key and the documented OAEP label decrypts too.
    const head = bytesOf(enc.body.ciphertext).subarray(0, 9);
    const keyId = (await server.core.db.selectFrom('kms_keys').select('id').where('name', '=', 'rsa').executeTakeFirstOrThrow()).id;
    const label = Buffer.from(JSON.stringify(['coffer/v1', 'kms-data', keyId, 1, aad]));
    const outside = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: label }, Buffer.from('from outside'));
    const dec2 = await call('POST', '/v1/kms/hk/decrypt/rsa', { ciphertext: `coffer:v1:${Buffer.concat([head, outside]).toString('base64')}`, associated_data: aad });
    expect(Buffer.from(dec2.body.plaintext, 'base64').toString()).toBe('from outside');
  }, 120_000);

  it('a version row swapped to another HSM key fails as integrity_error instead of using the other key', async () => {
    for (const name of ['swap-a', 'swap-b']) expect((await call('POST', `/v1/kms/hk/keys/${name}`, { type: 'aes256-gcm', hsm: true })).status).toBe(201);
    const { versionRow, setMaterial } = kmsTampering(() => server);
    const a = await versionRow('hk', 'swap-a', 1);
    const b = await versionRow('hk', 'swap-b', 1);
    await setMaterial(b, a.wrapped_material);
    expectError(await call('POST', '/v1/kms/hk/encrypt/swap-b', { plaintext: b64('x') }), 500, 'integrity_error');
    await setMaterial(b, b.wrapped_material);
    expect((await call('POST', '/v1/kms/hk/encrypt/swap-b', { plaintext: b64('x') })).status).toBe(200);
  });

  it('refuses what an HSM-resident key cannot be, and changes nothing', async () => {
    for (const type of ['ed25519', 'xchacha20-poly1305']) {
      const r = await call('POST', '/v1/kms/hk/keys/nope', { type, hsm: true });
      expectError(r, 400, 'unsupported_algorithm');
      expect(r.body.error.message).toContain('aes256-gcm');
    }
    expectError(await call('POST', '/v1/kms/hk/keys/nope', { type: 'aes256-gcm', hsm: true, exportable: true }), 400, 'invalid_request');
    expectError(await call('POST', '/v1/kms/hk/keys/nope', { type: 'aes256-gcm', hsm: 'yes' }), 400, 'invalid_request');
    const params = await call('GET', '/v1/kms/hk/keys/nope/import-params');
    if (params.status === 200) {
      const r = await call('POST', '/v1/kms/hk/keys/nope/import', { type: 'aes256-gcm', hsm: true, import_token: params.body.import_token, encrypted_key_material: b64('x') });
      expectError(r, 400, 'unsupported_algorithm');
    }
    expect((await call('GET', '/v1/kms/hk/keys/nope')).status).toBe(404);
  });

  it('delete and namespace deletion destroy the token objects; a KEK rotation leaves them alone', async () => {
    const id = await nsId('hk-del');
    expect((await call('POST', '/v1/kms/hk-del/keys/a', { type: 'aes256-gcm', hsm: true, deletion_allowed: true })).status).toBe(201);
    expect((await call('POST', '/v1/kms/hk-del/keys/b', { type: 'ecdsa-p256', hsm: true })).status).toBe(201);
    const enc = await call('POST', '/v1/kms/hk-del/encrypt/a', { plaintext: b64('kept') });
    const before = (await hsmKeys().objectLabels(id)).sort();
    expect(before).toHaveLength(3); // a secret key, and b's private and public objects

    expect((await call('POST', '/v1/namespaces/hk-del/kek/rotate', {})).status).toBeLessThan(300);
    await server.core.services().kek.runRewrapJobs();
    expect((await hsmKeys().objectLabels(id)).sort()).toEqual(before);
    server.core.services().kms.cache.clear();
    expect(Buffer.from((await call('POST', '/v1/kms/hk-del/decrypt/a', { ciphertext: enc.body.ciphertext })).body.plaintext, 'base64').toString()).toBe('kept');

    expect((await call('DELETE', '/v1/kms/hk-del/keys/a')).status).toBe(200);
    expect(await hsmKeys().objectLabels(id)).toHaveLength(2);
    expect((await call('DELETE', '/v1/namespaces/hk-del?force=true')).status).toBe(200);
    expect(await hsmKeys().objectLabels(id)).toEqual([]);
  }, 120_000);

  it('crypto-shredding destroys the token objects: nothing is left to find by label', async () => {
    const id = await nsId('hk-shred');
    expect((await call('POST', '/v1/kms/hk-shred/keys/k', { type: 'aes256-gcm', hsm: true })).status).toBe(201);
    expect((await call('POST', '/v1/kms/hk-shred/keys/k/rotate')).status).toBe(200);
    expect((await call('POST', '/v1/kms/hk-shred/keys/s', { type: 'hmac-sha256', hsm: true })).status).toBe(201);
    expect(await hsmKeys().objectLabels(id)).toHaveLength(3);
    const now = new Date();
    await server.core.services().kek.scheduleShred('hk-shred', 7, now);
    expect(await server.core.services().kek.sweepShredding(new Date(now.getTime() + 8 * DAY))).toEqual(['hk-shred']);
    expect(await hsmKeys().objectLabels(id)).toEqual([]);
    expect(await hsmKeys().tokenKeys().tryReadSecret(`coffer-root-kms-${id}-x-v1`)).toBe('absent');
  }, 60_000);

  it('crypto-shredding waits while the token cannot be reached: the rows stay until the objects are gone', async () => {
    expect((await call('POST', '/v1/namespaces', { name: 'hk-later' })).status).toBe(201);
    const id = await nsId('hk-later');
    expect((await call('POST', '/v1/kms/hk-later/keys/k', { type: 'aes256-gcm', hsm: true })).status).toBe(201);
    const now = new Date();
    await server.core.services().kek.scheduleShred('hk-later', 7, now);
    // The token goes away (what the seal reports when it cannot reach it).
    const store = hsmKeys() as unknown as { device: () => unknown };
    const device = store.device;
    store.device = () => {
      throw new CofferError('unavailable', 'HSM: token unreachable (test)');
    };
    try {
      expect(await server.core.services().kek.sweepShredding(new Date(now.getTime() + 8 * DAY))).toEqual([]);
    } finally {
      store.device = device;
    }
    expect(await server.core.db.selectFrom('kms_keys').select('id').where('namespace_id', '=', id).execute()).toHaveLength(1);
    expect(await hsmKeys().objectLabels(id)).toHaveLength(1);
    expect(await server.core.services().kek.sweepShredding(new Date(now.getTime() + 8 * DAY))).toEqual(['hk-later']);
    expect(await hsmKeys().objectLabels(id)).toEqual([]);
  }, 60_000);
});

describe('HSM-resident keys without the PKCS#11 seal', () => {
  let store: TestStore;
  let server: RunningServer;
  beforeAll(async () => {
    store = await createStore('pglite');
    server = await startTestServer(store, {});
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('answers 400 naming the PKCS#11 seal', async () => {
    const { token: t } = await initAndUnseal(server.url, 1, 1);
    await api(server.url, 'POST', '/v1/namespaces', { token: t, body: { name: 'soft' } });
    const r = await api(server.url, 'POST', '/v1/kms/soft/keys/k', { token: t, body: { type: 'aes256-gcm', hsm: true } });
    expectError(r, 400, 'unsupported_algorithm');
    expect(r.body.error.message).toContain('PKCS#11 seal');
    expect((await api(server.url, 'GET', '/v1/kms/soft/keys/k', { token: t })).status).toBe(404);
  });
});
