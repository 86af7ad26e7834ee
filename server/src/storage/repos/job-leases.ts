/**
 * job_leases: one row per background job holding its fencing token, the epoch
 * (storage/job-fence.ts explains the protocol). Two statements, each run on a
 * connection the caller already holds: the bump on the job lock's dedicated
 * connection (job-locks.ts), the check inside a job's transaction just before
 * COMMIT (the fenced driver).
 */
import { CompiledQuery, type DatabaseConnection } from 'kysely';

/** Runs one statement on the caller's connection. */
export type RunStatement = <R extends Record<string, unknown>>(text: string, values: unknown[]) => Promise<{ rows: R[] }>;

/**
 * Takes the next epoch of `job` for `holder` and returns it. An UPDATE of the
 * row, so it waits for any job transaction that has already passed its check
 * (FOR SHARE) and not yet committed: that write is ordered before the new epoch.
 */
export async function bumpJobLease(run: RunStatement, job: string, holder: string): Promise<number> {
  const { rows } = await run<{ epoch: number | string }>(
    `insert into job_leases (job, epoch, holder, acquired_at) values ($1, 1, $2, now())
     on conflict (job) do update set epoch = job_leases.epoch + 1, holder = excluded.holder, acquired_at = excluded.acquired_at
     returning epoch`,
    [job, holder],
  );
  const epoch = Number(rows[0]?.epoch);
  if (!Number.isSafeInteger(epoch)) throw new Error(`job ${job}: no epoch came back from job_leases`);
  return epoch;
}

/**
 * The job's current epoch, read in the caller's open transaction and locked
 * FOR SHARE until it ends; null when the job has no row. FOR SHARE is the
 * weakest lock an UPDATE of the row must wait for (FOR KEY SHARE would not
 * stop the bump), and it lets one holder's transactions pass side by side.
 */
export async function lockedJobEpoch(connection: DatabaseConnection, job: string): Promise<number | null> {
  const { rows } = await connection.executeQuery<{ epoch: number | string }>(
    CompiledQuery.raw('select epoch from job_leases where job = $1 for share', [job]),
  );
  return rows[0] ? Number(rows[0].epoch) : null;
}
