/**
 * namespaces: the unit of key isolation (name, description, current KEK
 * version, rotation period, shredding schedule).
 *
 * Locks, and why they are where they are:
 *  - a secret write holds its namespace row FOR SHARE (`lockForWrite`) for
 *    the whole write, so a KEK rotation or a delete (FOR UPDATE) waits for
 *    in-flight writes and no write commits a DEK under a version that is no
 *    longer current;
 *  - rotation, deletion and the shredding schedule take the row FOR UPDATE
 *    (`lockByName`, `lockById`), serialising them with each other and with
 *    writes.
 */
import type { Kysely, Updateable } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database, NamespaceTable } from '../schema.js';

/**
 * The namespace row by name, locked for the rest of the transaction: FOR SHARE beside other
 * writers (a secret or key change), FOR UPDATE to exclude them (rotation, deletion, an import).
 * The one query behind every repo's namespace lock, so they cannot drift apart.
 */
export function lockNamespaceRow(tx: Executor, name: string, mode: 'share' | 'update') {
  const q = tx.selectFrom('namespaces').select(['id', 'current_kek_version', 'deletion_date']).where('name', '=', name);
  return (mode === 'share' ? q.forShare() : q.forUpdate()).executeTakeFirst();
}

export function namespacesRepo(db: Kysely<Database>) {
  return {
    /** By name, without a lock: the namespace's id, current KEK version and shredding state. */
    async findByName(name: string, tx: Executor = db) {
      return tx.selectFrom('namespaces').select(['id', 'current_kek_version', 'deletion_date']).where('name', '=', name).executeTakeFirst();
    },

    /** The whole row (a namespace's detail and KEK status). */
    async getById(id: string, tx: Executor = db) {
      return tx.selectFrom('namespaces').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    },

    /**
     * A secret write's namespace, held FOR SHARE until the write's transaction
     * ends: writes run side by side, while a rotation or delete waits for them.
     */
    async lockForWrite(name: string, tx: Executor) {
      return lockNamespaceRow(tx, name, 'share');
    },

    /** The row FOR UPDATE (rotation, shredding schedule): in-flight writes finish first, new ones wait. */
    async lockByName(name: string, tx: Executor) {
      return lockNamespaceRow(tx, name, 'update');
    },

    /** The row FOR UPDATE, id only (deletion). */
    async lockIdByName(name: string, tx: Executor) {
      return tx.selectFrom('namespaces').select('id').where('name', '=', name).forUpdate().executeTakeFirst();
    },

    /** The row FOR UPDATE by id (the shredding sweep re-checks the due date under it). */
    async lockById(id: string, tx: Executor) {
      return tx.selectFrom('namespaces').select(['id', 'deletion_date']).where('id', '=', id).forUpdate().executeTakeFirst();
    },

    /** A new namespace (a taken name is a unique violation). */
    async insert(
      row: { id: string; name: string; description: string; current_kek_version: number; rotation_period_seconds: number | null },
      tx: Executor = db,
    ): Promise<void> {
      await tx.insertInto('namespaces').values(row).execute();
    },

    /** One page of namespaces after `after`, in name order ("C" collation). */
    async page(after: string, limit: number, tx: Executor = db) {
      return tx
        .selectFrom('namespaces')
        .select(['name', 'description', 'created_at', 'updated_at'])
        .where('name', '>', after)
        .orderBy('name')
        .limit(limit)
        .execute();
    },

    /** Description, rotation period, current KEK version or shredding schedule. */
    async update(
      id: string,
      set: Pick<Updateable<NamespaceTable>, 'description' | 'rotation_period_seconds' | 'current_kek_version' | 'deletion_requested_at' | 'deletion_date' | 'kms_export_approval'> & {
        updated_at: Date;
      },
      tx: Executor = db,
    ): Promise<void> {
      await tx.updateTable('namespaces').set(set).where('id', '=', id).execute();
    },

    /** Namespaces whose shredding date has come (re-checked under the row lock before destroying). */
    async dueForShredding(now: Date, tx: Executor = db) {
      return tx
        .selectFrom('namespaces')
        .select(['id', 'name'])
        .where('deletion_date', 'is not', null)
        .where('deletion_date', '<=', now)
        .execute();
    },

    async delete(id: string, tx: Executor = db): Promise<void> {
      await tx.deleteFrom('namespaces').where('id', '=', id).execute();
    },
  };
}

export type NamespacesRepo = ReturnType<typeof namespacesRepo>;
