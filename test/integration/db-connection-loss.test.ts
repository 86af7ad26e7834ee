// A PostgreSQL connection that breaks while Kysely holds it (inside a transaction, between two
// queries, or mid-query) fails that work with a connection error (→ 503) and nothing else: no
// unhandled 'error' event (which ended the server process), and the broken connection is never
// handed out again.
import { sql, type Transaction } from 'kysely';
import type { Database } from '@coffer/server/storage/schema';
import pg from 'pg';
import { openStorage, type Storage } from '@coffer/server/storage/db';
import { isConnectionError } from '@coffer/server/storage/errors';
import { createTestDatabase, describeIfPostgres, type TestDatabase } from '../helpers/env.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeIfPostgres('losing a PostgreSQL connection that is in use', () => {
  let database: TestDatabase;
  let storage: Storage;
  let admin: pg.Client;
  const lost: string[] = [];
  // An 'error' event nobody listens to is thrown from the socket callback: in coffer-server
  // that ended the process. Here it is caught and must never happen.
  const uncaught: string[] = [];
  const onUncaught = (err: Error) => uncaught.push(err.message);

  beforeAll(async () => {
    process.on('uncaughtException', onUncaught);
    database = await createTestDatabase();
    storage = await openStorage({ databaseUrl: database.url, dataDir: 'unused', poolSize: 4, onConnectionLost: (where) => lost.push(where) });
    admin = new pg.Client({ connectionString: database.url });
    admin.on('error', () => {});
    await admin.connect();
  });
  afterEach(() => expect(uncaught).toEqual([]));
  afterAll(async () => {
    process.off('uncaughtException', onUncaught);
    await admin?.end();
    await storage?.close();
    await database?.drop();
  });

  const terminate = (pid: number) => admin.query('select pg_terminate_backend($1)', [pid]);
  /** Until the backend is gone; its goodbye (57P01, then the socket closing) is then on its way to us. */
  async function gone(pid: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    while ((await admin.query('select 1 from pg_stat_activity where pid = $1', [pid])).rowCount) {
      if (Date.now() > deadline) throw new Error(`backend ${pid} did not go away`);
      await sleep(20);
    }
    await sleep(200);
  }
  const backendPid = async (db: Storage['db'] | Transaction<Database>) =>
    Number((await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db)).rows[0]!.pid);

  /** Every pooled connection answers: none of them is the broken one. */
  async function poolServesAll(): Promise<void> {
    const pids = await Promise.all(
      Array.from({ length: 8 }, () => sql<{ pid: number }>`select pg_backend_pid() as pid, pg_sleep(0.05)`.execute(storage.db)),
    );
    expect(pids).toHaveLength(8);
    expect(storage.poolStats!().total).toBeLessThanOrEqual(4);
  }

  it('a transaction whose connection is terminated between two statements fails with a connection error', async () => {
    lost.length = 0;
    let failure: unknown;
    await storage.db
      .transaction()
      .execute(async (trx) => {
        const pid = await backendPid(trx);
        await terminate(pid);
        // The client is checked out and idle in the transaction when the error arrives.
        await gone(pid);
        await sql`select 1`.execute(trx);
      })
      .catch((err: unknown) => (failure = err));
    expect(failure).toBeDefined();
    expect(isConnectionError(failure)).toBe(true);
    expect(lost).toContain('pool');
    await poolServesAll();
  });

  it('a query whose connection is terminated while it runs fails with a connection error', async () => {
    lost.length = 0;
    const pidBox: number[] = [];
    const running = storage.db.connection().execute(async (conn) => {
      pidBox.push(await backendPid(conn));
      return sql`select pg_sleep(30)`.execute(conn);
    });
    const outcome = running.then(
      () => null,
      (err: unknown) => err,
    );
    const deadline = Date.now() + 10_000;
    while (pidBox.length === 0 && Date.now() < deadline) await sleep(10);
    await sleep(100);
    await terminate(pidBox[0]!);
    const failure = await outcome;
    expect(isConnectionError(failure)).toBe(true);
    await gone(pidBox[0]!);
    expect(lost).toContain('pool');
    await poolServesAll();
  });

  it('idle pooled connections that are terminated are replaced', async () => {
    await poolServesAll();
    await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and query not ilike 'listen %'`);
    await sleep(300);
    await poolServesAll();
  });
});
