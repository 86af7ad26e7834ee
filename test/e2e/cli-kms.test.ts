// End to end: client.kms and `coffer kms` against a real `coffer-server --dev` process — key
// administration, every operation, data keys, and file envelopes whose data key the server
// unwraps while the data never leaves this process (checked with the independent node:crypto
// implementation of the envelope format).

import { createPublicKey, randomBytes, verify as nodeVerify } from 'node:crypto';
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CofferError, readEnvelopeMeta } from '@coffer/sdk';
import { referenceDecrypt } from '../fixtures/envelope-reference.js';
import { devWorld } from '../helpers/dev-world.js';

const NS = 'kmsapp';
const world = devWorld(NS, 'coffer-kms');
const { coffer, ok } = world;

async function rejection(p: Promise<unknown>): Promise<CofferError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CofferError);
  return err as CofferError;
}

describe('client.kms against a real server', () => {
  it('key administration: create, read, list, config, rotate, trim, delete', async () => {
    const created = await world.client.kms.keys.create(NS, 'admin-k', { type: 'aes256-gcm' });
    expect(created).toMatchObject({ namespace: NS, name: 'admin-k', type: 'aes256-gcm', latest_version: 1 });
    await world.client.kms.keys.rotate(NS, 'admin-k');
    await world.client.kms.keys.rotate(NS, 'admin-k');
    expect((await world.client.kms.keys.read(NS, 'admin-k')).latest_version).toBe(3);
    const names: string[] = [];
    for await (const k of world.client.kms.keys.listAll(NS, { pageSize: 1 })) names.push(k.name);
    expect(names).toContain('admin-k');
    await world.client.kms.keys.config(NS, 'admin-k', { min_decryption_version: 2, deletion_allowed: true });
    expect((await world.client.kms.keys.trim(NS, 'admin-k', 2)).min_available_version).toBe(2);
    await world.client.kms.keys.delete(NS, 'admin-k');
    expect((await rejection(world.client.kms.keys.read(NS, 'admin-k'))).status).toBe(404);
  });

  it('encrypt, decrypt with associated data, rewrap, batch, data keys', async () => {
    await world.client.kms.keys.create(NS, 'aead', { type: 'xchacha20-poly1305' });
    const c = await world.client.kms.encrypt(NS, 'aead', 'card 4111', { associatedData: 'tenant=1' });
    expect(c.ciphertext).toMatch(/^coffer:v1:/);
    expect((await world.client.kms.decrypt(NS, 'aead', c.ciphertext, { associatedData: 'tenant=1' })).plaintext.toString()).toBe('card 4111');
    expect((await rejection(world.client.kms.decrypt(NS, 'aead', c.ciphertext, { associatedData: 'tenant=2' }))).status).toBe(400);

    await world.client.kms.keys.rotate(NS, 'aead');
    const rewrapped = await world.client.kms.rewrap(NS, 'aead', c.ciphertext, { associatedData: 'tenant=1' });
    expect(rewrapped.key_version).toBe(2);

    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const batch = await world.client.kms.batch(NS, 'aead', 'encrypt', [{ plaintext: b64('a') }, { plaintext: 'not base64!' }, { plaintext: b64('c') }]);
    expect(batch.failed).toBe(1);
    expect(batch.results[1]).toHaveProperty('error');

    const dk = await world.client.kms.datakey(NS, 'aead', { bits: 256 });
    expect(dk.plaintext).toHaveLength(32);
    expect((await world.client.kms.decrypt(NS, 'aead', dk.ciphertext)).plaintext.equals(dk.plaintext!)).toBe(true);
    expect((await world.client.kms.datakey(NS, 'aead', { mode: 'wrapped', bits: 512 })).plaintext).toBeUndefined();
  });

  it('sign and verify (checked by node:crypto with the public key), HMAC, random', async () => {
    await world.client.kms.keys.create(NS, 'signer', { type: 'ed25519' });
    const s = await world.client.kms.sign(NS, 'signer', 'release 1.2.3');
    expect(await world.client.kms.verify(NS, 'signer', 'release 1.2.3', s.signature)).toBe(true);
    expect(await world.client.kms.verify(NS, 'signer', 'release 1.2.4', s.signature)).toBe(false);
    const pk = await world.client.kms.publicKey(NS, 'signer');
    const raw = Buffer.from(s.signature.split(':')[2]!, 'base64');
    expect(nodeVerify(null, Buffer.from('release 1.2.3'), createPublicKey(pk.pem), raw)).toBe(true);

    await world.client.kms.keys.create(NS, 'mac', { type: 'hmac-sha256' });
    const m = await world.client.kms.hmac(NS, 'mac', 'body');
    expect(await world.client.kms.verifyHmac(NS, 'mac', 'body', m.hmac)).toBe(true);
    expect(await world.client.kms.verifyHmac(NS, 'mac', 'bodY', m.hmac)).toBe(false);
    expect(await world.client.kms.random(48)).toHaveLength(48);
  });

  it('file envelopes: the server unwraps the data key, an independent implementation opens the file', async () => {
    await world.client.kms.keys.create(NS, 'files', { type: 'aes256-gcm' });
    const data = randomBytes(3 * 1024 * 1024 + 11);
    const plain = path.join(world.dir, 'sdk.bin');
    await writeFile(plain, data);
    await world.client.kms.encryptFile(NS, 'files', plain, `${plain}.cfev`);
    const envelope = await readFile(`${plain}.cfev`);
    const meta = await readEnvelopeMeta((async function* () { yield envelope; })());
    expect(meta).toMatchObject({ namespace: NS, key: 'files', key_version: 1 });
    const key = (await world.client.kms.decrypt(NS, 'files', meta.wrapped_key)).plaintext;
    expect(referenceDecrypt(envelope, key).plaintext.equals(data)).toBe(true);

    await world.client.kms.decryptFile(`${plain}.cfev`, path.join(world.dir, 'sdk.out'));
    expect((await readFile(path.join(world.dir, 'sdk.out'))).equals(data)).toBe(true);
  });
});

