// Fencing of background jobs (storage/job-fence.ts, job-locks.ts, repos/job-leases.ts) on the
// storage itself. On PostgreSQL a job lock's session can end while its job is still running
// (a paused process whose socket was cut, pg_terminate_backend); another server then takes the
// lock, and the old holder's transaction — begun before, committed after — must be refused,
// leaving nothing of what it wrote. PGlite is one process: its locks carry no epoch, and a
// job's transactions commit as any other.
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Storage } from '@coffer/server/storage/db';
import { JobFencedError, outsideJobFence, runFenced } from '@coffer/server/storage/job-fence';
import { JOB_LOCK_CLASS, type HeldJobLock } from '@coffer/server/storage/job-locks';
import type { Database } from '@coffer/server/storage/schema';
import { describeContract, eventually } from './backends.js';

/** A row the job writes (login_failures is plain and has no foreign keys). */
async function write(trx: Kysely<Database>, subject: string): Promise<void> {
  await sql`insert into login_failures (subject, client, failures) values (${subject}, '', 1)`.execute(trx);
}

async function exists(storage: Storage, subject: string): Promise<boolean> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from login_failures where subject = ${subject}`.execute(storage.db);
  return rows[0]!.n > 0;
}

/** Ends the session holding `job`'s advisory lock, as PostgreSQL does to a partitioned or paused holder. */
async function terminateLockSession(storage: Storage, job: string): Promise<void> {
  const { rows } = await sql<{ ended: boolean }>`
    select pg_terminate_backend(pid) as ended from pg_locks
    where locktype = 'advisory' and classid = ${JOB_LOCK_CLASS}::int and objid = hashtext(${job})::oid and granted`.execute(storage.db);
  expect(rows.map((r) => r.ended)).toEqual([true]);
}

/** Takes `job`'s lock on `storage`, waiting until PostgreSQL has let the previous holder's go. */
async function acquire(storage: Storage, job: string): Promise<HeldJobLock> {
  let lock: HeldJobLock | null = null;
  await eventually(async () => {
    lock = await storage.jobLocks.tryAcquire(job);
    expect(lock).not.toBeNull();
  });
  return lock!;
}

describeContract('job fencing', (backend) => {
  it("a job's own transactions commit, side by side", async () => {
    const job = `fence-${randomUUID()}`;
    const lock = await acquire(backend.storage, job);
    if (backend.kind === 'pglite') expect(lock.fence).toBeNull();
    else expect(lock.fence).toEqual({ job, epoch: 1 });
    const subjects = [randomUUID(), randomUUID()];
    await runFenced(lock.fence, () => Promise.all(subjects.map((s) => backend.storage.db.transaction().execute((trx) => write(trx, s)))));
    for (const s of subjects) expect(await exists(backend.storage, s)).toBe(true);
    await lock.release();
    // The next holder (here the same server) takes the next epoch.
    const again = await acquire(backend.storage, job);
    if (backend.kind === 'postgres') expect(again.fence?.epoch).toBe(2);
    await again.release();
  });

  it('an ex-holder whose lock session ended cannot commit after another server took the job over', async () => {
    if (!backend.concurrent) return; // one process: no other server, and its lock cannot be taken from it
    const job = `fence-${randomUUID()}`;
    const b = await backend.openAnother();
    const lockA = await acquire(backend.storage, job);
    const stale = randomUUID();
    let resume!: () => void;
    const paused = new Promise<void>((r) => (resume = r));
    let wrote = false;
    // A's job is inside a transaction when it stops (SIGSTOP, a long pause).
    const inFlight = runFenced(lockA.fence, () =>
      backend.storage.db.transaction().execute(async (trx) => {
        await write(trx, stale);
        wrote = true;
        await paused;
      }),
    );
    inFlight.catch(() => undefined);
    await eventually(() => expect(wrote).toBe(true));
    await terminateLockSession(backend.storage, job);
    await eventually(() => expect(lockA.lost.aborted).toBe(true));
    const lockB = await acquire(b, job);
    expect(lockB.fence!.epoch).toBeGreaterThan(lockA.fence!.epoch);
    const fresh = randomUUID();
    await runFenced(lockB.fence, () => b.db.transaction().execute((trx) => write(trx, fresh)));
    // A resumes and tries to commit: refused, and rolled back.
    resume();
    const refused = await inFlight.then(
      () => null,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(JobFencedError);
    expect(await exists(backend.storage, stale)).toBe(false);
    expect(await exists(b, fresh)).toBe(true);
    // Nor can A start anything new under its old epoch (its scheduler would not, but a step may already be under way).
    const later = randomUUID();
    await expect(runFenced(lockA.fence, () => backend.storage.db.transaction().execute((trx) => write(trx, later)))).rejects.toBeInstanceOf(JobFencedError);
    expect(await exists(backend.storage, later)).toBe(false);
    // Reads under the old epoch are not refused (they change nothing), and work outside any job is unaffected.
    await runFenced(lockA.fence, () => backend.storage.db.transaction().setAccessMode('read only').execute((trx) => sql`select 1`.execute(trx)));
    const outside = randomUUID();
    await backend.storage.db.transaction().execute((trx) => write(trx, outside));
    expect(await exists(backend.storage, outside)).toBe(true);
    // Only the run is fenced: shared work it sets going (the audit log's writer) and work left
    // behind after the run (a timer it armed) write as anything else does.
    const shared = randomUUID();
    await runFenced(lockA.fence, () => outsideJobFence(() => backend.storage.db.transaction().execute((trx) => write(trx, shared))));
    expect(await exists(backend.storage, shared)).toBe(true);
    const afterRun = randomUUID();
    let armed!: Promise<void>;
    await runFenced(lockA.fence, async () => {
      armed = new Promise<void>((resolve, reject) =>
        setTimeout(() => backend.storage.db.transaction().execute((trx) => write(trx, afterRun)).then(resolve, reject), 50),
      );
    });
    await armed;
    expect(await exists(backend.storage, afterRun)).toBe(true);
    await lockA.release();
    await lockB.release();
  });

  it("taking a job over waits for the old holder's transaction that has passed its check, and gives up after the lock timeout", async () => {
    if (!backend.concurrent) return;
    const job = `fence-${randomUUID()}`;
    const b = await backend.openAnother();
    const lockA = await acquire(backend.storage, job);
    // A transaction of A's between its check (FOR SHARE on the lease) and its COMMIT, frozen there.
    let commit!: () => void;
    const holding = new Promise<void>((r) => (commit = r));
    let checked = false;
    const committed = backend.storage.db.transaction().execute(async (trx) => {
      await sql`select epoch from job_leases where job = ${job} for share`.execute(trx);
      checked = true;
      await holding;
    });
    await eventually(() => expect(checked).toBe(true));
    await terminateLockSession(backend.storage, job);
    await eventually(() => expect(lockA.lost.aborted).toBe(true));
    // Past the lock timeout (5 s) B's acquisition fails, and gives the advisory lock back.
    await expect(b.jobLocks.tryAcquire(job)).rejects.toThrow(/lock timeout/);
    let lockB: HeldJobLock | null = null;
    const taking = b.jobLocks.tryAcquire(job).then((l) => (lockB = l));
    await new Promise((r) => setTimeout(r, 500));
    expect(lockB).toBeNull();
    commit();
    await committed;
    await taking;
    expect(lockB!.fence!.epoch).toBe(lockA.fence!.epoch + 1);
    await lockB!.release();
    await lockA.release();
  }, 60_000);
});
