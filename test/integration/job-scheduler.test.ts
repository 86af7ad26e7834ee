// The job scheduler on PostgreSQL, as several servers use it: each scheduler has its own lock
// connection (as each server does), the advisory lock runs a job on one of them at a time, a
// lock whose connection is killed tells its job to stop (and the other server can take over),
// and the lock connection comes back by itself. Then a real server counts its jobs' runs in
// its metrics.
import pg from 'pg';
import { JobScheduler, type JobContext } from '@coffer/server/jobs/scheduler';
import { openStorage } from '@coffer/server/storage/db';
import { JOB_LOCK_CLASS, PostgresJobLocks } from '@coffer/server/storage/job-locks';
import type { RunningServer } from '@coffer/server/server';
import { createTestDatabase, describeIfPostgres, type TestDatabase } from '../helpers/env.js';
import { api, createStore, describeEachStorage, initAndUnseal, startTestServer, eventually, type TestStore } from '../helpers/server.js';

const HOUR = 3_600_000;

async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describeIfPostgres('job scheduler on PostgreSQL (two servers)', () => {
  let database: TestDatabase;
  let admin: pg.Client;
  const cleanup: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    // Taking a lock takes the job's epoch in job_leases: the schema must be there.
    await (await openStorage({ databaseUrl: database.url, dataDir: '' })).close();
    admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
  });
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });
  afterAll(async () => {
    await admin?.end();
    await database?.drop();
  });

  /** A server's scheduler: its own lock connection, one job whose runs wait for `release()`. */
  function server(shared: { active: number; maxActive: number }) {
    const errors: string[] = [];
    const locks = new PostgresJobLocks(database.url);
    const scheduler = new JobScheduler({ locks, onError: (what) => errors.push(what) });
    const runs = { started: 0, finished: 0, signals: [] as AbortSignal[], gates: [] as Array<() => void>, closing: false };
    scheduler.add({
      name: 'rewrap-like',
      intervalMs: HOUR,
      run: async (ctx: JobContext) => {
        if (runs.closing) return;
        runs.started++;
        shared.active++;
        shared.maxActive = Math.max(shared.maxActive, shared.active);
        runs.signals.push(ctx.signal);
        await new Promise<void>((r) => runs.gates.push(r));
        shared.active--;
        runs.finished++;
      },
    });
    cleanup.push(async () => {
      runs.closing = true;
      runs.gates.splice(0).forEach((open) => open());
      await scheduler.stop();
      await locks.close();
    });
    const status = () => scheduler.status()[0]!;
    return { scheduler, runs, errors, status, release: () => runs.gates.shift()?.() };
  }

  /** The backend holding a job's advisory lock, if any. */
  async function lockHolder(): Promise<number | null> {
    const { rows } = await admin.query<{ pid: number }>(
      "select pid from pg_locks where locktype = 'advisory' and classid = $1::int and objid = hashtext('rewrap-like')::oid and granted",
      [JOB_LOCK_CLASS],
    );
    return rows[0]?.pid ?? null;
  }

  it('runs a job on one server at a time; the other takes it once it is free', async () => {
    const shared = { active: 0, maxActive: 0 };
    const a = server(shared);
    const b = server(shared);
    a.scheduler.start();
    await until(() => a.runs.started === 1, "a's run");
    expect(await lockHolder()).not.toBeNull();
    b.scheduler.start();
    await until(() => b.status().lastOutcome === 'busy', "b's attempt");
    // Kicked while a holds the lock: b looks again soon, and still finds it taken.
    b.scheduler.kick('rewrap-like');
    await until(() => b.status().nextDelayMs === 1_000, "b's kicked attempt");
    expect(b.runs.started).toBe(0);
    a.release();
    await until(() => a.runs.finished === 1 && !a.status().running, "a's run to end");
    // The kick is served once the lock is free (b's short retry, or this kick).
    b.scheduler.kick('rewrap-like');
    await until(() => b.runs.started === 1, "b's run");
    a.scheduler.kick('rewrap-like');
    await until(() => a.status().lastOutcome === 'busy' && !a.status().running, "a's attempt while b runs");
    expect(a.runs.started).toBe(1);
    b.release();
    await until(() => b.runs.finished === 1, "b's run to end");
    expect(shared.maxActive).toBe(1);
    expect([...a.errors, ...b.errors]).toEqual([]);
  });

  it("a lock whose connection dies tells its job to stop; the other server takes over, and the first reconnects", async () => {
    const shared = { active: 0, maxActive: 0 };
    const a = server(shared);
    const b = server(shared);
    a.scheduler.start();
    await until(() => a.runs.started === 1, "a's run");
    const pid = await lockHolder();
    expect(pid).not.toBeNull();
    // The lock is on a connection of its own, not one of the queries' pool (which these schedulers do not even have).
    await admin.query('select pg_terminate_backend($1)', [pid]);
    await until(() => a.runs.signals[0]!.aborted, "a's job to be told");
    b.scheduler.start();
    await until(() => b.runs.started === 1, "b's run after a's lock went");
    a.release();
    await until(() => !a.status().running, "a's run to end");
    b.release();
    await until(() => !b.status().running, "b's run to end");
    // a asks again on a new connection.
    a.scheduler.kick('rewrap-like');
    await until(() => a.runs.started === 2, "a's run on a new lock connection");
    a.release();
    await until(() => !a.status().running, "a's second run to end");
    expect(a.errors).toEqual([]);
  });

  it('a database that cannot be reached counts as a failed run and backs off', async () => {
    const errors: string[] = [];
    const locks = new PostgresJobLocks(database.url.replace(/\/[^/?]+(\?|$)/, '/no_such_database$1'));
    const scheduler = new JobScheduler({ locks, onError: (what) => errors.push(what), maxBackoffMs: 10 * HOUR });
    let runs = 0;
    scheduler.add({ name: 'x', intervalMs: HOUR, run: async () => void runs++ });
    cleanup.push(async () => {
      await scheduler.stop();
      await locks.close();
    });
    scheduler.start();
    await until(() => scheduler.status()[0]!.failures === 1 && !scheduler.status()[0]!.running, 'the failed attempt');
    expect(runs).toBe(0);
    expect(errors).toEqual(['job x: its lock could not be taken']);
    expect(scheduler.status()[0]!.nextDelayMs).toBe(2 * HOUR);
  });
});

describeEachStorage('job metrics of a running server', (kind) => {
  let store: TestStore;
  let srv: RunningServer;
  beforeAll(async () => {
    store = await createStore(kind);
    srv = await startTestServer(store);
  });
  afterAll(async () => {
    await srv?.stop();
    await store?.cleanup();
  });

  it('counts the KEK jobs that ran at unseal, labelled by job', async () => {
    const { token } = await initAndUnseal(srv.url, 1, 1);
    const metrics = await eventually(
      async () => (await api(srv.url, 'GET', '/v1/sys/metrics', { token })).text,
      (text) => ['kek-rotation', 'namespace-shred', 'kek-rewrap'].every((job) => text.includes(`coffer_job_runs_total{job="${job}"} 1`)),
      30_000,
    );
    expect(metrics).toMatch(/coffer_job_last_duration_seconds\{job="kek-rewrap"\} \d/);
    expect(metrics).not.toMatch(/coffer_job_failures_total\{job=/);
  });
});