describe('coffer kms against a real server', () => {
  it('key commands', async () => {
    expect(await ok(['kms', 'key', 'create', 'cli-k', '--type', 'aes256-gcm', '--auto-rotate', '30d'])).toMatch(/Auto-rotate period\s+2592000s/);
    expect(await ok(['kms', 'key', 'list'])).toMatch(/^cli-k\s+aes256-gcm\s+1$/m);
    expect(await ok(['kms', 'key', 'rotate', 'cli-k'])).toMatch(/version 2 is the latest/);
    expect(JSON.parse(await ok(['kms', 'key', 'read', 'cli-k', '--format', 'json']))).toMatchObject({ latest_version: 2 });
    expect(await ok(['kms', 'key', 'config', 'cli-k', '--deletion-allowed', 'true'])).toMatch(/Deletion allowed\s+true/);
    expect((await coffer(['kms', 'key', 'config', 'cli-k'])).code).toBe(2);
    expect(await ok(['kms', 'key', 'delete', 'cli-k'])).toMatch(/Deleted key cli-k/);
    expect((await coffer(['kms', 'key', 'read', 'cli-k'])).code).toBe(4);
  });

  it('encrypt and decrypt through stdin and files, exact bytes, 64 KiB limit', async () => {
    await ok(['kms', 'key', 'create', 'cli-aead', '--type', 'aes256-gcm']);
    const ciphertext = (await ok(['kms', 'encrypt', 'cli-aead', '--aad', 'ctx'], 'line one\nline two\n')).trim();
    expect(ciphertext).toMatch(/^coffer:v1:[A-Za-z0-9+/=]+$/);
    expect(await ok(['kms', 'decrypt', 'cli-aead', '--aad', 'ctx'], `${ciphertext}\n`)).toBe('line one\nline two\n');
    expect((await coffer(['kms', 'decrypt', 'cli-aead'], ciphertext)).code).toBe(1); // no AAD: refused

    const binary = randomBytes(4000);
    await writeFile(path.join(world.dir, 'b.bin'), binary);
    await ok(['kms', 'encrypt', 'cli-aead', '--in', path.join(world.dir, 'b.bin'), '--out', path.join(world.dir, 'b.enc')]);
    await ok(['kms', 'decrypt', 'cli-aead', '--in', path.join(world.dir, 'b.enc'), '--out', path.join(world.dir, 'b.out')]);
    expect((await readFile(path.join(world.dir, 'b.out'))).equals(binary)).toBe(true);
    expect((await stat(path.join(world.dir, 'b.out'))).mode & 0o777).toBe(0o600);

    await writeFile(path.join(world.dir, 'big.bin'), randomBytes(64 * 1024 + 1));
    const big = await coffer(['kms', 'encrypt', 'cli-aead', '--in', path.join(world.dir, 'big.bin')]);
    expect(big.code).toBe(2);
    expect(big.stderr).toMatch(/encrypt-file/);
  });

  it('sign, verify (exit 1 when invalid), hmac, datakey, public-key, random', async () => {
    await ok(['kms', 'key', 'create', 'cli-sign', '--type', 'ecdsa-p256']);
    const sig = (await ok(['kms', 'sign', 'cli-sign'], 'artifact')).trim();
    expect(await ok(['kms', 'verify', 'cli-sign', '--signature', sig], 'artifact')).toBe('valid\n');
    const bad = await coffer(['kms', 'verify', 'cli-sign', '--signature', sig], 'artifacT');
    expect([bad.code, bad.stdout]).toEqual([1, 'invalid\n']);
    expect(await ok(['kms', 'public-key', 'cli-sign'])).toMatch(/^-----BEGIN PUBLIC KEY-----/);

    await ok(['kms', 'key', 'create', 'cli-mac', '--type', 'hmac-sha512']);
    const mac = (await ok(['kms', 'hmac', 'cli-mac'], 'payload')).trim();
    expect(await ok(['kms', 'verify', 'cli-mac', '--hmac', mac], 'payload')).toBe('valid\n');

    await ok(['kms', 'key', 'create', 'cli-dk', '--type', 'aes256-gcm']);
    const keyFile = path.join(world.dir, 'data.key');
    const wrapped = (await ok(['kms', 'datakey', 'cli-dk', '--out', keyFile, '--bits', '128'])).trim();
    expect((await readFile(keyFile)).length).toBe(16);
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    await ok(['kms', 'decrypt', 'cli-dk', '--out', path.join(world.dir, 'data.key2')], wrapped);
    expect((await readFile(path.join(world.dir, 'data.key2'))).equals(await readFile(keyFile))).toBe(true);
    expect((await coffer(['kms', 'datakey', 'cli-dk'])).code).toBe(2); // where would the key go?

    expect((await ok(['kms', 'random', '--bytes', '20', '--encoding', 'hex'])).trim()).toMatch(/^[0-9a-f]{40}$/);
  });

  it('encrypt-file and decrypt-file; a tampered envelope leaves no output', async () => {
    await ok(['kms', 'key', 'create', 'cli-files', '--type', 'aes256-gcm']);
    const data = randomBytes(2 * 1024 * 1024 + 3);
    const src = path.join(world.dir, 'dump.bin');
    await writeFile(src, data);
    await ok(['kms', 'encrypt-file', 'cli-files', '--in', src]);
    await rm(src);
    await ok(['kms', 'decrypt-file', '--in', `${src}.cfev`]);
    expect((await readFile(src)).equals(data)).toBe(true);

    const envelope = await readFile(`${src}.cfev`);
    envelope[envelope.length - 100]! ^= 1;
    await writeFile(path.join(world.dir, 'bad.cfev'), envelope);
    const r = await coffer(['kms', 'decrypt-file', '--in', path.join(world.dir, 'bad.cfev'), '--out', path.join(world.dir, 'bad.out')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/fails authentication/);
    expect((await readdir(world.dir)).filter((f) => f.startsWith('bad.out') || f.startsWith('.bad.out'))).toEqual([]);
  });

  it('encrypt-file from stdin and decrypt-file to stdout', async () => {
    const text = `${'streamed line\n'.repeat(10_000)}end`;
    const sealed = path.join(world.dir, 'stream.cfev');
    await ok(['kms', 'encrypt-file', 'cli-files', '--in', '-', '--out', sealed], text);
    expect((await readFile(sealed)).includes(Buffer.from('streamed line'))).toBe(false);
    expect(await ok(['kms', 'decrypt-file', '--in', sealed, '--out', '-'])).toBe(text);
    expect((await coffer(['kms', 'encrypt-file', 'cli-files', '--in', '-'], text)).code).toBe(2); // where to?
  });
});
