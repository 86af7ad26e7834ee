/**
 * audit_intents: write-ahead rows for requests that may change state (why they
 * exist: audit/intents.ts). An intent is an independent row, no sequence and
 * no lock when recorded; it is deleted by the statement that appends its entry
 * (audit.ts `append`), or claimed by a recovery pass.
 */
import { CompiledQuery, sql, type Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';

/** An intent as recorded: `draft` is the entry as known before the handler ran, as JSON. */
export interface NewIntent {
  requestId: string;
  time: Date;
  draft: string;
}

export interface ClaimOptions {
  /** This process (random per start): it recorded some intents and claims others. */
  owner: string;
  requestIds: string[];
  olderThanMs: number;
  exclusive: boolean;
  limit: number;
}

const insertSqlCache = new Map<number, string>();

function insertSql(rows: number): string {
  let text = insertSqlCache.get(rows);
  if (!text) {
    const tuples = Array.from({ length: rows }, (_, r) => `($${r * 4 + 1}, $${r * 4 + 2}, $${r * 4 + 3}, $${r * 4 + 4})`);
    text = `insert into audit_intents (request_id, owner, time, draft) values ${tuples.join(', ')}`;
    if (insertSqlCache.size < 1024) insertSqlCache.set(rows, text);
  }
  return text;
}

export function auditIntentsRepo(db: Kysely<Database>) {
  return {
    /** One INSERT for a group-committed batch of intents (raw SQL for the same reason as audit.ts `append`). */
    async insert(owner: string, intents: readonly NewIntent[], tx: Executor = db): Promise<void> {
      const params = intents.flatMap((p) => [p.requestId, owner, p.time.toISOString(), p.draft]);
      await tx.executeQuery(CompiledQuery.raw(insertSql(intents.length), params));
    },

    /** Removes intents whose entries went to line sinks only (no chain statement to delete them with). */
    async deleteByRequestIds(requestIds: string[], tx: Executor = db): Promise<void> {
      await tx.deleteFrom('audit_intents').where('request_id', 'in', requestIds).execute();
    },

    /**
     * Claims due intents for `owner` and returns them, oldest first. Due: the
     * given request ids, every intent recorded more than `olderThanMs` ago (by
     * the database's clock, comparable across servers), and on an exclusive
     * database every intent of another owner. Claimable: unclaimed, ours, a
     * claim older than `olderThanMs` (the claimer died), or anything on an
     * exclusive database. FOR UPDATE SKIP LOCKED: servers claiming at once
     * take disjoint rows instead of waiting on each other, and the claim mark
     * keeps any later pass elsewhere from recovering the same intent twice.
     */
    async claim(options: ClaimOptions, tx: Executor = db) {
      const seconds = options.olderThanMs / 1000;
      const due = sql<boolean>`(request_id = any(${options.requestIds}::text[])
        or recorded_at < now() - ${seconds}::double precision * interval '1 second'
        or (${options.exclusive}::boolean and owner <> ${options.owner}))`;
      const claimable = sql<boolean>`(claimed_by is null or claimed_by = ${options.owner} or ${options.exclusive}::boolean
        or claimed_at < now() - ${seconds}::double precision * interval '1 second')`;
      const result = await sql<{ request_id: string; time: Date; draft: string }>`
        update audit_intents set claimed_by = ${options.owner}, claimed_at = now()
        where request_id in (
          select request_id from audit_intents where ${due} and ${claimable}
          order by recorded_at limit ${options.limit} for update skip locked)
        returning request_id, time, draft`.execute(tx);
      return result.rows;
    },

    /** Intents not (yet) turned into entries, in-flight requests included. */
    async count(tx: Executor = db): Promise<number> {
      const row = await tx.selectFrom('audit_intents').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      return Number(row.n);
    },
  };
}

export type AuditIntentsRepo = ReturnType<typeof auditIntentsRepo>;
