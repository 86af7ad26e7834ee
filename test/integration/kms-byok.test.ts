// BYOK and export of named keys (issue 14): material imported under the namespace's one-time
// wrapping key works with Coffer and with plain node:crypto alike (AES by the documented ciphertext
// format, Ed25519 and ECDSA signatures), imported versions, exports wrapped under the caller's RSA
// key that open to the key in use, refusals (non-exportable, locked, wrong type, reused token, no
// key-admin) that change nothing, and audit entries without key bytes — real server, PGlite.
import { constants, createCipheriv, createDecipheriv, createHmac, createPrivateKey, privateDecrypt, createPublicKey, generateKeyPairSync, randomBytes, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import type { RunningServer } from '@coffer/server/server';
import { escrowKeyPair, unwrapEscrow, wrapForImport, type WrapAlgorithm } from '../helpers/byok.js';
import { describeIfSoftHsm } from '../helpers/env.js';
import { api, createStore, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';

const b64 = (s: string | Uint8Array) => Buffer.from(s).toString('base64');
const NS = 'byok-k';

describe('BYOK and export of named keys', () => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let root: string;
  /** Every key byte and wrapped blob handled here: none may appear in the audit log. */
  const secrets: string[] = [];
  const call = (method: string, path: string, body?: unknown, token = root) => api(base, method, path, { token, ...(body === undefined ? {} : { body }) });
  const keyId = async (name: string) =>
    (await server.core.db.selectFrom('kms_keys as k').innerJoin('namespaces as n', 'n.id', 'k.namespace_id').select('k.id').where('n.name', '=', NS).where('k.name', '=', name).executeTakeFirstOrThrow()).id;
  const versionCount = async () => Number((await server.core.db.selectFrom('kms_key_versions').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);

  /** Wraps `material` under fresh import parameters for key `name`; returns the import body's two fields. */
  async function wrapped(name: string, material: Buffer, algorithm: WrapAlgorithm = 'RSA_AES_KEY_WRAP_SHA_256') {
    const params = await call('GET', `/v1/kms/${NS}/keys/${name}/import-params?algorithm=${algorithm}`);
    expect(params.status).toBe(200);
    const encrypted = wrapForImport(material, params.body.public_key, algorithm);
    secrets.push(material.toString('base64'), material.toString('hex'), encrypted.slice(0, 64));
    return { import_token: params.body.import_token as string, encrypted_key_material: encrypted };
  }

  /** AES-256-GCM as ciphertext.ts documents it: format 1, key tag, nonce ‖ ciphertext ‖ tag, AAD kms-data. */
  const tagOf = async (name: string) => {
    const { createHash } = await import('node:crypto');
    return createHash('sha256').update('coffer/kms-key-tag\0').update(await keyId(name)).digest().subarray(0, 8);
  };
  const dataAad = (id: string, version: number, associated: Buffer) => Buffer.from(JSON.stringify(['coffer/v1', 'kms-data', id, version, associated.toString('base64')]));
  async function localEncrypt(name: string, key: Buffer, version: number, plaintext: Buffer, associated: Buffer): Promise<string> {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    cipher.setAAD(dataAad(await keyId(name), version, associated));
    const body = Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return `coffer:v${version}:${Buffer.concat([Buffer.from([1]), await tagOf(name), body]).toString('base64')}`;
  }
  async function localDecrypt(name: string, key: Buffer, ciphertext: string, associated: Buffer): Promise<Buffer> {
    const [, v, data] = /^coffer:v(\d+):(.*)$/.exec(ciphertext)!;
    const bytes = Buffer.from(data!, 'base64');
    expect(bytes[0]).toBe(1);
    expect(bytes.subarray(1, 9).equals(await tagOf(name))).toBe(true);
    const body = bytes.subarray(9);
    const decipher = createDecipheriv('aes-256-gcm', key, body.subarray(0, 12));
    decipher.setAAD(dataAad(await keyId(name), Number(v), associated));
    decipher.setAuthTag(body.subarray(body.length - 16));
    return Buffer.concat([decipher.update(body.subarray(12, body.length - 16)), decipher.final()]);
  }

  const tokenWith = async (capabilities: string[], path = '*'): Promise<string> => {
    const name = `p-${Math.random().toString(16).slice(2, 10)}`;
    expect((await call('PUT', `/v1/sys/policies/${name}`, { rules: [{ namespace: NS, path, capabilities }] })).status).toBe(201);
    const res = await call('POST', '/v1/auth/token/create', { policies: [name] });
    expect(res.status).toBe(201);
    return res.body.auth.client_token as string;
  };

  beforeAll(async () => {
    store = await createStore('pglite');
    server = await startTestServer(store, { kekRunJobs: false });
    base = server.url;
    ({ token: root } = await initAndUnseal(base, 1, 1));
    expect((await call('POST', '/v1/namespaces', { name: NS })).status).toBe(201);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('imports AES key material (both wrappings) that encrypts and decrypts interchangeably with node:crypto, and imports versions', async () => {
    for (const algorithm of ['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256'] as const) {
      const name = `imp-aes-${algorithm.length}`;
      const material = randomBytes(32);
      const res = await call('POST', `/v1/kms/${NS}/keys/${name}/import`, { type: 'aes256-gcm', exportable: true, ...(await wrapped(name, material, algorithm)) });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({ name, type: 'aes256-gcm', origin: 'external', latest_version: 1, exportable: true });
      expect((await call('GET', `/v1/kms/${NS}/keys/${name}`)).body.origin).toBe('external');

      const aad = Buffer.from('order-7');
      const local = await localEncrypt(name, material, 1, Buffer.from('made outside'), aad);
      const dec = await call('POST', `/v1/kms/${NS}/decrypt/${name}`, { ciphertext: local, associated_data: b64(aad) });
      expect(dec.status).toBe(200);
      expect(Buffer.from(dec.body.plaintext, 'base64').toString()).toBe('made outside');
      const enc = await call('POST', `/v1/kms/${NS}/encrypt/${name}`, { plaintext: b64('made by coffer'), associated_data: b64(aad) });
      expect((await localDecrypt(name, material, enc.body.ciphertext, aad)).toString()).toBe('made by coffer');
    }
    // import_version: the next version is the caller's material too.
    const name = 'imp-aes-18';
    const second = randomBytes(32);
    const v2 = await call('POST', `/v1/kms/${NS}/keys/${name}/import-version`, await wrapped(name, second));
    expect(v2.status).toBe(200);
    expect(v2.body).toMatchObject({ latest_version: 2, origin: 'external' });
    const enc = await call('POST', `/v1/kms/${NS}/encrypt/${name}`, { plaintext: b64('v2 data') });
    expect(enc.body.key_version).toBe(2);
    expect((await localDecrypt(name, second, enc.body.ciphertext, Buffer.alloc(0))).toString()).toBe('v2 data');
  }, 60_000);

  it('imports Ed25519 and ECDSA private keys (PKCS#8 DER): Coffer signs, node:crypto verifies, the public key matches', async () => {
    for (const [type, pair] of [
      ['ed25519', generateKeyPairSync('ed25519')],
      ['ecdsa-p256', generateKeyPairSync('ec', { namedCurve: 'P-256' })],
      ['ecdsa-p384', generateKeyPairSync('ec', { namedCurve: 'P-384' })],
    ] as const) {
      const name = `imp-${type}`;
      const der = pair.privateKey.export({ format: 'der', type: 'pkcs8' });
      const res = await call('POST', `/v1/kms/${NS}/keys/${name}/import`, { type, ...(await wrapped(name, der)) });
      expect(res.status).toBe(201);
      expect(res.body.origin).toBe('external');
      const expectedPem = pair.publicKey.export({ format: 'pem', type: 'spki' }).toString();
      expect(res.body.versions[0].public_key.pem).toBe(expectedPem);
      const message = Buffer.from(`signed by an imported ${type} key`);
      const sig = await call('POST', `/v1/kms/${NS}/sign/${name}`, { input: b64(message) });
      expect(sig.status).toBe(200);
      const bytes = Buffer.from(sig.body.signature.replace(/^coffer:v1:/, ''), 'base64');
      const hash = type === 'ed25519' ? null : type === 'ecdsa-p256' ? 'sha256' : 'sha384';
      expect(nodeVerify(hash, message, pair.publicKey, bytes)).toBe(true);
      // And the other way: signed locally, verified by Coffer.
      const local = nodeSign(hash, message, pair.privateKey).toString('base64');
      expect((await call('POST', `/v1/kms/${NS}/verify/${name}`, { input: b64(message), signature: `coffer:v1:${local}` })).body).toEqual({ valid: true });
    }
  }, 60_000);

  it('imports an RSA-4096 private key (the largest material): Coffer encrypts, node:crypto decrypts with the documented OAEP label', async () => {
    const pair = generateKeyPairSync('rsa', { modulusLength: 4096 });
    const res = await call('POST', `/v1/kms/${NS}/keys/imp-rsa/import`, { type: 'rsa-4096', ...(await wrapped('imp-rsa', pair.privateKey.export({ format: 'der', type: 'pkcs8' }))) });
    expect(res.status).toBe(201);
    const enc = await call('POST', `/v1/kms/${NS}/encrypt/imp-rsa`, { plaintext: b64('small secret'), associated_data: b64('ctx') });
    const bytes = Buffer.from(enc.body.ciphertext.replace(/^coffer:v1:/, ''), 'base64');
    expect(bytes[0]).toBe(3);
    const plain = privateDecrypt(
      { key: pair.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: dataAad(await keyId('imp-rsa'), 1, Buffer.from('ctx')) },
      bytes.subarray(9),
    );
    expect(plain.toString()).toBe('small secret');
  }, 60_000);

  it('refuses bad imports with a 4xx and creates nothing; a spent token stays spent', async () => {
    const before = await versionCount();
    const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' });
    // Wrong type for the material; wrong length; not PKCS#8; a key pair of the wrong size.
    const cases: Array<[string, Buffer]> = [
      ['ecdsa-p256', ed],
      ['aes256-gcm', randomBytes(16)],
      ['hmac-sha512', randomBytes(32)],
      ['ed25519', randomBytes(48)],
      ['rsa-3072', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'der', type: 'pkcs8' })],
    ];
    for (const [type, material] of cases) {
      const body = { type, ...(await wrapped('bad', material)) };
      const res = await call('POST', `/v1/kms/${NS}/keys/bad/import`, body);
      expect([res.status, res.body.error?.code ?? res.body.code]).toEqual([400, 'invalid_key_material']);
      expect((await call('GET', `/v1/kms/${NS}/keys/bad`)).status).toBe(404);
      // The token answered once; it never answers again (no decryption oracle).
      expect((await call('POST', `/v1/kms/${NS}/keys/bad/import`, { ...body, type: 'ed25519' })).status).toBe(410);
    }
    // Material wrapped under another key, a made-up token, base64 that is not, unknown fields.
    const other = await wrapped('bad', randomBytes(32));
    const foreign = wrapForImport(randomBytes(32), escrowKeyPair().publicPem, 'RSA_AES_KEY_WRAP_SHA_256');
    expect((await call('POST', `/v1/kms/${NS}/keys/bad/import`, { type: 'aes256-gcm', import_token: other.import_token, encrypted_key_material: foreign })).status).toBe(400);
    expect((await call('POST', `/v1/kms/${NS}/keys/bad/import`, { type: 'aes256-gcm', import_token: '00000000-0000-4000-8000-000000000000', encrypted_key_material: foreign })).status).toBe(404);
    const fresh = await wrapped('bad', randomBytes(32));
    expect((await call('POST', `/v1/kms/${NS}/keys/bad/import`, { type: 'aes256-gcm', import_token: fresh.import_token, encrypted_key_material: '!!not base64' })).status).toBe(400);
    expect((await call('POST', `/v1/kms/${NS}/keys/bad/import`, { type: 'aes256-gcm', ...fresh, extra: 1 })).status).toBe(400);
    expect((await call('POST', `/v1/kms/${NS}/keys/bad/import`, { type: 'no-such-type', ...fresh })).status).toBe(400);
    // An existing name is refused before the token is spent: the same token then imports elsewhere.
    expect((await call('POST', `/v1/kms/${NS}/keys/gen`, { type: 'aes256-gcm', exportable: true })).status).toBe(201);
    const reuse = await wrapped('gen', randomBytes(32));
    expect((await call('POST', `/v1/kms/${NS}/keys/gen/import`, { type: 'aes256-gcm', ...reuse })).status).toBe(409);
    // Coffer-generated keys take no imported versions (only keys that were imported do).
    expect((await call('POST', `/v1/kms/${NS}/keys/gen/import-version`, reuse)).status).toBe(400);
    expect((await call('GET', `/v1/kms/${NS}/keys/gen`)).body.latest_version).toBe(1);
    expect((await call('POST', `/v1/kms/${NS}/keys/bad/import`, { type: 'aes256-gcm', ...reuse })).status).toBe(201);
    // An imported version must fit the key's type.
    expect((await call('POST', `/v1/kms/${NS}/keys/bad/import-version`, await wrapped('bad', randomBytes(64)))).status).toBe(400);
    expect((await call('GET', `/v1/kms/${NS}/keys/bad`)).body.latest_version).toBe(1);
    // Only the two keys made here added versions.
    expect(await versionCount()).toBe(before + 2);
  }, 120_000);

  it('an imported key rotates only by importing: rotate is a 400 naming import-version, auto_rotate_period is refused, the job skips it', async () => {
    const material = randomBytes(32);
    // No period at import...
    const withPeriod = await call('POST', `/v1/kms/${NS}/keys/ext-rot/import`, { type: 'aes256-gcm', auto_rotate_period: 3600, ...(await wrapped('ext-rot', material)) });
    expect(withPeriod.status).toBe(400);
    expect(withPeriod.body.error.message).toMatch(/auto_rotate_period.*imported.*import-version/);
    const res = await call('POST', `/v1/kms/${NS}/keys/ext-rot/import`, { type: 'aes256-gcm', ...(await wrapped('ext-rot', material)) });
    expect(res.status).toBe(201);
    // ...nor by config (0, "off", is fine)...
    const config = await call('POST', `/v1/kms/${NS}/keys/ext-rot/config`, { auto_rotate_period: 3600 });
    expect(config.status).toBe(400);
    expect(config.body.error.message).toMatch(/imported key/);
    expect((await call('POST', `/v1/kms/${NS}/keys/ext-rot/config`, { auto_rotate_period: 0 })).status).toBe(200);
    // ...and no generated version: a manual rotate says to import the next version.
    const rotate = await call('POST', `/v1/kms/${NS}/keys/ext-rot/rotate`, {});
    expect(rotate.status).toBe(400);
    expect(rotate.body.error.message).toMatch(/origin external.*import-version/);
    expect((await call('GET', `/v1/kms/${NS}/keys/ext-rot`)).body).toMatchObject({ latest_version: 1, auto_rotate_period: 0 });
    // A period stored before these rules (set behind the service's back) does not make the job rotate it;
    // a generated key with the same period is rotated in the same run.
    expect((await call('POST', `/v1/kms/${NS}/keys/int-rot`, { type: 'aes256-gcm', auto_rotate_period: 3600 })).status).toBe(201);
    await server.core.db.updateTable('kms_keys').set({ auto_rotate_period_seconds: 3600 }).where('id', '=', await keyId('ext-rot')).execute();
    const rotated = await server.core.services().kms.keys.rotateDue(new Date(Date.now() + 2 * 3600_000));
    expect(rotated).toContain(`${NS}/int-rot`);
    expect(rotated).not.toContain(`${NS}/ext-rot`);
    expect((await call('GET', `/v1/kms/${NS}/keys/ext-rot`)).body.latest_version).toBe(1);
    // The imported material is still the key in use.
    const enc = await call('POST', `/v1/kms/${NS}/encrypt/ext-rot`, { plaintext: b64('still mine') });
    expect((await localDecrypt('ext-rot', material, enc.body.ciphertext, Buffer.alloc(0))).toString()).toBe('still mine');
  }, 60_000);

  it('exports an exportable key wrapped under the caller RSA key: it opens to the key in use; non-exportable and locked keys refuse', async () => {
    const { publicPem, privateKey } = escrowKeyPair();
    // A Coffer-generated exportable AES key: export, unwrap, and decrypt Coffer's ciphertext locally.
    for (const algorithm of ['RSAES_OAEP_SHA_256', 'RSA_AES_KEY_WRAP_SHA_256'] as const) {
      const exp = await call('POST', `/v1/kms/${NS}/keys/gen/export`, { public_key: publicPem, algorithm });
      expect(exp.status).toBe(200);
      expect(exp.body).toMatchObject({ name: 'gen', type: 'aes256-gcm', key_version: 1, algorithm, material_format: 'raw' });
      const key = unwrapEscrow(exp.body.wrapped_key_material, privateKey, algorithm);
      secrets.push(key.toString('base64'), key.toString('hex'));
      expect(key).toHaveLength(32);
      const enc = await call('POST', `/v1/kms/${NS}/encrypt/gen`, { plaintext: b64('exported and used'), associated_data: b64('x') });
      expect((await localDecrypt('gen', key, enc.body.ciphertext, Buffer.from('x'))).toString()).toBe('exported and used');
    }
    // An exportable Ed25519 key: the export is its PKCS#8 private key, which signs what Coffer verifies.
    expect((await call('POST', `/v1/kms/${NS}/keys/ed-exp`, { type: 'ed25519', exportable: true })).status).toBe(201);
    const exp = await call('POST', `/v1/kms/${NS}/keys/ed-exp/export`, { public_key: publicPem });
    expect(exp.body).toMatchObject({ algorithm: 'RSA_AES_KEY_WRAP_SHA_256', material_format: 'pkcs8-der' });
    const der = unwrapEscrow(exp.body.wrapped_key_material, privateKey, 'RSA_AES_KEY_WRAP_SHA_256');
    secrets.push(der.toString('base64'));
    const sig = nodeSign(null, Buffer.from('m'), createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).toString('base64');
    expect((await call('POST', `/v1/kms/${NS}/verify/ed-exp`, { input: b64('m'), signature: `coffer:v1:${sig}` })).body).toEqual({ valid: true });
    // An RSA private key does not fit bare RSA-OAEP: a clear 400.
    expect((await call('POST', `/v1/kms/${NS}/keys/rsa-exp`, { type: 'rsa-2048', exportable: true })).status).toBe(201);
    expect((await call('POST', `/v1/kms/${NS}/keys/rsa-exp/export`, { public_key: publicPem, algorithm: 'RSAES_OAEP_SHA_256' })).status).toBe(400);

    // Refusals: not exportable, locked, a version it does not have, a public key that is not a fit one.
    expect((await call('POST', `/v1/kms/${NS}/keys/plain`, { type: 'aes256-gcm' })).status).toBe(201);
    expect((await call('POST', `/v1/kms/${NS}/keys/locked`, { type: 'ed25519', export_locked: true })).status).toBe(201);
    for (const name of ['plain', 'locked', 'imp-ed25519']) {
      const res = await call('POST', `/v1/kms/${NS}/keys/${name}/export`, { public_key: publicPem });
      expect(res.status).toBe(400);
      expect(res.text).toMatch(/export/);
      expect(res.text).not.toMatch(/wrapped_key_material/);
    }
    expect((await call('POST', `/v1/kms/${NS}/keys/gen/export`, { public_key: publicPem, version: 9 })).status).toBe(400);
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
    for (const public_key of [small, ec, 'not a key']) expect((await call('POST', `/v1/kms/${NS}/keys/gen/export`, { public_key })).status).toBe(400);
    // Public keys of a locked key stay readable by whoever may verify.
    const verifier = await tokenWith(['verify']);
    expect((await call('GET', `/v1/kms/${NS}/public-key/locked`, undefined, verifier)).status).toBe(200);
    expect(createPublicKey((await call('GET', `/v1/kms/${NS}/public-key/locked`, undefined, verifier)).body.pem).asymmetricKeyType).toBe('ed25519');
  }, 120_000);

  it('needs key-admin on the key for import parameters, import and export', async () => {
    const { publicPem } = escrowKeyPair();
    const user = await tokenWith(['encrypt', 'decrypt', 'sign', 'verify', 'datakey', 'rewrap', 'hmac']);
    const otherKey = await tokenWith(['key-admin'], 'other-*');
    const admin = await tokenWith(['key-admin'], 'gen');
    for (const token of [user, otherKey]) {
      expect((await call('GET', `/v1/kms/${NS}/keys/gen/import-params`, undefined, token)).status).toBe(403);
      expect((await call('POST', `/v1/kms/${NS}/keys/gen/import`, { type: 'aes256-gcm', import_token: 'x', encrypted_key_material: 'AAAA' }, token)).status).toBe(403);
      expect((await call('POST', `/v1/kms/${NS}/keys/gen/import-version`, { import_token: 'x', encrypted_key_material: 'AAAA' }, token)).status).toBe(403);
      expect((await call('POST', `/v1/kms/${NS}/keys/gen/export`, { public_key: publicPem }, token)).status).toBe(403);
    }
    expect((await call('POST', `/v1/kms/${NS}/keys/gen/export`, { public_key: publicPem }, admin)).status).toBe(200);
    expect((await call('GET', `/v1/kms/${NS}/keys/gen/import-params`, undefined, admin)).status).toBe(200);
  }, 60_000);

  it('audits imports and exports by key and version, with no key bytes or wrapped material', async () => {
    const entries = (await call('GET', '/v1/sys/audit?limit=500')).body.entries as Array<Record<string, any>>;
    const actions = new Set(entries.map((e) => e.action));
    for (const a of ['kms.key.import_params', 'kms.key.import', 'kms.key.import_version', 'kms.key.export']) expect(actions).toContain(a);
    expect(entries.find((e) => e.action === 'kms.key.export' && e.outcome === 'success')).toMatchObject({ namespace: NS, path: 'gen', version: 1 });
    expect(entries.find((e) => e.action === 'kms.key.import' && e.outcome === 'success')).toMatchObject({ namespace: NS, version: 1 });
    const bodies = (await server.storage.db.selectFrom('audit_log').select('body').execute()).map((r) => r.body).join('\n');
    expect(secrets.length).toBeGreaterThan(20);
    for (const s of secrets) expect(bodies.includes(s)).toBe(false);
    expect(bodies).not.toMatch(/encrypted_key_material|wrapped_key_material|PRIVATE KEY/);
  });
});

// Under the PKCS#11 seal the wrapping key's private half lives in the HSM: SHA-256 imports of any
// length go through the token's raw RSA; SHA-1 ones (which would unwrap into an HSM AES key object) refuse.
describeIfSoftHsm('BYOK of named keys under the PKCS#11 seal (SoftHSM2)', () => {
  let hsm: SoftHsm;
  let store: TestStore;
  let server: RunningServer;
  let root: string;
  const call = (method: string, path: string, body?: unknown) => api(server.url, method, path, { token: root, ...(body === undefined ? {} : { body }) });
  beforeAll(async () => {
    hsm = createSoftHsm(['kms-byok']);
    store = await createStore('pglite');
    server = await startTestServer(store, { kekRunJobs: false, ...hsm.config('kms-byok') });
    const init = await api(server.url, 'POST', '/v1/sys/init', { body: { recovery_shares: 1, recovery_threshold: 1 } });
    expect(init.status).toBe(200);
    root = init.body.root_token as string;
    expect((await call('POST', '/v1/namespaces', { name: 'hsm-ns' })).status).toBe(201);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
    hsm?.cleanup();
  });

  it('imports a 512-bit HMAC key and an Ed25519 key with the SHA-256 algorithms; refuses SHA-1 ones', async () => {
    const mac = randomBytes(64);
    const p1 = await call('GET', '/v1/kms/hsm-ns/keys/mac/import-params?algorithm=RSA_AES_KEY_WRAP_SHA_256');
    expect(p1.body.wrapping_key_origin).toBe('hsm');
    const r1 = await call('POST', '/v1/kms/hsm-ns/keys/mac/import', { type: 'hmac-sha512', import_token: p1.body.import_token, encrypted_key_material: wrapForImport(mac, p1.body.public_key, 'RSA_AES_KEY_WRAP_SHA_256') });
    expect(r1.status).toBe(201);
    const tag = await call('POST', '/v1/kms/hsm-ns/hmac/mac', { input: b64('body') });
    expect(tag.body.hmac).toBe(`coffer:v1:${createHmac('sha512', mac).update('body').digest('base64')}`);

    const ed = generateKeyPairSync('ed25519');
    const p2 = await call('GET', '/v1/kms/hsm-ns/keys/ed/import-params?algorithm=RSAES_OAEP_SHA_256');
    const r2 = await call('POST', '/v1/kms/hsm-ns/keys/ed/import', {
      type: 'ed25519',
      import_token: p2.body.import_token,
      encrypted_key_material: wrapForImport(ed.privateKey.export({ format: 'der', type: 'pkcs8' }), p2.body.public_key, 'RSAES_OAEP_SHA_256'),
    });
    expect(r2.status).toBe(201);
    const sig = await call('POST', '/v1/kms/hsm-ns/sign/ed', { input: b64('m') });
    expect(nodeVerify(null, Buffer.from('m'), ed.publicKey, Buffer.from(sig.body.signature.replace(/^coffer:v1:/, ''), 'base64'))).toBe(true);

    const p3 = await call('GET', '/v1/kms/hsm-ns/keys/sha1/import-params?algorithm=RSA_AES_KEY_WRAP_SHA_1');
    const r3 = await call('POST', '/v1/kms/hsm-ns/keys/sha1/import', { type: 'aes256-gcm', import_token: p3.body.import_token, encrypted_key_material: wrapForImport(randomBytes(32), p3.body.public_key, 'RSA_AES_KEY_WRAP_SHA_1') });
    expect([r3.status, r3.body.error?.code ?? r3.body.code]).toEqual([400, 'unsupported_algorithm']);
    expect((await call('GET', '/v1/kms/hsm-ns/keys/sha1')).status).toBe(404);
  }, 60_000);
});
