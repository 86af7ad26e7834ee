/**
 * The KEK lifecycle's queries (kms/kek-lifecycle.ts): the status snapshot,
 * the rewrap job's batches over secret_versions (the job rows themselves are
 * rewrap-jobs.ts's, reached as `jobs`), and the search for namespaces due a
 * rotation. The transactions are the caller's;
 * each query says why it locks what it locks.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';
import { rewrapJobsRepo } from './rewrap-jobs.js';

/** First key of the two-key advisory lock: "Coffer rewrap". The second is the namespace's hash. */
export const REWRAP_LOCK = 0x0c0ffe01;

/** A wrapped DEK that is under an older KEK version than the rewrap's target. */
export interface DekToRewrap {
  secretId: string;
  version: number;
  kekVersion: number;
  wrappedDek: Uint8Array;
}

export function kekLifecycleRepo(db: Kysely<Database>) {
  return {
    /** kek_rewrap_jobs: one module owns the table. */
    jobs: rewrapJobsRepo(db),

    // --- status ----------------------------------------------------------

    async namespace(namespaceId: string, tx: Executor = db) {
      return tx.selectFrom('namespaces').selectAll().where('id', '=', namespaceId).executeTakeFirstOrThrow();
    },

    async keys(namespaceId: string, tx: Executor = db) {
      return tx.selectFrom('namespace_keys').selectAll().where('namespace_id', '=', namespaceId).orderBy('version').execute();
    },

    // --- rewrap batches ----------------------------------------------------

    /**
     * One server at a time works on a namespace when several share PostgreSQL: a
     * transaction-scoped advisory lock, so a dead server's lock goes with its
     * connection. False: another server holds it.
     */
    async tryLockRewrap(namespaceId: string, trx: Transaction<Database>): Promise<boolean> {
      const { rows } = await sql<{ ok: boolean }>`
        select pg_try_advisory_xact_lock(${REWRAP_LOCK}::int, hashtext(${namespaceId}::text)) as ok`.execute(trx);
      return rows[0]?.ok === true;
    },

    /** FOR SHARE: a rotation (FOR UPDATE on the namespace) waits for the batch, then restarts the job. */
    async namespaceForBatch(namespaceId: string, trx: Transaction<Database>) {
      return trx
        .selectFrom('namespaces')
        .select(['id', 'name', 'current_kek_version', 'deletion_date'])
        .where('id', '=', namespaceId)
        .forShare()
        .executeTakeFirst();
    },

    /**
     * Locks the target version's row before any DEK row: a write that reserves usage
     * counts takes it before touching secret_versions too, so the two never wait on
     * each other in a cycle.
     */
    async lockKeyVersion(namespaceId: string, version: number, trx: Transaction<Database>): Promise<void> {
      await trx
        .selectFrom('namespace_keys')
        .select('version')
        .where('namespace_id', '=', namespaceId)
        .where('version', '=', version)
        .forUpdate()
        .execute();
    },

    /** The batch's last path: the batchSize-th secret after the cursor; null when this is the last batch. */
    async batchEnd(namespaceId: string, cursor: string | null, batchSize: number, trx: Transaction<Database>): Promise<string | null> {
      let bound = trx
        .selectFrom('secrets')
        .select('path')
        .where('namespace_id', '=', namespaceId)
        .orderBy('path')
        .offset(batchSize - 1)
        .limit(1);
      if (cursor !== null) bound = bound.where('path', '>', cursor);
      return (await bound.executeTakeFirst())?.path ?? null;
    },

    /** The DEKs of the batch (paths in (cursor, last]) not yet under `target`, locked for the rewrite. */
    async deksToRewrap(namespaceId: string, target: number, cursor: string | null, last: string | null, trx: Transaction<Database>): Promise<DekToRewrap[]> {
      let query = trx
        .selectFrom('secret_versions as v')
        .innerJoin('secrets as s', 's.id', 'v.secret_id')
        .select(['v.secret_id', 'v.version', 'v.kek_version', 'v.wrapped_dek'])
        .where('s.namespace_id', '=', namespaceId)
        .where('v.wrapped_dek', 'is not', null)
        .where('v.kek_version', '<>', target)
        .forUpdate('v');
      if (cursor !== null) query = query.where('s.path', '>', cursor);
      if (last !== null) query = query.where('s.path', '<=', last);
      const rows = await query.execute();
      return rows.map((r) => ({ secretId: r.secret_id, version: r.version, kekVersion: r.kek_version!, wrappedDek: r.wrapped_dek! }));
    },

    /** Stores rewrapped DEKs (same order as `deks`); only wrapped_dek and kek_version change. */
    async storeRewrapped(deks: readonly DekToRewrap[], rewrapped: readonly Uint8Array[], target: number, trx: Transaction<Database>): Promise<void> {
      if (deks.length === 0) return;
      // Three array parameters instead of three per row: far less to bind and parse.
      await sql`
        update secret_versions as v set wrapped_dek = d.w, kek_version = ${target}::int
        from unnest(${deks.map((d) => d.secretId)}::uuid[], ${deks.map((d) => d.version)}::int[], ${rewrapped}::bytea[])
          as d(secret_id, version, w)
        where v.secret_id = d.secret_id and v.version = d.version`.execute(trx);
    },

    // --- rotation ----------------------------------------------------------

    /**
     * Namespaces (not waiting to be shredded) whose current KEK version is older than
     * their rotation period at `now`, or has reached `usageLimit` encryptions. Read
     * without locks: the caller re-checks each under its row lock.
     */
    async rotationCandidates(now: Date, usageLimit: number, tx: Executor = db): Promise<{ id: string; name: string }[]> {
      return tx
        .selectFrom('namespaces as n')
        .innerJoin('namespace_keys as k', (join) => join.onRef('k.namespace_id', '=', 'n.id').onRef('k.version', '=', 'n.current_kek_version'))
        .select(['n.id', 'n.name'])
        .where('n.deletion_date', 'is', null)
        .where((eb) =>
          eb.or([
            eb.and([
              eb('n.rotation_period_seconds', 'is not', null),
              sql<boolean>`k.created_at + make_interval(secs => n.rotation_period_seconds) <= ${now}`,
            ]),
            sql<boolean>`k.encryptions >= ${usageLimit}`,
          ]),
        )
        .execute();
    },

    /** A candidate's rotation facts, FOR UPDATE on the namespace row: two servers never rotate it twice for one due date. */
    async rotationFactsForUpdate(namespaceId: string, trx: Transaction<Database>) {
      return trx
        .selectFrom('namespaces as n')
        .innerJoin('namespace_keys as k', (join) => join.onRef('k.namespace_id', '=', 'n.id').onRef('k.version', '=', 'n.current_kek_version'))
        .leftJoin('kek_rewrap_jobs as j', 'j.namespace_id', 'n.id')
        .select(['n.rotation_period_seconds', 'n.deletion_date', 'k.created_at', 'k.encryptions', 'j.state as job_state'])
        .where('n.id', '=', namespaceId)
        .forUpdate('n')
        .executeTakeFirst();
    },
  };
}

export type KekLifecycleRepo = ReturnType<typeof kekLifecycleRepo>;
