// The KEK lifecycle with several Coffer servers on one PostgreSQL: one server at a time works on a
// namespace's rewrap (advisory lock), the others keep reading correctly, a shred disables the
// namespace everywhere at once and, when swept, zeroes the cached KEKs of every server.
import { sql } from 'kysely';
import type { RunningServer } from '@coffer/server/server';
import { describeIfPostgres } from '../helpers/env.js';
import { api, startServerPair, createStore, expectError, eventually, type TestStore } from '../helpers/server.js';

describeIfPostgres('KEK lifecycle across two servers on one PostgreSQL', () => {
  let store: TestStore;
  let a: RunningServer;
  let b: RunningServer;
  let token: string;
  const read = (s: RunningServer, ns: string, path: string) => api(s.url, 'GET', `/v1/secrets/${ns}/${path}`, { token });
  const nsId = async (name: string) =>
    (await a.core.db.selectFrom('namespaces').select('id').where('name', '=', name).executeTakeFirstOrThrow()).id;

  beforeAll(async () => {
    store = await createStore('postgres');
    // Jobs are driven by hand, so each step is deterministic.
    ({ a, b, token } = await startServerPair(store, { kekRunJobs: false, kekRewrapBatchSize: 2 }));
    for (const name of ['multi', 'gone']) {
      expect((await api(a.url, 'POST', '/v1/namespaces', { token, body: { name } })).status).toBe(201);
      for (let i = 0; i < 6; i++) {
        expect((await api(a.url, 'PUT', `/v1/secrets/${name}/s${i}`, { token, body: { data: { value: `v${i}` } } })).status).toBe(200);
      }
    }
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await store?.cleanup();
  });

  it('a batch is skipped ("busy") while another server holds the namespace', async () => {
    expect((await api(a.url, 'POST', '/v1/namespaces/multi/kek/rotate', { token, body: {} })).status).toBe(200);
    const id = await nsId('multi');
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    // Server b's connection holds the namespace's rewrap lock, as b's own batch would.
    const holder = b.core.db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(${0x0c0ffe01}::int, hashtext(${id}::text))`.execute(trx);
      locked();
      await held;
    });
    await isLocked;
    expect(await a.core.services().kek.rewrapBatch(id)).toBe('busy');
    expect((await api(a.url, 'GET', '/v1/namespaces/multi/kek', { token })).body.rewrap.rewrapped).toBe(0);
    release();
    await holder;
    expect(await a.core.services().kek.rewrapBatch(id)).toBe('more');
  });

  it('the other server reads every secret throughout and after the rewrap', async () => {
    for (let i = 0; i < 6; i++) expect((await read(b, 'multi', `s${i}`)).body.data).toEqual({ value: `v${i}` }); // cached on b
    await a.core.services().kek.runRewrapJobs();
    expect((await api(b.url, 'GET', '/v1/namespaces/multi/kek', { token })).body.rewrap.state).toBe('completed');
    for (let i = 0; i < 6; i++) expect((await read(b, 'multi', `s${i}`)).body.data).toEqual({ value: `v${i}` });
    // b writes under the new version at once (it reads the current version in each write).
    expect((await api(b.url, 'PUT', '/v1/secrets/multi/new', { token, body: { data: { value: 'n' } } })).status).toBe(200);
    const row = await b.core.db
      .selectFrom('secret_versions as v')
      .innerJoin('secrets as s', 's.id', 'v.secret_id')
      .select('v.kek_version')
      .where('s.path', '=', 'new')
      .executeTakeFirstOrThrow();
    expect(row.kek_version).toBe(2);
  });

  it('a shred scheduled on one server disables the namespace on the other at once; the sweep zeroes b\'s cached KEKs', async () => {
    expect((await read(b, 'gone', 's0')).status).toBe(200); // b caches the row and gone's KEK
    const sizeWithGone = b.core.services().keyring.cacheStats().size;
    const scheduled = await api(a.url, 'POST', '/v1/namespaces/gone/shred', { token, body: { pending_window_days: 7 } });
    expect(scheduled.status).toBe(202);
    const seen = await eventually(() => read(b, 'gone', 's0'), (r) => r.status === 409);
    expectError(seen, 409, 'namespace_disabled');
    expect(await a.core.services().kek.sweepShredding(new Date(Date.parse(scheduled.body.deletion_date) + 1))).toEqual(['gone']);
    const size = await eventually(async () => b.core.services().keyring.cacheStats().size, (n) => n < sizeWithGone);
    expect(size).toBe(sizeWithGone - 1);
    expectError(await read(b, 'gone', 's0'), 404, 'not_found');
    expect((await read(b, 'multi', 's1')).status).toBe(200);
  });
});
