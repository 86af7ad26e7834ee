/**
 * import_keys: BYOK wrapping keys, one per import, usable once until they
 * expire. The private key is an HSM object (hsm_label) or wrapped by a root
 * key version (wrapped_private_key, see wrapped-tables.ts).
 */
import type { Insertable, Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database, ImportKeyTable } from '../schema.js';

export function importKeysRepo(db: Kysely<Database>) {
  return {
    /** Unused import parameters, expired or not (the server-wide bound on open ones). */
    async countOpen(tx: Executor = db): Promise<number> {
      const open = await tx
        .selectFrom('import_keys')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('used_at', 'is', null)
        .executeTakeFirstOrThrow();
      return Number(open.n);
    },

    async insert(row: Omit<Insertable<ImportKeyTable>, 'created_at' | 'used_at'>, tx: Executor = db): Promise<void> {
      await tx.insertInto('import_keys').values(row).execute();
    },

    async find(id: string, tx: Executor = db) {
      return tx.selectFrom('import_keys').selectAll().where('id', '=', id).executeTakeFirst();
    },

    /** A namespace's unused import keys (at most the server-wide bound): a bundle names its key by fingerprint. */
    async listOpenForNamespace(namespaceId: string, tx: Executor = db) {
      return tx
        .selectFrom('import_keys')
        .select(['id', 'algorithm', 'public_key'])
        .where('namespace_id', '=', namespaceId)
        .where('used_at', 'is', null)
        .execute();
    },

    /**
     * Spends an import key: marks it used and forgets its wrapped private key.
     * Guarded by `used_at is null`, so of two concurrent attempts exactly one
     * gets true (no second answer from the same wrapping key).
     */
    async spend(id: string, at: Date, tx: Executor = db): Promise<boolean> {
      const spent = await tx
        .updateTable('import_keys')
        .set({ used_at: at, wrapped_private_key: null })
        .where('id', '=', id)
        .where('used_at', 'is', null)
        .executeTakeFirst();
      return Number(spent.numUpdatedRows) === 1;
    },

    /** Unused import keys past their expiry (their HSM key pairs go with them). */
    async listExpired(now: Date, tx: Executor = db) {
      return tx
        .selectFrom('import_keys')
        .select(['id', 'hsm_label'])
        .where('used_at', 'is', null)
        .where('expires_at', '<=', now)
        .execute();
    },

    /** Retires an expired import key as if used (unconditionally: it is past use either way). */
    async retire(id: string, at: Date, tx: Executor = db): Promise<void> {
      await tx.updateTable('import_keys').set({ used_at: at, wrapped_private_key: null }).where('id', '=', id).execute();
    },
  };
}

export type ImportKeysRepo = ReturnType<typeof importKeysRepo>;
