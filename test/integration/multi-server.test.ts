// Several Coffer servers sharing one PostgreSQL: each server's read cache follows the
// others' writes through LISTEN/NOTIFY, and falls back to the database while the feed is down.
import { sql } from 'kysely';
import type { RunningServer } from '@coffer/server/server';
import { describeIfPostgres } from '../helpers/env.js';
import { api, startServerPair, createStore, eventually, type TestStore } from '../helpers/server.js';

describeIfPostgres('two servers on one PostgreSQL', () => {
  let store: TestStore;
  let a: RunningServer;
  let b: RunningServer;
  let token: string;

  const read = (s: RunningServer, path: string) => api(s.url, 'GET', `/v1/secrets/shared/${path}`, { token });
  const write = (s: RunningServer, path: string, value: string) =>
    api(s.url, 'PUT', `/v1/secrets/shared/${path}`, { token, body: { data: { value } } });

  beforeAll(async () => {
    store = await createStore('postgres');
    ({ a, b, token } = await startServerPair(store));
    expect((await api(a.url, 'POST', '/v1/namespaces', { token, body: { name: 'shared' } })).status).toBe(201);
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await store?.cleanup();
  });

  it('a write on one server reaches the other\'s cached read', async () => {
    expect((await write(a, 'k', 'one')).status).toBe(200);
    expect((await read(b, 'k')).body.data.value).toBe('one'); // now cached on b
    expect((await write(a, 'k', 'two')).status).toBe(200);
    const seen = await eventually(() => read(b, 'k'), (r) => r.body?.data?.value === 'two');
    expect(seen.body.data.value).toBe('two');
  });

  it('a token revoked on one server is refused by the other within a second', async () => {
    await api(a.url, 'PUT', '/v1/sys/policies/reader', { token, body: { rules: [{ namespace: 'shared', path: '*', capabilities: ['read'] }] } });
    expect((await write(a, 'rev', 'v')).status).toBe(200);
    const child = (await api(a.url, 'POST', '/v1/auth/token/create', { token, body: { policies: ['reader'] } })).body.auth;
    // b has verified (and cached) the token before the revocation.
    expect((await api(b.url, 'GET', '/v1/secrets/shared/rev', { token: child.client_token })).status).toBe(200);
    const revokedAt = Date.now();
    expect((await api(a.url, 'POST', '/v1/auth/token/revoke-accessor', { token, body: { accessor: child.accessor } })).status).toBe(204);
    const seen = await eventually(
      () => api(b.url, 'GET', '/v1/secrets/shared/rev', { token: child.client_token }),
      (r) => r.status === 401,
      1000,
    );
    expect(seen.status).toBe(401);
    expect(Date.now() - revokedAt).toBeLessThan(1000);
  });

  it('a policy change on one server applies on the other at once', async () => {
    await api(a.url, 'PUT', '/v1/sys/policies/flip', { token, body: { rules: [{ namespace: 'shared', path: '*', capabilities: ['read'] }] } });
    expect((await write(a, 'flip', 'v')).status).toBe(200);
    const child = (await api(a.url, 'POST', '/v1/auth/token/create', { token, body: { policies: ['flip'] } })).body.auth.client_token;
    expect((await api(b.url, 'GET', '/v1/secrets/shared/flip', { token: child })).status).toBe(200);
    await api(a.url, 'PUT', '/v1/sys/policies/flip', { token, body: { rules: [{ namespace: 'shared', path: '*', capabilities: ['read'], effect: 'deny' }] } });
    const seen = await eventually(() => api(b.url, 'GET', '/v1/secrets/shared/flip', { token: child }), (r) => r.status === 403, 1000);
    expect(seen.status).toBe(403);
  });

  it('a destroy on one server is honoured by the other', async () => {
    expect((await read(b, 'k')).status).toBe(200);
    expect((await api(a.url, 'POST', '/v1/secrets/shared/k:destroy', { token, body: {} })).status).toBe(200);
    const seen = await eventually(() => read(b, 'k'), (r) => r.status === 404);
    expect(seen.status).toBe(404);
  });

  it('a bulk read on one server follows the other\'s writes, new secrets and deletes (cached folder pages)', async () => {
    const bulk = (s: RunningServer) => api(s.url, 'GET', '/v1/bulk/shared/pages/', { token });
    const values = (r: { body: { secrets?: Array<{ path: string; data: { value: string } }> } }) =>
      Object.fromEntries((r.body.secrets ?? []).map((x) => [x.path, x.data.value]));
    expect((await write(a, 'pages/x', 'x1')).status).toBe(200);
    expect((await write(a, 'pages/y', 'y1')).status).toBe(200);
    expect(values(await bulk(b))).toEqual({ 'pages/x': 'x1', 'pages/y': 'y1' }); // now cached on b
    expect(values(await bulk(b))).toEqual({ 'pages/x': 'x1', 'pages/y': 'y1' });
    expect(b.core.readCache.heldValueBytes).toBeGreaterThan(0); // served from kept decrypted values
    expect((await write(a, 'pages/x', 'x2')).status).toBe(200);
    let seen = await eventually(() => bulk(b), (r) => values(r)['pages/x'] === 'x2');
    expect(values(seen)).toEqual({ 'pages/x': 'x2', 'pages/y': 'y1' });
    expect((await write(a, 'pages/z', 'z1')).status).toBe(200);
    seen = await eventually(() => bulk(b), (r) => values(r)['pages/z'] === 'z1');
    expect(values(seen)).toEqual({ 'pages/x': 'x2', 'pages/y': 'y1', 'pages/z': 'z1' });
    expect((await api(a.url, 'DELETE', '/v1/secrets/shared/pages/y', { token })).status).toBe(200);
    seen = await eventually(() => bulk(b), (r) => !('pages/y' in values(r)));
    expect(values(seen)).toEqual({ 'pages/x': 'x2', 'pages/z': 'z1' });
    // And its own writes at once.
    expect((await write(b, 'pages/x', 'x3')).status).toBe(200);
    expect(values(await bulk(b))['pages/x']).toBe('x3');
  });

  it('a single read served from a kept body follows the other\'s writes and destroys (NOTIFY)', async () => {
    const kept = async (path: string) => {
      // Reads until b keeps the body (an echoed notification may keep the first out), then once from it.
      const first = await eventually(() => read(b, path), () => b.core.readCache.getBody(b.core.readCache.get('shared', path)!) !== undefined);
      expect((await read(b, path)).text).toBe(first.text);
      return first.body.data.value as string;
    };
    expect((await write(a, 'body', 'b1')).status).toBe(200);
    expect(await kept('body')).toBe('b1');
    const version = b.core.readCache.get('shared', 'body')!;
    const body = b.core.readCache.getBody(version)!;
    expect((await write(a, 'body', 'b2')).status).toBe(200);
    const seen = await eventually(() => read(b, 'body'), (r) => r.body?.data?.value === 'b2');
    expect(seen.body.data.value).toBe('b2');
    expect(body.every((x) => x === 0)).toBe(true); // the old body was zeroed when its entry went
    expect(await kept('body')).toBe('b2');
    expect((await api(a.url, 'POST', '/v1/secrets/shared/body:destroy', { token, body: {} })).status).toBe(200);
    expect((await eventually(() => read(b, 'body'), (r) => r.status === 404)).status).toBe(404);
  });

  it('a server reads its own writes at once', async () => {
    for (let i = 0; i < 5; i++) {
      expect((await write(b, 'own', `v${i}`)).status).toBe(200);
      expect((await read(b, 'own')).body.data.value).toBe(`v${i}`);
    }
  });

  it('keeps serving correct data while its change feed is cut, and recovers', async () => {
    await write(a, 'feed', 'before');
    expect((await read(b, 'feed')).body.data.value).toBe('before');
    expect((await api(b.url, 'GET', '/v1/bulk/shared/pages/', { token })).status).toBe(200);
    expect(b.core.readCache.heldValueBytes).toBeGreaterThan(0);
    // A kept single-read body too.
    await eventually(() => read(b, 'feed'), () => b.core.readCache.getBody(b.core.readCache.get('shared', 'feed')!) !== undefined);
    const body = b.core.readCache.getBody(b.core.readCache.get('shared', 'feed')!)!;
    // Cut every LISTEN connection (both servers' feeds) from the database side.
    await sql`select pg_terminate_backend(pid) from pg_stat_activity
              where datname = current_database() and query ilike 'listen %' and pid <> pg_backend_pid()`.execute(a.storage.db);
    await eventually(async () => b.storage.changes.up, (up) => up === false, 2_000);
    // Its kept plaintext goes with the rest of the cache.
    expect(b.core.readCache.heldValueBytes).toBe(0);
    expect(body.every((x) => x === 0)).toBe(true);
    await write(a, 'feed', 'during');
    // Without a feed, b must not serve its cached 'before'.
    expect((await read(b, 'feed')).body.data.value).toBe('during');
    await eventually(async () => b.storage.changes.up, (up) => up, 15_000);
    expect(b.storage.changes.up).toBe(true);
    await write(a, 'feed', 'after');
    const seen = await eventually(() => read(b, 'feed'), (r) => r.body?.data?.value === 'after');
    expect(seen.body.data.value).toBe('after');
  });

  it('a namespace deleted on one server is gone on the other', async () => {
    expect((await read(b, 'own')).status).toBe(200);
    expect((await api(a.url, 'DELETE', '/v1/namespaces/shared?force=true', { token })).status).toBe(200);
    const seen = await eventually(() => read(b, 'own'), (r) => r.status === 404);
    expect(seen.status).toBe(404);
  });
});
