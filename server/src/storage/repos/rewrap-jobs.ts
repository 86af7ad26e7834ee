/**
 * kek_rewrap_jobs: one rewrap job per namespace, moving every DEK to the
 * target KEK version. A rotation (re)starts it here; the job's batches
 * (kms/kek-lifecycle.ts) move its cursor; shredding deletes it.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database } from '../schema.js';

export function rewrapJobsRepo(db: Kysely<Database>) {
  return {
    /**
     * (Re)starts a namespace's job towards `target` with an empty cursor
     * (completed at once when nothing is left to rewrap). Called in the
     * rotation's transaction, under the namespace's row lock.
     */
    async restart(namespaceId: string, target: number, total: number, now: Date, tx: Executor = db): Promise<void> {
      const job = {
        target_version: target,
        state: total === 0 ? ('completed' as const) : ('running' as const),
        cursor_path: null,
        total,
        rewrapped: 0,
        started_at: now,
        updated_at: now,
        completed_at: total === 0 ? now : null,
      };
      await tx
        .insertInto('kek_rewrap_jobs')
        .values({ namespace_id: namespaceId, ...job })
        .onConflict((oc) => oc.column('namespace_id').doUpdateSet(job))
        .execute();
    },

    async find(namespaceId: string, tx: Executor = db) {
      return tx.selectFrom('kek_rewrap_jobs').selectAll().where('namespace_id', '=', namespaceId).executeTakeFirst();
    },

    /** FOR UPDATE: the batch moves the job's cursor. */
    async findForUpdate(namespaceId: string, trx: Transaction<Database>) {
      return trx.selectFrom('kek_rewrap_jobs').selectAll().where('namespace_id', '=', namespaceId).forUpdate().executeTakeFirst();
    },

    /** Moves the cursor (null: start another pass from the first path). */
    async advance(namespaceId: string, cursor: string | null, rewrapped: number, now: Date, trx: Transaction<Database>): Promise<void> {
      await trx
        .updateTable('kek_rewrap_jobs')
        .set({ cursor_path: cursor, rewrapped, updated_at: now })
        .where('namespace_id', '=', namespaceId)
        .execute();
    },

    async complete(namespaceId: string, rewrapped: number, now: Date, trx: Transaction<Database>): Promise<void> {
      await trx
        .updateTable('kek_rewrap_jobs')
        .set({ state: 'completed', cursor_path: null, rewrapped, updated_at: now, completed_at: now })
        .where('namespace_id', '=', namespaceId)
        .execute();
    },

    async running(tx: Executor = db): Promise<string[]> {
      const rows = await tx.selectFrom('kek_rewrap_jobs').select('namespace_id').where('state', '=', 'running').execute();
      return rows.map((r) => r.namespace_id);
    },

    async delete(namespaceId: string, tx: Executor = db): Promise<void> {
      await tx.deleteFrom('kek_rewrap_jobs').where('namespace_id', '=', namespaceId).execute();
    },
  };
}

export type RewrapJobsRepo = ReturnType<typeof rewrapJobsRepo>;
