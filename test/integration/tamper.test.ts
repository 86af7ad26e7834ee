// A database administrator who moves or alters ciphertext rows gets an integrity error,
// never another secret's value. Run against the real databases.
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, unsealWith, type TestStore } from '../helpers/server.js';

// Edits made directly in the database bypass the read cache's invalidation (until its TTL), so
// this suite turns the cache off to see every read reach the stored rows.
const noCache = { secretCacheMaxEntries: 0 };

describeEachStorage('tamper evidence at rest', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let token: string;
  let shares: string[];

  const put = async (ns: string, path: string, value: string) => {
    const res = await api(base, 'PUT', `/v1/secrets/${ns}/${path}`, { token, body: { data: { value } } });
    expect(res.status).toBe(200);
  };
  const read = (ns: string, path: string, version?: number) =>
    api(base, 'GET', `/v1/secrets/${ns}/${path}${version ? `?version=${version}` : ''}`, { token });
  const db = () => server.storage.db;
  /** Drops cached KEKs so the next read unwraps from the database again. */
  const resealAndUnseal = async () => {
    await api(base, 'POST', '/v1/sys/seal', { token });
    await unsealWith(base, shares.slice(0, 2));
  };
  const versionRow = (ns: string, path: string, version: number) =>
    db()
      .selectFrom('secret_versions as v')
      .innerJoin('secrets as s', 's.id', 'v.secret_id')
      .innerJoin('namespaces as n', 'n.id', 's.namespace_id')
      .select(['v.secret_id', 'v.version', 'v.kek_version', 'v.wrapped_dek', 'v.ciphertext'])
      .where('n.name', '=', ns)
      .where('s.path', '=', path)
      .where('v.version', '=', version)
      .executeTakeFirstOrThrow();
  const overwrite = (row: { secret_id: string; version: number }, values: { wrapped_dek?: Uint8Array | null; ciphertext?: Uint8Array | null; kek_version?: number | null }) =>
    db().updateTable('secret_versions').set(values).where('secret_id', '=', row.secret_id).where('version', '=', row.version).execute();

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store, noCache);
    base = server.url;
    ({ token, shares } = await initAndUnseal(base, 3, 2));
    for (const ns of ['alpha', 'beta']) {
      expect((await api(base, 'POST', '/v1/namespaces', { token, body: { name: ns } })).status).toBe(201);
    }
    await put('alpha', 'a', 'value-of-alpha-a');
    await put('alpha', 'b', 'value-of-alpha-b');
    await put('alpha', 'v', 'version-one');
    await put('alpha', 'v', 'version-two');
    await put('beta', 'x', 'value-of-beta-x');
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('stores no plaintext value anywhere in the secret tables', async () => {
    const rows = await db().selectFrom('secret_versions').select(['ciphertext', 'wrapped_dek', 'metadata']).execute();
    for (const row of rows) {
      const bytes = Buffer.concat([Buffer.from(row.ciphertext!), Buffer.from(row.wrapped_dek!), Buffer.from(JSON.stringify(row.metadata))]);
      expect(bytes.includes(Buffer.from('value-of'))).toBe(false);
      expect(bytes.includes(Buffer.from('version-'))).toBe(false);
    }
  });

  it('swapping the encrypted rows of two secrets yields errors, not each other\'s values', async () => {
    const a = await versionRow('alpha', 'a', 1);
    const b = await versionRow('alpha', 'b', 1);
    await overwrite(a, { wrapped_dek: b.wrapped_dek, ciphertext: b.ciphertext, kek_version: b.kek_version });
    await overwrite(b, { wrapped_dek: a.wrapped_dek, ciphertext: a.ciphertext, kek_version: a.kek_version });
    for (const [path, other] of [['a', 'value-of-alpha-b'], ['b', 'value-of-alpha-a']] as const) {
      const res = await read('alpha', path);
      expectError(res, 500, 'integrity_error');
      expect(res.text).not.toContain(other);
    }
    // The bulk read fails closed as a whole rather than returning a swapped value.
    const bulk = await api(base, 'GET', '/v1/bulk/alpha/', { token });
    expectError(bulk, 500, 'integrity_error');
    expect(bulk.text).not.toContain('value-of');
    await overwrite(a, { wrapped_dek: a.wrapped_dek, ciphertext: a.ciphertext });
    await overwrite(b, { wrapped_dek: b.wrapped_dek, ciphertext: b.ciphertext });
    expect((await read('alpha', 'a')).body.data.value).toBe('value-of-alpha-a');
  });

  it('moving a ciphertext to another version of the same secret is refused', async () => {
    const v1 = await versionRow('alpha', 'v', 1);
    const v2 = await versionRow('alpha', 'v', 2);
    await overwrite(v2, { wrapped_dek: v1.wrapped_dek, ciphertext: v1.ciphertext });
    const res = await read('alpha', 'v');
    expectError(res, 500, 'integrity_error');
    expect(res.text).not.toContain('version-one');
    await overwrite(v2, { wrapped_dek: v2.wrapped_dek, ciphertext: v2.ciphertext });
  });

  it('moving a ciphertext into another namespace is refused', async () => {
    const a = await versionRow('alpha', 'a', 1);
    const x = await versionRow('beta', 'x', 1);
    await overwrite(x, { wrapped_dek: a.wrapped_dek, ciphertext: a.ciphertext });
    const res = await read('beta', 'x');
    expectError(res, 500, 'integrity_error');
    expect(res.text).not.toContain('value-of-alpha-a');
    await overwrite(x, { wrapped_dek: x.wrapped_dek, ciphertext: x.ciphertext });
    expect((await read('beta', 'x')).body.data.value).toBe('value-of-beta-x');
  });

  it('a flipped byte in a ciphertext or a wrapped DEK is detected', async () => {
    const a = await versionRow('alpha', 'a', 1);
    const flip = (bytes: Uint8Array, at: number) => {
      const copy = Uint8Array.from(bytes);
      copy[at] = copy[at]! ^ 0x80;
      return copy;
    };
    await overwrite(a, { ciphertext: flip(a.ciphertext!, a.ciphertext!.length - 1) });
    expectError(await read('alpha', 'a'), 500, 'integrity_error');
    await overwrite(a, { ciphertext: a.ciphertext, wrapped_dek: flip(a.wrapped_dek!, 5) });
    expectError(await read('alpha', 'a'), 500, 'integrity_error');
    await overwrite(a, { wrapped_dek: a.wrapped_dek });
    expect((await read('alpha', 'a')).body.data.value).toBe('value-of-alpha-a');
  });

  it('swapping two namespaces\' wrapped KEKs is refused', async () => {
    const keys = await db().selectFrom('namespace_keys as k').innerJoin('namespaces as n', 'n.id', 'k.namespace_id').select(['k.namespace_id', 'n.name', 'k.wrapped_key']).execute();
    const alpha = keys.find((k) => k.name === 'alpha')!;
    const beta = keys.find((k) => k.name === 'beta')!;
    await db().updateTable('namespace_keys').set({ wrapped_key: beta.wrapped_key }).where('namespace_id', '=', alpha.namespace_id).execute();
    await db().updateTable('namespace_keys').set({ wrapped_key: alpha.wrapped_key }).where('namespace_id', '=', beta.namespace_id).execute();
    await resealAndUnseal();
    expectError(await read('alpha', 'a'), 500, 'integrity_error');
    expectError(await read('beta', 'x'), 500, 'integrity_error');
    await db().updateTable('namespace_keys').set({ wrapped_key: alpha.wrapped_key }).where('namespace_id', '=', alpha.namespace_id).execute();
    await db().updateTable('namespace_keys').set({ wrapped_key: beta.wrapped_key }).where('namespace_id', '=', beta.namespace_id).execute();
    await resealAndUnseal();
    expect((await read('alpha', 'a')).body.data.value).toBe('value-of-alpha-a');
  });

  it('a replaced root check makes the real shares fail to unseal instead of unsealing with garbage', async () => {
    const { root_check } = await db().selectFrom('seal_config').select('root_check').executeTakeFirstOrThrow();
    const forged = Uint8Array.from(root_check);
    forged[forged.length - 1] = forged[forged.length - 1]! ^ 1;
    await db().updateTable('seal_config').set({ root_check: forged }).execute();
    await api(base, 'POST', '/v1/sys/seal', { token });
    // The core caches the seal config; a restart reads the altered row.
    await server.stop();
    server = await startTestServer(store, noCache);
    base = server.url;
    await api(base, 'POST', '/v1/sys/unseal', { body: { share: shares[0] } });
    expectError(await api(base, 'POST', '/v1/sys/unseal', { body: { share: shares[1] } }), 400, 'invalid_shares');
    expect((await api(base, 'GET', '/v1/sys/seal-status')).body.sealed).toBe(true);
    await db().updateTable('seal_config').set({ root_check }).execute();
    await server.stop();
    server = await startTestServer(store, noCache);
    base = server.url;
    await unsealWith(base, shares.slice(1, 3));
    expect((await read('alpha', 'a')).body.data.value).toBe('value-of-alpha-a');
  });
});
