// client.kms over a scripted fetch: the requests it builds (every URL from KMS_PATHS), the
// base64 it does for the caller, what it retries, and the envelope helpers' use of data keys.
// test/e2e/cli-kms.test.ts runs the same calls against a real server.

import { randomBytes } from 'node:crypto';
import { CofferClient, KMS_PATHS, type FetchFn } from '@coffer/sdk';
import { referenceDecrypt } from '../fixtures/envelope-reference.js';
import { failure, json, scripted } from '../helpers/fetch.js';

const client = (fetch: FetchFn) => new CofferClient({ address: 'http://127.0.0.1:8200', token: 'tok', fetch, retries: 2, retryBaseDelayMs: 0 });
const b64 = (s: string) => Buffer.from(s).toString('base64');
const unavailable = () => json(503, { error: { code: 'sealed', message: 'sealed' } });

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of source) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

async function* one(data: Buffer): AsyncGenerator<Buffer> {
  yield data;
}

describe('KMS_PATHS', () => {
  it('builds the KMS paths', () => {
    expect(KMS_PATHS.key('app', 'k1')).toBe('/v1/kms/app/keys/k1');
    expect(KMS_PATHS.encrypt('app', 'k1')).toBe('/v1/kms/app/encrypt/k1');
    expect(KMS_PATHS.datakey('app', 'k1', 'wrapped')).toBe('/v1/kms/app/datakey/wrapped/k1');
    expect(KMS_PATHS.random).toBe('/v1/kms/random');
  });
});

describe('client.kms requests', () => {
  it('encrypt/decrypt send base64 and return bytes', async () => {
    const { fetch, calls } = scripted(json(200, { ciphertext: 'coffer:v2:AAAA', key_version: 2 }), json(200, { plaintext: b64('hi there'), key_version: 2 }));
    const c = client(fetch);
    expect(await c.kms.encrypt('app', 'k1', 'hi there', { associatedData: 'ctx', keyVersion: 2 })).toEqual({ ciphertext: 'coffer:v2:AAAA', key_version: 2 });
    const d = await c.kms.decrypt('app', 'k1', 'coffer:v2:AAAA', { associatedData: Buffer.from('ctx') });
    expect(d.plaintext.toString()).toBe('hi there');
    expect(calls.map((x) => [x.method, x.url.pathname, x.body])).toEqual([
      ['POST', '/v1/kms/app/encrypt/k1', { plaintext: b64('hi there'), associated_data: b64('ctx'), key_version: 2 }],
      ['POST', '/v1/kms/app/decrypt/k1', { ciphertext: 'coffer:v2:AAAA', associated_data: b64('ctx') }],
    ]);
    expect(calls[0]!.headers.Authorization).toBe('Bearer tok');
  });

  it('key administration', async () => {
    const { fetch, calls } = scripted(json(200, {}));
    const c = client(fetch);
    await c.kms.keys.create('app', 'k1', { type: 'ed25519', deletion_allowed: true });
    await c.kms.keys.read('app', 'k1');
    await c.kms.keys.list('app', { limit: 5, cursor: 'abc' });
    await c.kms.keys.config('app', 'k1', { min_decryption_version: 2 });
    await c.kms.keys.rotate('app', 'k1');
    await c.kms.keys.trim('app', 'k1', 2);
    await c.kms.keys.delete('app', 'k1');
    expect(calls.map((x) => `${x.method} ${x.url.pathname}${x.url.search}`)).toEqual([
      'POST /v1/kms/app/keys/k1',
      'GET /v1/kms/app/keys/k1',
      'GET /v1/kms/app/keys?limit=5&cursor=abc',
      'POST /v1/kms/app/keys/k1/config',
      'POST /v1/kms/app/keys/k1/rotate',
      'POST /v1/kms/app/keys/k1/trim',
      'DELETE /v1/kms/app/keys/k1',
    ]);
    expect(calls[0]!.body).toEqual({ type: 'ed25519', deletion_allowed: true });
    expect(calls[5]!.body).toEqual({ min_available_version: 2 });
  });

  it('sign, verify, hmac, datakey, batch, public key and random', async () => {
    const { fetch, calls } = scripted(json(200, { valid: true, plaintext: b64('k'.repeat(32)), ciphertext: 'coffer:v1:AA', key_version: 1, random: b64('rrrr') }));
    const c = client(fetch);
    await c.kms.sign('app', 's', 'msg', { hashAlgorithm: 'sha2-384', signatureAlgorithm: 'pkcs1v15' });
    expect(await c.kms.verify('app', 's', 'msg', 'coffer:v1:SIG', { marshaling: 'jws' })).toBe(true);
    await c.kms.hmac('app', 'h', 'msg');
    expect(await c.kms.verifyHmac('app', 'h', 'msg', 'coffer:v1:MAC')).toBe(true);
    const dk = await c.kms.datakey('app', 'k1', { mode: 'plaintext', bits: 256 });
    expect(dk.plaintext?.toString()).toBe('k'.repeat(32));
    await c.kms.batch('app', 'k1', 'encrypt', [{ plaintext: b64('a') }, { plaintext: b64('b') }]);
    await c.kms.publicKey('app', 's', { version: 1 });
    expect((await c.kms.random(4)).toString()).toBe('rrrr');
    expect(calls.map((x) => [x.method, `${x.url.pathname}${x.url.search}`, x.body])).toEqual([
      ['POST', '/v1/kms/app/sign/s', { input: b64('msg'), hash_algorithm: 'sha2-384', signature_algorithm: 'pkcs1v15' }],
      ['POST', '/v1/kms/app/verify/s', { input: b64('msg'), signature: 'coffer:v1:SIG', marshaling_algorithm: 'jws' }],
      ['POST', '/v1/kms/app/hmac/h', { input: b64('msg') }],
      ['POST', '/v1/kms/app/verify/h', { input: b64('msg'), hmac: 'coffer:v1:MAC' }],
      ['POST', '/v1/kms/app/datakey/plaintext/k1', { bits: 256 }],
      ['POST', '/v1/kms/app/batch/encrypt/k1', { items: [{ plaintext: b64('a') }, { plaintext: b64('b') }] }],
      ['GET', '/v1/kms/app/public-key/s?version=1', undefined],
      ['GET', '/v1/kms/random?bytes=4&format=base64', undefined],
    ]);
  });

  it('refuses bad names before sending anything', async () => {
    const { fetch, calls } = scripted(json(200, {}));
    const c = client(fetch);
    expect((await failure(c.kms.encrypt('app', '../sys', 'x'))).code).toBe('invalid_argument');
    expect((await failure(c.kms.keys.read('app', '.hidden'))).code).toBe('invalid_argument');
    expect((await failure(c.kms.sign('bad ns', 'k', 'x'))).code).toBe('invalid_argument');
    expect(calls).toHaveLength(0);
  });

  it('retries operations on 503 but never a rotation or a creation', async () => {
    const ok = json(200, { ciphertext: 'coffer:v1:AA', key_version: 1 });
    const a = scripted(unavailable(), ok);
    expect((await client(a.fetch).kms.encrypt('app', 'k', 'x')).key_version).toBe(1);
    expect(a.calls).toHaveLength(2);
    const b = scripted(unavailable(), ok);
    expect((await failure(client(b.fetch).kms.keys.rotate('app', 'k'))).status).toBe(503);
    const c = scripted(unavailable(), ok);
    expect((await failure(client(c.fetch).kms.keys.create('app', 'k', { type: 'aes256-gcm' }))).status).toBe(503);
    expect([b.calls.length, c.calls.length]).toEqual([1, 1]);
  });
});

