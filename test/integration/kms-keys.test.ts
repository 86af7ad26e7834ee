// Named keys for applications (the KMS core, no HTTP routes yet): round trips per key type,
// version and export rules, batches, and what a database administrator's tampering or a KEK
// rotation does to key versions — through the real app's services on PGlite and PostgreSQL.
import { constants, createHash, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { KMS_KEY_TYPES, type KmsKeyType } from '@coffer/sdk/api';
import { CofferError } from '@coffer/server/errors';
import type { RunningServer } from '@coffer/server/server';
import { createStore, describeEachStorage, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';
import { kmsTampering } from '../helpers/kms.js';

const b64 = (s: string | Uint8Array) => Buffer.from(s).toString('base64');
const text = (s: string) => Buffer.from(s, 'base64').toString('utf8');
const DAY = 86_400_000;

/** The CofferError code (and message) a promise rejects with. */
async function failure(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CofferError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected a CofferError, got success');
}

describeEachStorage('KMS named keys', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  const kms = () => server.core.services().kms;
  const db = () => server.core.db;
  const { versionRow, behindTheBack, setMaterial } = kmsTampering(() => server);

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store, { kekRunJobs: false });
    await initAndUnseal(server.url);
    for (const ns of ['apps', 'other', 'shredme']) await server.core.services().namespaces.create(ns);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('creates every key type and uses it for what it supports', async () => {
    const message = b64('hello from a build job');
    for (const type of KMS_KEY_TYPES) {
      const name = `all-${type}`;
      const info = await kms().keys.create('apps', name, { type });
      expect(info).toMatchObject({ name, type, latest_version: 1, origin: 'internal', hsm: false, exportable: false, deletion_allowed: false });
      expect(JSON.stringify(info)).not.toMatch(/PRIVATE KEY|"d":/);
      const ops = kms().ops;
      if (info.operations.includes('encrypt')) {
        const aad = b64('order-42');
        const { ciphertext, key_version } = await ops.encrypt('apps', name, { plaintext: message, associated_data: aad });
        expect(key_version).toBe(1);
        expect(ciphertext).toMatch(/^coffer:v1:/);
        expect(await ops.decrypt('apps', name, { ciphertext, associated_data: aad })).toEqual({ plaintext: message, key_version: 1 });
      }
      if (info.operations.includes('datakey')) {
        const dk = await ops.datakey('apps', name, { mode: 'plaintext', bits: 512 });
        expect(Buffer.from(dk.plaintext!, 'base64')).toHaveLength(64);
        expect((await ops.decrypt('apps', name, { ciphertext: dk.ciphertext })).plaintext).toBe(dk.plaintext);
        expect(await ops.datakey('apps', name, { mode: 'wrapped', bits: 128 })).not.toHaveProperty('plaintext');
      }
      if (info.operations.includes('sign')) {
        const { signature } = await ops.sign('apps', name, { input: message });
        expect(await ops.verify('apps', name, { input: message, signature })).toEqual({ valid: true });
        expect(await ops.verify('apps', name, { input: b64('tampered'), signature })).toEqual({ valid: false });
        // Interop: the public key the key service shows verifies the signature with plain node:crypto.
        const publicKey = createPublicKey(info.versions[0]!.public_key!.pem);
        expect(createPublicKey({ key: info.versions[0]!.public_key!.jwk, format: 'jwk' }).equals(publicKey)).toBe(true);
        const raw = Buffer.from(signature.split(':')[2]!, 'base64');
        const algorithm = type === 'ed25519' ? null : type === 'ecdsa-p384' ? 'sha384' : 'sha256';
        const padding = type.startsWith('rsa') ? { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : {};
        expect(nodeVerify(algorithm, Buffer.from(message, 'base64'), { key: publicKey, ...padding }, raw)).toBe(true);
      } else {
        expect(info.versions[0]).not.toHaveProperty('public_key');
      }
      if (info.operations.includes('hmac')) {
        const { hmac } = await ops.hmac('apps', name, { input: message });
        expect(await ops.hmacVerify('apps', name, { input: message, hmac })).toEqual({ valid: true });
        expect(await ops.verify('apps', name, { input: message, signature: hmac })).toEqual({ valid: true });
        expect(await ops.hmacVerify('apps', name, { input: b64('x'), hmac })).toEqual({ valid: false });
      }
      for (const op of ['encrypt', 'sign', 'hmac'] as const) {
        if (info.operations.includes(op)) continue;
        const call = op === 'encrypt' ? ops.encrypt('apps', name, { plaintext: message }) : op === 'sign' ? ops.sign('apps', name, { input: message }) : ops.hmac('apps', name, { input: message });
        expect(await failure(call)).toMatchObject({ code: 'invalid_request', message: expect.stringContaining(`does not support ${op}`) });
      }
    }
  }, 120_000);

  it('prehashed signatures and RSA options', async () => {
    await kms().keys.create('apps', 'signer-rsa', { type: 'rsa-2048' });
    const digest = b64(createHash('sha384').update('artefact').digest());
    for (const signature_algorithm of ['pss', 'pkcs1v15'] as const) {
      const options = { prehashed: true, hash_algorithm: 'sha2-384', signature_algorithm } as const;
      const { signature } = await kms().ops.sign('apps', 'signer-rsa', { input: digest, ...options });
      expect(await kms().ops.verify('apps', 'signer-rsa', { input: b64('artefact'), signature, hash_algorithm: 'sha2-384', signature_algorithm })).toEqual({ valid: true });
      expect(await kms().ops.verify('apps', 'signer-rsa', { input: digest, signature, ...options })).toEqual({ valid: true });
    }
    await kms().keys.create('apps', 'signer-ed', { type: 'ed25519' });
    expect(await failure(kms().ops.sign('apps', 'signer-ed', { input: digest, prehashed: true }))).toMatchObject({ code: 'invalid_request' });
  }, 60_000);

  it('a wrong key, version, format, AAD or altered ciphertext is a clear invalid_request, never garbage', async () => {
    await kms().keys.create('apps', 'k1', { type: 'aes256-gcm' });
    await kms().keys.create('apps', 'k2', { type: 'aes256-gcm' });
    await kms().keys.create('apps', 'kx', { type: 'xchacha20-poly1305' });
    const aad = b64('ctx');
    const { ciphertext } = await kms().ops.encrypt('apps', 'k1', { plaintext: b64('secret data'), associated_data: aad });
    const decrypt = (key: string, c: string, a: string | undefined = aad) => failure(kms().ops.decrypt('apps', key, { ciphertext: c, associated_data: a }));
    expect(await decrypt('k2', ciphertext)).toEqual({ code: 'invalid_request', message: 'this ciphertext was not made by key "k2"' });
    expect((await decrypt('kx', ciphertext)).message).toMatch(/not made by key "kx"/);
    expect((await decrypt('k1', ciphertext, b64('other ctx'))).message).toMatch(/associated_data differs/);
    expect((await failure(kms().ops.decrypt('apps', 'k1', { ciphertext }))).message).toMatch(/associated_data differs/);
    expect((await decrypt('k1', ciphertext.replace('coffer:v1:', 'coffer:v2:'))).message).toMatch(/has no version 2/);
    expect((await decrypt('k1', 'vault:v1:abcd')).message).toMatch(/not a Coffer KMS value/);
    const bytes = Buffer.from(ciphertext.slice('coffer:v1:'.length), 'base64');
    bytes[bytes.length - 3]! ^= 0x20;
    expect((await decrypt('k1', `coffer:v1:${bytes.toString('base64')}`)).message).toMatch(/altered/);
    expect((await failure(kms().ops.decrypt('apps', 'missing', { ciphertext }))).code).toBe('not_found');
    expect((await failure(kms().ops.decrypt('nowhere', 'k1', { ciphertext }))).code).toBe('not_found');
  });

  it('64 KiB per encrypt; more points to data keys', async () => {
    await kms().keys.create('apps', 'big', { type: 'xchacha20-poly1305' });
    const max = Buffer.alloc(64 * 1024, 7);
    const ok = await kms().ops.encrypt('apps', 'big', { plaintext: b64(max) });
    expect(Buffer.from((await kms().ops.decrypt('apps', 'big', ok)).plaintext, 'base64').equals(max)).toBe(true);
    const tooBig = await failure(kms().ops.encrypt('apps', 'big', { plaintext: b64(Buffer.alloc(64 * 1024 + 1)) }));
    expect(tooBig.code).toBe('payload_too_large');
    expect(tooBig.message).toMatch(/data key/);
  });

  it('batch: per-item results and errors, at most 10,000 items', async () => {
    await kms().keys.create('apps', 'batcher', { type: 'aes256-gcm' });
    const items = Array.from({ length: 1000 }, (_, i) => ({ plaintext: b64(`item-${i}`), associated_data: b64(`aad-${i}`) }));
    const encrypted = await kms().ops.batch('apps', 'batcher', 'encrypt', [...items, { plaintext: 'not base64!' }, { plaintext: b64('x'), key_version: 9 }]);
    expect(encrypted.failed).toBe(2);
    expect(encrypted.results[1000]).toMatchObject({ error: { code: 'invalid_request' } });
    expect(encrypted.results[1001]).toMatchObject({ error: { code: 'invalid_request', message: expect.stringMatching(/no version 9/) } });
    const decryptItems = encrypted.results.slice(0, 1000).map((r, i) => ({ ciphertext: (r as { ciphertext: string }).ciphertext, associated_data: b64(`aad-${i}`) }));
    decryptItems[5] = { ...decryptItems[5]!, associated_data: b64('wrong') };
    const decrypted = await kms().ops.batch('apps', 'batcher', 'decrypt', decryptItems);
    expect(decrypted.failed).toBe(1);
    expect(decrypted.results[5]).toHaveProperty('error');
    expect(text((decrypted.results[999] as { plaintext: string }).plaintext)).toBe('item-999');
    expect((await failure(kms().ops.batch('apps', 'batcher', 'encrypt', Array.from({ length: 10_001 }, () => items[0]!)))).message).toMatch(/at most 10000/);
  }, 60_000);

  it('versions: rotate, rewrap, min_decryption_version refuses old ciphertext, trim', async () => {
    await kms().keys.create('apps', 'ver', { type: 'aes256-gcm' });
    const v1 = await kms().ops.encrypt('apps', 'ver', { plaintext: b64('one') });
    await kms().keys.rotate('apps', 'ver');
    const info = await kms().keys.rotate('apps', 'ver');
    expect(info.latest_version).toBe(3);
    expect(info.versions.map((v) => v.version)).toEqual([1, 2, 3]);
    const rewrapped = await kms().ops.rewrap('apps', 'ver', { ciphertext: v1.ciphertext });
    expect(rewrapped.key_version).toBe(3);
    expect(text((await kms().ops.decrypt('apps', 'ver', rewrapped)).plaintext)).toBe('one');
    expect((await kms().ops.encrypt('apps', 'ver', { plaintext: b64('x'), key_version: 1 })).key_version).toBe(1);

    await kms().keys.updateConfig('apps', 'ver', { min_decryption_version: 2, min_encryption_version: 3 });
    expect((await failure(kms().ops.decrypt('apps', 'ver', v1))).message).toMatch(/min_decryption_version is 2/);
    expect((await failure(kms().ops.encrypt('apps', 'ver', { plaintext: b64('x'), key_version: 2 }))).message).toMatch(/min_encryption_version/);
    expect((await failure(kms().keys.updateConfig('apps', 'ver', { min_encryption_version: 1 }))).code).toBe('invalid_request');
    expect((await failure(kms().keys.updateConfig('apps', 'ver', { min_decryption_version: 4 }))).code).toBe('invalid_request');
    expect((await failure(kms().keys.trim('apps', 'ver', 3))).message).toMatch(/cannot exceed min_decryption_version/);

    expect(await kms().keys.trim('apps', 'ver', 2)).toEqual({ namespace: 'apps', name: 'ver', min_available_version: 2, versions_removed: 1 });
    expect((await failure(kms().keys.updateConfig('apps', 'ver', { min_decryption_version: 1 }))).message).toMatch(/trimmed/);
    // Lowered again, version 1 stays gone: what it encrypted is unrecoverable by design.
    await kms().keys.updateConfig('apps', 'ver', { min_encryption_version: 0 });
    const read = await kms().keys.read('apps', 'ver');
    expect(read).toMatchObject({ min_available_version: 2, min_decryption_version: 2, min_encryption_version: 0, latest_version: 3 });
  });

  it('export settings are irreversible, and a refused change changes nothing', async () => {
    await kms().keys.create('apps', 'exp', { type: 'ed25519', deletion_allowed: true });
    await kms().keys.updateConfig('apps', 'exp', { exportable: true });
    expect((await failure(kms().keys.updateConfig('apps', 'exp', { exportable: false, deletion_allowed: false }))).message).toMatch(/cannot be undone/);
    expect((await failure(kms().keys.updateConfig('apps', 'exp', { export_locked: true }))).code).toBe('invalid_request');
    expect(await kms().keys.read('apps', 'exp')).toMatchObject({ exportable: true, export_locked: false, deletion_allowed: true });

    await kms().keys.create('apps', 'locked', { type: 'aes256-gcm', export_locked: true });
    expect((await failure(kms().keys.updateConfig('apps', 'locked', { export_locked: false }))).message).toMatch(/cannot be undone/);
    expect((await failure(kms().keys.updateConfig('apps', 'locked', { exportable: true }))).message).toMatch(/permanently non-exportable/);
    expect((await failure(kms().keys.create('apps', 'both', { type: 'aes256-gcm', exportable: true, export_locked: true }))).code).toBe('invalid_request');
    expect(await kms().keys.read('apps', 'locked')).toMatchObject({ exportable: false, export_locked: true });
    expect((await failure(kms().keys.create('apps', 'hsm-key', { type: 'aes256-gcm', hsm: true }))).code).toBe('unsupported_algorithm');
  });

  it('delete only when deletion_allowed; a re-created key does not open the old one\'s ciphertext', async () => {
    await kms().keys.create('apps', 'gone', { type: 'aes256-gcm' });
    const old = await kms().ops.encrypt('apps', 'gone', { plaintext: b64('old') });
    expect((await failure(kms().keys.delete('apps', 'gone'))).message).toMatch(/deletion_allowed/);
    await kms().keys.updateConfig('apps', 'gone', { deletion_allowed: true });
    expect(await kms().keys.delete('apps', 'gone')).toEqual({ namespace: 'apps', name: 'gone', versions_deleted: 1 });
    expect((await failure(kms().keys.read('apps', 'gone'))).code).toBe('not_found');
    await kms().keys.create('apps', 'gone', { type: 'aes256-gcm' });
    expect((await failure(kms().ops.decrypt('apps', 'gone', old))).message).toMatch(/not made by key "gone"/);
    expect((await failure(kms().keys.create('apps', 'gone', { type: 'aes256-gcm' }))).code).toBe('already_exists');
  });

  it('lists keys a page at a time, showing only what the caller may see', async () => {
    for (const name of ['list-a', 'list-b', 'list-c', 'list-d']) await kms().keys.create('other', name, { type: 'hmac-sha256' });
    const visible = (name: string) => name !== 'list-b';
    const first = await kms().keys.list('other', { limit: 2, after: '' }, visible);
    expect(first.keys.map((k) => k.name)).toEqual(['list-a', 'list-c']);
    expect(first.next_cursor).not.toBeNull();
    const second = await kms().keys.list('other', { limit: 2, after: Buffer.from(first.next_cursor!, 'base64url').toString() }, visible);
    expect(second).toMatchObject({ keys: [{ name: 'list-d', type: 'hmac-sha256', latest_version: 1 }], next_cursor: null });
  });

  it('swapped or altered key rows fail integrity, within a namespace and across namespaces', async () => {
    await kms().keys.create('apps', 'ta', { type: 'aes256-gcm' });
    await kms().keys.create('apps', 'tb', { type: 'aes256-gcm' });
    await kms().keys.create('other', 'tc', { type: 'aes256-gcm' });
    const a = await versionRow('apps', 'ta', 1);
    const b = await versionRow('apps', 'tb', 1);
    const c = await versionRow('other', 'tc', 1);
    const sealed = await kms().ops.encrypt('apps', 'ta', { plaintext: b64('for ta only') });
    for (const [source, what] of [[b, 'a key of the same namespace'], [c, 'a key of another namespace']] as const) {
      await setMaterial(a, source.wrapped_material);
      const err = await failure(kms().ops.decrypt('apps', 'ta', sealed));
      expect({ what, code: err.code }).toEqual({ what, code: 'integrity_error' });
      expect(err.message).toMatch(/key "ta" version 1/);
      expect((await failure(kms().ops.encrypt('apps', 'ta', { plaintext: b64('x') }))).code).toBe('integrity_error');
    }
    const flipped = Buffer.from(a.wrapped_material);
    flipped[flipped.length - 1]! ^= 1;
    await setMaterial(a, flipped);
    expect((await failure(kms().ops.decrypt('apps', 'ta', sealed))).code).toBe('integrity_error');
    await setMaterial(a, a.wrapped_material);
    expect(text((await kms().ops.decrypt('apps', 'ta', sealed)).plaintext)).toBe('for ta only');
    // The type is bound too: a key turned into another type of the same size does not open.
    await behindTheBack(db().updateTable('kms_keys').set({ type: 'hmac-sha256' }).where('id', '=', a.key_id).execute());
    expect((await failure(kms().ops.hmac('apps', 'ta', { input: b64('x') }))).code).toBe('integrity_error');
    await behindTheBack(db().updateTable('kms_keys').set({ type: 'aes256-gcm' }).where('id', '=', a.key_id).execute());
    expect(text((await kms().ops.decrypt('apps', 'ta', sealed)).plaintext)).toBe('for ta only');
  });

  it('KEK rotation: key versions stay usable, move to the new KEK, and the old ones are then unreferenced', async () => {
    const keys: Array<[string, KmsKeyType]> = [['rot-aes', 'aes256-gcm'], ['rot-ec', 'ecdsa-p256']];
    for (const [name, type] of keys) await kms().keys.create('other', name, { type });
    const sealed = await kms().ops.encrypt('other', 'rot-aes', { plaintext: b64('survives rotation') });
    const signed = await kms().ops.sign('other', 'rot-ec', { input: b64('m') });
    const rotation = await server.core.services().namespaces.rotateKek('other');
    const nsId = (await versionRow('other', 'rot-aes', 1)).namespace_id;
    expect(await kms().keys.countToRewrap(nsId, rotation.version)).toBeGreaterThanOrEqual(2);
    // Still under the old KEK version, which is kept: everything opens.
    expect(text((await kms().ops.decrypt('other', 'rot-aes', sealed)).plaintext)).toBe('survives rotation');
    await kms().keys.rotate('other', 'rot-aes');
    expect((await versionRow('other', 'rot-aes', 2)).kek_version).toBe(rotation.version);

    // The namespace's rewrap job moves them (in batches of at most `limit`, here driven by hand for
    // part of them first), and only then retires the old KEK version.
    expect(await server.core.db.transaction().execute((trx) => kms().keys.rewrapToKek(nsId, rotation.version, trx, 1))).toBe(1);
    await server.core.services().kek.runRewrapJobs();
    expect(await kms().keys.countToRewrap(nsId, rotation.version)).toBe(0);
    expect(await server.core.db.transaction().execute((trx) => kms().keys.rewrapToKek(nsId, rotation.version, trx, 2))).toBe(0);
    expect((await server.core.services().kek.status('other')).versions.find((v) => v.version === rotation.version - 1)?.state).toBe('retired');
    expect((await versionRow('other', 'rot-aes', 1)).kek_version).toBe(rotation.version);
    expect(text((await kms().ops.decrypt('other', 'rot-aes', sealed)).plaintext)).toBe('survives rotation');
    expect(await kms().ops.verify('other', 'rot-ec', { input: b64('m'), signature: signed.signature })).toEqual({ valid: true });
    // A key version moved back to the old KEK number without being rewrapped does not open.
    const row = await versionRow('other', 'rot-aes', 1);
    await behindTheBack(db().updateTable('kms_key_versions').set({ kek_version: rotation.version - 1 }).where('key_id', '=', row.key_id).where('version', '=', 1).execute());
    expect((await failure(kms().ops.decrypt('other', 'rot-aes', sealed))).code).toBe('integrity_error');
    await behindTheBack(db().updateTable('kms_key_versions').set({ kek_version: rotation.version }).where('key_id', '=', row.key_id).where('version', '=', 1).execute());
  }, 60_000);

  it('scheduled rotation rotates keys past their period, once', async () => {
    await kms().keys.create('apps', 'auto', { type: 'hmac-sha512', auto_rotate_period: 3600 });
    expect((await failure(kms().keys.create('apps', 'auto-bad', { type: 'aes256-gcm', auto_rotate_period: 60 }))).code).toBe('invalid_request');
    expect(await kms().keys.rotateDue(new Date())).not.toContain('apps/auto');
    const later = new Date(Date.now() + 2 * 3600_000);
    // A stopping job (seal, shutdown) starts no rotation.
    expect(await kms().keys.rotateDue(later, AbortSignal.abort())).toEqual([]);
    expect(await kms().keys.rotateDue(later)).toContain('apps/auto');
    expect((await kms().keys.read('apps', 'auto')).latest_version).toBe(2);
    expect(await kms().keys.rotateDue(new Date())).not.toContain('apps/auto');
  });

  it('crypto-shredding a namespace refuses its keys at once and destroys their versions', async () => {
    await kms().keys.create('shredme', 'doomed', { type: 'aes256-gcm' });
    const sealed = await kms().ops.encrypt('shredme', 'doomed', { plaintext: b64('bye') });
    const now = new Date();
    await server.core.services().kek.scheduleShred('shredme', 7, now);
    expect((await failure(kms().ops.decrypt('shredme', 'doomed', sealed))).code).toBe('namespace_disabled');
    expect((await failure(kms().keys.rotate('shredme', 'doomed'))).code).toBe('namespace_disabled');
    expect(await server.core.services().kek.sweepShredding(new Date(now.getTime() + 8 * DAY))).toEqual(['shredme']);
    const left = await db().selectFrom('kms_key_versions as v').innerJoin('kms_keys as k', 'k.id', 'v.key_id').select('v.version').where('k.name', '=', 'doomed').execute();
    expect(left).toEqual([]);
  });
});
