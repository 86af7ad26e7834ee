// Concurrent writes to one namespace, which a server combines into one transaction (secrets/write-combiner.ts):
// every acknowledged write has its own version, consecutive, none lost, each readable with its own value
// and audited once, also when a group spans several secrets; check-and-set keeps its meaning in the
// order writes are applied; a write whose statement fails, in a combined group, fails alone; two
// servers writing the same secrets lose nothing.
import pg from 'pg';
import type { RunningServer } from '@coffer/server/server';
import { describeIfPostgres } from '../helpers/env.js';
import { api, startServerPair, createStore, describeEachStorage, initAndUnseal, startTestServer, type StorageKind, type TestStore } from '../helpers/server.js';

type Put = { status: number; body: { version?: number; created_at?: string; error?: { code: string } } };

const put = (base: string, token: string, ns: string, path: string, body: Record<string, unknown>): Promise<Put> =>
  api(base, 'PUT', `/v1/secrets/${ns}/${path}`, { token, body });

/** The acknowledged versions are distinct, and with `from` exactly from+1 .. from+n. */
function expectConsecutive(versions: number[], from: number): void {
  expect([...versions].sort((a, b) => a - b)).toEqual(Array.from({ length: versions.length }, (_, i) => from + i + 1));
}

describeEachStorage('combined writes of one secret', (kind: StorageKind) => {
  let store: TestStore;
  let server: RunningServer;
  let token: string;

  beforeAll(async () => {
    store = await createStore(kind);
    server = await startTestServer(store);
    ({ token } = await initAndUnseal(server.url));
    expect((await api(server.url, 'POST', '/v1/namespaces', { token, body: { name: 'wc' } })).status).toBe(201);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await store?.cleanup();
  });

  it('gives concurrent writers distinct consecutive versions, each readable with its own value and audited once', async () => {
    const n = 40;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => put(server.url, token, 'wc', 'one', { data: { value: `v${i}` }, max_versions: 100 })));
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
    const versions = results.map((r) => r.body.version!);
    expectConsecutive(versions, 0);
    // Combining took place: versions written in one transaction share its time. (PGlite runs in this
    // event loop, so a write there is often done before the next request is read: nothing to combine.)
    if (kind === 'postgres') expect(new Set(results.map((r) => r.body.created_at)).size).toBeLessThan(n);
    for (const [i, r] of results.entries()) {
      const read = await api(server.url, 'GET', `/v1/secrets/wc/one?version=${r.body.version}`, { token });
      expect(read.body.data).toEqual({ value: `v${i}` });
    }
    const history = await api(server.url, 'GET', '/v1/secrets/wc/one:versions', { token });
    expect(history.body.current_version).toBe(n);
    expect(history.body.versions).toHaveLength(n);
    const latest = await api(server.url, 'GET', '/v1/secrets/wc/one', { token });
    expect(latest.body.version).toBe(n);
    const audit = await api(server.url, 'GET', '/v1/sys/audit?action=secret.write&namespace=wc&limit=100', { token });
    const entries = (audit.body.entries as Array<{ path: string; status: number; request_id: string; version: number | null }>).filter((e) => e.path === 'one');
    expect(entries.filter((e) => e.status === 200)).toHaveLength(n);
    expect(new Set(entries.map((e) => e.request_id)).size).toBe(entries.length);
  });

  it('gives writers spread over several secrets each secret\'s own consecutive versions', async () => {
    const paths = ['spread/a', 'spread/b', 'spread/c', 'spread/d', 'spread/e'];
    const writes = Array.from({ length: 45 }, (_, i) => ({ path: paths[i % paths.length]!, value: `s${i}` }));
    const results = await Promise.all(writes.map((w) => put(server.url, token, 'wc', w.path, { data: { value: w.value }, max_versions: 100 })));
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
    for (const path of paths) {
      const mine = results.filter((_, i) => writes[i]!.path === path);
      expectConsecutive(mine.map((r) => r.body.version!), 0);
      expect((await api(server.url, 'GET', `/v1/secrets/wc/${path}:versions`, { token })).body.current_version).toBe(mine.length);
    }
    for (const [i, r] of results.entries()) {
      expect((await api(server.url, 'GET', `/v1/secrets/wc/${writes[i]!.path}?version=${r.body.version}`, { token })).body.data).toEqual({ value: writes[i]!.value });
    }
    if (kind === 'postgres') expect(new Set(results.map((r) => r.body.created_at)).size).toBeLessThan(results.length);
  });

  it('answers a burst to a missing namespace 404 each, and creates nothing', async () => {
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => put(server.url, token, 'wc-missing', `m/${i % 3}`, { data: { value: 'x' } })));
    expect(results.map((r) => r.status)).toEqual(results.map(() => 404));
    expect((await api(server.url, 'POST', '/v1/namespaces', { token, body: { name: 'wc-missing' } })).status).toBe(201);
    expect((await put(server.url, token, 'wc-missing', 'm/0', { data: { value: 'y' } })).body.version).toBe(1);
  });

  it('keeps retention across a combined group: only the newest max_versions remain', async () => {
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => put(server.url, token, 'wc', 'kept', { data: { value: `k${i}` }, max_versions: 3 })));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expectConsecutive(results.map((r) => r.body.version!), 0);
    const history = await api(server.url, 'GET', '/v1/secrets/wc/kept:versions', { token });
    expect(history.body.versions.map((v: { version: number }) => v.version)).toEqual([12, 11, 10]);
    const newest = results.find((r) => r.body.version === 12)!;
    expect((await api(server.url, 'GET', '/v1/secrets/wc/kept', { token })).body.data).toEqual({ value: `k${results.indexOf(newest)}` });
  });

  it('judges check-and-set in the order writes are applied: a refused one takes no version', async () => {
    expect((await put(server.url, token, 'wc', 'cas', { data: { value: 'base' } })).status).toBe(200);
    // Plain writes and writes all expecting version 1, at once: at most one of the latter can find 1 current.
    const plain = Array.from({ length: 8 }, (_, i) => put(server.url, token, 'wc', 'cas', { data: { value: `p${i}` }, max_versions: 100 }));
    const expecting = Array.from({ length: 8 }, (_, i) => put(server.url, token, 'wc', 'cas', { data: { value: `c${i}` }, cas: 1, max_versions: 100 }));
    const createOnly = put(server.url, token, 'wc', 'cas', { data: { value: 'new?' }, cas: 0 });
    const [p, c, created] = await Promise.all([Promise.all(plain), Promise.all(expecting), createOnly]);
    expect(p.every((r) => r.status === 200)).toBe(true);
    expect(created.status).toBe(409);
    expect(created.body.error?.code).toBe('cas_mismatch');
    const won = c.filter((r) => r.status === 200);
    expect(c.filter((r) => r.status !== 200).every((r) => r.status === 409 && r.body.error?.code === 'cas_mismatch')).toBe(true);
    expect(won.length).toBeLessThanOrEqual(1);
    if (won.length === 1) expect(won[0]!.body.version).toBe(2);
    const versions = [...p, ...won].map((r) => r.body.version!);
    expectConsecutive(versions, 1);
    const history = await api(server.url, 'GET', '/v1/secrets/wc/cas:versions', { token });
    expect(history.body.current_version).toBe(1 + versions.length);
    // A chain of check-and-set writes, each expecting the one before, all succeed.
    for (let v = history.body.current_version as number, i = 0; i < 3; i++, v++) {
      expect((await put(server.url, token, 'wc', 'cas', { data: { value: `chain${i}` }, cas: v })).body.version).toBe(v + 1);
    }
  });

  it('fails a bad write in a burst alone (400); the others are written', async () => {
    const bad = () => put(server.url, token, 'wc', 'mixed', { data: { value: 'bad' }, metadata: { note: 'a\u0000b' } });
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, i) => (i % 5 === 2 ? bad() : put(server.url, token, 'wc', 'mixed', { data: { value: `g${i}` }, max_versions: 100 }))),
    );
    const good = results.filter((_, i) => i % 5 !== 2);
    const failed = results.filter((_, i) => i % 5 === 2);
    expect(good.map((r) => r.status)).toEqual(good.map(() => 200));
    expect(failed.every((r) => r.status === 400 && r.body.version === undefined)).toBe(true);
    expectConsecutive(good.map((r) => r.body.version!), 0);
    const history = await api(server.url, 'GET', '/v1/secrets/wc/mixed:versions', { token });
    expect(history.body.current_version).toBe(good.length);
  });
});

