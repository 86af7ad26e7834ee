/**
 * login_failures: failed logins counted per (subject, client) and per subject
 * across all clients (client ''), with the lockout each count earned. Shared by
 * every server on the database, so the guessing budget is the cluster's, not
 * each process's (auth/login-guard.ts decides what to count; this module keeps
 * the counts). Times are the database's clock, the one every server agrees on.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../schema.js';

/** The row that counts a subject's failures from every client together. */
export const ALL_CLIENTS = '';

export interface LockoutRule {
  /** Failures after which the row locks. */
  max: number;
  /** First lockout; doubles with each further failure, up to maxMs. */
  baseMs: number;
  maxMs: number;
}

export function loginFailuresRepo(db: Kysely<Database>) {
  return {
    /** Milliseconds until the later of the two lockouts ends (0: not locked). */
    async lockedForMs(subject: string, client: string): Promise<number> {
      const row = await sql<{ ms: number | string | null }>`
        select floor(extract(epoch from max(locked_until) - now()) * 1000) as ms
        from login_failures
        where subject = ${subject} and client in (${client}, ${ALL_CLIENTS}) and locked_until > now()`.execute(db);
      return Math.max(0, Number(row.rows[0]?.ms ?? 0));
    },

    /**
     * One more failure on the row; past `rule.max` it locks for base × 2^(failures − max).
     * One statement, so concurrent failures on several servers each count.
     */
    async countFailure(subject: string, client: string, rule: LockoutRule): Promise<void> {
      const lockMs = (failures: ReturnType<typeof sql>) =>
        sql`case when ${failures} >= ${rule.max}
          then now() + make_interval(secs => least(${rule.maxMs}::float8, ${rule.baseMs}::float8 * power(2::float8, least(${failures} - ${rule.max}, 30))) / 1000)
          else null end`;
      await sql`
        insert into login_failures (subject, client, failures, locked_until, updated_at)
        values (${subject}, ${client}, 1, ${lockMs(sql`1`)}, now())
        on conflict (subject, client) do update set
          failures = login_failures.failures + 1,
          locked_until = ${lockMs(sql`(login_failures.failures + 1)`)},
          updated_at = now()`.execute(db);
    },

    /** A successful login: this client's count and the subject's total start over. */
    async clear(subject: string, client: string): Promise<void> {
      await db.deleteFrom('login_failures').where('subject', '=', subject).where('client', 'in', [client, ALL_CLIENTS]).execute();
    },

    /** An admin's unlock: every row of the subject goes; true if one of them was locked. */
    async unlock(subject: string): Promise<boolean> {
      const rows = await sql<{ locked: boolean }>`
        delete from login_failures where subject = ${subject}
        returning coalesce(locked_until > now(), false) as locked`.execute(db);
      return rows.rows.some((r) => r.locked);
    },

    /** Forgets counts nobody has added to for `idleMs` and that lock nothing any more. */
    async prune(idleMs: number): Promise<number> {
      const result = await sql`
        delete from login_failures
        where updated_at < now() - make_interval(secs => ${idleMs}::float8 / 1000)
          and (locked_until is null or locked_until < now())`.execute(db);
      return Number(result.numAffectedRows ?? 0);
    },
  };
}

export type LoginFailuresRepo = ReturnType<typeof loginFailuresRepo>;
