// End to end: BYOK and export of named keys through client.kms.keys (importMaterial, export,
// unwrapKeyExport) and `coffer kms key import|export` against a real `coffer-server --dev`:
// imported keys work with node:crypto's copy of the key, exports open to the key in use, key files
// are created 0600 and never overwritten.
import { createPrivateKey, generateKeyPairSync, randomBytes, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CofferError, unwrapKeyExport } from '@coffer/sdk';
import { devWorld } from '../helpers/dev-world.js';

const NS = 'kmsxfer';
const world = devWorld(NS, 'coffer-xfer');
const { coffer, ok } = world;

describe('BYOK and export through the SDK and the CLI', () => {
  it('SDK: importMaterial (new key and next version), export and unwrapKeyExport give back the same key', async () => {
    const v1 = randomBytes(32);
    const created = await world.client.kms.keys.importMaterial(NS, 'sdk-aes', v1, { type: 'aes256-gcm', exportable: true });
    expect(created).toMatchObject({ origin: 'external', latest_version: 1, exportable: true });
    const v2 = randomBytes(32);
    expect((await world.client.kms.keys.importMaterial(NS, 'sdk-aes', v2)).latest_version).toBe(2);
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
    const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
    for (const [version, expected] of [[1, v1], [2, v2]] as const) {
      const exported = await world.client.kms.keys.export(NS, 'sdk-aes', { public_key: pem, version });
      expect(unwrapKeyExport(exported, privateKey).equals(expected)).toBe(true);
    }
    // A private key as a KeyObject.
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await world.client.kms.keys.importMaterial(NS, 'sdk-ec', ec.privateKey, { type: 'ecdsa-p256' });
    const sig = await world.client.kms.sign(NS, 'sdk-ec', 'message');
    expect(nodeVerify('sha256', Buffer.from('message'), ec.publicKey, Buffer.from(sig.signature.replace(/^coffer:v1:/, ''), 'base64'))).toBe(true);
    // Not exportable: the server's 400.
    const err = await world.client.kms.keys.export(NS, 'sdk-ec', { public_key: pem }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CofferError);
    expect((err as CofferError).status).toBe(400);
  }, 60_000);

  it('CLI: kms key import from a PEM file, export wrapped and unwrapped to new 0600 files', async () => {
    const ed = generateKeyPairSync('ed25519');
    const keyFile = path.join(world.dir, 'signing.pem');
    await writeFile(keyFile, ed.privateKey.export({ format: 'pem', type: 'pkcs8' }));
    expect(await ok(['kms', 'key', 'import', 'cli-ed', '--type', 'ed25519', '--key-file', keyFile, '--exportable'])).toMatch(/origin external/);
    const local = nodeSign(null, Buffer.from('m'), ed.privateKey).toString('base64');
    expect(await world.client.kms.verify(NS, 'cli-ed', 'm', `coffer:v1:${local}`)).toBe(true);

    const aesFile = path.join(world.dir, 'aes.key');
    const aes = randomBytes(32);
    await writeFile(aesFile, aes);
    await ok(['kms', 'key', 'import', 'cli-aes', '--type', 'aes256-gcm', '--key-file', aesFile, '--exportable']);
    const next = path.join(world.dir, 'aes2.key');
    await writeFile(next, randomBytes(32));
    expect(await ok(['kms', 'key', 'import', 'cli-aes', '--key-file', next])).toMatch(/version 2/);

    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
    const pub = path.join(world.dir, 'escrow.pub');
    const priv = path.join(world.dir, 'escrow.key');
    await writeFile(pub, publicKey.export({ format: 'pem', type: 'spki' }));
    await writeFile(priv, privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const wrappedOut = path.join(world.dir, 'aes.wrapped');
    await ok(['kms', 'key', 'export', 'cli-aes', '--version', '1', '--public-key', pub, '--out', wrappedOut]);
    expect((await stat(wrappedOut)).mode & 0o777).toBe(0o600);
    const blob = await readFile(wrappedOut);
    expect(unwrapKeyExport({ algorithm: 'RSA_AES_KEY_WRAP_SHA_256', wrapped_key_material: blob.toString('base64') }, privateKey).equals(aes)).toBe(true);
    // Never overwrites.
    expect((await coffer(['kms', 'key', 'export', 'cli-aes', '--public-key', pub, '--out', wrappedOut])).code).not.toBe(0);
    expect((await readFile(wrappedOut)).equals(blob)).toBe(true);
    const edOut = path.join(world.dir, 'ed-back.pem');
    await ok(['kms', 'key', 'export', 'cli-ed', '--public-key', pub, '--private-key', priv, '--out', edOut]);
    const back = createPrivateKey(await readFile(edOut));
    expect(back.export({ format: 'der', type: 'pkcs8' }).equals(ed.privateKey.export({ format: 'der', type: 'pkcs8' }))).toBe(true);
  }, 120_000);
});
