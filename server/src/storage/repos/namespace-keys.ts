/**
 * namespace_keys: the versions of each namespace's KEK, wrapped by a root key
 * version (see wrapped-tables.ts), with their state and usage count. The one
 * place this table is written: creation, rotation, usage counting,
 * retirement, destruction, deletion (root rotation's rewrap goes through
 * root-wrapped.ts, driven by the registry).
 */
import { sql, type Kysely } from 'kysely';
import type { Executor } from '../executor.js';
import type { Database, KekOrigin, KekState } from '../schema.js';

export interface NewKekVersion {
  namespace_id: string;
  version: number;
  wrapped_key: Uint8Array;
  root_version: number;
  origin: KekOrigin;
}

export function namespaceKeysRepo(db: Kysely<Database>) {
  return {
    /**
     * A KEK version's wrapped bytes and root version, to unwrap it (null bytes:
     * destroyed). No lock: a KEK's value never changes, only its wrapping, and
     * both wrappings stay readable while a root rotation is in flight.
     */
    async findWrapped(namespaceId: string, version: number, tx: Executor = db) {
      return tx
        .selectFrom('namespace_keys')
        .select(['wrapped_key', 'root_version'])
        .where('namespace_id', '=', namespaceId)
        .where('version', '=', version)
        .executeTakeFirst();
    },

    /** Every version of a namespace, oldest first, as listed in its detail. */
    async listVersions(namespaceId: string, tx: Executor = db) {
      return tx
        .selectFrom('namespace_keys')
        .select(['version', 'origin', 'state', 'created_at'])
        .where('namespace_id', '=', namespaceId)
        .orderBy('version')
        .execute();
    },

    /** The next version number (called under the namespace's row lock, so two rotations cannot pick the same). */
    async nextVersion(namespaceId: string, tx: Executor = db): Promise<number> {
      const { max } = await tx
        .selectFrom('namespace_keys')
        .select((eb) => eb.fn.max<number>('version').as('max'))
        .where('namespace_id', '=', namespaceId)
        .executeTakeFirstOrThrow();
      return Number(max ?? 0) + 1;
    },

    /**
     * Stores an active version. The root version must be the one in effect:
     * a deferred foreign key to seal_config fails the commit otherwise (a
     * request racing a root rotation retries instead of storing a KEK under a
     * root about to be destroyed).
     */
    async insertActive(row: NewKekVersion, tx: Executor = db) {
      return tx
        .insertInto('namespace_keys')
        .values({ ...row, state: 'active' })
        .returning('created_at')
        .executeTakeFirstOrThrow();
    },

    /** After a rotation: every other active version is 'retiring' until no DEK references it. */
    async markOthersRetiring(namespaceId: string, current: number, tx: Executor = db): Promise<void> {
      const state: KekState = 'retiring';
      await tx
        .updateTable('namespace_keys')
        .set({ state })
        .where('namespace_id', '=', namespaceId)
        .where('state', '=', 'active')
        .where('version', '<>', current)
        .execute();
    },

    /** Marks every older, still-keyed version 'retired': no DEK references it any more. */
    async retireUnreferenced(namespaceId: string, current: number, tx: Executor = db): Promise<void> {
      const state: KekState = 'retired';
      await tx
        .updateTable('namespace_keys')
        .set({ state, retired_at: new Date() })
        .where('namespace_id', '=', namespaceId)
        .where('version', '<>', current)
        .where('state', 'in', ['active', 'retiring'])
        .execute();
    },

    /**
     * Adds `n` to a version's encryption count and returns the new count. The
     * update row-locks the version until the caller's transaction ends, which
     * is why a write takes it only after its namespace row and before its DEK
     * rows (the rewrap job takes them in the same order).
     */
    async addEncryptions(namespaceId: string, version: number, n: number, tx: Executor = db): Promise<number> {
      const { rows } = await sql<{ encryptions: string | number }>`
        update namespace_keys set encryptions = encryptions + ${n}
        where namespace_id = ${namespaceId} and version = ${version}
        returning encryptions`.execute(tx);
      return Number(rows[0]?.encryptions ?? 0);
    },

    /** Crypto-shredding: the wrapped bytes of every version are overwritten first, then the rows go. */
    async destroyAll(namespaceId: string, now: Date, tx: Executor = db): Promise<void> {
      await tx
        .updateTable('namespace_keys')
        .set({ wrapped_key: null, state: 'destroyed', destroyed_at: now })
        .where('namespace_id', '=', namespaceId)
        .execute();
    },

    async deleteAll(namespaceId: string, tx: Executor = db): Promise<void> {
      await tx.deleteFrom('namespace_keys').where('namespace_id', '=', namespaceId).execute();
    },
  };
}

export type NamespaceKeysRepo = ReturnType<typeof namespaceKeysRepo>;
