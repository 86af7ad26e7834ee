// A repeated bulk read is served from the decrypted values kept with its cached folder page
// (secrets/read-cache.ts). These tests warm that cache, change what it holds in every way a
// change can come through this server, and check that the next bulk read answers the truth and
// that the plaintext is gone from memory. Another server's changes (NOTIFY) and a cut change
// feed are in multi-server.test.ts.
import type { RunningServer } from '@coffer/server/server';
import { api, describeEachStorage, expectError, unsealWith } from '../helpers/server.js';
import { keptValuesServer, rewrapUntilCompleted, warmUntilKept } from '../helpers/kept-values.js';

interface Page {
  secrets: Array<{ path: string; version: number; data: { value: string } }>;
}

describeEachStorage('bulk read: kept decrypted values', (kind) => {
  let s: RunningServer;
  let token: string;
  let shares: string[];

  const auth = () => ({ token });
  const put = (ns: string, path: string, value: string) => api(s.url, 'PUT', `/v1/secrets/${ns}/${path}`, { ...auth(), body: { data: { value } } });
  const bulk = (ns: string) => api<Page>(s.url, 'GET', `/v1/bulk/${ns}/f/`, auth());
  const values = (page: Page) => Object.fromEntries(page.secrets.map((x) => [x.path, x.data.value]));
  const held = () => s.core.readCache.heldValueBytes;
  /**
   * Bulk reads until the page and its values are kept (a change's notification echoed back by
   * PostgreSQL may arrive during the first and keep its page out), then one served from them,
   * which must say the same.
   */
  const warm = async (ns: string) => values((await warmUntilKept(() => bulk(ns), held)).body);
  const namespace = async (ns: string) => {
    expect((await api(s.url, 'POST', '/v1/namespaces', { ...auth(), body: { name: ns } })).status).toBe(201);
    for (const p of ['a', 'b', 'c']) expect((await put(ns, `f/${p}`, `${p}1`)).status).toBe(200);
  };

  // Each test counts only the values of its own namespace (the cache is reset before each).
  const world = keptValuesServer(kind);
  beforeAll(() => ({ s, token, shares } = world()));

  it('answers a warm bulk read byte for byte as a cold one, as JSON with its charset', async () => {
    await namespace('same');
    const cold = await bulk('same');
    expect(cold.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(values(cold.body)).toEqual({ 'f/a': 'a1', 'f/b': 'b1', 'f/c': 'c1' });
    // Non-ASCII and JSON-escaped values survive the kept fragments unchanged.
    expect((await put('same', 'f/u', 'zürich "quoted" \\ \u{1F511}')).status).toBe(200);
    const first = await bulk('same');
    const second = await bulk('same');
    expect(second.text).toBe(first.text);
    expect(second.body).toEqual(JSON.parse(first.text));
    expect(values(second.body)['f/u']).toBe('zürich "quoted" \\ \u{1F511}');
  });

  it('shows a write, a delete and a destroy through this server at once, and lets go of the plaintext', async () => {
    await namespace('changes');
    expect(await warm('changes')).toEqual({ 'f/a': 'a1', 'f/b': 'b1', 'f/c': 'c1' });
    expect((await put('changes', 'f/a', 'a2')).status).toBe(200);
    expect(held()).toBe(0);
    expect(await warm('changes')).toEqual({ 'f/a': 'a2', 'f/b': 'b1', 'f/c': 'c1' });
    expect((await api(s.url, 'DELETE', '/v1/secrets/changes/f/b', auth())).status).toBe(200);
    expect(held()).toBe(0);
    expect(await warm('changes')).toEqual({ 'f/a': 'a2', 'f/c': 'c1' });
    expect((await api(s.url, 'POST', '/v1/secrets/changes/f/c:destroy', { ...auth(), body: {} })).status).toBe(200);
    expect(held()).toBe(0);
    expect(await warm('changes')).toEqual({ 'f/a': 'a2' });
    // A secret new to the folder joins the page.
    expect((await put('changes', 'f/d', 'd1')).status).toBe(200);
    expect(await warm('changes')).toEqual({ 'f/a': 'a2', 'f/d': 'd1' });
  });

  it('lets go of the plaintext on seal; after unseal the bulk read decrypts again', async () => {
    await namespace('sealed');
    await warm('sealed');
    expect((await api(s.url, 'POST', '/v1/sys/seal', auth())).body).toMatchObject({ sealed: true });
    expect(held()).toBe(0);
    expectError(await bulk('sealed'), 503, 'sealed');
    await unsealWith(s.url, shares.slice(0, 2));
    expect(await warm('sealed')).toEqual({ 'f/a': 'a1', 'f/b': 'b1', 'f/c': 'c1' });
  });

  it('lets go of a namespace\'s plaintext when its shredding is scheduled', async () => {
    await namespace('doomed');
    await warm('doomed');
    expect((await api(s.url, 'POST', '/v1/namespaces/doomed/shred', { ...auth(), body: {} })).status).toBe(202);
    expect(held()).toBe(0);
    expectError(await bulk('doomed'), 409, 'namespace_disabled');
    expect((await api(s.url, 'DELETE', '/v1/namespaces/doomed/shred', auth())).status).toBe(200);
    expect(await warm('doomed')).toEqual({ 'f/a': 'a1', 'f/b': 'b1', 'f/c': 'c1' });
  });

  it('answers the same values across a KEK rotation and its rewrap, and new writes under the new KEK', async () => {
    await namespace('rotated');
    await warm('rotated');
    expect((await api(s.url, 'POST', '/v1/namespaces/rotated/kek/rotate', { ...auth(), body: {} })).status).toBe(200);
    expect(await warm('rotated')).toEqual({ 'f/a': 'a1', 'f/b': 'b1', 'f/c': 'c1' });
    await rewrapUntilCompleted(s, token, 'rotated');
    expect(await warm('rotated')).toEqual({ 'f/a': 'a1', 'f/b': 'b1', 'f/c': 'c1' });
    expect((await put('rotated', 'f/b', 'b2')).status).toBe(200);
    expect(await warm('rotated')).toEqual({ 'f/a': 'a1', 'f/b': 'b2', 'f/c': 'c1' });
  });

  it('withholds what the caller may only list, from kept values as from cold ones', async () => {
    await namespace('partial');
    await warm('partial'); // warmed by root: every value is kept
    await api(s.url, 'PUT', '/v1/sys/policies/part', {
      ...auth(),
      body: { rules: [{ namespace: 'partial', path: 'f/*', capabilities: ['list'] }, { namespace: 'partial', path: 'f/b', capabilities: ['read'] }] },
    });
    const child = (await api(s.url, 'POST', '/v1/auth/token/create', { ...auth(), body: { policies: ['part'] } })).body.auth.client_token;
    const page = await api(s.url, 'GET', '/v1/bulk/partial/f/', { token: child });
    expect(page.status).toBe(200);
    expect(values(page.body)).toEqual({ 'f/b': 'b1' });
    expect(page.body.withheld).toEqual(['f/a', 'f/c']);
  });
});
