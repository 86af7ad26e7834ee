// Fencing of background jobs across real processes (storage/job-fence.ts): two coffer-server
// processes on one PostgreSQL; the one running the KEK rewrap job is paused with SIGSTOP in the
// middle of a batch transaction, PostgreSQL drops its job lock (pg_terminate_backend, as a network
// partition or TCP keepalive would), the other server takes the job over, and the paused one is
// resumed with SIGCONT. The transaction it had open must not commit (txid_status: aborted), and
// the job still completes with every secret readable.
import pg from 'pg';
import { JOB_LOCK_CLASS } from '@coffer/server/storage/job-locks';
import { KEK_JOBS } from '@coffer/server/kms/kek-jobs';
import { api, initAndUnseal, unsealWith } from '../helpers/server.js';
import { createTestDatabase, describeIfPostgres, type TestDatabase } from '../helpers/env.js';
import { startServerProcess, type ServerProcess } from '../helpers/process.js';

const SECRETS = 600;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeIfPostgres('a paused ex-holder of the rewrap job cannot commit after another server took it over', () => {
  let database: TestDatabase;
  let admin: pg.Client;
  const servers: Record<'a' | 'b', ServerProcess | undefined> = { a: undefined, b: undefined };

  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    for (const s of Object.values(servers)) {
      if (s?.child.pid) process.kill(s.child.pid, 'SIGCONT');
      await s?.stop('SIGKILL');
    }
    await admin?.end();
    await database?.drop();
  });

  /** A server whose database connections carry `application_name` = coffer-<name>, so PostgreSQL tells the two apart. */
  const start = (name: 'a' | 'b') => {
    const url = new URL(database.url);
    url.searchParams.set('application_name', `coffer-${name}`);
    return startServerProcess({
      COFFER_DATABASE_URL: url.toString(),
      // Small batches with no pause: the job is almost always inside a batch transaction.
      COFFER_KEK_REWRAP_BATCH_SIZE: '10',
      COFFER_KEK_REWRAP_BATCH_DELAY_MS: '0',
      COFFER_KEK_JOB_INTERVAL_SECONDS: '1',
    });
  };
  const lease = async () => (await admin.query<{ epoch: string; holder: string }>('select epoch, holder from job_leases where job = $1', [KEK_JOBS.rewrap])).rows[0];

  /**
   * Whether a transaction has passed its fence check and not committed (its FOR SHARE on the lease
   * row is held): then the next holder's takeover rightly waits for that commit, which is ordered
   * before it (test/contract/job-fence.test.ts covers that case); this test wants the other one.
   */
  async function leaseShareLocked(): Promise<boolean> {
    await admin.query('begin');
    try {
      await admin.query('select 1 from job_leases where job = $1 for no key update nowait', [KEK_JOBS.rewrap]);
      return false;
    } catch (err) {
      if ((err as { code?: string }).code === '55P03') return true;
      throw err;
    } finally {
      await admin.query('rollback');
    }
  }

  /** The paused server's open batch transaction: idle in transaction, holding the namespace's rewrap lock, having written. */
  async function openBatch(app: string): Promise<{ pid: number; xid: string } | undefined> {
    const { rows } = await admin.query<{ pid: number; xid: string }>(
      `select a.pid, a.backend_xid::text as xid from pg_stat_activity a
       where a.application_name = $1 and a.state = 'idle in transaction' and a.backend_xid is not null
         and exists (select 1 from pg_locks l where l.pid = a.pid and l.locktype = 'advisory' and l.granted)`,
      [app],
    );
    return rows[0];
  }

  it('pauses the holder inside a batch, lets the other take over, and the resumed one commits nothing', async () => {
    servers.a = await start('a');
    servers.b = await start('b');
    const { token, shares } = await initAndUnseal(servers.a.url, 3, 2);
    await unsealWith(servers.b.url, shares.slice(0, 2));
    admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    expect((await api(servers.a.url, 'POST', '/v1/namespaces', { token, body: { name: 'fence' } })).status).toBe(201);
    for (let i = 0; i < SECRETS; i += 20) {
      const batch = Array.from({ length: 20 }, (_, j) => api(servers.a!.url, 'PUT', `/v1/secrets/fence/s${i + j}`, { token, body: { data: { value: `v${i + j}` } } }));
      for (const w of await Promise.all(batch)) expect(w.status).toBe(200);
    }
    expect((await api(servers.a.url, 'POST', '/v1/namespaces/fence/kek/rotate', { token, body: {} })).status).toBe(200);

    // Whichever server took the job: pause it (SIGSTOP) until it is caught inside a batch transaction.
    let caught: { holder: ServerProcess; other: ServerProcess; app: string; batch: { pid: number; xid: string }; epoch: number } | undefined;
    const deadline = Date.now() + 60_000;
    while (!caught) {
      if (Date.now() > deadline) throw new Error('never caught the job inside a batch: give it more secrets');
      const held = await lease();
      const status = (await api(servers.b.url, 'GET', '/v1/namespaces/fence/kek', { token })).body;
      if (status.rewrap?.state === 'completed') throw new Error('the rewrap completed before the pause: give it more secrets');
      const name = held && (['a', 'b'] as const).find((n) => held.holder.endsWith(`-${servers[n]!.child.pid}`));
      if (!name) {
        await sleep(20);
        continue;
      }
      const holder = servers[name]!;
      process.kill(holder.child.pid!, 'SIGSTOP');
      await sleep(150); // a query in flight finishes in PostgreSQL; the backend then waits for the paused client
      const batch = await openBatch(`coffer-${name}`);
      const still = await lease();
      if (batch && still?.holder === held.holder && !(await leaseShareLocked())) {
        caught = { holder, other: servers[name === 'a' ? 'b' : 'a']!, app: `coffer-${name}`, batch, epoch: Number(still.epoch) };
      } else {
        process.kill(holder.child.pid!, 'SIGCONT');
        await sleep(Math.floor(Math.random() * 30));
      }
    }

    // PostgreSQL ends the paused server's lock session; the other server takes the job (a new epoch).
    const { rows: lockRows } = await admin.query<{ pid: number; app: string }>(
      `select l.pid, a.application_name as app from pg_locks l join pg_stat_activity a using (pid)
       where l.locktype = 'advisory' and l.classid = $1::int and l.objid = hashtext($2)::oid and l.granted`,
      [JOB_LOCK_CLASS, KEK_JOBS.rewrap],
    );
    expect(lockRows.map((r) => r.app)).toEqual([caught.app]);
    await admin.query('select pg_terminate_backend($1)', [lockRows[0]!.pid]);
    const takeover = Date.now() + 60_000;
    while (Number((await lease())?.epoch) <= caught.epoch) {
      if (Date.now() > takeover) throw new Error(`the other server did not take the job over\n${caught.other.output()}`);
      await sleep(50);
    }
    expect((await lease())!.holder.endsWith(`-${caught.other.child.pid}`)).toBe(true);

    // Resumed: its batch transaction tries to commit, and is refused.
    process.kill(caught.holder.child.pid!, 'SIGCONT');
    let outcome = 'in progress';
    const settle = Date.now() + 60_000;
    while (outcome === 'in progress') {
      if (Date.now() > settle) throw new Error(`the resumed server's transaction never ended\n${caught.holder.output()}`);
      await sleep(50);
      outcome = (await admin.query<{ s: string }>('select txid_status($1::bigint) as s', [caught.batch.xid])).rows[0]!.s;
    }
    expect(outcome).toBe('aborted');
    const logDeadline = Date.now() + 30_000;
    while (!caught.holder.output().includes('lost its lease')) {
      if (Date.now() > logDeadline) throw new Error(`the resumed server did not report the refusal\n${caught.holder.output()}`);
      await sleep(50);
    }

    // The job still completes, and every secret reads, on both servers.
    const done = Date.now() + 120_000;
    while ((await api(servers.a.url, 'GET', '/v1/namespaces/fence/kek', { token })).body.rewrap?.state !== 'completed') {
      if (Date.now() > done) throw new Error('the rewrap did not complete');
      await sleep(200);
    }
    for (let i = 0; i < SECRETS; i += 50) {
      const reads = await Promise.all(
        Array.from({ length: 50 }, async (_, j) => {
          const url = (i + j) % 2 === 0 ? servers.a!.url : servers.b!.url;
          const r = await api(url, 'GET', `/v1/secrets/fence/s${i + j}`, { token });
          return r.status === 200 && r.body.data.value === `v${i + j}` ? null : `s${i + j}: ${r.status}`;
        }),
      );
      expect(reads.filter(Boolean)).toEqual([]);
    }
  }, 300_000);
});