describeIfPostgres('two servers writing one secret', () => {
  let store: TestStore;
  let a: RunningServer;
  let b: RunningServer;
  let token: string;

  beforeAll(async () => {
    store = await createStore('postgres');
    ({ a, b, token } = await startServerPair(store));
    expect((await api(a.url, 'POST', '/v1/namespaces', { token, body: { name: 'wc2' } })).status).toBe(201);
  }, 60_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await store?.cleanup();
  });

  it('fails a write whose statement PostgreSQL refuses alone; the others of its combined group are written', async () => {
    // A trigger refusing one request's version row: the combined statement fails, the group is retried one by one.
    const client = new pg.Client({ connectionString: store.config.databaseUrl as string });
    await client.connect();
    try {
      await client.query(`create function refuse_marked() returns trigger language plpgsql as $$
        begin if new.metadata ? 'refuse' then raise exception 'refused by test trigger'; end if; return new; end $$`);
      await client.query('create trigger refuse_marked before insert on secret_versions for each row execute function refuse_marked()');
      const marked = (i: number) => i % 6 === 3;
      const results = await Promise.all(
        Array.from({ length: 24 }, (_, i) =>
          put(a.url, token, 'wc2', 'refusing', { data: { value: `x${i}` }, max_versions: 100, ...(marked(i) ? { metadata: { refuse: 'yes' } } : {}) }),
        ),
      );
      const good = results.filter((_, i) => !marked(i));
      const refused = results.filter((_, i) => marked(i));
      expect(good.map((r) => r.status)).toEqual(good.map(() => 200));
      // As a lone write's failed statement: refused with its audit intent (503), no version taken.
      expect(refused.map((r) => r.status)).toEqual(refused.map(() => 503));
      expectConsecutive(good.map((r) => r.body.version!), 0);
      for (const [i, r] of results.entries()) {
        if (marked(i)) continue;
        expect((await api(a.url, 'GET', `/v1/secrets/wc2/refusing?version=${r.body.version}`, { token })).body.data).toEqual({ value: `x${i}` });
      }
      expect((await api(a.url, 'GET', '/v1/secrets/wc2/refusing:versions', { token })).body.current_version).toBe(good.length);
    } finally {
      await client.query('drop trigger if exists refuse_marked on secret_versions');
      await client.query('drop function if exists refuse_marked()');
      await client.end();
    }
  });

  it('loses no write and shares no version', async () => {
    const rounds = 3;
    const all: Array<{ server: string; path: string; value: string; res: Put }> = [];
    for (let round = 0; round < rounds; round++) {
      const batch = await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const server = i % 2 === 0 ? a : b;
          const value = `r${round}-${i}`;
          const path = i % 3 === 0 ? 'other' : 'shared';
          return { server: server.url, path, value, res: await put(server.url, token, 'wc2', path, { data: { value }, max_versions: 1000 }) };
        }),
      );
      all.push(...batch);
    }
    expect(all.map((w) => w.res.status)).toEqual(all.map(() => 200));
    for (const path of ['shared', 'other']) {
      const mine = all.filter((w) => w.path === path);
      expectConsecutive(mine.map((w) => w.res.body.version!), 0);
      expect((await api(b.url, 'GET', `/v1/secrets/wc2/${path}:versions`, { token })).body.current_version).toBe(mine.length);
    }
    for (const w of all) {
      const read = await api(a.url, 'GET', `/v1/secrets/wc2/${w.path}?version=${w.res.body.version}`, { token });
      expect(read.body.data).toEqual({ value: w.value });
    }
  });
});
