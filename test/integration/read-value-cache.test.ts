// A repeated read of a secret's latest version is served from the response body kept with its
// cached version (secrets/read-cache.ts). These tests warm that cache, change what it holds in
// every way a change can come through this server, and check that the next read answers the
// truth, byte for byte as a cold one, and that the plaintext is gone from memory. Another
// server's changes (NOTIFY) and a cut change feed are in multi-server.test.ts.
import type { RunningServer } from '@coffer/server/server';
import { api, createStore, describeEachStorage, expectError, initAndUnseal, startTestServer, unsealWith } from '../helpers/server.js';
import { keptValuesServer, rewrapUntilCompleted, warmUntilKept } from '../helpers/kept-values.js';

describeEachStorage('single read: kept response bodies', (kind) => {
  let s: RunningServer;
  let token: string;
  let shares: string[];

  const auth = () => ({ token });
  const put = (ns: string, path: string, data: Record<string, string>) => api(s.url, 'PUT', `/v1/secrets/${ns}/${path}`, { ...auth(), body: { data } });
  const read = (ns: string, path: string, headers?: Record<string, string>) => api(s.url, 'GET', `/v1/secrets/${ns}/${path}`, { ...auth(), headers });
  const held = () => s.core.readCache.heldValueBytes;
  /** Reads until the body is kept (an echoed notification may keep the first out), then once from it: the same text. */
  const warm = async (ns: string, path: string) => (await warmUntilKept(() => read(ns, path), held)).body.data as Record<string, string>;
  const namespace = async (ns: string) => {
    expect((await api(s.url, 'POST', '/v1/namespaces', { ...auth(), body: { name: ns } })).status).toBe(201);
    expect((await put(ns, 'k', { value: 'v1' })).status).toBe(200);
  };

  // Each test counts only the bodies of its own namespace (the cache is reset before each).
  const world = keptValuesServer(kind);
  beforeAll(() => ({ s, token, shares } = world()));

  it('answers a kept read byte for byte as a cold one, as res.json would (conditional, ?version)', async () => {
    expect((await api(s.url, 'POST', '/v1/namespaces', { ...auth(), body: { name: 'same' } })).status).toBe(201);
    // Integer-like keys (JSON.stringify puts them first), escapes, non-ASCII, a line separator.
    const data = { b: 'zürich "quoted" \\ \u{1F511}', '2': 'x', a: 'line\u2028sep\n<tag>' };
    const written = await api(s.url, 'PUT', '/v1/secrets/same/dir/k', { ...auth(), body: { data, metadata: { owner: 'ops' } } });
    expect(written.status).toBe(200);
    const cold = await read('same', 'dir/k');
    expect(cold.status).toBe(200);
    expect(cold.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(cold.headers.get('content-length')).toBe(String(Buffer.byteLength(cold.text)));
    expect(cold.body.data).toEqual(data);
    await warm('same', 'dir/k');
    const kept = await read('same', 'dir/k');
    expect(kept.text).toBe(cold.text);
    expect(kept.headers.get('content-length')).toBe(String(Buffer.byteLength(cold.text)));
    // Through express (res.json): JSON.stringify of the parsed answer.
    const viaJson = await read('same', 'dir/k', { 'if-none-match': '"no-such-etag"' });
    expect(viaJson.status).toBe(200);
    expect(viaJson.text).toBe(cold.text);
    expect(JSON.stringify(viaJson.body)).toBe(cold.text);
    expect((await api(s.url, 'GET', '/v1/secrets/same/dir/k?version=1', auth())).text).toBe(cold.text);
    // A reader who has seen a newer version than exists gets the database's answer, the same.
    expect((await api(s.url, 'GET', '/v1/secrets/same/dir/k?min_version=1', auth())).text).toBe(cold.text);
  });

  it('shows a write, a delete, an undelete and a destroy at once, and lets go of the plaintext', async () => {
    await namespace('changes');
    expect(await warm('changes', 'k')).toEqual({ value: 'v1' });
    expect((await put('changes', 'k', { value: 'v2' })).status).toBe(200);
    expect(held()).toBe(0);
    expect(await warm('changes', 'k')).toEqual({ value: 'v2' });
    expect((await api(s.url, 'DELETE', '/v1/secrets/changes/k', auth())).status).toBe(200);
    expect(held()).toBe(0);
    expectError(await read('changes', 'k'), 404, 'not_found');
    expect((await api(s.url, 'POST', '/v1/secrets/changes/k:undelete', { ...auth(), body: {} })).status).toBe(200);
    expect(await warm('changes', 'k')).toEqual({ value: 'v2' });
    expect((await api(s.url, 'POST', '/v1/secrets/changes/k:destroy', { ...auth(), body: {} })).status).toBe(200);
    expect(held()).toBe(0);
    expectError(await read('changes', 'k'), 404, 'not_found');
    expect((await api(s.url, 'POST', '/v1/secrets/changes/k:purge', { ...auth(), body: {} })).status).toBe(200);
    expectError(await read('changes', 'k'), 404, 'not_found');
  });

  it('lets go of the plaintext on seal; after unseal the read decrypts again', async () => {
    await namespace('sealed');
    await warm('sealed', 'k');
    expect((await api(s.url, 'POST', '/v1/sys/seal', auth())).body).toMatchObject({ sealed: true });
    expect(held()).toBe(0);
    expectError(await read('sealed', 'k'), 503, 'sealed');
    await unsealWith(s.url, shares.slice(0, 2));
    expect(await warm('sealed', 'k')).toEqual({ value: 'v1' });
  });

  it('lets go of a namespace\'s plaintext when its shredding is scheduled', async () => {
    await namespace('doomed');
    await warm('doomed', 'k');
    expect((await api(s.url, 'POST', '/v1/namespaces/doomed/shred', { ...auth(), body: {} })).status).toBe(202);
    expect(held()).toBe(0);
    expectError(await read('doomed', 'k'), 409, 'namespace_disabled');
    expect((await api(s.url, 'DELETE', '/v1/namespaces/doomed/shred', auth())).status).toBe(200);
    expect(await warm('doomed', 'k')).toEqual({ value: 'v1' });
  });

  it('lets go of the plaintext on a KEK rotation and when its rewrap completes, and answers the same', async () => {
    await namespace('rotated');
    await warm('rotated', 'k');
    expect((await api(s.url, 'POST', '/v1/namespaces/rotated/kek/rotate', { ...auth(), body: {} })).status).toBe(200);
    // The rotation changes no stored row; the server's rewrap job may already be running.
    expect(await warm('rotated', 'k')).toEqual({ value: 'v1' });
    await rewrapUntilCompleted(s, token, 'rotated');
    // Its completion dropped every entry naming the retired KEK version (with its body); what was
    // read since then names the new one.
    const entry = s.core.readCache.get('rotated', 'k');
    expect(entry?.kek_version ?? 2).toBe(2);
    if (!entry) expect(held()).toBe(0);
    expect(await warm('rotated', 'k')).toEqual({ value: 'v1' });
    expect((await put('rotated', 'k', { value: 'v2' })).status).toBe(200);
    expect(await warm('rotated', 'k')).toEqual({ value: 'v2' });
  });

  it('denies a kept body to a caller without read (authorisation comes first)', async () => {
    await namespace('guarded');
    await warm('guarded', 'k');
    await api(s.url, 'PUT', '/v1/sys/policies/lister', { ...auth(), body: { rules: [{ namespace: 'guarded', path: '*', capabilities: ['list'] }] } });
    const child = (await api(s.url, 'POST', '/v1/auth/token/create', { ...auth(), body: { policies: ['lister'] } })).body.auth.client_token;
    const denied = await api(s.url, 'GET', '/v1/secrets/guarded/k', { token: child });
    expectError(denied, 403, 'permission_denied');
    expect(denied.text).not.toContain('v1');
    expectError(await api(s.url, 'GET', '/v1/secrets/guarded/k'), 401);
  });

  it('never sends a zeroed or garbled body while the value changes under many reads in flight', async () => {
    await namespace('busy');
    const written = new Set(['v1']);
    for (let round = 0; round < 8; round++) {
      await warm('busy', 'k');
      const value = `value-${round}-${'x'.repeat(64)}`;
      written.add(value);
      // Reads served from the kept body wait for their audit entries while the write drops (zeroes) it.
      const reads = Array.from({ length: 24 }, () => read('busy', 'k'));
      const write = put('busy', 'k', { value });
      const more = Array.from({ length: 24 }, () => read('busy', 'k'));
      expect((await write).status).toBe(200);
      for (const r of await Promise.all([...reads, ...more])) {
        expect(r.status).toBe(200);
        expect(r.text).not.toContain('\u0000');
        expect(written.has(r.body.data.value as string)).toBe(true);
      }
      expect((await read('busy', 'k')).body.data.value).toBe(value);
    }
  });

  it('keeps no plaintext with COFFER_SECRET_CACHE_VALUE_BYTES=0, and answers the same', async () => {
    const other = await createStore(kind);
    const off = await startTestServer(other, { secretCacheValueBytes: 0 });
    try {
      const { token: t } = await initAndUnseal(off.url);
      expect((await api(off.url, 'POST', '/v1/namespaces', { token: t, body: { name: 'off' } })).status).toBe(201);
      expect((await api(off.url, 'PUT', '/v1/secrets/off/k', { token: t, body: { data: { value: 'v1' } } })).status).toBe(200);
      const first = await api(off.url, 'GET', '/v1/secrets/off/k', { token: t });
      const second = await api(off.url, 'GET', '/v1/secrets/off/k', { token: t });
      expect(first.body.data).toEqual({ value: 'v1' });
      expect(second.text).toBe(first.text);
      expect(off.core.readCache.size).toBeGreaterThan(0); // the version is cached, its plaintext is not
      expect(off.core.readCache.heldValueBytes).toBe(0);
    } finally {
      await off.stop();
      await other.cleanup();
    }
  });
});
