// The KMS key cache with two Coffer servers on one PostgreSQL: a key that server b has cached
// (row, unwrapped versions, parsed private key) follows every change made through server a —
// deletion, a raised min_decryption_version, a rotation, an imported version, a shred — through the change feed, and
// this server's own changes apply at once. Each test first makes b use the key twice and checks
// that b serves it from its cache, so a missing invalidation would show as a stale answer.
import { randomBytes } from 'node:crypto';
import type { RunningServer } from '@coffer/server/server';
import { wrapForImport } from '../helpers/byok.js';
import { describeIfPostgres } from '../helpers/env.js';
import { api, startServerPair, createStore, expectError, eventually, type TestStore } from '../helpers/server.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const WAIT_MS = 15_000;

describeIfPostgres('KMS key cache across two servers on one PostgreSQL', () => {
  let store: TestStore;
  let a: RunningServer;
  let b: RunningServer;
  let token: string;
  const post = (s: RunningServer, path: string, body: unknown) => api(s.url, 'POST', `/v1/kms/${path}`, { token, body });
  const encrypt = (s: RunningServer, ns: string, key: string, text = 'hello') => post(s, `${ns}/encrypt/${key}`, { plaintext: b64(text) });
  const decrypt = (s: RunningServer, ns: string, key: string, ciphertext: string) => post(s, `${ns}/decrypt/${key}`, { ciphertext });
  const create = async (ns: string, key: string, type = 'aes256-gcm') =>
    expect((await post(a, `${ns}/keys/${key}`, { type, deletion_allowed: true })).status).toBe(201);
  const cacheOf = (s: RunningServer) => s.core.services().kms.cache;

  /** b uses the key twice; the second use must be a cache hit (else these tests prove nothing). */
  async function warmOnB(ns: string, key: string): Promise<void> {
    expect((await encrypt(b, ns, key)).status).toBe(200);
    const hits = cacheOf(b).stats().hits;
    expect((await encrypt(b, ns, key)).status).toBe(200);
    expect(cacheOf(b).stats().hits).toBeGreaterThan(hits);
  }

  beforeAll(async () => {
    store = await createStore('postgres');
    // A long TTL: only invalidation can make b see a change within the test's waits.
    ({ a, b, token } = await startServerPair(store, { kekRunJobs: false, kmsKeyCacheTtlSeconds: 3600 }));
    for (const name of ['kmsa', 'kmsgone']) expect((await api(a.url, 'POST', '/v1/namespaces', { token, body: { name } })).status).toBe(201);
  }, 60_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await store?.cleanup();
  });

  it('a key deleted on a is refused on b', async () => {
    await create('kmsa', 'del');
    await warmOnB('kmsa', 'del');
    expect((await api(a.url, 'DELETE', '/v1/kms/kmsa/keys/del', { token })).status).toBe(200);
    // a applies its own change at once, without waiting for the feed.
    expectError(await encrypt(a, 'kmsa', 'del'), 404, 'not_found');
    const seen = await eventually(() => encrypt(b, 'kmsa', 'del'), (r) => r.status === 404, WAIT_MS);
    expectError(seen, 404, 'not_found');
  });

  it('a min_decryption_version raised on a refuses old ciphertext on b', async () => {
    await create('kmsa', 'min');
    const v1 = (await encrypt(a, 'kmsa', 'min', 'old')).body.ciphertext as string;
    expect((await post(a, 'kmsa/keys/min/rotate', {})).status).toBe(200);
    const v2 = (await encrypt(a, 'kmsa', 'min', 'new')).body.ciphertext as string;
    expect(v2).toMatch(/^coffer:v2:/);
    await warmOnB('kmsa', 'min');
    // b has version 1 unwrapped in its cache too.
    expect((await decrypt(b, 'kmsa', 'min', v1)).status).toBe(200);
    expect((await decrypt(b, 'kmsa', 'min', v1)).status).toBe(200);
    expect((await post(a, 'kmsa/keys/min/config', { min_decryption_version: 2 })).status).toBe(200);
    expectError(await decrypt(a, 'kmsa', 'min', v1), 400, 'invalid_request');
    const seen = await eventually(() => decrypt(b, 'kmsa', 'min', v1), (r) => r.status === 400, WAIT_MS);
    expectError(seen, 400, 'invalid_request');
    expect((await decrypt(b, 'kmsa', 'min', v2)).body.plaintext).toBe(b64('new'));
  });

  it('a rotation on a makes b encrypt and sign with the new version', async () => {
    await create('kmsa', 'rot');
    await create('kmsa', 'sig', 'ed25519');
    await warmOnB('kmsa', 'rot');
    const sign = (s: RunningServer) => post(s, 'kmsa/sign/sig', { input: b64('message') });
    expect((await sign(b)).body.key_version).toBe(1);
    expect((await sign(b)).body.key_version).toBe(1);
    for (const key of ['rot', 'sig']) expect((await post(a, `kmsa/keys/${key}/rotate`, {})).status).toBe(200);
    expect((await encrypt(a, 'kmsa', 'rot')).body.key_version).toBe(2);
    const enc = await eventually(() => encrypt(b, 'kmsa', 'rot'), (r) => r.body.key_version === 2, WAIT_MS);
    expect(enc.body.ciphertext).toMatch(/^coffer:v2:/);
    const signed = await eventually(() => sign(b), (r) => r.body.key_version === 2, WAIT_MS);
    expect(signed.body.signature).toMatch(/^coffer:v2:/);
    // What b signed with the new version verifies on a (the same key, not a stale one).
    expect((await post(a, 'kmsa/verify/sig', { input: b64('message'), signature: signed.body.signature })).body.valid).toBe(true);
  });

  it('a version imported on a is the one b encrypts with', async () => {
    const wrapped = async (name: string, material: Buffer) => {
      const params = await api(a.url, 'GET', `/v1/kms/kmsa/keys/${name}/import-params?algorithm=RSA_AES_KEY_WRAP_SHA_256`, { token });
      expect(params.status).toBe(200);
      return { import_token: params.body.import_token as string, encrypted_key_material: wrapForImport(material, params.body.public_key, 'RSA_AES_KEY_WRAP_SHA_256') };
    };
    expect((await post(a, 'kmsa/keys/imp/import', { type: 'aes256-gcm', ...(await wrapped('imp', randomBytes(32))) })).status).toBe(201);
    await warmOnB('kmsa', 'imp');
    expect((await post(a, 'kmsa/keys/imp/import-version', await wrapped('imp', randomBytes(32)))).status).toBe(200);
    expect((await encrypt(a, 'kmsa', 'imp')).body.key_version).toBe(2);
    const enc = await eventually(() => encrypt(b, 'kmsa', 'imp'), (r) => r.body.key_version === 2, WAIT_MS);
    expect(enc.body.key_version).toBe(2);
    expect((await decrypt(a, 'kmsa', 'imp', enc.body.ciphertext)).body.plaintext).toBe(b64('hello'));
  });

  it('a shred scheduled on a disables the namespace\'s keys on b; the sweep zeroes b\'s cached material', async () => {
    await create('kmsgone', 'k');
    await warmOnB('kmsa', 'min');
    await warmOnB('kmsgone', 'k');
    const held = cacheOf(b).versionCount;
    const scheduled = await api(a.url, 'POST', '/v1/namespaces/kmsgone/shred', { token, body: { pending_window_days: 7 } });
    expect(scheduled.status).toBe(202);
    const seen = await eventually(() => encrypt(b, 'kmsgone', 'k'), (r) => r.status === 409, WAIT_MS);
    expectError(seen, 409, 'namespace_disabled');
    expect(cacheOf(b).versionCount).toBeLessThan(held);
    expect(await a.core.services().kek.sweepShredding(new Date(Date.parse(scheduled.body.deletion_date) + 1))).toEqual(['kmsgone']);
    expectError(await eventually(() => encrypt(b, 'kmsgone', 'k'), (r) => r.status === 404, WAIT_MS), 404, 'not_found');
    // Other namespaces' keys stay cached and working.
    expect((await encrypt(b, 'kmsa', 'min')).status).toBe(200);
  });
});