describe('client.kms envelopes', () => {
  it('encrypts locally under a fresh data key: only the data key crosses the network', async () => {
    const key = randomBytes(32);
    const data = randomBytes(150_000);
    const { fetch, calls } = scripted(
      json(200, { plaintext: key.toString('base64'), ciphertext: 'coffer:v4:V1JBUFBFRA==', key_version: 4 }),
      json(200, { plaintext: key.toString('base64'), key_version: 4 }),
    );
    const c = client(fetch);
    const envelope = await collect(c.kms.encryptStream('app', 'files', one(data)));
    const { meta, plaintext } = referenceDecrypt(envelope, key);
    expect(meta).toEqual({ namespace: 'app', key: 'files', key_version: 4, wrapped_key: 'coffer:v4:V1JBUFBFRA==' });
    expect(plaintext.equals(data)).toBe(true);

    const opened = await collect(c.kms.decryptStream(one(envelope)));
    expect(opened.equals(data)).toBe(true);
    expect(calls.map((x) => [x.url.pathname, x.body])).toEqual([
      ['/v1/kms/app/datakey/plaintext/files', { bits: 256 }],
      ['/v1/kms/app/decrypt/files', { ciphertext: 'coffer:v4:V1JBUFBFRA==' }],
    ]);
    // No request carried the data.
    expect(JSON.stringify(calls.map((x) => x.body)).length).toBeLessThan(500);
  });

  it('decrypts under another namespace when told to', async () => {
    const key = randomBytes(32);
    const { fetch, calls } = scripted(
      json(200, { plaintext: key.toString('base64'), ciphertext: 'coffer:v1:AA==', key_version: 1 }),
      json(200, { plaintext: key.toString('base64'), key_version: 1 }),
    );
    const c = client(fetch);
    const envelope = await collect(c.kms.encryptStream('app', 'files', one(Buffer.from('x'))));
    await collect(c.kms.decryptStream(one(envelope), { namespace: 'restored' }));
    expect(calls[1]!.url.pathname).toBe('/v1/kms/restored/decrypt/files');
  });
});
