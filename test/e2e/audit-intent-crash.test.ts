// A change committed by a server that dies before its audit entry is appended still gets an
// entry: the intent recorded before the handler ran is recovered by the next server.
//  * PostgreSQL, real processes: the entry's INSERT is held by a trigger, the server is killed
//    with SIGKILL between the commit of the write and its append; a new server recovers it.
//  * PGlite: the append fails (table renamed away), the server stops before any recovery pass
//    can succeed; the next start-up recovers it at once (the data directory is exclusive).
import { rmSync } from 'node:fs';
import pg from 'pg';
import { sql } from 'kysely';
import { openStorage } from '@coffer/server/storage/db';
import { api, createStore, eventually, initAndUnseal, startTestServer, unsealWith } from '../helpers/server.js';
import { createTestDatabase, describeIfPostgres, type TestDatabase } from '../helpers/env.js';
import { startServerProcess, type ServerProcess } from '../helpers/process.js';

interface EntryRow {
  request_id: string;
  body: string;
}

describeIfPostgres('audit intents across kill -9 (PostgreSQL, real processes)', () => {
  let database: TestDatabase;
  let pool: pg.Pool;
  const running: ServerProcess[] = [];
  beforeAll(async () => {
    database = await createTestDatabase();
    pool = new pg.Pool({ connectionString: database.url, max: 2 });
  });
  afterAll(async () => {
    await Promise.all(running.map((p) => p.stop('SIGKILL')));
    await pool?.end();
    await database?.drop();
  });

  async function start(): Promise<ServerProcess> {
    const p = await startServerProcess({ COFFER_DATABASE_URL: database.url, COFFER_AUDIT_RECOVER_AFTER_SECONDS: '2', COFFER_AUDIT_TIMEOUT_MS: '60000' });
    running.push(p);
    return p;
  }

  it('recovers the entry of a write whose server was killed between commit and append', async () => {
    let p = await start();
    const { token, shares } = await initAndUnseal(p.url, 1, 1);
    expect((await api(p.url, 'POST', '/v1/namespaces', { token, body: { name: 'crash' } })).status).toBe(201);
    // The entry of the write to crash/held cannot be inserted: it waits, then fails.
    await pool.query(`create function audit_hold() returns trigger language plpgsql as $$
      begin if new.path = 'held' then perform pg_sleep(3); raise exception 'held by the test'; end if; return new; end $$`);
    await pool.query('create trigger audit_hold before insert on audit_log for each row execute function audit_hold()');

    const write = api(p.url, 'PUT', '/v1/secrets/crash/held', { token, body: { data: { v: 'held-value-0c1' } } }).catch(() => null);
    // Kill once the write has committed and its entry's INSERT is under way.
    const committed = await eventually(
      async () => (await pool.query<{ n: number }>(`select count(*)::int as n from secrets where path = 'held'`)).rows[0]!.n,
      (n) => n === 1,
      30_000,
    );
    expect(committed).toBe(1);
    const inFlight = await eventually(
      async () => (await pool.query(`select 1 from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and query like '%insert into audit_log%' and state = 'active'`)).rowCount,
      (n) => n === 1,
      30_000,
    );
    expect(inFlight).toBe(1);
    const intents = await pool.query<{ request_id: string; draft: string }>('select request_id, draft from audit_intents');
    const intent = intents.rows.find((r) => JSON.parse(r.draft).path === 'held');
    expect(intent).toBeDefined();
    expect(await p.stop('SIGKILL')).toBe('SIGKILL');
    expect(await write).toBeNull();
    // Waits for the killed server's statement to end (it holds a lock on audit_log).
    await pool.query('drop trigger audit_hold on audit_log');
    const before = await pool.query<EntryRow>('select request_id, body from audit_log where request_id = $1', [intent!.request_id]);
    expect(before.rows).toEqual([]);

    p = await start();
    const recovered = await eventually(
      async () => (await pool.query<EntryRow>('select request_id, body from audit_log where request_id = $1', [intent!.request_id])).rows,
      (rows) => rows.length > 0,
      30_000,
    );
    expect(recovered).toHaveLength(1);
    expect(JSON.parse(recovered[0]!.body)).toMatchObject({ action: 'secret.write', namespace: 'crash', path: 'held', outcome: 'unknown', status: 0, identity: { id: 'root' } });
    expect(recovered[0]!.body).not.toContain('held-value-0c1');
    await unsealWith(p.url, shares.slice(0, 1));
    const verify = await api(p.url, 'GET', '/v1/sys/audit/verify', { token });
    expect(verify.body).toMatchObject({ ok: true, pending_intents: 0 });
    expect(verify.body.recovered_entries).toBe(1);
    await p.stop();
  });
});

describe('audit intents across a restart (PGlite)', () => {
  it('recovers at start-up the intent of a write whose append failed before the server stopped', async () => {
    const store = await createStore('pglite');
    const dataDir = store.config.dataDir as string;
    let server = await startTestServer(store);
    let requestId: string;
    try {
      const { token } = await initAndUnseal(server.url, 1, 1);
      await api(server.url, 'POST', '/v1/namespaces', { token, body: { name: 'restart' } });
      await sql`alter table audit_log rename to audit_log_away`.execute(server.storage.db);
      const res = await api(server.url, 'PUT', '/v1/secrets/restart/k', { token, body: { data: { v: 'restart-value-44e' } } });
      expect(res.status).toBe(503);
      requestId = res.headers.get('x-request-id')!;
    } finally {
      await server.stop();
    }
    const storage = await openStorage({ dataDir });
    try {
      await sql`alter table audit_log_away rename to audit_log`.execute(storage.db);
      expect((await storage.db.selectFrom('audit_intents').select('request_id').execute()).map((r) => r.request_id)).toEqual([requestId]);
    } finally {
      await storage.close();
    }
    server = await startTestServer(store);
    try {
      // Start-up recovered it before the server listened.
      const row = await server.storage.db.selectFrom('audit_log').select('body').where('request_id', '=', requestId).executeTakeFirstOrThrow();
      expect(JSON.parse(row.body)).toMatchObject({ action: 'secret.write', namespace: 'restart', path: 'k', outcome: 'unknown' });
      expect(await server.core.audit.verify()).toMatchObject({ ok: true, pending_intents: 0, recovered_entries: 1 });
    } finally {
      await server.stop();
      await store.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
